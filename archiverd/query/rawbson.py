"""Walking BSON bytes element by element, so a projection can copy kept values byte for byte."""
from __future__ import annotations

import struct
from typing import Iterator, NamedTuple

from ..errors import QueryError

DOCUMENT, ARRAY = 0x03, 0x04
_FIXED = {0x01: 8, 0x06: 0, 0x07: 12, 0x08: 1, 0x09: 8, 0x0A: 0, 0x10: 4, 0x11: 8, 0x12: 8, 0x13: 16,
          0xFF: 0, 0x7F: 0}
_LENGTH_PLUS = {0x02: 4, 0x0D: 4, 0x0E: 4, 0x05: 5, 0x0C: 16, 0x03: 0, 0x04: 0, 0x0F: 0}
_INT32 = struct.Struct("<i")


class Element(NamedTuple):
    name: str
    type: int
    start: int  # where the element (its type byte) starts
    value: int  # where its value starts
    end: int


def elements(raw: bytes) -> Iterator[Element]:
    """The elements of one BSON document, in stored order."""
    pos, end = 4, len(raw) - 1
    while pos < end:
        kind = raw[pos]
        name_end = raw.index(b"\x00", pos + 1)
        value = name_end + 1
        if kind in _FIXED:
            size = _FIXED[kind]
        elif kind in _LENGTH_PLUS:
            size = _INT32.unpack_from(raw, value)[0] + _LENGTH_PLUS[kind]
        elif kind == 0x0B:  # regex: two C strings
            size = raw.index(b"\x00", raw.index(b"\x00", value) + 1) + 1 - value
        else:
            raise QueryError(f"unknown BSON element type 0x{kind:02x}")
        yield Element(raw[pos + 1:name_end].decode("utf-8", "surrogateescape"), kind, pos, value, value + size)
        pos = value + size


def document(parts: list[bytes]) -> bytes:
    """A BSON document from already encoded elements."""
    body = b"".join(parts)
    return _INT32.pack(len(body) + 5) + body + b"\x00"


def element(kind: int, name: str, value: bytes) -> bytes:
    return bytes((kind,)) + name.encode("utf-8", "surrogateescape") + b"\x00" + value


def array(values: list[tuple[int, bytes]]) -> bytes:
    """A BSON array from (type, value bytes) pairs, keyed "0", "1", ... as MongoDB writes arrays."""
    return document([element(kind, str(i), value) for i, (kind, value) in enumerate(values)])
