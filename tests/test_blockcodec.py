import pytest

from archiverd.format import blockcodec
from archiverd.errors import SegmentError


def test_block_round_trip_mixed(eat_docs, text_docs, every_type):
    docs = eat_docs[:3] + text_docs[:50] + [every_type]
    body = blockcodec.encode(docs)
    assert blockcodec.decode(body) == docs
    assert blockcodec.decode(blockcodec.encode([])) == []


def test_compression_beats_zstd19_of_the_same_bson(text_docs, eat_docs):
    import zstandard
    for docs in (text_docs, eat_docs[:8]):
        floor = len(zstandard.ZstdCompressor(level=19).compress(b"".join(docs)))
        assert len(blockcodec.encode(docs)) < 0.85 * floor


@pytest.mark.parametrize("position", [0, 3, 30, -40, -1])
def test_any_flipped_byte_is_caught(text_docs, position):
    body = bytearray(blockcodec.encode(text_docs[:20]))
    body[position] ^= 0x55
    with pytest.raises(SegmentError):
        blockcodec.decode(bytes(body))


def test_truncated_block_is_refused(text_docs):
    body = blockcodec.encode(text_docs[:5])
    with pytest.raises(SegmentError):
        blockcodec.decode(body[:-1])
    with pytest.raises(SegmentError):
        blockcodec.decode(body[:10])


def test_incompressible_content_round_trips():
    """Regression: PPMd (pyppmd) failed on ~12 % of blocks like these, once silently."""
    import os

    import bson
    for trial in range(25):
        docs = [bson.encode({"_id": trial, "blob": bson.Binary(os.urandom(200_000)), "text": "some text " * 300}),
                bson.encode({"_id": -trial, "blob": bson.Binary(os.urandom(60_000))})]
        assert blockcodec.decode(blockcodec.encode(docs)) == docs
