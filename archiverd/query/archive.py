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
import hashlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..errors import ConfigError, EncryptionKeyError, SegmentError
from ..format import blockcodec, encryption, index, records, sidecar
from ..format.documents import decoded, field_value
from ..format.reader import SegmentReader, fetch_ranges
from ..service.expiry import bson_date, to_ms
from ..store import objects
from ..store.catalog import Catalog, Location, SegmentInfo
from . import search as vsearch
from .find import Query
from .match import Filter


DEFAULT_CACHE_BYTES = 256 << 20  # decoded blocks kept for the next query (they cost video decoding)
# a block is decoded whole when at least 1/WHOLE_BLOCK_SHARE of its documents match: reading one
# document (its block's head and its own sections) costs about 1/9 of decoding its whole block of
# 50 EAT documents (measured: 63 ms against 565 ms), so the two break even near 1/5.5 of the block
WHOLE_BLOCK_SHARE = 6


class _Cache:
    """Decoded blocks (lists of BSON bytes), least recently used dropped first, bounded in bytes."""

    def __init__(self, limit: int) -> None:
        self.limit, self.size = limit, 0
        self.items: OrderedDict[tuple[str, int, str], list[bytes]] = OrderedDict()

    def peek(self, key: tuple[str, int, str]) -> list[bytes] | None:
        return self.items.get(key)

    def get(self, key: tuple[str, int, str], make: Callable[[], list[bytes]]) -> list[bytes]:
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        value = make()
        cost = sum(map(len, value))
        if cost <= self.limit:
            self.items[key] = value
            self.size += cost
            while self.size > self.limit:
                _, dropped = self.items.popitem(last=False)
                self.size -= sum(map(len, dropped))
        return value


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
    if (path / Catalog.FILE).exists() or any(path.glob("[0-9]*/[0-9]*/[0-9]*/part-*.mkv")) \
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


def date_range(filter: Mapping | None, start: Any, end: Any, date_field: Callable[[], str | None]) -> dict[str, Any]:
    """`filter` narrowed to documents whose date field (asked for only when a bound is given) lies
    in [start, end)."""
    lo, hi = _date(start), _date(end)
    spec = dict(filter or {})
    if lo is None and hi is None:
        return spec
    name = date_field()
    if name is None:
        raise ConfigError("these segments record no date field: a date range cannot be used")
    bound = {op: bson_date(ms) for op, ms in (("$gte", lo), ("$lt", hi)) if ms is not None}
    return {"$and": [spec, {name: bound}]} if spec else {name: bound}


class Archive:
    """One collection's archive, read through its catalog (kept in step with the disk on open)."""

    def __init__(self, archive_dir: Path | str, namespace: str | None = None, *,
                 cache_bytes: int = DEFAULT_CACHE_BYTES, store: objects.Store | None = None) -> None:
        # with `store` (an s3:// archive) the segments are read from it, by ranged GETs, and
        # `archive_dir` is the collection's local directory, where its catalog is kept
        self.store = store
        self.dir = Path(archive_dir) if store is not None else collection_dir(archive_dir, namespace)
        self.catalog = Catalog.for_reading(self.dir, store)
        if self.catalog.locked:  # never a silently partial answer
            self.catalog.close()
            raise EncryptionKeyError(f"{len(self.catalog.locked)} segments of this archive are encrypted (e.g. "
                                     f"{self.catalog.locked[0]}): set ARCHIVERD_ENCRYPTION_KEY_FILE to read them")
        self.catalog.refuse_partial()
        self._readers: dict[str, SegmentReader] = {}
        self._cache = _Cache(cache_bytes)

    def close(self) -> None:
        self.catalog.close()

    def __enter__(self) -> Archive:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def reader(self, segment: str) -> SegmentReader:
        if segment not in self._readers:
            self._readers[segment] = SegmentReader(self.dir / segment) if self.store is None \
                else self.store.reader(segment)
        return self._readers[segment]

    def segments(self, start: Any = None, end: Any = None) -> list[SegmentInfo]:
        return self.catalog.segments(_date(start), _date(end))

    def _out(self, raw: bytes, as_raw: bool) -> Any:
        return raw if as_raw else decoded(raw, "an archived document")

    def _read(self, where: Location) -> bytes:
        return self._document(self.reader(where.segment), where.n)

    # -- get ----------------------------------------------------------------------------------------

    def locate(self, _id: Any) -> list[Location]:
        """Every archived copy of `_id`, newest first."""
        return self.catalog.by_id(_id)

    def get(self, _id: Any, *, raw: bool = False) -> Any:
        """The newest archived copy of the document with this `_id`, or None."""
        found = self.catalog.by_id(_id)
        return self._out(self._read(found[0]), raw) if found else None

    def get_all(self, _id: Any, *, raw: bool = False) -> list[Any]:
        """Every archived copy of the document with this `_id`, newest first."""
        return [self._out(self._read(where), raw) for where in self.catalog.by_id(_id)]

    def get_by(self, field: str, value: Any, *, raw: bool = False, all_copies: bool = False) -> list[Any]:
        """Documents whose `field` (one of ARCHIVERD_INDEX_FIELDS, recorded at seal time) equals
        `value`; of an `_id` archived more than once, the newest copy."""
        if field not in self.catalog.indexed_fields():
            raise ConfigError(f"{field!r} is not an indexed field of this archive (ARCHIVERD_INDEX_FIELDS; "
                              f"indexed: {', '.join(sorted(self.catalog.indexed_fields())) or 'none'})")
        out, seen = [], set()
        for where in self.catalog.by_field(field, value):
            raw_doc = self._read(where)
            key = index.key_of(field_value(raw_doc, "_id")[1]) if not all_copies else where
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

    def date_range(self, filter: Mapping | None, start: Any, end: Any) -> dict[str, Any]:
        """`filter` narrowed to documents whose date field lies in [start, end)."""
        return date_range(filter, start, end, self._date_field)

    def find(self, filter: Mapping | None = None, start: Any = None, end: Any = None, *,
             projection: Mapping | None = None, sort: Any = None, limit: int | None = None,
             raw: bool = False, all_copies: bool = False,
             on_damage: Callable[[str], None] | None = None) -> Iterator[Any]:
        """Documents matching `filter` (MongoDB's query language), dated in [start, end) when given
        (segments outside the range are not read), sorted, limited and projected as find does.

        A document that cannot be read (a segment damaged beyond what parity repairs) raises
        SegmentError, unless `on_damage` is given: then it is told what was lost and the others come."""
        query = Query(self.date_range(filter, start, end), projection, sort, limit)
        found = self._candidates(query.filter, _date(start), _date(end), all_copies, on_damage)
        return (self._out(doc, raw) for doc in query.run(found))

    def count(self, filter: Mapping | None = None, start: Any = None, end: Any = None, *,
              all_copies: bool = False, on_damage: Callable[[str], None] | None = None) -> int:
        """How many documents `find` would return; without a filter, from the catalog alone."""
        if not filter:
            lo, hi = _date(start), _date(end)
            if self._date_field() is not None or (lo is None and hi is None):
                counted = self.catalog.count(lo, hi, newest_only=not all_copies)
                if counted is not None:
                    return counted
        return sum(1 for _ in self._candidates(Query(self.date_range(filter, start, end)).filter, _date(start),
                                                _date(end), all_copies, on_damage))

    def _candidates(self, flt: Filter, lo: int | None, hi: int | None, all_copies: bool,
                    on_damage: Callable[[str], None] | None) -> Iterator[bytes]:
        older = {} if all_copies else self.catalog.superseded()
        for info in self.catalog.segments(lo, hi):
            reader = self.reader(info.path)
            newest = None if all_copies else set(range(info.documents)) - older.get(info.path, set())
            for _, raw_doc in self._matching(reader, flt, newest, True, on_damage):
                assert raw_doc is not None
                yield raw_doc

    def _matching(self, reader: SegmentReader, flt: Filter, newest: set[int] | None, need_bytes: bool,
                  on_damage: Callable[[str], None] | None = None) -> Iterator[tuple[int, bytes | None]]:
        """(number, exact bytes or None) of the documents of one segment that match `flt`. When the
        filter reads no embedding, each block is matched on its documents without embeddings (its
        head only: a few GOPs) and only the matches are read whole."""
        idx = reader.index
        where = str(reader.path)

        def lost(what: str) -> None:
            if on_damage is None:
                raise SegmentError(what, where)
            on_damage(f"{where}: {what}")

        roots = {f.split(".")[0] for f in idx.get("vector_fields", [])}
        fields = set(flt.fields or ())
        light = bool(idx["blocks"]) and "head" in idx["blocks"][0] and bool(fields) and not (fields & roots)
        first = 0
        for block in idx["blocks"]:
            numbers = range(first, first + block["documents"])
            first += block["documents"]
            if newest is not None and not any(n in newest for n in numbers):
                continue
            try:
                docs = self._skeletons(reader, block) if light else self._block(reader, block["block"])
            except SegmentError as exc:
                lost(f"block {block['block']} ({block['documents']} documents) cannot be read: {exc.message}")
                continue
            hits = [(n, doc) for n, doc in zip(numbers, docs) if (newest is None or n in newest) and flt.matches(doc)]
            if light and need_bytes and len(hits) >= max(2, block["documents"] // WHOLE_BLOCK_SHARE):
                try:  # many matches: decoding the block once costs less than reading each of them
                    whole = self._block(reader, block["block"])
                    hits = [(n, whole[n - numbers.start]) for n, _ in hits]
                    light_here = False
                except SegmentError:
                    light_here = True
            else:
                light_here = light
            for n, doc in hits:
                if not need_bytes or not light_here:
                    yield n, doc if need_bytes else None
                    continue
                try:
                    yield n, self._document(reader, n)
                except SegmentError as exc:
                    lost(f"document {n} cannot be read: {exc.message}")

    def _block(self, reader: SegmentReader, number: int) -> list[bytes]:
        """A block's documents, verified against its digest (with parity repair when needed)."""
        return self._cache.get((str(reader.path), number, "block"), lambda: reader.block(number))

    def _skeletons(self, reader: SegmentReader, block: Mapping[str, Any]) -> list[bytes]:
        """A block's documents without their embeddings, from its head alone (a few GOPs); from the
        whole block when the head cannot be read."""
        def read() -> list[bytes]:
            with reader.open() as source:
                (head,) = fetch_ranges(source, reader.index, [(block["offset"], block["head"])], reader.where)
            try:
                if head is None:
                    raise SegmentError("a frame of the block head is damaged")
                sealed = block.get("head_sha256")  # an encrypted segment's head, read on its own
                if sealed is not None and hashlib.sha256(head[records.PREFIX.size + records.BLOCK_NUMBER.size:]).hexdigest() != sealed:
                    raise SegmentError("the block head does not match its digest")
                return blockcodec.decode_skeletons(memoryview(head)[records.PREFIX.size + records.BLOCK_HEAD_V2.size:])
            except SegmentError:
                return self._block(reader, block["block"])
        return self._cache.get((str(reader.path), block["block"], "head"), read)

    def _document(self, reader: SegmentReader, n: int) -> bytes:
        number = reader.index["docs"][n]["block"]
        whole = self._cache.peek((str(reader.path), number, "block"))
        if whole is not None:
            first = sum(b["documents"] for b in reader.index["blocks"][:number])
            return whole[n - first]
        return reader.document(n)

    # -- search -------------------------------------------------------------------------------------

    def search(self, vector: Any, field: str, k: int = 10, *, start: Any = None, end: Any = None,
               filter: Mapping | None = None, raw: bool = False, confidence: float = vsearch.DEFAULT_CONFIDENCE,
               stats: vsearch.SearchStats | None = None, leave_out: Any = None) -> list[Scored]:
        """The k archived documents whose `field` embedding is most similar (cosine) to `vector`,
        best first, with exact scores. Each segment's vector sidecar ranks candidates; their exact
        vectors are read from the video to re-rank them (a segment without a usable sidecar is
        searched exactly). `leave_out`: an `_id` whose copies are not results (a search like that
        document, as Elasticsearch's more_like_this)."""
        if not isinstance(k, int) or isinstance(k, bool) or not 0 < k <= 10_000:
            raise ConfigError(f"k must be an integer between 1 and 10000, not {k!r}")
        with ThreadPoolExecutor(2, thread_name_prefix="search") as pool:  # file reads and FFV1 release the GIL
            return self._search(pool, vector, field, k, _date(start), _date(end), Filter(filter) if filter else None,
                                raw, confidence, stats, leave_out)

    def _search(self, pool: ThreadPoolExecutor, vector: Any, field: str, k: int, lo: int | None, hi: int | None,
                flt: Filter | None, raw: bool, confidence: float, stats: vsearch.SearchStats | None,
                leave_out: Any) -> list[Scored]:
        sidecars: dict[str, sidecar.Sidecar] = {}
        unindexed: dict[str, int] = {}
        allowed: dict[str, np.ndarray] = {}

        def load(info: SegmentInfo) -> sidecar.Sidecar | None:
            # the catalog names the segment a sidecar must belong to; its index (a JSON parse as long as
            # a few frames' decoding) is read only when a candidate is fetched from it, or when the
            # segment is encrypted (its sidecar is opened with the segment's key, found through the index)
            try:
                if info.content_sha256 is not None:
                    return self._sidecar(info.path, info.content_sha256, info.documents, None)
                reader = self.reader(info.path)
                return self._sidecar(info.path, reader.index["content_sha256"], info.documents,
                                     encryption.keys_of(reader.index, str(reader.path)))
            except SegmentError:
                return None  # missing or damaged: this segment is searched exactly

        infos = self.catalog.segments(lo, hi)
        older = self.catalog.superseded()
        for info, codes in zip(infos, pool.map(load, infos)):
            if codes is not None and field in codes.fields:
                sidecars[info.path] = codes
            elif codes is not None and codes.covers(field):
                continue  # no document of this segment has a vector in `field`
            else:
                unindexed[info.path] = info.documents
            mask = np.ones(info.documents, dtype=bool)
            mask[list(older.get(info.path, ()))] = False
            if flt is not None or lo is not None or hi is not None:
                mask &= self._allowed(self.reader(info.path), flt, lo, hi)
            allowed[info.path] = mask
        for where in self.catalog.by_id(leave_out) if leave_out is not None else ():
            if where.segment in allowed:
                allowed[where.segment][where.n] = False
        if not sidecars and not unindexed:
            return []
        size = np.asarray(vector).size if isinstance(vector, (list, tuple, np.ndarray)) else None
        dims = sorted({codes.fields[field].layout.dim for codes in sidecars.values()})
        if size is not None and dims and size not in dims:
            raise ConfigError(f"the query vector has {size} dimensions; {field} holds vectors of "
                              f"{' or '.join(map(str, dims))} dimensions")

        def fetch(candidates: list[tuple[Any, int]]) -> dict[tuple[Any, int], np.ndarray | None]:
            by_segment: dict[str, list[int]] = {}
            for segment, n in candidates:
                by_segment.setdefault(segment, []).append(n)
            found = pool.map(lambda item: self._vectors(item[0], item[1], field), by_segment.items())
            return {(segment, n): values for segment, got in zip(by_segment, found) for n, values in got.items()}

        try:
            hits = vsearch.search(vector, field, k, sidecars, fetch, unindexed=unindexed, allowed=allowed,
                                  confidence=confidence, stats=stats)
        except ValueError as exc:
            raise ConfigError(f"search: {exc}") from None
        docs = list(pool.map(lambda h: self._document(self.reader(h.segment), h.doc), hits))
        return [Scored(self._out(doc, raw), h.score) for doc, h in zip(docs, hits)]

    def _sidecar(self, segment: str, identity: str, documents: int, keys: Any) -> sidecar.Sidecar:
        """A segment's vector sidecar: beside its video in the archive directory, or the object the
        seal uploaded beside it in an object store."""
        name = sidecar.path_for(Path(segment)).as_posix()
        if self.store is None:
            return sidecar.load(self.dir / name, identity, documents, keys)
        return sidecar.opened(self.store.read(name, sidecar.MAX_FILE), self.store.where(name), identity, documents,
                              keys)

    def _vectors(self, segment: str, numbers: list[int], field: str) -> dict[int, np.ndarray | None]:
        """The exact `field` vectors of these documents of a segment: from their own vector sections
        when the field was packed as float32, else from the whole documents (float64)."""
        reader = self.reader(segment)
        names = reader.index.get("vector_fields") or []
        if field in names:
            which = names.index(field)
            got = reader.vectors([(n, which) for n in numbers])
            return {n: got[(n, which)] for n in numbers}
        out: dict[int, np.ndarray | None] = {}
        for n in numbers:
            found, value = field_value(reader.document(n), field)
            out[n] = sidecar.as_vector(value) if found else None
        return out

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

