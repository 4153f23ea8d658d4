"""`make demo`, as a newcomer runs it: it ends by saying where its time went, and `make demo KEEP=1`
leaves a server and an archive behind that the printed commands work on, and says how to remove them."""
from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_keep_leaves_a_server_and_archive_the_printed_commands_work_on(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARCHIVERD_", "MONGODB_", "ARCHIVE_"))}
    demo = subprocess.run([sys.executable, "demo/demo.py", "--keep"], cwd=ROOT, capture_output=True, text=True,
                          env=env | {"DEMO_DOCS": "150"}, timeout=600)
    out = demo.stdout
    kill = re.search(r"^  kill -- -(\d+); rm -rf (.+)$", out, re.M)
    try:
        assert demo.returncode == 0, out + demo.stderr
        assert "byte-for-byte identical to the originals" in out
        # where the time went, from the command's own --statistics
        assert "statistics: archiving:" in out and re.search(r"^\s+read\s+[\d.]+", out, re.M)
        assert "created the index on timestamp" in out
        assert "server stopped" not in out and "make demo KEEP=1" not in out
        assert kill is not None, out
        exports = dict(item.split("=", 1) for item in shlex.split(re.search(r"^  export (.+)$", out, re.M)[1]))
        assert set(exports) == {"MONGODB_URI", "MONGODB_DATABASE_NAME", "ARCHIVERD_ARCHIVE_DIR", "ARCHIVE_THRESHOLD_DAYS"}
        tries = [shlex.split(line) for line in out.splitlines() if re.match(r"  \S*archiverd ", line)]
        assert {t[1] for t in tries} >= {"status", "list", "info", "check", "export"}
        for argv in tries:
            exe = argv[0] if os.path.isabs(argv[0]) else str(ROOT / argv[0])
            proc = subprocess.run([exe, *argv[1:]], cwd=tmp_path, capture_output=True, text=True,
                                  env=env | exports, timeout=120)
            assert proc.returncode == 0, (argv, proc.stdout, proc.stderr)
        assert (tmp_path / "day.jsonl").read_text().count("\n") >= 1
    finally:
        if kill is not None:
            os.killpg(int(kill[1]), signal.SIGTERM)
            shutil.rmtree(shlex.split(kill[2])[0], ignore_errors=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.killpg(int(kill[1]), 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the kept server did not stop on the printed kill")


def test_demo_without_keep_removes_everything_and_points_to_keep_and_the_installed_command(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARCHIVERD_", "MONGODB_", "ARCHIVE_"))}
    demo = subprocess.run([sys.executable, "demo/demo.py"], cwd=ROOT, capture_output=True, text=True,
                          env=env | {"DEMO_DOCS": "150"}, timeout=600)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    data = re.search(r"data in (\S+)", demo.stdout)[1]
    assert not Path(data).exists() and "server stopped; temporary data removed" in demo.stdout
    assert "make demo KEEP=1" in demo.stdout
    exe = re.search(r"`(\S*archiverd) --help`", demo.stdout)[1]
    assert (ROOT / exe).exists() or Path(exe).exists()  # a command a person can type as printed
