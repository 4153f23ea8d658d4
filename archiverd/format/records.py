"""The record stream that the data frames of a segment carry, end to end.

    record = kind (4 ASCII bytes) | body length (u32, big-endian) | body

    SHDR  segment header: UTF-8 JSON object (format_version, segment_id, created_at, source, ...)
    BLCK  block: u32 block number, (version 2) 32-byte SHA-256 of the block's documents, then a
          blockcodec body
    SEND  end: u32 block count, u32 document count, 32-byte SHA-256 of all document bytes in order

A stream is exactly one SHDR, BLCK records numbered from 0, one SEND; in version 2 the rest of the
last data frame after SEND is zero bytes. The per-block digest lets a reader check a block it
repaired or found after damage without the sidecar index; SEND tells a complete stream from a cut one.
"""
from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterator, Sequence

from ..errors import SegmentError

HEADER, BLOCK, END = b"SHDR", b"BLCK", b"SEND"
KINDS = (HEADER, BLOCK, END)
PREFIX = struct.Struct(">4sI")
END_BODY = struct.Struct(">II32s")
BLOCK_NUMBER = struct.Struct(">I")
BLOCK_HEAD_V2 = struct.Struct(">I32s")
MAX_BODY = 64 << 20  # a block of one 16 MiB document is far below this
MAX_HEADER_BODY = 1 << 20


def pack(kind: bytes, body: bytes) -> bytes:
    return PREFIX.pack(kind, len(body)) + body


def block_body(number: int, documents: Sequence[bytes], encoded: bytes) -> bytes:
    """A version 2 BLCK body: number, digest of the documents, codec body."""
    digest = hashlib.sha256()
    for doc in documents:
        digest.update(doc)
    return BLOCK_HEAD_V2.pack(number, digest.digest()) + encoded


def split_block(body: bytes, version: int) -> tuple[int, bytes | None, bytes]:
    """(block number, documents digest or None in version 1, codec body) of a BLCK body."""
    head = BLOCK_HEAD_V2 if version >= 2 else BLOCK_NUMBER
    if len(body) < head.size:
        raise SegmentError("block record is shorter than its header")
    if version >= 2:
        number, digest = BLOCK_HEAD_V2.unpack_from(body)
        return number, digest, body[head.size:]
    return BLOCK_NUMBER.unpack_from(body)[0], None, body[head.size:]


def check_prefix(kind: bytes, length: int, offset: int) -> None:
    if kind not in KINDS or length > MAX_BODY or (kind == HEADER and length > MAX_HEADER_BODY) \
            or (kind == END and length != END_BODY.size):
        raise SegmentError(f"stream offset {offset}: not a record (kind {bytes(kind)!r}, length {length})")


class Parser:
    """Incremental parser: feed() data as frames arrive, take complete records as they close."""

    def __init__(self, offset: int = 0) -> None:
        self._buf = bytearray()
        self._offset = offset  # stream offset of _buf[0]
        self.done = False  # an END record was parsed; what follows is padding
        self.garbage = False  # a non-zero byte after the END record

    def feed(self, data: bytes) -> Iterator[tuple[bytes, bytes, int]]:
        """Yield (kind, body, stream offset) for every record completed by `data`."""
        if self.done:
            self.garbage = self.garbage or data.count(0) != len(data)
            return
        self._buf += data
        while len(self._buf) >= PREFIX.size:
            kind, length = PREFIX.unpack_from(self._buf)
            check_prefix(kind, length, self._offset)
            end = PREFIX.size + length
            if len(self._buf) < end:
                return
            body = bytes(self._buf[PREFIX.size:end])
            yield bytes(kind), body, self._offset
            del self._buf[:end]
            self._offset += end
            if kind == END:
                self.done = True
                self.garbage = self._buf.count(0) != len(self._buf)
                self._buf.clear()
                return

    @property
    def pending(self) -> int:
        """Bytes of an unfinished record (non-zero at the end means the stream was cut short)."""
        return len(self._buf)
