"""Extended JSON: text from the command line into BSON values, with one-line errors, and archived
documents out as one line each.

Relaxed and canonical Extended JSON v2 and the legacy forms MongoDB's tools accept, as
`bson.json_util` reads them (so `{"$regex": "x", "$options": "i"}` is a regex value, as for
`mongoexport --query`) -- except that regex options MongoDB would reject are refused here instead of
being dropped silently. Dates come back timezone-aware (UTC).
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

import bson
from bson import json_util
from bson.errors import BSONError

from ..errors import QueryError

OPTIONS = json_util.JSONOptions(tz_aware=True, tzinfo=dt.timezone.utc,
                                uuid_representation=json_util.UuidRepresentation.STANDARD)
_REGEX_FLAGS = set("imsux")
MAX_DEPTH = 200  # MongoDB's limit on a BSON value's nesting (maxBSONDepth): no document is deeper


def _hook(pairs: list[tuple[str, Any]]) -> Any:
    fields = dict(pairs)
    options = fields.get("$options")
    if "$regex" in fields and isinstance(options, str) and set(options) - _REGEX_FLAGS:
        raise QueryError(f"invalid flag in regex options: {sorted(set(options) - _REGEX_FLAGS)[0]}")
    try:
        return json_util.object_pairs_hook(pairs, OPTIONS)
    except (BSONError, TypeError, ValueError, KeyError, ArithmeticError) as exc:
        raise QueryError(f"bad Extended JSON {json.dumps(fields, default=str)[:80]}: {exc}") from None


def loads(text: str, what: str = "value") -> Any:
    """Parse one Extended JSON value; QueryError naming `what` if it is not valid."""
    try:
        value = json.loads(text, object_pairs_hook=_hook)
    except json.JSONDecodeError as exc:
        raise QueryError(f"{what} is not valid JSON: {exc.msg} at character {exc.pos}") from None
    except RecursionError:
        value = None
    if value is None and text.strip() != "null" or _deeper_than(value, MAX_DEPTH):
        # a filter, projection or _id MongoDB would refuse; the matcher and the identity keys recurse
        raise QueryError(f"{what} is nested more than {MAX_DEPTH} levels deep")
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether objects and arrays nest more than `limit` levels in `value` (without recursing)."""
    level = [value]
    for _ in range(limit + 1):
        level = [v for x in level if isinstance(x, (dict, list)) for v in (x.values() if isinstance(x, dict) else x)]
        if not level:
            return False
    return True


def line(raw: bytes, canonical: bool) -> str:
    """One document's BSON as one line of relaxed (or canonical) Extended JSON, as mongoexport writes."""
    from ..format.documents import DECODE_OPTIONS
    options = json_util.CANONICAL_JSON_OPTIONS if canonical else json_util.RELAXED_JSON_OPTIONS
    return json_util.dumps(bson.decode(raw, DECODE_OPTIONS), json_options=options)
