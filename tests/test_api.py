import bson
import pytest

import archiverd
from archiverd import SegmentError
from archiverd.format.documents import DECODE_OPTIONS
from bench.corpus import experiences
from tests.conftest import NOW


def test_public_api_round_trip_returns_equal_documents():
    docs = list(experiences(5, embeddings=True, now=NOW)) + list(experiences(20, embeddings=False, now=NOW))
    video = archiverd.encode_experiences_to_video(docs)
    assert video[:4] == b"\x1a\x45\xdf\xa3"  # EBML magic: a Matroska file
    out = archiverd.decode_video_to_experiences(video)
    assert out == docs
    assert [bson.encode(d) for d in out] == [bson.encode(d) for d in docs]


def test_public_api_accepts_raw_bson_and_empty_input(every_type):
    assert archiverd.decode_video_to_experiences(archiverd.encode_experiences_to_video([])) == []
    out = archiverd.decode_video_to_experiences(archiverd.encode_experiences_to_video([every_type]))
    # dicts decode exactly as pymongo decodes the original bytes (byte-exactness is the raw path's
    # promise: SegmentReader, export, restore; legacy types like DBPointer become DBRef in a dict)
    assert bson.encode(out[0]) == bson.encode(bson.decode(every_type, DECODE_OPTIONS))


@pytest.mark.parametrize("data", [b"", b"not a video at all", b"\x1a\x45\xdf\xa3" + bytes(100)])
def test_garbage_is_a_clear_error(data):
    with pytest.raises(SegmentError):
        archiverd.decode_video_to_experiences(data)


def test_truncated_video_is_a_clear_error():
    video = archiverd.encode_experiences_to_video(list(experiences(3, embeddings=True, now=NOW)))
    with pytest.raises(SegmentError):
        archiverd.decode_video_to_experiences(video[: len(video) // 2])
