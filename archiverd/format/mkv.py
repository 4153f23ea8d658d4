"""A minimal Matroska writer and a damage-tolerant Matroska reader for one video track.

Why our own container code rather than libavformat's: the byte layout is then ours to specify
(docs/FORMAT.md §1) and to keep stable across FFmpeg versions; every GOP is one Cluster whose byte
range the index records, so a reader (or an object store's ranged GET) fetches exactly the GOPs it
needs; and a reader that parses the container itself can step over a damaged element and resync at
the next Cluster instead of losing the rest of the file. The codec stays libavcodec's FFV1 (video.py).

Writer layout (sizes are fixed-width so the header can be patched in place when the file is done):

    EBML header | Segment (8-byte size) { SeekHead | Info | Tracks | Cluster* | Cues }

The reader accepts any Matroska file with one video track made of SimpleBlocks or BlockGroups
(that covers format v1, written by libavformat), skips elements it does not know, and on anything
malformed scans forward for the next Cluster ID.
"""
from __future__ import annotations

import array
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

EBML, SEGMENT, SEEKHEAD, SEEK, SEEK_ID, SEEK_POSITION = 0x1A45DFA3, 0x18538067, 0x114D9B74, 0x4DBB, 0x53AB, 0x53AC
INFO, TIMESTAMP_SCALE, MUXING_APP, WRITING_APP, DURATION = 0x1549A966, 0x2AD7B1, 0x4D80, 0x5741, 0x4489
TRACKS, TRACK_ENTRY, TRACK_NUMBER, TRACK_UID, TRACK_TYPE = 0x1654AE6B, 0xAE, 0xD7, 0x73C5, 0x83
FLAG_LACING, CODEC_ID, CODEC_PRIVATE, DEFAULT_DURATION = 0x9C, 0x86, 0x63A2, 0x23E383
VIDEO, PIXEL_WIDTH, PIXEL_HEIGHT = 0xE0, 0xB0, 0xBA
CLUSTER, CLUSTER_TIMESTAMP, SIMPLE_BLOCK, BLOCK_GROUP, BLOCK = 0x1F43B675, 0xE7, 0xA3, 0xA0, 0xA1
CUES, CUE_POINT, CUE_TIME, CUE_TRACK_POSITIONS, CUE_TRACK, CUE_CLUSTER_POSITION = \
    0x1C53BB6B, 0xBB, 0xB3, 0xB7, 0xF7, 0xF1
_CLUSTER_ID = CLUSTER.to_bytes(4, "big")
_UNKNOWN_SIZE = 0x01FFFFFFFFFFFFFF
_MASTERS = {EBML, SEGMENT, SEEKHEAD, SEEK, INFO, TRACKS, TRACK_ENTRY, VIDEO, CLUSTER, BLOCK_GROUP, CUES,
            CUE_POINT, CUE_TRACK_POSITIONS}
MAX_HEADER_BYTES = 1 << 20  # EBML header + Info + Tracks; CodecPrivate is ~200 bytes
MAX_CLUSTER_BYTES = 64 << 20
MAX_BLOCK_BYTES = 16 << 20  # one FFV1 frame of 177x177 gray is ~4 KB; anything far larger is damage


class Malformed(ValueError):
    """The bytes at this position are not the element we expected."""


# --- EBML primitives ----------------------------------------------------------------------------

def _id_bytes(element_id: int) -> bytes:
    return element_id.to_bytes((element_id.bit_length() + 7) // 8, "big")


def size_vint(n: int, width: int = 0) -> bytes:
    """An EBML data size; `width` forces a fixed length (1..8 bytes)."""
    width = width or next(w for w in range(1, 9) if n < (1 << (7 * w)) - 1)
    if n >= (1 << (7 * width)) - 1:
        raise ValueError(f"size {n} does not fit {width} bytes")
    return ((1 << (7 * width)) | n).to_bytes(width, "big")


def element(element_id: int, body: bytes, width: int = 0) -> bytes:
    return _id_bytes(element_id) + size_vint(len(body), width) + body


def uint(element_id: int, value: int, width: int = 0) -> bytes:
    width = width or max(1, (value.bit_length() + 7) // 8)
    return element(element_id, value.to_bytes(width, "big"))


def _read_vint(buf: bytes, pos: int, keep_marker: bool) -> tuple[int, int]:
    """(value, length) of the EBML variable-length integer at buf[pos]."""
    if pos >= len(buf):
        raise Malformed("truncated")
    first = buf[pos]
    width = 9 - first.bit_length() if first else 9
    if width > 8 or pos + width > len(buf):
        raise Malformed("bad variable-length integer")
    value = first if keep_marker else first & ((1 << (8 - width)) - 1)
    for b in buf[pos + 1:pos + width]:
        value = (value << 8) | b
    return value, width


def read_header(buf: bytes, pos: int) -> tuple[int, int, int]:
    """(element id, data size, data offset) of the element at buf[pos]."""
    element_id, n1 = _read_vint(buf, pos, True)
    size, n2 = _read_vint(buf, pos + n1, False)
    if size == (1 << (7 * n2)) - 1:
        size = _UNKNOWN_SIZE
    return element_id, size, pos + n1 + n2


def children(buf: bytes, start: int, end: int) -> Iterator[tuple[int, int, int]]:
    """(id, data offset, data end) of each child element in buf[start:end]; stops at damage."""
    pos = start
    while pos < end:
        try:
            element_id, size, data = read_header(buf, pos)
        except Malformed:
            return
        stop = data + size
        if stop > end:
            return
        yield element_id, data, stop
        pos = stop


# --- writing -------------------------------------------------------------------------------------

class Writer:
    """Writes the container around the encoded frames of one video track.

    `write(data, offset=None)` appends (or, with an offset, patches) bytes of the output file. The
    caller passes whole GOPs to `add_cluster`; `close()` writes the Cues and patches the header.
    """

    def __init__(self, write: Callable[[bytes, int | None], None], *, codec_id: str, codec_private: bytes,
                 width: int, height: int, frame_ms: int, app: str) -> None:
        self._write = write
        self.frame_ms = frame_ms
        # per cluster, for the Cues: segment-relative offset, first frame number (arrays: a list of
        # tuples cost 96 bytes a cluster, a tenth of the seal's memory per document)
        self._cue_offsets = array.array("q")
        self._cue_frames = array.array("q")
        self.frames = 0
        ebml = element(EBML, uint(0x4286, 1) + uint(0x42F7, 1) + uint(0x42F2, 4) + uint(0x42F3, 8)
                       + element(0x4282, b"matroska") + uint(0x4287, 4) + uint(0x4285, 2))
        self._segment_size_at = len(ebml) + 4
        self._data_start = self._segment_size_at + 8
        # SeekHead entries with 8-byte positions (Cues is patched at close).
        seek_len = len(self._seekhead(0, 0, 0))
        info_body = (uint(TIMESTAMP_SCALE, 1_000_000) + element(MUXING_APP, app.encode())
                     + element(WRITING_APP, app.encode()) + element(DURATION, struct.pack(">d", 0.0)))
        info = element(INFO, info_body)
        self._duration_at = self._data_start + seek_len + len(info) - 8
        video = element(VIDEO, uint(PIXEL_WIDTH, width) + uint(PIXEL_HEIGHT, height))
        entry = (uint(TRACK_NUMBER, 1) + uint(TRACK_UID, 1) + uint(TRACK_TYPE, 1) + uint(FLAG_LACING, 0)
                 + element(CODEC_ID, codec_id.encode()) + element(CODEC_PRIVATE, codec_private)
                 + uint(DEFAULT_DURATION, frame_ms * 1_000_000) + video)
        tracks = element(TRACKS, element(TRACK_ENTRY, entry))
        self._info_rel, self._tracks_rel = seek_len, seek_len + len(info)
        self._length = 0
        self._emit(ebml + _id_bytes(SEGMENT) + size_vint(0, 8)
                   + self._seekhead(self._info_rel, self._tracks_rel, 0) + info + tracks)

    @staticmethod
    def _seekhead(info: int, tracks: int, cues: int) -> bytes:
        def seek(target: int, position: int) -> bytes:
            return element(SEEK, element(SEEK_ID, _id_bytes(target)) + element(SEEK_POSITION, position.to_bytes(8, "big")))
        return element(SEEKHEAD, seek(INFO, info) + seek(TRACKS, tracks) + seek(CUES, cues))

    def _emit(self, data: bytes) -> None:
        self._write(data, None)
        self._length += len(data)

    def add_cluster(self, packets: list[bytes]) -> tuple[int, int]:
        """One cluster holding one GOP (the first packet is a keyframe). Returns its (file offset,
        byte length)."""
        start_ms = self.frames * self.frame_ms
        body = bytearray(uint(CLUSTER_TIMESTAMP, start_ms))
        for i, packet in enumerate(packets):
            head = b"\x81" + struct.pack(">hB", i * self.frame_ms, 0x80 if i == 0 else 0)
            body += element(SIMPLE_BLOCK, head + packet)
        cluster = _CLUSTER_ID + size_vint(len(body), 4) + bytes(body)
        offset = self._length
        self._cue_offsets.append(offset - self._data_start)
        self._cue_frames.append(self.frames)
        self._emit(cluster)
        self.frames += len(packets)
        return offset, len(cluster)

    def close(self) -> None:
        cues = b"".join(element(CUE_POINT, uint(CUE_TIME, first * self.frame_ms) + element(
            CUE_TRACK_POSITIONS, uint(CUE_TRACK, 1) + uint(CUE_CLUSTER_POSITION, rel)))
            for rel, first in zip(self._cue_offsets, self._cue_frames))
        cues_rel = self._length - self._data_start
        self._emit(element(CUES, cues))
        self._write(size_vint(self._length - self._data_start, 8), self._segment_size_at)
        self._write(struct.pack(">d", float(self.frames * self.frame_ms)), self._duration_at)
        self._write(self._seekhead(self._info_rel, self._tracks_rel, cues_rel), self._data_start)


# --- reading -------------------------------------------------------------------------------------

@dataclass
class Packet:
    number: int  # frame number from the block timestamps (a hint: damage can change it)
    keyframe: bool
    data: bytes


@dataclass
class Track:
    codec_id: str = ""
    codec_private: bytes = b""
    width: int = 0
    height: int = 0
    frame_ns: int = 0


@dataclass
class Layout:
    """What the reader learns from the file's head: the track and where the clusters begin."""

    track: Track
    first_cluster: int  # file offset
    timestamp_scale: int = 1_000_000
    declared_end: int | None = None  # file offset where the Segment element says it ends
    problems: list[str] = field(default_factory=list)


def parse_head(buf: bytes) -> Layout:
    """Parse the EBML header, Info and Tracks at the start of `buf` (the first bytes of the file)."""
    try:
        element_id, size, data = read_header(buf, 0)
    except Malformed:
        raise Malformed("not a Matroska file") from None
    if element_id != EBML:
        raise Malformed("not a Matroska file (no EBML header)")
    pos = data + size
    element_id, size, data = read_header(buf, pos)
    if element_id != SEGMENT:
        raise Malformed("no Segment element after the EBML header")
    declared = None if size == _UNKNOWN_SIZE else data + size
    track, scale, pos = None, 1_000_000, data
    while pos < len(buf):
        try:
            element_id, size, body = read_header(buf, pos)
        except Malformed:
            break
        if element_id == CLUSTER:
            break
        if size == _UNKNOWN_SIZE or body + size > len(buf):
            break
        if element_id == INFO:
            for cid, a, b in children(buf, body, body + size):
                if cid == TIMESTAMP_SCALE:
                    scale = int.from_bytes(buf[a:b], "big") or 1_000_000
        elif element_id == TRACKS:
            track = _parse_tracks(buf, body, body + size)
        pos = body + size
    if track is None:
        raise Malformed("no video track in the file header")
    return Layout(track, pos, scale, declared_end=declared)


def _parse_tracks(buf: bytes, start: int, end: int) -> Track | None:
    for eid, a, b in children(buf, start, end):
        if eid != TRACK_ENTRY:
            continue
        track, kind = Track(), 0
        for cid, c, d in children(buf, a, b):
            value = buf[c:d]
            if cid == TRACK_TYPE:
                kind = int.from_bytes(value, "big")
            elif cid == CODEC_ID:
                track.codec_id = value.decode("ascii", "replace")
            elif cid == CODEC_PRIVATE:
                track.codec_private = bytes(value)
            elif cid == DEFAULT_DURATION:
                track.frame_ns = int.from_bytes(value, "big")
            elif cid == VIDEO:
                for vid, e, f in children(buf, c, d):
                    if vid == PIXEL_WIDTH:
                        track.width = int.from_bytes(buf[e:f], "big")
                    elif vid == PIXEL_HEIGHT:
                        track.height = int.from_bytes(buf[e:f], "big")
        if kind == 1:
            return track
    return None


class Source:
    """Random-access bytes of one file: a local file (pread) or anything with the same two members."""

    size: int

    def read(self, offset: int, length: int) -> bytes:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass
class ClusterRef:
    offset: int  # file offset of the Cluster element
    length: int  # whole element, header included (to the next cluster when the size is damaged)
    first_frame: int | None = None  # frame number of its first block, when known


def scan_clusters(source: Source, start: int, frame_ticks: float) -> Iterator[ClusterRef]:
    """Every cluster from `start` on, following the size fields and, where one is damaged or the
    bytes there are not a cluster, resynchronising at the next Cluster ID."""
    pos = start
    while pos < source.size:
        head = source.read(pos, 64)
        try:
            element_id, size, data = read_header(head, 0)
        except Malformed:
            element_id, size, data = -1, 0, 0
        if element_id == CLUSTER and size != _UNKNOWN_SIZE and size <= MAX_CLUSTER_BYTES \
                and pos + data + size <= source.size:
            yield ClusterRef(pos, data + size, _first_frame(head, data, frame_ticks))
            pos += data + size
            continue
        if element_id in (CUES, 0x1254C367, 0xEC, SEEKHEAD) and size != _UNKNOWN_SIZE and \
                pos + data + size <= source.size:  # Cues, Tags, Void: not frames
            pos += data + size
            continue
        found = _find_cluster(source, pos + 1)
        if found < 0:
            if element_id == CLUSTER:  # the last cluster, cut short or with an unknown size
                yield ClusterRef(pos, source.size - pos)
            return
        if element_id == CLUSTER:
            yield ClusterRef(pos, found - pos)
        pos = found


def _first_frame(head: bytes, data: int, frame_ticks: float) -> int | None:
    """The cluster's first frame number from its Timestamp element (the first elements of a
    cluster are small: CRC-32, Timestamp)."""
    for element_id, a, b in children(head, data, len(head)):
        if element_id == CLUSTER_TIMESTAMP and frame_ticks:
            return round(int.from_bytes(head[a:b], "big") / frame_ticks)
    return None


def _find_cluster(source: Source, pos: int, chunk: int = 1 << 20) -> int:
    while pos < source.size:
        buf = source.read(pos, chunk + 3)
        found = buf.find(_CLUSTER_ID)
        if found >= 0:
            return pos + found
        pos += chunk
    return -1


def cluster_packets(buf: bytes, frame_ticks: float) -> list[Packet]:
    """The packets of the cluster whose bytes are `buf` (from its ID on). A damaged cluster yields
    the packets before the damage."""
    element_id, size, data = read_header(buf, 0)
    if element_id != CLUSTER:
        raise Malformed("not a cluster")
    end = len(buf) if size == _UNKNOWN_SIZE else min(len(buf), data + size)
    packets: list[Packet] = []
    base = 0
    cursor = data
    while cursor < end:
        try:
            eid, esize, body = read_header(buf, cursor)
        except Malformed:
            break
        if esize == _UNKNOWN_SIZE or body + esize > end or esize > MAX_BLOCK_BYTES:
            break
        if eid == CLUSTER_TIMESTAMP:
            base = int.from_bytes(buf[body:body + esize], "big")
        elif eid == SIMPLE_BLOCK:
            packet = _block(buf, body, body + esize, base, frame_ticks, simple=True)
            if packet is not None:
                packets.append(packet)
        elif eid == BLOCK_GROUP:
            for cid, a, b in children(buf, body, body + esize):
                if cid == BLOCK:
                    packet = _block(buf, a, b, base, frame_ticks, simple=False)
                    if packet is not None:
                        packets.append(packet)
        cursor = body + esize
    return packets


def _block(buf: bytes, start: int, end: int, base: int, frame_ticks: float, simple: bool) -> Packet | None:
    try:
        track, n = _read_vint(buf, start, False)
    except Malformed:
        return None
    head = start + n
    if track != 1 or head + 3 > end:
        return None
    (relative,) = struct.unpack_from(">h", buf, head)
    flags = buf[head + 2]
    if flags & 0x06:  # laced blocks are never written by us or by libavformat for video
        return None
    number = round((base + relative) / frame_ticks) if frame_ticks else -1
    keyframe = bool(flags & 0x80) if simple else False
    return Packet(number, keyframe, bytes(buf[head + 3:end]))
