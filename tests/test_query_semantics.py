"""archiverd.query against MongoDB's documented semantics, without a server.

Expected answers come from MongoDB's manual and from MongoDB's own tests (cited per test), not from
this implementation or from the test server; several of them are exactly the cases where the test
server (SecantusDB) deviates, see tests/test_query_differential.py.
"""
from __future__ import annotations

import datetime as dt
import math
import re
import uuid

import bson
import pytest
from bson import Binary, Code, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp
from bson.datetime_ms import DatetimeMS

from archiverd.errors import ConfigError, QueryError
from archiverd.query import Query, compare, compile_filter, compile_projection, compile_sort, id_key, loads, parse_id

UTC = dt.timezone.utc


def ids(filter_: dict, docs: list[dict]) -> list:
    """_ids of the documents the filter selects, both from BSON bytes and from decoded dicts."""
    f = compile_filter(filter_)
    from_bytes = [d["_id"] for d in docs if f.matches(bson.encode(d))]
    from_dicts = [d["_id"] for d in docs if f.matches(d)]
    assert from_bytes == from_dicts
    return from_bytes


# --- jstests/core/null_query_semantics.js (MongoDB's own test of null and missing) -----------------
# The `undefined` documents are left out: pymongo cannot keep that deprecated type apart from null,
# and MongoDB 8.0 changed it (null no longer matches undefined).

NULL_DOCS = [
    {"_id": "a_empty_subobject", "a": {}},
    {"_id": "a_null", "a": None},
    {"_id": "a_number", "a": 4},
    {"_id": "a_subobject_b_not_null", "a": {"b": "hi"}},
    {"_id": "a_subobject_b_null", "a": {"b": None}},
    {"_id": "no_a"},
    {"_id": "a_double_array", "a": [[]]},
    {"_id": "a_empty_array", "a": []},
    {"_id": "a_object_array_all_b_nulls", "a": [{"b": None}, {"b": None}, {}]},
    {"_id": "a_object_array_no_b_nulls", "a": [{"b": 1}, {"b": 3}, {"b": "string"}]},
    {"_id": "a_object_array_some_b_nulls", "a": [{"b": None}, {"b": 3}, {"b": None}]},
    {"_id": "a_object_array_some_b_missing", "a": [{"b": 3}, {}]},
    {"_id": "a_value_array_all_nulls", "a": [None, None]},
    {"_id": "a_value_array_no_nulls", "a": [1, "string", 4]},
    {"_id": "a_value_array_with_null", "a": [1, "string", None, 4]},
]


@pytest.mark.parametrize("filter_, expected", [
    ({"a": {"$eq": None}}, {"a_null", "no_a", "a_value_array_all_nulls", "a_value_array_with_null"}),
    ({"a": {"$in": [None, 75]}}, {"a_null", "no_a", "a_value_array_all_nulls", "a_value_array_with_null"}),
    ({"a": {"$exists": False}}, {"no_a"}),
    ({"a.b": {"$eq": None}}, {"a_empty_subobject", "a_null", "a_number", "a_subobject_b_null", "no_a",
                              "a_object_array_all_b_nulls", "a_object_array_some_b_nulls",
                              "a_object_array_some_b_missing"}),
    ({"a.b": {"$ne": None}}, {"a_subobject_b_not_null", "a_double_array", "a_empty_array",
                              "a_object_array_no_b_nulls", "a_value_array_all_nulls", "a_value_array_no_nulls",
                              "a_value_array_with_null"}),
    ({"a.b": {"$nin": [None, Regex("^str.*")]}}, {"a_subobject_b_not_null", "a_double_array", "a_empty_array",
                                                  "a_value_array_all_nulls", "a_value_array_no_nulls",
                                                  "a_value_array_with_null"}),
    ({"a.b": {"$exists": False}}, {"no_a", "a_empty_subobject", "a_null", "a_number", "a_double_array",
                                   "a_empty_array", "a_value_array_all_nulls", "a_value_array_no_nulls",
                                   "a_value_array_with_null"}),
    ({"a": {"$elemMatch": {"$eq": None}}}, {"a_value_array_all_nulls", "a_value_array_with_null"}),
    ({"a": {"$elemMatch": {"b": {"$eq": None}}}}, {"a_double_array", "a_object_array_all_b_nulls",
                                                   "a_object_array_some_b_nulls", "a_object_array_some_b_missing"}),
    ({"a": {"$elemMatch": {"b": {"$ne": None}}}}, {"a_object_array_no_b_nulls", "a_object_array_some_b_nulls",
                                                   "a_object_array_some_b_missing"}),
    ({"a.b": {"$elemMatch": {"$eq": None}}}, set()),
])
def test_null_semantics_as_mongodb_tests_them(filter_, expected):
    assert set(ids(filter_, NULL_DOCS)) == expected


def test_dotted_inclusion_projection_as_mongodb_tests_it():
    """null_query_semantics.js projects {"a.b": 1}: scalars inside arrays go, empty documents stay."""
    p = compile_projection({"_id": 0, "a.b": 1})
    got = {d["_id"]: bson.decode(p.apply(bson.encode(d))) for d in NULL_DOCS}
    assert got["a_value_array_no_nulls"] == {"a": []}
    assert got["a_double_array"] == {"a": [[]]}
    assert got["a_object_array_some_b_missing"] == {"a": [{"b": 3}, {}]}
    assert got["a_number"] == {} and got["a_empty_subobject"] == {"a": {}}


# --- paths through arrays -------------------------------------------------------------------------

PATH_DOCS = [
    {"_id": 1, "a": [1, 2]},
    {"_id": 2, "a": [[1, 2]]},
    {"_id": 3, "a": {"0": 7}},
    {"_id": 4, "a": [7, {"0": 8}]},
    {"_id": 5, "a": [{"b": [1, [2]]}]},
    {"_id": 6, "a": [{"b": 1}, {"c": 2}]},
]


@pytest.mark.parametrize("filter_, expected", [
    ({"a": 1}, [1]),                       # an element of a, not of a's nested array
    ({"a": [1, 2]}, [1, 2]),               # the whole array, or an element equal to it
    ({"a.0": 1}, [1]),                     # position 0; a nested array at the end of a path is not expanded
    ({"a.0": [1, 2]}, [2]),
    ({"a.0": 7}, [3, 4]),                  # a field named "0" or position 0
    ({"a.0": 8}, [4]),                     # "0" inside a document element
    ({"a.b": 2}, []),                      # b's nested [2] is not expanded
    ({"a.b": [2]}, [5]),
    ({"a.b.1": 2}, []),                    # position 1 is the array [2], compared whole
    ({"a.b.1.0": 2}, [5]),
    ({"a.5": None}, [3, 4, 5, 6]),         # past the end of [1, 2] there is nothing, not even null;
    ({"a.5": {"$exists": False}}, [1, 2, 3, 4, 5, 6]),  # documents in an array lack field "5"
    ({"a.0.b": None}, [3, 4, 5, 6]),       # a scalar mid-path is missing; {"b": ...} lacks field "0"
    ({"a.1.b": None}, [3, 4, 5, 6]),
    ({"a": {"$size": 2}}, [1, 4, 6]),
    ({"a.b": {"$size": 2}}, [5]),
])
def test_array_paths(filter_, expected):
    assert ids(filter_, PATH_DOCS) == expected


def test_all_is_an_and_of_equalities():
    """$all docs: `{tags: {$all: ["ssl", "security"]}}` is `{$and: [{tags: "ssl"}, {tags: "security"}]}`,
    and `{$all: [["A"]]}` matches a field that equals ["A"] or holds it as an element."""
    docs = [{"_id": 1, "tags": ["A"]}, {"_id": 2, "tags": [["A"], "B"]}, {"_id": 3, "tags": "A"},
            {"_id": 4, "r": [{"x": 4}, {"x": 3}]}, {"_id": 5}]
    assert ids({"tags": {"$all": [["A"]]}}, docs) == [1, 2]
    assert ids({"tags": {"$all": ["A"]}}, docs) == [1, 3]
    assert ids({"r.x": {"$all": [4, 3]}}, docs) == [4]   # values from different elements
    assert ids({"nope": {"$all": [None]}}, docs) == [1, 2, 3, 4, 5]  # null matches missing
    assert ids({"tags": {"$all": []}}, docs) == []


def test_elem_match_treats_array_elements_as_documents():
    """exec/matcher: $elemMatch with field conditions tests each element that is a BSON object --
    arrays included, as documents keyed "0", "1", ... (null_query_semantics.js: {a: [[]]} matches
    {a: {$elemMatch: {b: {$eq: null}}}})."""
    docs = [{"_id": 1, "a": [[5]]}, {"_id": 2, "a": [5]}, {"_id": 3, "a": [{"0": 5}]}]
    assert ids({"a": {"$elemMatch": {"0": 5}}}, docs) == [1, 3]
    assert ids({"a": {"$elemMatch": {"$eq": 5}}}, docs) == [2]
    assert ids({"a": {"$elemMatch": {}}}, docs) == [1, 3]


# --- comparison and type brackets -----------------------------------------------------------------

SORTED = [  # MongoDB's comparison/sort order (manual: "Comparison/Sort Order"), ascending
    MinKey(), None, math.nan, -math.inf, Decimal128("-1E+400"), -(2 ** 63), -1.5, Int64(-1), Decimal128("-0.5"), 0,
    Decimal128("0.1"), 0.1, 1, 2 ** 53, Int64(2 ** 53 + 1), math.inf, "", "A", "B", "a", "é", "\U0001F600",
    {}, {"a": 1}, {"a": 1, "b": 1}, {"a": 2}, {"b": 0}, [], [0], [1], [1, 0], b"", Binary(b"", 5), b"\x00",
    b"\xff", Binary(b"\x00", 1), b"\x00\x00", ObjectId("000000000000000000000000"),
    ObjectId("ffffffffffffffffffffffff"), False, True, DatetimeMS(-1), dt.datetime(1970, 1, 1, tzinfo=UTC),
    dt.datetime(2024, 1, 1), Timestamp(0, 1), Timestamp(1, 0), Regex("a", "i"), Regex("b", ""),
    Code("a"), Code("a", {"x": 1}), MaxKey(),
]


def test_comparison_order_across_all_types():
    for i, x in enumerate(SORTED):
        for j, y in enumerate(SORTED):
            assert compare(x, y) == (i > j) - (i < j), (x, y)


@pytest.mark.parametrize("a, b", [
    (1, 1.0), (1, Int64(1)), (1, Decimal128("1.000")), (0, -0.0), (Decimal128("-0"), 0),
    (math.nan, Decimal128("NaN")), (math.inf, Decimal128("Infinity")), (2 ** 53, float(2 ** 53)),
    (dt.datetime(2020, 1, 1, tzinfo=UTC), dt.datetime(2020, 1, 1)), (b"x", Binary(b"x", 0)),
])
def test_equal_values(a, b):
    assert compare(a, b) == 0 and id_key(a) == id_key(b)


@pytest.mark.parametrize("a, b", [
    (0.1, Decimal128("0.1")), (Int64(2 ** 53 + 1), float(2 ** 53)), ({"a": 1, "b": 2}, {"b": 2, "a": 1}),
    ("66b1f0c2e4b0a1b2c3d4e5f6", ObjectId("66b1f0c2e4b0a1b2c3d4e5f6")), (Binary(b"x", 0), Binary(b"x", 5)),
    (True, 1), ("1", 1), (Code("x"), "x"), (Code("x"), Code("x", {})), (math.nan, -math.inf),
])
def test_different_values(a, b):
    assert compare(a, b) != 0 and id_key(a) != id_key(b)


@pytest.mark.parametrize("filter_, expected", [
    ({"v": {"$gt": 1}}, ["int2", "dec", "long"]),                # numbers only, whatever their type
    ({"v": {"$gte": "a"}}, ["str"]),
    ({"v": {"$lt": MaxKey()}}, ["int2", "dec", "long", "str", "nan", "null", "missing", "min"]),
    ({"v": {"$gt": MinKey()}}, ["int2", "dec", "long", "str", "nan", "null", "missing", "max"]),
    ({"v": {"$lte": None}}, ["null", "missing"]),
    ({"v": {"$gt": None}}, []),
    ({"v": math.nan}, ["nan"]),
    ({"v": {"$gte": math.nan}}, ["nan"]),
    ({"v": {"$lt": math.nan}}, []),
    ({"v": {"$gt": -math.inf}}, ["int2", "dec", "long"]),        # NaN is below every number, yet $gt fails
    ({"v": {"$type": "number"}}, ["int2", "dec", "long", "nan"]),
    ({"v": {"$type": ["long", "decimal"]}}, ["dec", "long"]),
    ({"v": {"$type": 16}}, ["int2"]),
    ({"v": {"$mod": [2, 0]}}, ["int2", "dec", "long"]),         # 2.5 truncates to 2
    ({"v": {"$mod": [2.9, 0.5]}}, ["int2", "dec", "long"]),     # so do divisor and remainder
])
def test_brackets(filter_, expected):
    docs = [{"_id": "int2", "v": 2}, {"_id": "dec", "v": Decimal128("2.5")}, {"_id": "long", "v": Int64(2 ** 62)},
            {"_id": "str", "v": "abc"}, {"_id": "nan", "v": math.nan}, {"_id": "null", "v": None},
            {"_id": "missing"}, {"_id": "min", "v": MinKey()}, {"_id": "max", "v": MaxKey()}]
    assert ids(filter_, docs) == expected


def test_mod_is_exact_on_int64():
    """ModMatchExpression takes an int64 dividend as is (no rounding through double)."""
    docs = [{"_id": 1, "v": Int64(2 ** 53 + 1)}, {"_id": 2, "v": float(2 ** 53)}, {"_id": 3, "v": -7}]
    assert ids({"v": {"$mod": [4, 1]}}, docs) == [1]
    assert ids({"v": {"$mod": [4, 0]}}, docs) == [2]
    assert ids({"v": {"$mod": [4, -3]}}, docs) == [3]  # the remainder has the dividend's sign


def test_equality_to_documents_respects_field_order():
    docs = [{"_id": 1, "d": {"a": 1, "b": 2}}, {"_id": 2, "d": {"b": 2, "a": 1}}, {"_id": 3, "d": [{"a": 1, "b": 2}]}]
    assert ids({"d": {"a": 1, "b": 2}}, docs) == [1, 3]
    assert ids({"d": {"$in": [{"b": 2, "a": 1}]}}, docs) == [2]
    assert ids({"d.a": 1}, docs) == [1, 2, 3]


def test_embeddings_are_not_decoded_unless_the_filter_needs_them(eat_docs):
    f = compile_filter({"final_outcome": {"$in": ["success", "failure"]}, "tags": "finance"})
    assert f.fields == {"final_outcome", "tags"}
    near = compile_filter({"embeddings.output_summary_embedding.0": {"$gt": 0}})
    wanted = [bson.decode(raw)["embeddings"]["output_summary_embedding"][0] > 0 for raw in eat_docs]
    assert [near.matches(raw) for raw in eat_docs] == wanted and any(wanted) and not all(wanted)


# --- regular expressions (PCRE rules) ----------------------------------------------------------

@pytest.mark.parametrize("spec, text, expected", [
    ({"$regex": r"^\w+$"}, "héllo", False),      # \w is ASCII in PCRE without UCP, as MongoDB compiles
    ({"$regex": r"^\w+$"}, "hello_1", True),
    ({"$regex": r"\d"}, "٣", False),
    ({"$regex": "^É", "$options": "i"}, "été", True),  # case folding is Unicode
    ({"$regex": r"b\Z"}, "ab\n", True),          # PCRE \Z: end or before a final newline
    ({"$regex": r"b\z"}, "ab\n", False),
    ({"$regex": "^b", "$options": "m"}, "a\nb", True),
    ({"$regex": "a.b", "$options": "s"}, "a\nb", True),
    ({"$regex": "a b # comment", "$options": "x"}, "ab", True),
    ({"$regex": r"[\w-]+x"}, "a-x", True),
])
def test_regex(spec, text, expected):
    assert compile_filter({"s": spec}).matches({"s": text}) is expected


def test_regex_values_match_strings_and_equal_regexes():
    docs = [{"_id": 1, "s": "abc"}, {"_id": 2, "s": Regex("^a", "i")}, {"_id": 3, "s": Regex("^a", "")},
            {"_id": 4, "s": ["x", "ABC"]}, {"_id": 5, "s": Code("abc")}]
    assert ids({"s": Regex("^a", "i")}, docs) == [1, 2, 4]
    assert ids({"s": {"$eq": Regex("^a", "i")}}, docs) == [2]
    assert ids({"s": {"$in": [re.compile("^A"), "abc"]}}, docs) == [1, 4]
    assert ids({"s": {"$not": re.compile("^a")}}, docs) == [2, 3, 4, 5]


# --- invalid filters ------------------------------------------------------------------------------

INVALID = [
    ({"a": {"$foo": 1}}, "unknown operator: $foo"),
    ({"$foo": 1}, "unknown top level operator"),
    ({"$not": {"a": 1}}, "unknown top level operator"),
    ({"a": {"$gt": 1, "b": 2}}, "unknown operator: b"),
    ({"a": {"$regex": 5}}, "$regex has to be a string"),
    ({"a": {"$regex": "a", "$options": 1}}, "$options has to be a string"),
    ({"a": {"$options": "i"}}, "$options needs a $regex"),
    ({"a": {"$regex": "a", "$options": "q"}}, "invalid flag in regex options: q"),
    ({"a": {"$regex": "("}}, "Regular expression is invalid"),
    ({"a": {"$regex": Regex("a", "i"), "$options": "m"}}, "options set in both"),
    ({"a": {"$in": 5}}, "$in needs an array"),
    ({"a": {"$nin": {"x": 1}}}, "$nin needs an array"),
    ({"a": {"$in": [{"$gt": 1}]}}, "cannot nest $ under $in"),
    ({"a": {"$size": -1}}, "$size may not be negative"),
    ({"a": {"$size": 1.5}}, "$size must be a whole number"),
    ({"a": {"$size": "1"}}, "$size needs a number"),
    ({"a": {"$mod": [0, 1]}}, "divisor cannot be 0"),
    ({"a": {"$mod": [1]}}, "not enough elements"),
    ({"a": {"$mod": [1, 2, 3]}}, "too many elements"),
    ({"a": {"$mod": [math.nan, 1]}}, "divisor value is invalid"),
    ({"a": {"$mod": 5}}, "needs to be an array"),
    ({"a": {"$type": "nope"}}, "Unknown type name alias"),
    ({"a": {"$type": 99}}, "Invalid numerical type code"),
    ({"a": {"$type": []}}, "at least one type"),
    ({"a": {"$not": 5}}, "$not needs a regex or a document"),
    ({"a": {"$not": {}}}, "$not cannot be empty"),
    ({"a": {"$elemMatch": 5}}, "$elemMatch needs an Object"),
    ({"a": {"$all": 5}}, "$all needs an array"),
    ({"a": {"$all": [{"$gt": 1}]}}, "no $ expressions in $all"),
    ({"a": {"$all": [{"$elemMatch": {"b": 1}}, 5]}}, "$all/$elemMatch has to be consistent"),
    ({"a": {"$ne": Regex("a")}}, "Can't have regex as arg to $ne"),
    ({"a": {"$gt": Regex("a")}}, "Can't have RegEx"),
    ({"$and": []}, "nonempty array"),
    ({"$or": {"a": 1}}, "must be an array"),
    ({"$nor": [5]}, "entries need to be full objects"),
    ({"$where": "this.a == 1"}, "not supported"),
    ({"$expr": {"$eq": ["$a", 1]}}, "not supported"),
    ({"a": {"$near": [0, 0]}}, "not supported"),
    ({"a": {"$bitsAllSet": "x"}}, "takes an Array, a number, or a BinData"),
    ({"a": {"$regex": "a\x00"}}, "embedded null byte"),
    ({"a": {1, 2}}, "unsupported value of type set"),
]


@pytest.mark.parametrize("filter_, message", INVALID)
def test_invalid_filters_raise_query_error(filter_, message):
    with pytest.raises(QueryError) as err:
        compile_filter(filter_)
    assert message in str(err.value)
    assert isinstance(err.value, ConfigError) and err.value.exit_code == 3


def test_comment_and_constant_operators():
    docs = [{"_id": 1}, {"_id": 2, "a": 1}]
    assert ids({"$comment": "why", "a": 1}, docs) == [2]
    assert ids({"$alwaysFalse": 1}, docs) == [] and ids({"$alwaysTrue": 1}, docs) == [1, 2]
    assert ids({"$nor": [{"a": 1}]}, docs) == [1]


def test_bit_operators():
    docs = [{"_id": 1, "v": 0b1010}, {"_id": 2, "v": -1}, {"_id": 3, "v": Binary(b"\x0a", 0)}, {"_id": 4, "v": 1.5}]
    assert ids({"v": {"$bitsAllSet": [1, 3]}}, docs) == [1, 2, 3]
    assert ids({"v": {"$bitsAllClear": 5}}, docs) == [1, 3]
    assert ids({"v": {"$bitsAnySet": Binary(b"\x01", 0)}}, docs) == [2]
    assert ids({"v": {"$bitsAnyClear": [63]}}, docs) == [1, 3]


# --- projection and sort --------------------------------------------------------------------------

def test_projection_rules():
    doc = bson.encode({"_id": 7, "x": 1, "a": [1, {"b": 2, "c": 3}, [{"b": 4, "c": 5}], {"c": 6}], "y": {"z": 1}})
    include = compile_projection({"a.b": 1, "x": True})
    assert bson.decode(include.apply(doc)) == {"_id": 7, "x": 1, "a": [{"b": 2}, [{"b": 4}], {}]}
    exclude = compile_projection({"a.b": 0, "y.z": 0, "_id": 0})
    assert bson.decode(exclude.apply(doc)) == {"x": 1, "a": [1, {"c": 3}, [{"c": 5}], {"c": 6}], "y": {}}
    assert list(bson.decode(compile_projection({"y": 1, "x": 1}).apply(doc))) == ["_id", "x", "y"]  # stored order
    assert bson.decode(compile_projection({"_id": 0}).apply(doc)) == {k: v for k, v in bson.decode(doc).items()
                                                                      if k != "_id"}
    assert compile_projection({}).apply(doc) == doc and compile_projection(None).apply(doc) == doc


def test_projection_copies_kept_values_byte_for_byte(every_type):
    p = compile_projection({"_id": 0, "nan": 0})
    out = p.apply(every_type)
    assert len(out) < len(every_type) and out.endswith(every_type[-40:])  # the unusual tail elements, intact
    assert compile_projection({"oddkeys": 1, "undef": 1, "sym": 1, "ptr": 1}).apply(every_type).endswith(
        every_type[every_type.index(b"\x06undef\x00"):])


@pytest.mark.parametrize("spec, message", [
    ({"a": 1, "b": 0}, "Cannot do exclusion on field b in inclusion projection"),
    ({"a": 0, "b": 1}, "Cannot do inclusion on field b in exclusion projection"),
    ({"a": 1, "a.b": 1}, "Path collision at a.b"),
    ({"a.b": 1, "a": 1}, "Path collision at a"),
    ({"a": {"$slice": 2}}, "not supported"),
    ({"a.$": 1}, "not supported"),
    ({"a": "x"}, "computed fields are not supported"),
    ({"a..b": 1}, "may not be empty"),
])
def test_invalid_projections(spec, message):
    with pytest.raises(QueryError, match=re.escape(message)):
        compile_projection(spec)


def test_sort_order_with_arrays_and_missing_fields():
    """BtreeKeyGenerator keys: an array sorts by its smallest element ascending and its largest
    descending, [] is undefined (below null), a scalar in an array before the end of the path is null."""
    docs = [{"_id": "three", "a": 3}, {"_id": "empty", "a": []}, {"_id": "missing"}, {"_id": "range", "a": [5, 1]},
            {"_id": "null", "a": None}, {"_id": "str", "a": "s"}, {"_id": "deep", "b": [{"c": 2}, 7]},
            {"_id": "deeper", "b": [{"c": 0}]}, {"_id": "emptymid", "b": []}]
    asc = compile_sort([("a", 1), ("_id", 1)]).sorted([bson.encode(d) for d in docs])
    assert [bson.decode(d)["_id"] for d in asc][:6] == ["empty", "deep", "deeper", "emptymid", "missing", "null"]
    assert [bson.decode(d)["_id"] for d in asc][6:] == ["range", "three", "str"]
    desc = compile_sort({"a": -1}).sorted(docs)
    assert [d["_id"] for d in desc][:3] == ["str", "range", "three"]
    by_c = compile_sort([("b.c", 1), ("_id", 1)]).sorted(docs)  # "deep" has the null key of its 7
    assert [d["_id"] for d in by_c] == ["deep", "empty", "emptymid", "missing", "null", "range", "str", "three",
                                        "deeper"]


def test_sort_limit_keeps_the_first_documents():
    docs = [{"_id": i, "t": (i * 7) % 10} for i in range(10)]
    assert [d["_id"] for d in compile_sort({"t": -1}).sorted(docs, limit=3)] == [7, 4, 1]


@pytest.mark.parametrize("spec", [{"a": 2}, {"a": "asc"}, {"a.0": 1}, {"a": {"$meta": "textScore"}}, [("a",)]])
def test_invalid_sorts(spec):
    with pytest.raises(QueryError):
        compile_sort(spec)


def test_query_runs_match_sort_limit_project():
    docs = [bson.encode({"_id": i, "t": dt.datetime(2024, 1, 1 + i, tzinfo=UTC), "k": i % 3, "big": "x" * 10})
            for i in range(9)]
    q = Query({"k": {"$ne": 1}}, {"big": 0}, sort=[("t", -1)], limit=4)
    assert [bson.decode(d) for d in q.run(docs)] == [
        {"_id": i, "t": dt.datetime(2024, 1, 1 + i), "k": i % 3} for i in (8, 6, 5, 3)]
    assert [bson.decode(d)["_id"] for d in Query({"k": 0}, limit=2).run(docs)] == [0, 3]
    with pytest.raises(QueryError):
        Query(limit=-1)


# --- _id arguments ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("66b1f0c2e4b0a1b2c3d4e5f6", [ObjectId("66b1f0c2e4b0a1b2c3d4e5f6"), "66b1f0c2e4b0a1b2c3d4e5f6"]),
    ("42", [42, "42"]),
    ("-7", [-7, "-7"]),
    ("5000000000", [Int64(5000000000), "5000000000"]),
    ("1.5", [1.5, "1.5"]),
    ("true", [True, "true"]),
    ("null", [None, "null"]),
    ('{"$oid": "66b1f0c2e4b0a1b2c3d4e5f6"}', [ObjectId("66b1f0c2e4b0a1b2c3d4e5f6")]),
    ('{"$numberLong": "7"}', [Int64(7)]),
    ('{"$numberDecimal": "1.10"}', [Decimal128("1.10")]),
    ('{"$uuid": "00112233-4455-6677-8899-aabbccddeeff"}',
     [Binary(uuid.UUID("00112233-4455-6677-8899-aabbccddeeff").bytes, 4)]),
    ('{"$binary": {"base64": "AQI=", "subType": "80"}}', [Binary(b"\x01\x02", 128)]),
    ('"3f2a"', ["3f2a"]),
    ('{"b": 2, "a": 1}', [{"b": 2, "a": 1}]),
    ("experience-3f2a", ["experience-3f2a"]),
    ("3f2a 1", ["3f2a 1"]),
])
def test_parse_id(text, expected):
    got = parse_id(text)
    assert got == expected and [type(g) for g in got] == [type(e) for e in expected]
    if isinstance(expected[0], dict):
        assert list(got[0]) == list(expected[0])


@pytest.mark.parametrize("text", ['{"$oid": "xyz"}', '{"$numberLong": "x"}', '{"a": ', "[1, 2]",
                                  '{"$numberDecimal": "abc"}', '{"$uuid": "12"}', '{"$date": "never"}',
                                  '{"$regularExpression": {"pattern": "a", "options": ""}}'])
def test_parse_id_rejects_malformed_extended_json(text):
    with pytest.raises(QueryError):
        parse_id(text)


def test_loads_extended_json_filters():
    f = loads('{"t": {"$gte": {"$date": "2026-01-01T00:00:00Z"}}, "n": {"$numberLong": "5"}, '
              '"r": {"$regex": "^a", "$options": "i"}}', "filter")
    assert f == {"t": {"$gte": dt.datetime(2026, 1, 1, tzinfo=UTC)}, "n": Int64(5), "r": Regex("^a", "i")}
    with pytest.raises(QueryError, match="invalid flag"):
        loads('{"r": {"$regex": "^a", "$options": "iq"}}')
    with pytest.raises(QueryError, match="filter is not valid JSON"):
        loads("{nope}", "filter")


def test_invalid_utf8_in_a_stored_string_does_not_fail_the_find():
    raw = bson.encode({"_id": 1, "s": "x"}).replace(b"\x02s\x00\x02\x00\x00\x00x\x00", b"\x02s\x00\x02\x00\x00\x00\xff\x00")
    assert compile_filter({"s": {"$regex": "."}}).matches(raw)
    assert not compile_filter({"s": "x"}).matches(raw)
    assert compile_filter({"_id": 1}).matches(raw)


def test_deviations_of_the_test_server_are_mongodb_behaviour_here():
    """The cases where SecantusDB answers otherwise (tests/test_query_differential.py), as MongoDB
    defines them: binary by length, subtype, then bytes; numbers exactly across types; $elemMatch
    operators see nested arrays as single elements; $mod exact on int64."""
    docs = [{"_id": 1, "c": Binary(b"\x01", 128)}, {"_id": 2, "c": [b"\x00\x01"]}, {"_id": 3, "c": b"\x02"},
            {"_id": 4, "c": Decimal128("0.1")}, {"_id": 5, "c": 0.1}, {"_id": 6, "c": [[1, 2], [3]]},
            {"_id": 7, "c": [1]}, {"_id": 8, "c": Int64(2 ** 63 - 1)}]
    assert ids({"c": {"$gt": Binary(b"\x01", 0)}}, docs) == [1, 2, 3]
    assert ids({"c": 0.1}, docs) == [5] and ids({"c": Decimal128("0.1")}, docs) == [4]
    assert ids({"c": {"$lt": 0.1}}, docs) == [4]
    assert ids({"c": {"$elemMatch": {"$mod": [2, 1]}}}, docs) == [7]
    ref = bson.DBRef("other", ObjectId("66b1f0c2e4b0a1b2c3d4e5f7"), "db")
    refs = [{"_id": 1, "r": ref}, {"_id": 2, "r": {"$ref": "other", "$id": 0}}]
    assert ids({"r": {"$gte": ref}}, refs) == [1] and ids({"r": {"$lte": ref}}, refs) == [1, 2]
    assert ids({"c": {"$mod": [2, 1]}}, docs) == [7, 8]  # nested arrays are not expanded either


def test_mod_never_matches_beyond_int64():
    """ModMatchExpression: a dividend that cannot be represented as a 64-bit integer does not match."""
    docs = [{"_id": 1, "v": 1e300}, {"_id": 2, "v": -(2.0 ** 63)}, {"_id": 3, "v": 2.0 ** 63}]
    assert ids({"v": {"$mod": [2, 0]}}, docs) == [2]
