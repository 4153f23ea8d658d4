"""Frame records <-> QR images <-> FFV1 packets, and packets <-> the Matroska file (through mkv.py).

FFV1 is lossless and an archival standard (RFC 9043); level 3 adds a CRC to every slice. Settings,
measured on v40 QR frames (bench/bench_format.py, docs/FORMAT.md §1): one slice, range coder with
the custom state table, context model 1. A keyframe every 2 frames costs 0.35 % more than every 32
(1.3873 vs 1.3825 video bytes per payload byte) and limits what one flipped bit can garble to the
rest of a 2-frame GOP, so that even a small segment survives two flips, or the loss of two GOPs,
with 4 parity frames; every frame a keyframe would cost 0.7 %.

Each GOP is encoded on its own (the encoder's state resets at every keyframe), so GOPs can be
encoded and decoded in parallel and give the same bytes as one long run; `encode_gops` and
`frames_of` are pure functions of their bytes for that reason, and run on worker processes
(format/workers.py), which import this module and what it needs only.
"""
from __future__ import annotations

import fractions
import threading
from collections.abc import Iterator, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from . import frame, mkv, qr
from ..errors import SegmentError

if TYPE_CHECKING:
    import av

CODEC = "ffv1"
CODEC_ID = "V_FFV1"
CONTAINER = "matroska"
PIX_FMT = "gray"
RATE = 25  # frames/s: every frame lasts exactly 40 ms
FRAME_MS = 1000 // RATE
GOP = 2
OPTIONS = {"level": "3", "coder": "range_tab", "context": "1", "slices": "1", "slicecrc": "1"}
APP = "archiverd"

_local = threading.local()


@lru_cache(maxsize=1)
def _av() -> Any:
    """PyAV, imported where frames are encoded or decoded: the worker processes, and readers that
    decode in their own threads. The daemon's main process hands all of it to its workers and
    so does not carry PyAV's 16 MB of RSS."""
    import av
    import av.logging
    av.logging.set_level(av.logging.PANIC)  # damaged frames are reported by our own checks, not on stderr
    return av


def _encoder() -> av.CodecContext:
    ctx = _av().CodecContext.create(CODEC, "w")
    ctx.width = ctx.height = qr.SIZE
    ctx.pix_fmt = PIX_FMT
    ctx.time_base = fractions.Fraction(1, RATE)
    ctx.gop_size = GOP
    ctx.options = dict(OPTIONS)
    ctx.open()
    return ctx


@lru_cache(maxsize=1)
def codec_private() -> bytes:
    """FFV1's global header for our settings (deterministic: the same bytes in every segment)."""
    return bytes(_encoder().extradata)


def encode_gop(records: Sequence[bytes]) -> list[bytes]:
    """QR-encode frame records and FFV1-encode them as one GOP (at most GOP frames; only a
    segment's last GOP may be shorter). Safe to call from several threads at once."""
    if not 0 < len(records) <= GOP:
        raise ValueError(f"a GOP holds 1..{GOP} frames, got {len(records)}")
    ctx = getattr(_local, "encoder", None)
    if ctx is None or getattr(_local, "dirty", False):
        ctx = _local.encoder = _encoder()
    packets: list[bytes] = []
    for record in records:
        image = _av().VideoFrame.from_ndarray(qr.encode(record), format=PIX_FMT)
        packets.extend(bytes(p) for p in ctx.encode(image))
    # a short GOP leaves the encoder mid-GOP: the next call starts a fresh one
    _local.dirty = len(records) != GOP
    if len(packets) != len(records):
        raise SegmentError(f"FFV1 encoder returned {len(packets)} packets for {len(records)} frames")
    return packets


def encode_gops(gops: Sequence[Sequence[bytes]]) -> list[list[bytes]]:
    """`encode_gop` of several GOPs (one task for a worker process)."""
    return [encode_gop(records) for records in gops]


def _decoder(private: bytes) -> av.CodecContext:
    """A fresh FFV1 decoder on one thread: the worker processes and the random-read threads are the
    parallelism (one slice per frame leaves a decoder's own threads nothing to share, and starting
    them for every chunk cost 2-4 % of the decoding time)."""
    ctx = _av().CodecContext.create(CODEC, "r")
    ctx.extradata = private
    ctx.width = ctx.height = qr.SIZE
    ctx.thread_count = 1
    ctx.thread_type = "NONE"
    return ctx


def _reused_decoder(private: bytes) -> tuple[av.CodecContext, np.ndarray | None]:
    """This thread's last healthy decoder for these settings and the last picture it showed, or a
    new one (and None). A decoder is reused only from a keyframe, where FFV1 resets every state to
    the initial states of `private`, so an intact GOP decodes exactly as with a new one; opening a
    new one costs as much as decoding 3 frames (measured: random reads of 2-frame GOPs take 2.8x as
    long with a new decoder each). A keyframe does not reset the picture FFV1 conceals a damaged
    slice with: `decode_packets` checks for it."""
    cached = getattr(_local, "decoder", None)
    if cached is not None and cached[0] == private:
        _local.decoder = None  # taken: put back only after every packet decoded cleanly
        return cached[1], cached[2]
    return _decoder(private), None


def _keyframe(packet: mkv.Packet) -> bool:
    """A keyframe by both the container's flag and the frame's own first symbol (RFC 9043: the
    range coder starts with low = the first two bytes, range = 0xFF00, and the keyframe bit, coded
    with state 128, is 1 when low >= 0xFF00 - (0xFF00 * 128 >> 8) = 0x7F80)."""
    data = packet.data
    return packet.keyframe and len(data) >= 2 and (data[0] << 8 | data[1]) >= 0x7F80


def decode_packets(private: bytes, packets: Sequence[mkv.Packet], *,
                   reuse: bool = True) -> list[tuple[int, np.ndarray | None]]:
    """(frame number hint, image or None) per packet, decoding in order from the first (a fresh or
    keyframe-reset decoder). After a packet the decoder rejects, the rest up to the next keyframe
    are None (their state is lost)."""
    av = _av()
    ctx, shown = _reused_decoder(private) if reuse and packets and _keyframe(packets[0]) else \
        (_decoder(private), None)
    out: list[tuple[int, np.ndarray | None]] = []
    last: np.ndarray | None = None  # the picture this decoder showed last
    broken = odd = False
    for packet in packets:
        if broken and packet.keyframe:
            ctx, broken = _decoder(private), False
        if broken:
            out.append((packet.number, None))
            continue
        try:
            frames = ctx.decode(av.Packet(packet.data))
        except (av.error.FFmpegError, ValueError, MemoryError):
            frames, broken = [], True
        if len(frames) != 1:
            broken = broken or not frames
            odd = True  # a decoder that produced no frame or several is never reused
            out.append((packet.number, None))
            continue
        image = frames[0].to_ndarray()
        if shown is not None and np.array_equal(image, shown):
            # a damaged keyframe concealed with the picture the reused decoder showed last (another
            # GOP's, perhaps another video's, frame): decode these packets as a new decoder does
            return decode_packets(private, packets, reuse=False)
        shown, last = None, image
        out.append((packet.number, image if image.shape == (qr.SIZE, qr.SIZE) else None))
    if not broken and not odd:
        _local.decoder = (private, ctx, None if last is None else last.copy())
    return out


def decode_clusters(private: bytes, frame_ticks: float, clusters: Sequence[bytes],
                    limit: int | None = None) -> list[tuple[int, np.ndarray | None]]:
    """Decode the bytes of consecutive clusters (the first must start with a keyframe) in one run,
    or only their first `limit` frames; a cluster that does not parse is skipped (its frames are
    missing)."""
    packets: list[mkv.Packet] = []
    for buf in clusters:
        try:
            packets.extend(mkv.cluster_packets(buf, frame_ticks))
        except mkv.Malformed:
            continue
    return decode_packets(private, packets[:limit])


def frames_of(private: bytes, frame_ticks: float, clusters: Sequence[bytes],
              independent: bool, limit: int | None = None) -> list[tuple[frame.Frame | None, bool]]:
    """(frame or None, QR error correction used) for every frame of consecutive clusters' bytes, or
    for the first `limit` (a pure function: the task worker processes run; `independent`: a standard
    QR reader must agree with the fast path on every frame)."""
    out: list[tuple[frame.Frame | None, bool]] = []
    for _, image in decode_clusters(private, frame_ticks, clusters, limit):
        if image is None:
            out.append((None, False))
            continue
        decoded, corrected = frame.from_image(image)
        if independent and decoded is not None and not corrected:
            raw = qr.read_robust(image)
            if raw is None or frame.unpack(raw) != decoded:
                decoded = None
        out.append((decoded, corrected))
    return out


class FileSource(mkv.Source):
    """A local file read with pread (no whole-file buffering)."""

    def __init__(self, fd: int, size: int) -> None:
        import os
        self._pread = os.pread
        self.fd = fd
        self.size = size

    def read(self, offset: int, length: int) -> bytes:
        return self._pread(self.fd, max(0, min(length, self.size - offset)), offset)


class BytesSource(mkv.Source):
    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.size = len(data)

    def read(self, offset: int, length: int) -> bytes:
        return bytes(self.data[offset:offset + length])


HEAD_PROBE_BYTES = 64 << 10  # the head of an archiverd video is under 1 KB


def _head(source: mkv.Source) -> mkv.Layout:
    """The file's head from a small first read when it ends at the first cluster within it (one
    document fetched from an object store then costs no 1 MiB GET), else from MAX_HEADER_BYTES."""
    probe = source.read(0, HEAD_PROBE_BYTES)
    try:
        layout = mkv.parse_head(probe)
        if probe[layout.first_cluster:layout.first_cluster + 4] == mkv.CLUSTER.to_bytes(4, "big"):
            return layout
    except mkv.Malformed:
        pass
    return mkv.parse_head(source.read(0, mkv.MAX_HEADER_BYTES))


class VideoReader:
    """The clusters of a segment's video and their decoded images."""

    def __init__(self, source: mkv.Source, where: str) -> None:
        self.source = source
        self.where = where
        try:
            self.layout = _head(source)
        except mkv.Malformed as exc:
            raise SegmentError(f"not a readable video ({exc})", where) from None
        track = self.layout.track
        if track.codec_id != CODEC_ID or (track.width, track.height) != (qr.SIZE, qr.SIZE):
            raise SegmentError(f"not an archiverd video (track is {track.codec_id or 'unknown'} "
                               f"{track.width}x{track.height}, expected {CODEC_ID} {qr.SIZE}x{qr.SIZE})", where)
        if not track.codec_private:
            raise SegmentError("video track has no FFV1 configuration", where)
        self.private = track.codec_private
        scale = self.layout.timestamp_scale or 1_000_000
        self.frame_ticks = (track.frame_ns or FRAME_MS * 1_000_000) / scale

    def clusters(self) -> list[mkv.ClusterRef]:
        return list(mkv.scan_clusters(self.source, self.layout.first_cluster, self.frame_ticks))

    def decode(self, refs: Sequence[mkv.ClusterRef]) -> list[tuple[int, np.ndarray | None]]:
        """Decode consecutive clusters (the first must start with a keyframe) in one run."""
        return decode_clusters(self.private, self.frame_ticks, [self.source.read(r.offset, r.length) for r in refs])

    def frames(self) -> Iterator[tuple[int, np.ndarray | None]]:
        """Every frame in file order, decoded one cluster at a time."""
        for ref in self.clusters():
            yield from self.decode([ref])
