"""`archiverd status`: every figure it reports, checked against an independent count, and its health
rule (the exit code a monitor reads) case by case. Real server, real segments, real processes."""
from __future__ import annotations

import datetime as dt
import json

import bson
import pytest
from bson.raw_bson import RawBSONDocument

from archiverd.cli.status_cmd import collect
from archiverd.format import index
from archiverd.service.daemon import Daemon
from archiverd.service.source import Source
from archiverd.service.state import State
from archiverd.store import layout
from bench.corpus import experience
from tests.mongo_server import free_port
from tests.test_cli_daemon import run

DAY = 86_400


def put(collection, spec: list[tuple[int, float]]) -> None:
    """Documents dated `days` ago from now (not from an import-time clock: the day edges matter)."""
    now = dt.datetime.now(dt.timezone.utc)
    collection.insert_many([RawBSONDocument(bson.encode(experience(i, when=now - dt.timedelta(days=days))))
                            for i, days in spec])


def codes(info) -> list[int]:
    return [p["exit_code"] for p in info["health"]["problems"]]


def test_fresh_collection_is_healthy_and_pending_days_add_up(cfg, collection):
    put(collection, [(i, 95 + i % 3) for i in range(9)] + [(100, 90.001), (101, 90.002)] + [(200, 5)])
    collection.insert_many([{"_id": "no-date"}, {"_id": "text", "timestamp": "yesterday"}])
    info = collect(cfg, stale_after=30 * DAY)
    assert info["health"] == {"ok": True, "exit_code": 0, "problems": []}
    assert info["expired"] == 11 and info["ready"] == 9 and info["waiting"] == 2
    days = info["pending_days"]
    assert [d["documents"] for d in days if d["complete"]] == [3, 3, 3]
    assert sum(d["documents"] for d in days if not d["complete"]) == 2
    assert sum(d["documents"] for d in days) == info["expired"]  # the aggregation agrees with the counts
    waiting = [d for d in days if not d["complete"]]
    assert all(d["archivable_at"] > info["at"] and d["overdue_seconds"] == 0 for d in waiting)
    assert info["skipped"]["date field missing"] == 1 and info["skipped"]["date field is not a date"] == 1
    assert info["oldest_expired_age_seconds"] > 5 * DAY - 60
    assert info["last_cycle"] is None and info["lease"] is None and info["segments"] == 0


def test_a_date_field_no_document_has_is_a_warning_that_names_the_date_fields(cfg, collection):
    """A misspelt --date-field archives nothing, forever: status says so (exit 1) and names the
    fields of a document that do hold a date. One document with the field is enough to be quiet."""
    import dataclasses
    put(collection, [(i, 100) for i in range(3)])
    typo = dataclasses.replace(cfg, date_field="timestmap")
    info = collect(typo, stale_after=30 * DAY)
    assert codes(info) == [1]
    (problem,) = info["health"]["problems"]
    assert "no document has the date field 'timestmap'" in problem["problem"] and "timestamp" in problem["problem"]
    proc = run(cfg, "status", "--date-field", "timestmap", code=1)
    assert "fields holding a date: timestamp" in proc.stdout + proc.stderr
    collection.insert_one({"_id": "one", "timestmap": dt.datetime.now(dt.timezone.utc)})
    assert collect(typo, stale_after=30 * DAY)["health"]["ok"]


def test_documents_waiting_past_stale_after_are_unhealthy_until_archived(cfg, collection):
    put(collection, [(i, 100) for i in range(4)] + [(9, 90.001)])
    proc = run(cfg, "status")
    assert proc.returncode == 2, proc.stdout
    assert "4 documents of 1 complete day not archived" in proc.stdout
    assert proc.stdout.splitlines()[0].split() == ["health:", "error", "(exit", "2)"]
    assert run(cfg, "status", "--stale-after", "30d").returncode == 0  # became archivable ~10 days ago
    run(cfg, "run", "--once", code=0)
    status = json.loads(run(cfg, "status", "--json", code=0).stdout)
    assert status["health"]["ok"] and status["expired"] == 1 and status["ready"] == 0
    cycle = status["last_cycle"]
    assert cycle["sealed"] == 4 and cycle["deleted"] == 4 and cycle["segments"] == 1
    assert cycle["bytes_sealed"] == cycle["bytes_deleted"] > 4 * 2000
    assert 0 <= cycle["age_seconds"] < 120 and cycle["finished_at"] <= status["at"]
    # totals on disk, against the files themselves
    segments = list(layout.segments(cfg.collection_dir))
    assert status["segments"] == 1 and status["documents_on_disk"] == 4 and status["days_on_disk"] == 1
    assert status["bytes_on_disk"] == sum(p.stat().st_size for p in cfg.collection_dir.rglob("*") if p.is_file())
    assert status["first_day"] == status["last_day"] == "-".join(segments[0].parent.relative_to(
        cfg.collection_dir).parts)
    assert status["lease"]["state"] == "released" and status["lease"]["token"] == 1
    # a released lease has no expiry (its stored marker is the epoch: not "expires in -56 years")
    assert status["lease"]["expires_at"] is None and status["lease"]["expires_in_seconds"] is None
    assert status["last_seal"]["documents"] == 4
    text = run(cfg, "status", code=0).stdout
    assert "health:" in text and "ok" in text.splitlines()[0]
    assert "1 segment, 4 documents" in text and "4 documents sealed" in text


def test_a_failed_or_stale_cycle_is_unhealthy(cfg, collection):
    put(collection, [(1, 10)])
    state = State(cfg.state_file)
    state.update(last_error={"at": "2026-11-25T10:00:00+00:00", "error": "StorageError: no space left on device"})
    info = collect(cfg)
    assert info["health"]["exit_code"] == 2 and "no space left on device" in info["health"]["problems"][0]["problem"]
    long_ago = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=3)).isoformat()
    state.update(last_error=None, last_cycle={"sealed": 1, "seconds": 1.0, "finished_at": long_ago})
    info = collect(cfg)
    assert codes(info) == [2] and "no cycle completed for 3 d" in info["health"]["problems"][0]["problem"]
    assert collect(cfg, stale_after=4 * DAY)["health"]["ok"]
    holder = Source(cfg)
    lease = holder.acquire_lease()
    try:  # a cycle is running (a long catch-up): not stale
        assert collect(cfg)["health"]["ok"]
    finally:
        holder.release_lease(lease)
        holder.close()
    state.update(last_cycle={"sealed": 1, "seconds": 1.0})  # written by an older version: no time
    info = collect(cfg)
    assert info["health"]["ok"] and info["last_cycle"]["age_seconds"] is None
    assert "time not recorded" in run(cfg, "status", code=0).stdout


def test_interrupted_work_warns_only_while_nobody_holds_the_lease(cfg, collection):
    put(collection, [(1, 10)])
    State(cfg.state_file).add_pending("2026/08/01/part-0001.mkv")
    info = collect(cfg)
    assert codes(info) == [1] and "unfinished deletes" in info["health"]["problems"][0]["problem"]
    run(cfg, "status", code=1)
    holder = Source(cfg)
    lease = holder.acquire_lease()
    try:  # a cycle is running: its journal entry is expected
        info = collect(cfg)
        assert info["health"]["ok"], info["health"]
        assert info["lease"]["state"] == "held" and info["lease"]["owner"] == holder.owner
        assert 0 < info["lease"]["expires_in_seconds"] <= cfg.lease_seconds
        assert info["lease"]["renewed_seconds_ago"] < 30 and not info["lease"]["dead_local_process"]
        assert "held: " in run(cfg, "status", code=0).stdout
    finally:
        holder.release_lease(lease)
        holder.close()


def test_damage_on_disk_is_exit_4(cfg, collection):
    put(collection, [(i, 100 + i) for i in range(3)])
    Daemon(cfg).once()
    first, second, third = layout.segments(cfg.collection_dir)
    index.path_for(first).unlink()  # an orphan
    index.path_for(second).write_text("{not json")  # an index that does not load
    State(cfg.state_file).update(set_aside={str(third.relative_to(cfg.collection_dir)): {"reason": "CRC"}})
    info = collect(cfg, stale_after=30 * DAY)
    assert codes(info) == [4, 4, 4] and info["segments"] == 1 and info["documents_on_disk"] == 1
    assert info["orphans"] == [str(first.relative_to(cfg.collection_dir))]
    assert list(info["unreadable_indexes"]) == [str(second.relative_to(cfg.collection_dir))]
    proc = run(cfg, "status", "--stale-after", "30d", code=4)
    assert "reindex" in proc.stdout and "set aside by recovery" in proc.stdout


def test_storage_problems_are_exit_5(cfg, collection, tmp_path):
    put(collection, [(1, 10)])
    proc = run(cfg, "status", "--archive-dir", tmp_path / "typo", code=5)
    assert f"archive directory {tmp_path / 'typo'} does not exist" in proc.stdout
    assert not (tmp_path / "typo").exists()
    run(cfg, "status", "--archive-dir", "/dev/null", code=5)
    cfg.collection_dir.mkdir(parents=True)
    cfg.state_file.write_text("[1, 2")
    proc = run(cfg, "status", code=5)
    assert "state file" in proc.stdout and "damaged" in proc.stdout
    for hand_edited in ('{"set_aside": [1]}', '{"pending": "2026/08/01/part-0001.mkv"}', '{"last_error": "x"}'):
        cfg.state_file.write_text(hand_edited)
        assert "has the wrong type" in run(cfg, "status", code=5).stdout


def test_unreachable_server_is_exit_6_and_the_disk_is_still_reported(cfg, collection):
    put(collection, [(i, 100) for i in range(2)])
    Daemon(cfg).once()
    index.path_for(next(layout.segments(cfg.collection_dir))).unlink()  # damage too: 6 comes first
    closed = f"mongodb://127.0.0.1:{free_port()}/?directConnection=true"
    proc = run(cfg, "status", "--json", MONGODB_URI=closed, ARCHIVERD_SERVER_TIMEOUT_MS="300")
    assert proc.returncode == 6, proc.stderr
    status = json.loads(proc.stdout)
    assert status["database"].startswith("unreachable") and status["orphans"] and status["segments"] == 0
    assert codes(status) == [6, 4]
    text = run(cfg, "status", code=6, MONGODB_URI=closed, ARCHIVERD_SERVER_TIMEOUT_MS="300").stdout
    assert "cannot reach MongoDB" in text and "orphan" in text


def test_status_of_an_older_state_file_and_json_shape(cfg, collection):
    """Keys scripts read stay where they were; a state file from the first version still loads."""
    put(collection, [(1, 10)])
    State(cfg.state_file).update(last_seal={"segment": "2026/08/01/part-0001.mkv", "documents": 3, "bytes": 10,
                                            "at": "2026-11-25T10:00:00+00:00"})
    status = json.loads(run(cfg, "status", "--json", code=0).stdout)
    for key in ("server", "namespace", "watermark", "complete_days_before", "expired", "ready", "oldest_expired",
                "skipped", "segments", "bytes_on_disk", "last_seal", "last_cycle", "pending_deletes",
                "change_stream", "last_error", "orphans", "set_aside", "lease", "database", "pending_days",
                "documents_on_disk", "days_on_disk", "health"):
        assert key in status, key
    assert status["last_seal"]["documents"] == 3


@pytest.mark.parametrize("flag", ["0s", "inf", "-1d", "1e400d", "soon", "3"])
def test_bad_stale_after_is_a_usage_error(cfg, collection, flag):
    proc = run(cfg, "status", "--stale-after", flag, code=3)
    assert proc.stderr.count("\n") == 1 and "--stale-after" in proc.stderr


def test_status_does_not_create_anything(cfg, collection):
    put(collection, [(1, 100)])
    run(cfg, "status", code=2)
    assert not any(cfg.archive_dir.iterdir())
    assert set(collection.database.list_collection_names()) == {"eat_agent_experiences"}



def test_a_long_backlog_lists_its_first_and_last_days_and_counts_the_rest(cfg, collection):
    """A first catch-up can have years of pending days: the text shows five at each end (the JSON
    and `run --dry-run` every one), so that the rest of status stays on the screen."""
    put(collection, [(i, 100 + i) for i in range(14)])
    info = collect(cfg, stale_after=365 * DAY)
    assert len(info["pending_days"]) == 14
    text = run(cfg, "status", "--stale-after", "365d", code=0).stdout
    listed = [line.split()[0] for line in text.splitlines() if line.startswith(" " * 16 + "20")]
    days = [d["day"] for d in info["pending_days"]]
    assert listed == days[:5] + days[-5:]
    assert "... 4 more days (`archiverd run --dry-run` or `status --json` lists every day)" in text
    collection.delete_many({"timestamp": {"$lt": dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=108.5)}})
    text = run(cfg, "status", "--stale-after", "365d", code=0).stdout
    assert "more day" not in text and sum(line.startswith(" " * 16 + "20") for line in text.splitlines()) == 9
