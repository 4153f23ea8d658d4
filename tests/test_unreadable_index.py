"""A committed segment whose index does not load (emptied, overwritten, a directory in its place) is
never silently left out of an answer: `get`, `find`, `export` and `search` over the whole archive,
and `erase`, refuse with exit 4 naming it -- instead of "not archived", a short export with exit 0,
or an erase that reports success while a copy stays in the video. Nothing is written or removed."""
from __future__ import annotations

import datetime as dt
import hashlib
import json

import bson
import pytest
from bson import ObjectId

from archiverd import config, write_segment
from archiverd.format import index
from archiverd.store import layout
from tests.test_erase import run

DAYS = ["2025-01-10", "2025-01-11"]
VICTIM = ObjectId(f"{3:024x}")


def _doc(n: int, day: str) -> bytes:
    when = dt.datetime.fromisoformat(day).replace(hour=1 + n, tzinfo=dt.timezone.utc)
    return bson.encode({"_id": ObjectId(f"{n:024x}"), "timestamp": when, "text": f"document {n}"})


@pytest.fixture
def archive(tmp_path):
    """Two days; the victim is in both (day 1 holds a later copy of it)."""
    env = {"ARCHIVERD_ARCHIVE_DIR": str(tmp_path / "archives")}
    cfg = config.load(environ=env)
    videos = []
    for day, numbers in zip(DAYS, ([0, 1, 2, 3], [3, 10, 11])):
        video = layout.day_dir(cfg.collection_dir, day) / "part-0001.mkv"
        video.parent.mkdir(parents=True)
        write_segment(video, [_doc(n, day) for n in numbers])
        videos.append(video)
    run("find", "--count", env=env, code=0)  # the catalog knows both segments before the damage
    return cfg, env, videos


def _empty(path):
    path.write_bytes(b"")


def _not_json(path):
    path.write_bytes(b"\x00" * 4096)


def _directory(path):
    path.unlink()
    path.mkdir()


def _files(cfg) -> dict[str, str]:
    return {p.relative_to(cfg.collection_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in cfg.collection_dir.rglob("part-*") if p.is_file()}


@pytest.mark.parametrize("damage", [_empty, _not_json, _directory])
def test_reads_of_the_whole_archive_refuse_rather_than_leave_a_segment_out(archive, damage):
    cfg, env, videos = archive
    damage(index.path_for(videos[0]))
    before = _files(cfg)
    for args in (["get", str(ObjectId(f"{1:024x}"))], ["get", str(ObjectId(f"{10:024x}"))], ["find", "--count"],
                 ["find", "--filter", '{"text": "document 2"}'], ["export"]):
        proc = run(*args, env=env, code=4)
        assert "2025/01/10/part-0001.mkv" in proc.stderr and "does not load" in proc.stderr, (args, proc.stderr)
        assert proc.stdout == "", args  # not a partial answer
        assert proc.stderr.count("\n") == 1
    proc = run("catalog", "rebuild", env=env, code=4)
    assert "catalog rebuilt: 1 segment, 3 documents" in proc.stdout and "2025/01/10/part-0001.mkv" in proc.stderr
    assert _files(cfg) == before


def test_erase_refuses_while_an_index_does_not_load(archive):
    cfg, env, videos = archive
    _empty(index.path_for(videos[0]))
    before = _files(cfg)
    for args in (["--dry-run"], []):
        proc = run("erase", str(VICTIM), "--reason", "r", *args, env=env, code=4)
        assert "2025/01/10/part-0001.mkv" in proc.stderr and "does not load" in proc.stderr, proc.stderr
    assert _files(cfg) == before  # the copy in day 1 stays too: an erase is all or nothing
    assert json.loads(run("get", "--segment", videos[1], str(VICTIM), env=env, code=0).stdout)["text"] == "document 3"
