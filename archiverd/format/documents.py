"""Documents as the format sees them: exact BSON bytes, their `_id`, how they decode to Python."""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import bson
from bson.codec_options import CodecOptions, DatetimeConversion
from bson.raw_bson import RawBSONDocument

from . import bsonpack, index

MAX_DOCUMENT_BYTES = 16 << 20  # MongoDB's limit
# Dates come back timezone-aware in UTC; dates outside Python's range come back as DatetimeMS.
DECODE_OPTIONS: CodecOptions = CodecOptions(tz_aware=True, datetime_conversion=DatetimeConversion.DATETIME_AUTO)


def to_bson(document: Any) -> bytes:
    """The exact BSON bytes of a document given as bytes, RawBSONDocument or mapping."""
    if isinstance(document, RawBSONDocument):
        raw = bytes(document.raw)
    elif isinstance(document, (bytes, bytearray, memoryview)):
        raw = bytes(document)
    elif isinstance(document, Mapping):
        try:
            raw = bson.encode(document)
        except (bson.errors.InvalidDocument, TypeError, OverflowError) as exc:
            raise ValueError(f"document cannot be encoded as BSON: {exc}") from None
    else:
        raise TypeError(f"expected a dict, RawBSONDocument or BSON bytes, got {type(document).__name__}")
    if len(raw) < 5 or int.from_bytes(raw[:4], "little") != len(raw) or raw[-1] != 0:
        raise ValueError("not a BSON document (length prefix or terminator is wrong)")
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise ValueError(f"document of {len(raw)} bytes exceeds MongoDB's {MAX_DOCUMENT_BYTES}-byte limit")
    return raw


def id_entry(raw: bytes) -> dict[str, Any]:
    """The index entry fields for a document's `_id`: {"_id": canonical Extended JSON}, or {} when the
    document has no `_id` at all (a null `_id` is {"_id": None})."""
    element = bsonpack.top_level_element(raw, b"_id")
    if element is None:
        return {}
    return {"_id": index.id_json(bson.decode(element, DECODE_OPTIONS)["_id"])}


def date_meta(raw: bytes, date_field: str | None) -> dict[str, Any]:
    """{"date": ISO 8601} for an index entry when the document's `date_field` is a single BSON
    date inside Python's range, else {} (what the catalog uses to find documents by time)."""
    if not date_field:
        return {}
    value: Any = bson.decode(raw, DECODE_OPTIONS)
    for part in date_field.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return {}
        value = value[part]
    return {"date": value.isoformat()} if isinstance(value, dt.datetime) else {}
