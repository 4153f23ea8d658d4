"""The service, day after day, on a real MongoDB-wire server: one segment per completed day, hostile
documents that never stop it or get deleted, distinct `_id`s kept distinct, signals and the lease."""
from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import signal
import subprocess
import sys
import time

import bson
import pytest
from bson import Binary, Decimal128, Int64, ObjectId, SON
from bson.raw_bson import RawBSONDocument

from archiverd import SegmentReader
from archiverd.format import index
from archiverd.service import expiry
from archiverd.service.daemon import Daemon
from archiverd.store import layout
from bench.corpus import experience
from tests.mongo_server import Server
from tests.reliability import ROOT, World, crash_cycle_at, cycles_done, daemon_log, kill, wait_stopped, wait_until

UTC = dt.timezone.utc


def _raw(doc: dict) -> RawBSONDocument:
    return RawBSONDocument(bson.encode(doc))


def _archived(cfg) -> list[bytes]:
    return [raw for p in layout.segments(cfg.collection_dir) for raw in SegmentReader(p)]


def _remaining(collection) -> set:
    return {index.key_of(d["_id"]) for d in collection.find({}, projection={"_id": 1})}


# -- days ------------------------------------------------------------------------------------------

def test_only_complete_days_are_archived_and_each_becomes_one_segment(cfg, collection):
    now = dt.datetime.now(UTC)
    wm = now - dt.timedelta(days=cfg.threshold_days)
    midnight = wm.replace(hour=0, minute=0, second=0, microsecond=0)
    if (wm - midnight).total_seconds() < cfg.day_grace_seconds + 60:
        pytest.skip("too close to a UTC midnight for this test's arithmetic")
    done = [_raw(experience(i, when=midnight - dt.timedelta(hours=1, minutes=i))) for i in range(12)]
    waiting = [_raw(experience(100 + i, when=midnight + dt.timedelta(seconds=10 + i))) for i in range(5)]
    collection.insert_many(done + waiting)
    code, stats = Daemon(cfg).once()
    assert code == 0 and stats.sealed == 12 and stats.per_day == {(midnight - dt.timedelta(days=1)).strftime("%Y-%m-%d"): 12}
    assert len(list(layout.segments(cfg.collection_dir))) == 1
    assert _remaining(collection) == {index.key_of(d["_id"]) for d in waiting}  # expired, but their day is not over


def test_documents_expiring_every_second_across_midnight_make_one_segment(mongo_uri, tmp_path):
    """The daemon runs while documents expire one per second across a UTC midnight (the watermark is
    placed 20 s before one); the completed day becomes exactly one segment."""
    now = dt.datetime.now(UTC).replace(microsecond=0)
    midnight = (now - dt.timedelta(days=91)).replace(hour=0, minute=0, second=0)
    threshold = (now - midnight).total_seconds() + 20  # watermark = midnight - 20 s
    world = World(mongo_uri, tmp_path, ARCHIVE_THRESHOLD_DAYS=repr(threshold / 86400), ARCHIVERD_DAY_GRACE_SECONDS="5",
                  ARCHIVERD_POLL_SECONDS="1", ARCHIVERD_SEGMENT_MAX_DOCS="0", ARCHIVERD_BATCH_SIZE="50")
    try:
        docs = [_raw(experience(i, when=midnight + dt.timedelta(seconds=s), embeddings=False))
                for i, s in enumerate(range(-30, 20))]
        world.coll.insert_many(docs)
        for d in docs:
            world.record(d.raw)
        daemon = world.start_daemon()
        day = (midnight - dt.timedelta(days=1)).strftime("%Y/%m/%d")

        def two_cycles_after_the_deletes() -> bool:  # the segment's deletes done, then more cycles
            log = daemon_log(daemon)
            return daemon.poll() is not None or cycles_done(log.partition("event=segment.deleted")[2]) >= 2

        assert wait_until(two_cycles_after_the_deletes, 120) and daemon.poll() is None, daemon_log(daemon)
        kill(daemon, signal.SIGTERM)
        assert daemon.returncode == 0, daemon_log(daemon)
        parts = sorted(p.relative_to(world.collection_dir).as_posix() for p in layout.segments(world.collection_dir))
        assert parts == [f"{day}/part-0001.mkv"], parts
        sealed = list(SegmentReader(world.collection_dir / parts[0]))
        assert sealed == [d.raw for d in docs[:30]]  # every document dated before midnight, in one segment
        assert world.coll.count_documents({}) == 20  # the new day is not complete yet
        assert world.check().safe
    finally:
        world.close()


def test_a_backlog_of_days_is_sealed_in_one_pass(cfg, collection):
    noon = dt.datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    collection.insert_many([_raw(experience(i, when=noon - dt.timedelta(days=100 + i % 7, hours=i % 5)))
                            for i in range(35)])
    code, stats = Daemon(cfg).once()
    assert code == 0 and stats.sealed == 35 and len(stats.per_day) == 7
    assert len(list(layout.segments(cfg.collection_dir))) == 7


# -- hostile documents -----------------------------------------------------------------------------

def _hostile(now: dt.datetime) -> tuple[list[dict], list[dict]]:
    """(documents that must stay, ordinary expired documents with tricky but valid _ids)."""
    old, fresh = now - dt.timedelta(days=200), now - dt.timedelta(days=1)
    stay = [
        {"_id": "array-old-and-new", "timestamp": [old, fresh]},
        {"_id": "array-of-old", "timestamp": [old, old - dt.timedelta(days=1)]},
        {"_id": "empty-array", "timestamp": []},
        {"_id": "string", "timestamp": old.isoformat()},
        {"_id": "null", "timestamp": None},
        {"_id": "missing"},
        {"_id": "number", "timestamp": 0},
        {"_id": "document", "timestamp": {"$date": 0}},
        {"_id": "path-through-array", "timestamp": fresh, "meta": [{"ts": old}]},
        {"_id": "far-future", "timestamp": dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)},
        {"_id": "fresh", "timestamp": fresh},
    ]
    archive = [
        {"_id": SON([("a", 1), ("b", 2)]), "timestamp": old, "v": "ab"},
        {"_id": SON([("b", 2), ("a", 1)]), "timestamp": old, "v": "ba"},
        {"_id": 7, "timestamp": old, "v": "int"},
        {"_id": 7.5, "timestamp": old, "v": "double"},
        {"_id": Int64(8), "timestamp": old, "v": "long"},
        {"_id": Decimal128("9.25"), "timestamp": old, "v": "decimal"},
        {"_id": Binary(b"\x01\x02", 0), "timestamp": old, "v": "bin0"},
        {"_id": Binary(b"\x01\x02" * 8, 4), "timestamp": old, "v": "bin4"},
        {"_id": "507f1f77bcf86cd799439011", "timestamp": old, "v": "string that looks like an oid"},
        {"_id": ObjectId("507f1f77bcf86cd799439011"), "timestamp": old, "v": "oid"},
        {"_id": "year-one", "timestamp": dt.datetime(1, 1, 1, tzinfo=UTC), "v": "year 1"},
        {"_id": "epoch-minus", "timestamp": dt.datetime(1969, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)},
    ]
    return stay, archive


def test_a_hostile_collection_never_stops_the_daemon_nor_loses_a_distinction(mongo_uri, tmp_path):
    world = World(mongo_uri, tmp_path, ARCHIVERD_POLL_SECONDS="1", ARCHIVERD_SEGMENT_MAX_DOCS="0")
    try:
        stay, tricky = _hostile(world.now)
        world.coll.insert_many([_raw(d) for d in stay + tricky])
        ordinary = world.seed(expired=20, fresh=3)
        daemon = world.start_daemon()
        assert wait_until(lambda: daemon.poll() is not None or world.coll.count_documents({}) <= len(stay) + 3), \
            daemon_log(daemon)
        before = cycles_done(daemon_log(daemon))
        # more cycles over what is left
        assert wait_until(lambda: daemon.poll() is not None or cycles_done(daemon_log(daemon)) >= before + 2), \
            daemon_log(daemon)
        assert daemon.poll() is None, daemon_log(daemon)
        kill(daemon, signal.SIGTERM)
        log = daemon_log(daemon)
        assert daemon.returncode == 0 and "Traceback" not in log, log
        left = _remaining(world.coll)
        assert left == {index.key_of(d["_id"]) for d in stay} | {index.key_of(i) for i in ordinary[20:]}
        assert "event=cycle.skipped" in log and "date_field_is_an_array" in log
        archived = {index.key_of(RawBSONDocument(r)["_id"]): r for p in layout.segments(world.collection_dir)
                    for r in SegmentReader(p)}
        for d in tricky:  # distinct to MongoDB, distinct here, byte-exact
            assert archived[index.key_of(d["_id"])] == bson.encode(d), d["_id"]
        # restore keeps them distinct too
        target = world.client[world.database]["restored"]
        proc = world.cli("restore", *map(str, layout.segments(world.collection_dir)),
                         "--to", f"{world.database}.restored")
        assert proc.returncode == 0, proc.stderr
        assert {index.key_of(d["_id"]): d.raw for d in target.find()} == archived
    finally:
        world.close()


def test_far_dates_are_handled_in_milliseconds():
    cfg = dataclasses.replace(__import__("archiverd.config", fromlist=["Config"]).Config(), threshold_days=90)
    assert expiry.day_label(expiry.MIN_DATETIME_MS) == "0001-01-01"
    assert expiry.day_label(-(2 ** 63)) == expiry.OUT_OF_RANGE == expiry.day_label(2 ** 63 - 1)
    assert expiry.date_ms({"t": bson.datetime_ms.DatetimeMS(2 ** 63 - 1)}, "t") == (2 ** 63 - 1, None)
    assert expiry.date_ms({"t": [1]}, "t")[1] == "date field is an array"
    assert expiry.date_ms({"m": [{"t": 1}]}, "m.t")[1] == "date path runs through an array"
    assert expiry.cutoff_ms(cfg) % expiry.MS_PER_DAY == 0 and expiry.cutoff_ms(cfg) < expiry.watermark_ms(cfg)


def test_a_document_that_cannot_be_archived_is_left_and_the_cycle_goes_on(cfg, collection, monkeypatch):
    from archiverd.format import documents
    big = _raw({"_id": "too-big", "timestamp": dt.datetime.now(UTC) - dt.timedelta(days=120), "x": "y" * 5000})
    collection.insert_one(big)
    small = [_raw(experience(i, when=dt.datetime.now(UTC) - dt.timedelta(days=120), embeddings=False)) for i in range(6)]
    collection.insert_many(small)
    monkeypatch.setattr(documents, "MAX_DOCUMENT_BYTES", 4000)  # stands in for "cannot be encoded"
    code, stats = Daemon(cfg).once()
    assert code == 0 and stats.sealed == 6 and sum(stats.skipped.values()) == 1
    assert _remaining(collection) == {index.key_of("too-big")}


def test_byte_bounded_batches_keep_memory_flat_with_15_mb_documents(mongo_uri, tmp_path):
    world = World(mongo_uri, tmp_path, ARCHIVERD_SEGMENT_MAX_DOCS="0", ARCHIVERD_BATCH_SIZE="200",
                  ARCHIVERD_LEASE_SECONDS="60")
    try:
        when = world.now - dt.timedelta(days=120)
        big = [_raw({"_id": f"big{i}", "timestamp": when, "blob": Binary(os.urandom(15 << 20))}) for i in range(2)]
        for d in big:
            world.coll.insert_one(d)
            world.record(d.raw)
        world.seed(expired=30)
        peak = tmp_path / "peak"
        proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "peak_rss.py"), "run", "--once"], cwd=ROOT,
                                env=world.env(PEAK_RSS_FILE=str(peak), PYTHONPATH=str(ROOT)),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        _, err = proc.communicate(timeout=600)
        rss_mb = int(peak.read_text()) / 1024
        assert proc.returncode == 0, err
        assert world.check().converged
        print(f"peak RSS of run --once with 15 MB documents: {rss_mb:.0f} MB")
        assert rss_mb < 300, f"peak RSS {rss_mb:.0f} MB"
    finally:
        world.close()


# -- signals and the lease -------------------------------------------------------------------------

def test_run_once_twice_in_a_row_both_succeed(mongo_uri, tmp_path):
    world = World(mongo_uri, tmp_path, ARCHIVERD_LEASE_SECONDS="60")
    try:
        world.seed(expired=5)
        first, second = world.cli("run", "--once"), world.cli("run", "--once")
        assert (first.returncode, second.returncode) == (0, 0), second.stderr
        holder = world.client[world.database]["archiverd_leases"].find_one()
        assert bson.decode(holder.raw, bson.CodecOptions(tz_aware=True))["expires_at"].year == 1970
    finally:
        world.close()


def test_sigterm_releases_the_lease_and_sighup_reloads(mongo_uri, tmp_path):
    conf = tmp_path / "archiverd.toml"
    conf.write_text("poll_seconds = 1\n")
    world = World(mongo_uri, tmp_path, ARCHIVERD_LEASE_SECONDS="60")
    try:
        world.seed(expired=6)
        daemon = world.start_daemon(ARCHIVERD_CONFIG=str(conf))
        deadline = time.monotonic() + 60
        while "event=cycle.done" not in daemon_log(daemon) and time.monotonic() < deadline:
            time.sleep(0.2)
        conf.write_text("poll_seconds = 2\nthrottle_seconds = 0.1\n")
        daemon.send_signal(signal.SIGHUP)
        while "event=daemon.reloaded" not in daemon_log(daemon) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert daemon.poll() is None and "event=daemon.reloaded" in daemon_log(daemon)
        kill(daemon, signal.SIGTERM)
        assert daemon.returncode == 0 and "event=daemon.stopped" in daemon_log(daemon)
        assert world.cli("run", "--once").returncode == 0  # the lease was released at once
    finally:
        world.close()


@contextlib.contextmanager
def _a_daemon_in_a_delete_on_a_hung_server(tmp_path):
    """A daemon that stopped itself after its first delete batch (of two a segment), with its
    server then hung (SIGSTOP): the current step cannot finish. Once the block has dealt with the
    daemon, the server resumes; the archive must be safe, and converge after the next run."""
    server = Server(tmp_path / "db").start()
    world = World(server.uri, tmp_path, ARCHIVERD_LEASE_SECONDS="5", ARCHIVERD_RETRY_SECONDS="300",
                  ARCHIVERD_BATCH_SIZE="2", ARCHIVERD_SERVER_TIMEOUT_MS="3000")
    daemon = None
    try:
        world.seed(expired=12)  # four a day: two delete batches a segment
        daemon = world.start_daemon(ARCHIVERD_POLL_SECONDS="600", _ARCHIVERD_CRASH_AT="delete-batch@1:STOP")
        wait_stopped(daemon)
        os.killpg(server.proc.pid, signal.SIGSTOP)
        yield daemon
        os.killpg(server.proc.pid, signal.SIGCONT)
        assert world.check().safe
        assert world.run_once().returncode == 0  # the next run finishes the journaled deletes
        assert world.check().converged
    finally:
        if daemon is not None:
            kill(daemon)
        if server.proc is not None:
            os.killpg(server.proc.pid, signal.SIGCONT)
        world.client.close()
        server.stop()


def test_a_second_sigterm_while_the_first_is_honoured_exits_at_once(tmp_path):
    """The first SIGTERM lets the current step finish; a second one while it does exits at once,
    safely. Deterministic: the first SIGTERM is handled (logged) and the daemon is seen still
    waiting for the hung server to finish its step; only then comes the second. (Two signals sent
    back to back may reach the process as one.)"""
    with _a_daemon_in_a_delete_on_a_hung_server(tmp_path) as daemon:
        daemon.send_signal(signal.SIGTERM)
        daemon.send_signal(signal.SIGCONT)
        assert wait_until(lambda: "event=daemon.stopping" in daemon_log(daemon) or daemon.poll() is not None)
        assert daemon.poll() is None and "event=daemon.stopped" not in daemon_log(daemon), daemon_log(daemon)
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(60) == 0  # not after the server's retry_seconds (300)
        log = daemon_log(daemon)
        assert "event=daemon.abort" in log and "event=daemon.stopped" not in log, log


def test_one_sigterm_against_a_hung_server_ends_well_within_systemds_stop_timeout(tmp_path):
    """A graceful stop waits for the current step, but not for retry_seconds of an outage: from the
    stop on, retries share STOP_RETRY_SECONDS, so the daemon is gone well before systemd's
    TimeoutStopSec (120 s) would SIGKILL it -- safely, its deletes journaled for the next run."""
    from archiverd.service.source import STOP_RETRY_SECONDS
    with _a_daemon_in_a_delete_on_a_hung_server(tmp_path) as daemon:
        started = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        daemon.send_signal(signal.SIGCONT)
        daemon.wait(100)
        took = time.monotonic() - started
        log = daemon_log(daemon)
        assert took < STOP_RETRY_SECONDS + 60 and "event=daemon.abort" not in log, (took, log)


def test_a_sigterm_during_a_cycle_is_not_slept_through(mongo_uri, tmp_path):
    """Regression: the daemon cleared its wake event after each cycle, so a SIGTERM that arrived
    while a cycle ran was slept through until the next poll (poll_seconds; systemd kills at
    TimeoutStopSec). Deterministic: the daemon stops itself after its first delete batch and the
    SIGTERM is queued while it is stopped, so it lands inside the cycle."""
    world = World(mongo_uri, tmp_path, ARCHIVERD_LEASE_SECONDS="30")
    try:
        world.seed(expired=6)  # three days of two: one delete batch each
        daemon = world.start_daemon(ARCHIVERD_POLL_SECONDS="600", _ARCHIVERD_CRASH_AT="delete-batch@1:STOP")
        try:
            wait_stopped(daemon)
            daemon.send_signal(signal.SIGTERM)
            daemon.send_signal(signal.SIGCONT)
            assert daemon.wait(60) == 0, daemon_log(daemon)  # not after a sleep of up to 600 s
        finally:
            kill(daemon)
        log = daemon_log(daemon)
        assert "event=daemon.stopping" in log and "event=daemon.stopped" in log, log
        report = world.check()
        assert report.safe and not report.pending and not report.temp_files, report
        assert report.expired_left == 4  # stopped after its first day: the cycle was interrupted
    finally:
        world.close()


def test_a_kill_inside_the_delete_transaction_does_not_block_the_next_run(mongo_uri, tmp_path):
    world = World(mongo_uri, tmp_path, ARCHIVERD_LEASE_SECONDS="60")
    try:
        world.seed(expired=10)
        assert world.crash_once("delete-txn", 1) == -signal.SIGKILL
        started = time.monotonic()
        proc = world.cli("run", "--once")
        assert proc.returncode == 0, proc.stderr
        assert time.monotonic() - started < 30  # not 2 x 60 s behind the dead transaction
        assert "event=lease.ended_stale_session" in proc.stderr
        assert world.check().converged
    finally:
        world.close()


def test_documents_back_after_their_acknowledged_delete_are_not_sealed_twice(cfg, collection):
    """A server that loses the last commits (a crash, or a restore from backup) hands back documents
    that are already sealed: they are deleted against their segment, never sealed again."""
    docs = {d["_id"]: d for d in [_raw(experience(i, when=dt.datetime.now(UTC) - dt.timedelta(days=150)))
                                  for i in range(8)]}
    collection.insert_many(list(docs.values()))
    assert Daemon(cfg).once()[0] == 0
    assert collection.count_documents({}) == 0
    collection.insert_many(list(docs.values())[:5])  # "the server lost the deletes"
    code, stats = Daemon(cfg).once()
    assert code == 0 and stats.already_sealed == 5 and stats.sealed == 0 and stats.deleted == 5
    assert collection.count_documents({}) == 0
    assert len(list(layout.segments(cfg.collection_dir))) == 1
    assert sorted(_archived(cfg)) == sorted(d.raw for d in docs.values())


@pytest.mark.parametrize("stop_at_batch, journaled", [(1, True), (3, False)])
def test_a_stop_between_delete_batches_keeps_the_journal_and_after_the_last_batch_finishes_it(
        cfg, collection, stop_at_batch, journaled):
    """SIGTERM (the daemon's stop event) lets the current step finish: a stop between batches
    leaves the rest journaled for the next run; a stop during the last batch still confirms the
    deletes and drops the journal entry, so a graceful stop leaves nothing to recover."""
    from archiverd import faults
    from archiverd.service.state import State

    cfg = dataclasses.replace(cfg, batch_size=4, segment_max_docs=0)
    collection.insert_many([_raw(experience(i, when=dt.datetime.now(UTC) - dt.timedelta(days=150)))
                            for i in range(12)])
    daemon = Daemon(cfg)
    batches = 0

    def stop_there(point: str) -> None:
        nonlocal batches
        if point == "delete-batch":
            batches += 1
            if batches == stop_at_batch:
                daemon.stop.set()

    with faults.installed(stop_there):
        code, stats = daemon.once()
    assert batches == stop_at_batch and stats.sealed == 12
    pending = State(cfg.collection_dir / "archiverd-state.json").pending
    assert collection.count_documents({}) == 12 - 4 * stop_at_batch
    assert bool(pending) == journaled, pending
    if journaled:  # the next run finishes the journaled deletes
        assert Daemon(cfg).once()[0] == 0
        assert collection.count_documents({}) == 0
        assert not State(cfg.collection_dir / "archiverd-state.json").pending


def test_the_server_killed_right_after_a_commit(tmp_path):
    server = Server(tmp_path / "db").start()
    world = World(server.uri, tmp_path, ARCHIVERD_BATCH_SIZE="4", ARCHIVERD_RETRY_SECONDS="60",
                  ARCHIVERD_LEASE_SECONDS="30", ARCHIVERD_SEGMENT_MAX_DOCS="0")
    try:
        world.seed(expired=16)
        from archiverd import config
        # the server dies right after a delete transaction's commit
        crash_cycle_at(config.load(environ=world.env()), "delete-batch", lambda: server.stop(signal.SIGKILL),
                       release=False)
        server.start()
        assert world.run_once().returncode == 0
        report = world.check()
        assert report.converged and not report.sealed_twice, report
    finally:
        world.client.close()
        server.stop()


def test_the_expiry_scan_reads_only_the_id_and_the_date_of_a_document():
    """`lean_document` keeps just the named top-level fields (the first of a repeated key, as the
    index's `_id` is taken), with the codec options of every other read: sub-documents stay raw,
    dates are aware; a missing field is simply absent."""
    from archiverd.service.source import lean_document

    when = dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=dt.timezone.utc)
    doc = {"_id": {"k": 1, "j": Int64(2)}, "big": [1.5] * 100, "meta": {"at": when}, "timestamp": when}
    raw = bson.encode(doc)
    lean = lean_document(raw, ("_id", "meta", "nothing"))
    assert list(lean.keys()) == ["_id", "meta"]
    assert isinstance(lean["_id"], RawBSONDocument) and bson.encode(lean["_id"]) == bson.encode(doc["_id"])
    assert expiry.date_ms(lean, "meta.at") == (int(when.timestamp() * 1000), None)
    assert expiry.date_ms(lean_document(raw, ("timestamp",)), "timestamp")[0] == int(when.timestamp() * 1000)
    assert expiry.date_ms(lean_document(raw, ("nothing",)), "nothing") == (None, "date field missing")
    twice = bson.encode(SON([("_id", 1), ("x", 0)]))[:-1] + b"\x10_id\x00\x02\x00\x00\x00\x00"
    twice = len(twice).to_bytes(4, "little") + twice[4:]
    assert lean_document(twice, ("_id",))["_id"] == 1


def test_a_document_whose_id_cannot_be_decoded_stays_and_names_why(tmp_path):
    """MongoDB keeps the bytes a client sent: an `_id` string that is not valid UTF-8 cannot be
    decoded, indexed or deleted by its `_id`. The expiry scan hands it back as staying, with the
    reason (the cycle skips it and goes on), and the writer refuses it with a ValueError (what the
    cycle already treats as "cannot be archived") -- not pymongo's InvalidBSON, which stopped every
    cycle at that day."""
    from archiverd.format.writer import SegmentWriter
    from archiverd.service.source import expired_of

    when = dt.datetime(2026, 1, 2, tzinfo=dt.timezone.utc)
    body = b"\x02_id\x00" + (4).to_bytes(4, "little") + b"\xff\xfe\x80\x00" + bson.encode({"timestamp": when})[4:-1]
    bad = (len(body) + 5).to_bytes(4, "little") + body + b"\x00"
    cutoff = int(dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc).timestamp() * 1000)
    found = expired_of(bad, "timestamp", cutoff)
    assert found.raw == bad and found.ms is None and found.id is None
    assert found.reason.startswith("_id or date cannot be read")
    good = bson.encode({"_id": 7, "timestamp": when})
    assert expired_of(good, "timestamp", cutoff)[1:] == (7, int(when.timestamp() * 1000), None)
    writer = SegmentWriter(tmp_path / "part-0001.mkv")
    with pytest.raises(ValueError, match="_id cannot be decoded"):
        writer.append(bad, {})
    writer.append(good, {})
    writer.abort()
