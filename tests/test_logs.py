"""Logging: one copy of every line, private log files, and `archiverd logs` -n / --since / -f."""
from __future__ import annotations

import datetime as dt
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.test_cli_daemon import env_for

T0 = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARCHIVERD_", "MONGODB_", "ARCHIVE_",
                                                                     "JOURNAL_STREAM"))}
    env.update(extra)
    return env


def _write_log(path: Path, n: int, style: str = "logfmt") -> None:
    with open(path, "w") as f:
        for i in range(n):
            ts = (T0 + dt.timedelta(minutes=i)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
            f.write(f'{{"ts": "{ts}", "level": "info", "event": "e", "n": {i}}}\n' if style == "json"
                    else f"ts={ts} level=info event=e n={i}\n")


def logs(path: Path, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "archiverd", "logs", *args], env=_env(ARCHIVERD_LOG_FILE=str(path)),
                          capture_output=True, text=True, timeout=60)
    assert "Traceback" not in proc.stderr
    return proc


def numbers(out: str) -> list[int]:
    return [int(line.rsplit("n", 1)[1].strip(' =:}"')) for line in out.splitlines()]


@pytest.mark.parametrize("style", ["logfmt", "json"])
def test_logs_last_lines_and_since(tmp_path, style):
    path = tmp_path / "archiverd.log"
    _write_log(path, 5000, style)
    assert numbers(logs(path).stdout) == list(range(4950, 5000))  # the last 50 by default, not the whole file
    assert numbers(logs(path, "-n", "3").stdout) == [4997, 4998, 4999]
    assert logs(path, "-n", "0").stdout == ""
    assert len(logs(path, "-n", "all").stdout.splitlines()) == 5000
    since = (T0 + dt.timedelta(minutes=4990)).isoformat()
    assert numbers(logs(path, "--since", since).stdout) == list(range(4990, 5000))  # every line since
    assert numbers(logs(path, "--since", since, "-n", "2").stdout) == [4998, 4999]
    # a time without a zone is UTC, like the log's own timestamps: 3 days 11:05 after T0 is line 4985
    assert numbers(logs(path, "--since", "2026-11-04 11:05").stdout) == list(range(4985, 5000))
    assert logs(path, "--since", "2020-01-01").stdout.count("\n") == 5000
    assert logs(path, "--since", "1h").stdout == ""  # the file ends in 2026-11-04, "now" is later


def test_logs_mistakes_are_one_line(tmp_path):
    cases = [(("-n", "x"), tmp_path / "a.log", 3, "not a number of lines"),
             (("--since", "yesterday"), tmp_path / "a.log", 3, "neither a duration"),
             ((), tmp_path / "absent.log", 5, "does not exist"),
             ((), tmp_path, 5, "is a directory")]
    (tmp_path / "a.log").write_text("x\n")
    for args, path, code, message in cases:
        proc = logs(path, *args)
        assert proc.returncode == code and message in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr


def _follow(path: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "archiverd", "logs", "-f", "-n", "1"],
                            env=_env(ARCHIVERD_LOG_FILE=str(path)), stdout=subprocess.PIPE, text=True)


def _append(path: Path, text: str) -> None:
    with open(path, "a") as f:
        f.write(text)


def test_logs_follow_across_rotation_and_truncation(tmp_path):
    path = tmp_path / "archiverd.log"
    path.write_text("old 1\nold 2\n")
    proc = _follow(path)
    try:
        assert proc.stdout.readline() == "old 2\n"
        time.sleep(1)
        _append(path, "line 3\n")
        assert proc.stdout.readline() == "line 3\n"
        # logrotate (create): the old file is renamed, its last line still written, then a new file
        _append(path, "line 4 before rotation\n")
        path.rename(tmp_path / "archiverd.log.1")
        _append(tmp_path / "archiverd.log.1", "line 5 late, in the old file\n")
        time.sleep(0.5)
        path.write_text("line 6 in the new file\n")
        got = [proc.stdout.readline() for _ in range(3)]
        assert got == ["line 4 before rotation\n", "line 5 late, in the old file\n", "line 6 in the new file\n"]
        # logrotate copytruncate: the same file starts again from empty -- and has grown past where
        # the follower was before it looks (no pause here: when it looks depends on the load)
        with open(path, "r+") as f:
            f.truncate(0)
        _append(path, "line 7 after truncation\n")
        assert proc.stdout.readline() == "line 7 after truncation\n"
        with open(path, "r+") as f:
            f.truncate(0)
        _append(path, "8\n")  # shorter than before: the size alone shows it
        assert proc.stdout.readline() == "8\n"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
    assert proc.returncode == 0


def _journald_pipe() -> tuple[int, int, str]:
    """A pipe and the JOURNAL_STREAM value that makes a child believe its stderr is journald's."""
    read, write = os.pipe()
    st = os.fstat(write)
    return read, write, f"{st.st_dev}:{st.st_ino}"


def _run_once_with_stderr(cfg, stderr_fd: int, **extra: str) -> int:
    proc = subprocess.run([sys.executable, "-m", "archiverd", "run", "--once"], env=env_for(cfg, **extra),
                          stdout=subprocess.DEVNULL, stderr=stderr_fd, timeout=120)
    return proc.returncode


def test_under_journald_every_line_is_written_once(cfg, collection, tmp_path):
    from tests.test_daemon import seed
    seed(collection, [(1, 200)])
    log_file = tmp_path / "archiverd.log"
    # a log file configured: the file only (journald would otherwise store each line a second time)
    read, write, stream = _journald_pipe()
    assert _run_once_with_stderr(cfg, write, JOURNAL_STREAM=stream, ARCHIVERD_LOG_FILE=str(log_file)) == 0
    os.close(write)
    with os.fdopen(read) as f:
        assert "event=" not in f.read()  # (the command's own one-line summary is not a log line)
    assert "event=cycle.done" in log_file.read_text()
    # no log file: journald only, each line with its syslog priority for `journalctl -p`
    seed(collection, [(2, 200)])
    read, write, stream = _journald_pipe()
    assert _run_once_with_stderr(cfg, write, JOURNAL_STREAM=stream) == 0
    os.close(write)
    with os.fdopen(read) as f:
        lines = f.read().splitlines()
    assert any(line.startswith("<6>ts=") and "event=cycle.done" in line for line in lines), lines
    assert all(line.startswith(("<6>", "<4>", "<3>")) for line in lines if "event=" in line), lines
    # not under journald (a person, cron): the terminal too
    seed(collection, [(3, 200)])
    proc = subprocess.run([sys.executable, "-m", "archiverd", "run", "--once"],
                          env=env_for(cfg, ARCHIVERD_LOG_FILE=str(log_file)), capture_output=True, text=True,
                          timeout=120)
    assert "event=cycle.done" in proc.stderr and log_file.read_text().count("event=cycle.done") == 2


def test_log_file_is_private_whatever_the_umask(cfg, collection, tmp_path):
    log_file = tmp_path / "logs" / "archiverd.log"
    log_file.parent.mkdir()
    collection.database.create_collection(cfg.collection)
    for group_access, mode in (("0", 0o600), ("1", 0o640)):
        proc = subprocess.run(["sh", "-c", f'umask 022; exec "{sys.executable}" -m archiverd run --once'],
                              env=env_for(cfg, ARCHIVERD_LOG_FILE=str(log_file), ARCHIVERD_GROUP_ACCESS=group_access),
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert stat.S_IMODE(log_file.stat().st_mode) == mode
    # a person's `status` or dry run does not write to the daemon's log file (nor create it as another user)
    before = log_file.read_text()
    for command in (["status"], ["run", "--dry-run"]):
        proc = subprocess.run([sys.executable, "-m", "archiverd", *command],
                              env=env_for(cfg, ARCHIVERD_LOG_FILE=str(log_file)), capture_output=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
    assert log_file.read_text() == before


def test_log_file_mistakes(cfg, tmp_path):
    for path, message in ((tmp_path / "missing" / "a.log", "does not exist"), (tmp_path, "is a directory")):
        proc = subprocess.run([sys.executable, "-m", "archiverd", "run", "--once"],
                              env=env_for(cfg, ARCHIVERD_LOG_FILE=str(path)), capture_output=True, text=True,
                              timeout=60)
        assert proc.returncode == 5 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    assert not (tmp_path / "missing").exists()


def test_without_a_log_file_logs_reads_the_journal(tmp_path):
    """No log file: the daemon logs to journald, so `archiverd logs` asks journalctl (here a stand-in
    that prints the arguments it was given)."""
    fake = tmp_path / "journalctl"
    fake.write_text('#!/bin/sh\necho "journalctl $*"\n')
    fake.chmod(0o755)
    env = _env(PATH=f"{tmp_path}:{os.environ['PATH']}")
    run = lambda *a: subprocess.run([sys.executable, "-m", "archiverd", "logs", *a], env=env,  # noqa: E731
                                    capture_output=True, text=True, timeout=60).stdout.strip()
    assert run() == "journalctl -u archiverd --no-pager -o cat -n 50"
    assert run("-n", "5", "-f", "--unit", "archiverd-eat") == "journalctl -u archiverd-eat --no-pager -o cat -n 5 -f"
    assert run("--since", "2026-11-25T10:00:00+01:00") == \
        "journalctl -u archiverd --no-pager -o cat -n all --since 2026-11-25 09:00:00 UTC"
    said = subprocess.run([sys.executable, "-m", "archiverd", "logs"], env=env, capture_output=True, text=True,
                          timeout=60).stderr  # journalctl -o cat prints nothing for an empty journal: say where
    assert said.strip() == ("archiverd: no ARCHIVERD_LOG_FILE: reading journalctl -u archiverd (a command run by "
                            "hand logs to its own stderr)")
