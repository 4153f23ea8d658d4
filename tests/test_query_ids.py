"""`_id` arguments and `id_key` against a real MongoDB-wire server: `get` by every id form finds what
the server finds, and `id_key` calls two `_id`s the same exactly when the server's unique `_id` index
refuses the second as a duplicate."""
from __future__ import annotations

import datetime as dt
import math
import uuid

import bson
import pytest
from bson import Binary, Code, Decimal128, Int64, MaxKey, MinKey, ObjectId, Timestamp
from bson.datetime_ms import DatetimeMS
from pymongo.errors import DuplicateKeyError

from archiverd.query import id_key, parse_id

UTC = dt.timezone.utc
UUID = uuid.UUID("00112233-4455-6677-8899-aabbccddeeff")

STORED_IDS = [
    ObjectId("66b1f0c2e4b0a1b2c3d4e5f6"), "66b1f0c2e4b0a1b2c3d4e5f7", 42, "42", Int64(5_000_000_000), 2.5,
    Decimal128("7"), Binary(UUID.bytes, 4), b"\x01\x02", {"a": 1, "b": 2}, "experience-3f2a", "hello world", True,
    dt.datetime(2024, 1, 1, tzinfo=UTC), -1,
]

# command-line text -> the stored _id it must find (None: nothing)
LOOKUPS = [
    ("66b1f0c2e4b0a1b2c3d4e5f6", ObjectId("66b1f0c2e4b0a1b2c3d4e5f6")),
    ("66b1f0c2e4b0a1b2c3d4e5f7", "66b1f0c2e4b0a1b2c3d4e5f7"),  # no such ObjectId: the string
    ('{"$oid": "66b1f0c2e4b0a1b2c3d4e5f6"}', ObjectId("66b1f0c2e4b0a1b2c3d4e5f6")),
    ('{"$oid": "66b1f0c2e4b0a1b2c3d4e5f7"}', None),
    ("42", 42),
    ('"42"', "42"),
    ('{"$numberLong": "42"}', 42),                        # any numeric type names the number
    ('{"$numberDecimal": "42.0"}', 42),
    ("5000000000", Int64(5_000_000_000)),
    ("5e9", Int64(5_000_000_000)),
    ("2.5", 2.5),
    ('{"$numberDecimal": "2.50"}', 2.5),
    ("7", Decimal128("7")),
    ("-1", -1),
    ('{"$uuid": "00112233-4455-6677-8899-aabbccddeeff"}', Binary(UUID.bytes, 4)),
    ('{"$binary": {"base64": "ABEiM0RVZneImaq7zN3u/w==", "subType": "04"}}', Binary(UUID.bytes, 4)),
    ('{"$binary": {"base64": "AQI=", "subType": "00"}}', b"\x01\x02"),
    ('{"$binary": {"base64": "AQI=", "subType": "05"}}', None),   # another subtype, another _id
    ('{"a": 1, "b": 2}', {"a": 1, "b": 2}),
    ('{"a": 1.0, "b": {"$numberLong": "2"}}', {"a": 1, "b": 2}),
    ('{"b": 2, "a": 1}', None),                           # field order matters
    ("experience-3f2a", "experience-3f2a"),
    ("hello world", "hello world"),
    ("true", True),
    ('{"$date": "2024-01-01T00:00:00Z"}', dt.datetime(2024, 1, 1, tzinfo=UTC)),
    ("nothing-here", None),
]


@pytest.fixture
def ids_collection(collection):
    collection.insert_many([bson.raw_bson.RawBSONDocument(bson.encode({"_id": i, "n": n}))
                            for n, i in enumerate(STORED_IDS)])
    return collection


def _local_lookup(candidates: list) -> object:
    by_key = {id_key(i): i for i in STORED_IDS}
    for c in candidates:
        if id_key(c) in by_key:
            return by_key[id_key(c)]
    return None


def _server_lookup(coll, candidates: list) -> object:
    for c in candidates:
        found = coll.find_one({"_id": c})
        if found is not None:
            return STORED_IDS[bson.decode(found.raw)["n"]]
    return None


@pytest.mark.parametrize("text, expected", LOOKUPS)
def test_get_by_every_id_form_finds_what_the_server_finds(ids_collection, text, expected):
    candidates = parse_id(text)
    server = _server_lookup(ids_collection, candidates)
    local = _local_lookup(candidates)
    assert (server is None and expected is None) or id_key(server) == id_key(expected)
    assert (local is None and expected is None) or id_key(local) == id_key(expected)


PAIRS = [  # (a, b): _ids to insert one after the other
    (1, 1.0), (1, Int64(1)), (1, Decimal128("1")), (1, Decimal128("1.000")), (0, -0.0), (0, Decimal128("-0")),
    (2 ** 53, float(2 ** 53)), (Int64(2 ** 53 + 1), float(2 ** 53)), (0.1, Decimal128("0.1")),
    (math.inf, Decimal128("Infinity")), (math.nan, Decimal128("NaN")), (math.nan, -math.nan), (1, True),
    (1, "1"), ("abc", "abc"), ("abc", "abd"), ("é", "e\u0301"),
    ("66b1f0c2e4b0a1b2c3d4e5f6", ObjectId("66b1f0c2e4b0a1b2c3d4e5f6")),
    ({"a": 1, "b": 2}, {"b": 2, "a": 1}), ({"a": 1, "b": 2}, {"a": 1.0, "b": Int64(2)}), ({"a": 1}, {"a": 1, "b": None}),
    ({"a": [1, 2]}, {"a": [1.0, 2.0]}), ({"a": [1, 2]}, {"a": [2, 1]}), ({}, {"a": None}),
    (Binary(b"x", 0), b"x"), (Binary(b"x", 0), Binary(b"x", 5)), (Binary(UUID.bytes, 4), Binary(UUID.bytes, 3)),
    (dt.datetime(2024, 1, 1, tzinfo=UTC), dt.datetime(2024, 1, 1)), (DatetimeMS(0), dt.datetime(1970, 1, 1, tzinfo=UTC)),
    (dt.datetime(2024, 1, 1, tzinfo=UTC), Timestamp(1704067200, 0)), (Timestamp(1, 1), Timestamp(1, 2)),
    (MinKey(), MinKey()), (MinKey(), MaxKey()), (None, None), (Code("x"), "x"), (Code("x"), Code("x")),
    (False, 0), (ObjectId("66b1f0c2e4b0a1b2c3d4e5f6"), ObjectId("66b1f0c2e4b0a1b2c3d4e5f6")),
]


# Pairs where the test server's unique index departs from MongoDB's (the reason is MongoDB's rule).
SERVER_DEVIATIONS = [  # in PAIRS order
    (0.1, Decimal128("0.1"), "numbers compare by exact value across types: Decimal128('0.1') is not the "
                             "double 0.1 (the server compares through doubles)"),
    ({"a": 1, "b": 2}, {"a": 1.0, "b": Int64(2)}, "index keys encode numbers by value inside embedded "
                                                   "documents too (KeyString), so these collide"),
    ({"a": [1, 2]}, {"a": [1.0, 2.0]}, "index keys encode numbers by value inside arrays too (KeyString)"),
    (Binary(b"x", 0), Binary(b"x", 5), "binary values compare by length, subtype, then bytes"),
    (Binary(UUID.bytes, 4), Binary(UUID.bytes, 3), "binary values compare by length, subtype, then bytes"),
]


def test_id_key_equals_exactly_where_the_unique_index_refuses(collection):
    disagreements = []
    for n, (a, b) in enumerate(PAIRS):
        collection.delete_many({})
        collection.insert_one(bson.raw_bson.RawBSONDocument(bson.encode({"_id": a, "pair": n})))
        try:
            collection.insert_one(bson.raw_bson.RawBSONDocument(bson.encode({"_id": b, "pair": n})))
            server_same = False
        except DuplicateKeyError:
            server_same = True
        if server_same != (id_key(a) == id_key(b)):
            disagreements.append((a, b))
    known = [(a, b) for a, b, _ in SERVER_DEVIATIONS]
    assert [bson.encode({"p": p}) for p in disagreements] == [bson.encode({"p": p}) for p in known], disagreements
