"""Retention, holds, prune and the audit log, on real segments in a real archive tree, through the
real command line (and crashes by SIGKILL at the named fault points)."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import bson
import pytest
from bson import ObjectId

from archiverd import SegmentReader, config, write_segment
from archiverd.errors import ConfigError
from archiverd.format import index
from archiverd.service.state import State
from archiverd.store import audit, check, holds, layout, retention

NOW = dt.datetime.now(dt.timezone.utc)
OLD_DAYS = ["2020-03-01", "2020-03-02", "2021-07-15"]  # past any retention below
RECENT = (NOW - dt.timedelta(days=100)).date().isoformat()  # archived (threshold 90), within retention 365


def run(*args, env, check_code=None, crash_at=None):
    extra = {"_ARCHIVERD_CRASH_AT": crash_at} if crash_at else {}
    proc = subprocess.run([sys.executable, "-m", "archiverd", *map(str, args)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env, **extra})
    assert "Traceback" not in proc.stderr, proc.stderr
    if check_code is not None:
        assert proc.returncode == check_code, (proc.returncode, proc.stdout, proc.stderr)
    return proc


def make_doc(n: int, day: str) -> bytes:
    when = dt.datetime.fromisoformat(day).replace(hour=12, tzinfo=dt.timezone.utc)
    return bson.encode({"_id": ObjectId(f"{n:024x}"), "timestamp": when, "task": f"secret task text {n}",
                        "user": f"person-{n}@example.com"})


@pytest.fixture
def archive(tmp_path, private_umask):
    """Four days of sealed segments (two parts on the first), each with a derived file beside it."""
    root = tmp_path / "archives"
    env = {"ARCHIVERD_ARCHIVE_DIR": str(root), "ARCHIVERD_RETENTION_DAYS": "365"}
    cfg = config.load(environ=env)
    docs: dict[str, list[bytes]] = {}
    n = 0
    for day, part in [(OLD_DAYS[0], 1), (OLD_DAYS[0], 2), (OLD_DAYS[1], 1), (OLD_DAYS[2], 1), (RECENT, 1)]:
        video = layout.day_dir(cfg.collection_dir, day) / f"part-{part:04d}.mkv"
        video.parent.mkdir(parents=True, exist_ok=True)
        raws = [make_doc(n + i, day) for i in range(3)]
        n += 3
        write_segment(video, raws)
        video.with_name(f"part-{part:04d}.vectors").write_bytes(b"derived sidecar stand-in")
        docs[video.relative_to(cfg.collection_dir).as_posix()] = raws
    return cfg, env, docs


@pytest.fixture
def private_umask():
    old = os.umask(0o022)
    yield
    os.umask(old)


def tree(root: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


def segments_left(cfg) -> set[str]:
    return {v.relative_to(cfg.collection_dir).as_posix() for v in layout.videos(cfg.collection_dir)}


def assert_no_ids_or_content(cfg, docs) -> None:
    """The audit log and the holds file name no document: no `_id` in any form, no content."""
    text = b"".join(p.read_bytes() for p in (audit.path_for(cfg.collection_dir), cfg.collection_dir / holds.FILE_NAME)
                    if p.exists())
    for raws in docs.values():
        for raw in raws:
            d = bson.decode(raw)
            for needle in (str(d["_id"]), d["_id"].binary.hex(), d["task"], d["user"]):
                assert needle.encode() not in text, needle


def test_segment_files_in_removal_order():
    names = ["part-0003.mkv", "part-0003.index.json", "part-0003.repaired.mkv", "part-0003.repaired.index.json",
             "part-0003.vectors", "part-0003.key.json", "part-00030.mkv", "part-0004.index.json",
             ".part-0003.mkv.ab12.tmp", "notes.txt"]
    assert layout.removal_order("part-0003.mkv", names) == [
        "part-0003.index.json", "part-0003.repaired.index.json", "part-0003.key.json", "part-0003.vectors",
        "part-0003.repaired.mkv", "part-0003.mkv"]
    # a partly removed segment still lists what is left
    assert layout.removal_order("part-0003.mkv", names[1:])[-1] == "part-0003.repaired.mkv"


def test_last_prunable_day_counts_from_the_end_of_the_day():
    now = dt.datetime(2026, 6, 10, 0, 0, tzinfo=dt.timezone.utc)
    assert retention.last_prunable_day(10, now) == dt.date(2026, 5, 30)  # May 31 ends exactly at now-10d: not yet
    assert retention.last_prunable_day(10, now + dt.timedelta(seconds=1)) == dt.date(2026, 5, 30)
    assert retention.last_prunable_day(10, now + dt.timedelta(days=1)) == dt.date(2026, 5, 31)


def test_retention_setting_is_checked():
    assert config.load(environ={}).retention_days == 0  # keep forever
    assert config.load(environ={"ARCHIVERD_RETENTION_DAYS": "730"}).retention_days == 730
    for bad, match in [("90", "more than threshold_days"), ("-1", "negative"), ("ten", "integer"),
                       ("40000", "between")]:
        with pytest.raises(ConfigError, match=match):
            config.load(environ={"ARCHIVERD_RETENTION_DAYS": bad})


def test_dry_run_changes_nothing(archive):
    cfg, env, docs = archive
    before = tree(cfg.collection_dir)
    out = run("prune", "--dry-run", env=env, check_code=0).stdout
    assert tree(cfg.collection_dir) == before and not audit.path_for(cfg.collection_dir).exists()
    assert out.count("would remove") == 5 and RECENT.replace("-", "/") not in out  # 4 segments + the summary line


def test_prune_removes_whole_old_segments_and_audits_without_ids(archive):
    cfg, env, docs = archive
    video_sha = {rel: hashlib.sha256((cfg.collection_dir / rel).read_bytes()).hexdigest() for rel in docs}
    out = run("prune", "--reason", "yearly clean-up", env=env, check_code=0).stdout
    assert out.count("removed") == 5
    recent = f"{RECENT.replace('-', '/')}/part-0001.mkv"
    assert segments_left(cfg) == {recent}
    assert sorted(p.name for p in (cfg.collection_dir / recent).parent.iterdir()) == [
        "part-0001.index.json", "part-0001.mkv", "part-0001.vectors"]
    assert [SegmentReader(cfg.collection_dir / recent).get(bson.decode(r)["_id"]) for r in docs[recent]] == docs[recent]
    assert not (cfg.collection_dir / "2020").exists() and not (cfg.collection_dir / "2021").exists()
    log_path = audit.path_for(cfg.collection_dir)
    assert log_path.stat().st_mode & 0o777 == 0o600
    records, torn = audit.read(cfg.collection_dir)
    assert torn == 0 and [(r["event"], r["phase"]) for r in records] == [("prune", "begin"), ("prune", "end")] * 4
    for begin, end in zip(records[::2], records[1::2]):
        assert begin["run"] == end["run"] and begin["segment"] == end["segment"] and end["removed"] == 3
        assert begin["documents"] == 3 and begin["why"]["retention_days"] == 365
        assert begin["why"]["reason"] == "yearly clean-up" and "ARCHIVERD_RETENTION_DAYS" in begin["why"]["setting"]
        assert begin["who"]["pid"] > 0 and begin["who"]["host"] and begin["who"]["command"] == "archiverd prune"
        video = next(f for f in begin["files"] if f["path"] == begin["segment"])
        assert video["sha256"] == video_sha[begin["segment"]] and video["bytes"] > 0
        assert [f["path"].rsplit("/", 1)[1] for f in begin["files"]] == [
            "part-0001.index.json" if "0001" in begin["segment"] else "part-0002.index.json",
            *[f"part-000{1 if '0001' in begin['segment'] else 2}.{s}" for s in ("vectors", "mkv")]]
    assert_no_ids_or_content(cfg, docs)
    again = run("prune", env=env, check_code=0).stdout  # nothing left to do
    assert again.count("removed 0 segments") == 1 and again.rstrip().endswith("(0 bytes), nothing kept back")


def test_holds_block_prune_until_lifted(archive):
    cfg, env, docs = archive
    run("hold", "add", "--from", OLD_DAYS[0], "--reason", "case 17", env=env, check_code=0)
    held_doc = bson.decode(docs["2021/07/15/part-0001.mkv"][1])["_id"]
    out = run("hold", "add", "--id", str(held_doc), "--reason", "case 18", env=env, check_code=0).stdout
    assert "hold 2 (document" in out
    assert (cfg.collection_dir / holds.FILE_NAME).stat().st_mode & 0o777 == 0o600
    listed = run("hold", "list", env=env, check_code=0).stdout
    assert "hold 1 (days 2020-03-01 to 2020-03-01: case 17)" in listed and "case 18" in listed
    out = run("prune", env=env, check_code=1).stdout  # something kept back: exit 1
    assert out.count("kept") >= 3 and "case 17" in out and "case 18" in out
    assert out.splitlines()[-1].endswith(" bytes), kept 3 segments past retention (3 under a hold)"), out
    assert segments_left(cfg) == {"2020/03/01/part-0001.mkv", "2020/03/01/part-0002.mkv", "2021/07/15/part-0001.mkv",
                                  f"{RECENT.replace('-', '/')}/part-0001.mkv"}
    for rel in segments_left(cfg):  # what is kept is whole
        assert check.check([cfg.collection_dir / rel], read_data=True).ok
    assert_no_ids_or_content(cfg, docs)
    run("hold", "remove", "1", "--reason", "case 17 closed", env=env, check_code=0)
    run("hold", "remove", "1", "--reason", "again", env=env, check_code=3)
    run("prune", env=env, check_code=1)
    assert "2021/07/15/part-0001.mkv" in segments_left(cfg) and "2020/03/01/part-0001.mkv" not in segments_left(cfg)
    run("hold", "remove", "2", "--reason", "case 18 closed", env=env, check_code=0)
    run("prune", env=env, check_code=0)
    assert segments_left(cfg) == {f"{RECENT.replace('-', '/')}/part-0001.mkv"}
    events = [r["event"] for r in audit.read(cfg.collection_dir)[0]]
    assert events.count("hold.add") == 2 and events.count("hold.remove") == 2
    assert_no_ids_or_content(cfg, docs)


def test_hold_by_id_covers_every_value_the_text_may_mean(archive):
    cfg, _env, _docs = archive
    store = holds.Holds(cfg.collection_dir)
    hex_id = "66b1f0c2e4b0a1b2c3d4e5f6"
    hold = store.add_document([index.key_of(ObjectId(hex_id)), index.key_of(hex_id)], "r", audit.who("test"), None)
    assert len(hold.digests) == 2 and all(d.startswith("sha256:") for d in hold.digests)
    assert holds.matching(store.list(), index.key_of(ObjectId(hex_id)), None) == [hold]
    assert holds.matching(store.list(), index.key_of(hex_id), None) == [hold]
    assert holds.matching(store.list(), index.key_of(ObjectId("66b1f0c2e4b0a1b2c3d4e5f7")), None) == []


def test_prune_refuses_without_retention_and_keeps_journaled_segments(archive):
    cfg, env, docs = archive
    env_off = {k: v for k, v in env.items() if k != "ARCHIVERD_RETENTION_DAYS"}
    assert "no retention" in run("prune", env=env_off, check_code=3).stderr
    assert "longer than the threshold" in run("prune", "--keep-days", "30", env=env_off, check_code=3).stderr
    result = retention.prune(cfg, pending=["2020/03/02/part-0001.mkv"])
    kept = [s for s in result.kept]
    assert [s.video.name for s in kept] == ["part-0001.mkv"] and "journaled" in kept[0].skipped
    assert segments_left(cfg) == {"2020/03/02/part-0001.mkv", f"{RECENT.replace('-', '/')}/part-0001.mkv"}
    State(cfg.state_file).add_pending("2020/03/02/part-0001.mkv")  # as a cycle's unfinished deletes leave it
    out = run("prune", env=env, check_code=1).stdout
    assert out.splitlines()[-1].endswith("(0 bytes), kept 1 segment past retention (1 journaled or not checkable)")
    State(cfg.state_file).remove_pending("2020/03/02/part-0001.mkv")
    out = run("prune", "--keep-days", "3650", "--reason", "asked by DPO", env=env_off, check_code=0).stdout
    assert "removed 0 segments" in out  # 2020 is not ten years old
    result = retention.prune(cfg, pending=[])
    assert not result.kept and segments_left(cfg) == {f"{RECENT.replace('-', '/')}/part-0001.mkv"}


def test_crash_between_audit_and_removal_then_rerun(archive):
    cfg, env, docs = archive
    proc = run("prune", env=env, crash_at="prune:audited")
    assert proc.returncode == -9
    records, _ = audit.read(cfg.collection_dir)
    assert [(r["phase"], r["segment"]) for r in records] == [("begin", "2020/03/01/part-0001.mkv")]
    assert len(segments_left(cfg)) == 5 and check.check([cfg.collection_dir]).ok  # nothing removed yet
    run("prune", env=env, check_code=0)
    assert segments_left(cfg) == {f"{RECENT.replace('-', '/')}/part-0001.mkv"}
    records, _ = audit.read(cfg.collection_dir)
    assert [r["phase"] for r in records] == ["begin"] + ["begin", "end"] * 4


def test_crash_after_the_index_went_leaves_an_orphan_that_check_reports_and_a_rerun_removes(archive):
    cfg, env, docs = archive
    # a document hold elsewhere: the rerun must still finish the orphan, whose index (and ids) are gone
    run("hold", "add", "--id", str(bson.decode(docs[f"{RECENT.replace('-', '/')}/part-0001.mkv"][0])["_id"]),
        "--reason", "keep one", env=env, check_code=0)
    proc = run("prune", env=env, crash_at="prune:uncommitted")
    assert proc.returncode == -9
    orphan = cfg.collection_dir / "2020/03/01/part-0001.mkv"
    assert orphan.exists() and not index.path_for(orphan).exists()
    result = check.check([cfg.collection_dir])
    assert not result.ok and [s.status for s in result.segments if s.path == str(orphan)] == [check.ORPHAN]
    assert orphan not in set(layout.segments(cfg.collection_dir))  # readers no longer see it
    run("prune", env=env, check_code=0)
    assert segments_left(cfg) == {f"{RECENT.replace('-', '/')}/part-0001.mkv"}
    assert check.check([cfg.collection_dir]).ok
    begins = [r for r in audit.read(cfg.collection_dir)[0] if r.get("phase") == "begin"]
    assert begins[1]["segment"] == str(orphan.relative_to(cfg.collection_dir)) and begins[1]["documents"] is None


def test_an_orphan_past_retention_is_kept_while_document_holds_cannot_be_checked(archive):
    cfg, env, docs = archive
    lost = cfg.collection_dir / "2021/07/15/part-0001.mkv"
    index.path_for(lost).unlink()  # an index lost by accident, not by prune
    run("hold", "add", "--id", "1", "--reason", "case 19", env=env, check_code=0)
    out = run("prune", env=env, check_code=1).stdout
    assert "cannot be read" in out and lost.exists()


def test_a_torn_audit_line_is_ended_and_skipped(tmp_path):
    audit.append(tmp_path, "prune", {"user": "u"}, phase="begin")
    with open(audit.path_for(tmp_path), "ab") as fh:
        fh.write(b'{"event": "prune", "pha')  # a crash in the middle of a write
    audit.append(tmp_path, "prune", {"user": "u"}, phase="end")
    records, torn = audit.read(tmp_path)
    assert [r["phase"] for r in records] == ["begin", "end"] and torn == 1


def test_the_daemon_prunes_only_with_retention_set_once_a_day(cfg, collection, capsys):
    import dataclasses

    from archiverd import log
    from archiverd.service.daemon import Daemon
    from archiverd.service.state import State
    log.setup("json")
    collection.insert_one({"_id": 1, "timestamp": NOW})  # not expired; the collection exists
    old = layout.day_dir(cfg.collection_dir, OLD_DAYS[0]) / "part-0001.mkv"
    old.parent.mkdir(parents=True)
    write_segment(old, [make_doc(1, OLD_DAYS[0])])
    assert Daemon(cfg).once()[0] == 0
    assert old.exists() and not audit.path_for(cfg.collection_dir).exists()
    assert "prune." not in capsys.readouterr().err  # no retention: not a word about pruning
    keeping = dataclasses.replace(cfg, retention_days=365)
    assert Daemon(keeping).once()[0] == 0
    assert not old.exists() and not old.parent.exists()
    [begin, end] = audit.read(cfg.collection_dir)[0]
    assert begin["who"]["command"] == "archiverd run" and end["phase"] == "end"
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")]
    done = [line for line in lines if line.get("event") == "prune.done"]
    assert len(done) == 1 and done[0]["segments_removed"] == 1 and done[0]["retention_days"] == 365
    state = State(cfg.state_file)
    assert state.get("last_prune_day") == dt.datetime.now(dt.timezone.utc).date().isoformat()
    later = layout.day_dir(cfg.collection_dir, OLD_DAYS[1]) / "part-0001.mkv"  # once a day: it waits for tomorrow
    later.parent.mkdir(parents=True)
    write_segment(later, [make_doc(2, OLD_DAYS[1])])
    Daemon(keeping).once()
    assert later.exists()
    assert retention.after_cycle(keeping, state, now=NOW + dt.timedelta(days=1)).summary()["segments_removed"] == 1
    assert not later.exists()


def test_document_holds_are_keyed_when_encryption_is_on(archive, tmp_path):
    from archiverd.crypto import keyring
    cfg, env, docs = archive
    key_path = tmp_path / "master.key"
    keyring.create(key_path, keyring.Keyring([keyring.MasterKey.generate()]))
    encrypted = {**env, "ARCHIVERD_ENCRYPTION_KEY_FILE": str(key_path)}
    held = bson.decode(docs["2020/03/02/part-0001.mkv"][2])["_id"]
    run("hold", "add", "--id", str(held), "--reason", "case 20", env=encrypted, check_code=0)
    [hold] = holds.Holds(cfg.collection_dir).list()
    kid = keyring.load(key_path).keys[0].id
    assert all(d.startswith(f"hmac-sha256:{kid}:") for d in hold.digests)
    plain = hashlib.sha256(index.key_of(held).encode()).hexdigest()
    assert plain.encode() not in (cfg.collection_dir / holds.FILE_NAME).read_bytes()
    out = run("prune", "--dry-run", env=env, check_code=1).stdout  # without the key: nothing can be checked
    assert out.count("cannot be checked") == 4
    out = run("prune", env=encrypted, check_code=1).stdout
    assert "case 20" in out and segments_left(cfg) == {"2020/03/02/part-0001.mkv",
                                                        f"{RECENT.replace('-', '/')}/part-0001.mkv"}
    assert_no_ids_or_content(cfg, docs)
