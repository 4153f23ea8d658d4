"""One find: filter, sort, limit and projection over a stream of BSON documents, as MongoDB runs it.

The caller (the archive's catalog) chooses which segments and days to read; `Query.run` does the
rest in MongoDB's order: match, sort, limit, then project.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Iterable, Iterator

import bson

from ..errors import QueryError
from .match import Filter
from .project import Projection
from .sort import Sort


class Query:
    """A compiled find. Every part is checked when the query is built (QueryError), none per document."""

    def __init__(self, filter: Mapping | None = None, projection: Mapping | None = None,
                 sort: Mapping | Iterable[tuple[str, Any]] | None = None, limit: int | None = None) -> None:
        if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 0):
            raise QueryError(f"limit must be a non-negative integer, not {limit!r}")
        self.filter = Filter(filter)
        self.projection = Projection(projection)
        self.sort = Sort(sort)
        self.limit = limit or None  # 0 means no limit, as in MongoDB

    def matches(self, doc: bytes | Mapping) -> bool:
        return self.filter.matches(doc)

    def run(self, docs: Iterable[bytes | Mapping]) -> Iterator[bytes]:
        """The answer as BSON bytes. Without a sort, documents stream in input order; with one, only
        the matches are held (with a limit, only `limit` of them)."""
        hits: Iterable[bytes | Mapping] = self.filter.select(docs)
        if self.sort:
            hits = self.sort.sorted(hits, self.limit)
        for n, doc in enumerate(hits):
            if self.limit is not None and n >= self.limit:
                return
            yield self.projection.apply(doc if isinstance(doc, bytes) else _encode(doc))


def _encode(doc: Any) -> bytes:
    if isinstance(doc, (bytearray, memoryview)):
        return bytes(doc)
    raw = getattr(doc, "raw", None)
    return raw if isinstance(raw, bytes) else bson.encode(doc)
