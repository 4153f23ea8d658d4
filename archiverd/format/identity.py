"""When two `_id`s are the same document: exactly when MongoDB's unique `_id` index says so.

MongoDB compares `_id` values by BSON comparison: numbers by value across int32, int64, double and
decimal (1, 1.0, NumberLong(1) and NumberDecimal("1") are one `_id`; NaN equals NaN; -0.0 equals 0),
embedded documents field by field *in order* ({a: 1, b: 2} and {b: 2, a: 1} are two `_id`s), binary
values by subtype and bytes, and values of different types (the string "1" and the number 1, a
string and an ObjectId) never equal. `key()` turns a value into a string that is equal exactly when
MongoDB's values are: the journal, the guarded deletes, restore and the catalog key documents by it.
"""
from __future__ import annotations

import datetime as dt
import json
import math
import uuid
from collections.abc import Mapping
from decimal import Decimal
from fractions import Fraction
from typing import Any

from bson import Binary, Code, DBRef, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp
from bson.datetime_ms import DatetimeMS


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


def _number(value: int | float | Decimal128) -> str:
    if isinstance(value, Decimal128):
        d: Decimal | float = value.to_decimal()
    else:
        d = value
    if isinstance(d, float):
        if math.isnan(d):
            return "nan"
        if math.isinf(d):
            return "inf" if d > 0 else "-inf"
    elif isinstance(d, Decimal):
        if d.is_nan():
            return "nan"
        if d.is_infinite():
            return "inf" if d > 0 else "-inf"
    f = Fraction(d)
    return f"{f.numerator}/{f.denominator}"


def canonical(value: Any) -> Any:
    """A JSON value that is equal for two BSON values exactly when MongoDB deems them equal."""
    if isinstance(value, Code):  # a str subclass: before str
        return ["code", str(value), canonical(value.scope) if value.scope is not None else None]
    if isinstance(value, bool):
        return ["bool", value]
    if isinstance(value, (int, Int64, float, Decimal128)):
        return ["number", _number(value)]
    if isinstance(value, str):
        return ["string", value]
    if isinstance(value, ObjectId):
        return ["oid", str(value)]
    if isinstance(value, Binary):
        return ["binary", value.subtype, bytes(value).hex()]
    if isinstance(value, (bytes, bytearray)):
        return ["binary", 0, bytes(value).hex()]
    if isinstance(value, uuid.UUID):
        return ["binary", 4, value.bytes.hex()]
    if isinstance(value, DatetimeMS):
        return ["date", int(value)]
    if isinstance(value, dt.datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)
        return ["date", (aware - _EPOCH) // dt.timedelta(milliseconds=1)]
    if isinstance(value, Timestamp):
        return ["timestamp", value.time, value.inc]
    if isinstance(value, DBRef):
        return ["document", [[k, canonical(v)] for k, v in value.as_doc().items()]]
    if isinstance(value, Mapping):
        return ["document", [[str(k), canonical(v)] for k, v in value.items()]]
    if isinstance(value, (list, tuple)):
        return ["array", [canonical(v) for v in value]]
    if isinstance(value, Regex):
        return ["regex", value.pattern, value.flags]
    if value is None:
        return ["null"]
    if isinstance(value, MinKey):
        return ["minkey"]
    if isinstance(value, MaxKey):
        return ["maxkey"]
    return ["other", type(value).__name__, repr(value)]


def key(value: Any) -> str:
    return json.dumps(canonical(value), separators=(",", ":"), ensure_ascii=False)
