"""Documents as the format sees them: exact BSON bytes, their `_id`, how they decode to Python."""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

import bson
from bson.codec_options import CodecOptions, DatetimeConversion
from bson.raw_bson import RawBSONDocument

from . import bsonpack, index
from ..errors import ArchiverdError

MAX_DOCUMENT_BYTES = 16 << 20  # MongoDB's limit
# Dates come back timezone-aware in UTC; dates outside Python's range come back as DatetimeMS.
DECODE_OPTIONS: CodecOptions = CodecOptions(tz_aware=True, datetime_conversion=DatetimeConversion.DATETIME_AUTO)
# MongoDB keeps the bytes a client sent, so a string may not be valid UTF-8; output shows it with U+FFFD.
_SHOWN_OPTIONS: CodecOptions = DECODE_OPTIONS.with_options(unicode_decode_error_handler="replace")


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


def decoded(raw: bytes, what: str) -> dict[str, Any]:
    """The document as a Python dict. A string that is not valid UTF-8 cannot be a Python str: that
    is an error naming `what`, never a changed value (its exact bytes: `raw=True`, `SegmentReader`)."""
    try:
        return bson.decode(raw, DECODE_OPTIONS)
    except bson.errors.InvalidBSON as exc:
        raise ArchiverdError(f"{what} cannot be decoded into Python values ({exc}); it is archived intact: "
                             "read its exact BSON bytes instead (raw=True, or iterate archiverd.SegmentReader)") from None


def shown(raw: bytes) -> tuple[dict[str, Any], bool]:
    """The document as Python values to print, and whether a string in it is not valid UTF-8 and is
    shown with U+FFFD in place of its bad bytes (as mongoexport does; the archived bytes stay exact:
    `get --bson`, `restore`)."""
    try:
        return bson.decode(raw, DECODE_OPTIONS), False
    except bson.errors.InvalidBSON:
        return bson.decode(raw, _SHOWN_OPTIONS), True


def id_entry(raw: bytes) -> dict[str, Any]:
    """The index entry fields for a document's `_id`: {"_id": canonical Extended JSON}, or {} when the
    document has no `_id` at all (a null `_id` is {"_id": None})."""
    element = bsonpack.top_level_element(raw, b"_id")
    if element is None:
        return {}
    try:
        return {"_id": index.id_json(bson.decode(element, DECODE_OPTIONS)["_id"])}
    except bson.errors.InvalidBSON as exc:  # e.g. a string that is not valid UTF-8
        raise ValueError(f"the document's _id cannot be decoded: {exc}") from None


def date_meta(raw: bytes, date_field: str | None) -> dict[str, Any]:
    """{"date": ISO 8601} for an index entry when the document's `date_field` is a single BSON
    date inside Python's range, else {} (what the catalog uses to find documents by time)."""
    if not date_field:
        return {}
    _, value = field_value(raw, date_field)
    return {"date": value.isoformat()} if isinstance(value, dt.datetime) else {}


_LAZY = CodecOptions(document_class=RawBSONDocument, tz_aware=True,
                     datetime_conversion=DatetimeConversion.DATETIME_AUTO)


def field_value(raw: bytes, path: str) -> tuple[bool, Any]:
    """(found, value) of a dotted path through sub-documents (not arrays), decoding only the
    elements the path passes through; (False, None) when a value on the way cannot be decoded."""
    first, _, rest = path.partition(".")
    element = bsonpack.top_level_element(raw if isinstance(raw, bytes) else bytes(raw), first.encode("utf-8", "surrogatepass"))
    if element is None:
        return False, None
    try:
        value: Any = bson.decode(element, _LAZY)[first]
        for part in rest.split(".") if rest else ():
            if not isinstance(value, Mapping) or part not in value:
                return False, None
            value = value[part]
    except (bson.errors.BSONError, ValueError, OverflowError):
        return False, None
    return True, value


def header_meta(raw: bytes, header: Mapping[str, Any]) -> dict[str, Any]:
    """What the daemon's index records of a document beyond its `_id` (its date and indexed
    fields), from the source a segment's `SHDR` record names: for an index rebuilt from the video."""
    src = header.get("source") if isinstance(header.get("source"), dict) else {}
    names = src.get("index_fields")
    return date_meta(raw, src.get("date_field")) | fields_meta(
        raw, [n for n in names if isinstance(n, str)] if isinstance(names, list) else None)


def fields_meta(raw: bytes, names: tuple[str, ...] | list[str] | None) -> dict[str, Any]:
    """{"fields": {name: canonical Extended JSON}} of the indexed fields (ARCHIVERD_INDEX_FIELDS) a
    document has, for its index entry (what `get --by` and the catalog look documents up by), or {}."""
    out = {}
    for name in names or ():
        found, value = field_value(raw, name)
        if found:
            out[name] = index.id_json(value)
    return {"fields": out} if out else {}
