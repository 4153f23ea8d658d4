"""The daemon against a real MongoDB-wire server (SecantusDB over a socket), real segment files."""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import threading
import time

import bson
import pytest
from bson.raw_bson import RawBSONDocument
from pymongo import WriteConcern

from archiverd import SegmentReader, config, faults
from archiverd.store import layout
from archiverd.service import expiry
from archiverd.service.archiver import Archiver
from archiverd.service.daemon import ChangeWatcher, Daemon
from archiverd.errors import EXIT_OK, EXIT_WARNING
from archiverd.service.source import LeaseLost, Source
from archiverd.service.state import State
from bench.corpus import experience
from tests.reliability import crash_cycle_at, wait_until

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def doc(i: int, days_ago: float, embeddings: bool = False) -> RawBSONDocument:
    return RawBSONDocument(bson.encode(experience(i, when=NOW - dt.timedelta(days=days_ago), embeddings=embeddings)))


def seed(collection, spec: list[tuple[int, float]], embeddings: bool = False) -> dict[object, bytes]:
    docs = [doc(i, days, embeddings) for i, days in spec]
    collection.insert_many(docs)
    return {d["_id"]: d.raw for d in docs}


def archived(cfg) -> dict[object, bytes]:
    out = {}
    for path in layout.segments(cfg.collection_dir):
        for raw in SegmentReader(path):
            out[bson.decode(raw)["_id"]] = raw
    return out


def remaining(collection) -> set:
    return {d["_id"] for d in collection.find({}, projection={"_id": 1})}


def test_expired_are_archived_and_deleted_fresh_untouched(cfg, collection):
    old = seed(collection, [(i, 100 + i % 5) for i in range(30)] + [(100, 120)], embeddings=False)
    old.update(seed(collection, [(200, 130), (201, 95)], embeddings=True))
    fresh = seed(collection, [(300 + i, i * 10) for i in range(8)])  # 0..70 days: not expired
    code, stats = Daemon(cfg).once()
    assert code == EXIT_OK and stats.read == stats.sealed == stats.deleted == len(old)
    assert remaining(collection) == set(fresh)
    assert archived(cfg) == old  # byte-exact, every one
    days = {p.parent.relative_to(cfg.collection_dir) for p in layout.segments(cfg.collection_dir)}
    expect = {layout.day_dir(cfg.collection_dir, bson.decode(r, config_codec())["timestamp"].strftime("%Y-%m-%d"))
              .relative_to(cfg.collection_dir) for r in old.values()}
    assert days == expect
    for path in layout.segments(cfg.collection_dir):
        assert SegmentReader(path).verify().ok


def config_codec():
    from archiverd.format.documents import DECODE_OPTIONS
    return DECODE_OPTIONS


def test_documents_without_a_date_are_never_touched(cfg, collection):
    collection.insert_many([RawBSONDocument(bson.encode(d)) for d in (
        {"_id": "missing"}, {"_id": "string", "timestamp": "2001-01-01"}, {"_id": "number", "timestamp": 0},
        {"_id": "null", "timestamp": None})])
    seed(collection, [(1, 200)])
    code, stats = Daemon(cfg).once()
    assert stats.deleted == 1
    assert remaining(collection) == {"missing", "string", "number", "null"}
    counts = Source(cfg).counts(expiry.watermark_ms(cfg), expiry.cutoff_ms(cfg))
    assert counts["expired"] == 0 and counts["skipped"] == {
        "date field missing": 1, "date field is null": 1, "date field is an array": 0,
        "date field is not a date": 2}


def test_a_days_read_matches_dates_only_and_is_served_by_an_index_on_the_date_field(cfg, collection):
    """A range of dates matches dates only (type bracketing), so the day's query carries no `$type`
    clause: with one, the test server ignored the index and scanned the whole collection for each
    day (the demo spent 40 of its 51 s there)."""
    old = dt.datetime(2001, 1, 1)
    collection.insert_many([{"_id": "string", "timestamp": "2001-01-01"}, {"_id": "number", "timestamp": 0},
                            {"_id": "timestamp", "timestamp": bson.Timestamp(1, 1)}, {"_id": "null", "timestamp": None},
                            {"_id": "min", "timestamp": bson.MinKey()}, {"_id": "array", "timestamp": [old, "x"]}])
    dated = seed(collection, [(1, 200), (2, 100)])
    collection.create_index("timestamp")
    source = Source(cfg)
    cutoff = expiry.cutoff_ms(cfg)
    found = list(source.expired(cutoff, since=0))
    assert {f.id for f in found if f.ms is not None} == set(dated)
    assert {f.id for f in found if f.ms is None} == {"array"}  # matched through the array, then kept (its reason)
    plan = repr(bson.decode(bson.encode(collection.find(source.expired_filter(cutoff, since=0)).explain()
                                        ["queryPlanner"]["winningPlan"])))
    assert "IXSCAN" in plan and "COLLSCAN" not in plan, plan
    source.close()


def test_a_day_split_over_two_parts(cfg, collection):
    first = seed(collection, [(i, 100.5) for i in range(5)])
    Daemon(cfg).once()
    late = seed(collection, [(50 + i, 100.5) for i in range(3)])  # late arrivals for a sealed day
    Daemon(cfg).once()
    parts = sorted(p.name for p in layout.segments(cfg.collection_dir))
    assert parts == ["part-0001.mkv", "part-0002.mkv"]
    assert archived(cfg) == first | late and not remaining(collection)


def test_segment_max_docs_rolls_parts(cfg, collection):
    cfg = dataclasses.replace(cfg, segment_max_docs=4)
    seed(collection, [(i, 100.5) for i in range(10)])
    Daemon(cfg).once()
    assert [p.name for p in layout.segments(cfg.collection_dir)] == ["part-0001.mkv", "part-0002.mkv",
                                                                       "part-0003.mkv"]


def _cycle_with(cfg, fault):
    """One cycle under the collection's lease with `fault` at every fault point: (stats, state)."""
    state = State(cfg.state_file)
    source = Source(cfg)
    lease = source.acquire_lease()
    with faults.installed(fault):
        stats = Archiver(cfg, source, state).run_cycle(lease)
    source.release_lease(lease)
    return stats, state


def test_update_between_read_and_delete_keeps_the_document(cfg, collection):
    original = seed(collection, [(i, 150) for i in range(6)])
    victim = sorted(original)[2]

    def fault(point: str) -> None:
        if point == "before-seal":  # after every document was read, before anything is deleted
            collection.update_one({"_id": victim}, {"$set": {"final_outcome": "edited later"}})

    stats, _ = _cycle_with(cfg, fault)
    assert stats.sealed == 6 and stats.deleted == 5 and stats.changed == 1
    assert remaining(collection) == {victim}
    # the next cycle archives the document again, in its new state, in a new part
    code, stats2 = Daemon(cfg).once()
    assert stats2.deleted == 1 and not remaining(collection)
    copies = [bson.decode(raw) for p in layout.segments(cfg.collection_dir) for raw in SegmentReader(p)
              if bson.decode(raw)["_id"] == victim]
    assert [c["final_outcome"] for c in copies][-1] == "edited later" and len(copies) == 2


def test_dry_run_changes_nothing(cfg, collection, capsys):
    from archiverd.cli.run_cmd import _dry_run
    before = seed(collection, [(i, 100 + i) for i in range(5)])
    assert _dry_run(cfg) == 0
    out = capsys.readouterr().out
    assert "would archive and then delete 5 documents" in out
    assert remaining(collection) == set(before)
    assert not cfg.collection_dir.exists()


def test_restore_round_trip_is_byte_exact(cfg, collection):
    from archiverd.service.restore import restore
    old = seed(collection, [(i, 100 + i % 3) for i in range(12)], embeddings=False)
    old.update(seed(collection, [(90, 140)], embeddings=True))
    Daemon(cfg).once()
    target = dataclasses.replace(cfg, collection="restored")
    segments = list(layout.segments(cfg.collection_dir))
    stats = restore(segments, Source(target))
    assert stats.inserted == len(old) and stats.existing == 0
    restored = collection.database["restored"]
    assert {d["_id"]: d.raw for d in restored.find()} == old
    again = restore(segments, Source(target))  # insert-only: nothing overwritten
    assert again.inserted == 0 and again.existing == len(old)


def test_a_lost_delete_is_found_by_identity_even_when_a_kept_document_vanished(cfg, collection):
    """The read that confirms a segment's deletes compares identities, not counts: one document
    kept because it changed, then deleted by a client, must not let another whose acknowledged
    delete the server lost pass for deleted (the journal entry was dropped with it still there)."""
    original = seed(collection, [(i, 150) for i in range(6)])
    changed, lost = sorted(original)[2], sorted(original)[4]
    batches = []

    def fault(point: str) -> None:
        if point == "before-seal":  # read and sealed as it was; changed before its delete
            collection.update_one({"_id": changed}, {"$set": {"final_outcome": "edited later"}})
        if point == "delete-batch" and "delete-batch" not in batches:  # the batch committed: the server "loses" one
            durable = collection.with_options(write_concern=WriteConcern("majority", j=True))  # delete,
            durable.insert_one(RawBSONDocument(original[lost]))  # a client deletes the changed one
            durable.delete_one({"_id": changed})
        batches.append(point)

    stats, state = _cycle_with(cfg, fault)
    assert stats.changed == 1 and stats.deleted == 6  # five, and the lost one again
    assert remaining(collection) == set() and not state.pending and batches.count("delete-batch") == 2


def test_second_daemon_is_blocked_by_the_lease(cfg, collection):
    seed(collection, [(1, 200)])
    holder = Source(cfg)
    lease = holder.acquire_lease()
    assert lease is not None
    code, stats = Daemon(cfg).once()
    assert code == EXIT_WARNING and stats is None
    assert len(remaining(collection)) == 1
    from archiverd.cli.status_cmd import collect
    assert collect(cfg)["lease"]["owner"] == holder.owner
    holder.release_lease(lease)
    assert Daemon(cfg).once()[0] == EXIT_OK and not remaining(collection)


def test_fencing_stops_a_stale_holder_from_deleting(cfg, collection):
    ids = seed(collection, [(1, 200)])
    short = dataclasses.replace(cfg, lease_seconds=3)
    stale, fresh = Source(short), Source(short)
    old_lease = stale.acquire_lease()
    time.sleep(3.2)
    new_lease = fresh.acquire_lease()
    assert new_lease is not None and new_lease.token > old_lease.token
    (_id, raw), = ids.items()
    with pytest.raises(LeaseLost):
        stale.delete_unchanged([(_id, hashlib.sha256(raw).hexdigest())], old_lease)
    assert remaining(collection) == {_id}


def test_crash_after_commit_is_finished_by_recovery(cfg, collection):
    old = seed(collection, [(i, 120) for i in range(7)])
    crash_cycle_at(cfg, "commit")
    assert remaining(collection) == set(old)  # sealed, not yet deleted
    assert State(cfg.state_file).pending == ["/".join(list(layout.segments(cfg.collection_dir))[0]
                                                      .relative_to(cfg.collection_dir).parts)]
    code, stats = Daemon(cfg).once()
    assert stats.recovered == 7 and stats.sealed == 0 and not remaining(collection)
    assert len(list(layout.segments(cfg.collection_dir))) == 1  # no version sealed twice
    assert State(cfg.state_file).pending == []


def test_change_stream_wakes_and_resumes_after_restart(cfg, collection):
    state = State(cfg.state_file)
    source = Source(cfg)
    wake, stop = threading.Event(), threading.Event()
    watcher = ChangeWatcher(cfg, source, state, wake, stop)
    watcher.start()
    # a document written before the stream opens makes no event (loaded-machine bound)
    assert wait_until(lambda: watcher.status == "active"), watcher.status
    seed(collection, [(1, 5)])  # fresh: no wake
    time.sleep(1.5)  # a wrong wake would come within the watcher's 1 s await
    assert not wake.is_set()
    seed(collection, [(2, 300)])  # a backfill of an expired document: wake at once
    assert wake.wait(60)
    token = watcher.token
    stop.set()
    watcher.join(10)
    state.update(resume_token=__import__("archiverd.service.source", fromlist=["x"]).token_to_json(token))
    # while no watcher runs, an expired document arrives; a restarted watcher replays it
    seed(collection, [(3, 400)])
    wake2, stop2 = threading.Event(), threading.Event()
    again = ChangeWatcher(cfg, Source(cfg), State(cfg.state_file), wake2, stop2)
    assert again.token is not None
    again.start()
    try:
        assert wake2.wait(60)
    finally:
        stop2.set()
        again.join(10)


def test_reads_come_in_batches_of_about_4_mib(cfg, collection):
    """200 EAT experiences would be a 17 MB batch (held twice while pymongo splits it): reads take
    as many as fit in READ_BATCH_BYTES by the collection's average size; small documents keep
    batch_size."""
    from archiverd.service.source import READ_BATCH_BYTES

    seed(collection, [(i, 300) for i in range(4)], embeddings=True)
    average = sum(len(bson.encode(d)) for d in collection.find()) / 4
    assert abs(Source(cfg).read_batch() - READ_BATCH_BYTES / average) <= 1
    collection.delete_many({})
    seed(collection, [(i, 300) for i in range(4)])
    assert Source(cfg).read_batch() == cfg.batch_size


def test_change_events_carry_the_date_field_only(cfg, collection):
    """The watcher needs each written document's date, not the document: an EAT experience is 85 KB,
    and every write of the agents would otherwise be sent to the daemon a second time."""
    source = Source(cfg)
    with source.watch(None) as stream:
        (_id,) = seed(collection, [(1, 300)], embeddings=True)
        assert collection.update_one({"_id": _id}, {"$set": {"note": "x" * 1000}}).modified_count == 1
        changes = []
        deadline = time.monotonic() + 60  # a loaded-machine bound: the loop ends with the second event
        while len(changes) < 2 and time.monotonic() < deadline:
            change = stream.try_next()
            if change is not None:
                changes.append(change)
    assert [c["operationType"] for c in changes] == ["insert", "update"]
    for change in changes:
        assert set(change) == {"_id", "operationType", "fullDocument"}
        assert list(change["fullDocument"]) == [cfg.date_field]
        assert expiry.date_ms(change["fullDocument"], cfg.date_field)[0] is not None
    assert len(bson.encode(changes[0])) < 1000


def test_daemon_loop_archives_a_backfill_without_waiting_for_the_poll(cfg, collection):
    cfg = dataclasses.replace(cfg, poll_seconds=300)
    collection.database.create_collection(cfg.collection)  # the daemon refuses a namespace that does not exist
    daemon = Daemon(cfg)
    runner = threading.Thread(target=daemon.run)
    runner.start()
    try:
        deadline = time.monotonic() + 20
        while State(cfg.state_file).get("last_cycle") is None and time.monotonic() < deadline:
            time.sleep(0.1)
        _watcher_opened(daemon)  # a document written before the stream opens makes no event
        seed(collection, [(7, 365)])
        assert wait_until(lambda: not remaining(collection), 60)  # not after poll_seconds (300)
    finally:
        daemon.stop.set()
        daemon.wake.set()
        runner.join(30)
    assert not runner.is_alive()
    assert State(cfg.state_file).get("resume_token") is not None


def _watcher_opened(daemon: Daemon) -> ChangeWatcher:
    """The running daemon's change-stream thread, once its stream is open."""
    def opened() -> ChangeWatcher | None:
        return next((t for t in threading.enumerate()
                     if isinstance(t, ChangeWatcher) and t.source is daemon.source and t.status == "active"), None)
    watcher = wait_until(opened)
    assert watcher is not None, "the daemon's change stream never opened"
    return watcher


def test_a_backfill_written_during_a_cycle_is_archived_without_waiting_for_the_poll(cfg, collection):
    """Regression: the daemon cleared its wake event after each cycle, so the change stream's wake
    for a document written while a cycle ran was lost and the document waited for the next poll.
    Deterministic: the document is written inside the cycle (at its commit), in a day the cycle did
    not list, and the watcher has seen it before the cycle goes on."""
    cfg = dataclasses.replace(cfg, poll_seconds=300)
    seed(collection, [(1, 200)])
    daemon = Daemon(cfg)
    seen: dict[str, bool] = {}

    def backfill(point: str) -> None:
        if point == "commit" and not seen:
            _watcher_opened(daemon)
            seed(collection, [(2, 300)])
            seen["wake"] = daemon.wake.wait(60)

    runner = threading.Thread(target=daemon.run)
    with faults.installed(backfill):
        runner.start()
        try:
            assert wait_until(lambda: seen and not remaining(collection), 60), (seen, remaining(collection))
        finally:
            daemon.stop.set()
            daemon.wake.set()
            runner.join(60)
    assert seen == {"wake": True} and not runner.is_alive()


def test_unreachable_server_is_retried_then_a_clear_error(cfg, tmp_path):
    from archiverd.errors import DatabaseError
    from tests.mongo_server import free_port
    bad = dataclasses.replace(cfg, uri=f"mongodb://archiver:s3cret@127.0.0.1:{free_port()}/?directConnection=true",
                              retry_seconds=2, server_timeout_ms=300)
    with pytest.raises(DatabaseError) as err:
        Daemon(bad).once()
    assert "cannot reach MongoDB" in str(err.value) and "s3cret" not in str(err.value)
    assert "archiver:***@" in str(err.value)


def test_transient_outage_is_retried_and_the_cycle_completes(tmp_path):
    from tests.mongo_server import Server
    server = Server(tmp_path / "db")
    env = {"MONGODB_URI": server.uri, "ARCHIVERD_ARCHIVE_DIR": str(tmp_path / "archives"),
           "ARCHIVERD_RETRY_SECONDS": "60", "ARCHIVERD_SERVER_TIMEOUT_MS": "1000"}
    cfg = config.load(environ=env)
    cfg.archive_dir.mkdir()
    server.start()
    try:
        from pymongo import MongoClient
        with MongoClient(server.uri) as c:
            c[cfg.database][cfg.collection].insert_many([bson.decode(doc(i, 200).raw) for i in range(3)])
        server.stop()
        threading.Timer(3, server.start).start()  # the server comes back while the daemon retries
        code, stats = Daemon(cfg).once()
        assert code == EXIT_OK and stats.deleted == 3
    finally:
        time.sleep(0.1)
        server.stop()


def test_a_cycle_longer_than_the_lease_keeps_it(cfg, collection):
    """Regression: run --once did not renew its lease, so fencing (correctly) refused the deletes."""
    cfg = dataclasses.replace(cfg, lease_seconds=3)
    seed(collection, [(i, 150) for i in range(3)])

    def slow(point: str) -> None:
        if point == "before-seal":
            time.sleep(4.5)  # longer than the lease

    with faults.installed(slow):
        code, stats = Daemon(cfg).once()
    assert code == EXIT_OK and stats.deleted == 3 and not remaining(collection)


def test_restore_takes_the_newest_copy_of_a_re_archived_document(cfg, collection, tmp_path):
    from archiverd import write_segment
    from archiverd.service.restore import restore
    v1 = bson.encode({"_id": "exp-1", "timestamp": NOW, "final_outcome": "first"})
    v2 = bson.encode({"_id": "exp-1", "timestamp": NOW, "final_outcome": "edited later"})
    older, newer = tmp_path / "b" / "part-0001.mkv", tmp_path / "a" / "part-0001.mkv"  # names sort the wrong way
    older.parent.mkdir()
    newer.parent.mkdir()
    write_segment(older, [v1])
    time.sleep(0.01)  # sealing order (created_at, ms) decides, not names or arguments
    write_segment(newer, [v2])
    stats = restore([newer, older], Source(cfg))
    assert (stats.inserted, stats.older_copies) == (1, 1)
    assert collection.find_one({"_id": "exp-1"}).raw == v2


def test_a_holder_that_loses_its_lease_after_publishing_the_video_commits_nothing(cfg, collection):
    """Between the video's link and the index's (the commit point) the seal re-reads the video by
    its name; a paused process can lose its lease meanwhile, and another then seals the same
    documents. The index goes in only while the lease is still this process's: a stale holder
    leaves an orphan video (kept and reported, as after a crash there), never a committed copy."""
    original = seed(collection, [(i, 150) for i in range(4)])
    source = Source(cfg)
    lease = source.acquire_lease()
    future = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)

    def taken_over(point: str) -> None:
        if point == "seal:video-published":
            source.leases.update_many({"_id": {"$regex": r"\$"}},  # the day's lease
                                      {"$set": {"owner": "other-host:1:x", "expires_at": future}, "$inc": {"token": 1}})

    with faults.installed(taken_over):
        stats = Archiver(cfg, source, State(cfg.state_file)).run_cycle(lease)
    assert stats.days_lost == 1 and stats.deleted == 0
    assert list(layout.segments(cfg.collection_dir)) == []  # no index: nothing committed
    assert list(cfg.collection_dir.rglob("*.mkv"))  # the orphan video stays
    assert remaining(collection) == set(original)


def test_the_day_s_next_holder_commits_the_video_a_paused_holder_linked(cfg, collection):
    """A is paused while it re-reads its linked video by name; its lease lapses and B takes the day.
    B's recovery finds A's journal entry and the video without its index: it rebuilds the index,
    verifies it and deletes -- A's video is the day's one committed copy (no orphan is left). A
    resumes, fails its second fencing check and commits nothing; nothing is sealed twice."""
    original = seed(collection, [(i, 150) for i in range(4)])
    source = Source(cfg)
    lease = source.acquire_lease()
    by_b = []

    def paused(point: str) -> None:
        if point == "seal:video-published" and not by_b:
            source.leases.update_many({"_id": {"$regex": r"\$"}},  # the day's lease lapses while A is paused
                                      {"$set": {"expires_at": dt.datetime(2000, 1, 1, tzinfo=dt.timezone.utc)}})
            by_b.append(Archiver(cfg, Source(cfg), State(cfg.state_file)).run_cycle())

    with faults.installed(paused):
        stats = Archiver(cfg, source, State(cfg.state_file)).run_cycle(lease)
    (b,) = by_b
    assert (b.recovered, b.sealed) == (len(original), 0)
    assert stats.days_lost == 1 and stats.sealed == stats.deleted == 0
    (segment,) = layout.segments(cfg.collection_dir)
    assert sorted(cfg.collection_dir.rglob("*.mkv")) == [segment]  # A's video, committed: no orphan
    assert archived(cfg) == original and remaining(collection) == set()
    assert State(cfg.state_file).pending == []
