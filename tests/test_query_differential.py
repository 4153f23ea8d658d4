"""archiverd.query against a real MongoDB-wire server: the same documents, the same generated filters,
sorts and projections, and the answers compared.

The corpus (tests/query_corpus.py) goes into a mirror collection on the test server. Every filter runs
through the server's `find` and through `archiverd.query`; the `_id` sets must be equal. Sorts must
give the same order, projections the same bytes.

The test server is SecantusDB 0.7.0b3, a beta MongoDB-wire server, not mongod. Where its answer
differs, the difference is traced to single predicates ("leaves") of the filter, and each differing
leaf must be explained by one entry of SERVER_DEVIATIONS: a specific, checked claim that reproduces
the server's answer from a different rule, with the reason MongoDB's documented behaviour is ours
(tests/test_query_semantics.py asserts that behaviour without a server). Anything unexplained fails.

`make test` runs a few hundred filters; more with, e.g.,
    ARCHIVERD_QUERY_FILTERS=5000 ARCHIVERD_QUERY_SEED=7 .venv/bin/python -m pytest -s tests/test_query_differential.py
(`-s` prints the figures).
"""
from __future__ import annotations

import collections
import math
import os
from unittest import mock
from dataclasses import dataclass
from typing import Any, Callable

import bson
import pytest
from bson import Code, DBRef, Decimal128, Int64, Regex
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient
from pymongo.errors import OperationFailure

from archiverd.errors import QueryError
from archiverd.query import compile_filter, compile_projection, compile_sort, id_key, match
from archiverd.query.match import _Field
from archiverd.query.order import CODE, CODE_SCOPE, MISSING, OBJECT, bracket, compare
from archiverd.query.paths import array_index, as_document, split, values_at
from archiverd.query.rawbson import elements
from tests.query_corpus import REGEXES, Grammar, corpus
from tests.test_query_semantics import INVALID

FILTERS = int(os.environ.get("ARCHIVERD_QUERY_FILTERS", "600"))
SORTS = int(os.environ.get("ARCHIVERD_QUERY_SORTS", str(max(40, FILTERS // 10))))
PROJECTIONS = int(os.environ.get("ARCHIVERD_QUERY_PROJECTIONS", str(max(60, FILTERS // 6))))
SEED = int(os.environ.get("ARCHIVERD_QUERY_SEED", "1"))


@dataclass
class Mirror:
    coll: Any
    docs: list[bytes]  # as archived: the original bytes
    stored: dict[bytes, bytes]  # id_key -> the bytes the server keeps

    def server_ids(self, filter_: dict) -> set[bytes]:
        return {id_key(bson.decode(d.raw)["_id"]) for d in self.coll.find(filter_, projection={"_id": 1})}

    def server_matches(self, _id: Any, filter_: dict) -> bool:
        return self.coll.count_documents({"$and": [{"_id": _id}, filter_]}) > 0


@pytest.fixture(scope="module")
def mirror(mongo_uri):
    client = MongoClient(mongo_uri, document_class=RawBSONDocument, tz_aware=True)
    db = client[f"qdiff{os.getpid()}"]
    docs = corpus()
    db.mirror.insert_many([RawBSONDocument(d) for d in docs])
    stored = {id_key(bson.decode(d.raw)["_id"]): bytes(d.raw) for d in db.mirror.find()}
    yield Mirror(db.mirror, docs, stored)
    client.drop_database(db.name)
    client.close()


def report(*parts: Any) -> None:
    print("\n[query-differential]", *parts)


# --- explaining a difference: which single predicates differ, and why ---------------------------

def leaves(filter_: dict) -> list[dict]:
    """The filter cut into single predicates: one path with one operator each ($and/$or/$nor/$not
    opened; an $elemMatch stays whole)."""
    out: list[dict] = []
    for name, arg in filter_.items():
        if name in ("$and", "$or", "$nor"):
            for sub in arg:
                out += leaves(sub)
        elif isinstance(arg, dict) and arg and next(iter(arg)).startswith("$"):
            for op, value in arg.items():
                if op == "$options":
                    continue
                body = value if op == "$not" and isinstance(value, dict) else {op: value}
                for op2, value2 in body.items():
                    if op2 != "$options":
                        extra = {"$options": body["$options"]} if op2 == "$regex" and "$options" in body else {}
                        out.append({name: {op2: value2, **extra}})
        else:
            out.append({name: arg})
    return out


def answer_with(leaf: dict, values: dict[bool, list]) -> bool:
    """Our answer for one predicate if the path had yielded `values` (per traversal mode)."""
    node = compile_filter(leaf).root
    assert isinstance(node, _Field)
    return all(op.test(values) for op in node.ops)


def path_values(leaf: dict, raw: bytes) -> dict[bool, list]:
    parts = split(next(iter(leaf)))
    doc = as_document(raw)
    return {mode: values_at(doc, parts, mode) for mode in (True, False)}


def operators(spec: Any) -> set[str]:
    if isinstance(spec, dict):
        return {k for k in spec if k.startswith("$")} | set().union(*(operators(v) for v in spec.values()))
    if isinstance(spec, list):
        return set().union(*(operators(v) for v in spec))
    return set()


def _expand_nested(values: dict[bool, list]) -> dict[bool, list]:
    return {m: vs + [e for v in vs if isinstance(v, list) for e in v] for m, vs in values.items()}


def _without_nested_arrays(values: dict[bool, list]) -> dict[bool, list]:
    return {m: [[e for e in v if not isinstance(e, list)] if isinstance(v, list) else v for v in vs]
            for m, vs in values.items()}


def _int64_as_double(value: Any) -> Any:
    if isinstance(value, list):
        return [_int64_as_double(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2 ** 53:
        return float(value)
    return value


def _all_as_and(leaf: dict) -> dict:
    path, spec = next(iter(leaf.items()))
    return {"$and": [{path: v if isinstance(v, Regex) else {"$eq": v}} for v in spec["$all"]]}


@dataclass
class Deviation:
    """A documented difference of the test server from MongoDB: `reproduces` recomputes the server's
    answer for one predicate and one document under the server's rule (None: does not apply)."""
    name: str
    reason: str
    reproduces: Callable[[Mirror, dict, bytes], bool | None]


def _missing_instead_of_nothing(m: Mirror, leaf: dict, raw: bytes) -> bool | None:
    if not _meets_silent_element(as_document(raw), split(next(iter(leaf))), 0):
        return None
    return answer_with(leaf, {mode: vs + [MISSING] for mode, vs in path_values(leaf, raw).items()})


def _meets_silent_element(container: Any, parts: tuple[str, ...], i: int) -> bool:
    """Whether the path meets an array element that yields nothing in MongoDB: one that is not a
    document and not the element the next component indexes, or an index past the array's end."""
    value = container
    while i < len(parts) and bracket(value) == OBJECT:
        value, i = value.get(parts[i], MISSING), i + 1
    return isinstance(value, list) and i < len(parts) and _silent_in_array(value, parts, i)


def _silent_in_array(array: list, parts: tuple[str, ...], i: int) -> bool:
    index = array_index(parts[i])
    if index is not None and index >= len(array):
        return True
    for position, element in enumerate(array):
        if bracket(element) == OBJECT:
            if _meets_silent_element(element, parts, i):
                return True
        elif position != index:
            return True
        elif i + 1 < len(parts) and not (isinstance(element, list) and not _silent_in_array(element, parts, i + 1)):
            return True  # the indexed element is a scalar, or an array that is silent, before the end
    return False


def _expands_positional_nested_array(m: Mirror, leaf: dict, raw: bytes) -> bool | None:
    path = next(iter(leaf))
    values = path_values(leaf, raw)
    if not path.split(".")[-1].isdigit() or not any(isinstance(v, list) for v in values[True]):
        return None
    return answer_with(leaf, _expand_nested(values))


def _all_not_as_and(m: Mirror, leaf: dict, raw: bytes) -> bool | None:
    spec = next(iter(leaf.values()))
    if not (isinstance(spec, dict) and "$all" in spec and spec["$all"]):
        return None
    first = spec["$all"][0]
    if isinstance(first, dict) and next(iter(first), None) == "$elemMatch":
        return None
    # The server's own answer for the $and of equalities MongoDB documents $all to be must be ours.
    # Reproduced when the server's own answer for that $and is ours: its $all answer, the other one,
    # then contradicts the equivalence.
    ours = compile_filter(leaf).matches(raw)
    return not ours if m.server_matches(bson.decode(raw)["_id"], _all_as_and(leaf)) == ours else None


def _elem_match_skips_arrays(m: Mirror, leaf: dict, raw: bytes) -> bool | None:
    if "$elemMatch" not in operators(leaf):
        return None
    return answer_with(leaf, _without_nested_arrays(path_values(leaf, raw)))


def _mod_in_double(m: Mirror, leaf: dict, raw: bytes) -> bool | None:
    if "$mod" not in operators(leaf):
        return None
    values = path_values(leaf, raw)
    if next(iter(leaf)).split(".")[-1].isdigit():  # with the expansion of nested-array-... below
        values = _expand_nested(values)
    if not any(_beyond_double_precision(v) for v in values[True] + values[False]):
        return None
    spec = next(iter(leaf.values()))
    if isinstance(spec, dict) and list(spec) == ["$mod"]:  # the server's arithmetic, in doubles
        divisor, remainder = (int(x) for x in spec["$mod"])
        return any(math.fmod(float(v), divisor) == remainder for v in values[True]
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))
    return answer_with(leaf, {mode: [_int64_as_double(v) for v in vs] for mode, vs in values.items()})


def _beyond_double_precision(v: Any) -> bool:
    """An int64 a double cannot hold exactly, or a double beyond the int64 range."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return False
    return abs(v) > 2 ** 53 if isinstance(v, int) else abs(v) >= 2 ** 63


def _flattened_nested_arrays(values: dict[bool, list]) -> dict[bool, list]:
    return {m: [[x for e in v for x in (e if isinstance(e, list) else [e])] if isinstance(v, list) else v
                for v in vs] for m, vs in values.items()}


def _elem_match_expands_nested_arrays(m: Mirror, leaf: dict, raw: bytes) -> bool | None:
    if "$elemMatch" not in operators(leaf):
        return None
    return answer_with(leaf, _flattened_nested_arrays(path_values(leaf, raw)))


def _decimals_as_doubles(value: Any) -> Any:
    if isinstance(value, Decimal128):
        return float(value.to_decimal())
    if isinstance(value, list):
        return [_decimals_as_doubles(v) for v in value]
    if isinstance(value, dict):
        return {k: _decimals_as_doubles(v) for k, v in value.items()}
    return value


def _decimal_equal_to_double(m: Mirror, leaf: dict, raw: bytes) -> bool | None:
    values = path_values(leaf, raw)
    changed = {mode: [_decimals_as_doubles(v) for v in vs] for mode, vs in values.items()}
    alt_leaf = _decimals_as_doubles(leaf)
    if changed == values and alt_leaf == leaf:
        return None
    return answer_with(alt_leaf, changed)


def _binary_as_plain_bytes(value: Any) -> Any:
    if isinstance(value, bytes):  # Binary included
        return bytes(value).decode("latin-1")
    if isinstance(value, list):
        return [_binary_as_plain_bytes(v) for v in value]
    if isinstance(value, dict):
        return {k: _binary_as_plain_bytes(v) for k, v in value.items()}
    return value


def _binary_compared_as_bytes(m: Mirror, leaf: dict, raw: bytes) -> bool | None:
    values = path_values(leaf, raw)
    changed = {mode: [_binary_as_plain_bytes(v) for v in vs] for mode, vs in values.items()}
    alt_leaf = _binary_as_plain_bytes(leaf)
    if alt_leaf == leaf:
        return None
    return answer_with(alt_leaf, changed)


def _dbref_never_ordered(m: Mirror, leaf: dict, raw: bytes) -> bool | None:
    spec = next(iter(leaf.values()))
    if not (isinstance(spec, dict) and len(spec) == 1 and next(iter(spec)) in ("$gt", "$gte", "$lt", "$lte")):
        return None
    rhs = next(iter(spec.values()))
    return False if isinstance(rhs, DBRef) else None


def _python_regex_classes(m: Mirror, leaf: dict, raw: bytes) -> bool | None:
    if not ("$regex" in operators(leaf) or _holds_regex(leaf)):
        return None
    with mock.patch.object(match, "_pcre_to_python", lambda pattern: pattern):
        return compile_filter(leaf).matches(raw)


def _holds_regex(spec: Any) -> bool:
    if isinstance(spec, Regex):
        return True
    if isinstance(spec, dict):
        return any(_holds_regex(v) for v in spec.values())
    return isinstance(spec, list) and any(_holds_regex(v) for v in spec)


SERVER_DEVIATIONS = [
    Deviation("missing-where-mongodb-yields-nothing",
              "a path that runs past the end of an array, or into a non-document element of one "
              "({a: [1, 2]} and 'a.5' or 'a.0.b'), yields no value in MongoDB (matcher/path.cpp: such "
              "elements are skipped; jstests/core/null_query_semantics.js: {'a.b': null} does not match "
              "{a: [1, 'string', 4]}); the server treats it as a missing field (so null, $exists:false, "
              "$lt MaxKey... match)", _missing_instead_of_nothing),
    Deviation("nested-array-expanded-at-positional-end",
              "a path ending in an array position that holds an array ('a.b.1' on {b: [1, [2]]}) yields "
              "that array whole in MongoDB (path.cpp: 'Our path terminates at the array offset'); the "
              "server also tests its elements (but not at the top level: it agrees on {a: [[1, 2]]} "
              "and 'a.0')", _expands_positional_nested_array),
    Deviation("all-not-equivalent-to-and",
              "MongoDB's manual: $all 'is equivalent to an $and operation of the specified values' "
              "(and [['A']] also matches a field equal to ['A']); the server answers $all differently "
              "from its own answer for that $and", _all_not_as_and),
    Deviation("elemMatch-skips-array-elements",
              "$elemMatch with field conditions tests every element that is a BSON object, arrays "
              "included, as documents keyed '0', '1', ... (exec/matcher ElemMatchObject uses "
              "isABSONObj; null_query_semantics.js: {a: [[]]} matches {a: {$elemMatch: {b: null}}}); "
              "the server skips array elements", _elem_match_skips_arrays),
    Deviation("mod-computes-in-doubles",
              "$mod takes an int64 dividend exactly and never matches a double beyond the int64 range "
              "(ModMatchExpression: numberLong(), representAs<long long>); the server computes in "
              "doubles", _mod_in_double),
    Deviation("elemMatch-operators-see-into-nested-arrays",
              "$elemMatch with operators tests each element of the array as it is (exec/matcher "
              "ElemMatchValue: matchesSingleElement on every element), so a nested array is one "
              "element, not its members; the server also tests the members of nested arrays",
              _elem_match_expands_nested_arrays),
    Deviation("decimal-compared-as-double",
              "numbers compare by exact value across types (compareDoubleToDecimal): Decimal128('0.1') "
              "is not the double 0.1; the server compares through doubles", _decimal_equal_to_double),
    Deviation("binary-compared-as-plain-bytes",
              "binary values compare by length, then subtype, then bytes (compareElements BinData; the "
              "manual's sort order page); the server compares the bytes alone", _binary_compared_as_bytes),
    Deviation("dbref-not-ordered",
              "a DBRef is an ordinary document to the matcher ({$ref, $id, $db}), compared field by "
              "field, so $gte/$lte hold for an equal one; the server matches it with $eq but never "
              "with $gt/$gte/$lt/$lte", _dbref_never_ordered),
    Deviation("regex-classes-are-unicode",
              "MongoDB compiles regexes with PCRE in UTF mode without UCP (util/pcre_util.cpp: "
              "flagsToOptions sets only UTF), so \\w \\d \\s \\b are ASCII classes: /^\\w+$/ does not "
              "match 'héllo'; the server uses Python's Unicode classes", _python_regex_classes),
]


# Where we knowingly differ from MongoDB (not the server's fault): pymongo decodes the deprecated
# BSON types undefined (0x06), DBPointer (0x0C) and symbol (0x0E) as null, DBRef and string, so they
# compare in those brackets here. Only the every-type document holds them, at its top level.
DEPRECATED_TYPES = {0x06, 0x0C, 0x0E}


def _holds_deprecated_type(leaf: dict, raw: bytes) -> bool:
    top = next(iter(leaf)).split(".")[0]
    return any(e.name == top and e.type in DEPRECATED_TYPES for e in elements(raw))


def explain(m: Mirror, filter_: dict, raw: bytes) -> tuple[list[str], list[dict]]:
    """The deviations that explain every differing predicate, and the predicates nothing explains."""
    _id = bson.decode(raw)["_id"]
    names, unexplained, differing = [], [], 0
    for leaf in leaves(filter_):
        try:
            server = m.server_matches(_id, leaf)
        except OperationFailure:
            continue
        ours = compile_filter(leaf).matches(raw)
        if server == ours:
            continue
        differing += 1
        if _holds_deprecated_type(leaf, raw):
            names.append("ours: deprecated type decoded by pymongo")
            continue
        for deviation in SERVER_DEVIATIONS:
            if deviation.reproduces(m, leaf, raw) == server:
                names.append(deviation.name)
                break
        else:
            unexplained.append(leaf)
    if not differing:  # every predicate agrees, yet the whole filter does not
        unexplained.append(filter_)
    return names, unexplained


def test_find_equals_the_server_on_generated_filters(mirror):
    grammar = Grammar(mirror.docs, SEED)
    stats: collections.Counter = collections.Counter()
    explained: collections.Counter = collections.Counter()
    unexplained = []
    for _ in range(FILTERS):
        f = grammar.filter()
        try:
            server = mirror.server_ids(f)
        except OperationFailure:
            with pytest.raises(QueryError):
                compile_filter(f)  # a filter the server rejects, we reject too
            stats["rejected by both"] += 1
            continue
        matcher = compile_filter(f)
        ours = {id_key(bson.decode(raw)["_id"]) for raw in mirror.docs if matcher.matches(raw)}
        stats["selected some" if server else "selected none"] += 1
        stats["documents selected"] += len(server)
        if server == ours:
            continue
        stats["filters differing"] += 1
        for key in server ^ ours:
            stats["documents differing"] += 1
            raw = next(d for d in mirror.docs if id_key(bson.decode(d)["_id"]) == key)
            names, bad = explain(mirror, f, raw)
            explained.update(names)
            unexplained += [(f, bson.decode(raw)["_id"], leaf) for leaf in bad]
    report(f"{FILTERS} filters x {len(mirror.docs)} documents (seed {SEED}): {dict(stats)}")
    report(f"differing predicates explained by known server deviations: {dict(explained)}")
    assert not unexplained, unexplained[:10]
    assert stats["selected some"] > FILTERS // 4  # the grammar reaches the documents


def test_regexes_equal_the_server(mirror):
    """Every pattern of the grammar, with and without "i", on the fields that hold non-ASCII text."""
    explained: collections.Counter = collections.Counter()
    unexplained, count = [], 0
    for path in ("a", "b", "c", "x", "1", "string"):
        for pattern in REGEXES:
            for options in ("", "i"):
                f = {path: {"$regex": pattern, "$options": options}}
                matcher = compile_filter(f)
                ours = {id_key(bson.decode(raw)["_id"]) for raw in mirror.docs if matcher.matches(raw)}
                server = mirror.server_ids(f)
                count += 1
                for key in server ^ ours:
                    raw = next(d for d in mirror.docs if id_key(bson.decode(d)["_id"]) == key)
                    names, bad = explain(mirror, f, raw)
                    explained.update(names)
                    unexplained += [(f, bson.decode(raw)["_id"]) for _ in bad]
    report(f"{count} regex filters: differing predicates explained: {dict(explained)}")
    assert not unexplained, unexplained[:10]


def test_stored_bytes_and_decoded_documents_give_the_same_answers(mirror):
    """The server rewrites deprecated types on insert (undefined, symbol, DBPointer, array keys);
    pymongo decodes them the same way, so the matcher answers alike on both, and on decoded dicts."""
    changed = set()
    for raw in mirror.docs:
        stored = mirror.stored[id_key(bson.decode(raw)["_id"])]
        ours, theirs = _elements(raw), _elements(stored)
        changed |= {name for name in ours.keys() | theirs.keys() if ours.get(name) != theirs.get(name)}
    assert changed == {"undef", "sym", "ptr", "oddkeys"}
    grammar = Grammar(mirror.docs, SEED + 1)
    decoded = [bson.decode(d) for d in mirror.docs]
    for _ in range(max(50, FILTERS // 10)):
        f = grammar.filter()
        try:
            matcher = compile_filter(f)
        except QueryError:
            continue
        on_archive = [matcher.matches(d) for d in mirror.docs]
        assert on_archive == [matcher.matches(mirror.stored[id_key(d["_id"])]) for d in decoded], f
        assert on_archive == [matcher.matches(d) for d in decoded], f


def _elements(raw: bytes) -> dict[str, bytes]:
    return {e.name: raw[e.start:e.end] for e in elements(raw)}


# MongoDB rejects these too (archiverd's own refusals -- "$where is not supported" -- and a Python set,
# which is not BSON, are left out).
REJECTED_BY_MONGODB = [(f, m) for f, m in INVALID if "not supported" not in m and "of type set" not in m]


# Invalid filters the test server accepts although MongoDB rejects them (the reason is MongoDB's).
SERVER_ACCEPTS = {
    "unknown operator: b": "an operator document may hold only operators (MatchExpressionParser: "
                           "'unknown operator')",
    "options set in both": "a regex value with flags plus $options is error 51075",
    "too many elements": "the manual's $mod page: 'Too Many Elements Error'",
    "embedded null byte": "RegexMatchExpression: 'Regular expression cannot contain an embedded null byte'",
}


@pytest.mark.parametrize("filter_, message", REJECTED_BY_MONGODB)
def test_invalid_filters_are_rejected_by_the_server_too(mirror, filter_, message):
    if message in SERVER_ACCEPTS:  # a known server deviation: it must still be one
        list(mirror.coll.find(filter_))
        return
    with pytest.raises(OperationFailure):
        list(mirror.coll.find(filter_))


# --- sorts --------------------------------------------------------------------------------------

def _lenient_sort_values(doc: Any, parts: tuple[str, ...]) -> list[Any]:
    """The server's rule: only values found along the path are keys (null if there are none), so array
    elements without the path -- scalars, documents lacking the field -- give no key."""
    out: list[Any] = []

    def walk(container: Any, i: int) -> None:
        value = container.get(parts[i], MISSING)
        if value is MISSING:
            return
        if i == len(parts) - 1:
            out.extend((value or [MISSING]) if isinstance(value, list) else [value])
        elif bracket(value) == OBJECT:
            walk(value, i + 1)
        elif isinstance(value, list):
            for element in value:
                if bracket(element) == OBJECT:
                    walk(element, i + 1)

    walk(doc, 0)
    return out or [None]


def _pick(values: list, direction: int) -> Any:
    best = values[0]
    for v in values[1:]:
        if compare(v, best) * direction < 0:
            best = v
    return best


@dataclass
class SortDeviation:
    name: str
    reason: str
    reproduces: Callable[[tuple[str, ...], int, Any, Any, Any, Any], bool]  # (parts, dir, kx, ky, dx, dy)


def _lenient_keys(parts, direction, kx, ky, dx, dy) -> bool:
    lx, ly = (_pick(_lenient_sort_values(d, parts), direction) for d in (dx, dy))
    c = compare(lx, ly) * direction
    return c < 0 or (c == 0 and compare(dx["_id"], dy["_id"]) < 0)


def _code_with_scope(parts, direction, kx, ky, dx, dy) -> bool:
    return {bracket(kx), bracket(ky)} == {CODE, CODE_SCOPE}


def _decimal_as_double(parts, direction, kx, ky, dx, dy) -> bool:
    numbers = [k for k in (kx, ky) if isinstance(k, (int, float, Decimal128)) and not isinstance(k, bool)]
    if len(numbers) != 2 or not any(isinstance(k, Decimal128) for k in numbers):
        return False
    fx, fy = (float(k.to_decimal()) if isinstance(k, Decimal128) else float(k) for k in (kx, ky))
    return fx == fy and compare(dx["_id"], dy["_id"]) < 0  # equal as doubles, so _id decides


def _binary_plain(parts, direction, kx, ky, dx, dy) -> bool:
    if not (isinstance(kx, bytes) and isinstance(ky, bytes)):
        return False
    c = ((bytes(kx) > bytes(ky)) - (bytes(kx) < bytes(ky))) * direction
    return c < 0 or (c == 0 and compare(dx["_id"], dy["_id"]) < 0)


SORT_DEVIATIONS = [
    SortDeviation("sort-ignores-array-elements-without-the-path",
                  "MongoDB sorts by index keys (SortKeyGenerator -> BtreeKeyGenerator): every element "
                  "of an array met before the end of the path gives a key -- a document lacking the "
                  "field gives null, and so does a scalar (walked as an empty document); the server "
                  "takes keys only from the values it finds", _lenient_keys),
    SortDeviation("code-with-scope-sorts-after-code",
                  "JavaScript code (canonical type 60) sorts before code with scope (65); the server "
                  "orders them together", _code_with_scope),
    SortDeviation("decimal-compared-as-double",
                  "numbers compare by exact value across types (compareDoubleToDecimal): "
                  "Decimal128('0.1') < 0.1; the server compares through doubles", _decimal_as_double),
    SortDeviation("binary-compared-as-plain-bytes",
                  "binary values sort by length, then subtype, then bytes; the server by the bytes alone",
                  _binary_plain),
]


def test_sort_equals_the_server(mirror):
    grammar = Grammar(mirror.docs, SEED)
    stats: collections.Counter = collections.Counter()
    explained: collections.Counter = collections.Counter()
    unexplained = []
    stored = [mirror.stored[id_key(bson.decode(d)["_id"])] for d in mirror.docs]
    decoded = {id_key(bson.decode(d)["_id"]): bson.decode(d) for d in stored}
    for _ in range(SORTS):
        spec = grammar.sort()
        server = [id_key(bson.decode(d.raw)["_id"]) for d in mirror.coll.find({}, {"_id": 1}, sort=spec)]
        sort = compile_sort(spec)
        ours = [id_key(bson.decode(d)["_id"]) for d in sort.sorted(stored)]
        stats["sorts"] += 1
        if server == ours:
            stats["same order"] += 1
            continue
        position = {k: i for i, k in enumerate(ours)}
        parts, direction = split(spec[0][0]), spec[0][1]
        for i, x in enumerate(server):
            for y in server[i + 1:]:
                if position[x] < position[y]:
                    continue
                stats["pairs inverted"] += 1
                dx, dy = decoded[x], decoded[y]
                kx, ky = sort.field_keys(dx)[0], sort.field_keys(dy)[0]
                for deviation in SORT_DEVIATIONS:
                    if deviation.reproduces(parts, direction, kx, ky, dx, dy):
                        explained[deviation.name] += 1
                        break
                else:
                    unexplained.append((spec, dx["_id"], dy["_id"], kx, ky))
    report(f"{SORTS} sorts x {len(stored)} documents: {dict(stats)}; explained: {dict(explained)}")
    assert not unexplained, unexplained[:10]
    assert stats["same order"] > SORTS // 2


def test_sort_on_the_date_field_equals_the_server(mirror):
    stored = [mirror.stored[id_key(bson.decode(d)["_id"])] for d in mirror.docs]
    for direction in (1, -1):
        spec = [("timestamp", direction), ("_id", 1)]
        server = [bytes(d.raw) for d in mirror.coll.find({"timestamp": {"$exists": True}}, sort=spec)]
        ours = compile_sort(spec).sorted(compile_filter({"timestamp": {"$exists": True}}).select(stored))
        assert ours == server and len(ours) > 60


# --- projections --------------------------------------------------------------------------------

def test_projection_equals_the_server_byte_for_byte(mirror):
    """Applied to the bytes the server stores (it rewrites a few deprecated types on insert, see above)."""
    grammar = Grammar(mirror.docs, SEED)
    stats: collections.Counter = collections.Counter()
    stored = [mirror.stored[id_key(bson.decode(d)["_id"])] for d in mirror.docs]
    order = compile_sort([("_id", 1)])
    for _ in range(PROJECTIONS):
        spec = grammar.projection()
        try:
            server = [bytes(d.raw) for d in mirror.coll.find({}, spec, sort=[("_id", 1)])]
        except OperationFailure:
            with pytest.raises(QueryError):
                compile_projection(spec)
            stats["rejected by both"] += 1
            continue
        projection = compile_projection(spec)
        assert [projection.apply(d) for d in order.sorted(stored)] == server, spec
        stats["identical"] += 1
    report(f"{PROJECTIONS} projections x {len(stored)} documents: {dict(stats)}")


@pytest.mark.parametrize("spec", [{"a": 1, "b": 0}, {"a": 1, "a.b": 1}, {"a": 0, "b": 1}])
def test_projection_errors_match_the_server(mirror, spec):
    with pytest.raises(OperationFailure):
        list(mirror.coll.find({}, spec))
    with pytest.raises(QueryError):
        compile_projection(spec)


def test_int64_and_code_values_survive_the_mirror(mirror):
    """Guards the premise of the comparisons above: the server keeps the types we compare on."""
    d = bson.decode(mirror.stored[id_key(bson.decode(mirror.docs[-1])["_id"])])
    assert isinstance(d["int64"], Int64) and isinstance(d["code_scope"], Code) and d["code_scope"].scope == {"x": 1}
