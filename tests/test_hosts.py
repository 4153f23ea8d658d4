"""Several processes on one backlog (issue #11): day leases split the work, fence it, and hand a
dead or paused holder's day to another process -- real `archiverd` processes on one real
MongoDB-wire server, with the invariants of tests/reliability.py (nothing lost, nothing deleted
without a verified seal, no version sealed twice) and one segment per day."""
from __future__ import annotations

import datetime as dt
import json
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from archiverd.service.lease import ARCHIVE_ID_FILE, archive_id
from archiverd.service.source import LEASES
from archiverd.service.state import State
from archiverd.store import layout
from tests.reliability import ROOT, World, wait_stopped, wait_until

SHARED = {"ARCHIVERD_SHARED_BACKLOG": "true", "ARCHIVERD_SEGMENT_MAX_DOCS": "0"}


def _start(world: World, **extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "archiverd", "run", "--once"], cwd=ROOT, env=world.env(**extra),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _days_taken(log_text: str) -> list[str]:
    return re.findall(r"event=day\.taken day=(\S+)", log_text)


def _parts_per_day(world: World) -> Counter:
    return Counter(layout.day_of(str(p.relative_to(world.collection_dir))) for p in layout.segments(world.collection_dir))


def _live_leases(world: World, pid: int) -> list[str]:
    """The leases process `pid` holds that have not lapsed (by their expires_at)."""
    now = dt.datetime.now(dt.timezone.utc)
    return [d["_id"] for d in world.client[world.database][LEASES].find()
            if d["owner"].split(":")[1] == str(pid) and d["expires_at"] > now]


def _seed_six_days(world: World, per_day: int = 4) -> None:
    world.seed(expired=3 * per_day, fresh=2)
    world.seed(expired=3 * per_day, days=103)


def test_two_processes_split_the_backlog_by_day_and_status_shows_who_holds_what(mongo_uri, tmp_path):
    """A takes the oldest day and is paused there; B takes every other day; A resumes and finishes
    its own. Each day is sealed once, by one process, into one segment; everything is archived."""
    # A's day lease must outlive B's whole run on a loaded machine (it is not renewed while A is paused)
    world = World(mongo_uri, tmp_path, ARCHIVERD_LEASE_SECONDS="600", **SHARED)
    try:
        _seed_six_days(world)
        a = _start(world, _ARCHIVERD_CRASH_AT="day:taken@1:STOP")
        try:
            wait_stopped(a)
            status = world.cli("status", "--json")
            info = json.loads(status.stdout)
            held = [d for d in info["day_leases"] if d["state"] == "held"]
            assert len(held) == 1 and held[0]["owner"].split(":")[1] == str(a.pid), info["day_leases"]
            assert held[0]["archive"] == archive_id(world.collection_dir)
            assert info["backlog_mode"].startswith("shared") and info["lease"] is None
            human = world.cli("status").stdout
            assert f"{held[0]['day']}" in human and f":{a.pid}:" in human and "held by" in human, human
            b = world.cli("run", "--once")
            assert b.returncode == 0, b.stderr
            assert f"event=day.held day={held[0]['day']}" in b.stderr
        finally:
            a.send_signal(signal.SIGCONT)
            _, a_err = a.communicate(timeout=300)
        assert a.returncode == 0, a_err
        days_a, days_b = _days_taken(a_err), _days_taken(b.stderr)
        assert days_a == [held[0]["day"]], days_a
        assert len(days_b) == 5 and not set(days_a) & set(days_b), (days_a, days_b)
        report = world.check()
        assert report.converged and report.archived == 24, report
        assert _parts_per_day(world) == Counter({day: 1 for day in days_a + days_b})
        after = json.loads(world.cli("status", "--json").stdout)
        assert after["day_leases"] == [] and after["health"]["ok"], after["health"]
    finally:
        world.close()


def test_a_day_whose_holder_is_killed_is_finished_by_a_running_daemon(mongo_uri, tmp_path):
    """A is SIGKILLed between the delete batches of its day's first part (committed, journaled,
    half deleted) while a daemon B shares the backlog: B finishes that day -- recovering A's segment,
    not sealing its documents again -- and every other day."""
    world = World(mongo_uri, tmp_path, ARCHIVERD_LEASE_SECONDS="3", ARCHIVERD_POLL_SECONDS="1",
                  ARCHIVERD_SHARED_BACKLOG="true", ARCHIVERD_SEGMENT_MAX_DOCS="6")
    b = None
    try:
        _seed_six_days(world, per_day=8)
        # A's day lease must still be live when B, a process still starting, first meets it (a 3 s
        # one, not renewed while A is paused, could lapse first on a loaded machine: B would take the
        # day over without ever finding it held); B takes it over once A is dead and it has lapsed
        a = _start(world, ARCHIVERD_LEASE_SECONDS="30", _ARCHIVERD_CRASH_AT="delete-batch@1:STOP")
        wait_stopped(a)
        b = world.start_daemon()
        deadline = time.monotonic() + 120
        while "event=day.held" not in Path(b.log_path).read_text():
            assert time.monotonic() < deadline and b.poll() is None, Path(b.log_path).read_text()
            time.sleep(0.2)
        a.kill()  # mid-day: one part committed, half of its documents deleted, the journal entry left
        a.wait()
        while world.expired_count() or State(world.collection_dir / "archiverd-state.json").pending:
            assert time.monotonic() < deadline + 60 and b.poll() is None, Path(b.log_path).read_text()
            time.sleep(0.5)
        b.send_signal(signal.SIGTERM)
        assert b.wait(60) == 0
        log_b = Path(b.log_path).read_text()
        assert "event=recovery.completed" in log_b and "lease.taken_over" in log_b, log_b
        report = world.check()
        assert report.converged and report.archived == 48, report
        parts = _parts_per_day(world)
        assert len(parts) == 6 and all(n in (1, 2) for n in parts.values()), parts  # 8 a day, 6 a part
    finally:
        if b is not None and b.poll() is None:
            b.kill()
            b.wait()
        world.close()


def test_a_paused_holder_loses_its_day_after_the_lease_expires(mongo_uri, tmp_path):
    """A is paused right after committing a part of its day; its lease lapses; B takes the day over,
    finishes A's segment (recovery from the shared journal) and the rest of the day, and releases
    it. A resumed is refused its deletes (fencing: B's token), takes the free day again with a new
    token, finds its documents gone and reads the day afresh: nothing left, nothing sealed twice."""
    world = World(mongo_uri, tmp_path, ARCHIVERD_LEASE_SECONDS="3", ARCHIVERD_SHARED_BACKLOG="true",
                  ARCHIVERD_SEGMENT_MAX_DOCS="5")
    try:
        world.seed(expired=9, days=100)  # three days of three
        world.seed(expired=9, days=100)  # six a day: two parts each
        # A's lease must still be live when the first run meets it (a 3 s one can lapse while that
        # process starts on a loaded machine), then it is waited out
        a = _start(world, ARCHIVERD_LEASE_SECONDS="30", _ARCHIVERD_CRASH_AT="commit@1:STOP")
        try:
            wait_stopped(a)
            first = world.cli("run", "--once")  # A's day is held (its lease is live): left to it
            assert first.returncode == 0 and "event=day.held" in first.stderr, first.stderr
            assert wait_until(lambda: not _live_leases(world, a.pid), 60)  # A's lease lapses while it is paused
            b = world.cli("run", "--once")
            assert b.returncode == 0, b.stderr
            assert "event=recovery.completed" in b.stderr
        finally:
            a.send_signal(signal.SIGCONT)
            _, a_err = a.communicate(timeout=300)
        assert a.returncode == 0, a_err
        assert "event=lease.reacquired" in a_err and "gone=5" in a_err and "event=day.reread" in a_err, a_err
        assert a_err.count("event=segment.sealed") == 1, a_err  # its first part only
        report = world.check()
        assert report.converged and report.archived == 18, report
    finally:
        world.close()


def test_a_resumed_holder_whose_day_another_holds_deletes_nothing_and_moves_on(mongo_uri, tmp_path):
    """A is paused after committing a part of the oldest day; its lease lapses; B takes that day
    and is paused holding it. A resumed: its deletes are fenced off (B's token), it cannot take the
    day back, reports it lost and archives the other days. B resumed recovers A's segment and
    finishes the day."""
    world = World(mongo_uri, tmp_path, ARCHIVERD_LEASE_SECONDS="3", ARCHIVERD_SHARED_BACKLOG="true",
                  ARCHIVERD_SEGMENT_MAX_DOCS="5")
    try:
        world.seed(expired=18, days=100)  # three days of six: two parts each
        a = _start(world, _ARCHIVERD_CRASH_AT="commit@1:STOP")
        b = None
        try:
            wait_stopped(a)
            time.sleep(3.5)  # A's lease lapses while it is paused
            b = _start(world, ARCHIVERD_LEASE_SECONDS="60", _ARCHIVERD_CRASH_AT="day:taken@1:STOP")
            wait_stopped(b)
            a.send_signal(signal.SIGCONT)
            _, a_err = a.communicate(timeout=300)
        finally:
            for proc in (a, b):
                if proc is not None and proc.poll() is None:
                    proc.send_signal(signal.SIGCONT)
            _, b_err = b.communicate(timeout=300) if b is not None else (None, "")
        assert a.returncode == 1 and "event=day.lost" in a_err and "deletes stopped" in a_err, a_err
        assert "segment.deleted" not in a_err.split("event=day.lost")[0], a_err  # nothing deleted before
        assert b.returncode == 0 and "event=recovery.completed" in b_err, b_err
        assert len(_days_taken(a_err)) == 3 and set(_days_taken(b_err)) == {_days_taken(a_err)[0]}, (a_err, b_err)
        report = world.check()
        assert report.converged and report.archived == 18, report
        assert _parts_per_day(world) == Counter({day: 2 for day in _days_taken(a_err)})
    finally:
        world.close()


def test_processes_with_different_archive_directories_are_refused(mongo_uri, tmp_path):
    """A process of another archive directory must not take a day that a dead holder left
    unfinished in its own: the documents of its committed part would be sealed twice. It stops
    with exit 3 and a clear message; the first archive directory finishes the day; after that the
    other directory is no obstacle."""
    world = World(mongo_uri, tmp_path, **SHARED)
    other = tmp_path / "other-archives"
    other.mkdir()
    try:
        world.seed(expired=6)
        assert world.cli("run", "--once", _ARCHIVERD_CRASH_AT="commit@1").returncode == -signal.SIGKILL
        refused = world.cli("run", "--once", ARCHIVERD_ARCHIVE_DIR=str(other))
        assert refused.returncode == 3, refused.stderr
        assert "must share one archive directory" in refused.stderr and str(world.collection_dir) in refused.stderr
        assert "Traceback" not in refused.stderr
        assert world.run_once().returncode == 0
        assert world.check().converged
        again = world.cli("run", "--once", ARCHIVERD_ARCHIVE_DIR=str(other))
        assert again.returncode == 0, again.stderr
        assert (world.collection_dir / ARCHIVE_ID_FILE).read_text() != \
            (other / world.database / "eat_agent_experiences" / ARCHIVE_ID_FILE).read_text()
    finally:
        world.close()


def test_the_journal_names_its_writer(tmp_path):
    """Journal entries of several processes in one state file: a process drops only its own; a
    confirmed segment drops every entry; entries written before owners were named still count."""
    state = State(tmp_path / "archiverd-state.json")
    state._change("pending", lambda data: data["pending"].append("2026/08/01/part-0001.mkv"))  # an old entry
    state.add_pending("2026/08/01/part-0002.mkv", "h:1:a")
    state.add_pending("2026/08/01/part-0002.mkv", "h:2:b")
    state.remove_pending("2026/08/01/part-0002.mkv", "h:1:a")
    assert State(state.path).journal() == [("2026/08/01/part-0001.mkv", None), ("2026/08/01/part-0002.mkv", "h:2:b")]
    state.remove_pending("2026/08/01/part-0002.mkv")
    state.remove_pending("2026/08/01/part-0001.mkv", "h:1:a")  # not its entry
    assert State(state.path).pending == ["2026/08/01/part-0001.mkv"]


def test_the_archive_id_is_created_once_and_a_damaged_one_is_refused(tmp_path):
    first = archive_id(tmp_path / "db" / "coll")
    assert archive_id(tmp_path / "db" / "coll") == first and len(first) == 32
    (tmp_path / "db" / "coll" / ARCHIVE_ID_FILE).write_text("not an id\n")
    from archiverd.errors import StorageError
    with pytest.raises(StorageError, match="damaged"):
        archive_id(tmp_path / "db" / "coll")
