"""Pins the on-disk format: an accidental change to the byte layout fails here, loudly.

tests/golden/v1-every-type.mkv was written by format version 1, v2-multi-block.mkv and v2-empty.mkv
by format version 2, v3-encrypted.mkv (with its key file and the test master key v3-master.key) by
format version 3 (docs/FORMAT.md). Every later reader must decode each to exactly its .bson file
(concatenated documents). Never regenerate these files to make a test pass: a new format gets a new
version number and new golden files beside these. (The files are compared by what they decode to,
not re-encoded: compressed bytes may differ between versions of bzip2, xz, zstd and FFV1.)
"""
import hashlib
from pathlib import Path

import pytest

from archiverd import SegmentReader
from archiverd.errors import EncryptionKeyError
from archiverd.format import frame, qr
from archiverd.format.reader import LocalFile, stream_documents

GOLDEN = Path(__file__).parent / "golden"


def _documents(name: str) -> list[bytes]:
    raw = (GOLDEN / name).read_bytes()
    docs, pos = [], 0
    while pos < len(raw):
        n = int.from_bytes(raw[pos:pos + 4], "little")
        docs.append(raw[pos:pos + n])
        pos += n
    return docs


def test_v1_golden_segment_still_reads_byte_exact():
    reader = SegmentReader(GOLDEN / "v1-every-type.mkv")
    docs = _documents("v1-every-type.bson")
    assert list(reader) == docs
    assert reader.get("golden-2") == docs[1]
    report = reader.verify(independent=True)
    assert report.ok, report.problems


def test_frame_header_layout_is_pinned():
    packed = frame.pack_v1(bytes.fromhex("0123456789abcdef"), 7, True, b"data")
    assert packed.hex() == ("41525644" "01" "01" "0123456789abcdef" "00000007" "0004" "64617461" "a81e9db2")


def test_qr_symbol_is_pinned():
    image = qr.encode(bytes(range(256)) * 11)
    assert hashlib.sha256(image.tobytes()).hexdigest() == \
        "f58313eae82908dbd6a4bcc0a560aca1063aa2ba0b0dcee69a56e81f37935346"


def test_v2_frame_record_layout_is_pinned():
    packed = frame.pack(frame.Frame(bytes.fromhex("0123456789abcdef"), 7, frame.LAST, b"data", 240, 12))
    assert len(packed) == qr.CAPACITY == 2953
    assert packed[:28].hex() == ("41525644" "02" "01" "0123456789abcdef" "00000007" "f0" "0c" "0000" "00" "00"
                                 "64617461")
    assert packed[28:2949] == bytes(2921)
    assert hashlib.sha256(packed).hexdigest() == \
        "6c20a65a3e5d96356b37eae8c61dc24982359cd29ba7b3310f169259f4d18fd9"
    assert frame.unpack(packed).body[:4] == b"data" and frame.unpack(packed[:-1] + b"x") is None


@pytest.mark.parametrize("name", ["v2-multi-block", "v2-empty"])
def test_v2_golden_segments_read_byte_exact(name):
    docs = _documents(f"{name}.bson")
    reader = SegmentReader(GOLDEN / f"{name}.mkv")
    assert reader.index["format_version"] == 2
    assert list(reader) == docs
    report = reader.verify(independent=True)
    assert report.ok, report.problems
    with LocalFile(GOLDEN / f"{name}.mkv") as source:  # the video alone, no index
        assert list(stream_documents(source, name)) == docs


def test_v2_golden_multi_block_segment_layout():
    reader = SegmentReader(GOLDEN / "v2-multi-block.mkv")
    idx = reader.index
    assert len(idx["blocks"]) >= 3 and idx["frames"] > idx["data_frames"]  # parity frames
    assert "_id" not in idx["docs"][1] and idx["docs"][2]["_id"] is None  # missing vs null
    assert reader.get("golden-2") == _documents("v2-multi-block.bson")[3]
    first, last = idx["blocks"][-1]["frames"]
    assert first <= last < idx["frames"]  # an inclusive range of positions


def test_v3_golden_encrypted_segment_reads_byte_exact_with_its_key(golden_key):
    docs = _documents("v3-encrypted.bson")
    reader = SegmentReader(GOLDEN / "v3-encrypted.mkv")
    assert reader.index["format_version"] == 3
    assert list(reader) == docs
    assert reader.get("golden-2") == docs[1]
    report = reader.verify(independent=True)
    assert report.ok, report.problems
    with LocalFile(GOLDEN / "v3-encrypted.mkv") as source:  # the video alone, no index, no key file
        assert list(stream_documents(source, "v3-encrypted")) == docs


def test_v3_golden_encrypted_segment_names_no_document_and_needs_its_key():
    on_disk = b"".join((GOLDEN / f"v3-encrypted{suffix}").read_bytes() for suffix in (".mkv", ".index.json", ".key.json"))
    for needle in (b"golden-2", b"golden", b"timestamp"):
        assert needle not in on_disk, needle
    with pytest.raises(EncryptionKeyError):
        list(SegmentReader(GOLDEN / "v3-encrypted.mkv"))
