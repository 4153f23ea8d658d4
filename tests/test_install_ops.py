"""This wave's commands from the wheel, installed into a fresh venv: status, list, info (and inspect),
progress and statistics -- the console script a database host runs, not the checkout."""
from __future__ import annotations

import json
import os
import subprocess

from pymongo import MongoClient

from tests.test_status import put


def test_status_list_info_and_progress_from_the_wheel(installed, mongo_uri, tmp_path):
    exe = str(installed / "bin" / "archiverd")
    database = f"install_ops_{os.getpid()}"
    archives = tmp_path / "archives"
    archives.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARCHIVERD_", "MONGODB_", "ARCHIVE_"))}
    env.update(MONGODB_URI=mongo_uri, MONGODB_DATABASE_NAME=database, ARCHIVERD_ARCHIVE_DIR=str(archives))

    def cli(*args: str, code: int) -> subprocess.CompletedProcess:
        proc = subprocess.run([exe, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert "Traceback" not in proc.stderr, proc.stderr
        assert proc.returncode == code, (args, proc.returncode, proc.stdout, proc.stderr)
        return proc

    with MongoClient(mongo_uri) as client:
        collection = client[database]["eat_agent_experiences"]
        try:
            put(collection, [(i, 100 + i % 2) for i in range(6)] + [(9, 1)])
            assert json.loads(cli("status", "--json", code=2).stdout)["ready"] == 6  # overdue: not archived yet
            once = cli("run", "--once", "--progress", "--progress-interval", "0.1", "--statistics", code=0)
            assert "archiverd: progress: archiving, 6 of 6 documents (100.0%)" in once.stderr
            assert "statistics: archiving: 6 documents" in once.stderr
            status = json.loads(cli("status", "--json", code=0).stdout)
            assert status["health"]["ok"] and status["segments"] == 2 and status["documents_on_disk"] == 6
            listing = json.loads(cli("list", "--json", code=0).stdout)
            assert listing["totals"]["documents"] == 6 and len(listing["days"]) == 2
            segment = archives / database / "eat_agent_experiences" / listing["days"][0]["day"].replace("-", "/") \
                / "part-0001.mkv"
            info = json.loads(cli("info", "--json", str(segment), code=0).stdout)
            assert info["documents"] == listing["days"][0]["documents"]
            assert json.loads(cli("inspect", "--json", str(segment), code=0).stdout) == info
            out = tmp_path / "day.jsonl"
            exported = cli("export", "--statistics", "-o", str(out), str(segment), code=0)
            assert len(out.read_text().splitlines()) == info["documents"] and "statistics: exporting" in exported.stderr
        finally:
            client.drop_database(database)
