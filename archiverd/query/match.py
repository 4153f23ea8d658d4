"""Compile a MongoDB find filter into a matcher with the server's semantics, without a server.

`compile_filter(spec)` parses the filter the way MongoDB's MatchExpressionParser does (same errors,
as QueryError) and returns a `Filter` whose `.matches(doc)` gives the answer MongoDB would give for
that document. Documents are BSON bytes or decoded mappings; bytes are read lazily
(`RawBSONDocument`), so a filter on `timestamp` never decodes the 6,144 floats of `embeddings`.

Semantics (MongoDB 8.0, src/mongo/db/matcher and exec/matcher):
* each operator on a path is tested against every value `paths.values_at` yields and matches if one
  does; `$ne`, `$nin`, `$not` and `$exists: false` negate the whole test (so `{a: {$ne: 1}}` rejects
  `{a: [1, 2]}` and accepts a missing `a`);
* `$eq $lt $lte $gt $gte` compare only within a type bracket (order.py); null equals missing
  (`$eq`, `$lte`, `$gte`, `$in` with null); MinKey/MaxKey bound everything; NaN equals only NaN;
* `$size` and `$elemMatch` look at an array as a whole; `$elemMatch` with operators tests each
  element, with fields treats each document (or array) element as a document;
* `$regex` uses PCRE's rules for `\\d \\w \\s \\b \\Z` (ASCII classes; see `_pcre_to_python`).
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import ROUND_DOWN, Decimal
from typing import Any, Callable, Iterable

from bson import Int64

from ..errors import QueryError
from .order import (ARRAY, BINARY, BOOL, CODE, CODE_SCOPE, DATE, MAXKEY, MINKEY, MISSING, NULL, NUMBER, OBJECT,
                    OBJECTID, REGEX, STRING, TIMESTAMP, binary_parts, bracket, compare_within, is_nan, key,
                    number, regex_parts)
from .paths import as_document, split, values_at

EQ, LT, LTE, GT, GTE = "$eq", "$lt", "$lte", "$gt", "$gte"
_INT64 = (-(2 ** 63), 2 ** 63 - 1)


class Op:
    """An operator on one path. `single` is MongoDB's matchesSingleElement; `test` sees every value."""

    traverse = True  # False: arrays at the end of the path are tested whole, not element by element

    def single(self, value: Any) -> bool:
        raise NotImplementedError

    def modes(self) -> set[bool]:
        return {self.traverse}

    def test(self, values: dict[bool, list]) -> bool:
        return any(self.single(v) for v in values[self.traverse])


class _Group(Op):
    """Several operators on one path: all must hold (`$all`, the body of `$not`)."""

    def __init__(self, ops: list[Op]) -> None:
        self.ops = ops

    def modes(self) -> set[bool]:
        return set().union(*(op.modes() for op in self.ops))

    def single(self, value: Any) -> bool:
        return all(op.single(value) for op in self.ops)

    def test(self, values: dict[bool, list]) -> bool:
        return all(op.test(values) for op in self.ops)


class _Not(_Group):
    def single(self, value: Any) -> bool:
        return not super().single(value)

    def test(self, values: dict[bool, list]) -> bool:
        return not super().test(values)


class _Never(Op):
    """`$all: []` matches nothing."""

    def modes(self) -> set[bool]:
        return set()

    def single(self, value: Any) -> bool:
        return False

    def test(self, values: dict[bool, list]) -> bool:
        return False


class _Compare(Op):
    """$eq, $lt, $lte, $gt, $gte (ComparisonMatchExpression)."""

    def __init__(self, kind: str, rhs: Any) -> None:
        self.kind, self.rhs, self.bracket = kind, rhs, bracket(rhs)
        self.rhs_nan = self.bracket == NUMBER and is_nan(rhs)
        self.accept = {EQ: (0,), LT: (-1,), LTE: (-1, 0), GT: (1,), GTE: (0, 1)}[kind]

    def single(self, value: Any) -> bool:
        b = bracket(value)
        if b != self.bracket:
            if self.bracket == NULL and value is MISSING:  # null stands for missing too
                return 0 in self.accept
            if self.bracket == MINKEY:
                return self.kind in (GT, GTE)
            if self.bracket == MAXKEY:
                return self.kind in (LT, LTE)
            return False
        if b == NUMBER and self.kind != EQ:
            nan = is_nan(value)
            if nan or self.rhs_nan:
                return nan and self.rhs_nan and self.kind in (LTE, GTE)
        return compare_within(b, value, self.rhs) in self.accept


class _Regex(Op):
    """$regex: matches strings by the pattern, and stored regexes equal to it."""

    def __init__(self, pattern: str, flags: str) -> None:
        bad = set(flags) - set("imsux")
        if bad:
            raise QueryError(f"invalid flag in regex options: {sorted(bad)[0]}")
        if "\x00" in pattern:
            raise QueryError("Regular expression cannot contain an embedded null byte")
        self.pattern, self.flags = pattern, flags
        py = (re.IGNORECASE if "i" in flags else 0) | (re.MULTILINE if "m" in flags else 0) | (
            re.DOTALL if "s" in flags else 0) | (re.VERBOSE if "x" in flags else 0)
        try:
            self.search = re.compile(_pcre_to_python(pattern), py).search
        except re.error as exc:
            raise QueryError(f"Regular expression is invalid (or not supported here): {exc}") from None

    def single(self, value: Any) -> bool:
        b = bracket(value)
        if b == STRING:
            return self.search(value) is not None
        return b == REGEX and regex_parts(value) == (self.pattern, self.flags)


def _regex_from_value(value: Any) -> _Regex:
    return _Regex(*regex_parts(value))


class _In(Op):
    """$in: equality to any listed value (null also matches missing), or any listed regex."""

    def __init__(self, values: Any) -> None:
        if not isinstance(values, (list, tuple)):
            raise QueryError("$in needs an array")
        self.has_null, self.keys, self.regexes = False, set(), []
        for v in values:
            if _is_operator_document(v, allow_incomplete_dbref=False):
                raise QueryError("cannot nest $ under $in")
            b = bracket(v)
            if b == REGEX:
                self.regexes.append(_regex_from_value(v))
            else:
                self.has_null |= b == NULL
                self.keys.add(key(v))

    def single(self, value: Any) -> bool:
        if value is MISSING:
            return self.has_null
        return key(value) in self.keys or any(r.single(value) for r in self.regexes)


class _Exists(Op):
    def single(self, value: Any) -> bool:
        return value is not MISSING


class _Size(Op):
    traverse = False

    def __init__(self, n: int) -> None:
        self.n = n

    def single(self, value: Any) -> bool:
        return bracket(value) == ARRAY and len(value) == self.n


# $type: BSON type numbers by alias; "number" is any numeric type.
_TYPE_ALIASES = {
    "double": 1, "string": 2, "object": 3, "array": 4, "binData": 5, "undefined": 6, "objectId": 7,
    "bool": 8, "date": 9, "null": 10, "regex": 11, "dbPointer": 12, "javascript": 13, "symbol": 14,
    "javascriptWithScope": 15, "int": 16, "timestamp": 17, "long": 18, "decimal": 19, "minKey": -1,
    "maxKey": 127,
}
_BRACKET_TYPE = {STRING: 2, OBJECT: 3, ARRAY: 4, BINARY: 5, OBJECTID: 7, BOOL: 8, DATE: 9, NULL: 10, REGEX: 11,
                 TIMESTAMP: 17, CODE: 13, CODE_SCOPE: 15, MINKEY: -1, MAXKEY: 127}


def bson_type(value: Any) -> int | None:
    """The BSON type number of a decoded value (None for missing)."""
    if value is MISSING:
        return None
    b = bracket(value)
    if b != NUMBER:
        return _BRACKET_TYPE[b]
    if isinstance(value, float):
        return 1
    if isinstance(value, Int64):
        return 18
    if isinstance(value, int):
        return 16 if -(2 ** 31) <= value < 2 ** 31 else 18
    return 19


class _Type(Op):
    def __init__(self, spec: Any) -> None:
        specs = spec if isinstance(spec, (list, tuple)) else [spec]
        self.types: set[int] = set()
        for s in specs:
            if isinstance(s, str):
                if s == "number":
                    self.types |= {1, 16, 18, 19}
                elif s in _TYPE_ALIASES:
                    self.types.add(_TYPE_ALIASES[s])
                else:
                    raise QueryError(f"Unknown type name alias: {s}")
            elif bracket(s) == NUMBER:
                code = _integer(s, "$type")
                if code not in _TYPE_ALIASES.values():
                    raise QueryError(f"Invalid numerical type code: {s}")
                self.types.add(code)
            else:
                raise QueryError("type must be represented as a number or a string")
        if not self.types:
            raise QueryError("$type must match at least one type")

    def single(self, value: Any) -> bool:
        return bson_type(value) in self.types


def _to_int64(value: Any) -> int | None:
    """A number truncated toward zero, if it is finite and fits in int64 (else None)."""
    n = number(value)
    if isinstance(n, float):
        if not math.isfinite(n):
            return None
        n = int(n)
    elif isinstance(n, Decimal):
        if not n.is_finite():
            return None
        n = int(n.to_integral_value(rounding=ROUND_DOWN))
    return n if _INT64[0] <= n <= _INT64[1] else None


class _Mod(Op):
    def __init__(self, spec: Any) -> None:
        if not isinstance(spec, (list, tuple)):
            raise QueryError("malformed mod, needs to be an array")
        if len(spec) < 2:
            raise QueryError("malformed mod, not enough elements")
        if len(spec) > 2:
            raise QueryError("malformed mod, too many elements")
        args = []
        for what, v in zip(("divisor", "remainder"), spec):
            if bracket(v) != NUMBER:
                raise QueryError(f"malformed mod, {what} not a number")
            n = _to_int64(v)
            if n is None:
                raise QueryError(f"malformed mod, {what} value is invalid: {v!r}")
            args.append(n)
        self.divisor, self.remainder = args
        if self.divisor == 0:
            raise QueryError("divisor cannot be 0")

    def single(self, value: Any) -> bool:
        if bracket(value) != NUMBER:
            return False
        n = _to_int64(value)
        if n is None:
            return False
        r = abs(n) % abs(self.divisor)  # C++ %: the remainder takes the dividend's sign
        return (-r if n < 0 else r) == self.remainder


class _Bits(Op):
    """$bitsAllSet / $bitsAllClear / $bitsAnySet / $bitsAnyClear on integers (two's complement) and binary."""

    def __init__(self, kind: str, spec: Any) -> None:
        self.kind = kind
        b = bracket(spec)
        if b == ARRAY:
            self.positions = []
            for p in spec:
                if bracket(p) != NUMBER:
                    raise QueryError(f"bit positions must be an integer but got: {p!r}")
                n = _integer(p, kind)
                if not 0 <= n < 2 ** 31:
                    raise QueryError(f"bit positions must be >= 0 but got: {p!r}")
                self.positions.append(n)
        elif b == NUMBER:
            mask = _integer(spec, kind)
            if mask < 0:
                raise QueryError(f"Expected a positive number in: {kind}: {spec!r}")
            self.positions = [i for i in range(64) if mask >> i & 1]
        elif b == BINARY:
            data = bytes(spec)
            self.positions = [8 * i + j for i, byte in enumerate(data) for j in range(8) if byte >> j & 1]
        else:
            raise QueryError(f"{kind} takes an Array, a number, or a BinData but received: {spec!r}")
        self.mask = 0
        for p in self.positions:
            self.mask |= 1 << min(p, 63)

    def _bits(self, set_bits: int, total: int) -> bool:
        """The verdict from how many of the `total` tested bits are set."""
        if self.kind == "$bitsAllSet":
            return set_bits == total
        if self.kind == "$bitsAllClear":
            return set_bits == 0
        if self.kind == "$bitsAnySet":
            return set_bits > 0
        return set_bits < total

    def single(self, value: Any) -> bool:
        b = bracket(value)
        if b == BINARY:
            data = binary_parts(value)[1]
            hits = sum(1 for p in self.positions if p < 8 * len(data) and data[p // 8] >> (p % 8) & 1)
            return self._bits(hits, len(self.positions))
        if b != NUMBER:
            return False
        n = number(value)
        if isinstance(n, (float, Decimal)) and (not math.isfinite(n) or n != int(n)):
            return False  # NaN, infinities and fractions never match
        if not _INT64[0] <= n <= _INT64[1]:
            return False
        word = int(n) & (2 ** 64 - 1)
        return self._bits(bin(word & self.mask).count("1"), bin(self.mask).count("1"))


class _ElemMatchValue(Op):
    traverse = False

    def __init__(self, ops: list[Op]) -> None:
        self.ops = ops

    def single(self, value: Any) -> bool:
        return bracket(value) == ARRAY and any(all(op.single(e) for op in self.ops) for e in value)


class _ElemMatchObject(Op):
    traverse = False

    def __init__(self, node: "Node") -> None:
        self.node = node

    def single(self, value: Any) -> bool:
        return bracket(value) == ARRAY and any(
            bracket(e) in (OBJECT, ARRAY) and self.node.matches(e) for e in value)


# --- document-level nodes ------------------------------------------------------------------------

Node = Any  # anything with matches(doc) -> bool


class _Field:
    def __init__(self, path: str, ops: list[Op]) -> None:
        self.parts, self.ops = split(path), ops
        self.modes = set().union(*(op.modes() for op in ops))

    def matches(self, doc: Any) -> bool:
        values = {mode: values_at(doc, self.parts, mode) for mode in self.modes}
        return all(op.test(values) for op in self.ops)


class _And:
    def __init__(self, children: list[Node]) -> None:
        self.children = children

    def matches(self, doc: Any) -> bool:
        return all(c.matches(doc) for c in self.children)


class _Or(_And):
    def matches(self, doc: Any) -> bool:
        return any(c.matches(doc) for c in self.children)


class _Nor(_And):
    def matches(self, doc: Any) -> bool:
        return not any(c.matches(doc) for c in self.children)


class _Constant:
    def __init__(self, answer: bool) -> None:
        self.answer = answer

    def matches(self, doc: Any) -> bool:
        return self.answer


# --- parsing -------------------------------------------------------------------------------------

_UNSUPPORTED = {"$where", "$expr", "$text", "$jsonSchema", "$near", "$nearSphere", "$geoWithin",
                "$geoIntersects", "$within", "$geoNear", "$sampleRate"}
_OPERATORS = {EQ, LT, LTE, GT, GTE, "$ne", "$in", "$nin", "$exists", "$type", "$size", "$mod", "$regex",
              "$options", "$elemMatch", "$all", "$not", "$bitsAllSet", "$bitsAllClear", "$bitsAnySet",
              "$bitsAnyClear"} | _UNSUPPORTED


def _integer(value: Any, what: str) -> int:
    """An integral number argument (MongoDB's parseIntegerElementToLong)."""
    if is_nan(value):
        raise QueryError(f"{what}: expected an integer, but found NaN")
    n = number(value)
    if isinstance(n, (float, Decimal)) and (not math.isfinite(n) or n != int(n)):
        raise QueryError(f"{what}: expected an integer: {value!r}")
    n = int(n)
    if not _INT64[0] <= n <= _INT64[1]:
        raise QueryError(f"{what}: cannot represent as a 64-bit integer: {value!r}")
    return n


def _is_operator_document(value: Any, allow_incomplete_dbref: bool) -> bool:
    """MongoDB's isExpressionDocument: a non-empty object whose first field starts with '$', not a DBRef."""
    if not isinstance(value, Mapping) or not value:
        return False
    if not next(iter(value)).startswith("$"):
        return False
    names = set(value)
    if allow_incomplete_dbref:
        return not names & {"$ref", "$id", "$db"}
    return not {"$ref", "$id"} <= names


def _truthy(value: Any) -> bool:
    """BSONElement::trueValue: false for false, null, missing and numeric zero; true otherwise."""
    b = bracket(value)
    if b == NUMBER:
        return not (number(value) == 0)
    return bool(value) if b == BOOL else b != NULL


def _size(value: Any) -> int:
    if bracket(value) != NUMBER:
        raise QueryError("$size needs a number")
    if is_nan(value) or number(value) != int(number(value)):
        raise QueryError("$size must be a whole number")
    n = int(number(value))
    if n < 0:
        raise QueryError("$size may not be negative")
    if n >= 2 ** 31:
        raise QueryError("$size must be representable as a 32-bit integer")
    return n


def _parse_regex_document(operators: Mapping) -> _Regex:
    """{$regex: ..., $options: ...} (in either order)."""
    pattern, flags = operators["$regex"], ""
    if bracket(pattern) == REGEX:
        pattern, flags = regex_parts(pattern)
    elif not isinstance(pattern, str) or bracket(pattern) != STRING:
        raise QueryError("$regex has to be a string")
    if "$options" in operators:
        options = operators["$options"]
        if not isinstance(options, str):
            raise QueryError("$options has to be a string")
        if flags and options:
            raise QueryError("options set in both $regex and $options")
        flags = flags or options
    return _Regex(pattern, flags)


def _parse_operator(name: str, arg: Any, operators: Mapping) -> Op | None:
    """One `$op: arg` of an operator document; None for `$options` (handled with `$regex`)."""
    if name in (EQ, LT, LTE, GT, GTE):
        if name != EQ and bracket(arg) == REGEX:
            raise QueryError(f"Can't have RegEx as arg to predicate over field with {name}")
        return _Compare(name, arg)
    if name == "$ne":
        if bracket(arg) == REGEX:
            raise QueryError("Can't have regex as arg to $ne.")
        return _Not([_parse_operator(EQ, arg, operators)])
    if name == "$in":
        return _In(arg)
    if name == "$nin":
        if not isinstance(arg, (list, tuple)):
            raise QueryError("$nin needs an array")
        return _Not([_In(arg)])
    if name == "$exists":
        return _Exists() if _truthy(arg) else _Not([_Exists()])
    if name == "$type":
        return _Type(arg)
    if name == "$size":
        return _Size(_size(arg))
    if name == "$mod":
        return _Mod(arg)
    if name == "$regex":
        return _parse_regex_document(operators)
    if name == "$options":
        if "$regex" not in operators:
            raise QueryError("$options needs a $regex")
        return None
    if name == "$elemMatch":
        return _parse_elem_match(arg)
    if name == "$all":
        return _parse_all(arg)
    if name == "$not":
        return _parse_not(arg)
    if name in ("$bitsAllSet", "$bitsAllClear", "$bitsAnySet", "$bitsAnyClear"):
        return _Bits(name, arg)
    if name in _UNSUPPORTED:
        raise QueryError(f"{name} is not supported by archiverd's find")
    raise QueryError(f"unknown operator: {name}")


def _parse_operators(operators: Mapping) -> list[Op]:
    ops = []
    for name, arg in operators.items():
        op = _parse_operator(name, arg, operators)
        if op is not None:
            ops.append(op)
    return ops


def _parse_not(arg: Any) -> Op:
    if bracket(arg) == REGEX:
        return _Not([_regex_from_value(arg)])
    if not isinstance(arg, Mapping):
        raise QueryError("$not needs a regex or a document")
    if not arg:
        raise QueryError("$not cannot be empty")
    return _Not(_parse_operators(arg))


def _parse_elem_match(arg: Any) -> Op:
    if not isinstance(arg, Mapping):
        raise QueryError("$elemMatch needs an Object")
    if _is_operator_document(arg, allow_incomplete_dbref=True) and next(iter(arg)) not in _PATHLESS:
        return _ElemMatchValue(_parse_operators(arg))
    return _ElemMatchObject(_parse_document(arg))


def _parse_all(arg: Any) -> Op:
    if not isinstance(arg, (list, tuple)):
        raise QueryError("$all needs an array")
    first = arg[0] if arg else None
    if isinstance(first, Mapping) and first and next(iter(first)) == "$elemMatch":
        ops = []
        for e in arg:
            if not isinstance(e, Mapping) or not e or next(iter(e)) != "$elemMatch":
                raise QueryError("$all/$elemMatch has to be consistent")
            ops.append(_parse_elem_match(e["$elemMatch"]))
        return _Group(ops)
    ops = []
    for e in arg:
        if bracket(e) == REGEX:
            ops.append(_regex_from_value(e))
        elif isinstance(e, Mapping) and e and next(iter(e)) in _OPERATORS:
            raise QueryError("no $ expressions in $all")
        else:
            ops.append(_parse_operator(EQ, e, {}))
    return _Group(ops) if ops else _Never()


def _parse_tree(name: str, arg: Any) -> Node:
    if not isinstance(arg, (list, tuple)):
        raise QueryError(f"{name} must be an array")
    if not arg:
        raise QueryError("$and/$or/$nor must be a nonempty array")
    children = []
    for e in arg:
        if not isinstance(e, Mapping):
            raise QueryError("$or/$and/$nor entries need to be full objects")
        children.append(_parse_document(e))
    return {"$and": _And, "$or": _Or, "$nor": _Nor}[name](children)


def _parse_always(name: str, arg: Any) -> Node:
    if bracket(arg) != NUMBER or _integer(arg, name) != 1:
        raise QueryError(f"{name} must be an integer value of 1")
    return _Constant(name == "$alwaysTrue")


def _parse_comment(name: str, arg: Any) -> None:
    return None


def _parse_dbref_field(name: str, arg: Any) -> Node:
    return _Field(name, [_parse_operator(EQ, arg, {})])


_PATHLESS: dict[str, Callable[[str, Any], Node | None] | None] = {
    "$and": _parse_tree, "$or": _parse_tree, "$nor": _parse_tree, "$comment": _parse_comment,
    "$alwaysTrue": _parse_always, "$alwaysFalse": _parse_always,
    "$id": _parse_dbref_field, "$ref": _parse_dbref_field, "$db": _parse_dbref_field,
    **{name: None for name in ("$where", "$expr", "$text", "$jsonSchema", "$sampleRate")},
}


def _parse_document(spec: Mapping) -> Node:
    children: list[Node] = []
    for name, arg in spec.items():
        if not isinstance(name, str):
            raise QueryError(f"field names must be strings, not {name!r}")
        if name.startswith("$"):
            if name not in _PATHLESS:
                raise QueryError(f"unknown top level operator: {name}")
            parse = _PATHLESS[name]
            if parse is None:
                raise QueryError(f"{name} is not supported by archiverd's find")
            node = parse(name, arg)
            if node is not None:
                children.append(node)
        elif _is_operator_document(arg, allow_incomplete_dbref=False):
            children.append(_Field(name, _parse_operators(arg)))
        elif bracket(arg) == REGEX:
            children.append(_Field(name, [_regex_from_value(arg)]))
        else:
            children.append(_Field(name, [_parse_operator(EQ, arg, {})]))
    return children[0] if len(children) == 1 else _And(children)


class Filter:
    """A compiled filter: `.matches(doc)` for BSON bytes, a RawBSONDocument or a decoded mapping."""

    def __init__(self, spec: Mapping | None) -> None:
        if spec is None:
            spec = {}
        if not isinstance(spec, Mapping):
            raise QueryError(f"a filter must be a document, not {type(spec).__name__}")
        self.spec = spec
        self.root = _parse_document(spec)
        self.fields = frozenset(_top_fields(self.root))

    def matches(self, doc: bytes | Mapping) -> bool:
        return self.root.matches(as_document(doc))

    def select(self, docs: Iterable[bytes | Mapping]) -> Iterable[bytes | Mapping]:
        return (d for d in docs if self.root.matches(as_document(d)))


def _top_fields(node: Node) -> Iterable[str]:
    """The top-level fields a filter reads (to know, e.g., whether it ever needs `embeddings`)."""
    if isinstance(node, _Field):
        yield node.parts[0]
    for child in getattr(node, "children", ()):
        yield from _top_fields(child)


def compile_filter(spec: Mapping | None) -> Filter:
    """Parse a find filter (a dict, as bson.json_util.loads gives it); QueryError if MongoDB would reject it."""
    return Filter(spec)


# --- PCRE -> Python regular expressions ----------------------------------------------------------

_WORD, _DIGIT, _SPACE = "0-9A-Za-z_", "0-9", "\\t\\n\\x0b\\x0c\\r "
_OUTSIDE = {"d": f"[{_DIGIT}]", "D": f"[^{_DIGIT}]", "w": f"[{_WORD}]", "W": f"[^{_WORD}]",
            "s": f"[{_SPACE}]", "S": f"[^{_SPACE}]", "Z": "(?=\\n?\\Z)", "z": "\\Z",
            "b": f"(?:(?<=[{_WORD}])(?![{_WORD}])|(?<![{_WORD}])(?=[{_WORD}]))",
            "B": f"(?:(?<=[{_WORD}])(?=[{_WORD}])|(?<![{_WORD}])(?![{_WORD}]))"}
_INSIDE = {"d": _DIGIT, "w": _WORD, "s": _SPACE}


def _pcre_to_python(pattern: str) -> str:
    """MongoDB compiles regexes with PCRE in UTF mode without UCP: \\d \\w \\s \\b are ASCII-only while
    case folding is Unicode. Python's classes are Unicode, so they are spelled out here; \\Z and \\z
    get PCRE's meaning. Negated classes inside brackets ([\\W]) keep Python's Unicode meaning."""
    out, i, in_class, class_start = [], 0, False, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            e = pattern[i + 1]
            out.append((_INSIDE if in_class else _OUTSIDE).get(e, c + e))
            class_start = False
            i += 2
            continue
        if in_class:
            if c == "]" and not class_start:
                in_class = False
            class_start = class_start and c == "^"
        elif c == "[":
            in_class, class_start = True, True
        out.append(c)
        i += 1
    return "".join(out)
