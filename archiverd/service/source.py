"""The MongoDB side: reads with exact bytes, guarded deletes, the lease, the change stream.

Nothing here builds frames or touches segment files. Every call goes through `retrying`, which
retries transient failures (network, elections, timeouts) with exponential backoff, logs each retry
(`mongodb.retry`), gives up after `retry_seconds` and turns everything else into a DatabaseError or
ConfigError with a clear message.

Guarded delete: inside one majority transaction, check the lease (fencing token), re-read the batch,
and delete only the documents whose current bytes have the SHA-256 that was archived. A document
changed after it was read stays; a concurrent change aborts the transaction (write conflict) and the
batch is re-checked. The transaction runs under the same retry policy (`_transaction`), not under
pymongo's `with_transaction`, which retries silently for a fixed 120 s.

Leases: one document per lease in `<db>.archiverd_leases` -- the collection's (`_id` = namespace),
which admits one active instance, and one per UTC day (`_id` = namespace + "$" + day), which lets
exactly one process seal and delete that day. Each holds `owner` (host:pid:nonce), `token` (raised
on every change of owner: the fencing token), `since`, `expires_at`. This module reads and writes
them; service/lease.py decides when to take one over.
"""
from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

import bson
from bson.codec_options import CodecOptions, DatetimeConversion
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient, ReturnDocument
from pymongo import errors as pe
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern
from tenacity import Retrying, retry_if_exception, stop_when_event_set, wait_exponential

from ..format import bsonpack, index
from . import expiry
from .. import faults, log
from ..config import Config, redact
from ..errors import ConfigError, DatabaseError

T = TypeVar("T")
LEASES = "archiverd_leases"
RELEASED = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)  # expires_at of a released lease
RAW = CodecOptions(document_class=RawBSONDocument, tz_aware=True, datetime_conversion=DatetimeConversion.DATETIME_AUTO)
_LEASE_MAX_TIME_MS = 5000
READ_BATCH_BYTES = 4 << 20
_PERMANENT_CODES = {13, 18, 8000}  # Unauthorized, AuthenticationFailed, Atlas AtlasError (auth)
_NO_CHANGE_STREAMS = {40573, 40324, 136, 303}
# SRV look-up failures that are an outage, not a misspelt name (NXDOMAIN stays a ConfigError)
_DNS_UNREACHABLE = ("resolution lifetime expired", "nameservers failed", "timed out")
FAIL_FAST_TIMEOUT_MS = 6000  # a person waits at most this for a server (+ start-up, even on a busy host: < 15 s)
STOP_RETRY_SECONDS = 20.0  # once stopping, transient failures are retried this long in all, not retry_seconds


class Expired(NamedTuple):
    """One document the expiry query matched: its exact bytes, its `_id`, and its date in ms, or
    None and the reason it stays."""

    raw: bytes
    id: Any
    ms: int | None
    reason: str | None


def expired_of(raw: bytes, date_field: str, cutoff: int) -> Expired:
    """What the expiry query's match `raw` is: its `_id` and date, or the reason it stays -- also
    when they cannot be read (an `_id` string that is not valid UTF-8: MongoDB keeps what a client
    sent, and such a document could not be deleted by its `_id` anyway)."""
    try:
        lean = lean_document(raw, ("_id", date_field.partition(".")[0]))
        ms, reason = expiry.date_ms(lean, date_field)
        _id = lean.get("_id")
    except bson.errors.BSONError as exc:
        return Expired(raw, None, None, f"_id or date cannot be read: {exc}"[:120])
    if ms is not None and ms >= cutoff:
        ms, reason = None, "date field is an array or path matched by an older element"
    return Expired(raw, _id, ms, reason)


def lean_document(raw: bytes, names: Sequence[str]) -> RawBSONDocument:
    """Only the top-level fields `names` of the document `raw` (the first of each, as the index
    takes the `_id`), as a raw document of its own. Reading one field of a RawBSONDocument decodes
    all of its top-level fields and keeps copies of the bytes of every sub-document: twice the
    memory of a whole server batch of 85 KB documents, and CPU for fields nobody reads."""
    elements = [bsonpack.top_level_element(raw, name.encode("utf-8", "surrogatepass")) for name in names]
    body = b"".join(e[4:-1] for e in elements if e is not None)
    return RawBSONDocument(bsonpack.INT32.pack(len(body) + 5) + body + b"\0", RAW)


def dead_local_owner(owner: str | None) -> bool:
    """Whether a lease owner ("host:pid:nonce") is a process of this host that no longer runs."""
    host, _, rest = (owner or "").partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class LeaseLost(DatabaseError):
    """Another instance holds the lease now (`lost`: which of ours); nothing may be published or deleted."""

    def __init__(self, message: str, lost: Sequence[Lease] = ()) -> None:
        super().__init__(message)
        self.lost = tuple(lost)


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, (pe.AutoReconnect, pe.NetworkTimeout, pe.ServerSelectionTimeoutError, pe.ExecutionTimeout,
                        pe.WTimeoutError, pe.ConnectionFailure)):
        return True
    if isinstance(exc, pe.PyMongoError) and (exc.has_error_label("TransientTransactionError")
                                              or exc.has_error_label("RetryableWriteError")):
        return True
    return isinstance(exc, pe.OperationFailure) and exc.code in (189, 91, 11602, 10107, 13435, 13436, 262, 50)


def _unknown_commit(exc: BaseException) -> bool:
    """A commit whose outcome the driver could not learn: it may or may not have been applied."""
    return isinstance(exc, pe.PyMongoError) and exc.has_error_label("UnknownTransactionCommitResult")


def _describe(exc: BaseException) -> str:
    text = str(exc).split(", Timeout:")[0].split(", topology_description")[0].split(", full error:")[0]
    return redact(f"{exc.__class__.__name__}: {text}")


@dataclass(frozen=True)
class Lease:
    key: str  # the lease document's _id
    owner: str
    token: int
    day: str | None = None  # None: the collection's lease

    def describe(self) -> str:
        return f"lease on {self.key} (token {self.token})"


@dataclass
class DeleteOutcome:
    deleted: int = 0
    bytes: int = 0  # BSON bytes of the deleted documents
    kept: set[str] = field(default_factory=set)  # identity keys of those present but no longer the archived bytes
    gone: int = 0  # already deleted by someone (or by us before a crash)
    complete: bool = False  # every batch ran and a read confirmed it: the journal entry can go

    @property
    def changed(self) -> int:
        """Documents kept because they changed after they were read."""
        return len(self.kept)


class Source:
    """One collection of one MongoDB deployment. With `cfg.fail_fast` (a person is waiting) every
    operation is tried once with a short server timeout; otherwise transient failures are retried."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        timeout = min(cfg.server_timeout_ms, FAIL_FAST_TIMEOUT_MS) if cfg.fail_fast else cfg.server_timeout_ms
        self.retry_seconds = 0.0 if cfg.fail_fast else cfg.retry_seconds
        # the daemon's stop event: a graceful stop against a dead server must end well within systemd's
        # TimeoutStopSec (120 s), so from the stop on, retries share STOP_RETRY_SECONDS
        self.stopping: threading.Event | None = None
        self._stop_seen: float | None = None
        try:
            self.client: MongoClient = MongoClient(cfg.uri, document_class=RawBSONDocument, tz_aware=True,
                                                   datetime_conversion=DatetimeConversion.DATETIME_AUTO,
                                                   serverSelectionTimeoutMS=timeout, connectTimeoutMS=timeout,
                                                   # no operation may block forever on a wedged server:
                                                   # a timeout is a transient error, retried, then exit 6
                                                   socketTimeoutMS=6 * timeout,
                                                   appname="archiverd",
                                                   retryWrites=True, retryReads=True)
        except (pe.ConfigurationError, pe.InvalidURI, ValueError, TypeError) as exc:
            message = redact(f"uri {redact(cfg.uri)!r} is not usable: {exc} (from {cfg.origins.get('uri', 'default')})")
            if any(s in str(exc) for s in _DNS_UNREACHABLE):  # mongodb+srv:// while DNS is down
                raise DatabaseError(message) from None
            raise ConfigError(message) from None
        self._session: Any = None
        self.on_session: Callable[[Any], None] | None = None
        self._held: dict[str, Lease] = {}  # key -> lease this process holds, renewed by `renew_leases`
        self._held_lock = threading.Lock()
        db = self.client.get_database(cfg.database, codec_options=RAW)
        self.collection = db.get_collection(cfg.collection)
        self.leases = db.get_collection(LEASES, write_concern=WriteConcern("majority"))
        self._average_bytes: int | None = None  # the collection's average document size, once asked

    def close(self) -> None:
        self.drop_session()
        self.client.close()

    # -- retries ----------------------------------------------------------------------------------

    def retrying(self, what: str, fn: Callable[[], T], *, deadline: float | None = None) -> T:
        """Run `fn`, retrying transient failures for up to retry_seconds (or until `deadline`, a
        time.monotonic() value several loops of one operation share); map the rest."""
        try:
            return self._retried(what, fn, is_transient, deadline)
        except pe.PyMongoError as exc:
            raise self._mapped(what, exc) from None

    def _retried(self, what: str, fn: Callable[[], T], retry: Callable[[BaseException], bool],
                 deadline: float | None) -> T:
        """Run `fn`, retrying the failures `retry` accepts with exponential backoff, each logged as
        `mongodb.retry`, until `deadline` (default: retry_seconds from now); the last one is raised."""
        end = time.monotonic() + self.retry_seconds if deadline is None else deadline

        def before_sleep(state: Any) -> None:
            log.warning("mongodb.retry", what=what, attempt=state.attempt_number,
                        error=_describe(state.outcome.exception()), server=redact(self.cfg.uri))

        for attempt in Retrying(retry=retry_if_exception(retry), reraise=True,
                                wait=wait_exponential(multiplier=0.5, max=15),
                                stop=lambda _: time.monotonic() >= self.retry_end(end), before_sleep=before_sleep):
            with attempt:
                return fn()
        raise AssertionError("unreachable")  # pragma: no cover - Retrying either returns or raises

    def retry_end(self, end: float) -> float:
        """`end`, or -- once the daemon is stopping -- STOP_RETRY_SECONDS after the stop was first
        seen, if sooner (a stop during an outage gives up what is left: the journal keeps it)."""
        if self.stopping is None or not self.stopping.is_set():
            return end
        if self._stop_seen is None:
            self._stop_seen = time.monotonic()
        return min(end, self._stop_seen + STOP_RETRY_SECONDS)

    def _mapped(self, what: str, exc: pe.PyMongoError) -> DatabaseError:
        """A driver error as the DatabaseError a user can act on."""
        if isinstance(exc, pe.OperationFailure):
            if exc.code in _PERMANENT_CODES:
                message = (exc.details or {}).get("errmsg", str(exc))
                return DatabaseError(redact(f"{what}: MongoDB refused ({exc.code}): {message}"))
            return DatabaseError(f"{what}: {_describe(exc)}")
        return DatabaseError(f"{what}: cannot reach MongoDB at {redact(self.cfg.uri)} ({_describe(exc)})")

    # -- reads --------------------------------------------------------------------------------------

    def ping(self) -> dict[str, Any]:
        hello = self.retrying("connect", lambda: self.client.admin.command("hello"))
        return bson.decode(hello.raw) if isinstance(hello, RawBSONDocument) else dict(hello)

    def wait_until_reachable(self, stop: threading.Event, on_retry: Callable[[int, float, str], None]) -> bool:
        """For the daemon: ping until the server answers, however long that takes, backing off from
        1 s to a minute between attempts; `on_retry(attempt, seconds to next, error)` reports each
        wait. False if `stop` was set first. A refusal (authentication) is raised, not retried."""
        def before_sleep(state: Any) -> None:
            error = _describe(state.outcome.exception())
            wait = state.next_action.sleep if state.next_action else 0.0
            log.warning("mongodb.unreachable", attempt=state.attempt_number, retry_in_seconds=round(wait, 1),
                        error=error, server=redact(self.cfg.uri))
            on_retry(state.attempt_number, wait, error)

        try:
            for attempt in Retrying(retry=retry_if_exception(is_transient), reraise=True, sleep=stop.wait,
                                    wait=wait_exponential(multiplier=1, min=1, max=60),
                                    stop=stop_when_event_set(stop), before_sleep=before_sleep):
                with attempt:
                    self.client.admin.command("ping")
        except pe.PyMongoError as exc:
            if stop.is_set():
                return False
            raise self._mapped("connect", exc) from None
        return True

    def require_namespace(self) -> None:
        """The configured database and collection must exist: a misspelt name is an error that
        creates nothing (call it before anything is written, the lease included)."""
        db = self.collection.database
        names = self.retrying("check database and collection", lambda: db.list_collection_names(
            authorizedCollections=True))
        if self.cfg.collection in names:
            return
        if not [n for n in names if not n.startswith("system.")]:
            try:
                others = [n for n in self.client.list_database_names() if n not in ("admin", "config", "local")]
            except pe.PyMongoError:  # listing databases needs a privilege archiverd's role lacks
                others = []
            hint = difflib.get_close_matches(self.cfg.database, others, n=1)
            raise ConfigError(f"database {self.cfg.database!r} does not exist on {redact(self.cfg.uri)}"
                              + (f" (did you mean {hint[0]!r}?)" if hint else "") + "; nothing was created")
        hint = difflib.get_close_matches(self.cfg.collection, names, n=1)
        raise ConfigError(f"collection {self.cfg.collection!r} does not exist in database {self.cfg.database!r}"
                          + (f" (did you mean {hint[0]!r}?)" if hint else "") + "; nothing was created")

    def expired_filter(self, cutoff: int, since: int | None = None) -> dict[str, Any]:
        """Documents whose date field holds a BSON date before `cutoff` (ms) -- and at or after
        `since`, if given. A range of dates matches dates only (MongoDB's type bracketing), so no
        `$type` clause: with one, the test server ignored the index on the date field and scanned
        the whole collection for each day. MongoDB also matches arrays holding such a date and
        paths through arrays: `expired` checks each document."""
        dates: dict[str, Any] = {"$lt": expiry.bson_date(_clamp(cutoff))}
        if since is not None:
            dates["$gte"] = expiry.bson_date(_clamp(since))
        return {self.cfg.date_field: dates}

    def expired(self, cutoff: int, since: int | None = None) -> Iterator[Expired]:
        """Every expired document (dated before `cutoff`, and at or after `since` if given), oldest
        first, with its exact bytes, its `_id` and its date in ms -- or with the reason it must stay
        (date None) when the query matched it but its date field is not a single date. Resumes
        after a transient failure or a lost cursor from the last document accepted (sort key
        (date, _id))."""
        f = self.cfg.date_field
        last: tuple[int, Any] | None = None
        while True:
            query = self.expired_filter(cutoff, since)
            if last is not None:
                after = expiry.bson_date(last[0])
                query = {"$and": [query, {"$or": [{f: {"$gt": after}}, {f: after, "_id": {"$gt": last[1]}}]}]}
            cursor = (self.collection.find(query).sort([(f, 1), ("_id", 1)])
                      .batch_size(self.read_batch()).allow_disk_use(True))
            try:
                for doc in cursor:
                    found = expired_of(bytes(doc.raw), f, cutoff)  # (a memoryview in some replies)
                    if found.ms is not None:
                        last = (found.ms, found.id)
                    yield found
                return
            except pe.PyMongoError as exc:
                # a lost cursor (server restarted, failover) is resumed like a network error
                if self.cfg.fail_fast or not (is_transient(exc) or isinstance(exc, pe.CursorNotFound)):
                    raise self._mapped("read expired documents", exc) from None
                log.warning("mongodb.retry", what="read expired documents", error=_describe(exc))
                self.retrying("reconnect", lambda: self.client.admin.command("ping"))
            finally:
                cursor.close()

    def read_batch(self) -> int:
        """Documents per read batch: `batch_size`, or fewer when the collection's documents are
        large, so that a batch holds about READ_BATCH_BYTES (200 EAT experiences are 17 MB, held
        twice while pymongo splits the reply). The average comes from `collStats` (in the `read`
        role), asked once; without it, `batch_size`."""
        if self._average_bytes is None:
            try:
                stats = self.collection.database.command("collStats", self.cfg.collection)
                self._average_bytes = max(0, int(stats.get("avgObjSize") or 0))
            except (pe.PyMongoError, TypeError, ValueError):
                self._average_bytes = 0
        if not self._average_bytes:
            return self.cfg.batch_size
        return max(1, min(self.cfg.batch_size, READ_BATCH_BYTES // self._average_bytes))

    def count(self, query: dict[str, Any]) -> int:
        return self.retrying("count", lambda: self.collection.count_documents(query))

    def counts(self, watermark: int, cutoff: int) -> dict[str, Any]:
        """Expired documents (count, oldest) and documents that stay for good, by reason."""
        f = self.cfg.date_field
        expired, oldest = self.backlog(watermark)
        return {
            "expired": expired,
            "ready": self.count({f: {"$lt": expiry.bson_date(_clamp(cutoff)), "$type": "date",
                                     "$not": {"$type": "array"}}}),
            "oldest_expired": oldest.isoformat() if oldest else None,
            "skipped": {
                "date field missing": self.count({f: {"$exists": False}}),
                "date field is null": self.count({f: {"$type": "null"}}),
                "date field is an array": self.count({f: {"$type": "array"}}),
                "date field is not a date": self.count({f: {"$exists": True, "$not": {"$type": ["date", "null",
                                                                                             "array"]}}}),
            },
        }

    def any_has(self, name: str) -> bool:
        """Whether some document has the field `name` (one look-up, served by an index on it; not a
        count of the whole collection)."""
        return self.retrying("look up a field", lambda: self.collection.find_one(
            {name: {"$exists": True}}, projection={"_id": 1})) is not None

    def date_index(self) -> str | None:
        """The name of an index the day's read can use -- its first key the date field in B-tree
        order (1 or -1: not hashed, 2d, 2dsphere), not hidden, not partial (a partial index serves
        only queries that imply its filter) -- or None: without one, every day's read scans the
        whole collection (`config --check` warns, as pt-archiver does)."""
        indexes = self.retrying("list indexes", lambda: list(self.collection.list_indexes()))
        return next((ix["name"] for ix in indexes if _serves_ranges_of(ix, self.cfg.date_field)), None)

    def date_fields_of_a_document(self) -> list[str]:
        """The top-level fields of one document that hold a date (what a misspelt date field was
        likely meant to be)."""
        doc = self.retrying("sample", lambda: self.collection.find_one({}))
        return [k for k, v in (doc or {}).items() if isinstance(v, dt.datetime)]

    def backlog(self, watermark: int) -> tuple[int, dt.datetime | None]:
        """Expired documents not archived yet: how many, and the date of the oldest."""
        f = self.cfg.date_field
        query = {f: {"$lt": expiry.bson_date(_clamp(watermark)), "$type": "date", "$not": {"$type": "array"}}}
        doc = self.retrying("find oldest expired", lambda: self.collection.find_one(query, sort=[(f, 1)],
                                                                                 projection={f: 1}))
        oldest = expiry.date_ms(doc, f)[0] if doc is not None else None
        return self.count(query), expiry.to_datetime(oldest) if oldest is not None else None

    def expired_days(self, watermark: int) -> dict[int, int]:
        """Documents dated before `watermark` (expired, or in complete days when given the cutoff)
        not archived yet, per UTC day: {start of the day in ms: count}. One
        aggregation that carries only the date field ($toLong needs MongoDB 4.0, as transactions
        do); a date path through an array is left out, as a cycle leaves it."""
        f = self.cfg.date_field
        pipeline = [
            {"$match": {f: {"$lt": expiry.bson_date(_clamp(watermark)), "$type": "date", "$not": {"$type": "array"}}}},
            {"$project": {"_id": 0, "d": f"${f}"}},
            {"$match": {"$expr": {"$eq": [{"$type": "$d"}, "date"]}}},
            {"$group": {"_id": {"$floor": {"$divide": [{"$toLong": "$d"}, expiry.MS_PER_DAY]}}, "n": {"$sum": 1}}},
        ]
        rows = self.retrying("count expired documents per day", lambda: list(self.collection.aggregate(pipeline)))
        return {int(row["_id"]) * expiry.MS_PER_DAY: int(row["n"]) for row in rows}

    # -- guarded deletes ----------------------------------------------------------------------------

    def delete_unchanged(self, batch: Sequence[tuple[Any, str]], lease: Lease) -> DeleteOutcome:
        """Delete the documents (_id, archived SHA-256) whose current bytes still hash the same,
        in one majority transaction that also checks the lease's fencing token (the day's lease in
        a cycle). Documents are hashed as the cursor streams them: memory stays one server batch,
        whatever their size. Refused (LeaseLost), the session is dropped: the lease's next holder
        may end it (service/lease.py), and this process records a new one for its next delete."""
        ids = [i for i, _ in batch]
        wanted = {index.key_of(i): (i, sha) for i, sha in batch}
        tried: dict[str, int] = {}  # id key -> BSON bytes: what the last attempt deleted
        unsure: dict[str, int] = {}  # ... what an attempt deleted whose commit may have happened

        def txn(session: Any, maybe_committed: bool) -> DeleteOutcome:
            if maybe_committed:
                unsure.update(tried)
            tried.clear()
            self._check_lease(lease, session)
            current = {index.key_of(lean_document(raw, ("_id",))["_id"]): (hashlib.sha256(raw).hexdigest(), len(raw))
                       for raw in (bytes(d.raw) for d in self.collection.find(
                           {"_id": {"$in": ids}}, session=session, batch_size=self.read_batch()))}
            out = DeleteOutcome()
            same = []
            for key, (_id, sha) in wanted.items():
                found = current.get(key)
                if found is None and key in unsure:  # our own commit deleted it after all
                    out.deleted += 1
                    out.bytes += unsure[key]
                elif found is None:
                    out.gone += 1
                elif found[0] == sha:
                    same.append(_id)
                    tried[key] = found[1]
                    out.bytes += found[1]
                else:
                    out.kept.add(key)
            if same:
                result = self.collection.delete_many({"_id": {"$in": same}}, session=session)
                if result.deleted_count != len(same):  # cannot happen under snapshot isolation
                    raise DatabaseError(f"deleted {result.deleted_count} of {len(same)} checked documents; aborted")
            faults.hit("delete-txn")  # inside the open transaction, before its commit
            out.deleted += len(same)
            return out

        try:
            return self._transaction("guarded delete", txn)
        except LeaseLost:
            self.drop_session()
            raise

    def _transaction(self, what: str, callback: Callable[[Any, bool], T]) -> T:
        """Run `callback(session, maybe_committed)` in one transaction (snapshot reads, majority
        commit) on the delete session and commit it, every retry logged and all of them together
        bounded by retry_seconds -- pymongo's `with_transaction` follows the same algorithm, but
        silently and for a fixed 120 s:

        * the callback fails transiently (server away, write conflict): abort, run it again;
        * the commit's result is unknown (no reply, a write-concern timeout): send commitTransaction
          again -- the server commits a transaction at most once and answers a repeated commit with
          its outcome -- never the callback. Still unknown at the deadline: DatabaseError (the
          caller's journal entry stays; the next attempt re-checks every document);
        * the server refuses the commit (TransientTransactionError: not committed): run it again.
          `maybe_committed` tells the callback that this refusal followed an unknown result (a
          server that lost its session records may refuse a commit it did apply); anything else
          the commit raises is mapped to a DatabaseError."""
        deadline = time.monotonic() + self.retry_seconds
        maybe_committed = False

        def attempt() -> T:
            nonlocal maybe_committed
            session = self._delete_session()
            session.start_transaction(read_concern=ReadConcern("snapshot"), write_concern=WriteConcern("majority"))
            told, maybe_committed = maybe_committed, False
            try:
                result = callback(session, told)
            except BaseException:
                if session.in_transaction:
                    session.abort_transaction()  # errors ignored: the server ends it anyway
                raise
            unknown = False

            def commit() -> None:
                nonlocal unknown
                try:
                    session.commit_transaction()
                except pe.PyMongoError as exc:
                    unknown = unknown or _unknown_commit(exc)
                    raise

            try:
                self._retried(f"{what}: commit (result unknown)", commit, _unknown_commit, deadline)
            except pe.PyMongoError as exc:
                if _unknown_commit(exc):
                    raise DatabaseError(f"{self._mapped(what, exc)}; whether the last commit was applied is "
                                        "unknown: the documents are checked again") from None
                if not exc.has_error_label("TransientTransactionError"):
                    raise self._mapped(what, exc) from None
                maybe_committed = unknown
                raise  # not committed: run the transaction again
            return result

        return self.retrying(what, attempt, deadline=deadline)

    def _delete_session(self) -> Any:
        """One session for this instance's delete transactions; its id is handed to `on_session`
        (the state file) so that after a crash the next instance can end a transaction left open."""
        if self._session is None:
            self._session = self.client.start_session()
            if self.on_session is not None:
                self.on_session(self._session.session_id)
        return self._session

    def drop_session(self) -> None:
        """Stop using the delete session: after a lease was lost, its next holder may end it."""
        if self._session is not None:
            try:
                self._session.end_session()
            except pe.PyMongoError:
                pass  # a session the lease's next holder killed already
            self._session = None

    def durability_barrier(self, lease: Lease) -> None:
        """A plain journaled write after a segment's delete transactions: a server that syncs
        transaction commits lazily has them on disk once this is acknowledged."""
        self.retrying("durability barrier", lambda: self.leases.with_options(
            write_concern=WriteConcern("majority", j=True)).update_one(
            {"_id": lease.key, "owner": lease.owner}, {"$set": {"synced_at": self._now()}}))

    def end_session(self, session_id: Any) -> None:
        """End a session a killed instance left behind (its open transaction holds locks on the
        lease document until the server reaps it, mongod after 60 s)."""
        try:
            self.client.admin.command("killSessions", [session_id], maxTimeMS=_LEASE_MAX_TIME_MS)
        except pe.PyMongoError as exc:
            log.warning("lease.end_session_failed", error=_describe(exc))

    def present(self, ids: Sequence[Any]) -> set[str]:
        """Which of these _ids the collection holds now (majority read), as id keys."""
        coll = self.collection.with_options(read_concern=ReadConcern("majority"))
        found: set[str] = set()
        for start in range(0, len(ids), 1000):
            chunk = ids[start:start + 1000]
            found.update(index.key_of(d["_id"]) for d in self.retrying(
                "confirm deletes", lambda c=chunk: list(coll.find({"_id": {"$in": c}}, projection={"_id": 1}))))
        return found

    # -- lease --------------------------------------------------------------------------------------

    def _now(self) -> dt.datetime:
        return dt.datetime.now(dt.timezone.utc)

    def lease_key(self, day: str | None = None) -> str:
        """The lease document's _id: the namespace, or namespace$day ("$" appears in no collection
        name, so no collection's lease can be mistaken for another's day)."""
        return self.cfg.namespace if day is None else f"{self.cfg.namespace}${day}"

    def acquire_lease(self, take_from: str | None = None, *, day: str | None = None,
                      where: dict[str, str] | None = None) -> Lease | None:
        """Take or renew the collection's lease, or a day's; None while another live process holds
        it (`take_from` names a holder known to be dead, whose lease is taken at once; `where`: the
        holder's archive directory, recorded for the next holder to compare). Every lease
        operation carries maxTimeMS: a killed instance's open transaction can make it wait, and it
        is retried past the server's transaction lifetime, never waited on forever."""
        key, now = self.lease_key(day), self._now()
        expires = now + dt.timedelta(seconds=self.cfg.lease_seconds)
        free = [{"owner": self.owner}, {"expires_at": {"$lte": now}}] + ([{"owner": take_from}] if take_from else [])
        ours = {"$eq": ["$owner", self.owner]}
        fields = {"token": {"$cond": [ours, "$token", {"$add": [{"$ifNull": ["$token", 0]}, 1]}]},
                  # a renewal keeps `since`; a take (from another, or after a release) restarts it
                  "since": {"$cond": [{"$and": [ours, {"$gt": ["$expires_at", now]}]}, {"$ifNull": ["$since", now]},
                                      now]},
                  "owner": self.owner, "expires_at": expires, "renewed_at": now, "ns": self.cfg.namespace}
        if day is not None:
            fields["day"] = day
        fields.update(where or {})

        def attempt() -> Lease | None:
            try:
                doc = self.leases.find_one_and_update(
                    {"_id": key, "$or": free}, [{"$set": fields}],
                    upsert=True, return_document=ReturnDocument.AFTER, maxTimeMS=_LEASE_MAX_TIME_MS)
            except pe.DuplicateKeyError:
                return None  # the lease document exists and is held by someone else
            return Lease(key, self.owner, int(bson.decode(doc.raw)["token"]), day)

        lease = self.retrying("acquire lease", attempt)
        with self._held_lock:
            if lease is not None:
                self._held[key] = lease
            else:
                self._held.pop(key, None)
        return lease

    def lease_holder(self, day: str | None = None) -> dict[str, Any] | None:
        doc = self.retrying("read lease", lambda: self.leases.find_one({"_id": self.lease_key(day)},
                                                                       max_time_ms=_LEASE_MAX_TIME_MS))
        return bson.decode(doc.raw, RAW.with_options(document_class=dict)) if doc is not None else None

    def lease_documents(self) -> list[dict[str, Any]]:
        """Every lease document of this collection (its own and its days'), for `status`."""
        ns = self.cfg.namespace
        docs = self.retrying("read leases", lambda: list(self.leases.find(
            {"$or": [{"_id": ns}, {"ns": ns}]}, max_time_ms=_LEASE_MAX_TIME_MS)))
        return [bson.decode(d.raw, RAW.with_options(document_class=dict)) for d in docs]

    def holds(self, lease: Lease) -> bool:
        """Whether this process still counts `lease` as its own (not yet released, not found lost
        by a renewal)."""
        with self._held_lock:
            return self._held.get(lease.key) == lease

    def renew_leases(self) -> list[Lease]:
        """Extend every lease this process holds; return (and forget) those that are no longer
        ours. Only the same owner and token is extended -- never a lease another process took,
        nor one released meanwhile (its expiry is 1970)."""
        with self._held_lock:
            held = list(self._held.values())
        lost = []
        for lease in held:
            now = self._now()
            doc = self.retrying("renew lease", lambda lease=lease, now=now: self.leases.find_one_and_update(
                {"_id": lease.key, "owner": lease.owner, "token": lease.token, "expires_at": {"$gt": RELEASED}},
                {"$set": {"expires_at": now + dt.timedelta(seconds=self.cfg.lease_seconds), "renewed_at": now}},
                projection={"_id": 1}, maxTimeMS=_LEASE_MAX_TIME_MS))
            if doc is None:
                with self._held_lock:
                    if self._held.get(lease.key) == lease:
                        del self._held[lease.key]
                        lost.append(lease)
        return lost

    def release_lease(self, lease: Lease, unfinished: int = 0, *, once: bool = False) -> None:
        """Free the lease at once (expired since 1970): the next `run --once` need not wait.
        `unfinished`: the holder's journal entries left for the lease's day (see service/lease.py).
        `once`: one attempt, no retries (after a failure: the lease lapses anyway)."""
        with self._held_lock:
            if self._held.get(lease.key) == lease:
                del self._held[lease.key]

        def release() -> Any:
            return self.leases.update_one(
                {"_id": lease.key, "owner": lease.owner, "token": lease.token},
                {"$set": {"expires_at": RELEASED, "released_at": self._now(), "unfinished": unfinished}})

        if not once:
            self.retrying("release lease", release)
            return
        try:
            release()
        except pe.PyMongoError as exc:
            raise self._mapped("release lease", exc) from None

    def check_lease(self, *leases: Lease) -> None:
        """Raise LeaseLost unless every one of the leases is still ours (owner and fencing token)
        and unexpired: asked right before a segment is published."""
        now = self._now()
        wanted = [{"_id": lease.key, "owner": lease.owner, "token": lease.token, "expires_at": {"$gt": now}}
                  for lease in leases]
        found = {d["_id"] for d in self.retrying("check lease", lambda: list(self.leases.find(
            {"$or": wanted}, projection={"_id": 1}, max_time_ms=_LEASE_MAX_TIME_MS)))}
        lost = [lease for lease in leases if lease.key not in found]
        if lost:
            raise LeaseLost(f"{', '.join(lease.describe() for lease in lost)} is no longer ours; nothing published",
                            lost)

    def _check_lease(self, lease: Lease, session: Any) -> None:
        """Fencing: inside the delete transaction, the lease must still be ours and unexpired.
        Writing it makes a concurrent take-over conflict with this transaction."""
        now = self._now()
        doc = self.leases.find_one_and_update(
            {"_id": lease.key, "owner": lease.owner, "token": lease.token, "expires_at": {"$gt": now}},
            {"$set": {"fenced_at": now}}, session=session)
        if doc is None:
            raise LeaseLost(f"{lease.describe()} is no longer ours; deletes stopped", [lease])

    # -- change stream ------------------------------------------------------------------------------

    def watch(self, resume_token: Any | None) -> Any | None:
        """A change stream on inserts/updates/replaces, or None if the server has none. Each event
        carries only its operation and the document's date field: the whole document (85 KB for an
        EAT experience) for every write of the agents would double what the server sends, and the
        daemon's memory and CPU with it."""
        pipeline = [{"$match": {"operationType": {"$in": ["insert", "update", "replace"]}}},
                    {"$project": {"operationType": 1, f"fullDocument.{self.cfg.date_field}": 1}}]
        try:
            return self.collection.watch(pipeline, full_document="updateLookup", resume_after=resume_token,
                                         max_await_time_ms=1000)
        except pe.OperationFailure as exc:
            if exc.code in _NO_CHANGE_STREAMS or "only supported on replica sets" in str(exc):
                return None
            if resume_token is not None and exc.code in (280, 286):  # token no longer in the oplog
                log.warning("changestream.resume_lost", error=_describe(exc))
                return self.watch(None)
            raise


def token_to_json(token: Any) -> Any:
    if token is None:
        return None
    return index.id_json(bson.decode(token.raw) if isinstance(token, RawBSONDocument) else token)


def token_from_json(value: Any) -> Any:
    return None if value is None else index.from_json(value)


def _serves_ranges_of(ix: Any, name: str) -> bool:
    """Whether the index (as listIndexes describes it) can serve a range query on field `name`."""
    first, direction = next(iter(ix["key"].items()), (None, None))
    return (first == name and isinstance(direction, (int, float)) and not isinstance(direction, bool)
            and direction != 0 and not ix.get("hidden") and "partialFilterExpression" not in ix)


def _clamp(ms: int) -> int:
    """Keep a computed date inside what BSON (int64 milliseconds) can carry."""
    return max(-(2 ** 63), min(2 ** 63 - 1, ms))
