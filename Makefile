# Quick start: `make demo`, `make test`. Everything installs into .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test demo bench reliability soak wheel clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

setup: $(VENV)/.installed

# two test processes (pytest-xdist); `make test TEST_JOBS=0` runs them in this one
TEST_JOBS ?= 2

test: setup
	$(PY) -m pytest -q -n $(TEST_JOBS)

# `make demo KEEP=1` leaves the server and the archive running, to try every command on them
demo: setup
	$(PY) demo/demo.py $(if $(KEEP),--keep)

bench: setup
	$(PY) bench/bench_format.py

# the figures in docs/RELIABILITY.md (about 10 minutes)
reliability: setup
	$(PY) bench/bench_reliability.py --runs-per-point 3 --soak 20 --corruptions 20

# the long soak: more of the same (about an hour); exits 1 if any invariant breaks
soak: setup
	$(PY) bench/bench_reliability.py --runs-per-point 10 --soak 150 --corruptions 50

# the installable artifact: `pip install dist/archiverd-*.whl` (or pipx) on the database host
wheel: setup
	rm -rf build dist/archiverd-*.whl
	$(PY) -m pip wheel -q --no-deps -w dist .

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
