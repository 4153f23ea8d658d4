# Quick start: `make demo`, `make test`. Everything installs into .venv on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: setup test demo bench clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@

setup: $(VENV)/.installed

test: setup
	$(PY) -m pytest -q -m "not slow"

demo: setup
	$(PY) demo/demo.py

bench: setup
	$(PY) bench/bench_format.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
