"""Rebuilding from the video alone: a lost index, a damaged video; never over an existing file."""
import hashlib
import json
import os

import pytest

from archiverd import SegmentError, SegmentReader, write_segment
from archiverd.format import index, rebuild, sidecar
from tests.test_cli import run

SOURCE = {"db": "evolving_agents_db", "collection": "eat_agent_experiences", "date_field": "timestamp"}


@pytest.fixture
def segment(tmp_path, eat_docs, text_docs):
    path = tmp_path / "2026" / "01" / "01" / "part-0001.mkv"
    path.parent.mkdir(parents=True)
    docs = eat_docs[:6] + text_docs[:80]
    idx = write_segment(path, docs, source=SOURCE, block_bytes=200_000)
    return path, docs, idx


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_lost_index_is_rebuilt_exactly(segment, tmp_path):
    path, docs, original = segment
    index.path_for(path).rename(tmp_path / "moved-away.json")
    before = _sha(path)
    rebuilt = rebuild.reindex(path)
    assert rebuilt.identical and _sha(path) == before
    new = json.loads(index.path_for(path).read_text())
    for key in original:
        if key != "docs":
            assert new[key] == original[key], key
    for a, b in zip(new["docs"], original["docs"]):
        assert {k: v for k, v in a.items() if k != "date"} == b
        assert a["date"].startswith("20")  # recomputed from the source's date field
    assert list(SegmentReader(path)) == docs and SegmentReader(path).verify().ok
    assert os.stat(index.path_for(path)).st_mode & 0o777 == 0o600


def test_reindex_never_replaces_an_index(segment):
    path, _, _ = segment
    before = index.path_for(path).read_bytes()
    with pytest.raises(SegmentError, match="never replaces"):
        rebuild.reindex(path)
    assert index.path_for(path).read_bytes() == before
    proc = run("reindex", path, check_code=0)  # the command rebuilds only what is missing or damaged
    assert "nothing to rebuild" in proc.stdout and index.path_for(path).read_bytes() == before


@pytest.mark.parametrize("change", ["cut", "emptied", "grown"])
def test_reindex_does_not_call_a_video_of_another_size_good(segment, change):
    """A video that is not the size its index records is not the sealed one: exit 4, nothing written."""
    path, _, _ = segment
    data = path.read_bytes()
    path.write_bytes({"cut": data[:len(data) // 2], "emptied": b"", "grown": data + b"\0" * 100}[change])
    files = {p: p.read_bytes() for p in path.parent.iterdir()}
    proc = run("reindex", path, check_code=4)
    assert "its index says" in proc.stderr and "nothing to rebuild" not in proc.stdout
    assert {p: p.read_bytes() for p in path.parent.iterdir()} == files


def test_reindex_rebuilds_a_lost_or_damaged_sidecar_bit_for_bit(segment, tmp_path):
    path, _, _ = segment
    vectors = sidecar.path_for(path)
    original = vectors.read_bytes()
    assert sidecar.parse(original).fields  # the EAT documents' embeddings are in it
    vectors.unlink()
    proc = run("reindex", path, check_code=0)
    assert "vector sidecar rebuilt (vector sidecar is missing)" in proc.stdout
    assert vectors.read_bytes() == original
    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 1
    vectors.write_bytes(bytes(damaged))
    assert "SHA-256 does not match" in run("reindex", path, check_code=0).stdout
    assert vectors.read_bytes() == original
    index_bytes = index.path_for(path).read_bytes()
    index.path_for(path).rename(tmp_path / "away.json")
    vectors.unlink()
    proc = run("reindex", path, check_code=0)
    assert "index rebuilt" in proc.stdout and "vector sidecar rebuilt" in proc.stdout
    assert vectors.read_bytes() == original
    assert json.loads(index.path_for(path).read_bytes())["content_sha256"] == json.loads(index_bytes)["content_sha256"]


def test_reindex_of_a_damaged_video_rebuilds_the_original(segment, tmp_path):
    path, docs, original = segment
    index.path_for(path).rename(tmp_path / "moved-away.json")
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x08
    path.write_bytes(bytes(data))
    rebuilt = rebuild.reindex(path)
    assert not rebuilt.identical and rebuilt.report.repaired_frames > 0
    assert rebuilt.index["video"]["sha256"] == original["video"]["sha256"]  # describes the original
    report = SegmentReader(path).verify()
    assert report.status == "damaged (repairable)"


def test_an_unrecoverable_video_is_not_reindexed(segment, tmp_path):
    path, _, _ = segment
    index.path_for(path).rename(tmp_path / "moved-away.json")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(SegmentError, match="cannot be rebuilt"):
        rebuild.reindex(path)
    assert not index.path_for(path).exists()


def test_repair_writes_the_original_beside_the_damaged_file(segment):
    path, docs, original = segment
    data = bytearray(path.read_bytes())
    for pos in (len(data) // 3, 2 * len(data) // 3):
        data[pos] ^= 0x01
    path.write_bytes(bytes(data))
    damaged_sha = _sha(path)
    rebuilt = rebuild.repair(path)
    assert rebuilt.identical and rebuilt.path == index.repaired_path(path)
    assert _sha(rebuilt.path) == original["video"]["sha256"]
    assert _sha(path) == damaged_sha and index.path_for(path).exists()  # the original is untouched
    reader = SegmentReader(path)
    assert reader.path == rebuilt.path  # readers prefer the repaired copy
    assert reader.verify().ok and list(reader) == docs
    with pytest.raises(SegmentError, match="already exists"):
        rebuild.repair(path)
