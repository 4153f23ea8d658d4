"""A person waits at most 15 s for an unreachable server; the daemon waits as long as it takes.

Two kinds of unreachable: a closed port (refused at once) and a blackhole (a socket that accepts
connections and never answers a byte: a wedged server, a firewall that swallows packets).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import bson
import pytest

from archiverd import write_segment
from tests.mongo_server import Server, free_port
from tests.test_daemon import doc

LIMIT = 15.0


def _env(uri: str, archive_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARCHIVERD_", "MONGODB_", "ARCHIVE_"))}
    env.update({"MONGODB_URI": uri, "ARCHIVERD_ARCHIVE_DIR": str(archive_dir), **extra})
    return env


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


@pytest.fixture
def blackhole():
    """A listening socket that never accepts: the kernel completes the TCP handshake, nothing answers."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    yield f"127.0.0.1:{s.getsockname()[1]}"
    s.close()


@pytest.mark.parametrize("kind", ["closed port", "blackhole"])
def test_interactive_commands_give_up_within_15_seconds(kind, blackhole, tmp_path):
    host = f"127.0.0.1:{free_port()}" if kind == "closed port" else blackhole
    (tmp_path / "archives").mkdir()
    segment = tmp_path / "part-0001.mkv"
    write_segment(segment, [doc(i, 200).raw for i in range(3)], source={"db": "d", "collection": "c"})
    commands = [["status"], ["status", "--json"], ["config", "--check"], ["run", "--dry-run"],
                ["restore", str(segment), "--to", "scratch.restored"],
                ["restore", str(segment), "--to", f"mongodb://{host}/scratch.restored?directConnection=true"]]
    # the defaults of a fresh install: no timeout settings, retries as configured for the daemon
    env = _env(f"mongodb://{host}/?directConnection=true", tmp_path / "archives")
    started, procs = [], []
    for command in commands:  # all at once: each is timed on its own
        started.append(time.monotonic())
        procs.append(subprocess.Popen([sys.executable, "-m", "archiverd", *command], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = []
    for command, start, proc in zip(commands, started, procs):
        out, err = proc.communicate(timeout=60)
        took = time.monotonic() - start
        assert took < LIMIT, (command, took)
        assert proc.returncode == 6, (command, proc.returncode, out, err)
        assert "Traceback" not in err
        said = out + err
        assert "cannot reach MongoDB" in said and host in said, (command, said)
        outputs.append(out)
    assert json.loads(outputs[1])["database"].startswith("unreachable")


def test_daemon_waits_for_the_server_with_backoff_and_then_archives(tmp_path):
    """`archiverd run` starts while MongoDB is down: it says so (log, status, systemd STATUS), backs
    off, and archives once the server is back."""
    server = Server(tmp_path / "db")
    server.start()
    database = "waiting"
    from pymongo import MongoClient
    with MongoClient(server.uri) as client:
        client[database]["eat_agent_experiences"].insert_many([bson.decode(doc(i, 200).raw) for i in range(4)])
    server.stop()
    (tmp_path / "archives").mkdir()
    log_file = tmp_path / "archiverd.log"
    sock_path = str(tmp_path / "notify.sock")
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(sock_path)
    notify.settimeout(1)
    env = _env(server.uri, tmp_path / "archives", MONGODB_DATABASE_NAME=database, ARCHIVERD_LOG_FILE=str(log_file),
               ARCHIVERD_SERVER_TIMEOUT_MS="500", NOTIFY_SOCKET=sock_path)
    daemon = subprocess.Popen([sys.executable, "-m", "archiverd", "run"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    messages: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _read(log_file).count("event=mongodb.unreachable") < 3:
            time.sleep(0.2)
        lines = [line for line in _read(log_file).splitlines() if "event=mongodb.unreachable" in line]
        assert len(lines) >= 3, _read(log_file)
        waits = [float(line.split("retry_in_seconds=")[1].split()[0]) for line in lines]
        assert waits[0] < waits[-1], waits  # backing off
        status = subprocess.run([sys.executable, "-m", "archiverd", "status", "--json"], env=env, capture_output=True,
                                text=True, timeout=30)
        assert status.returncode == 6
        assert "retrying" in json.loads(status.stdout)["last_error"]["error"]
        while True:
            try:
                messages.append(notify.recv(4096).decode())
            except TimeoutError:
                break
        assert any("READY=1" in m for m in messages) and any("waiting for MongoDB" in m for m in messages)
        server.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "event=cycle.done" not in _read(log_file):
            time.sleep(0.3)
        assert "event=cycle.done" in _read(log_file)
        with MongoClient(server.uri) as client:
            assert client[database]["eat_agent_experiences"].count_documents({}) == 0
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(60) == 0
    finally:
        if daemon.poll() is None:
            daemon.kill()
        notify.close()
        server.stop()


def test_daemon_waiting_for_the_server_stops_at_once_on_sigterm(tmp_path):
    (tmp_path / "archives").mkdir()
    log_file = tmp_path / "archiverd.log"
    env = _env(f"mongodb://127.0.0.1:{free_port()}/?directConnection=true", tmp_path / "archives",
               ARCHIVERD_LOG_FILE=str(log_file), ARCHIVERD_SERVER_TIMEOUT_MS="300")
    daemon = subprocess.Popen([sys.executable, "-m", "archiverd", "run"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _read(log_file).count("event=mongodb.unreachable") < 3:
            time.sleep(0.1)
        assert _read(log_file).count("event=mongodb.unreachable") >= 3
        daemon.send_signal(signal.SIGTERM)
        stopped = time.monotonic()
        assert daemon.wait(10) == 0
        assert time.monotonic() - stopped < 5  # not after the next backoff
        assert "event=daemon.stopped" in _read(log_file)
    finally:
        if daemon.poll() is None:
            daemon.kill()
