"""Round trips through real video files: byte-exact, every BSON type, small and huge documents."""
import hashlib
import json
import os
import shutil
import subprocess

import bson
import numpy as np
import pytest

from archiverd import SegmentReader, SegmentWriter, write_segment
from archiverd.format import frame, index, parity


def test_eat_round_trip_is_byte_exact(eat_docs, seg_path):
    idx = write_segment(seg_path, eat_docs, source={"db": "evolving_agents_db", "collection": "eat_agent_experiences"})
    reader = SegmentReader(seg_path)
    assert list(reader) == eat_docs
    report = reader.verify()
    assert report.ok, report.problems
    assert (report.documents, report.frames) == (len(eat_docs), idx["frames"])
    # an EAT document spans several frames
    assert idx["frames"] > 5 * len(eat_docs)


def test_small_documents_share_frames(text_docs, seg_path):
    idx = write_segment(seg_path, text_docs)
    assert list(SegmentReader(seg_path)) == text_docs
    assert idx["frames"] < len(text_docs) / 4


def test_every_bson_type_survives(every_type, seg_path):
    write_segment(seg_path, [every_type, bson.encode({"_id": 1}), bson.encode({})])
    assert list(SegmentReader(seg_path)) == [every_type, bson.encode({"_id": 1}), bson.encode({})]


def test_index_describes_the_segment(eat_docs, text_docs, seg_path):
    docs = eat_docs[:6] + text_docs[:40]
    idx = write_segment(seg_path, docs, source={"db": "d", "collection": "c"}, block_bytes=200_000)
    on_disk = json.loads(index.path_for(seg_path).read_text())
    assert on_disk == idx
    assert on_disk["format_version"] == 2 and on_disk["source"] == {"db": "d", "collection": "c"}
    assert on_disk["video"]["sha256"] == hashlib.sha256(seg_path.read_bytes()).hexdigest()
    assert on_disk["documents"] == len(docs) and len(on_disk["blocks"]) > 1
    for entry, raw in zip(on_disk["docs"], docs):
        assert entry["sha256"] == hashlib.sha256(raw).hexdigest() and entry["bytes"] == len(raw)
        assert entry["_id"] == {"$oid": str(bson.decode(raw)["_id"])}
        block = on_disk["blocks"][entry["block"]]
        assert entry["frames"] == block["frames"]
        geometry = parity.Geometry(on_disk["parity"]["data_rows"], on_disk["parity"]["parity_rows"])
        assert block["frames"][0] == geometry.data_position(block["offset"] // frame.BODY)


def test_get_by_id_decodes_one_block(eat_docs, text_docs, seg_path):
    docs = eat_docs[:8] + text_docs[:50]
    write_segment(seg_path, docs, block_bytes=300_000)
    reader = SegmentReader(seg_path)
    for raw in (docs[0], docs[5], docs[-1], docs[30]):
        assert reader.get(bson.decode(raw)["_id"]) == raw
    with pytest.raises(KeyError):
        reader.get("no-such-id")


def test_15_mib_document_spans_over_a_thousand_frames(seg_path):
    rng = np.random.default_rng(5)
    matrix = rng.standard_normal(1_000_000).astype(np.float32).astype(float).tolist()
    big = bson.encode({"_id": "big", "matrix": matrix, "blob": bson.Binary(os.urandom(1 << 18))})
    assert 15 << 20 < len(big) <= 16 << 20
    idx = write_segment(seg_path, [big, bson.encode({"_id": "after"})])
    assert idx["frames"] > 1000  # ~3.6 MB after packing and compression
    reader = SegmentReader(seg_path)
    assert reader.get("big") == big
    assert reader.verify().ok


def test_empty_segment_round_trips(seg_path):
    idx = write_segment(seg_path, [])
    assert idx["documents"] == 0 and idx["data_frames"] == 1
    assert idx["frames"] == 1 + 4  # one data frame and two GOPs of parity
    assert list(SegmentReader(seg_path)) == []
    assert SegmentReader(seg_path).verify().ok


def test_unsealed_writer_leaves_no_files(tmp_path, text_docs):
    path = tmp_path / "part-0001.mkv"
    with pytest.raises(RuntimeError):
        with SegmentWriter(path) as writer:
            writer.append(text_docs[0])
            raise RuntimeError("crash before seal")
    assert os.listdir(tmp_path) == []


def test_sealed_segments_are_never_overwritten(tmp_path, text_docs):
    from archiverd import StorageError
    path = tmp_path / "part-0001.mkv"
    write_segment(path, text_docs[:3])
    before = path.read_bytes()
    with pytest.raises(StorageError, match="refusing to overwrite"):
        write_segment(path, text_docs[3:6])
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["part-0001.index.json", "part-0001.mkv", "part-0001.vectors"]


def test_input_that_is_not_a_document_is_refused(seg_path):
    with SegmentWriter(seg_path) as writer:
        with pytest.raises(TypeError):
            writer.append(42)
        with pytest.raises(ValueError, match="not a BSON document"):
            writer.append(b"\x06\x00\x00\x00\x00")
        with pytest.raises(ValueError, match="cannot be encoded"):
            writer.append({"x": object()})
        writer.abort()


@pytest.mark.skipif(shutil.which("ffprobe") is None and not os.environ.get("CI"),
                    reason="ffprobe not installed (.ci/run installs it)")
def test_segment_is_an_ordinary_video_for_ffprobe(text_docs, seg_path):
    idx = write_segment(seg_path, text_docs)
    out = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                          "stream=codec_name,width,height,pix_fmt,nb_read_frames", "-of", "json", str(seg_path)],
                         check=True, capture_output=True, text=True)
    stream = json.loads(out.stdout)["streams"][0]
    assert stream["codec_name"] == "ffv1" and stream["pix_fmt"] == "gray"
    assert (stream["width"], stream["height"]) == (177, 177)
    assert int(stream["nb_read_frames"]) == idx["frames"]


def test_one_document_and_one_embedding_are_read_from_a_few_gops(eat_docs, text_docs, seg_path):
    from archiverd.format import index as index_module
    docs = eat_docs[:12] + text_docs[:30]
    idx = write_segment(seg_path, docs)
    reader = SegmentReader(seg_path)
    assert all(reader.document(i) == docs[i] for i in (0, 5, 11, 20, 41))
    field = idx["vector_fields"].index("embeddings.output_summary_embedding")
    got = reader.vectors([(7, field), (30, field)])
    assert got[(7, field)].astype(float).tolist() == bson.decode(docs[7])["embeddings"]["output_summary_embedding"]
    assert got[(30, field)] is None  # a text-only document has no embeddings
    # damage the GOPs holding document 7's section: the read falls back to parity repair, still exact
    _, offset, length = next(v for v in idx["docs"][7]["vectors"] if v[0] == field)
    geometry = parity.Geometry(idx["parity"]["data_rows"], idx["parity"]["parity_rows"])
    cluster = geometry.data_position(offset // frame.BODY) // idx["video"]["gop"]
    at, size = idx["video"]["clusters"][cluster]
    data = bytearray(seg_path.read_bytes())
    data[at + size // 2] ^= 0xFF
    seg_path.write_bytes(bytes(data))
    assert reader.document(7) == docs[7]
    assert reader.vectors([(7, field)])[(7, field)].astype(float).tolist() == \
        bson.decode(docs[7])["embeddings"]["output_summary_embedding"]
    assert index_module.path_for(seg_path).exists()
