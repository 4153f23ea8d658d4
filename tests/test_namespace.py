"""A database or collection that does not exist is an error that creates nothing (restore's target
excepted: restoring into a new collection is what restore is for)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.test_cli_daemon import env_for, run
from tests.test_daemon import seed


def _databases(collection) -> set[str]:
    return set(collection.database.client.list_database_names())


def test_misspelt_database_is_an_error_and_nothing_is_created(cfg, collection):
    seed(collection, [(1, 200)])
    typo = cfg.database + "x"
    for command in (["run", "--once"], ["config", "--check"]):
        proc = run(cfg, *command, "--db", typo, code=3)
        assert f"database {typo!r} does not exist" in proc.stderr + proc.stdout
        assert f"did you mean {cfg.database!r}" in proc.stderr + proc.stdout
    proc = run(cfg, "run", code=3, MONGODB_DATABASE_NAME=typo)  # the daemon stops too (systemd: no restart)
    assert "does not exist" in proc.stderr
    assert typo not in _databases(collection)
    assert not any(cfg.archive_dir.iterdir())  # no state file, no segment directory


def test_misspelt_collection_is_an_error_and_nothing_is_created(cfg, collection):
    seed(collection, [(1, 200)])
    proc = run(cfg, "run", "--once", "--collection", "eat_agent_experience", code=3)
    assert "collection 'eat_agent_experience' does not exist" in proc.stderr
    assert "did you mean 'eat_agent_experiences'" in proc.stderr
    assert set(collection.database.list_collection_names()) == {"eat_agent_experiences"}  # no lease collection
    assert collection.count_documents({}) == 1
    assert not any(cfg.archive_dir.iterdir())


@pytest.mark.parametrize("command", [["status"], ["run", "--dry-run"]])
def test_read_only_commands_report_a_misspelt_namespace(cfg, collection, command):
    seed(collection, [(1, 200)])
    proc = run(cfg, *command, "--collection", "eat_agent_experience")
    assert proc.returncode == 3 and "does not exist" in proc.stderr


def test_restore_may_create_its_target(cfg, collection, tmp_path):
    seed(collection, [(i, 200) for i in range(2)])
    run(cfg, "run", "--once", code=0)
    segments = [str(p) for p in cfg.collection_dir.rglob("part-*.mkv")]
    target = cfg.database + "_restored_new"
    proc = subprocess.run([sys.executable, "-m", "archiverd", "restore", *segments, "--to", f"{target}.fresh"],
                          env=env_for(cfg), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    client = collection.database.client
    try:
        assert client[target]["fresh"].count_documents({}) == 2
    finally:
        client.drop_database(target)


def test_restore_of_a_repairable_segment_restores_everything_and_says_so(cfg, collection):
    """Parity recovers every document: all are restored byte for byte, the segment is named with
    the advice to repair it, and the exit code is a warning (1), not a loss (4)."""
    old = seed(collection, [(i, 200) for i in range(12)], embeddings=True)
    run(cfg, "run", "--once", code=0)
    (video,) = cfg.collection_dir.rglob("part-*.mkv")
    data = bytearray(video.read_bytes())
    data[len(data) // 2] ^= 0x10  # inside one frame: its CRC fails and parity rebuilds it
    video.write_bytes(bytes(data))
    proc = run(cfg, "restore", video, "--to", f"{cfg.database}.back", code=1)
    assert "damaged (repairable)" in proc.stderr and "check --repair" in proc.stderr
    assert {d["_id"]: d.raw for d in collection.database["back"].find()} == old
