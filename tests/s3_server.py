"""A real S3-API server for tests: moto's standalone server in its own process, over HTTP.

Started once per test session (tests/conftest.py `s3`); each test gets a bucket of its own. It
honours conditional puts (If-None-Match: *), ranged GETs and SHA-256 checksums, which is what the
S3 store relies on; it does not check a sent SHA-256 against the body (real S3 does).
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.mongo_server import free_port, stop_group, wait_listening


class S3Server:
    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environment(self) -> dict[str, str]:
        """What boto3 (and so archiverd) needs to reach it: endpoint, credentials, region."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1"}

    def start(self) -> S3Server:
        exe = shutil.which("moto_server") or str(Path(sys.executable).with_name("moto_server"))
        self.proc = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(self.port)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        wait_listening(self.proc, self.port, "moto_server")
        return self

    def stop(self) -> None:
        stop_group(self.proc)
        self.proc = None
