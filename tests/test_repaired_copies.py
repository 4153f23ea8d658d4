"""A `.repaired.` copy stands in for its segment only if it is that segment's repair. Another
segment's files under the repaired name (a restore into the wrong directory, a hand copy, a repaired
copy moved) must never hide the original's documents, feed `reindex` another segment's vectors, or
let `erase` remove the original after rewriting the copy: the original is the only copy."""
from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter

import bson
import pytest

from archiverd import SegmentReader, config, write_segment
from archiverd.format import index, rebuild, sidecar
from archiverd.store import layout
from tests.test_erase import doc, run

DAYS = ["2025-01-10", "2025-01-11"]


@pytest.fixture
def two_days(tmp_path, eat_docs):
    """Day 0 and day 1, one segment each (with embeddings, so each has a vector sidecar)."""
    env = {"ARCHIVERD_ARCHIVE_DIR": str(tmp_path / "archives")}
    cfg = config.load(environ=env)
    videos, docs = [], []
    for d, day in enumerate(DAYS):
        raws = [doc(n, day) for n in range(10 * d, 10 * d + 4)] + [eat_docs[d]]
        video = layout.day_dir(cfg.collection_dir, day) / "part-0001.mkv"
        video.parent.mkdir(parents=True)
        write_segment(video, raws)
        videos.append(video)
        docs.append(raws)
    return cfg, env, videos, docs


def _copy_of_other_segment(videos, tmp_path) -> None:
    """Day 1's video and index, as they are, under day 0's repaired name."""
    target = index.repaired_path(videos[0])
    shutil.copyfile(videos[1], target)
    shutil.copyfile(index.path_for(videos[1]), index.path_for(target))


def _repair_of_other_segment(videos, tmp_path) -> None:
    """A genuine repaired copy (`repaired_from` names part-0001.mkv) -- of day 1's segment."""
    work = tmp_path / "elsewhere" / "part-0001.mkv"
    work.parent.mkdir()
    for path in (videos[1], index.path_for(videos[1])):
        shutil.copyfile(path, work.with_name(path.name))
    data = bytearray(work.read_bytes())
    data[len(data) // 2] ^= 0x04
    work.write_bytes(bytes(data))
    made = rebuild.repair(work)
    for path in (made.path, index.path_for(made.path)):
        shutil.copyfile(path, videos[0].with_name(path.name))


FOREIGN = pytest.mark.parametrize("plant", [_copy_of_other_segment, _repair_of_other_segment],
                                  ids=["copy of another segment", "repaired copy of another segment"])


def _files(cfg) -> dict[str, str]:
    return {p.relative_to(cfg.collection_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in cfg.collection_dir.rglob("part-*") if p.is_file()}


@FOREIGN
def test_a_foreign_repaired_copy_is_ignored_by_every_read_and_reported_by_check(two_days, tmp_path, plant):
    cfg, env, videos, docs = two_days
    plant(videos, tmp_path)
    assert index.preferred(videos[0]) == videos[0] and "part-0001.repaired.mkv" in index.foreign_repair(videos[0])
    assert list(SegmentReader(videos[0])) == docs[0]
    first = bson.decode(docs[0][0])["_id"]
    assert json.loads(run("get", str(first), env=env, code=0).stdout)["_id"] == {"$oid": str(first)}
    exported = [json.loads(line)["_id"] for line in run("export", env=env, code=0).stdout.splitlines()]
    assert Counter(json.dumps(i, sort_keys=True) for i in exported) == Counter(
        json.dumps(index.id_json(bson.decode(raw)["_id"]), sort_keys=True) for raws in docs for raw in raws)
    assert run("find", "--count", env=env, code=0).stdout.strip() == str(sum(map(len, docs)))

    before = _files(cfg)
    proc = run("check", "--repair", env=env, code=4)
    assert "unusable repaired copy" in proc.stdout and "readers ignore it" in proc.stdout, proc.stdout
    run("reindex", videos[0], env=env, code=0)  # the sidecar is day 0's own: nothing to rebuild
    assert _files(cfg) == before  # nothing sealed was written, replaced or removed
    assert sidecar.load(sidecar.path_for(videos[0]), index.load(index.path_for(videos[0]))["content_sha256"],
                        len(docs[0]), None).fields


@FOREIGN
def test_erase_beside_a_foreign_repaired_copy_keeps_the_originals_documents(two_days, tmp_path, plant):
    cfg, env, videos, docs = two_days
    plant(videos, tmp_path)
    victim = bson.decode(docs[1][0])["_id"]  # in day 1, and in the foreign copy beside day 0
    out = run("erase", str(victim), "--reason", "r", env=env, code=0).stdout
    assert "from 1 segment" in out and "2025/01/10" not in out, out
    assert videos[0].exists() and list(SegmentReader(videos[0])) == docs[0]  # day 0: untouched, every document
    kept = [raw for video in layout.videos(cfg.collection_dir) if index.path_for(video).exists()
            for raw in SegmentReader(video)]
    assert Counter(kept) == Counter(docs[0] + [d for d in docs[1] if bson.decode(d)["_id"] != victim])


def test_a_repaired_copy_of_its_own_segment_still_stands_in(two_days):
    cfg, env, videos, docs = two_days
    data = bytearray(videos[0].read_bytes())
    data[len(data) // 2] ^= 0x04
    videos[0].write_bytes(bytes(data))
    rebuild.repair(videos[0])
    assert index.foreign_repair(videos[0]) is None and index.preferred(videos[0]) == index.repaired_path(videos[0])
    assert list(SegmentReader(videos[0])) == docs[0]
    assert "unusable" not in run("check", env=env, code=0).stdout
