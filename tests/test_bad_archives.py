"""Damaged, truncated, reordered, swapped and foreign archives: always a clear, named failure."""
import json
import random
import shutil

import pytest

from archiverd import SegmentError, SegmentReader, verify_video, write_segment
from archiverd.format import index
from archiverd.format import video
from tests.reliability import CORRUPTIONS, corrupt, rewrite_frames


@pytest.fixture
def segment(tmp_path, eat_docs, text_docs):
    path = tmp_path / "part-0001.mkv"
    write_segment(path, eat_docs[:4] + text_docs[:60], block_bytes=150_000)
    return path


def _rewrite_frames(path, edit):
    rewrite_frames(path, edit)
    return verify_video(path, None)


def _assert_named(report, *words):
    assert not report.ok
    text = " ".join(report.problems)
    for word in words:
        assert word in text, (word, report.problems)


def test_intact_segment_verifies(segment):
    report = SegmentReader(segment).verify()
    assert report.ok and not report.problems and report.repaired_frames == 0


def test_every_flipped_byte_in_the_video_is_detected(segment):
    original = segment.read_bytes()
    rng = random.Random(11)
    for trial in range(25):
        damaged = bytearray(original)
        pos = rng.randrange(len(damaged))
        damaged[pos] ^= 1 << rng.randrange(8)
        segment.write_bytes(bytes(damaged))
        report = SegmentReader(segment).verify()
        assert not report.ok, f"flip at byte {pos} went unnoticed"
        assert "SHA-256" in " ".join(report.problems)
    segment.write_bytes(original)


def test_flipped_payload_is_detected_even_without_the_index(segment):
    original = segment.read_bytes()
    damaged = bytearray(original)
    for pos in range(len(damaged) // 3, len(damaged) // 3 + 40, 4):
        damaged[pos] ^= 0xFF
    segment.write_bytes(bytes(damaged))
    assert not verify_video(segment, None).ok


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.999])
def test_truncated_video_is_detected(segment, keep):
    data = segment.read_bytes()
    segment.write_bytes(data[: int(len(data) * keep)])
    report = SegmentReader(segment).verify()
    _assert_named(report, "bytes, index says")
    assert not verify_video(segment, None).ok


def test_dropped_frame_is_named(segment):
    report = _rewrite_frames(segment, lambda fr: fr[:7] + fr[8:])
    _assert_named(report, "frame 7", "missing")


def test_duplicated_frame_is_named(segment):
    report = _rewrite_frames(segment, lambda fr: fr[:5] + [fr[4]] + fr[5:])
    _assert_named(report, "frame 5", "duplicated or out of order")


def test_reordered_frames_are_named(segment):
    report = _rewrite_frames(segment, lambda fr: fr[:3] + [fr[4], fr[3]] + fr[5:])
    _assert_named(report, "frame 3")


def test_missing_last_frame_is_truncation(segment):
    report = _rewrite_frames(segment, lambda fr: fr[:-1])
    _assert_named(report, "truncated")


def test_frames_of_another_segment_are_named(segment, tmp_path, text_docs):
    other = tmp_path / "other.mkv"
    write_segment(other, text_docs[100:200])
    foreign = [image for _, image in video.read_frames(other)]
    report = _rewrite_frames(segment, lambda fr: fr[:2] + foreign[2:3] + fr[3:])
    _assert_named(report, "frame 2", "belongs to segment")


def test_tampered_checksum_in_index_is_detected(segment):
    path = index.path_for(segment)
    idx = json.loads(path.read_text())
    idx["docs"][9]["sha256"] = "0" * 64
    path.write_text(json.dumps(idx))
    _assert_named(SegmentReader(segment).verify(), "document 9", "checksum")
    with pytest.raises(SegmentError, match="document 9"):
        list(SegmentReader(segment))


def test_swapped_index_is_detected(segment, tmp_path, text_docs):
    other = tmp_path / "part-0002.mkv"
    write_segment(other, text_docs[:60])
    shutil.copy(index.path_for(other), index.path_for(segment))
    report = SegmentReader(segment).verify()
    _assert_named(report, "index says", "frame 0: belongs to segment")
    assert sum("belongs to segment" in p for p in report.problems) == 1


def test_corrupted_index_json_is_a_clear_error(segment):
    path = index.path_for(segment)
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(SegmentError, match="index"):
        SegmentReader(segment)


def test_missing_index_is_a_clear_error(segment):
    index.path_for(segment).unlink()
    with pytest.raises(SegmentError, match="index file is missing"):
        SegmentReader(segment)


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
            frame = av.VideoFrame.from_ndarray(np.full((177, 177), 40 * i, np.uint8), format="gray")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    _assert_named(verify_video(other_video, None), "frame 0", "unreadable")
    with pytest.raises(SegmentError, match="no such segment"):
        SegmentReader(tmp_path / "absent.mkv")


@pytest.mark.parametrize("kind", CORRUPTIONS)
def test_every_kind_of_damage_is_detected_and_restore_refuses(segment, tmp_path, text_docs, kind, cfg):
    from archiverd.service.restore import restore
    from archiverd.service.source import Source
    other = tmp_path / "other" / "part-0001.mkv"
    other.parent.mkdir()
    write_segment(other, text_docs[200:260])
    rng = random.Random(CORRUPTIONS.index(kind))
    corrupt(kind, segment, rng, other)
    try:
        report = SegmentReader(segment).verify()
    except SegmentError:
        return  # refused before decoding (e.g. an index that no longer parses)
    assert not report.ok, kind
    source = Source(cfg)
    with pytest.raises(SegmentError):
        restore([segment], source)
    assert source.collection.count_documents({}) == 0  # nothing inserted from a damaged segment
