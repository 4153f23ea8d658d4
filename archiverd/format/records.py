"""The record stream that the frames of a segment carry, end to end.

    record = magic (4 bytes) | body length (u32, big-endian) | body

    SHDR  segment header: UTF-8 JSON object (segment_id, created_at, source, format_version)
    BLCK  block: u32 block number, then a blockcodec body
    SEND  end: u32 block count, u32 document count, 32-byte SHA-256 of all document bytes in order

A stream is exactly one SHDR, any number of BLCK numbered from 0, one SEND. The SEND record lets a
reader with no index tell a complete stream from a truncated one.
"""
from __future__ import annotations

import struct
from typing import Iterator

from ..errors import SegmentError

HEADER, BLOCK, END = b"SHDR", b"BLCK", b"SEND"
_KINDS = (HEADER, BLOCK, END)
_PREFIX = struct.Struct(">4sI")
END_BODY = struct.Struct(">II32s")
BLOCK_NUMBER = struct.Struct(">I")
MAX_BODY = 64 << 20  # a block of one 16 MiB document is far below this


def pack(kind: bytes, body: bytes) -> bytes:
    return _PREFIX.pack(kind, len(body)) + body


class Parser:
    """Incremental parser: feed() data as frames arrive, take complete records as they close."""

    def __init__(self) -> None:
        self._buf = bytearray()
        self._offset = 0  # stream offset of _buf[0]

    def feed(self, data: bytes) -> Iterator[tuple[bytes, bytes, int]]:
        """Yield (kind, body, stream offset) for every record completed by `data`."""
        self._buf += data
        while len(self._buf) >= _PREFIX.size:
            kind, length = _PREFIX.unpack_from(self._buf)
            if kind not in _KINDS or length > MAX_BODY:
                raise SegmentError(f"stream offset {self._offset}: not a record (magic {bytes(kind)!r})")
            end = _PREFIX.size + length
            if len(self._buf) < end:
                return
            body = bytes(self._buf[_PREFIX.size:end])
            yield bytes(kind), body, self._offset
            del self._buf[:end]
            self._offset += end

    @property
    def pending(self) -> int:
        """Bytes of an unfinished record (non-zero at the end means the stream was cut short)."""
        return len(self._buf)
