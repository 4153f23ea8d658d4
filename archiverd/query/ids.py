"""`_id` arguments of `archiverd get`: which `_id` values a piece of command-line text may mean.

`parse_id(text)` returns candidates to look up in order (the first found wins):

| text                                      | candidates                                       |
|-------------------------------------------|--------------------------------------------------|
| `66b1f0c2e4b0a1b2c3d4e5f6` (24 hex)       | ObjectId(...), then the string itself            |
| `42`, `-1.5`, `1e3` (a JSON number)       | the number, then the string itself               |
| `true`, `false`, `null`                   | the JSON value, then the string itself           |
| `{"$oid": ...}`, `{"$numberLong": ...}`,  | the Extended JSON value; a JSON object is an     |
| `{"$uuid": ...}`, `{"$binary": ...}`, ... | embedded-document `_id` (field order kept)       |
| `"quoted"`                                | the string inside the quotes                     |
| anything else                             | the text as a string                             |

A number stands for every numeric type at once (MongoDB treats 1, 1.0, Int64(1) and
Decimal128("1") as the same `_id`): look candidates up by `id_key`, which is equal exactly for the
`_id` values MongoDB's unique index considers equal.
"""
from __future__ import annotations

import re
import uuid
from typing import Any

from bson import Binary, Int64, ObjectId

from ..errors import QueryError
from .ejson import loads
from .order import ARRAY, REGEX, bracket, id_key

__all__ = ["parse_id", "id_key"]

_HEX24 = re.compile(r"[0-9a-fA-F]{24}")
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_INT32 = range(-(2 ** 31), 2 ** 31)
_INT64 = range(-(2 ** 63), 2 ** 63)


def parse_id(text: str) -> list[Any]:
    """The `_id` values `text` may name, most likely first; QueryError for malformed Extended JSON."""
    if _HEX24.fullmatch(text):
        return [ObjectId(text), text]
    if _JSON_NUMBER.fullmatch(text):
        return [_number(text), text]
    if text in ("true", "false", "null"):
        return [loads(text), text]
    if text[:1] in ("{", "[", '"'):
        try:
            value = loads(text, "it")
        except QueryError as exc:
            raise QueryError(f"cannot parse the _id {text[:60]!r}: {exc}") from None
        if isinstance(value, uuid.UUID):
            value = Binary(value.bytes, 4)
        if bracket(value) in (ARRAY, REGEX):
            raise QueryError(f"cannot parse the _id {text[:60]!r}: an _id cannot be an array or a regular "
                             "expression")
        return [value]
    return [text]


def _number(text: str) -> Any:
    if re.fullmatch(r"-?[0-9]+", text):
        n = int(text)
        if n in _INT32:
            return n
        if n in _INT64:
            return Int64(n)
    return float(text)
