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

from bson import json_util
from bson.errors import BSONError

from .. import units
from ..errors import QueryError

OPTIONS = json_util.JSONOptions(tz_aware=True, tzinfo=dt.timezone.utc,
                                uuid_representation=json_util.UuidRepresentation.STANDARD)
_REGEX_FLAGS = set("imsux")
_INT_BITS = {"$numberInt": 32, "$numberLong": 64}
MAX_DEPTH = 200  # MongoDB's limit on a BSON value's nesting (maxBSONDepth): no document is deeper


def _hook(pairs: list[tuple[str, Any]]) -> Any:
    fields = dict(pairs)
    options = fields.get("$options")
    if "$regex" in fields and isinstance(options, str) and set(options) - _REGEX_FLAGS:
        raise QueryError(f"invalid flag in regex options: {sorted(set(options) - _REGEX_FLAGS)[0]}")
    try:
        value = json_util.object_pairs_hook(pairs, OPTIONS)
    except (BSONError, TypeError, ValueError, KeyError, ArithmeticError) as exc:
        raise QueryError(f"bad Extended JSON {json.dumps(fields, default=str)[:80]}: {exc}") from None
    for key, bits in _INT_BITS.items():  # json_util hands back any Python int: BSON has no such value
        if len(fields) == 1 and key in fields and not -(1 << bits - 1) <= value < 1 << bits - 1:
            raise QueryError(f"bad Extended JSON {json.dumps(fields)[:80]}: out of range for a {bits}-bit integer")
    return value


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


class Lines:
    """Archived documents out as lines of relaxed (or canonical) Extended JSON, as mongoexport
    writes them. JSON holds only Unicode: a string that is not valid UTF-8 is written with U+FFFD in
    place of its bad bytes (as mongoexport does), and `note` says how many documents that changed."""

    def __init__(self, canonical: bool) -> None:
        self.options = json_util.CANONICAL_JSON_OPTIONS if canonical else json_util.RELAXED_JSON_OPTIONS
        self.replaced = 0

    def document(self, raw: bytes) -> dict[str, Any]:
        from ..format.documents import shown
        doc, replaced = shown(raw)
        self.replaced += replaced
        return doc

    def dumps(self, value: Any) -> str:
        return json_util.dumps(value, json_options=self.options)

    def line(self, raw: bytes) -> str:
        return self.dumps(self.document(raw))

    def note(self) -> str | None:
        if not self.replaced:
            return None
        return (f"{units.plural(self.replaced, 'document')} with strings that are not valid UTF-8, written with U+FFFD "
                "in place of the bad bytes (their archived bytes are exact: `archiverd get --bson ID`, `archiverd restore`)")
