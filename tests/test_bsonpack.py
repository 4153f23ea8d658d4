import math
import struct

import bson
import numpy as np

from archiverd.format import bsonpack
from archiverd.format.documents import DECODE_OPTIONS


def test_embeddings_are_packed_and_rebuilt_exactly(eat_docs):
    for raw in eat_docs:
        packed = bsonpack.split(raw)
        assert [n for _, n in packed.arrays] == [1536] * 4
        assert packed.floats.dtype == np.float32 and packed.floats.size == 4 * 1536
        assert len(packed.skeleton) < len(raw) - 4 * 1536 * 8
        assert bsonpack.join(packed) == raw


def test_every_type_document_round_trips(every_type):
    packed = bsonpack.split(every_type)
    assert len(packed.arrays) == 1  # only f32_array qualifies
    assert packed.floats.tolist() == [i / 8 for i in range(40)]
    assert bsonpack.join(packed) == every_type


def test_arrays_that_would_change_stay_in_the_skeleton():
    nan_payload = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000001))[0]  # not float32-representable
    doc = bson.encode({"a": [0.5] * 30 + [nan_payload], "b": [1e300] * 30, "c": [-0.0] * 30,
                       "d": [float("nan")] * 30, "short": [0.5] * 3})
    packed = bsonpack.split(doc)
    # c (-0.0) and d (canonical NaN) are float32-exact; a (NaN payload) and b (out of range) are not
    assert [n for _, n in packed.arrays] == [30, 30]
    assert bsonpack.join(packed) == doc
    assert np.signbit(packed.floats[:30]).all()
    assert all(math.isnan(x) for x in packed.floats[30:])


def test_malformed_bytes_are_left_alone():
    junk = b"\x10\x00\x00\x00\x04a\x00\xff\xff\xff\x7f\x00\x00\x00\x00"
    assert bsonpack.split(junk).skeleton == junk
    assert bsonpack.split(junk).arrays == ()


def test_top_level_element_finds_id_without_decoding_the_rest(every_type):
    element = bsonpack.top_level_element(every_type, b"_id")
    assert bson.decode(element, DECODE_OPTIONS) == {"_id": bson.decode(every_type, DECODE_OPTIONS)["_id"]}
    assert bsonpack.top_level_element(every_type, b"missing") is None
    assert bsonpack.top_level_element(b"\x05\x00\x00\x00\x00", b"_id") is None


def test_arrays_across_key_width_boundaries_pack_exactly():
    """Elements are read and written as runs of equally wide keys ("0".."9", "10".."99", ...)."""
    rng = np.random.default_rng(5)
    for n in (16, 99, 100, 101, 999, 1000, 1001, 10_000, 10_001):
        values = rng.standard_normal(n).astype(np.float32)
        raw = bson.encode({"v": values.astype(np.float64).tolist()})
        found = bsonpack.float32_values(np.frombuffer(raw, dtype=np.uint8), 7, len(raw) - 8)
        assert found is not None and np.array_equal(found, values)
        assert bsonpack.array_bytes(values) == raw[7:-1]
        i = n // 2
        key = b"\x01" + str(i).encode() + b"\x00"
        at = bsonpack.array_bytes(values).find(key, 4 + sum(10 + len(str(k)) for k in range(i)) - 1)
        assert at == 4 + sum(10 + len(str(k)) for k in range(i))
        broken = bytearray(raw)
        broken[7 + at + 1] ^= 0x02  # element i's key names another element: not canonical
        assert bsonpack.float32_values(np.frombuffer(bytes(broken), dtype=np.uint8), 7, len(raw) - 8) is None
