"""`archiverd list` and `archiverd info` (borg's list/info): counts and sizes from the indexes, checked
against the files and the documents themselves; orphans, repaired copies, damage; speed on a few
hundred segments."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import bson
import pytest

from archiverd import SegmentReader, write_segment
from archiverd.format import index
from archiverd.store import inventory, layout
from archiverd.store.check import check
from tests.test_cli_daemon import env_for, run


def _segment_bytes(video: Path) -> int:
    """Bytes of every file of the segment `video` (its index, sidecar, key file, ...)."""
    names = [p.name for p in video.parent.iterdir() if p.is_file()]
    return sum((video.parent / name).stat().st_size for name in layout.removal_order(video.name, names))


def _segment(path: Path, docs: list[bytes], dates: list[str] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_segment(path, docs, source={"db": "d", "collection": "c", "date_field": "timestamp"})
    if dates:  # as the daemon records them: each entry's date
        idx = json.loads(index.path_for(path).read_text())
        for entry, date in zip(idx["docs"], dates):
            entry["date"] = date
        index.path_for(path).write_bytes(index.dumps(idx))


@pytest.fixture
def archive(cfg, text_docs):
    """Three days, four segments (one day in two parts) in the layout the daemon writes."""
    root = cfg.collection_dir
    _segment(root / "2026/08/01/part-0001.mkv", text_docs[:5])
    _segment(root / "2026/08/01/part-0002.mkv", text_docs[5:8])
    _segment(root / "2026/08/02/part-0001.mkv", text_docs[8:20])
    _segment(root / "2026/09/30/part-0001.mkv", text_docs[20:21])
    return root


def test_list_per_day_and_per_segment(cfg, archive, text_docs):
    out = json.loads(run(cfg, "list", "--json", code=0).stdout)
    assert [(d["day"], d["segments"], d["documents"]) for d in out["days"]] == [
        ("2026-08-01", 2, 8), ("2026-08-02", 1, 12), ("2026-09-30", 1, 1)]
    assert out["totals"]["documents"] == 21 and out["totals"]["segments"] == 4 and out["totals"]["days"] == 3
    assert out["totals"]["bson_bytes"] == sum(map(len, text_docs[:21]))
    on_disk = sum(p.stat().st_size for p in archive.rglob("*") if p.is_file())
    assert out["totals"]["bytes"] == on_disk
    assert sum(d["bytes"] for d in out["days"]) == on_disk  # nothing else in the tree yet
    per_segment = json.loads(run(cfg, "list", "--segments", "--json", code=0).stdout)["segments"]
    for row in per_segment:
        video = archive / row["rel"]
        assert row["bytes"] == _segment_bytes(video)  # with its sidecar
        assert row["documents"] == sum(1 for _ in SegmentReader(video))  # the index agrees with the video
    text = run(cfg, "list", code=0).stdout
    assert "2026-08-01" in text and "total: 4 segments, 21 documents" in text and text.splitlines()[-1].endswith(
        ", 3 days")
    one = run(cfg, "list", "2026-09-30", code=0).stdout.splitlines()[-1]  # a count of one reads in the singular
    assert one.startswith("total: 1 segment, 1 document, ") and one.endswith(" on disk, 1 day"), one
    narrowed = json.loads(run(cfg, "list", "2026-08", "--json", code=0).stdout)
    assert narrowed["totals"]["documents"] == 20 and [d["day"] for d in narrowed["days"]] == ["2026-08-01",
                                                                                            "2026-08-02"]
    seg_text = run(cfg, "list", "2026-08-01", "--segments", code=0).stdout
    assert "2026/08/01/part-0002.mkv" in seg_text and "2026/08/02" not in seg_text
    where = seg_text.splitlines()[-1].removeprefix("in ")  # the directory the names are relative to
    assert run(cfg, "info", where + "2026/08/01/part-0002.mkv", code=0).stdout
    assert "under the collection's directory" in run(cfg, "info", "2026/08/01/part-0002.mkv", code=4).stderr


def test_list_reports_orphans_bad_indexes_and_repaired_copies(cfg, archive):
    orphan = archive / "2026/08/02/part-0001.mkv"
    index.path_for(orphan).unlink()
    bad = archive / "2026/09/30/part-0001.mkv"
    index.path_for(bad).write_text('{"format": "archiverd-segment"}')
    damaged = archive / "2026/08/01/part-0001.mkv"
    data = bytearray(damaged.read_bytes())
    data[len(data) // 2] ^= 0x40
    damaged.write_bytes(bytes(data))
    check([damaged], repair=True)  # writes part-0001.repaired.mkv, which readers prefer
    assert index.preferred(damaged) != damaged
    proc = run(cfg, "list", "--segments", "--json", code=4)
    out = json.loads(proc.stdout)
    assert out["orphans"] == ["2026/08/02/part-0001.mkv"]
    assert list(out["unreadable_indexes"]) == ["2026/09/30/part-0001.mkv"]
    rows = {r["rel"]: r for r in out["segments"]}
    assert set(rows) == {"2026/08/01/part-0001.mkv", "2026/08/01/part-0002.mkv"}  # the repaired copy is no extra row
    repaired = rows["2026/08/01/part-0001.mkv"]
    assert repaired["repaired"] and repaired["bytes"] == sum(
        p.stat().st_size for p in damaged.parent.glob("part-0001.*"))
    proc = run(cfg, "list", code=4)
    assert "orphan (a video without its index): 2026/08/02/part-0001.mkv" in proc.stderr


def test_list_namespace_typo_and_missing_archive(cfg, archive, tmp_path):
    proc = run(cfg, "list", "--collection", "eat_agent_experience", code=3)
    assert "did you mean 'eat_agent_experiences'" in proc.stderr and proc.stderr.count("\n") == 1
    proc = run(cfg, "list", "--db", cfg.database + "x", code=3)
    assert f"did you mean {cfg.database!r}" in proc.stderr
    run(cfg, "list", "--archive-dir", tmp_path / "nowhere", code=5)
    for bad in ("2026-8", "yesterday", "2026-08-01-02", "../x", ""):
        proc = run(cfg, "list", bad, code=3)
        assert proc.stderr.count("\n") == 1


def test_list_before_anything_was_archived(cfg):
    out = json.loads(run(cfg, "list", "--json", code=0).stdout)
    assert out["totals"]["segments"] == 0 and out["days"] == []


def test_info_from_the_index_and_inspect_is_the_same_command(cfg, text_docs):
    path = cfg.collection_dir / "2026/08/01/part-0001.mkv"
    docs = text_docs[:30]
    _segment(path, docs, dates=[f"2026-08-01T{h:02d}:00:00+00:00" for h in range(24)] * 2)
    info = json.loads(run(cfg, "info", "--json", path, code=0).stdout)
    idx = index.load(index.path_for(path))
    assert info["documents"] == 30 and info["bson_bytes"] == sum(map(len, docs))
    assert info["video_bytes"] == path.stat().st_size and info["index_bytes"] == index.path_for(path).stat().st_size
    assert info["frames"] == info["data_frames"] + info["parity_frames"] == idx["frames"]
    assert info["parity_frames"] > 0 and info["parity"]["parity_rows"] > 0
    assert info["first_date"] == "2026-08-01T00:00:00+00:00" and info["last_date"] == "2026-08-01T23:00:00+00:00"
    assert info["first_id"] == index.id_json(bson.decode(docs[0])["_id"])
    assert info["repair"] == {"reading": str(path), "repaired_copy": False, "original_present": True}
    assert info["size_matches_index"]
    assert json.loads(run(cfg, "inspect", "--json", path, code=0).stdout) == info
    assert json.loads(run(cfg, "info", "--json", index.path_for(path), code=0).stdout) == info
    with_docs = json.loads(run(cfg, "info", "--json", "--docs", path, code=0).stdout)
    assert with_docs["docs"] == idx["docs"]
    text = run(cfg, "info", path, code=0).stdout
    assert "30 (" in text and "parity:" in text and "size as sealed" in text
    first, last = (json.dumps(index.id_json(bson.decode(d)["_id"])) for d in (docs[0], docs[-1]))
    assert f"_ids:       first {first}, last {last}\n" in text  # archive order, not a range
    assert "inspect" not in run(cfg, "--help").stdout  # one command, listed once


def test_info_repair_state_and_damage(cfg, text_docs, tmp_path):
    path = tmp_path / "part-0001.mkv"
    _segment(path, text_docs[:40])
    data = bytearray(path.read_bytes())
    data[len(data) // 3] ^= 0x01
    path.write_bytes(bytes(data))  # same size: info cannot see it, verify can
    assert json.loads(run(cfg, "info", "--json", path, code=0).stdout)["size_matches_index"]
    path.write_bytes(bytes(data[:-100]))  # truncated: the size shows it
    proc = run(cfg, "info", path, code=4)
    assert "SIZE DIFFERS FROM THE INDEX" in proc.stdout
    path.write_bytes(bytes(data))
    check([path], repair=True)
    info = json.loads(run(cfg, "info", "--json", path, code=0).stdout)
    assert info["repair"]["repaired_copy"] and info["repair"]["reading"].endswith("part-0001.repaired.mkv")
    assert "a verified repaired copy is read" in run(cfg, "info", path, code=0).stdout
    path.unlink()
    info = json.loads(run(cfg, "info", "--json", path, code=0).stdout)
    assert not info["repair"]["original_present"]
    other = tmp_path / "b" / "part-0001.mkv"
    _segment(other, text_docs[:2])
    other.unlink()
    assert "THE VIDEO IS MISSING" in run(cfg, "info", other, code=4).stdout
    _segment(tmp_path / "c" / "part-0001.mkv", text_docs[:2])
    index.path_for(tmp_path / "c" / "part-0001.mkv").unlink()
    proc = run(cfg, "info", tmp_path / "c" / "part-0001.mkv", code=4)
    assert "orphan" in proc.stderr and "reindex" in proc.stderr


def test_inventory_of_a_few_hundred_segments_is_quick(tmp_path, text_docs):
    """300 segments over 300 days: every index is loaded, every file sized, in well under a second
    per hundred (measured: see the report)."""
    root = tmp_path / "archive"
    first = root / "2025/01/01/part-0001.mkv"
    _segment(first, text_docs[:40])
    days = [f"{2025 + n // 336:04d}/{1 + n % 336 // 28:02d}/{1 + n % 28:02d}" for n in range(300)]
    for day in days[1:]:
        target = root / day / "part-0001.mkv"
        target.parent.mkdir(parents=True)
        for src in (first, index.path_for(first)):
            shutil.copyfile(src, target.parent / src.name)
    started = time.perf_counter()
    inv = inventory.scan(root)
    seconds = time.perf_counter() - started
    assert len(inv.segments) == 300 and inv.documents == 300 * 40 and len(inv.days()) == 300
    copied = first.stat().st_size + index.path_for(first).stat().st_size
    assert inv.bytes_on_disk == _segment_bytes(first) + 299 * copied
    assert [s.rel for s in inv.segments] == [str(p.relative_to(root)) for p in layout.segments(root)]
    print(f"inventory of 300 segments: {seconds:.3f} s")
    assert seconds < 15, seconds  # a loose bound for a busy shared host; the figure is in the report


def test_list_and_info_work_from_any_directory(cfg, archive, tmp_path):
    """Relative SEGMENT paths resolve from the current directory, as in any shell command."""
    env = env_for(cfg)
    proc = subprocess.run([sys.executable, "-m", "archiverd", "info", "part-0002.mkv", "--json"], env=env,
                          cwd=archive / "2026/08/01", capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and json.loads(proc.stdout)["documents"] == 3
