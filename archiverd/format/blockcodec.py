"""Documents <-> one compressed block body.

A block holds whole documents (a few MiB of BSON), compressed together so that documents share
context, and decodes on its own (random access and salvage need no other block).

Codec 2 (written since format version 2) takes the documents apart with `bsoncolumns` into four
streams -- layout (keys and types), text (string values), fixed-size values (byte planes, deltas),
opaque values -- and one *vector section* per float32-packed array (an embedding), and compresses
each with the method that suits it, from three codecs every platform has (bzip2, xz, zstd), or
stores it:

* text: bzip2 -- a BWT beats every LZ codec on prose (0.88x the size of zstd-19); when a quick zstd
  probe beats it (or comes within 1.3x of it on text longer than one 900 kB bzip2 block), the text
  repeats itself in long verbatim stretches or at a distance bzip2 cannot see, where LZ wins: xz
  is tried as well and the smaller kept;
* layout: zstd level 12 -- it is all repetition; as small as bzip2 or xz, ten times faster;
* fixed-size values: xz (LZMA2) -- 15 % smaller than bzip2 on byte planes;
* opaque values: zstd probe; bzip2 and xz only if the probe finds them compressible;
* vector sections: the three low byte planes of the array's float32 values (mantissa bits: noise)
  stored as they are, the high byte plane (sign and exponent) with zstd level 15 on its own -- one
  section per array, with its own CRC, so that a search can fetch and check one embedding by
  decoding only the few frames that hold it (zstd level 15 on one 1536-byte plane is as small as
  level 1 on a block's planes together: 574 vs 568 bytes; mixing it with the noise in one frame
  costs up to 4 %).

Codec 1 (format version 1) is still read: bzip2 of a table + skeletons, zstd of float planes.

Hostile input: every declared length is checked against `MAX_BLOCK_BSON` / `MAX_DOCUMENT` before
anything is allocated, the body CRC is checked before any decompressor runs, every decompressor is
bounded by the declared size (and xz by `XZ_MEMLIMIT`), and the decompressed streams are checked
against a second CRC. Anything off raises SegmentError. Byte layout: docs/FORMAT.md section 7.
"""
from __future__ import annotations

import bz2
import lzma
import struct
import zlib
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import zstandard

from . import bsoncolumns, bsonpack
from .bsoncolumns import read_varint
from ..errors import SegmentError

CODEC_PACKED = 1
CODEC_NAME = "columns+bzip2/xz/zstd"  # what the index and the SHDR record name the block codec
CODEC_COLUMNS = 2
MAX_BLOCK_BSON = 32 << 20  # no block holds more BSON than this (the writer cuts at block_bytes)
MAX_DOCUMENT = 16 << 20  # MongoDB's own limit
XZ_MEMLIMIT = 128 << 20  # an xz stream needing more memory than this to decode is refused
ZSTD_MAX_WINDOW = 1 << 27

METHOD_STORED, METHOD_BZIP2, METHOD_XZ, METHOD_ZSTD = 0, 1, 2, 3
STREAMS = ("layout", "text", "fixed", "opaque")
XZ_PRESET = 9 | lzma.PRESET_EXTREME
XZ_MIN_DICT = 1 << 16
# Text tries xz when zstd level 3 gets within this factor of bzip2: 1.0 within one bzip2 block
# (900 kB), 1.3 beyond. Measured (bench/RESULTS-codec.md): xz wins at probe ratios 0.55-0.93 inside
# a bzip2 block and at 1.19 across blocks; it loses at 1.26 inside one (prose of EAT documents,
# where trying it would cost 3x the time of bzip2) and at 1.39 and above anywhere.
BZIP2_BLOCK = 900_000
LZ_PROBE_RATIO = {False: 1.0, True: 1.3}  # keyed by "longer than one bzip2 block"
BZIP2_LEVEL = 9  # text
ZSTD_LEVEL = 1  # float planes (codec 1)
VECTOR_ZSTD_LEVEL = 15  # the high byte plane of one vector section
LAYOUT_ZSTD_LEVEL = 12  # layout: as small as bzip2 or xz on it, ten times faster

_CRC = struct.Struct(">I")
_HEAD_V1 = struct.Struct(">BIIIIII")
_HEAD_V2 = struct.Struct(">BII")  # codec, document count, CRC-32 of the raw streams
_STREAM = struct.Struct(">BII")  # method, raw length, stored length
_COUNT = struct.Struct(">I")
_SECTION = struct.Struct(">IBII")  # float count n, method of the high plane, its stored length, CRC-32 of the 4n value bytes
MAX_VECTOR = 1 << 22  # floats in one packed array (16 MiB of float32: a whole document)


# --- compression methods -------------------------------------------------------------------------

def _bzip2(raw: bytes) -> bytes:
    return bz2.compress(raw, BZIP2_LEVEL)


def _xz(raw: bytes) -> bytes:
    """xz, LZMA2 with a literal context of 4 bits, no position bits (byte-oriented data), and a
    dictionary just large enough for `raw` (the preset's 64 MiB would cost 674 MiB of memory and
    the time to set it up)."""
    filters = [{"id": lzma.FILTER_LZMA2, "preset": XZ_PRESET, "lc": 4, "lp": 0, "pb": 0,
                "dict_size": max(XZ_MIN_DICT, len(raw))}]
    return lzma.compress(raw, format=lzma.FORMAT_XZ, check=lzma.CHECK_NONE, filters=filters)


def _zstd(level: int) -> Callable[[bytes], bytes]:
    def compress(raw: bytes) -> bytes:
        return zstandard.ZstdCompressor(level=level, write_content_size=True).compress(raw)
    return compress


def _smallest(raw: bytes, methods: dict[int, bytes | Callable[[bytes], bytes]]) -> tuple[int, bytes]:
    """(method, stored bytes): the smallest of `methods` (already compressed bytes or compressors),
    or the raw bytes when nothing is smaller (always for empty streams). Ties go to the first listed."""
    best = (METHOD_STORED, raw)
    if not raw:
        return best
    for method, how in methods.items():
        packed = how if isinstance(how, bytes) else how(raw)
        if len(packed) < len(best[1]):
            best = (method, packed)
    return best


def _pack_text(raw: bytes) -> tuple[int, bytes]:
    if not raw:
        return _smallest(raw, {})
    candidates: dict[int, bytes | Callable[[bytes], bytes]] = {METHOD_BZIP2: _bzip2(raw)}
    if len(_zstd(3)(raw)) < LZ_PROBE_RATIO[len(raw) > BZIP2_BLOCK] * len(candidates[METHOD_BZIP2]):
        candidates[METHOD_XZ] = _xz
    return _smallest(raw, candidates)


def _pack_opaque(raw: bytes) -> tuple[int, bytes]:
    if not raw:
        return _smallest(raw, {})
    probe = _zstd(3)(raw)
    if len(probe) > 0.9 * len(raw):
        return _smallest(raw, {METHOD_ZSTD: probe})
    return _smallest(raw, {METHOD_ZSTD: probe, METHOD_BZIP2: _bzip2, METHOD_XZ: _xz})


def _pack_layout(raw: bytes) -> tuple[int, bytes]:
    return _smallest(raw, {METHOD_ZSTD: _zstd(LAYOUT_ZSTD_LEVEL)})


def _pack_fixed(raw: bytes) -> tuple[int, bytes]:
    return _smallest(raw, {METHOD_XZ: _xz})


def _decompress(method: int, data: bytes, size: int) -> bytes:
    """Exactly `size` bytes from one stream of `method`, never producing or allocating more."""
    try:
        if method == METHOD_STORED:
            out = bytes(data)  # the caller may hand in a view of the record
        elif method in (METHOD_BZIP2, METHOD_XZ):
            dec = bz2.BZ2Decompressor() if method == METHOD_BZIP2 else \
                lzma.LZMADecompressor(format=lzma.FORMAT_XZ, memlimit=XZ_MEMLIMIT)
            out = dec.decompress(data, max_length=size)
            if not dec.eof and not dec.needs_input and dec.decompress(b"", max_length=1):
                raise SegmentError("block stream is longer than declared")
            if not dec.eof or dec.unused_data:
                raise SegmentError("block stream is shorter than declared or has trailing data")
        elif method == METHOD_ZSTD:
            if zstandard.frame_content_size(data) != size:  # the frame allocates what it declares
                raise SegmentError("block stream is longer or shorter than declared")
            out = zstandard.ZstdDecompressor(max_window_size=ZSTD_MAX_WINDOW).decompress(data) if size else b""
        else:
            raise SegmentError(f"block stream has an unknown compression method {method}")
    except (zstandard.ZstdError, lzma.LZMAError, ValueError, EOFError, OSError) as exc:
        raise SegmentError(f"block does not decompress: {exc}") from None
    if len(out) != size:
        raise SegmentError("block stream is longer or shorter than declared")
    return out


# --- float planes --------------------------------------------------------------------------------

def _planes(values: np.ndarray) -> bytes:
    """float32 values as four byte planes (all lowest bytes first, sign/exponent bytes last)."""
    return np.ascontiguousarray(values.astype("<f4").view(np.uint8).reshape(-1, 4).T).tobytes()


def _from_planes(planes: bytes) -> np.ndarray:
    return np.frombuffer(planes, dtype=np.uint8).reshape(4, -1).T.copy().view("<f4").ravel()


# --- codec 2 -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Encoded:
    """A block body and where its vector sections lie in it."""

    body: bytes
    vectors: tuple[tuple[int, str, int, int], ...]  # (document in block, dotted path, offset, length)


def _section(values: np.ndarray) -> bytes:
    """One packed array as a vector section: header, high byte plane (zstd or stored), low planes."""
    planes = _planes(values)
    n = values.size
    method, high = _smallest(planes[3 * n:], {METHOD_ZSTD: _zstd(VECTOR_ZSTD_LEVEL)})
    return _SECTION.pack(n, method, len(high), zlib.crc32(values.astype("<f4").tobytes())) + high + planes[:3 * n]


def encode(documents: Sequence[bytes]) -> bytes:
    """Compress whole BSON documents into one block body (codec 2). Deterministic."""
    return encode_block(documents).body


def encode_block(documents: Sequence[bytes]) -> Encoded:
    """`encode`, and where each document's vector sections lie in the body."""
    if len(documents) > MAX_BLOCK_BSON // 5 or sum(map(len, documents)) > MAX_BLOCK_BSON:
        raise SegmentError(f"a block holds at most {MAX_BLOCK_BSON} bytes of BSON")
    streams = bsoncolumns.split(documents)
    raw = [streams.layout, streams.text, streams.fixed, streams.opaque]
    packers = (_pack_layout, _pack_text, _pack_fixed, _pack_opaque)
    packed = [pack(r) for pack, r in zip(packers, raw)]
    crc = 0
    for r in raw:
        crc = zlib.crc32(r, crc)
    head = bytearray(_HEAD_V2.pack(CODEC_COLUMNS, len(documents), crc))
    for r, (method, data) in zip(raw, packed):
        head += _STREAM.pack(method, len(r), len(data))
    for _, data in packed:
        head += data
    head += _COUNT.pack(len(streams.vectors))
    parts, vectors, offset, k = [bytes(head)], [], len(head), 0
    for doc, path, n in streams.vectors:
        array = streams.floats[k:k + n]
        section = _section(array)
        vectors.append((doc, path, offset, len(section)))
        parts.append(section)
        offset += len(section)
        k += n
    body = b"".join(parts)
    return Encoded(body + _CRC.pack(zlib.crc32(body)), tuple(vectors))


def vector_sections(body: bytes | memoryview, documents: Sequence[bytes]) -> list[tuple[int, str, int, int]]:
    """(document in block, dotted path, offset in body, length) of every vector section of a codec 2
    body whose documents are `documents` (what `encode_block` reported when it wrote it)."""
    view = memoryview(body)
    if not len(view) or view[0] != CODEC_COLUMNS:
        return []
    header = _HEAD_V2.size + len(STREAMS) * _STREAM.size
    pos = header + sum(_STREAM.unpack_from(view, _HEAD_V2.size + i * _STREAM.size)[2] for i in range(len(STREAMS)))
    (count,) = _COUNT.unpack_from(view, pos)
    pos += _COUNT.size
    spans = []
    for _ in range(count):
        n, _, stored, _ = _SECTION.unpack_from(view, pos)
        length = _SECTION.size + stored + 3 * n
        spans.append((pos, length))
        pos += length
    named = bsoncolumns.split(documents).vectors
    if len(named) != len(spans):
        raise SegmentError("block vector sections do not match its documents")
    return [(doc, path, offset, length) for (doc, path, _), (offset, length) in zip(named, spans)]


def decode_vector(section: bytes | memoryview) -> np.ndarray:
    """The float32 values of one vector section (fetched on its own, e.g. for a search's re-rank),
    checked against the section's CRC."""
    values, end = _read_section(memoryview(section), 0)
    if end != len(section):
        raise SegmentError("vector section has trailing bytes")
    return values


def _read_section(body: memoryview, pos: int) -> tuple[np.ndarray, int]:
    if pos + _SECTION.size > len(body):
        raise SegmentError("vector section is cut short")
    n, method, stored, crc = _SECTION.unpack_from(body, pos)
    if n > MAX_VECTOR or stored > n + 1024:
        raise SegmentError("vector section declares more data than the limit")
    start = pos + _SECTION.size
    end = start + stored + 3 * n
    if end > len(body):
        raise SegmentError("vector section is cut short")
    high = _decompress(method, body[start:start + stored], n)
    planes = b"".join((bytes(body[start + stored:end]), high))
    values = _from_planes(planes) if n else np.empty(0, dtype=np.float32)
    if zlib.crc32(values.astype("<f4").tobytes()) != crc:
        raise SegmentError("vector section fails its CRC")
    return values, end


def _read_head(body: bytes | memoryview) -> tuple[int, list[bytes], int, int]:
    """(document count, the four raw streams, offset of the first vector section, V) of a codec 2
    body (or just its head), the streams checked against their CRC."""
    header = _HEAD_V2.size + len(STREAMS) * _STREAM.size
    if len(body) < header:
        raise SegmentError("block is shorter than its header")
    _, count, crc = _HEAD_V2.unpack_from(body)
    specs = [_STREAM.unpack_from(body, _HEAD_V2.size + i * _STREAM.size) for i in range(len(STREAMS))]
    if count > MAX_BLOCK_BSON // 5:
        raise SegmentError(f"block declares {count} documents, more than the limit")
    for name, (_, size, stored) in zip(STREAMS, specs):
        if size > MAX_BLOCK_BSON:
            raise SegmentError(f"block declares a {name} stream of {size} bytes, more than the limit")
    if sum(size for _, size, _ in specs) > 2 * MAX_BLOCK_BSON:
        raise SegmentError("block declares more data than the limit")
    pos = header + sum(stored for _, _, stored in specs)
    if pos + _COUNT.size > len(body):
        raise SegmentError("block length does not match its header")
    raw, at, check = [], header, 0
    for method, size, stored in specs:
        raw.append(_decompress(method, body[at:at + stored], size))
        check = zlib.crc32(raw[-1], check)
        at += stored
    if check != crc:
        raise SegmentError("decompressed block content fails its CRC")
    (sections,) = _COUNT.unpack_from(body, pos)
    if sections > MAX_BLOCK_BSON // 16:
        raise SegmentError("block declares more vector sections than the limit")
    return count, raw, pos + _COUNT.size, sections


def head_length(body: bytes | memoryview) -> int:
    """Bytes of a codec 2 body before its vector sections (what `decode_document` needs besides
    one document's own sections); the whole body for other codecs."""
    if not len(body) or body[0] != CODEC_COLUMNS:
        return len(body)
    header = _HEAD_V2.size + len(STREAMS) * _STREAM.size
    return header + sum(_STREAM.unpack_from(body, _HEAD_V2.size + i * _STREAM.size)[2]
                        for i in range(len(STREAMS))) + _COUNT.size


def _decode_columns(body: bytes) -> list[bytes]:
    count, raw, pos, sections = _read_head(body)
    view, floats, total = memoryview(body), [], 0
    for _ in range(sections):
        values, pos = _read_section(view, pos)
        total += values.size
        if 4 * total > MAX_BLOCK_BSON:
            raise SegmentError("block declares more data than the limit")
        floats.append(values)
    if pos != len(body):
        raise SegmentError("block length does not match its header")
    streams = bsoncolumns.Streams(raw[0], raw[1], raw[2], raw[3],
                                  np.concatenate(floats) if floats else np.empty(0, dtype=np.float32))
    return bsoncolumns.join(streams, count, MAX_DOCUMENT)


def decode_skeletons(head: bytes | memoryview) -> list[bytes]:
    """The documents of a codec 2 block from its head alone, every embedding's values zero: what a
    filter that reads no embedding needs, at a fraction of the block's bytes. Never returned as an
    archived document (the caller reads the matches whole)."""
    count, raw, _, _ = _read_head(head)
    layout = bsoncolumns.parse_layout(raw[0], count)
    total = sum(map(sum, bsoncolumns.packed_sizes(layout)))
    if 4 * total > MAX_BLOCK_BSON:
        raise SegmentError("block declares more data than the limit")
    floats = np.zeros(total, dtype=np.float32)
    return bsoncolumns.join(bsoncolumns.Streams(raw[0], raw[1], raw[2], raw[3], floats), count, MAX_DOCUMENT,
                            layout=layout)


def decode_document(head: bytes | memoryview, sections: Sequence[bytes | memoryview], number: int) -> bytes:
    """Document `number` of a codec 2 block, from the block's head (`head_length` bytes) and that
    document's own vector sections only: the other documents' embeddings are never read. (The
    caller checks the result against the document's SHA-256.)"""
    count, raw, _, _ = _read_head(head)
    if not 0 <= number < count:
        raise SegmentError(f"block has no document {number}")
    layout = bsoncolumns.parse_layout(raw[0], count)
    sizes = bsoncolumns.packed_sizes(layout)
    if len(sections) != len(sizes[number]):
        raise SegmentError(f"document {number} has {len(sizes[number])} vector sections, {len(sections)} given")
    total = sum(map(sum, sizes))
    if 4 * total > MAX_BLOCK_BSON:
        raise SegmentError("block declares more data than the limit")
    floats = np.zeros(total, dtype=np.float32)
    at = sum(sum(s) for s in sizes[:number])
    for n, section in zip(sizes[number], sections):
        values = decode_vector(section)
        if values.size != n:
            raise SegmentError("vector section does not match the block layout")
        floats[at:at + n] = values
        at += n
    docs = bsoncolumns.join(bsoncolumns.Streams(raw[0], raw[1], raw[2], raw[3], floats), count, MAX_DOCUMENT,
                            layout=layout, only=number)
    return docs[number]


# --- codec 1 (format version 1) ------------------------------------------------------------------

def _decode_packed(body: bytes) -> list[bytes]:
    if len(body) < _HEAD_V1.size:
        raise SegmentError("block is shorter than its header")
    _, count, text_len, text_z_len, n_floats, planes_z_len, crc = _HEAD_V1.unpack_from(body)
    if text_len > MAX_BLOCK_BSON or 4 * n_floats > MAX_BLOCK_BSON or count > MAX_BLOCK_BSON // 5:
        raise SegmentError("block declares more data than the limit")
    if _HEAD_V1.size + text_z_len + planes_z_len != len(body):
        raise SegmentError("block length does not match its header")
    text = _decompress(METHOD_BZIP2 if text_len else METHOD_STORED,
                       body[_HEAD_V1.size:_HEAD_V1.size + text_z_len], text_len)
    planes = _decompress(METHOD_ZSTD if n_floats else METHOD_STORED, body[_HEAD_V1.size + text_z_len:],
                         4 * n_floats)
    if zlib.crc32(planes, zlib.crc32(text)) != crc:
        raise SegmentError("decompressed block content fails its CRC")
    values = _from_planes(planes)
    layout, pos = [], 0
    for _ in range(count):
        skel_len, pos = read_varint(text, pos)
        n_arrays, pos = read_varint(text, pos)
        arrays, offset = [], 0
        for _ in range(n_arrays):
            delta, pos = read_varint(text, pos)
            n, pos = read_varint(text, pos)
            offset += delta
            arrays.append((offset, n))
        layout.append((skel_len, tuple(arrays)))
    docs, k = [], 0
    for skel_len, arrays in layout:
        skeleton = text[pos:pos + skel_len]
        pos += skel_len
        n = sum(c for _, c in arrays)
        if len(skeleton) != skel_len or k + n > values.size or any(o > skel_len for o, _ in arrays):
            raise SegmentError("block table does not match its contents")
        docs.append(bsonpack.join(bsonpack.Packed(skeleton, arrays, values[k:k + n])))
        k += n
    if pos != len(text) or k != values.size:
        raise SegmentError("block has data its table does not account for")
    return docs


def decode(body: bytes) -> list[bytes]:
    """The documents of a block body (codec 1 or 2), byte for byte. Raises SegmentError if anything
    is off."""
    if len(body) < 1 + _CRC.size:
        raise SegmentError("block is shorter than its header")
    body, (envelope,) = body[:-_CRC.size], _CRC.unpack_from(body, len(body) - _CRC.size)
    if zlib.crc32(body) != envelope:
        raise SegmentError("block fails its CRC (damaged)")
    codec = body[0]
    if codec == CODEC_COLUMNS:
        return _decode_columns(body)
    if codec == CODEC_PACKED:
        return _decode_packed(body)
    raise SegmentError(f"unknown block codec {codec}")
