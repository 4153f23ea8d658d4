"""The record carried by one QR symbol (one video frame).

Every frame names its segment and its position in the video, so a reader can tell a missing,
duplicated, reordered or foreign frame from a damaged one, and name it; a CRC makes a damaged frame
an erasure that parity can repair. Layouts (big-endian; docs/FORMAT.md §3):

version 2 (always exactly qr.CAPACITY = 2953 bytes):

    0   4  magic b"ARVD"
    4   1  format version (2; 3 in an encrypted segment, same layout)
    5   1  kind: 0 data, 1 the last data frame, 2 parity
    6   8  segment id
    14  4  position: the frame's number in the video, from 0
    18  1  data rows per full stripe (0 when the segment has no parity)
    19  1  parity rows per full stripe
    20  2  parity frames: data frames in this frame's stripe; data frames: 0
    22  1  parity frames: parity rows in this frame's stripe; data frames: 0
    23  1  parity frames: parity row; data frames: 0
    24  2925 body: data frames carry the next 2925 bytes of the record stream, parity frames parity
    2949 4 CRC-32 (IEEE) of bytes 0..2948

version 1: magic, version (1), flags (bit 0 = last), segment id, u32 sequence number, u16 data
length n, n data bytes, CRC-32 -- variable length, no parity.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from . import qr

MAGIC = b"ARVD"
VERSION = 2
VERSIONS = (2, 3)  # 3: the frames of an encrypted segment (format/encryption.py); same layout
DATA, LAST, PARITY = 0, 1, 2
_HEADER = struct.Struct(">4sBB8sIBBHBB")
BODY = qr.CAPACITY - _HEADER.size - 4  # 2925
_V1_HEADER = struct.Struct(">4sBB8sIH")
V1_DATA = qr.CAPACITY - _V1_HEADER.size - 4  # 2929


@dataclass(frozen=True)
class Frame:
    segment_id: bytes
    position: int
    kind: int  # DATA, LAST or PARITY
    body: bytes
    rows: int = 0  # data rows per full stripe
    parity_rows: int = 0  # parity rows per full stripe
    stripe_count: int = 0  # parity frames: data frames in their stripe
    stripe_parity_rows: int = 0  # parity frames: parity rows in their stripe
    parity_row: int = 0
    version: int = VERSION

    @property
    def last(self) -> bool:
        return self.kind == LAST


def pack(frame: Frame) -> bytes:
    """A version 2 (or 3) frame record (bodies shorter than BODY are zero-padded)."""
    if len(frame.body) > BODY:
        raise ValueError(f"frame body of {len(frame.body)} bytes exceeds {BODY}")
    if frame.version not in VERSIONS:
        raise ValueError(f"frame version {frame.version} is not one of {VERSIONS}")
    head = _HEADER.pack(MAGIC, frame.version, frame.kind, frame.segment_id, frame.position, frame.rows,
                        frame.parity_rows, frame.stripe_count, frame.stripe_parity_rows, frame.parity_row)
    record = head + frame.body.ljust(BODY, b"\0")
    return record + struct.pack(">I", zlib.crc32(record))


def unpack(payload: bytes) -> Frame | None:
    """The frame in a QR payload (version 1, 2 or 3), or None if it is not an intact archiverd frame."""
    if len(payload) < 6 or payload[:4] != MAGIC:
        return None
    if zlib.crc32(payload[:-4]) != struct.unpack_from(">I", payload, len(payload) - 4)[0]:
        return None
    if payload[4] in VERSIONS and len(payload) == qr.CAPACITY:
        _, version, kind, segment_id, position, rows, prows, count, sprows, prow = _HEADER.unpack_from(payload)
        if kind > PARITY:
            return None
        return Frame(segment_id, position, kind, payload[_HEADER.size:-4], rows, prows, count, sprows, prow, version)
    if payload[4] == 1 and len(payload) >= _V1_HEADER.size + 4:
        _, _, flags, segment_id, seq, n = _V1_HEADER.unpack_from(payload)
        if len(payload) != _V1_HEADER.size + n + 4:
            return None
        return Frame(segment_id, seq, LAST if flags & 1 else DATA, payload[_V1_HEADER.size:-4], version=1)
    return None


def pack_v1(segment_id: bytes, seq: int, last: bool, data: bytes) -> bytes:
    """A version 1 frame record (kept so that tests can pin the v1 layout and build v1 fixtures)."""
    head = _V1_HEADER.pack(MAGIC, 1, 1 if last else 0, segment_id, seq, len(data))
    return head + data + struct.pack(">I", zlib.crc32(head + data))


def from_image(image: np.ndarray) -> tuple[Frame | None, bool]:
    """Decode a frame image: fast grid read first, zxing-cpp if that fails. Returns (frame, repaired)
    where repaired says the standard reader's error correction was needed."""
    raw = qr.read(image)
    frame = unpack(raw) if raw is not None else None
    if frame is not None:
        return frame, False
    raw = qr.read_robust(image)
    return (unpack(raw) if raw is not None else None), True
