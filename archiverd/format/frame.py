"""The record carried by one QR symbol (one video frame).

Each frame names its segment and its position, so a reader can tell a missing, duplicated, reordered
or foreign frame from a damaged one, and name it. Layout (big-endian), see docs/FORMAT.md:

    0   4  magic b"ARVD"
    4   1  format version (1)
    5   1  flags: bit 0 = last frame of the segment
    6   8  segment id
    14  4  frame sequence number, from 0
    18  2  data length n
    20  n  data (a slice of the segment's record stream)
    20+n 4 CRC-32 (IEEE) of bytes 0 .. 20+n
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from . import qr

MAGIC = b"ARVD"
VERSION = 1
FLAG_LAST = 0x01
_HEADER = struct.Struct(">4sBB8sIH")
OVERHEAD = _HEADER.size + 4
DATA_PER_FRAME = qr.CAPACITY - OVERHEAD


@dataclass(frozen=True)
class Frame:
    segment_id: bytes
    seq: int
    last: bool
    data: bytes


def pack(frame: Frame) -> bytes:
    head = _HEADER.pack(MAGIC, VERSION, FLAG_LAST if frame.last else 0, frame.segment_id, frame.seq,
                        len(frame.data))
    body = head + frame.data
    return body + struct.pack(">I", zlib.crc32(body))


def unpack(payload: bytes) -> Frame | None:
    """The frame in a QR payload, or None if it is not an intact archiverd frame."""
    if len(payload) < OVERHEAD or payload[:4] != MAGIC:
        return None
    magic, version, flags, segment_id, seq, n = _HEADER.unpack_from(payload)
    if version != VERSION or len(payload) != OVERHEAD + n:
        return None
    if zlib.crc32(payload[:-4]) != struct.unpack_from(">I", payload, len(payload) - 4)[0]:
        return None
    return Frame(segment_id, seq, bool(flags & FLAG_LAST), payload[_HEADER.size:-4])


def from_image(image) -> tuple[Frame | None, bool]:
    """Decode a frame image: fast grid read first, zxing-cpp if that fails. Returns (frame, repaired)
    where repaired says the standard reader's error correction was needed."""
    raw = qr.read(image)
    frame = unpack(raw) if raw is not None else None
    if frame is not None:
        return frame, False
    raw = qr.read_robust(image)
    return (unpack(raw) if raw is not None else None), True
