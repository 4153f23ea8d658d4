"""BSON documents <-> five streams of like data (the columnar transform of block codec 2).

A general-purpose compressor sees a BSON document as one byte string in which keys, type bytes,
length prefixes, ids, dates, numbers and prose alternate every few bytes; each kind disturbs the
statistics of the others. Here a block's documents are taken apart into:

* `layout` -- the structure: per element a tag (its BSON type) and its key; nested documents and
  arrays as their elements followed by an end tag. The same schema recurs in every document, so
  this stream compresses to a few bytes per document.
* `text` -- the values of strings (and JavaScript code, symbols, regular expressions) with their
  terminating NUL, in document order: one stream of prose for the text compressor.
* `fixed` -- fixed-size values (doubles, ObjectIds, booleans, dates, integers, timestamps,
  decimals) grouped into columns by their path and type, each column stored as byte planes; dates,
  integers and timestamps as zigzag deltas from the column's previous value, most significant
  plane first (a creation timestamp that grows by a few seconds becomes mostly zero bytes).
* `opaque` -- binary data, DBPointers, code with scope (their BSON bytes), and whole documents
  stored verbatim.
* `floats` -- arrays of float32-exact doubles (embeddings), found by `bsonpack.float32_values`.

Lengths are not stored: every length prefix is recomputed from the content. The encoder rebuilds
each document from its own streams with the decoder's code and compares; any document it cannot
reproduce bit for bit (malformed BSON, lengths that disagree with content, nesting deeper than
`MAX_DEPTH`) is stored verbatim, so the transform can never change a byte.
Byte-level layout: docs/FORMAT.md section 5.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from . import bsonpack
from ..errors import SegmentError

TAG_END = 0x00
EXPLICIT = 0x80  # on a string-like tag: the value's length is in the layout (it holds a NUL)
TAG_PACKED = 0x84  # a float32-packed array: element count in the layout, values in `floats`
DOC_COLUMNAR, DOC_VERBATIM = 0x00, 0x01
MAX_DEPTH = 200  # deeper nesting is stored verbatim (MongoDB itself allows 100)
# A block's layout parses into one small object per element: these bound a hostile block's memory
# (~30 MB). A 4 MiB block of EAT documents has ~3,500 elements and ~30 columns, of text-only ones
# ~70,000 and ~20; documents that would cross a limit are stored verbatim.
MAX_ELEMENTS = 1 << 18
MAX_COLUMNS = 1 << 14

_WIDTH = {0x01: 8, 0x06: 0, 0x07: 12, 0x08: 1, 0x09: 8, 0x0A: 0, 0x10: 4, 0x11: 8, 0x12: 8, 0x13: 16,
          0x7F: 0, 0xFF: 0}
_DELTA = {0x09, 0x10, 0x11, 0x12}  # integer-like columns stored as zigzag deltas
_STRINGS = {0x02, 0x0D, 0x0E}
_OPAQUE = {0x05, 0x0C, 0x0F}
_ARRAY_KEY = b"#"  # path component for any element of an array: all elements share columns
_INT32 = struct.Struct("<i")
_END_OP = (TAG_END,)


@dataclass(frozen=True)
class Streams:
    """The transformed documents of one block."""

    layout: bytes
    text: bytes
    fixed: bytes
    opaque: bytes
    floats: np.ndarray  # float32, every packed array's values in layout order
    vectors: tuple[tuple[int, str, int], ...] = ()  # per packed array: (document in block, dotted path, n)


class _Malformed(Exception):
    """The document is not BSON this transform can reproduce; it is stored verbatim."""


def varint(n: int, out: bytearray) -> None:
    """Append `n` as unsigned LEB128."""
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def read_varint(buf: bytes, pos: int) -> tuple[int, int]:
    """(value, next position) of the LEB128 varint at `pos`; at most 5 bytes (32 bits)."""
    result = 0
    for shift in range(0, 35, 7):
        if pos >= len(buf):
            break
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
    raise SegmentError("block layout has a truncated or oversized number")


# --- encoding ------------------------------------------------------------------------------------

class _Doc:
    """The streams of one document, kept apart until it has been verified."""

    def __init__(self) -> None:
        self.layout = bytearray([DOC_COLUMNAR])
        self.ops: list[tuple] = []  # what `_parse` would make of `layout`
        self.text = bytearray()
        self.opaque = bytearray()
        self.paths: dict[tuple, int] = {}  # column (path, tag) -> number in this document
        self.columns: list[list[bytes]] = []
        self.floats: list[np.ndarray] = []
        self.arrays: list[bytes] = []  # the original bytes of each packed array
        self.vector_paths: list[str] = []  # the dotted path of each packed array


def _walk(data: bytes, buf: np.ndarray, start: int, end: int, path: tuple[bytes, ...], in_array: bool,
          depth: int, doc: _Doc) -> None:
    """Append the elements of the document data[start:end] to `doc`, then an end tag."""
    if depth > MAX_DEPTH or end - start < 5 or _INT32.unpack_from(data, start)[0] != end - start \
            or data[end - 1] != 0:
        raise _Malformed
    layout, ops, text, find, unpack = doc.layout, doc.ops, doc.text, data.find, _INT32.unpack_from
    pos = start + 4
    while pos < end - 1:
        if len(ops) > MAX_ELEMENTS:
            raise _Malformed
        tag = data[pos]
        key_end = find(b"\x00", pos + 1, end)
        if key_end < 0 or tag == TAG_END:
            raise _Malformed
        head = data[pos:key_end + 1]  # type byte, key, NUL: as the decoder's ops carry it
        pos = key_end + 1
        if tag in _STRINGS:
            length = unpack(data, pos)[0]
            stop = pos + 4 + length
            if length < 1 or stop > end:
                raise _Malformed
            if data[stop - 1] != 0 or find(b"\x00", pos + 4, stop - 1) >= 0:
                layout.append(EXPLICIT | tag)
                layout += head[1:]
                varint(length, layout)
                ops.append((EXPLICIT | tag, head, length))
            else:
                layout += head
                ops.append((tag, head))
            text += data[pos + 4:stop]
            pos = stop
        elif tag in _WIDTH:
            stop = pos + _WIDTH[tag]
            if stop > end:
                raise _Malformed
            layout += head
            col = doc.paths.setdefault(path + (_ARRAY_KEY if in_array else head[1:-1], tag), len(doc.paths))
            if col == len(doc.columns):
                doc.columns.append([])
            doc.columns[col].append(data[pos:stop])
            ops.append((tag, head, col))
            pos = stop
        elif tag in (0x03, 0x04):
            length = unpack(data, pos)[0]
            if length < 5 or pos + length > end:
                raise _Malformed
            values = bsonpack.float32_values(buf, pos, length) if tag == 0x04 else None
            if values is not None:
                layout.append(TAG_PACKED)
                layout += head[1:]
                varint(values.size, layout)
                ops.append((TAG_PACKED, head, values.size))
                doc.floats.append(values)
                doc.arrays.append(data[pos:pos + length])
                doc.vector_paths.append(".".join(p.decode("utf-8", "replace")
                                                 for p in path + (_ARRAY_KEY if in_array else head[1:-1],)))
            else:
                layout += head
                ops.append((tag, head))
                _walk(data, buf, pos, pos + length, path + (_ARRAY_KEY if in_array else head[1:-1],), tag == 0x04,
                      depth + 1, doc)
            pos += length
        elif tag == 0x0B:  # regex: two cstrings
            stop = data.index(b"\x00", data.index(b"\x00", pos, end) + 1, end) + 1
            layout += head
            ops.append((tag, head))
            text += data[pos:stop]
            pos = stop
        elif tag in _OPAQUE:
            length = unpack(data, pos)[0]
            stop = pos + _opaque_size(tag, length)
            if length < 0 or stop > end or stop < pos + 4:
                raise _Malformed
            layout += head
            ops.append((tag, head))
            doc.opaque += data[pos:stop]
            pos = stop
        else:
            raise _Malformed
    if pos != end - 1:
        raise _Malformed
    layout.append(TAG_END)
    ops.append(_END_OP)


def _split_one(data: bytes) -> _Doc | None:
    """`data` taken apart, or None if it must be stored verbatim."""
    doc = _Doc()
    try:
        _walk(data, np.frombuffer(data, dtype=np.uint8), 0, len(data), (), False, 0, doc)
        floats = np.concatenate(doc.floats) if doc.floats else np.empty(0, dtype=np.float32)
        # belt and braces: rebuild with the decoder's builder and compare (packed arrays as they
        # were: `float32_values` has compared each with its rebuilt form already)
        rebuilt = _build([(DOC_COLUMNAR, doc.ops)], bytes(doc.text), doc.columns, bytes(doc.opaque), floats,
                         len(data), doc.arrays)
    except (_Malformed, SegmentError, struct.error, ValueError, IndexError, RecursionError):
        return None
    return doc if rebuilt == [data] else None


def split(documents: Sequence[bytes]) -> Streams:
    """Take a block's documents apart into streams."""
    layout, text, opaque = bytearray(), bytearray(), bytearray()
    columns: dict[tuple, list[bytes]] = {}
    floats: list[np.ndarray] = []
    vectors: list[tuple[int, str, int]] = []
    elements = 0
    for number, data in enumerate(documents):
        doc = _split_one(data)
        if doc is not None and (elements + len(doc.ops) > MAX_ELEMENTS or
                                len(columns) + sum(p not in columns for p in doc.paths) > MAX_COLUMNS):
            doc = None
        if doc is None:
            layout.append(DOC_VERBATIM)
            varint(len(data), layout)
            opaque += data
            continue
        elements += len(doc.ops)
        layout += doc.layout
        text += doc.text
        opaque += doc.opaque
        for path, col in doc.paths.items():
            columns.setdefault(path, []).extend(doc.columns[col])
        floats.extend(doc.floats)
        vectors.extend((number, path, values.size) for path, values in zip(doc.vector_paths, doc.floats))
    planes = []
    for path, values in columns.items():
        encoded = _encode_column(path[-1], values)
        if _decode_column(path[-1], encoded, len(values)) != values:  # never trust numpy with a byte
            raise SegmentError("internal error: a column does not survive its delta coding")
        planes.append(encoded)
    return Streams(bytes(layout), bytes(text), b"".join(planes), bytes(opaque),
                   np.concatenate(floats) if floats else np.empty(0, dtype=np.float32), tuple(vectors))


def _opaque_size(tag: int, length: int) -> int:
    """Bytes of an opaque value whose leading int32 is `length`."""
    return {0x05: 5 + length, 0x0C: 16 + length, 0x0F: length}[tag]


def _encode_column(tag: int, values: list[bytes]) -> bytes:
    """One column as byte planes (zigzag deltas, most significant plane first, for _DELTA tags)."""
    width = _WIDTH[tag]
    if width == 0:
        return b""
    matrix = np.frombuffer(b"".join(values), dtype=np.uint8).reshape(len(values), width)
    if tag in _DELTA:
        kind = np.uint64 if width == 8 else np.uint32
        v = matrix.copy().view(f"<u{width}").ravel().astype(kind)
        d = v - np.concatenate(([kind(0)], v[:-1]))  # wraps modulo 2**bits
        signed = d.view(np.int64 if width == 8 else np.int32)
        z = ((signed << 1) ^ (signed >> (8 * width - 1))).view(kind)
        matrix = z.astype(f">u{width}").view(np.uint8).reshape(len(values), width)
    return np.ascontiguousarray(matrix.T).tobytes()


def _decode_column(tag: int, planes: bytes, count: int) -> list[bytes]:
    """Inverse of `_encode_column`."""
    width = _WIDTH[tag]
    if width == 0:
        return [b""] * count
    matrix = np.frombuffer(planes, dtype=np.uint8).reshape(width, count).T
    if tag in _DELTA:
        kind = np.uint64 if width == 8 else np.uint32
        z = np.ascontiguousarray(matrix).view(f">u{width}").ravel().astype(kind)
        signed = (z >> kind(1)) ^ (kind(0) - (z & kind(1)))
        v = np.cumsum(signed, dtype=kind)  # wraps modulo 2**bits
        matrix = v.astype(f"<u{width}").view(np.uint8).reshape(count, width)
    flat = np.ascontiguousarray(matrix).tobytes()
    return [flat[i:i + width] for i in range(0, count * width, width)]


def _bson_type(tag: int) -> int:
    """The BSON element type a layout tag stands for."""
    if tag == TAG_PACKED:
        return 0x04
    return tag & 0x7F if tag & EXPLICIT and tag & 0x7F in _STRINGS else tag


# --- decoding ------------------------------------------------------------------------------------

def _build(plan: list[tuple[int, Any]], text: bytes, columns: list[list[bytes]], opaque: bytes,
           floats: np.ndarray, max_document: int, arrays: list[bytes] | None = None,
           only: int | None = None) -> list[bytes]:
    """Rebuild documents from a parsed layout and the value streams; every read is bounds-checked
    and all of each stream must be used (SegmentError otherwise). `arrays`, if given, holds the
    packed arrays already built, in order. With `only`, the other documents are walked (the streams
    are shared) but come back empty, without building their packed arrays, the bulk of the work."""
    cursors = [0] * len(columns)
    text_pos = opaque_pos = float_pos = packed = 0
    find, pack = text.find, _INT32.pack
    docs: list[bytes] = []
    for kind, ops in plan:
        skip = only is not None and len(docs) != only
        if kind == DOC_VERBATIM:
            if ops > max_document or opaque_pos + ops > len(opaque):
                raise SegmentError("block layout points past its opaque data or over the size limit")
            docs.append(b"" if skip else opaque[opaque_pos:opaque_pos + ops])
            opaque_pos += ops
            continue
        stack = [bytearray()]
        out = stack[-1]
        for op in ops:
            tag = op[0]
            if tag in _STRINGS:
                stop = find(b"\x00", text_pos) + 1
                if stop == 0:
                    raise SegmentError("block text ends inside a string")
                out += op[1]
                out += pack(stop - text_pos)
                out += text[text_pos:stop]
                text_pos = stop
            elif tag in _WIDTH:
                col = op[2]
                out += op[1]
                out += columns[col][cursors[col]]
                cursors[col] += 1
            elif tag == TAG_END:
                body = stack.pop()
                body.append(0)
                framed = pack(len(body) + 4) + body
                if len(framed) > max_document:
                    raise SegmentError("block holds a document larger than the limit")
                if not stack:
                    docs.append(b"" if skip else bytes(framed))
                    break
                out = stack[-1]
                out += framed
            elif tag in (0x03, 0x04):
                out += op[1]
                out = bytearray()
                stack.append(out)
            elif tag == TAG_PACKED:
                n = op[2]
                if float_pos + n > floats.size:
                    raise SegmentError("block layout asks for more float values than it holds")
                out += op[1]
                if arrays is not None:
                    out += arrays[packed]
                    packed += 1
                elif not skip:
                    out += bsonpack.array_bytes(floats[float_pos:float_pos + n])
                float_pos += n
            elif tag & EXPLICIT and tag & 0x7F in _STRINGS:
                n = op[2]
                if text_pos + n > len(text):
                    raise SegmentError("block text ends inside a string")
                out += op[1]
                out += pack(n)
                out += text[text_pos:text_pos + n]
                text_pos += n
            elif tag == 0x0B:
                first = find(b"\x00", text_pos)
                stop = find(b"\x00", first + 1) + 1 if first >= 0 else 0
                if stop == 0:
                    raise SegmentError("block text ends inside a regular expression")
                out += op[1]
                out += text[text_pos:stop]
                text_pos = stop
            else:  # opaque
                if opaque_pos + 4 > len(opaque):
                    raise SegmentError("block opaque data is truncated")
                length = _INT32.unpack_from(opaque, opaque_pos)[0]
                stop = opaque_pos + _opaque_size(tag, length)
                if length < 0 or stop > len(opaque) or stop < opaque_pos + 4:
                    raise SegmentError("block opaque data is truncated")
                out += op[1]
                out += opaque[opaque_pos:stop]
                opaque_pos = stop
            if len(out) > max_document:
                raise SegmentError("block holds a document larger than the limit")
        else:
            raise SegmentError("block layout ends inside a document")
    if text_pos != len(text) or opaque_pos != len(opaque) or float_pos != floats.size:
        raise SegmentError("block has data its layout does not account for")
    return docs


def _parse(layout: bytes, count: int) -> tuple[list[tuple[int, Any]], list[int], list[int]]:
    """The layout of `count` documents as (plan, column tags, column value counts). The plan has per
    document (DOC_VERBATIM, length) or (DOC_COLUMNAR, ops); an op is (tag, head) or (tag, head, n),
    head being the element's BSON type byte, key and NUL, and n an element count, a string length
    or a column number. Columns are numbered in order of first appearance."""
    pos, size, find, elements = 0, len(layout), layout.find, 0
    columns: dict[tuple, int] = {}
    tags: list[int] = []
    counts: list[int] = []
    plan: list[tuple[int, Any]] = []
    for _ in range(count):
        if pos >= len(layout):
            raise SegmentError("block layout is truncated")
        kind = layout[pos]
        pos += 1
        if kind == DOC_VERBATIM:
            n, pos = read_varint(layout, pos)
            plan.append((kind, n))
            continue
        if kind != DOC_COLUMNAR:
            raise SegmentError(f"block layout has an unknown document kind {kind}")
        ops: list[tuple] = []
        append = ops.append
        paths: list[tuple[tuple[bytes, ...], bool]] = [((), False)]
        path, in_array = paths[-1]
        budget = MAX_ELEMENTS - elements
        while paths:
            if pos >= size:
                raise SegmentError("block layout is truncated")
            if len(ops) >= budget:
                raise SegmentError(f"block layout has more than {MAX_ELEMENTS} elements, the limit")
            tag = layout[pos]
            if tag == TAG_END:
                append(_END_OP)
                paths.pop()
                if paths:
                    path, in_array = paths[-1]
                pos += 1
                continue
            key_end = find(b"\x00", pos + 1)
            if key_end < 0:
                raise SegmentError("block layout is truncated")
            head = layout[pos:key_end + 1] if tag < EXPLICIT or tag == 0xFF else \
                bytes([_bson_type(tag)]) + layout[pos + 1:key_end + 1]
            pos = key_end + 1
            if tag in _STRINGS:
                append((tag, head))
            elif tag in _WIDTH:
                col = columns.setdefault(path + (_ARRAY_KEY if in_array else head[1:-1], tag), len(columns))
                if col == len(counts):
                    if col == MAX_COLUMNS:
                        raise SegmentError(f"block layout has more than {MAX_COLUMNS} columns, the limit")
                    counts.append(0)
                    tags.append(tag)
                counts[col] += 1
                append((tag, head, col))
            elif tag in _OPAQUE or tag == 0x0B:
                append((tag, head))
            elif tag in (0x03, 0x04):
                if len(paths) > MAX_DEPTH + 1:
                    raise SegmentError("block layout nests too deep")
                path, in_array = path + (_ARRAY_KEY if in_array else head[1:-1],), tag == 0x04
                paths.append((path, in_array))
                append((tag, head))
            elif tag == TAG_PACKED or (tag & EXPLICIT and tag & 0x7F in _STRINGS):
                n, pos = read_varint(layout, pos)
                append((tag, head, n))
            else:
                raise SegmentError(f"block layout has an unknown tag {tag:#04x}")
        plan.append((kind, ops))
        elements += len(ops)
    if pos != len(layout):
        raise SegmentError("block layout has bytes after its last document")
    return plan, tags, counts


Layout = tuple[list[tuple[int, Any]], list[int], list[int]]


def parse_layout(layout: bytes, count: int) -> Layout:
    """A block's layout stream, parsed once for `packed_sizes` and `join`."""
    return _parse(layout, count)


def packed_sizes(layout: Layout) -> list[list[int]]:
    """Per document, the element count of each of its packed arrays, in layout order (what a reader
    needs to place one document's vector sections among the block's float values)."""
    return [[op[2] for op in ops if op[0] == TAG_PACKED] if kind == DOC_COLUMNAR else [] for kind, ops in layout[0]]


def join(streams: Streams, count: int, max_document: int, *, layout: Layout | None = None,
         only: int | None = None) -> list[bytes]:
    """The `count` documents of a block, rebuilt from its streams (SegmentError if inconsistent);
    with `only`, just that one (the others come back empty)."""
    plan, tags, counts = layout if layout is not None else _parse(streams.layout, count)
    columns, pos = [], 0
    for tag, n in zip(tags, counts):
        size = _WIDTH[tag] * n
        if pos + size > len(streams.fixed):
            raise SegmentError("block fixed-size values are truncated")
        columns.append(_decode_column(tag, streams.fixed[pos:pos + size], n))
        pos += size
    if pos != len(streams.fixed):
        raise SegmentError("block has fixed-size values its layout does not account for")
    return _build(plan, streams.text, columns, streams.opaque, streams.floats, max_document, only=only)
