"""Lossless float32 packing of BSON documents.

Embeddings arrive as arrays of BSON doubles whose values are exactly representable as float32 (an
embedding API's float32 output after a JSON round trip). Stored as doubles, half of every value is
zero bits that compressors cannot fully remove. `float32_values` recognises such an array and
`array_bytes` rebuilds it; block codec 2 (`bsoncolumns`) uses the two. An array is packed only if
its BSON framing is the canonical one ("0", "1", ... keys, all doubles) and every value survives
float64 -> float32 -> float64 bit for bit (so NaN payloads and -0.0 are safe).

Codec 1 (format version 1) cut the arrays out of whole documents: `split` leaves a *skeleton* (the
document without those arrays' values) plus the values as float32, and `join` rebuilds the identical
bytes; the reader still needs `join`, the reference writer of version 1 (bench/codec_v1.py) `split`.
`split` re-joins its own output and compares: a document it cannot reproduce exactly is returned
unpacked, so packing can never change a byte.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

MIN_PACKED_LENGTH = 16  # shorter arrays are not worth an entry in the table
INT32 = struct.Struct("<i")  # a BSON length prefix

# Fixed-size BSON values by element type (bytes after the key).
_FIXED = {0x01: 8, 0x06: 0, 0x07: 12, 0x08: 1, 0x09: 8, 0x0A: 0, 0x10: 4, 0x11: 8, 0x12: 8, 0x13: 16,
          0x7F: 0, 0xFF: 0}
_LENGTH_PREFIXED = {0x02: 4, 0x0D: 4, 0x0E: 4, 0x0F: 0, 0x05: 5}  # int32 length + extra bytes


@dataclass(frozen=True)
class Packed:
    """A document split into its skeleton and packed arrays (offsets are into the skeleton)."""

    skeleton: bytes
    arrays: tuple[tuple[int, int], ...]  # (skeleton offset, element count), ascending
    floats: np.ndarray  # float32, all packed values in document order


class _Unpackable(Exception):
    """Raised inside the walker for anything it does not recognise; the document stays unpacked."""


def _array_length(n: int) -> int:
    """BSON length of an array of `n` doubles with keys "0".."n-1"."""
    total, lo, hi, digits = 5, 0, 10, 1
    while n > lo:
        total += (min(n, hi) - lo) * (10 + digits)
        lo, hi, digits = hi, hi * 10, digits + 1
    return total


def _count_for_length(length: int) -> int | None:
    """Inverse of `_array_length`, or None when no element count gives `length`."""
    base, lo, hi, digits = 5, 0, 10, 1
    while True:
        width = 10 + digits
        span = (hi - lo) * width
        if length <= base + span:
            q, r = divmod(length - base, width)
            return lo + q if r == 0 else None
        base, lo, hi, digits = base + span, hi, hi * 10, digits + 1


@lru_cache(maxsize=32)
def _layout(n: int) -> tuple[np.ndarray, tuple[tuple[int, int, int, np.ndarray], ...]]:
    """For an n-element double array: the template (its bytes with all values zero) and its runs of
    equally wide elements -- keys of 1, 2, 3, ... digits -- as (byte offset, element count, element
    width, framing of each element: type byte, key, NUL). A run reshaped to (count, width) has the
    values in its last 8 columns, so values are read and written as strided blocks."""
    parts = [INT32.pack(_array_length(n))]
    runs = []
    pos, lo, hi, digits = 4, 0, 10, 1
    while lo < n:
        count, width = min(n, hi) - lo, 10 + digits
        framing = np.array([[1, *str(i).encode(), 0] for i in range(lo, lo + count)], dtype=np.uint8)
        framing.setflags(write=False)
        runs.append((pos, count, width, framing))
        parts.extend(bytes(row) + bytes(8) for row in framing)
        pos += count * width
        lo, hi, digits = hi, hi * 10, digits + 1
    parts.append(b"\x00")
    template = np.frombuffer(b"".join(parts), dtype=np.uint8)
    return template, tuple(runs)


def float32_values(buf: np.ndarray, start: int, length: int) -> np.ndarray | None:
    """The BSON array at buf[start:start+length] as float32 if it is packable (canonical framing,
    at least MIN_PACKED_LENGTH doubles, each float32-exact bit for bit), else None. The proof is
    direct: the array rebuilt from the float32 values must equal the original bytes."""
    n = _count_for_length(length)
    if n is None or n < MIN_PACKED_LENGTH or buf[start + 4] != 0x01:
        return None
    _, runs = _layout(n)
    chunk = buf[start:start + length]
    doubles = np.concatenate([chunk[offset:offset + count * width].reshape(count, width)[:, width - 8:]
                              for offset, count, width, _ in runs]).view("<f8").ravel()
    with np.errstate(invalid="ignore", over="ignore"):  # NaN payloads/overflow fail the comparison
        singles = doubles.astype(np.float32)
    return singles if np.array_equal(_array(singles), chunk) else None


def float64_values(buf: np.ndarray, start: int, length: int) -> np.ndarray | None:
    """The BSON array at buf[start:start+length] as float64 (a view, no copy) when its framing is
    the canonical one ("0", "1", ... keys, all doubles, at least one), else None: what
    `bson.decode` would give as a list of floats, without making a Python float of each value."""
    n = _count_for_length(length)
    if not n or buf[start + length - 1] != 0:
        return None
    _, runs = _layout(n)
    chunk = buf[start:start + length]
    values = []
    for offset, count, width, framing in runs:
        elements = chunk[offset:offset + count * width].reshape(count, width)
        if not np.array_equal(elements[:, :width - 8], framing):
            return None
        values.append(elements[:, width - 8:])
    return np.concatenate(values).view("<f8").ravel()


def elements(data: bytes, start: int, end: int) -> list[tuple[int, bytes, int, int]]:
    """(type, key, value start, value end) of every element of the document data[start:end];
    ValueError when it is not well-formed."""
    if end - start < 5 or INT32.unpack_from(data, start)[0] != end - start or data[end - 1] != 0:
        raise ValueError("not a BSON document")
    out = []
    pos = start + 4
    try:
        while pos < end - 1:
            etype = data[pos]
            key_end = data.index(b"\x00", pos + 1, end)
            stop = _value_end(data, etype, key_end + 1, end)
            out.append((etype, data[pos + 1:key_end], key_end + 1, stop))
            pos = stop
    except (_Unpackable, struct.error, IndexError):
        raise ValueError("not a BSON document") from None
    if pos != end - 1:
        raise ValueError("not a BSON document")
    return out


def _walk(data: bytes, buf: np.ndarray, start: int, end: int,
          found: list[tuple[int, int, np.ndarray]]) -> None:
    """Collect packable arrays in the document data[start:end] (depth first, document order)."""
    if end - start < 5 or INT32.unpack_from(data, start)[0] != end - start or data[end - 1] != 0:
        raise _Unpackable
    pos = start + 4
    while pos < end - 1:
        etype = data[pos]
        key_end = data.find(b"\x00", pos + 1, end)
        if key_end < 0:
            raise _Unpackable
        pos = key_end + 1
        if etype in (0x03, 0x04):
            length = INT32.unpack_from(data, pos)[0]
            if length < 5 or pos + length > end:
                raise _Unpackable
            values = float32_values(buf, pos, length) if etype == 0x04 else None
            if values is not None:
                found.append((pos, length, values))
            else:
                _walk(data, buf, pos, pos + length, found)
            pos += length
        else:
            pos = _value_end(data, etype, pos, end)
    if pos != end - 1:
        raise _Unpackable


def _value_end(data: bytes, etype: int, pos: int, end: int) -> int:
    """End of the value of type `etype` that starts at `pos`."""
    if etype in _FIXED:
        stop = pos + _FIXED[etype]
    elif etype in _LENGTH_PREFIXED or etype in (0x03, 0x04):
        stop = pos + INT32.unpack_from(data, pos)[0] + _LENGTH_PREFIXED.get(etype, 0)
    elif etype == 0x0B:  # regex: two cstrings
        stop = data.index(b"\x00", data.index(b"\x00", pos, end) + 1, end) + 1
    elif etype == 0x0C:  # DBPointer: string + ObjectId
        stop = pos + 4 + INT32.unpack_from(data, pos)[0] + 12
    else:
        raise _Unpackable
    if stop > end or stop < pos:
        raise _Unpackable
    return stop


def top_level_element(data: bytes, key: bytes) -> bytes | None:
    """The top-level element `key` of a document as a one-element BSON document (cheap `_id`
    lookup for 16 MiB documents), or None if absent or the document is malformed."""
    end = len(data) - 1
    pos = 4
    try:
        while pos < end:
            etype = data[pos]
            key_end = data.index(b"\x00", pos + 1, end)
            stop = _value_end(data, etype, key_end + 1, end)
            if data[pos + 1:key_end] == key:
                element = data[pos:stop]
                return INT32.pack(len(element) + 5) + element + b"\x00"
            pos = stop
    except (_Unpackable, struct.error, ValueError, IndexError):
        return None
    return None


def split(data: bytes) -> Packed:
    """Split one BSON document; a document that cannot be packed comes back whole as the skeleton."""
    found: list[tuple[int, int, np.ndarray]] = []
    try:
        _walk(data, np.frombuffer(data, dtype=np.uint8), 0, len(data), found)
    except (_Unpackable, struct.error, ValueError, IndexError):
        found = []
    if not found:
        return Packed(data, (), np.empty(0, dtype=np.float32))
    pieces, arrays, removed, prev = [], [], 0, 0
    for pos, length, values in found:
        pieces.append(data[prev:pos])
        arrays.append((pos - removed, values.size))
        removed += length
        prev = pos + length
    pieces.append(data[prev:])
    packed = Packed(b"".join(pieces), tuple(arrays), np.concatenate([v for _, _, v in found]))
    if join(packed) != data:  # belt and braces: never trust the walker with a byte
        return Packed(data, (), np.empty(0, dtype=np.float32))
    return packed


def _array(values: np.ndarray) -> np.ndarray:
    """The canonical BSON array of `values` (float32) widened to doubles, as uint8."""
    template, runs = _layout(values.size)
    array = template.copy()
    doubles = values.astype("<f8").view(np.uint8).reshape(-1, 8)
    k = 0
    for offset, count, width, _ in runs:
        array[offset:offset + count * width].reshape(count, width)[:, width - 8:] = doubles[k:k + count]
        k += count
    return array


def array_bytes(values: np.ndarray) -> bytes:
    """The canonical BSON array of `values` (float32) widened to doubles: the inverse of
    `float32_values`."""
    return _array(values).tobytes()


def join(packed: Packed) -> bytes:
    """Rebuild the original BSON bytes from a `Packed`."""
    if not packed.arrays:
        return packed.skeleton
    out, prev, k = [], 0, 0
    skeleton, floats = packed.skeleton, packed.floats
    for offset, n in packed.arrays:
        out.append(skeleton[prev:offset])
        out.append(array_bytes(floats[k:k + n]))
        prev, k = offset, k + n
    out.append(skeleton[prev:])
    return b"".join(out)
