"""How a dotted path ("a.b.0.c") reaches values inside a document, by MongoDB's rules.

Matching (`values_at`) follows the query matcher's element iterator (src/mongo/db/matcher/path.cpp):

* sub-documents are entered field by field; a scalar in the middle of a path yields *missing*;
* an array in the middle of a path is entered element by element: documents continue the path, and
  when the next component is a number N (ASCII digits) the element at index N continues the path
  after N too -- so "a.0" reaches both `a[0]` and a field literally named "0" in a's documents;
  elements that are neither yield nothing at all (not even *missing*); nested arrays are entered
  only through such an index;
* an array at the end of a path yields each element and then the array itself (`traverse`), or only
  the array (for $size, $elemMatch: `traverse=False`); elements that are arrays are not expanded.

Sorting (`sort_values`) follows index-key generation instead: *missing* becomes null, an empty array
at the end of the path is `undefined` (below null), and a scalar in the middle of an array is null.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bson import DBRef
from bson.codec_options import CodecOptions, DatetimeConversion
from bson.raw_bson import RawBSONDocument

from .order import ARRAY, MISSING, OBJECT, bracket

_DOCS = (dict, RawBSONDocument)
_ARRAYS = (list, tuple)

# Lazy decoding: a document's top-level fields are decoded on first access, sub-documents only when a
# path enters them; Int64, Decimal128, Timestamp, ... stay distinct, dates outside Python's range
# come back as DatetimeMS, and a string that is not valid UTF-8 keeps its bytes (as lone surrogates)
# instead of failing the whole find.
CODEC = CodecOptions(document_class=RawBSONDocument, tz_aware=True, unicode_decode_error_handler="surrogateescape",
                     datetime_conversion=DatetimeConversion.DATETIME_AUTO)


def as_document(doc: bytes | Mapping) -> Mapping:
    """A document to walk: BSON bytes (or a RawBSONDocument) read lazily, a decoded mapping as is."""
    if isinstance(doc, (bytes, bytearray, memoryview)):
        return RawBSONDocument(bytes(doc), CODEC)
    if isinstance(doc, RawBSONDocument):
        return RawBSONDocument(doc.raw, CODEC)
    if isinstance(doc, Mapping):
        return doc
    raise TypeError(f"a document must be BSON bytes or a mapping, not {type(doc).__name__}")


def split(path: str) -> tuple[str, ...]:
    return tuple(path.split("."))


def array_index(part: str) -> int | None:
    """The array index a path component names, or None. Array keys are "0", "1", ...: a component
    with a sign or a leading zero ("01") names no element, as in MongoDB."""
    if part.isascii() and part.isdigit() and (part == "0" or part[0] != "0"):
        return int(part)
    return None


def child(container: Any, name: str) -> Any:
    """A field of a document, or an element of an array addressed by its key ("0", "1", ...)."""
    if isinstance(container, _DOCS):
        return container.get(name, MISSING)
    if isinstance(container, _ARRAYS):
        i = array_index(name)
        return container[i] if i is not None and i < len(container) else MISSING
    if isinstance(container, DBRef):
        return container.as_doc().get(name, MISSING)
    return container.get(name, MISSING)  # any other Mapping


def values_at(doc: Any, parts: tuple[str, ...], traverse: bool) -> list[Any]:
    """Every value the matcher tests for `parts` in `doc` (a document, or an array as one)."""
    if len(parts) == 1:  # the common case, without recursion
        value = child(doc, parts[0])
        if traverse and isinstance(value, _ARRAYS):
            return [*value, value]
        return [value]
    out: list[Any] = []
    _from_container(doc, parts, 0, traverse, out)
    return out


def _from_container(container: Any, parts: tuple[str, ...], i: int, traverse: bool, out: list) -> None:
    last = len(parts) - 1
    value = container
    while True:
        value = child(value, parts[i])
        b = bracket(value)
        if b == OBJECT and i < last:
            i += 1
            continue
        if b == ARRAY:
            break
        out.append(value if i == last or value is MISSING else MISSING)
        return
    if i == last:
        if traverse:
            out.extend(value)
        out.append(value)
        return
    _from_array(value, parts, i + 1, traverse, out)


def _from_array(array: Any, parts: tuple[str, ...], i: int, traverse: bool, out: list) -> None:
    """`array` sits before parts[i], which is not the last component's successor."""
    index = array_index(parts[i])
    last = i == len(parts) - 1
    for position, element in enumerate(array):
        b = bracket(element)
        if b == OBJECT:
            _from_container(element, parts, i, traverse, out)
        if position != index:
            continue
        if last:
            out.append(element)
        elif b == OBJECT:
            _from_container(element, parts, i + 1, traverse, out)
        elif b == ARRAY:
            _from_array(element, parts, i + 1, traverse, out)


def sort_values(doc: Any, parts: tuple[str, ...]) -> list[Any]:
    """The candidate sort keys of `doc` for `parts` (the smallest wins ascending, the largest descending)."""
    out: list[Any] = []
    _sort_from(doc, parts, 0, out)
    return out or [None]  # nothing along the path (an empty array before its end): null


def _sort_from(container: Any, parts: tuple[str, ...], i: int, out: list) -> None:
    value = child(container, parts[i])
    b = bracket(value)
    if i == len(parts) - 1:
        if b == ARRAY:
            out.extend(value if value else [MISSING])  # [] sorts as undefined, below null
        else:
            out.append(None if value is MISSING else value)
    elif b == OBJECT:
        _sort_from(value, parts, i + 1, out)
    elif b == ARRAY:
        for element in value:
            if bracket(element) == OBJECT:
                _sort_from(element, parts, i + 1, out)
            else:
                out.append(None)
    else:
        out.append(None)
