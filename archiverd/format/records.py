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


def block_head(number: int, documents: Sequence[bytes]) -> bytes:
    """The start of a version 2 BLCK body: number and the digest of the documents (the codec body
    follows)."""
    digest = hashlib.sha256()
    for doc in documents:
        digest.update(doc)
    return BLOCK_HEAD_V2.pack(number, digest.digest())


def split_block(body: bytes, version: int) -> tuple[int, bytes | None, bytes]:
    """(block number, documents digest or None in version 1, codec body) of a BLCK body."""
    head = BLOCK_HEAD_V2 if version >= 2 else BLOCK_NUMBER
    if len(body) < head.size:
        raise SegmentError("block record is shorter than its header")
    if version >= 2:
        number, digest = BLOCK_HEAD_V2.unpack_from(body)
        return number, digest, memoryview(body)[head.size:]
    return BLOCK_NUMBER.unpack_from(body)[0], None, memoryview(body)[head.size:]


def check_prefix(kind: bytes, length: int, offset: int) -> None:
    if kind not in KINDS or length > MAX_BODY or (kind == HEADER and length > MAX_HEADER_BODY) \
            or (kind == END and length != END_BODY.size):
        raise SegmentError(f"stream offset {offset}: not a record (kind {bytes(kind)!r}, length {length})")


class Parser:
    """Incremental parser: feed() data as frames arrive, take complete records as they close.
    A record's body is allocated once, at the length its prefix declares (bounded above), and
    filled in place: a 16 MiB document is never held twice here."""

    def __init__(self, offset: int = 0) -> None:
        self._prefix = bytearray()
        self._body: bytearray | None = None
        self._kind = b""
        self._filled = 0
        self._offset = offset  # stream offset of the record being parsed
        self.done = False  # an END record was parsed; what follows is padding
        self.garbage = False  # a non-zero byte after the END record

    def feed(self, data: bytes) -> Iterator[tuple[bytes, bytes, int]]:
        """Yield (kind, body, stream offset) for every record completed by `data`."""
        view = memoryview(data)
        while view:
            if self.done:
                self.garbage = self.garbage or bytes(view).count(0) != len(view)
                return
            if self._body is None:
                take = PREFIX.size - len(self._prefix)
                self._prefix += view[:take]
                view = view[take:]
                if len(self._prefix) < PREFIX.size:
                    return
                kind, length = PREFIX.unpack(self._prefix)
                check_prefix(kind, length, self._offset)
                self._kind, self._body, self._filled = bytes(kind), bytearray(length), 0
            take = min(len(view), len(self._body) - self._filled)
            self._body[self._filled:self._filled + take] = view[:take]
            self._filled += take
            view = view[take:]
            if self._filled == len(self._body):
                kind, body, offset = self._kind, bytes(self._body), self._offset
                self._offset += PREFIX.size + len(body)
                self._prefix, self._body = bytearray(), None
                if kind == END:
                    self.done = True
                yield kind, body, offset

    @property
    def pending(self) -> int:
        """Bytes of an unfinished record (non-zero at the end means the stream was cut short)."""
        return len(self._prefix) + (self._filled if self._body is not None else 0)
