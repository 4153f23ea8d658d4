"""The catalog: which segment holds which document, for lookups across the whole archive.

It is derived only from the sealed indexes -- never the only copy of anything -- and kept in
`catalog.sqlite` in the collection's archive directory. `sync()` brings it up to date with what is on
disk (new, changed and vanished segments, a repaired copy standing in for its original) and runs
before every lookup; the daemon also adds each segment as it seals it; `rebuild()` starts afresh.

Why SQLite, not DuckDB (measured side by side: bench/bench_catalog.py, bench/RESULTS-search.md): the
lookups are point queries by `_id` or an indexed field, and day ranges -- B-tree territory, where
SQLite answers fastest; it ships with Python, needs no server, and lets readers in while the daemon
writes (WAL). DuckDB is a column store built for scans and aggregates, and a large dependency.

Keys are `format.identity` keys: equal exactly when MongoDB deems the values equal (`_id`s and the
values of `ARCHIVERD_INDEX_FIELDS`, recorded in each index entry's `fields` at seal time).
"""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import log
from ..errors import EncryptionKeyError, SegmentError, StorageError
from ..format import encryption, identity, index
from . import durable, layout, objects

FILE = "catalog.sqlite"
SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS segments(
    id INTEGER PRIMARY KEY, path TEXT UNIQUE NOT NULL, day TEXT, segment_id TEXT, created_at TEXT,
    documents INTEGER, video_bytes INTEGER, index_file TEXT, index_size INTEGER, index_mtime INTEGER,
    first_date INTEGER, last_date INTEGER, sealed INTEGER NOT NULL DEFAULT 0, content_sha256 TEXT);
CREATE TABLE IF NOT EXISTS docs(
    segment INTEGER NOT NULL, n INTEGER NOT NULL, block INTEGER NOT NULL, first_frame INTEGER, last_frame INTEGER,
    id_key TEXT, date INTEGER, PRIMARY KEY(segment, n)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS docs_id ON docs(id_key);
CREATE TABLE IF NOT EXISTS fields(segment INTEGER NOT NULL, n INTEGER NOT NULL, field TEXT NOT NULL, value_key TEXT);
CREATE INDEX IF NOT EXISTS fields_value ON fields(field, value_key);
"""


@dataclass(frozen=True)
class Location:
    """Where one archived document is: its segment (relative path), its number in that segment's
    index, and when the segment was sealed (the newest copy of an `_id` wins)."""

    segment: str
    n: int
    created_at: str


@dataclass(frozen=True)
class SegmentInfo:
    path: str
    day: str
    documents: int
    video_bytes: int
    first_date: int | None
    last_date: int | None
    created_at: str
    content_sha256: str | None = None  # of a segment that is not encrypted: what its sidecar must name


def _date_ms(text: Any) -> int | None:
    if not isinstance(text, str):
        return None
    try:
        when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    return int(when.timestamp() * 1000)


class Catalog:
    """The catalog of one collection's archive directory.

    `writable=False` opens the file read-only (check); a reader that may not write the directory
    (another user, a read-only mount) gets `Catalog.for_reading`, which falls back to a private
    in-memory catalog synced from the indexes."""

    FILE = FILE

    def __init__(self, collection_dir: Path, *, writable: bool = True, memory: bool = False,
                 path: Path | None = None, store: objects.Store | None = None) -> None:
        self.collection_dir = Path(collection_dir)
        self.store = store  # an object store holding the segments (the catalog stays in collection_dir)
        self.path = path or self.collection_dir / FILE
        self.writable = writable
        # with encryption configured, `_id`s and field values are kept as keyed digests
        self.scheme, self._hmac = encryption.catalog_key()
        self.locked: list[str] = []  # encrypted segments the last sync could not open (no key)
        self.unreadable: list[str] = []  # committed segments whose index does not load ("path (why)")
        try:
            if memory:
                self.db = sqlite3.connect(":memory:", isolation_level=None)
                self.db.executescript(_SCHEMA)
                self._check_version()
            elif writable:
                durable.ensure_dir(self.collection_dir)
                fresh = not self.path.exists()
                self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
                if fresh:
                    os.chmod(self.path, durable.file_mode())
                self.db.execute("PRAGMA secure_delete=ON")  # an erased document's rows leave no trace
                self.db.executescript(_SCHEMA)
                self._check_version()
                if "content_sha256" not in self._columns():  # a catalog made before the column: filled on rebuild
                    self.db.execute("ALTER TABLE segments ADD COLUMN content_sha256 TEXT")
            else:
                self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30, isolation_level=None)
                self.db.execute("SELECT count(*) FROM segments").fetchone()
        except (sqlite3.DatabaseError, OSError) as exc:
            raise StorageError(f"catalog {self.path} is not usable ({exc}); `archiverd catalog rebuild` "
                               "makes it again from the indexes") from None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One transaction (one sync) for a whole segment's rows: the connection autocommits otherwise."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    @classmethod
    def for_reading(cls, collection_dir: Path, store: objects.Store | None = None) -> Catalog:
        """The catalog, brought up to date with the disk: the shared file, or -- when it cannot be
        written (another user, a read-only copy) or is damaged -- a private in-memory one, so that
        reads never depend on a derived file."""
        try:
            catalog = cls(collection_dir, store=store)
            try:
                catalog.sync()
            except sqlite3.Error:
                catalog.close()
                raise
            return catalog
        except (StorageError, sqlite3.Error) as exc:
            if (Path(collection_dir) / FILE).exists() and os.access(Path(collection_dir) / FILE, os.W_OK):
                log.warning("catalog.unusable", path=str(Path(collection_dir) / FILE), reason=str(exc)[:300],
                            fix="`archiverd catalog rebuild`; reading from the indexes meanwhile")
        catalog = cls(collection_dir, memory=True, store=store)
        catalog.sync()
        return catalog

    def refuse_partial(self) -> None:
        """Raise (and close) when the last sync left committed segments out: an answer from this
        catalog would silently miss their documents (a `get` "not archived", a short `export`, an
        `erase` that leaves a copy behind)."""
        if self.unreadable:
            self.close()
            raise SegmentError(f"{len(self.unreadable)} segments of this archive have an index that does not load "
                               f"(e.g. {self.unreadable[0]}); nothing is answered without their documents: "
                               "`archiverd check` names them (move such an index away, then `archiverd reindex` "
                               "rebuilds it from the video)")

    def _check_version(self) -> None:
        for key, mine in (("schema", str(SCHEMA_VERSION)), ("digest", self.scheme)):
            row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
            if row is None:
                self.db.execute("INSERT INTO meta VALUES(?, ?)", (key, mine))
            elif row[0] != mine:
                raise StorageError(f"catalog {self.path} has {key} {row[0]}, this process uses {mine}: "
                                   "`archiverd catalog rebuild`")

    def _columns(self) -> set[str]:
        return {row[1] for row in self.db.execute("PRAGMA table_info(segments)")}

    def _key(self, text: str) -> str:
        """How an identity key is stored: as is, or as a keyed digest when encryption is on."""
        return text if self._hmac is None else hmac.new(self._hmac, text.encode(), hashlib.sha256).hexdigest()

    def _value_key(self, field: str, value: Any) -> str:
        text = identity.key(value)
        return text if self._hmac is None else self._key(f"{field}\0{text}")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- keeping it in step with the disk ------------------------------------------------------------

    def _on_disk(self) -> dict[str, Path]:
        """Committed segments: relative path of the original video -> the index file to read (a
        repaired copy's, when there is one)."""
        out = {}
        for video in layout.videos(self.collection_dir):
            target = index.preferred(video)
            if index.path_for(target).exists():
                out[video.relative_to(self.collection_dir).as_posix()] = index.path_for(target)
        return out

    def _in_store(self) -> dict[str, tuple[str, int, int]]:
        """Committed segments in the object store: video -> (index name, size, 0); an object is never
        replaced, so its name and size say whether it changed."""
        assert self.store is not None
        sizes = self.store.listing()
        return {video: (Path(objects.index_name(video)).name, sizes[objects.index_name(video)], 0)
                for video in self.store.segments()}

    def sync(self) -> tuple[int, int]:
        """Add new or changed segments, drop vanished ones. Returns (added, dropped); `unreadable`
        names the committed segments left out because their index does not load."""
        self.unreadable = []
        if self.store is None:
            on_disk = self._on_disk()
            stamps = {}
            for path, f in on_disk.items():
                try:
                    st = f.stat()
                except FileNotFoundError:  # removed since the listing (a prune or erase): vanished
                    continue
                stamps[path] = (f.name, st.st_size, st.st_mtime_ns)
        else:
            stamps = self._in_store()
        known = {path: (seg_id, file, size, mtime) for seg_id, path, file, size, mtime in
                 self.db.execute("SELECT id, path, index_file, index_size, index_mtime FROM segments")}
        added = dropped = 0
        for path in known:
            if path not in stamps:
                self._drop(path)
                dropped += 1
        for path, stamp in stamps.items():
            old = known.get(path)
            if old is not None and old[1:] == stamp:
                continue
            if old is not None:
                self._drop(path)
            try:
                if self.store is None:
                    self.add(path, index.load(on_disk[path]), on_disk[path])
                else:
                    self._add(path, self.store.load_index(path), stamp)
            except EncryptionKeyError:
                self.locked.append(path)
                continue
            except SegmentError as exc:  # not listed; readers refuse a partial answer (query/archive.py)
                self.unreadable.append(f"{path} ({exc.message})")
                continue
            added += 1
        return added, dropped

    def _drop(self, path: str) -> None:
        with self._transaction():
            self._forget(path)

    def _forget(self, path: str) -> None:
        """All the rows of the segment at `path` (inside a transaction). By path, looked up inside
        the transaction: an id read earlier may since belong to another segment (another process
        dropped this one and SQLite handed its id to the next)."""
        for (seg_id,) in self.db.execute("SELECT id FROM segments WHERE path=?", (path,)).fetchall():
            self.db.execute("DELETE FROM docs WHERE segment=?", (seg_id,))
            self.db.execute("DELETE FROM fields WHERE segment=?", (seg_id,))
            self.db.execute("DELETE FROM segments WHERE id=?", (seg_id,))

    def add(self, path: str, idx: dict[str, Any], index_file: Path) -> None:
        """Record one segment (the daemon calls this right after a seal)."""
        st = index_file.stat()
        self._add(path, idx, (index_file.name, st.st_size, st.st_mtime_ns))

    def _add(self, path: str, idx: dict[str, Any], stamp: tuple[str, int, int]) -> None:
        """Record one segment whose index file is `stamp` (name, size, mtime: how `sync` tells a change)."""
        rows, fields, dates = [], [], []
        sealed = idx["format_version"] >= encryption.VERSION  # its documents' times stay in its sealed index
        for n, entry in enumerate(idx["docs"]):
            key = self._key(index.id_key(entry["_id"])) if "_id" in entry else None
            date = None if sealed else _date_ms(entry.get("date"))
            if date is not None:
                dates.append(date)
            frames = entry.get("frames") or [None, None]
            rows.append((n, entry["block"], frames[0], frames[1], key, date))
            for name, value in (entry.get("fields") or {}).items():
                try:
                    fields.append((n, name, self._value_key(name, index.from_json(value))))
                except (ValueError, TypeError, KeyError):
                    continue
        parts = Path(path).parts
        day = "-".join(parts[:3]) if parts[0][:1].isdigit() else parts[0]
        if sealed and parts[0][:1].isdigit():  # the day, which its directory shows anyway
            start = _date_ms(f"{day}T00:00:00+00:00")
            dates = [start, start + 86_399_999] if start is not None else []
        with self._transaction():
            # a segment recorded again (recovery after a crash, a changed index): its old rows go, all
            # of them -- the id may come back to the new row, whose document rows would then collide
            self._forget(path)
            cur = self.db.execute(
                "INSERT INTO segments(path, day, segment_id, created_at, documents, video_bytes, index_file, "
                "index_size, index_mtime, first_date, last_date, sealed, content_sha256) "
                "VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (path, day, idx["segment_id"], idx["created_at"], idx["documents"], idx["video"]["bytes"],
                 *stamp, min(dates, default=None), max(dates, default=None), int(sealed),
                 None if sealed else idx.get("content_sha256")))
            seg_id = cur.lastrowid
            self.db.executemany("INSERT INTO docs VALUES(?,?,?,?,?,?,?)", [(seg_id, *r) for r in rows])
            self.db.executemany("INSERT INTO fields VALUES(?,?,?,?)", [(seg_id, *f) for f in fields])

    @classmethod
    def rebuild_file(cls, collection_dir: Path) -> tuple[int, int, list[str]]:
        """Make the catalog file again from the indexes, in a new file that then replaces the old one
        (which may be damaged or foreign). Returns (segments, documents, the segments left out
        because their index does not load)."""
        collection_dir = Path(collection_dir)
        if not collection_dir.is_dir():
            raise StorageError(f"archive directory {collection_dir} does not exist")
        target = collection_dir / FILE
        temp = collection_dir / f".{FILE}.rebuild-{os.getpid()}"
        for leftover in (temp, temp.with_name(temp.name + "-journal")):
            leftover.unlink(missing_ok=True)
        try:
            fresh = cls(collection_dir, path=temp)
            try:
                fresh.sync()
                counts = fresh.db.execute("SELECT count(*), coalesce(sum(documents), 0) FROM segments").fetchone()
                unreadable = fresh.unreadable
            finally:
                fresh.close()
            durable.fsync_file(temp)
            for stale in ("-journal", "-wal", "-shm"):  # of the old file: never to be applied to the new one
                target.with_name(FILE + stale).unlink(missing_ok=True)
            os.replace(temp, target)
            durable.fsync_dir(collection_dir)
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"cannot rebuild the catalog {target}: {exc}") from None
        finally:
            temp.unlink(missing_ok=True)
        return counts[0], counts[1], unreadable

    # -- lookups ------------------------------------------------------------------------------------

    def by_id(self, value: Any) -> list[Location]:
        """Every archived copy of the `_id` `value`, newest first."""
        return self._locations("SELECT s.path, d.n, s.created_at FROM docs d JOIN segments s ON s.id = d.segment "
                               "WHERE d.id_key = ? ORDER BY s.created_at DESC, s.path DESC, d.n DESC",
                               (self._key(identity.key(value)),))

    def by_field(self, field: str, value: Any) -> list[Location]:
        """Documents whose indexed `field` equals `value`, newest segment first."""
        return self._locations("SELECT s.path, f.n, s.created_at FROM fields f JOIN segments s ON s.id = f.segment "
                               "WHERE f.field = ? AND f.value_key = ? ORDER BY s.created_at DESC, s.path DESC, f.n DESC",
                               (field, self._value_key(field, value)))

    def indexed_fields(self) -> set[str]:
        return {row[0] for row in self.db.execute("SELECT DISTINCT field FROM fields")}

    def _locations(self, sql: str, args: Sequence[Any]) -> list[Location]:
        return [Location(path, n, created) for path, n, created in self.db.execute(sql, args)]

    def segments(self, start: int | None = None, end: int | None = None) -> list[SegmentInfo]:
        """Segments whose documents' dates overlap [start, end) (ms), oldest day first; segments
        without dates (no date field recorded) are always included."""
        content = "content_sha256" if "content_sha256" in self._columns() else "NULL"  # a read-only older catalog
        rows = self.db.execute(
            f"SELECT path, day, documents, video_bytes, first_date, last_date, created_at, {content} FROM segments "
            "ORDER BY day, path").fetchall()
        out = []
        for path, day, documents, size, first, last, created, digest in rows:
            if first is not None and ((end is not None and first >= end) or (start is not None and last < start)):
                continue
            out.append(SegmentInfo(path, day, documents, size, first, last, created, digest))
        return out

    def superseded(self) -> dict[str, set[int]]:
        """Per segment, the numbers of its documents that are not the newest archived copy of their
        `_id` (newest: the latest seal, then the last path and number). One query for the whole
        archive: only `_id`s archived more than once are looked at."""
        copies: dict[str, list[tuple[str, str, int]]] = {}
        for key, created, path, n in self.db.execute(
                "SELECT d.id_key, s.created_at, s.path, d.n FROM docs d JOIN segments s ON s.id = d.segment "
                "WHERE d.id_key IN (SELECT id_key FROM docs WHERE id_key IS NOT NULL GROUP BY id_key "
                "HAVING count(*) > 1)"):
            copies.setdefault(key, []).append((created, path, n))
        out: dict[str, set[int]] = {}
        for found in copies.values():
            found.sort()
            for _, path, n in found[:-1]:
                out.setdefault(path, set()).add(n)
        return out

    def count(self, start: int | None = None, end: int | None = None, *, newest_only: bool = True) -> int | None:
        """Documents dated in [start, end) (ms; None: unbounded), only the newest copy of each `_id`
        when `newest_only`; None when encrypted segments overlap the range (their documents' times
        are not in the catalog)."""
        if (start is not None or end is not None) and any(
                info.path for info in self.segments(start, end)
                if self.db.execute("SELECT sealed FROM segments WHERE path=?", (info.path,)).fetchone()[0]):
            return None
        where, args = [], []
        if start is not None:
            where.append("d.date >= ?")
            args.append(start)
        if end is not None:
            where.append("d.date < ?")
            args.append(end)
        if newest_only:
            where.append("(d.id_key IS NULL OR NOT EXISTS (SELECT 1 FROM docs d2 JOIN segments s2 ON s2.id = d2.segment "
                         "WHERE d2.id_key = d.id_key AND (s2.created_at, s2.path, d2.n) > (s.created_at, s.path, d.n)))")
        sql = "SELECT count(*) FROM docs d JOIN segments s ON s.id = d.segment" + (
            " WHERE " + " AND ".join(where) if where else "")
        return int(self.db.execute(sql, args).fetchone()[0])

    def differences(self) -> list[str]:
        """Where the catalog disagrees with indexes it believes current (same file, size and
        mtime): what `sync` cannot notice and only a rebuild fixes. Also SQLite's own check."""
        problems = [f"catalog: {row[0]}" for row in self.db.execute("PRAGMA quick_check") if row[0] != "ok"]
        on_disk = self._on_disk()
        content = "content_sha256" if "content_sha256" in self._columns() else "NULL"
        for seg_id, path, file, size, mtime, documents, digest in self.db.execute(
                f"SELECT id, path, index_file, index_size, index_mtime, documents, {content} FROM segments").fetchall():
            index_file = on_disk.get(path)
            if index_file is None or index_file.name != file:
                continue  # vanished or replaced: the next sync handles it
            st = index_file.stat()
            if (st.st_size, st.st_mtime_ns) != (size, mtime):
                continue
            try:
                idx = index.load(index_file)
            except (SegmentError, EncryptionKeyError):
                continue  # `check` reports the index itself
            expected = [(n, entry["block"], *(entry.get("frames") or [None, None]),
                         self._key(index.id_key(entry["_id"])) if "_id" in entry else None)
                        for n, entry in enumerate(idx["docs"])]
            rows = self.db.execute("SELECT n, block, first_frame, last_frame, id_key FROM docs WHERE segment=? ORDER BY n",
                                   (seg_id,)).fetchall()
            if documents != idx["documents"] or rows != expected or digest not in (None, idx.get("content_sha256")):
                problems.append(f"catalog entries of {path} differ from its index (`archiverd catalog rebuild`)")
        return problems
