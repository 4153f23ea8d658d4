"""`archiverd.Archive`: the Python API behind get, find and search, across a whole archive.

    archive = archiverd.Archive("/var/lib/archiverd/archives")   # or a collection's directory
    archive.get(ObjectId("66b1f0c2e4b0a1b2c3d4e5f6"))            # the newest archived copy, as a dict
    archive.find({"final_outcome": "failure"}, start=dt.datetime(2026, 3, 1), end=dt.datetime(2026, 4, 1))
    archive.search(vector, "embeddings.output_summary_embedding", k=10)   # [(document, score), ...]

Documents come back as dicts decoded like `decode_video_to_experiences` (dates timezone-aware UTC), or
as their exact BSON bytes with `raw=True`. Every document returned has been checked against its
SHA-256 in its segment's index. Of an `_id` archived more than once (it changed after it was read and
was archived again), only the newest copy is returned unless `all_copies=True`.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import bson
import numpy as np

from . import search as vsearch
from ..format import sidecar
from ..store.catalog import Catalog, Location, SegmentInfo
from .find import Query
from .match import Filter
from ..errors import ConfigError, SegmentError
from ..format import blockcodec, index, records
from ..format.documents import DECODE_OPTIONS
from ..format.reader import LocalFile, SegmentReader, fetch_ranges, read_block, read_document
from ..service.expiry import to_ms


class Scored(NamedTuple):
    """A search result: the document and its exact cosine similarity to the query."""

    document: Any
    score: float


def collection_dir(path: Path | str, namespace: str | None = None) -> Path:
    """The collection directory of an archive: `path` itself when it holds segments or a catalog,
    else `path/<db>/<collection>` (`namespace` "db.collection", needed when there are several)."""
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"archive directory {path} does not exist")
    if namespace:
        db, _, coll = namespace.partition(".")
        return path / db / coll
    if (path / "catalog.sqlite").exists() or any(path.glob("[0-9]*/[0-9]*/[0-9]*/part-*.mkv")) \
            or any(path.glob("out-of-range/part-*.mkv")):
        return path
    found = sorted({p.parents[3] for p in path.glob("*/*/[0-9]*/[0-9]*/[0-9]*/part-*.mkv")} |
                   {p.parents[1] for p in path.glob("*/*/out-of-range/part-*.mkv")})
    if len(found) == 1:
        return found[0]
    if not found:
        return path
    names = ", ".join(f"{p.parent.name}.{p.name}" for p in found)
    raise ConfigError(f"{path} holds several collections ({names}): name one")


def _date(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, dt.datetime):
        return to_ms(value)
    raise ConfigError(f"a date range takes datetimes, not {type(value).__name__}")


class Archive:
    """One collection's archive, read through its catalog (kept in step with the disk on open)."""

    def __init__(self, archive_dir: Path | str, namespace: str | None = None) -> None:
        self.dir = collection_dir(archive_dir, namespace)
        self.catalog = Catalog(self.dir)
        self.catalog.sync()
        self._readers: dict[str, SegmentReader] = {}

    def close(self) -> None:
        self.catalog.close()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def reader(self, segment: str) -> SegmentReader:
        if segment not in self._readers:
            self._readers[segment] = SegmentReader(self.dir / segment)
        return self._readers[segment]

    def segments(self, start: Any = None, end: Any = None) -> list[SegmentInfo]:
        return self.catalog.segments(_date(start), _date(end))

    def _out(self, raw: bytes, as_raw: bool) -> Any:
        return raw if as_raw else bson.decode(raw, DECODE_OPTIONS)

    def _read(self, where: Location) -> bytes:
        return self.reader(where.segment).document(where.n)

    # -- get ----------------------------------------------------------------------------------------

    def locate(self, _id: Any) -> list[Location]:
        """Every archived copy of `_id`, newest first."""
        return self.catalog.by_id(_id)

    def get(self, _id: Any, *, raw: bool = False) -> Any:
        """The newest archived copy of the document with this `_id`, or None."""
        found = self.catalog.by_id(_id)
        return self._out(self._read(found[0]), raw) if found else None

    def get_by(self, field: str, value: Any, *, raw: bool = False, all_copies: bool = False) -> list[Any]:
        """Documents whose `field` (one of ARCHIVERD_INDEX_FIELDS, recorded at seal time) equals
        `value`; of an `_id` archived more than once, the newest copy."""
        if field not in self.catalog.indexed_fields():
            raise ConfigError(f"{field!r} is not an indexed field of this archive (ARCHIVERD_INDEX_FIELDS; "
                              f"indexed: {', '.join(sorted(self.catalog.indexed_fields())) or 'none'})")
        out, seen = [], set()
        for where in self.catalog.by_field(field, value):
            raw_doc = self._read(where)
            key = index.key_of(bson.decode(raw_doc).get("_id")) if not all_copies else where
            if key in seen:
                continue
            seen.add(key)
            out.append(self._out(raw_doc, raw))
        return out

    # -- find ---------------------------------------------------------------------------------------

    def _date_field(self) -> str | None:
        for info in self.catalog.segments():
            src = self.reader(info.path).index.get("source") or {}
            if src.get("date_field"):
                return str(src["date_field"])
        return None

    def find(self, filter: Mapping | None = None, start: Any = None, end: Any = None, *,
             projection: Mapping | None = None, sort: Any = None, limit: int | None = None,
             raw: bool = False, all_copies: bool = False) -> Iterator[Any]:
        """Documents matching `filter` (MongoDB's query language), dated in [start, end) when given
        (segments outside the range are not read), sorted, limited and projected as find does."""
        lo, hi = _date(start), _date(end)
        date_field = self._date_field()
        spec = dict(filter or {})
        if lo is not None or hi is not None:
            if date_field is None:
                raise ConfigError("this archive records no date field: --from/--to cannot be used")
            bound = {k: v for k, v in (("$gte", _bson_date(lo)), ("$lt", _bson_date(hi))) if v is not None}
            spec = {"$and": [spec, {date_field: bound}]} if spec else {date_field: bound}
        query = Query(spec, projection, sort, limit)
        return (self._out(doc, raw) for doc in query.run(self._candidates(query.filter, lo, hi, all_copies)))

    def _candidates(self, flt: Filter, lo: int | None, hi: int | None, all_copies: bool) -> Iterator[bytes]:
        for info in self.catalog.segments(lo, hi):
            reader = self.reader(info.path)
            newest = None if all_copies else set(self.catalog.newest(info.path, range(info.documents)))
            for _, raw_doc in self._matching(reader, flt, newest, need_bytes=True):
                assert raw_doc is not None
                yield raw_doc

    def _matching(self, reader: SegmentReader, flt: Filter, newest: set[int] | None,
                  need_bytes: bool) -> Iterator[tuple[int, bytes | None]]:
        """(number, exact bytes or None) of the documents of one segment that match `flt`. When the
        filter reads no embedding, each block is matched on its documents without embeddings (its
        head only: a few GOPs) and only the matches are read whole."""
        idx = reader.index
        roots = {f.split(".")[0] for f in idx.get("vector_fields", [])}
        fields = set(flt.fields or ())
        light = bool(idx["blocks"]) and "head" in idx["blocks"][0] and bool(fields) and not (fields & roots)
        if not light:
            for n, raw_doc in reader.salvage():
                if n is not None and (newest is None or n in newest) and flt.matches(raw_doc):
                    yield n, raw_doc
            if reader.last_report.lost:
                raise SegmentError(f"{reader.last_report.lost} documents of this segment cannot be read: "
                                   f"{reader.last_report.status}", str(reader.path))
            return
        first = 0
        where = str(reader.path)
        with LocalFile(reader.path) as source:
            for block in idx["blocks"]:
                numbers = range(first, first + block["documents"])
                first += block["documents"]
                if newest is not None and not any(n in newest for n in numbers):
                    continue
                (head,) = fetch_ranges(source, idx, [(block["offset"], block["head"])], where)
                skip = records.PREFIX.size + records.BLOCK_HEAD_V2.size
                try:
                    if head is None:
                        raise SegmentError("a frame of the block head is damaged")
                    skeletons = blockcodec.decode_skeletons(memoryview(head)[skip:])
                except SegmentError:  # damaged: the whole block, with parity repair
                    skeletons = read_block(source, idx, block["block"], where)
                for n, skeleton in zip(numbers, skeletons):
                    if (newest is None or n in newest) and flt.matches(skeleton):
                        yield n, read_document(source, idx, n, where) if need_bytes else None

    # -- search -------------------------------------------------------------------------------------

    def search(self, vector: Any, field: str, k: int = 10, *, start: Any = None, end: Any = None,
               filter: Mapping | None = None, raw: bool = False, confidence: float = vsearch.DEFAULT_CONFIDENCE,
               stats: vsearch.SearchStats | None = None) -> list[Scored]:
        """The k archived documents whose `field` embedding is most similar (cosine) to `vector`,
        best first, with exact scores. Each segment's vector sidecar ranks candidates; their exact
        vectors are read from the video to re-rank them (a segment without a usable sidecar is
        searched exactly)."""
        if not isinstance(k, int) or isinstance(k, bool) or not 0 < k <= 10_000:
            raise ConfigError(f"k must be an integer between 1 and 10000, not {k!r}")
        lo, hi = _date(start), _date(end)
        flt = Filter(filter) if filter else None
        sidecars: dict[str, sidecar.Sidecar] = {}
        unindexed: dict[str, int] = {}
        allowed: dict[str, np.ndarray] = {}
        fields_of: dict[str, int] = {}
        for info in self.catalog.segments(lo, hi):
            reader = self.reader(info.path)
            names = reader.index.get("vector_fields", [])
            if field not in names:
                continue
            fields_of[info.path] = names.index(field)
            try:
                sidecars[info.path] = sidecar.load(sidecar.path_for(self.dir / info.path),
                                                   reader.index["content_sha256"], info.documents)
            except SegmentError:
                unindexed[info.path] = info.documents
            mask = np.zeros(info.documents, dtype=bool)
            for n in self.catalog.newest(info.path, range(info.documents)):
                mask[n] = True
            if flt is not None or lo is not None or hi is not None:
                mask &= self._allowed(reader, flt, lo, hi)
            allowed[info.path] = mask
        if not fields_of:
            return []

        def fetch(candidates: list[tuple[Any, int]]) -> dict[tuple[Any, int], np.ndarray | None]:
            out: dict[tuple[Any, int], np.ndarray | None] = {}
            by_segment: dict[str, list[int]] = {}
            for segment, n in candidates:
                by_segment.setdefault(segment, []).append(n)
            for segment, numbers in by_segment.items():
                got = self.reader(segment).vectors([(n, fields_of[segment]) for n in numbers])
                for n in numbers:
                    out[(segment, n)] = got[(n, fields_of[segment])]
            return out

        try:
            hits = vsearch.search(vector, field, k, sidecars, fetch, unindexed=unindexed, allowed=allowed,
                                  confidence=confidence, stats=stats)
        except ValueError as exc:
            raise ConfigError(f"search: {exc}") from None
        return [Scored(self._out(self.reader(h.segment).document(h.doc), raw), h.score) for h in hits]

    def _allowed(self, reader: SegmentReader, flt: Filter | None, lo: int | None, hi: int | None) -> np.ndarray:
        """Which documents of a segment pass the date range and the filter."""
        mask = np.ones(reader.index["documents"], dtype=bool)
        if lo is not None or hi is not None:
            for n, entry in enumerate(reader.index["docs"]):
                when = entry.get("date")
                ms = to_ms(dt.datetime.fromisoformat(when)) if isinstance(when, str) else None
                mask[n] = ms is not None and (lo is None or ms >= lo) and (hi is None or ms < hi)
        if flt is not None:
            hits = {n for n, _ in self._matching(reader, flt, None, need_bytes=False)}
            for n in range(len(mask)):
                mask[n] &= n in hits
        return mask


def _bson_date(ms: int | None) -> Any:
    if ms is None:
        return None
    from ..service.expiry import bson_date
    return bson_date(ms)
