"""Find projections (`--projection`), applied to BSON bytes with MongoDB's rules.

* `{a: 1, "b.c": 1}` includes, `{a: 0}` excludes; the two cannot be mixed, except for `_id`, which is
  included unless `_id: 0` is given. `{}` returns whole documents.
* A dotted path descends into sub-documents and into every document in an array, also through nested
  arrays (find's policy). Including `a.b` keeps `a` as an (possibly empty) document or array of
  documents and drops scalars on the way; excluding `a.b` leaves everything else untouched.
* The output keeps the document's own field order, and every kept value is copied byte for byte.
* `a` with `a.b` is a path collision (an error since MongoDB 4.4). `$slice`, `$elemMatch`, `$meta`,
  positional `a.$` and computed fields are not supported and are refused with a QueryError.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import QueryError
from .order import BOOL, NUMBER, bracket, number
from .rawbson import ARRAY, DOCUMENT, array, document, element, elements

Tree = dict[str, Any]  # field -> True (the whole field) or a Tree for the fields below it


class Projection:
    """A compiled projection: `.apply(raw) -> raw`."""

    def __init__(self, spec: Mapping | None) -> None:
        spec = spec or {}
        if not isinstance(spec, Mapping):
            raise QueryError(f"a projection must be a document, not {type(spec).__name__}")
        self.tree: Tree = {}
        self.inclusion: bool | None = None
        id_choice: bool | None = None
        for path, value in spec.items():
            included = _flag(path, value)
            _check_path(path)
            if path == "_id":
                id_choice = included
                continue
            if self.inclusion is None:
                self.inclusion = included
            elif self.inclusion != included:
                what, kind = ("exclusion", "inclusion") if self.inclusion else ("inclusion", "exclusion")
                raise QueryError(f"Cannot do {what} on field {path} in {kind} projection")
            _add(self.tree, path)
        if self.inclusion is None:  # only _id, or nothing
            self.inclusion = bool(id_choice) if id_choice is not None else None
        if self.inclusion and id_choice is not False and "_id" not in self.tree:
            self.tree["_id"] = True
        if self.inclusion is False and id_choice is False:
            _add(self.tree, "_id")

    def apply(self, raw: bytes) -> bytes:
        raw = bytes(raw)
        if self.inclusion is None:
            return raw
        return _include(raw, self.tree) if self.inclusion else _exclude(raw, self.tree)


def compile_projection(spec: Mapping | None) -> Projection:
    return Projection(spec)


def _flag(path: Any, value: Any) -> bool:
    if not isinstance(path, str):
        raise QueryError(f"projection field names must be strings, not {path!r}")
    b = bracket(value)
    if b == BOOL:
        return bool(value)
    if b == NUMBER:
        return number(value) != 0
    if isinstance(value, Mapping) and value and next(iter(value)).startswith("$"):
        raise QueryError(f"projection operator {next(iter(value))} (field {path}) is not supported by archiverd's find")
    raise QueryError(f"projection values must be 1/true or 0/false; field {path} has {value!r:.60} "
                     "(computed fields are not supported by archiverd's find)")


def _check_path(path: str) -> None:
    for part in path.split("."):
        if not part:
            raise QueryError(f"projection path {path!r}: field names may not be empty strings")
        if part.startswith("$"):
            raise QueryError(f"projection path {path!r}: positional and $-prefixed fields are not supported")


def _add(tree: Tree, path: str) -> None:
    parts = path.split(".")
    node = tree
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        existing = node.get(part)
        if existing is True or (last and existing is not None):
            raise QueryError(f"Path collision at {path}")
        if last:
            node[part] = True
        else:
            node = node.setdefault(part, {})


def _include(raw: bytes, tree: Tree) -> bytes:
    out = []
    for e in elements(raw):
        sub = tree.get(e.name)
        if sub is True:
            out.append(raw[e.start:e.end])
        elif sub is not None and e.type in (DOCUMENT, ARRAY):
            out.append(element(e.type, e.name, _into(raw[e.value:e.end], e.type, sub, True)))
    return document(out)


def _exclude(raw: bytes, tree: Tree) -> bytes:
    out = []
    for e in elements(raw):
        sub = tree.get(e.name)
        if sub is None or (sub is not True and e.type not in (DOCUMENT, ARRAY)):
            out.append(raw[e.start:e.end])
        elif sub is not True:
            out.append(element(e.type, e.name, _into(raw[e.value:e.end], e.type, sub, False)))
    return document(out)


def _into(raw: bytes, kind: int, tree: Tree, inclusion: bool) -> bytes:
    """Apply the projection below a field to its value: a document, or an array of them."""
    if kind == DOCUMENT:
        return _include(raw, tree) if inclusion else _exclude(raw, tree)
    kept = []
    for e in elements(raw):
        if e.type in (DOCUMENT, ARRAY):
            kept.append((e.type, _into(raw[e.value:e.end], e.type, tree, inclusion)))
        elif not inclusion:
            kept.append((e.type, raw[e.value:e.end]))
    return array(kept)
