"""A real MongoDB-wire server for tests: SecantusDB in its own process, spoken to over a socket.

archiverd never imports SecantusDB (GPL-2.0, beta); only this test helper starts its command.
Set ARCHIVERD_TEST_MONGODB_URI to run the suite against another server (a real replica set).
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, storage: Path, port: int | None = None, *, test_commands: bool = False) -> None:
        self.storage = storage
        self.port = port or free_port()
        self.test_commands = test_commands  # mongod's enableTestCommands: configureFailPoint
        self.proc: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    def start(self, wait: bool = True) -> "Server":
        exe = shutil.which("secantusd-py") or str(Path(sys.executable).with_name("secantusd-py"))
        self.storage.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen([exe, "--host", "127.0.0.1", "--port", str(self.port), "--storage-path",
                                      str(self.storage)] + (["--enable-test-commands"] if self.test_commands else []), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        wait_listening(self.proc, self.port, "secantusd-py", timeout)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop it and wait for the process to be gone (its storage may then be reused)."""
        stop_group(self.proc, sig)
        self.proc = None


def wait_listening(proc: subprocess.Popen | None, port: int, name: str, timeout: float = 60) -> None:
    """Wait until a server process accepts connections on `port`; RuntimeError if it exits first
    or does not within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{name} did not open its port")


def stop_group(proc: subprocess.Popen | None, sig: int = signal.SIGTERM) -> None:
    """Signal a server's process group and wait until it is gone (SIGKILL after 30 s)."""
    if proc is None or proc.poll() is not None:
        return
    os.killpg(proc.pid, sig)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
