"""Sort specifications (`--sort`) with MongoDB's sort order across types.

Each field's key is taken as MongoDB takes it: a missing field sorts as null; an array sorts by its
smallest element ascending and by its largest descending; an empty array sorts below null (see
`paths.sort_values`). Keys compare by `order.compare`. Documents with equal keys keep their input
order (MongoDB leaves that order unspecified: add `_id` to the sort for a total order). Paths with an
array position ("a.0.b") are refused: MongoDB's positional key generation is not reproduced here.
"""
from __future__ import annotations

import functools
import heapq
from collections.abc import Mapping
from typing import Any, Iterable, TypeVar

from ..errors import QueryError
from .order import NUMBER, bracket, compare, number
from .paths import array_index, as_document, sort_values, split

T = TypeVar("T")


class Sort:
    """A compiled sort: `.key(doc)` is a sort key usable with `sorted`, `min`, `heapq`."""

    def __init__(self, spec: Mapping | Iterable[tuple[str, Any]] | None) -> None:
        pairs = list(spec.items() if isinstance(spec, Mapping) else spec or [])
        self.fields: list[tuple[tuple[str, ...], int]] = []
        for pair in pairs:
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and isinstance(pair[0], str)):
                raise QueryError(f"a sort must map field names to 1 or -1, not {pair!r}")
            path, direction = pair
            if bracket(direction) != NUMBER or number(direction) not in (1, -1):
                raise QueryError(f"$sort key ordering must be 1 (for ascending) or -1 (for descending): "
                                 f"{path}: {direction!r:.40}")
            if not path or "" in path.split("."):
                raise QueryError(f"sort path {path!r}: field names may not be empty strings")
            if any(array_index(part) is not None for part in path.split(".")):
                raise QueryError(f"sort path {path!r}: array positions in sort paths are not supported")
            self.fields.append((split(path), int(number(direction))))
        self._key = functools.cmp_to_key(self._compare_keys)

    def __bool__(self) -> bool:
        return bool(self.fields)

    def field_keys(self, doc: bytes | Mapping) -> tuple:
        """The value each sort field contributes for `doc`."""
        doc = as_document(doc)
        keys = []
        for parts, direction in self.fields:
            candidates = sort_values(doc, parts)
            pick = functools.reduce(lambda a, b: b if compare(b, a) * direction < 0 else a, candidates)
            keys.append(pick)
        return tuple(keys)

    def _compare_keys(self, a: tuple, b: tuple) -> int:
        for (_, direction), x, y in zip(self.fields, a, b):
            c = compare(x, y)
            if c:
                return c * direction
        return 0

    def key(self, doc: bytes | Mapping) -> Any:
        return self._key(self.field_keys(doc))

    def sorted(self, docs: Iterable[T], limit: int | None = None) -> list[T]:
        """`docs` in sort order (stable); with a limit, only the first `limit`, in bounded memory."""
        if limit:
            return heapq.nsmallest(limit, docs, key=self.key)
        return sorted(docs, key=self.key)


def compile_sort(spec: Mapping | Iterable[tuple[str, Any]] | None) -> Sort:
    return Sort(spec)
