"""Block codec: byte-exact round trips (codec 2 written, codecs 1 and 2 read), the pinned test
vector of docs/FORMAT.md section 5, damage and hostile input (bounded memory), and sizes against
the zstd-19 floor on realistic text."""
from __future__ import annotations

import bz2
import datetime as dt
import json
import lzma
import os
import random
import struct
import subprocess
import sys
import textwrap
import zlib

import bson
import numpy as np
import pytest
import zstandard
from bson import Binary, Code, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp
from bson.datetime_ms import DatetimeMS

from archiverd.errors import SegmentError
from archiverd.format import blockcodec, bsoncolumns
from bench import codec_v1
from bench.corpus import experiences
from bench.corpus_text import AgentText, NaturalProse

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.timezone.utc)

# docs/FORMAT.md section 5.1, test vector: two small documents, every stream stored
VECTOR_DOCS = [bson.encode({"_id": 1, "msg": "hi", "at": dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)}),
               bson.encode({"_id": 2, "msg": "ok", "at": dt.datetime(2026, 1, 1, 0, 0, 1, tzinfo=dt.timezone.utc)})]
VECTOR = bytes.fromhex(
    "02" "00000002" "9eae9153"
    "00" "00000020" "00000020" "00" "00000006" "00000006" "00" "00000018" "00000018"
    "00" "00000000" "00000000"
    "00" "105f696400" "026d736700" "09617400" "00"
    "00" "105f696400" "026d736700" "09617400" "00"
    "6869006f6b00"
    "00000000000002020000000003003600ed00b500500700d0"
    "00000000"
    "880e6d32")
# one document {"_id": 3, "v": [0.0, 0.25, ..., 3.75]}: a packed array of 16 float32 values in one
# vector section (high plane stored: zstd would not make 16 bytes smaller)
VECTOR_SECTION_DOCS = [bson.encode({"_id": 3, "v": [float(i) / 4 for i in range(16)]})]
VECTOR_SECTION = bytes.fromhex(
    "02" "00000001" "715e0016"  # codec 2, D = 1, CRC-32 of the raw streams
    "00" "0000000b" "0000000b"  # layout: stored, 11 bytes
    "00" "00000000" "00000000"  # text: empty
    "00" "00000004" "00000004"  # fixed: stored, 4 bytes
    "00" "00000000" "00000000"  # opaque: empty
    "00" "105f696400" "847600" "10" "00"  # layout: columnar; int32 "_id"; packed "v", n = 16; end
    "00000006"  # fixed: column _id, 3 as a zigzag delta
    "00000001"  # one vector section
    "00000010" "00" "00000010" "0e32c722"  # n = 16, high plane stored, 16 bytes, CRC-32 of the 64 value bytes
    "003e3f3f3f3f3f3f4040404040404040"  # high plane: byte 3 of each float32
    "00000000000000000000000000000000"  # low plane 0
    "00000000000000000000000000000000"  # low plane 1
    "0080004080a0c0e00010203040506070"  # low plane 2
    "d8e8cf57")  # CRC-32 of all bytes above


def _streams(body: bytes) -> list[tuple[int, int, int]]:
    """(method, raw length, stored length) of each stream of a codec-2 body."""
    return [blockcodec._STREAM.unpack_from(body, blockcodec._HEAD_V2.size + i * blockcodec._STREAM.size)
            for i in range(len(blockcodec.STREAMS))]


def _kinds(docs: list[bytes]) -> list[int]:
    """How each document is stored: bsoncolumns.DOC_COLUMNAR or DOC_VERBATIM."""
    return [kind for kind, _ in bsoncolumns._parse(bsoncolumns.split(docs).layout, len(docs))[0]]


def _random_value(rng: random.Random, depth: int):
    kind = rng.randrange(22 if depth < 4 else 18)
    if kind == 0:
        return rng.choice([0.0, -0.0, float("inf"), float("nan"), 1e-310, rng.uniform(-1e9, 1e9)])
    if kind == 1:
        return "".join(rng.choice("ab \x00é😀\n") for _ in range(rng.randrange(12)))
    if kind == 2:
        return Binary(rng.randbytes(rng.randrange(40)), rng.choice([0, 3, 4, 5, 128]))
    if kind == 3:
        return ObjectId(rng.randbytes(12))
    if kind == 4:
        return rng.random() < 0.5
    if kind == 5:
        return DatetimeMS(rng.randrange(-2 ** 63, 2 ** 63))
    if kind == 6:
        return None
    if kind == 7:
        return Regex("".join(rng.choice("a.*^$") for _ in range(rng.randrange(5))), "ims")
    if kind == 8:
        return Code("function(){}", {"x": 1}) if rng.random() < 0.5 else Code("return 1")
    if kind == 9:
        return rng.randrange(-2 ** 31, 2 ** 31)
    if kind == 10:
        return Timestamp(rng.randrange(2 ** 32), rng.randrange(2 ** 32))
    if kind == 11:
        return Int64(rng.randrange(-2 ** 63, 2 ** 63))
    if kind == 12:
        return Decimal128(str(rng.uniform(-1e6, 1e6)))
    if kind == 13:
        return rng.choice([MinKey(), MaxKey()])
    if kind == 14:  # packable embedding, sometimes with a value that is not float32-exact
        values = np.random.default_rng(rng.randrange(2 ** 32)).standard_normal(rng.randrange(16, 40))
        values = values.astype(np.float32).astype(np.float64).tolist()
        if rng.random() < 0.3:
            values[rng.randrange(len(values))] = 0.1
        return values
    if kind == 15:
        return rng.choice(["", "x" * rng.randrange(300), "The same sentence again. " * 3])
    if kind in (16, 17):
        return rng.randrange(-2 ** 40, 2 ** 40)
    if kind in (18, 19):
        return {f"k{i}": _random_value(rng, depth + 1) for i in range(rng.randrange(5))}
    return [_random_value(rng, depth + 1) for _ in range(rng.randrange(6))]


def _random_documents(seed: int, n: int) -> list[bytes]:
    rng = random.Random(seed)
    return [bson.encode({rng.choice(["_id", "a", "b", "ключ", "", "$x"]) + str(i): _random_value(rng, 0)
                         for i in range(rng.randrange(1, 8))}) for _ in range(n)]


# --- round trips ---------------------------------------------------------------------------------

def test_block_round_trip_mixed(eat_docs, text_docs, every_type):
    docs = eat_docs[:3] + text_docs[:50] + [every_type]
    body = blockcodec.encode(docs)
    assert body[0] == blockcodec.CODEC_COLUMNS
    assert blockcodec.decode(body) == docs
    assert blockcodec.decode(blockcodec.encode([])) == []


def test_every_bson_type_goes_through_the_columnar_path(every_type):
    streams = bsoncolumns.split([every_type])
    assert _kinds([every_type]) == [bsoncolumns.DOC_COLUMNAR]  # not stored verbatim
    assert streams.floats.size == 40  # f32_array only
    assert bsoncolumns.EXPLICIT | 0x02 in streams.layout  # the string holding a NUL
    assert blockcodec.decode(blockcodec.encode([every_type] * 3)) == [every_type] * 3


def test_random_documents_of_every_type_round_trip():
    for seed in range(40):
        docs = _random_documents(seed, 25)
        assert blockcodec.decode(blockcodec.encode(docs)) == docs, seed


def test_anything_the_transform_cannot_reproduce_is_stored_verbatim(every_type):
    good = bson.encode({"a": "text", "n": 1})
    bad = [
        b"\x05\x00\x00\x00\x00",  # the empty document: fine, but tiny
        good[:-1] + b"\x01",  # no terminating NUL
        struct.pack("<i", len(good) + 3) + good[4:] + b"abc",  # trailing bytes after the last element
        bson.encode({"s": "abc"})[:7] + b"\x09" + bson.encode({"s": "abc"})[8:],  # string length past the end
        good.replace(b"\x02a", b"\x99a"),  # unknown type
        os.urandom(200),
        bytes(30),
    ]
    docs = [good] + bad + [every_type]
    assert _kinds(docs) == [0, 0] + [1] * (len(bad) - 1) + [0]  # the empty document is fine
    assert blockcodec.decode(blockcodec.encode(docs)) == docs


def test_documents_past_the_element_or_column_limits_are_stored_verbatim():
    many_columns = bson.encode({f"f{i}": i for i in range(bsoncolumns.MAX_COLUMNS + 1)})
    many_elements = bson.encode({"a": [None] * (bsoncolumns.MAX_ELEMENTS + 1)})
    small = bson.encode({"x": 1, "s": "text"})
    docs = [small, many_columns, small, many_elements, small]
    assert _kinds(docs) == [0, 1, 0, 1, 0]
    assert blockcodec.decode(blockcodec.encode(docs)) == docs


def test_deep_nesting_is_stored_verbatim_and_round_trips():
    deep: dict = {"leaf": "x"}
    for _ in range(bsoncolumns.MAX_DEPTH + 5):
        deep = {"d": deep}
    docs = [bson.encode(deep)]
    assert _kinds(docs) == [bsoncolumns.DOC_VERBATIM]
    assert blockcodec.decode(blockcodec.encode(docs)) == docs


def test_integer_columns_survive_wrapping_deltas():
    values = [-2 ** 63, 2 ** 63 - 1, 0, -1, 2 ** 63 - 1, -2 ** 63, 5]
    docs = [bson.encode({"i": Int64(v), "j": v % 2 ** 31 - 2 ** 30, "d": DatetimeMS(v),
                         "t": Timestamp(v % 2 ** 32, 2 ** 32 - 1)}) for v in values]
    assert blockcodec.decode(blockcodec.encode(docs)) == docs


def test_float_arrays_keep_nan_payloads_signed_zeros_and_subnormals():
    specials = struct.unpack("<4d", struct.pack("<4Q", 0x7FF8000000000001, 0xFFF0000000000000,
                                                0x8000000000000000, 0x36A0000000000000))
    exact = [float(np.float32(v)) for v in (1.4e-45, -3.4e38, 0.0, -0.0, float("inf"), float("nan"))]
    docs = [bson.encode({"a": list(specials) * 5, "b": exact * 4, "c": exact * 4 + [specials[0]]})]
    assert blockcodec.decode(blockcodec.encode(docs)) == docs


def test_incompressible_content_round_trips():
    """Regression: PPMd (pyppmd) failed on ~12 % of blocks like these, once silently."""
    for trial in range(25):
        docs = [bson.encode({"_id": trial, "blob": Binary(os.urandom(200_000)), "text": "some text " * 300}),
                bson.encode({"_id": -trial, "blob": Binary(os.urandom(60_000)), "s": os.urandom(3000).hex()})]
        assert blockcodec.decode(blockcodec.encode(docs)) == docs


def test_a_16_mib_document_round_trips():
    fields = {"_id": 1, "blob": Binary(os.urandom(4 << 20)), "text": "words " * (1 << 20),
              "floats": [float(i) for i in range(100_000)]}
    fields["pad"] = "p" * (blockcodec.MAX_DOCUMENT - len(bson.encode(fields)) - 12)
    doc = bson.encode(fields)
    assert blockcodec.MAX_DOCUMENT - 16 < len(doc) <= blockcodec.MAX_DOCUMENT
    assert blockcodec.decode(blockcodec.encode([doc, doc])) == [doc, doc]


def test_encoding_is_deterministic(text_docs, eat_docs):
    docs = text_docs[:40] + eat_docs[:2]
    assert blockcodec.encode(docs) == blockcodec.encode(list(docs))


def test_text_falls_back_to_xz_when_it_repeats_beyond_bzip2_blocks():
    rng = random.Random(3)
    paragraphs = [os.urandom(40).hex() + " " + " ".join(rng.choice(["alpha", "beta", "gamma"]) for _ in range(60))
                  for _ in range(200)]  # ~70 KB of distinct text, repeated for 3 MB
    docs = [bson.encode({"_id": i, "t": rng.choice(paragraphs)}) for i in range(7000)]
    body = blockcodec.encode(docs)
    assert _streams(body)[1][0] == blockcodec.METHOD_XZ
    assert blockcodec.decode(body) == docs


def test_text_of_whole_repeated_paragraphs_goes_to_xz():
    rng = random.Random(4)
    vocabulary = [os.urandom(3).hex() for _ in range(500)]
    paragraphs = [" ".join(rng.choice(vocabulary) for _ in range(300)) for _ in range(5)]
    docs = [bson.encode({"_id": i, "t": rng.choice(paragraphs)}) for i in range(300)]  # 630 kB of text
    body = blockcodec.encode(docs)
    assert _streams(body)[1][0] == blockcodec.METHOD_XZ
    assert blockcodec.decode(body) == docs


# --- the format, pinned --------------------------------------------------------------------------

def test_format_test_vector():
    assert blockcodec.encode(VECTOR_DOCS) == VECTOR
    assert blockcodec.decode(VECTOR) == VECTOR_DOCS


def test_vector_section_test_vector_and_reading_one_section_alone():
    encoded = blockcodec.encode_block(VECTOR_SECTION_DOCS)
    assert encoded.body == VECTOR_SECTION
    assert blockcodec.decode(VECTOR_SECTION) == VECTOR_SECTION_DOCS
    ((doc, path, offset, length),) = encoded.vectors
    assert (doc, path) == (0, "v") and blockcodec.vector_sections(VECTOR_SECTION, VECTOR_SECTION_DOCS) == \
        [(doc, path, offset, length)]
    values = blockcodec.decode_vector(VECTOR_SECTION[offset:offset + length])
    assert values.tolist() == [i / 4 for i in range(16)]
    damaged = bytearray(VECTOR_SECTION[offset:offset + length])
    damaged[-1] ^= 1
    with pytest.raises(SegmentError, match="CRC"):
        blockcodec.decode_vector(bytes(damaged))


def test_embeddings_get_one_section_each(eat_docs):
    encoded = blockcodec.encode_block(eat_docs[:3])
    assert [(d, p) for d, p, _, _ in encoded.vectors] == [
        (d, "embeddings." + f) for d in range(3) for f in ("primary_goal_description_embedding",
                                                            "sub_task_description_embedding",
                                                            "input_context_summary_embedding",
                                                            "output_summary_embedding")]
    doc = bson.decode(eat_docs[1])
    d, path, offset, length = encoded.vectors[5]
    assert blockcodec.decode_vector(encoded.body[offset:offset + length]).astype(float).tolist() == \
        doc["embeddings"]["sub_task_description_embedding"]


def test_every_compression_method_reads_as_specified(text_docs):
    """Assemble codec-2 bodies by the spec, each stream with each method, and read them back."""
    streams = bsoncolumns.split(text_docs[:30])
    raw = [streams.layout, streams.text, streams.fixed, streams.opaque]
    compress = {blockcodec.METHOD_STORED: lambda b: b,
                blockcodec.METHOD_BZIP2: lambda b: bz2.compress(b, 1),
                blockcodec.METHOD_XZ: lambda b: lzma.compress(b, preset=0),
                blockcodec.METHOD_ZSTD: lambda b: zstandard.ZstdCompressor(level=3).compress(b)}
    for method, fn in compress.items():
        packed = [fn(r) if r else b"" for r in raw]
        methods = [method if r else blockcodec.METHOD_STORED for r in raw]
        crc = 0
        for r in raw:
            crc = zlib.crc32(r, crc)
        head = struct.pack(">BII", 2, 30, crc) + b"".join(
            struct.pack(">BII", m, len(r), len(p)) for m, r, p in zip(methods, raw, packed))
        body = head + b"".join(packed) + struct.pack(">I", 0)  # no vector sections
        assert blockcodec.decode(body + struct.pack(">I", zlib.crc32(body))) == text_docs[:30], method


def test_codec_1_blocks_still_read(eat_docs, text_docs, every_type):
    docs = eat_docs[:2] + text_docs[:20] + [every_type]
    body = codec_v1.encode(docs)
    assert body[0] == blockcodec.CODEC_PACKED
    assert blockcodec.decode(body) == docs


# --- damage and hostile input --------------------------------------------------------------------

@pytest.mark.parametrize("position", [0, 3, 10, 30, -40, -1])
def test_any_flipped_byte_is_caught(text_docs, position):
    body = bytearray(blockcodec.encode(text_docs[:20]))
    body[position] ^= 0x55
    with pytest.raises(SegmentError):
        blockcodec.decode(bytes(body))


def test_truncated_block_is_refused(text_docs):
    body = blockcodec.encode(text_docs[:5])
    for cut in (body[:-1], body[:10], body[:3], b""):
        with pytest.raises(SegmentError):
            blockcodec.decode(cut)


def _seal(body: bytes) -> bytes:
    return body + struct.pack(">I", zlib.crc32(body))


def test_inconsistent_but_crc_valid_blocks_are_refused():
    """Bodies whose CRCs are right but whose contents lie are a SegmentError, never another error."""
    inner = VECTOR[:-4]
    for body in [
        inner[:1] + struct.pack(">I", 3) + inner[5:],  # one document more than the layout holds
        inner[:1] + struct.pack(">I", 1) + inner[5:],  # one fewer: layout bytes left over
        b"\x07" + inner[1:],  # unknown codec
        inner + b"\x00",  # a byte more than the streams declare
    ]:
        with pytest.raises(SegmentError):
            blockcodec.decode(_seal(body))
    refused = 0
    for i in range(len(inner)):  # every single-byte change, both CRCs recomputed
        mutated = bytearray(inner)
        mutated[i] ^= 0xFF
        try:
            docs = blockcodec.decode(_seal(_fix_content_crc(bytes(mutated))))
        except SegmentError:
            refused += 1
            continue
        assert all(isinstance(d, bytes) for d in docs)  # a changed string is still a valid block
    assert refused > len(inner) // 2


def _fix_content_crc(body: bytes) -> bytes:
    """Recompute the content CRC of a stored-only codec-2 body (so the test reaches the parser)."""
    if len(body) < 63 or body[0] != 2:
        return body
    specs = [struct.unpack_from(">BII", body, 9 + 9 * i) for i in range(6)]
    if any(m != 0 or r != s for m, r, s in specs):
        return body
    data = body[63:63 + sum(s for _, _, s in specs)]
    return body[:5] + struct.pack(">I", zlib.crc32(data)) + body[9:]


def test_declared_lengths_over_the_limits_are_refused_before_anything_runs():
    cap = blockcodec.MAX_BLOCK_BSON
    stream = struct.pack(">BII", 0, 0, 0)
    for body in [
        struct.pack(">BII", 2, cap, 0) + stream * 6,  # too many documents
        struct.pack(">BII", 2, 1, 0) + struct.pack(">BII", 1, cap + 1, 0) + stream * 5,  # stream too big
        struct.pack(">BII", 2, 1, 0) + struct.pack(">BII", 1, cap, 0) * 3 + stream * 3,  # sum too big
        struct.pack(">BIIIIII", 1, 1, cap + 1, 0, 0, 0, 0),  # codec 1: text too big
        struct.pack(">BIIIIII", 1, 1, 0, 0, cap, 0, 0),  # codec 1: floats too big
    ]:
        with pytest.raises(SegmentError, match="limit"):
            blockcodec.decode(_seal(body))


_BOMB = textwrap.dedent("""
    import bz2, lzma, struct, sys, zlib
    import zstandard
    from archiverd.errors import SegmentError
    from archiverd.format import blockcodec
    kind, declared = sys.argv[1], int(sys.argv[2])
    chunk, chunks = bytes(1 << 20), 256  # 256 MiB of zeros, compressed chunk by chunk
    if kind in ("bzip2", "v1-bzip2"):
        c = bz2.BZ2Compressor(9); data = b"".join(c.compress(chunk) for _ in range(chunks)) + c.flush()
    elif kind == "xz":
        c = lzma.LZMACompressor(format=lzma.FORMAT_XZ, preset=1)
        data = b"".join(c.compress(chunk) for _ in range(chunks)) + c.flush()
    elif kind == "layout":  # 32 MiB of layout that parses into millions of elements
        raw = b"\\x00" + b"\\x0a\\x00" * ((declared - 1) // 2)
        data = bz2.compress(raw, 9); declared = len(raw)
        method, crc = 1, zlib.crc32(raw)
        del raw
    elif kind == "xz-dict":  # a tiny stream whose header asks for a 4 GiB dictionary
        data = bytearray(lzma.compress(b"x", format=lzma.FORMAT_XZ, filters=[{"id": lzma.FILTER_LZMA2,
                                                                             "dict_size": 4096}]))
        size = (data[12] + 1) * 4
        data[12 + 4] = 40  # LZMA2 dictionary-size property: 4 GiB - 1
        data[12 + size - 4:12 + size] = struct.pack("<I", zlib.crc32(bytes(data[12:12 + size - 4])))
        data = bytes(data); declared = 1
    else:  # zstd frames: declared content size 256 MiB, or none at all
        c = zstandard.ZstdCompressor(level=1).compressobj(size=(chunks << 20) if kind == "zstd" else -1)
        data = b"".join(c.compress(chunk) for _ in range(chunks)) + c.flush()
    if kind != "layout":
        method, crc = {"bzip2": 1, "xz": 2, "xz-dict": 2, "zstd": 3, "zstd-nosize": 3}.get(kind), 0
    if kind.startswith("v1-"):
        body = struct.pack(">BIIIIII", 1, 1, declared, len(data), 0, 0, 0) + data
    elif kind == "layout":
        body = (struct.pack(">BII", 2, 1, crc) + struct.pack(">BII", method, declared, len(data))
                + struct.pack(">BII", 0, 0, 0) * 5 + data)
    else:
        body = (struct.pack(">BII", 2, 1, crc) + struct.pack(">BII", 0, 0, 0)
                + struct.pack(">BII", method, declared, len(data)) + struct.pack(">BII", 0, 0, 0) * 4 + data)
    body += struct.pack(">I", zlib.crc32(body))
    del data
    try:
        blockcodec.decode(body)
        outcome = "accepted"
    except SegmentError as exc:
        outcome = "SegmentError: " + str(exc)
    print(outcome)
    with open("/proc/self/status") as status:  # VmHWM: this process image's own peak (ru_maxrss
        print(next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmHWM")))
""")  # would include the forking pytest's peak on Linux)


@pytest.mark.parametrize("kind, declared", [("bzip2", 1000), ("bzip2", 32 << 20), ("v1-bzip2", 1000),
                                            ("xz", 1000), ("xz", 32 << 20), ("xz-dict", 1),
                                            ("zstd", 1000), ("zstd-nosize", 1000), ("layout", 32 << 20)])
def test_compression_bombs_are_refused_with_bounded_memory(kind, declared):
    proc = subprocess.run([sys.executable, "-c", _BOMB, kind, str(declared)], capture_output=True, text=True,
                          timeout=300, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert proc.returncode == 0, proc.stderr
    outcome, rss_mb = proc.stdout.splitlines()
    assert outcome.startswith("SegmentError"), outcome
    assert int(rss_mb) < 150, f"{kind}: peak RSS {rss_mb} MB"


# --- size against the floor ----------------------------------------------------------------------

def test_compression_beats_zstd19_of_the_same_bson(text_docs, eat_docs):
    for docs in (text_docs, eat_docs[:8]):
        floor = len(zstandard.ZstdCompressor(level=19).compress(b"".join(docs)))
        assert len(blockcodec.encode(docs)) < 0.85 * floor
        assert len(blockcodec.encode(docs)) <= len(codec_v1.encode(docs))


@pytest.mark.parametrize("style", [NaturalProse, AgentText])
def test_realistic_text_is_at_most_0_79_of_the_floor(style):
    """The issue's target: the archive is ~1.39 x 1.05 x payload, so payload <= 0.79 x floor."""
    docs = [bson.encode(d) for d in experiences(300, embeddings=False, seed=42, now=NOW, text=style())]
    floor = len(zstandard.ZstdCompressor(level=19).compress(b"".join(docs)))
    assert len(blockcodec.encode(docs)) <= 0.79 * floor
    assert json.dumps(bson.decode(docs[0]), default=str)  # the corpus is real BSON


def test_one_document_from_the_head_and_its_own_sections(eat_docs, text_docs, every_type):
    """decode_document walks the other documents of the block without building them (their
    embeddings are never read); what it returns must still be the document, for every kind."""
    docs = text_docs[:2] + eat_docs[:3] + [every_type] + _random_documents(3, 6) + text_docs[2:4]
    encoded = blockcodec.encode_block(docs)
    head = encoded.body[:min(offset for _, _, offset, _ in encoded.vectors)]
    for n, doc in enumerate(docs):
        sections = [encoded.body[offset:offset + length] for d, _, offset, length in encoded.vectors if d == n]
        assert blockcodec.decode_document(head, sections, n) == doc, n
    with pytest.raises(SegmentError, match="vector sections"):
        blockcodec.decode_document(head, [], 3)
