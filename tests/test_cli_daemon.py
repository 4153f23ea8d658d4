"""The daemon-side commands as a user or systemd runs them: real processes, real server."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time


from archiverd.store import layout
from tests.test_daemon import remaining, seed


def env_for(cfg, **extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARCHIVERD_", "MONGODB_", "ARCHIVE_"))}
    env.update({"MONGODB_URI": cfg.uri, "MONGODB_DATABASE_NAME": cfg.database,
                "ARCHIVERD_ARCHIVE_DIR": str(cfg.archive_dir), "ARCHIVERD_RETRY_SECONDS": "5",
                "ARCHIVERD_SERVER_TIMEOUT_MS": "2000"})
    env.update(extra)
    return env


def run(cfg, *args, code=None, **extra):
    proc = subprocess.run([sys.executable, "-m", "archiverd", *map(str, args)], capture_output=True, text=True,
                          env=env_for(cfg, **extra), timeout=300)
    assert "Traceback" not in proc.stderr, proc.stderr
    if code is not None:
        assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    return proc


def test_run_once_status_and_restore_from_the_command_line(cfg, collection):
    old = seed(collection, [(i, 100 + i) for i in range(6)])
    seed(collection, [(50, 3)])
    plan = run(cfg, "run", "--dry-run", code=0).stdout
    assert "would archive and then delete 6 documents" in plan
    out = run(cfg, "run", "--once", code=0)
    assert "event=segment.sealed" in out.stderr and "event=cycle.done" in out.stderr
    again = run(cfg, "run", "--once", code=0)  # cron's next run: the lease was released, not taken over
    assert "event=cycle.done" in again.stderr and "lease.taken_over" not in again.stderr, again.stderr
    status = json.loads(run(cfg, "status", "--json", code=0).stdout)
    assert status["expired"] == 0 and status["segments"] == 6 and status["last_seal"]["documents"] == 1
    assert status["database"] == "reachable" and status["pending_deletes"] == []
    segments = [str(p) for p in layout.segments(cfg.collection_dir)]
    proc = run(cfg, "restore", *segments, "--to", f"{cfg.database}.restored", code=0)
    assert "inserted 6 documents" in proc.stderr
    restored = {d["_id"]: d.raw for d in collection.database["restored"].find()}
    assert restored == old
    proc = run(cfg, "restore", segments[0], "--to", f"{cfg.database}.restored", code=1)
    assert "1 _id already existed (not overwritten)" in proc.stderr


def test_credentials_never_reach_logs_or_output(cfg, tmp_path):
    log_file = tmp_path / "archiverd.log"
    uri = "mongodb://archiver:Sup3rSecret@127.0.0.1:1/?directConnection=true"
    proc = run(cfg, "run", "--once", code=6, MONGODB_URI=uri, ARCHIVERD_LOG_FILE=str(log_file),
               ARCHIVERD_RETRY_SECONDS="1", ARCHIVERD_SERVER_TIMEOUT_MS="200")
    assert "cannot reach MongoDB" in proc.stderr
    status = run(cfg, "status", code=6, MONGODB_URI=uri, ARCHIVERD_SERVER_TIMEOUT_MS="200", ARCHIVERD_RETRY_SECONDS="1")
    for text in (proc.stdout, proc.stderr, status.stdout, status.stderr, log_file.read_text()):
        assert "Sup3rSecret" not in text
    assert "archiver:***@" in proc.stderr
    # mongorestore's habit: credentials in --to work, with a warning, and are never echoed
    proc = run(cfg, "restore", "x.mkv", "--to", "mongodb://u:Pw0rd99@h/db.c", code=4)
    assert "password on the command line is visible" in proc.stderr and "Pw0rd99" not in proc.stderr


def test_bad_configuration_exits_3(cfg):
    assert "threshold_days must be positive" in run(cfg, "run", "--once", code=3, ARCHIVE_THRESHOLD_DAYS="0").stderr
    assert "unknown environment variable" in run(cfg, "status", code=3, ARCHIVERD_TRESHOLD="1").stderr


def test_missing_archive_dir_stops_with_no_delete(cfg, collection, tmp_path):
    seed(collection, [(1, 200)])
    proc = run(cfg, "run", "--once", code=5, ARCHIVERD_ARCHIVE_DIR=str(tmp_path / "typo"))
    assert "does not exist" in proc.stderr and str(tmp_path / "typo") in proc.stderr
    assert len(remaining(collection)) == 1 and not (tmp_path / "typo").exists()


def _start_daemon(cfg, **extra) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "archiverd", "run"], env=env_for(cfg, **extra),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigterm_stops_the_daemon_cleanly_and_systemd_is_notified(cfg, collection, tmp_path):
    seed(collection, [(i, 150) for i in range(3)])
    sock_path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.settimeout(30)
    daemon = _start_daemon(cfg, NOTIFY_SOCKET=sock_path, ARCHIVERD_POLL_SECONDS="300", WATCHDOG_USEC="2000000")
    try:
        messages = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any("archived" in m for m in messages):
            messages.append(sock.recv(4096).decode())
        assert any("READY=1" in m for m in messages)
        assert any("STATUS=archived 3 documents" in m for m in messages)
        assert any("WATCHDOG=1" in m for m in messages) or "WATCHDOG=1" in sock.recv(4096).decode()
        daemon.send_signal(signal.SIGTERM)
        out, err = daemon.communicate(timeout=60)
    finally:
        if daemon.poll() is None:
            daemon.kill()
        sock.close()
    assert daemon.returncode == 0, err
    assert "event=daemon.stopping" in err and "event=daemon.stopped" in err
    assert not remaining(collection)


def test_logs_follow_prints_new_lines(cfg, tmp_path):
    log_file = tmp_path / "a.log"
    log_file.write_text("first line\n")
    proc = subprocess.Popen([sys.executable, "-m", "archiverd", "logs", "-f"],
                            env=env_for(cfg, ARCHIVERD_LOG_FILE=str(log_file)), stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "first line\n"
        time.sleep(1)
        with open(log_file, "a") as f:
            f.write("second line\n")
        assert proc.stdout.readline() == "second line\n"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
    assert proc.returncode == 0
