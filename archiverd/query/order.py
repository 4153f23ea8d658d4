"""MongoDB's order of BSON values, which every comparison, `$in`, sort and `_id` lookup here follows.

Values are compared first by *type bracket* (MongoDB's canonical type: MinKey < missing/undefined <
null < numbers < strings < objects < arrays < binary < ObjectId < booleans < dates < timestamps <
regexes < DBPointer < code < code with scope < MaxKey), then within the bracket:

* numbers of every BSON type (int32, int64, double, decimal128) by exact value; NaN equals NaN and
  sorts below every other number; -0.0 equals 0;
* strings by the bytes of their UTF-8 encoding (no collation);
* objects element by element, each by bracket, then field name, then value; field order matters;
  a shorter prefix sorts first; arrays likewise by element;
* binary by length, then subtype, then bytes; ObjectIds by bytes; dates and timestamps by number;
  regexes by pattern, then flags; code by text, then scope.

Values are what `bson.decode` yields (nested documents may be `RawBSONDocument`s, decoded lazily).
pymongo decodes three deprecated types to others -- undefined to None, symbol to str, DBPointer to
DBRef -- so they compare as those (symbol and string share a bracket in MongoDB too).
"""
from __future__ import annotations

from ..format import identity

import datetime as dt
import math
import re
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Callable

from bson import Binary, Code, DBRef, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp
from bson.datetime_ms import DatetimeMS
from bson.raw_bson import RawBSONDocument
from bson.son import SON

from ..errors import QueryError


class _Missing:
    """A path that leads nowhere (BSON's EOO); sorts with `undefined`, between MinKey and null."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()

# MongoDB's canonical type numbers (bsontypes.h canonicalizeBSONType); only their order matters.
MINKEY, UNDEFINED, NULL, NUMBER, STRING, OBJECT, ARRAY, BINARY = -1, 0, 5, 10, 15, 20, 25, 30
OBJECTID, BOOL, DATE, TIMESTAMP, REGEX, DBPOINTER, CODE, CODE_SCOPE, MAXKEY = 35, 40, 45, 47, 50, 55, 60, 65, 127

_BRACKETS: dict[type, int] = {
    float: NUMBER, int: NUMBER, Int64: NUMBER, Decimal128: NUMBER, str: STRING,
    dict: OBJECT, RawBSONDocument: OBJECT, SON: OBJECT, DBRef: OBJECT, list: ARRAY, tuple: ARRAY,
    bytes: BINARY, Binary: BINARY, uuid.UUID: BINARY, ObjectId: OBJECTID, bool: BOOL,
    dt.datetime: DATE, DatetimeMS: DATE, Timestamp: TIMESTAMP, Regex: REGEX, re.Pattern: REGEX,
    type(None): NULL, MinKey: MINKEY, MaxKey: MAXKEY, _Missing: UNDEFINED,
}


def bracket(value: Any) -> int:
    """The canonical type bracket of a decoded BSON value."""
    b = _BRACKETS.get(type(value))
    if b is not None:
        return b
    if isinstance(value, Code):  # a str subclass: test before str
        return CODE if value.scope is None else CODE_SCOPE
    for kind, b in ((bool, BOOL), (int, NUMBER), (float, NUMBER), (str, STRING), (Mapping, OBJECT),
                    (list, ARRAY), (tuple, ARRAY), (bytes, BINARY), (dt.datetime, DATE)):
        if isinstance(value, kind):
            return b
    raise QueryError(f"unsupported value of type {type(value).__name__}: {value!r:.60}")


def is_document(value: Any) -> bool:
    return bracket(value) == OBJECT


def items(doc: Any) -> Any:
    """The (name, value) pairs of a document, in stored order."""
    return doc.as_doc().items() if isinstance(doc, DBRef) else doc.items()


def number(value: Any) -> int | float | Decimal:
    """A BSON number as a Python number that compares exactly with the others (int, float, Decimal)."""
    return value.to_decimal() if type(value) is Decimal128 else value


def is_nan(value: Any) -> bool:
    n = number(value)
    return n.is_nan() if isinstance(n, Decimal) else isinstance(n, float) and math.isnan(n)


_EPOCH_AWARE = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_EPOCH_NAIVE = dt.datetime(1970, 1, 1)
_MS = dt.timedelta(milliseconds=1)


def date_ms(value: Any) -> int:
    """Milliseconds since the epoch (naive datetimes are UTC, as pymongo reads and writes them)."""
    if isinstance(value, DatetimeMS):
        return int(value)
    return (value - (_EPOCH_NAIVE if value.tzinfo is None else _EPOCH_AWARE)) // _MS


def binary_parts(value: Any) -> tuple[int, bytes]:
    """(subtype, data): plain bytes are subtype 0, a UUID is subtype 4 (its standard encoding)."""
    if isinstance(value, Binary):
        return value.subtype, bytes(value)
    if isinstance(value, uuid.UUID):
        return 4, value.bytes
    return 0, bytes(value)


_FLAG_LETTERS = ((re.IGNORECASE, "i"), (re.LOCALE, "l"), (re.MULTILINE, "m"), (re.DOTALL, "s"),
                 (re.UNICODE, "u"), (re.VERBOSE, "x"))


def regex_parts(value: Any) -> tuple[str, str]:
    """(pattern, flags) as BSON stores them (flags as letters in alphabetical order, as pymongo writes)."""
    flags = value.flags
    if isinstance(flags, int):
        flags = "".join(letter for bit, letter in _FLAG_LETTERS if flags & bit)
    return value.pattern, flags


def _sign(x: Any, y: Any) -> int:
    return (x > y) - (x < y)


def _cmp_numbers(a: Any, b: Any) -> int:
    x, y = number(a), number(b)
    nan_x, nan_y = is_nan(x), is_nan(y)
    if nan_x or nan_y:
        return nan_y - nan_x  # NaN == NaN, NaN < every other number
    return _sign(x, y)


def _cmp_documents(a: Any, b: Any) -> int:
    right = iter(items(b))
    for name, value in items(a):
        other = next(right, None)
        if other is None:
            return 1
        c = _sign(bracket(value), bracket(other[1])) or _sign(name, other[0]) or compare(value, other[1])
        if c:
            return c
    return -1 if next(right, None) is not None else 0


def _cmp_arrays(a: Any, b: Any) -> int:
    for x, y in zip(a, b):
        c = compare(x, y)
        if c:
            return c
    return _sign(len(a), len(b))


def _cmp_binary(a: Any, b: Any) -> int:
    (sa, da), (sb, db) = binary_parts(a), binary_parts(b)
    return _sign((len(da), sa, da), (len(db), sb, db))


def _cmp_code_scope(a: Any, b: Any) -> int:
    return _sign(str(a), str(b)) or compare(a.scope, b.scope)


_WITHIN: dict[int, Callable[[Any, Any], int]] = {
    NUMBER: _cmp_numbers, STRING: _sign, OBJECT: _cmp_documents, ARRAY: _cmp_arrays, BINARY: _cmp_binary,
    OBJECTID: lambda a, b: _sign(a.binary, b.binary), BOOL: _sign,
    DATE: lambda a, b: _sign(date_ms(a), date_ms(b)),
    TIMESTAMP: lambda a, b: _sign((a.time, a.inc), (b.time, b.inc)),
    REGEX: lambda a, b: _sign(regex_parts(a), regex_parts(b)),
    CODE: lambda a, b: _sign(str(a), str(b)), CODE_SCOPE: _cmp_code_scope,
    MINKEY: lambda a, b: 0, UNDEFINED: lambda a, b: 0, NULL: lambda a, b: 0, MAXKEY: lambda a, b: 0,
}


def compare_within(b: int, x: Any, y: Any) -> int:
    """Compare two values already known to be in bracket `b`."""
    return _WITHIN[b](x, y)


def compare(a: Any, b: Any) -> int:
    """-1, 0 or 1 as MongoDB orders the two values (BSONElement::woCompare)."""
    ba, bb = bracket(a), bracket(b)
    if ba != bb:
        return -1 if ba < bb else 1
    return _WITHIN[ba](a, b)


# --- equality keys ------------------------------------------------------------------------------

_NAN_KEY = "NaN"


def _number_key(value: Any) -> Any:
    # int, float and Decimal hash and compare equal across types when their values are equal.
    n = number(value)
    return _NAN_KEY if is_nan(n) else n


_KEYS: dict[int, Callable[[Any], Any]] = {
    NUMBER: _number_key, STRING: lambda v: v,
    OBJECT: lambda v: tuple((name, key(x)) for name, x in items(v)),
    ARRAY: lambda v: tuple(key(x) for x in v), BINARY: binary_parts, OBJECTID: lambda v: v.binary,
    BOOL: bool, DATE: date_ms, TIMESTAMP: lambda v: (v.time, v.inc), REGEX: regex_parts,
    CODE: str, CODE_SCOPE: lambda v: (str(v), key(v.scope)),
    MINKEY: lambda v: None, UNDEFINED: lambda v: None, NULL: lambda v: None, MAXKEY: lambda v: None,
}


def key(value: Any) -> tuple:
    """A hashable key, equal for two values exactly when `compare` says they are equal."""
    b = bracket(value)
    return b, _KEYS[b](value)


def id_key(value: Any) -> str:
    """A key that is equal exactly for `_id` values MongoDB's unique `_id` index treats as the same
    (one definition for the whole archive: `archiverd.format.identity`)."""
    return identity.key(value)
