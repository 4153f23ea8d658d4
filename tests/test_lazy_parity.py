"""A read for the documents leaves intact stripes' parity frames undecoded (reader.SegmentScan with
check_parity=False). It must never return fewer documents, another document, or a less truthful
report than the full read (check_parity=True) of the same bytes: damaged, truncated, cut, with
cluster timestamps that lie, with and without the index, with one and two decoding workers."""
import copy
import hashlib
import json
from pathlib import Path

import bson
import pytest

import archiverd
from archiverd import SegmentReader, write_segment
from archiverd.format import index, parity, video
from archiverd.format.documents import DECODE_OPTIONS
from archiverd.format.reader import SegmentScan
from archiverd.format.video import BytesSource

GOLDEN = Path(__file__).parent / "golden"


def _write(path, docs, monkeypatch=None, geometry=None, **kwargs):
    """A sealed segment; `geometry` replaces the redundancy setting's (small stripes: several in a
    small segment)."""
    if geometry is not None:
        monkeypatch.setattr(parity.Geometry, "for_percent", classmethod(lambda cls, percent: geometry))
    idx = write_segment(path, docs, vectors=False, **kwargs)
    if geometry is not None:
        monkeypatch.undo()
    return idx


def _scan(data, idx=None, *, lazy, workers=1):
    scan = SegmentScan(BytesSource(bytes(data)), "video", idx, check_parity=not lazy, workers=workers)
    return [raw for _, _, raw in scan.documents()], scan.report


def _same_as_full(data, idx=None, workers=(1, 2)):
    """The lazy reads of `data` give the full read's documents and report; returns the full read's."""
    full, full_report = _scan(data, idx, lazy=False)
    for w in workers:
        got, report = _scan(data, idx, lazy=True, workers=w)
        assert got == full, (w, len(got), len(full), report.problems, full_report.problems)
        assert report.lost == full_report.lost and report.lost_blocks == full_report.lost_blocks
        if full_report.repaired_frames or full_report.status != "damaged (repairable)":
            # (a damaged parity frame that no repair needed is seen by the full read only)
            assert report.status == full_report.status, (w, report.problems, full_report.problems)
        if not report.unread_frames:
            assert report.frames == full_report.frames
        assert report.parity_frames + report.unread_frames <= full_report.frames
    return full, full_report


def _set_timestamp(data: bytearray, cluster: int, frame_number: int) -> None:
    """Make cluster `cluster` claim to start at `frame_number` (same byte length)."""
    at = video.VideoReader(BytesSource(bytes(data)), "video").clusters()[cluster].offset + 8
    assert data[at] == 0xE7 and data[at + 1] & 0x80  # the Timestamp element after ID and size
    width = data[at + 1] & 0x7F
    value = round(frame_number * video.FRAME_MS)
    assert value < 1 << 8 * width
    data[at + 2:at + 2 + width] = value.to_bytes(width, "big")


@pytest.fixture(scope="module")
def short_tail(tmp_path_factory, text_docs):
    """Stripes of 32 data + 32 parity frames, the last stripe holding one or two data frames: all
    its data in its first cluster, then parity the reader without an index leaves unread."""
    g = parity.Geometry(rows=1, parity_rows=1)
    mp = pytest.MonkeyPatch()
    for n in range(118, 160, 2):
        path = tmp_path_factory.mktemp("tail") / "part-0001.mkv"
        idx = _write(path, text_docs[:n], mp, g, block_bytes=20_000)
        if idx["data_frames"] > g.data_per_stripe and idx["data_frames"] % g.data_per_stripe in (1, 2):
            return path, text_docs[:n], idx
    raise AssertionError("no document count gives a one-cluster last stripe")


@pytest.fixture(scope="module")
def default_segment(tmp_path_factory, eat_docs, text_docs):
    """The default geometry: one stripe whose parity is one column of 4+ frames at the end."""
    path = tmp_path_factory.mktemp("seg") / "part-0001.mkv"
    docs = eat_docs[:4] + text_docs[:60]
    idx = write_segment(path, docs, block_bytes=150_000, vectors=False)
    return path, docs, idx


def _garble(data: bytearray, idx, cluster: int) -> None:
    offset, length = idx["video"]["clusters"][cluster]
    for at in range(offset + length // 3, offset + length - 8, 97):
        data[at] ^= 0x55


def test_a_last_stripe_whose_decoded_frames_are_all_damaged_is_still_repaired(short_tail):
    """Without the index, the last stripe's middle clusters are left unread (parity by the video's
    length); its first cluster (the data) and its last one are damaged. No frame of the stripe is
    left to trigger its release at the end: the unread clusters must be read and the data repaired,
    as the full read does."""
    path, docs, idx = short_tail
    g = parity.Geometry(1, 1)
    first = g.stripe_start(idx["data_frames"] // g.data_per_stripe) // video.GOP
    data = bytearray(path.read_bytes())
    _garble(data, idx, first)
    _garble(data, idx, len(idx["video"]["clusters"]) - 1)
    full, full_report = _same_as_full(data)
    assert full == docs and full_report.repaired_frames > 0
    assert archiverd.decode_video_to_experiences(bytes(data)) == [bson.decode(d, DECODE_OPTIONS) for d in docs]


def test_cluster_timestamps_that_lie_cost_no_document(default_segment):
    """Timestamps a full read never looks at: the last cluster's says the video is 5 frames long
    (so a lazy read takes nearly every cluster for parity), and pairs of others are moved 2 frames on
    (so a cluster left unread seems to hold the next cluster's positions). Frames decoded later
    must not be dropped as duplicates of frames nobody read."""
    path, docs, idx = default_segment
    data = bytearray(path.read_bytes())
    n = len(idx["video"]["clusters"])
    _set_timestamp(data, n - 1, 4)
    for c in range(4, n - 3, 3):
        _set_timestamp(data, c, 2 * c + 2)
        _set_timestamp(data, c + 1, 2 * c + 4)
    full, report = _same_as_full(data)
    assert full == docs and report.ok
    assert archiverd.decode_video_to_experiences(bytes(data)) == [bson.decode(d, DECODE_OPTIONS) for d in docs]


@pytest.mark.parametrize("several_stripes", [False, True])
def test_timestamps_offset_from_the_frame_numbers_give_the_full_reads_report(default_segment, short_tail,
                                                                           several_stripes):
    """A video whose cluster timestamps do not count frames from 0 (as a remuxing tool may leave
    them): the full read finds nothing wrong, so neither may the lazy read (it named parity frames
    missing that it had read as duplicates of positions it never read)."""
    path, docs, idx = short_tail if several_stripes else default_segment
    data = bytearray(path.read_bytes())
    for c in range(4, len(idx["video"]["clusters"])):  # from 4 on the timestamps are 2 bytes wide
        _set_timestamp(data, c, 2 * c + 2)
    full, report = _same_as_full(data)
    assert full == docs and report.ok
    _, lazy = _scan(data, lazy=True)
    assert lazy.ok and lazy.problems == [], lazy.problems


def _sealed_for(data: bytes, idx):
    """The index as if it had been written for these bytes (a reindex of a damaged file)."""
    out = copy.deepcopy(idx)
    out["video"]["sha256"], out["video"]["bytes"] = hashlib.sha256(data).hexdigest(), len(data)
    return out


def test_damage_anywhere_near_the_end_reads_as_the_full_read_does(short_tail):
    """Several stripes: flipped bits and garbled clusters in the last stripes (data, the frame flagged
    last, parity), truncated tails, dropped, duplicated and swapped clusters, with no index, the
    index, and an index whose SHA-256 matches the damaged bytes."""
    path, docs, idx = short_tail
    original = path.read_bytes()
    clusters = idx["video"]["clusters"]
    n = len(clusters)
    cases = []
    for c in range(n - 6, n):
        offset, length = clusters[c]
        flipped = bytearray(original)
        flipped[offset + length // 2] ^= 0x08
        garbled = bytearray(original)
        _garble(garbled, idx, c)
        cases += [(bytes(flipped), True), (bytes(garbled), True), (original[:offset + length // 2], False)]
    for c in (n - 20, n - 4, n - 2):
        offset, length = clusters[c]
        after = offset + length
        cases += [(original[:offset] + original[after:], False),
                  (original[:after] + original[offset:after] + original[after:], False),
                  (original[:offset] + original[after:after + clusters[c + 1][1]] + original[offset:after]
                   + original[after + clusters[c + 1][1]:], False)]
    for data, same_length in cases:
        _same_as_full(data, workers=(1,))
        if same_length:
            _same_as_full(data, idx, workers=(1, 2))
            _same_as_full(data, _sealed_for(data, idx), workers=(1, 2))


def test_intact_segments_leave_parity_unread_and_agree_with_verify(short_tail, tmp_path):
    path, docs, idx = short_tail
    reader = SegmentReader(path)
    assert [raw for _, raw in reader.salvage()] == docs
    report = reader.last_report
    parity_frames = idx["frames"] - idx["data_frames"]
    # every parity frame left unread but those of a cluster that also holds data
    assert report.ok and report.unread_frames + report.parity_frames == parity_frames
    assert report.parity_frames < video.GOP and report.frames == idx["data_frames"] + report.parity_frames
    assert list(reader) == docs
    full = reader.verify()
    assert full.ok and full.unread_frames == 0 and full.parity_frames == parity_frames
    got, lazy = _scan(path.read_bytes(), lazy=True)
    assert got == docs and lazy.ok and 0 < lazy.unread_frames <= full.parity_frames


def test_no_parity_and_format_1_have_nothing_to_leave_unread(tmp_path, text_docs):
    path = tmp_path / "part-0001.mkv"
    idx = write_segment(path, text_docs[:40], redundancy=0, block_bytes=20_000, vectors=False)
    for reader_idx in (None, idx):
        got, report = _scan(path.read_bytes(), reader_idx, lazy=True)
        assert got == text_docs[:40] and report.ok and report.unread_frames == 0
    v1 = (GOLDEN / "v1-every-type.mkv").read_bytes()
    got, report = _scan(v1, json.loads((GOLDEN / "v1-every-type.index.json").read_text()), lazy=True)
    full, _ = _scan(v1, lazy=False)
    assert got == full and report.ok and report.unread_frames == 0


def test_an_encrypted_segment_reads_lazily_as_it_reads_fully(golden_key):
    data = (GOLDEN / "v3-encrypted.mkv").read_bytes()
    idx = index.load(GOLDEN / "v3-encrypted.index.json")
    full, report = _same_as_full(data, idx)
    assert full and report.ok
    _same_as_full(data)
    damaged = bytearray(data)
    offset, length = idx["video"]["clusters"][-1]
    damaged[offset + length // 2] ^= 0x20
    full, report = _same_as_full(bytes(damaged))
    assert full and not report.ok


def test_a_late_decode_reads_only_its_own_stripes_unread_clusters(short_tail):
    """An index that matches the damaged bytes (written for the file as it is now): the earlier
    stripes were whole and their parity left unread; the last one needs its parity. Decoding it must
    not decode the earlier stripes' parity again (it named every one of their frames 'belongs to a
    stripe already read', 50 false problems)."""
    path, docs, idx = short_tail
    data = bytearray(path.read_bytes())
    _garble(data, idx, idx["data_frames"] // 32 * 32)  # the last stripe's data
    sealed = _sealed_for(bytes(data), idx)
    full, full_report = _scan(data, sealed, lazy=False)
    got, report = _scan(data, sealed, lazy=True)
    assert got == full == docs and full_report.repaired_frames > 0
    # (a garbled frame decodes as the image before it, another one when the parity before it was not read)
    assert not [p for p in report.problems if "already read" in p], report.problems
    assert [p for p in report.problems if "stripe" in p] == [p for p in full_report.problems if "stripe" in p]
    assert len(report.problems) == len(full_report.problems)


def test_a_damaged_first_frame_reads_alike_whatever_the_process_read_before(default_segment, short_tail):
    """A video without its index whose first frame is damaged, read after another video in the
    same process: the decoder reused from that read must not show the other video's last frame
    for the damaged one (the read took that video's segment id from it and lost every document)."""
    path, docs, idx = default_segment
    data = bytearray(path.read_bytes())
    offset, length = idx["video"]["clusters"][0]
    data[offset + length // 2] ^= 0x10
    for before in (short_tail[0], path):
        _scan(before.read_bytes(), lazy=False)
        for lazy in (False, True):
            got, report = _scan(data, lazy=lazy)
            assert got == docs and report.lost == 0, (before.name, lazy, report.problems[:3])
