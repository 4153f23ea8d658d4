"""Damaged, truncated, reordered, swapped, foreign and lying archives: every problem is named, every
document that still verifies comes back byte-exact, and no document whose bytes differ ever does."""
import hashlib
import json
import os
import random
import shutil
from pathlib import Path

import bson
import pytest

import archiverd
from archiverd import SegmentError, SegmentReader, verify_video, write_segment
from archiverd.format import frame, index, sidecar
from archiverd.format.documents import DECODE_OPTIONS
from archiverd.format.reader import REPAIRABLE, UNREPAIRABLE, LocalFile
from archiverd.store import durable
from tests.reliability import CORRUPTIONS, corrupt, frame_records, rewrite_frames, write_frames


@pytest.fixture
def segment(tmp_path, eat_docs, text_docs):
    path = tmp_path / "part-0001.mkv"
    docs = eat_docs[:4] + text_docs[:60]
    write_segment(path, docs, block_bytes=150_000)
    return path, docs


def _rewrite_frames(path, edit):
    rewrite_frames(path, edit)
    return verify_video(path, None)


def _assert_named(report, *words):
    assert not report.ok
    text = " ".join(report.problems)
    for word in words:
        assert word in text, (word, report.problems)


def _salvage(path):
    reader = SegmentReader(path)
    got = [raw for _, raw in reader.salvage()]
    return got, reader.last_report


def test_intact_segment_verifies(segment):
    report = SegmentReader(segment[0]).verify()
    assert report.ok and report.status == "ok" and not report.problems and report.repaired_frames == 0


def test_every_flipped_bit_is_detected_and_repaired(segment):
    path, docs = segment
    original = path.read_bytes()
    rng = random.Random(11)
    for trial in range(25):
        damaged = bytearray(original)
        pos = rng.randrange(len(damaged))
        damaged[pos] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(damaged))
        report = SegmentReader(path).verify()
        assert not report.ok, f"flip at byte {pos} went unnoticed"
        assert "SHA-256" in " ".join(report.problems)
        got, report = _salvage(path)
        assert got == docs, f"flip at byte {pos}: {report.problems}"
        assert report.status == REPAIRABLE and report.lost == 0
    path.write_bytes(original)


def test_a_lost_gop_is_repaired(segment):
    path, docs = segment
    idx = json.loads(index.path_for(path).read_text())
    for cluster in (0, 3, len(idx["video"]["clusters"]) // 2, len(idx["video"]["clusters"]) - 1):
        offset, length = idx["video"]["clusters"][cluster]
        data = bytearray(path.read_bytes())
        data[offset:offset + length] = bytes(length)  # the whole GOP is gone
        damaged = path.with_name("damaged.mkv")
        damaged.write_bytes(bytes(data))
        shutil.copy(index.path_for(path), index.path_for(damaged))
        got, report = _salvage(damaged)
        assert got == docs and report.status == REPAIRABLE, (cluster, report.problems)
        assert report.repaired_frames > 0 or cluster == len(idx["video"]["clusters"]) - 1


def test_flipped_payload_is_detected_even_without_the_index(segment):
    path, docs = segment
    damaged = bytearray(path.read_bytes())
    for pos in range(len(damaged) // 3, len(damaged) // 3 + 40, 4):
        damaged[pos] ^= 0xFF
    path.write_bytes(bytes(damaged))
    report = verify_video(path, None)
    assert not report.ok and report.status == REPAIRABLE


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.999])
def test_truncated_video_gives_back_everything_before_the_damage(segment, keep):
    path, docs = segment
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    _assert_named(SegmentReader(path).verify(), "bytes, index says")
    assert not verify_video(path, None).ok
    got, report = _salvage(path)
    assert got == docs[:len(got)]  # a prefix, in order, byte-exact
    if keep == 0.999:
        assert got == docs and report.status == REPAIRABLE  # the cut took parity only
    else:
        assert report.status == UNREPAIRABLE and report.lost == len(docs) - len(got) > 0
        assert len(report.lost_documents) == min(report.lost, 50)


def test_dropped_frame_is_named_and_repaired(segment):
    path, docs = segment
    report = _rewrite_frames(path, lambda fr: fr[:7] + fr[8:])
    _assert_named(report, "frame 7", "missing")
    assert _salvage(path)[0] == docs


def test_duplicated_frame_is_named(segment):
    path, docs = segment
    report = _rewrite_frames(path, lambda fr: fr[:5] + [fr[4]] + fr[5:])
    _assert_named(report, "frame 5", "duplicated or out of order")
    assert _salvage(path)[0] == docs


def test_reordered_frames_are_named(segment):
    path, docs = segment
    report = _rewrite_frames(path, lambda fr: fr[:3] + [fr[4], fr[3]] + fr[5:])
    _assert_named(report, "frame 3")
    assert _salvage(path)[0] == docs


def test_missing_last_frame_is_named(segment):
    path, docs = segment
    report = _rewrite_frames(path, lambda fr: fr[:-1])
    _assert_named(report, "missing")
    assert _salvage(path)[0] == docs


def test_frames_of_another_segment_are_named(segment, tmp_path, text_docs):
    path, docs = segment
    other = tmp_path / "other.mkv"
    write_segment(other, text_docs[100:200])
    foreign = frame_records(other)
    report = _rewrite_frames(path, lambda fr: fr[:2] + foreign[2:3] + fr[3:])
    _assert_named(report, "frame 2", "belongs to segment")
    assert _salvage(path)[0] == docs


def test_a_lying_parity_frame_never_produces_a_wrong_document(segment):
    """A parity frame with a valid CRC but wrong bytes, used to rebuild a lost data frame: the
    rebuilt block fails its SHA-256, so its documents are reported lost, never returned altered."""
    path, docs = segment
    records = frame_records(path)
    parsed = [frame.unpack(r) for r in records]
    first_parity = next(i for i, f in enumerate(parsed) if f.kind == frame.PARITY)
    lie = parsed[first_parity]
    body = bytearray(lie.body)
    body[100] ^= 0x5A
    records[first_parity] = frame.pack(frame.Frame(lie.segment_id, lie.position, lie.kind, bytes(body), lie.rows,
                                                   lie.parity_rows, lie.stripe_count, lie.stripe_parity_rows,
                                                   lie.parity_row))
    records[1] = b"not a frame"  # lose data frame 1: its group must use the lying parity
    write_frames(path, records)
    got, report = _salvage(path)
    good = {hashlib.sha256(d).hexdigest() for d in docs}
    assert all(hashlib.sha256(d).hexdigest() in good for d in got)
    assert report.status == UNREPAIRABLE and report.lost > 0 and len(got) == len(docs) - report.lost


def test_tampered_checksum_in_index_is_named_and_that_document_withheld(segment):
    path, docs = segment
    ipath = index.path_for(path)
    idx = json.loads(ipath.read_text())
    idx["docs"][9]["sha256"] = "0" * 64
    ipath.write_text(json.dumps(idx))
    _assert_named(SegmentReader(path).verify(), "document 9", "checksum")
    got, report = _salvage(path)
    assert got == docs[:9] + docs[10:] and report.lost == 1
    with pytest.raises(SegmentError, match="1 documents cannot be recovered"):
        list(SegmentReader(path))


def test_swapped_index_is_detected(segment, tmp_path, text_docs):
    path, _ = segment
    other = tmp_path / "part-0002.mkv"
    write_segment(other, text_docs[:60])
    shutil.copy(index.path_for(other), index.path_for(path))
    report = SegmentReader(path).verify()
    _assert_named(report, "index says", "frame 0: belongs to segment")
    assert sum("belongs to segment" in p for p in report.problems) == 1
    assert _salvage(path)[0] == []


def test_corrupted_index_json_is_a_clear_error(segment):
    path = index.path_for(segment[0])
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(SegmentError, match="index"):
        SegmentReader(segment[0])


def test_missing_index_is_a_clear_error(segment):
    index.path_for(segment[0]).unlink()
    with pytest.raises(SegmentError, match="index file is missing"):
        SegmentReader(segment[0])


def test_derived_files_above_their_bound_are_refused_before_they_are_read(segment, tmp_path):
    idx = index.path_for(segment[0])
    with open(idx, "r+b") as f:
        f.truncate(index.MAX_INDEX_BYTES + 1)  # sparse: nothing that size is ever allocated
    with pytest.raises(SegmentError, match=f"index file is larger than {index.MAX_INDEX_BYTES} bytes"):
        SegmentReader(segment[0])
    huge = sidecar.path_for(segment[0])
    with open(huge, "wb") as f:
        f.truncate(sidecar.MAX_FILE + 1)
    with pytest.raises(SegmentError, match="vector sidecar is larger than"):
        sidecar.load(huge)
    # a file whose size says less than it holds (a /proc file says 0) is never read past that size
    with pytest.raises(SegmentError, match="grew while it was read"):
        durable.read_bounded(Path("/proc/self/status"), 1 << 20, "status")
    # an index or sidecar that is a FIFO is refused at once, not waited on for a writer
    idx.unlink()
    os.mkfifo(idx)
    with pytest.raises(SegmentError, match="index file is not a regular file"):
        SegmentReader(segment[0])
    huge.unlink()
    os.mkfifo(huge)
    with pytest.raises(SegmentError, match="vector sidecar is not a regular file"):
        sidecar.load(huge)
    huge.unlink()
    huge.mkdir()
    with pytest.raises(SegmentError, match="cannot read vector sidecar: Is a directory"):
        sidecar.load(huge)
    # and so is a video that is a FIFO, met in a walk of the archive rather than named by a user
    fifo = segment[0].with_name("part-0002.mkv")
    os.mkfifo(fifo)
    with pytest.raises(SegmentError, match="not a regular file"):
        LocalFile(fifo)
    report = verify_video(fifo, None)
    assert not report.ok and any("not a regular file" in p for p in report.problems)


def test_foreign_files_are_refused(tmp_path):
    text = tmp_path / "notes.mkv"
    text.write_text("hello, not a video\n" * 100)
    _assert_named(verify_video(text, None), "not a readable video")
    other_video = tmp_path / "plain.mkv"
    import av
    import numpy as np
    with av.open(str(other_video), "w") as container:
        stream = container.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = 177, 177, "gray"
        for i in range(3):
            image = av.VideoFrame.from_ndarray(np.full((177, 177), 40 * i, np.uint8), format="gray")
            for packet in stream.encode(image):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    _assert_named(verify_video(other_video, None), "frame 0", "unreadable")
    with pytest.raises(SegmentError, match="no such segment"):
        SegmentReader(tmp_path / "absent.mkv")
    with pytest.raises(SegmentError, match="directory"):
        SegmentReader(tmp_path)


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_every_kind_of_damage_restores_only_verified_documents(segment, tmp_path, text_docs, kind, cfg):
    from archiverd.service.restore import restore
    from archiverd.service.source import Source
    path, docs = segment
    other = tmp_path / "other" / "part-0001.mkv"
    other.parent.mkdir()
    write_segment(other, text_docs[200:260])
    corrupt(kind, path, random.Random(CORRUPTIONS.index(kind)), other)
    try:
        reader = SegmentReader(path)
    except SegmentError:
        return  # refused before decoding (e.g. an index that no longer parses)
    report = reader.verify()
    assert not report.ok, kind
    source = Source(cfg)
    stats = restore([path], source)
    restored = [d.raw for d in source.collection.find()]
    assert set(restored) <= set(docs), "a document that differs from the original was restored"
    assert stats.inserted == len(restored)
    assert (stats.lost > 0) == (len(restored) < len(docs))
    if report.status == REPAIRABLE:
        assert len(restored) == len(docs)
    source.collection.drop()
    source.close()


# --- a read for the documents leaves intact parity frames undecoded ------------------------------

def _scan(data, **kwargs):
    from archiverd.format.reader import SegmentScan
    from archiverd.format.video import BytesSource
    scan = SegmentScan(BytesSource(data), "video", check_parity=False, workers=1, **kwargs)
    return [raw for _, _, raw in scan.documents()], scan.report


def test_a_read_decodes_no_parity_frame_of_an_intact_segment_and_verify_decodes_every_one(segment):
    path, docs = segment
    idx = json.loads(index.path_for(path).read_text())
    parity_frames = idx["frames"] - idx["data_frames"]
    got, report = _salvage(path)
    assert got == docs and report.ok and report.status == "ok", report.problems
    assert report.parity_frames == 0 and report.unread_frames == parity_frames > 0
    assert report.frames == idx["data_frames"]
    full = SegmentReader(path).verify()
    assert full.ok and full.unread_frames == 0 and full.parity_frames == parity_frames
    # without an index (the public API's case) the frame flagged last tells where the parity begins
    got, report = _scan(path.read_bytes())
    assert got == docs and report.ok, report.problems
    assert parity_frames - 2 * 2 <= report.unread_frames <= parity_frames  # a cluster may mix data and parity


def _forge_last_cluster_timestamp(data: bytearray, frame_number: int) -> None:
    """Make the last cluster claim to start at `frame_number` (same byte length): a container that
    lies about where the frames are, so that a reader guessing from it guesses wrong."""
    from archiverd.format import video
    from archiverd.format.video import BytesSource
    last = video.VideoReader(BytesSource(bytes(data)), "video").clusters()[-1].offset
    at = last + 8  # Cluster ID (4 bytes) and its 4-byte size, then the Timestamp element
    assert data[at] == 0xE7 and data[at + 1] & 0x80
    width = data[at + 1] & 0x7F
    data[at + 2:at + 2 + width] = (frame_number * 40).to_bytes(width, "big")


@pytest.mark.parametrize("damage", [False, True])
def test_a_container_that_lies_about_frame_numbers_costs_a_read_time_never_a_document(segment, damage):
    """With the last cluster's timestamp forged, the reader's guess of where the parity frames
    begin is wrong: it leaves data frames unread. It must read them (and the parity, to repair a
    damaged data frame among them) before it lets their stripe go."""
    path, docs = segment
    idx = json.loads(index.path_for(path).read_text())
    data = bytearray(path.read_bytes())
    _forge_last_cluster_timestamp(data, 4)
    if damage:  # a data frame in the part the wrong guess skips
        offset, length = idx["video"]["clusters"][len(idx["video"]["clusters"]) // 2]
        data[offset + length // 2] ^= 0x10
    got, report = _scan(bytes(data))
    assert got == docs and report.lost == 0, report.problems
    assert report.unread_frames == 0 and report.frames == idx["frames"]
    assert report.repaired_frames > 0 if damage else report.repaired_frames == 0
    assert archiverd.decode_video_to_experiences(bytes(data)) == [bson.decode(d, DECODE_OPTIONS) for d in docs]


def test_a_file_cut_while_its_checksum_is_read_is_damage_not_a_hang(segment):
    """The source's size was taken before the file was cut: the SHA-256 pass gets no bytes where it
    expected some. That is named, not looped on forever."""
    path, docs = segment
    with LocalFile(path) as source:
        idx = json.loads(index.path_for(path).read_text())
        os.truncate(path, idx["video"]["bytes"] // 2)
        from archiverd.format.reader import SegmentScan
        scan = SegmentScan(source, str(path), idx)
        got = [raw for _, _, raw in scan.documents()]
    assert "while it was read" in " ".join(scan.report.problems)
    assert not scan.report.ok and got == docs[:len(got)]
