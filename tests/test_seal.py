"""The seal publishes exactly what was verified, and only for the lease holder; after a delete a
sealed file is the only copy, so nothing archiverd does ever removes or replaces one."""
from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time

import bson
import pytest
from bson.raw_bson import RawBSONDocument

from archiverd import SegmentError, SegmentReader, StorageError, faults, write_segment
from archiverd.format import index, rebuild
from archiverd.format.reader import published_mismatch
from archiverd.service.archiver import Archiver
from archiverd.service.daemon import Daemon
from archiverd.service.source import LeaseLost, Source
from archiverd.service.state import State
from archiverd.store import layout, objects
from bench.corpus import experience
from tests.reliability import ROOT, World, crash_cycle_at, wait_stopped

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def _seed(collection, n: int, days_ago: float = 120, start: int = 0) -> dict:
    docs = [RawBSONDocument(bson.encode(experience(i, when=NOW - dt.timedelta(days=days_ago))))
            for i in range(start, start + n)]
    collection.insert_many(docs)
    return {d["_id"]: d.raw for d in docs}


def _published(directory) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if p.is_file() and not p.name.startswith("."))


def test_no_temporary_name_exists_while_sealing(tmp_path, text_docs):
    seen: list[list[str]] = []

    def look(point: str) -> None:
        if point in ("seal:video-written", "seal:verified", "seal:index-written"):
            seen.append(sorted(os.listdir(tmp_path)))

    with faults.installed(look):
        write_segment(tmp_path / "part-0001.mkv", text_docs[:20])
    assert seen == [[], [], []]  # anonymous (O_TMPFILE): nobody can open, truncate or replace them


@pytest.fixture
def named_temps(monkeypatch):
    """Force the fallback for file systems without O_TMPFILE: uniquely named dot-files."""
    monkeypatch.setattr(os, "O_TMPFILE", 0)


def _temp_video(directory):
    return next(p for p in directory.iterdir() if p.name.startswith(".part-0001.mkv."))


def test_a_temp_replaced_after_verify_is_never_published(tmp_path, text_docs, named_temps):
    """Publishing links the verified inode, never whatever the name points at now: a replaced temp
    file leaves that inode without a name, which the kernel refuses to link again."""
    def swap(point: str) -> None:
        if point == "seal:verified":
            impostor = tmp_path / "impostor"
            impostor.write_bytes(b"not what was verified")
            os.replace(impostor, _temp_video(tmp_path))

    with faults.installed(swap), pytest.raises(StorageError, match="cannot publish"):
        write_segment(tmp_path / "part-0001.mkv", text_docs[:20])
    assert _published(tmp_path) == []


def test_the_named_fallback_publishes_the_verified_bytes(tmp_path, text_docs, named_temps):
    idx = write_segment(tmp_path / "part-0001.mkv", text_docs[:20])
    assert published_mismatch(tmp_path / "part-0001.mkv", idx) is None
    assert list(SegmentReader(tmp_path / "part-0001.mkv")) == text_docs[:20]
    assert sorted(os.listdir(tmp_path)) == ["part-0001.index.json", "part-0001.mkv", "part-0001.vectors"]


def test_a_temp_truncated_after_verify_is_never_committed(tmp_path, text_docs, named_temps):
    def truncate(point: str) -> None:
        if point == "seal:verified":
            os.truncate(_temp_video(tmp_path), 0)

    with faults.installed(truncate), pytest.raises(SegmentError, match="differs from what was verified"):
        write_segment(tmp_path / "part-0001.mkv", text_docs[:20])
    assert not index.path_for(tmp_path / "part-0001.mkv").exists()  # not committed: nothing can be deleted


def test_an_instance_that_lost_its_lease_publishes_and_deletes_nothing(cfg, collection):
    docs = _seed(collection, 12)
    source = Source(cfg)
    lease = source.acquire_lease()

    def steal(point: str) -> None:
        if point == "seal:index-written":  # just before the names would appear
            source.leases.update_one({"_id": cfg.namespace}, {"$set": {"owner": "someone-else"},
                                                               "$inc": {"token": 1}})

    with faults.installed(steal), pytest.raises(LeaseLost, match="nothing published"):
        Archiver(cfg, source, State(cfg.state_file)).run_cycle(lease)
    assert _published(cfg.collection_dir) == ["archiverd-archive-id", "archiverd-state.json"]  # no segment file
    assert {d["_id"] for d in collection.find()} == set(docs)
    assert State(cfg.state_file).pending == []


def test_a_moved_away_index_never_costs_the_video(cfg, collection, tmp_path):
    """The sweep used to delete a sealed video whose index was missing: the only copy."""
    docs = _seed(collection, 8)
    assert Daemon(cfg).once()[0] == 0
    (video,) = layout.segments(cfg.collection_dir)
    before = video.read_bytes()
    index.path_for(video).rename(tmp_path / "moved-away.json")
    _seed(collection, 5, days_ago=100, start=100)
    assert Daemon(cfg).once()[0] == 0  # another cycle, with recovery and sweep
    assert video.read_bytes() == before
    assert objects.LocalStore(cfg.collection_dir).orphans() == [video.relative_to(cfg.collection_dir).as_posix()]
    from archiverd.cli.status_cmd import collect
    assert collect(cfg)["orphans"] == [str(video.relative_to(cfg.collection_dir))]
    rebuild.reindex(video)
    archived = {bson.decode(raw)["_id"]: raw for p in layout.segments(cfg.collection_dir) for raw in SegmentReader(p)}
    assert {k: v for k, v in archived.items() if k in docs} == docs


def test_a_published_video_without_index_is_committed_by_recovery(cfg, collection):
    docs = _seed(collection, 9)
    crash_cycle_at(cfg, "seal:video-published")
    (video,) = layout.videos(cfg.collection_dir)
    assert not index.path_for(video).exists() and {d["_id"] for d in collection.find()} == set(docs)
    code, stats = Daemon(cfg).once()
    assert code == 0 and stats.recovered == 9 and stats.sealed == 0
    assert not list(collection.find()) and sorted(SegmentReader(video)) == sorted(docs.values())


def test_a_journaled_segment_that_fails_verification_is_set_aside(cfg, collection):
    docs = _seed(collection, 6)
    crash_cycle_at(cfg, "commit")
    (video,) = layout.segments(cfg.collection_dir)
    video.write_bytes(video.read_bytes()[:2000])  # damaged beyond repair before the deletes ran
    damaged = video.read_bytes()
    code, stats = Daemon(cfg).once()
    assert code == 1 and stats.set_aside == 1
    assert video.read_bytes() == damaged  # kept, never removed
    remaining = {d["_id"] for d in collection.find()}
    assert remaining == set()  # archived again into a new part, then deleted against it
    assert str(video.relative_to(cfg.collection_dir)) in State(cfg.state_file).get("set_aside")
    fresh = [p for p in layout.segments(cfg.collection_dir) if p != video]
    assert {bson.decode(r)["_id"] for p in fresh for r in SegmentReader(p)} == set(docs)


def test_a_paused_instance_resumed_after_another_took_over_publishes_nothing(mongo_uri, tmp_path):
    """Instance A is paused (SIGSTOP) after verifying its segment; its lease expires; B takes the
    lease and dies mid-write; A resumes. A must not publish (its lease is gone) and nothing may be
    deleted; a clean run afterwards archives everything."""
    world = World(mongo_uri, tmp_path, ARCHIVERD_SEGMENT_MAX_DOCS="50")
    try:
        world.seed(expired=30, fresh=2)
        a = subprocess.Popen([sys.executable, "-m", "archiverd", "run", "--once"], cwd=ROOT,
                             env=world.env(_ARCHIVERD_CRASH_AT="seal:verified@1:STOP"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wait_stopped(a)  # A reached the seal
        time.sleep(3.5)  # A's 3 s lease expires while it is paused
        b = world.cli("run", "--once", _ARCHIVERD_CRASH_AT="appended@5")
        assert b.returncode == -signal.SIGKILL, b.stderr
        a.send_signal(signal.SIGCONT)
        _, a_err = a.communicate(timeout=120)
        assert a.returncode != 0 and "nothing published" in a_err, a_err
        after = world.check()
        assert after.safe and after.archived == 0, after
        assert not [p for p in world.collection_dir.rglob("*.mkv") if p.stat().st_size == 0]
        assert world.run_once().returncode == 0
        done = world.check()
        assert done.converged and done.archived == 30, done
    finally:
        world.close()
