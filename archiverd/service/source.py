"""The MongoDB side: reads with exact bytes, guarded deletes, the lease, the change stream.

Nothing here builds frames or touches segment files. Every call goes through `retrying`, which
retries transient failures (network, elections, timeouts) with exponential backoff and turns
everything else into a DatabaseError or ConfigError with a clear message.

Guarded delete: inside one majority transaction, check the lease (fencing token), re-read the batch,
and delete only the documents whose current bytes have the SHA-256 that was archived. A document
changed after it was read stays; a concurrent change aborts the transaction (write conflict) and the
batch is re-checked.
"""
from __future__ import annotations

import datetime as dt
import difflib
import hashlib
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import bson
from bson.codec_options import CodecOptions, DatetimeConversion
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient, ReturnDocument
from pymongo import errors as pe
from pymongo.read_concern import ReadConcern
from pymongo.write_concern import WriteConcern
from tenacity import Retrying, retry_if_exception, stop_after_delay, stop_when_event_set, wait_exponential

from ..format import index
from . import expiry
from .. import faults, log
from ..config import Config, redact
from ..errors import ConfigError, DatabaseError

T = TypeVar("T")
LEASES = "archiverd_leases"
RAW = CodecOptions(document_class=RawBSONDocument, tz_aware=True, datetime_conversion=DatetimeConversion.DATETIME_AUTO)
_LEASE_MAX_TIME_MS = 5000
_PERMANENT_CODES = {13, 18, 8000}  # Unauthorized, AuthenticationFailed, Atlas AtlasError (auth)
_NO_CHANGE_STREAMS = {40573, 40324, 136, 303}
# SRV look-up failures that are an outage, not a misspelt name (NXDOMAIN stays a ConfigError)
_DNS_UNREACHABLE = ("resolution lifetime expired", "nameservers failed", "timed out")
FAIL_FAST_TIMEOUT_MS = 6000  # a person waits at most this for a server (+ start-up, even on a busy host: < 15 s)


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
    """Another instance holds the lease now; nothing may be deleted."""


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, (pe.AutoReconnect, pe.NetworkTimeout, pe.ServerSelectionTimeoutError, pe.ExecutionTimeout,
                        pe.WTimeoutError, pe.ConnectionFailure)):
        return True
    if isinstance(exc, pe.PyMongoError) and (exc.has_error_label("TransientTransactionError")
                                              or exc.has_error_label("RetryableWriteError")):
        return True
    return isinstance(exc, pe.OperationFailure) and exc.code in (189, 91, 11602, 10107, 13435, 13436, 262, 50)


def _describe(exc: BaseException) -> str:
    text = str(exc).split(", Timeout:")[0].split(", topology_description")[0].split(", full error:")[0]
    return redact(f"{exc.__class__.__name__}: {text}")


@dataclass(frozen=True)
class Lease:
    owner: str
    token: int


@dataclass
class DeleteOutcome:
    deleted: int = 0
    bytes: int = 0  # BSON bytes of the deleted documents
    changed: int = 0  # present but no longer the archived bytes: kept
    gone: int = 0  # already deleted by someone (or by us before a crash)


class Source:
    """One collection of one MongoDB deployment. With `cfg.fail_fast` (a person is waiting) every
    operation is tried once with a short server timeout; otherwise transient failures are retried."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        timeout = min(cfg.server_timeout_ms, FAIL_FAST_TIMEOUT_MS) if cfg.fail_fast else cfg.server_timeout_ms
        self.retry_seconds = 0.0 if cfg.fail_fast else cfg.retry_seconds
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
            message = redact(f"MONGODB_URI {redact(cfg.uri)!r} is not usable: {exc}")
            if any(s in str(exc) for s in _DNS_UNREACHABLE):  # mongodb+srv:// while DNS is down
                raise DatabaseError(message) from None
            raise ConfigError(message) from None
        self._session: Any = None
        self.on_session: Callable[[Any], None] | None = None
        db = self.client.get_database(cfg.database, codec_options=RAW)
        self.collection = db.get_collection(cfg.collection)
        self.leases = db.get_collection(LEASES, write_concern=WriteConcern("majority"))

    def close(self) -> None:
        if self._session is not None:
            self._session.end_session()
            self._session = None
        self.client.close()

    # -- retries ----------------------------------------------------------------------------------

    def retrying(self, what: str, fn: Callable[[], T]) -> T:
        """Run `fn`, retrying transient failures for up to retry_seconds; map the rest."""
        def before_sleep(state: Any) -> None:
            log.warning("mongodb.retry", what=what, attempt=state.attempt_number,
                        error=_describe(state.outcome.exception()), server=redact(self.cfg.uri))

        try:
            for attempt in Retrying(retry=retry_if_exception(is_transient), reraise=True,
                                    wait=wait_exponential(multiplier=0.5, max=15),
                                    stop=stop_after_delay(self.retry_seconds), before_sleep=before_sleep):
                with attempt:
                    return fn()
        except pe.PyMongoError as exc:
            raise self._mapped(what, exc) from None
        raise AssertionError("unreachable")  # pragma: no cover - Retrying either returns or raises

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

    def expired_filter(self, cutoff: int) -> dict[str, Any]:
        """Documents whose date field holds a BSON date before `cutoff` (ms). MongoDB also matches
        arrays holding such a date and paths through arrays: `expired` checks each document."""
        return {self.cfg.date_field: {"$lt": expiry.bson_date(_clamp(cutoff)), "$type": "date"}}

    def expired(self, cutoff: int) -> Iterator[tuple[RawBSONDocument, int | None, str | None]]:
        """(document, date in ms, None) for every expired document, oldest first, with its exact
        bytes -- or (document, None, reason) for one the query matched whose date field is not a
        single date (it must stay). Resumes after a transient failure or a lost cursor from the last
        document accepted (sort key (date, _id))."""
        f = self.cfg.date_field
        last: tuple[int, Any] | None = None
        while True:
            query = self.expired_filter(cutoff)
            if last is not None:
                after = expiry.bson_date(last[0])
                query = {"$and": [query, {"$or": [{f: {"$gt": after}}, {f: after, "_id": {"$gt": last[1]}}]}]}
            cursor = (self.collection.find(query).sort([(f, 1), ("_id", 1)])
                      .batch_size(self.cfg.batch_size).allow_disk_use(True))
            try:
                for doc in cursor:
                    ms, reason = expiry.date_ms(doc, f)
                    if ms is not None and ms >= cutoff:
                        ms, reason = None, "date field is an array or path matched by an older element"
                    if ms is not None:
                        last = (ms, doc["_id"])
                    yield doc, ms, reason
                return
            except pe.PyMongoError as exc:
                # a lost cursor (server restarted, failover) is resumed like a network error
                if self.cfg.fail_fast or not (is_transient(exc) or isinstance(exc, pe.CursorNotFound)):
                    raise self._mapped("read expired documents", exc) from None
                log.warning("mongodb.retry", what="read expired documents", error=_describe(exc))
                self.retrying("reconnect", lambda: self.client.admin.command("ping"))
            finally:
                cursor.close()

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

    def backlog(self, watermark: int) -> tuple[int, dt.datetime | None]:
        """Expired documents not archived yet: how many, and the date of the oldest."""
        f = self.cfg.date_field
        query = {f: {"$lt": expiry.bson_date(_clamp(watermark)), "$type": "date", "$not": {"$type": "array"}}}
        doc = self.retrying("find oldest expired", lambda: self.collection.find_one(query, sort=[(f, 1)],
                                                                                 projection={f: 1}))
        oldest = expiry.date_ms(doc, f)[0] if doc is not None else None
        return self.count(query), expiry.to_datetime(oldest) if oldest is not None else None

    def expired_days(self, watermark: int) -> dict[int, int]:
        """Expired documents not archived yet, per UTC day: {start of the day in ms: count}. One
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
        in one majority transaction that also checks the lease's fencing token. Documents are
        hashed as the cursor streams them: memory stays one server batch, whatever their size."""
        ids = [i for i, _ in batch]
        wanted = {index.key_of(i): (i, sha) for i, sha in batch}

        def txn(session: Any) -> DeleteOutcome:
            self._check_lease(lease, session)
            current = {index.key_of(d["_id"]): (hashlib.sha256(d.raw).hexdigest(), len(d.raw))
                       for d in self.collection.find({"_id": {"$in": ids}}, session=session)}
            out = DeleteOutcome()
            same = []
            for key, (_id, sha) in wanted.items():
                found = current.get(key)
                if found is None:
                    out.gone += 1
                elif found[0] == sha:
                    same.append(_id)
                    out.bytes += found[1]
                else:
                    out.changed += 1
            if same:
                result = self.collection.delete_many({"_id": {"$in": same}}, session=session)
                if result.deleted_count != len(same):  # cannot happen under snapshot isolation
                    raise DatabaseError(f"deleted {result.deleted_count} of {len(same)} checked documents; aborted")
            faults.hit("delete-txn")  # inside the open transaction, before its commit
            out.deleted = len(same)
            return out

        def run() -> DeleteOutcome:
            session = self._delete_session()
            return session.with_transaction(txn, read_concern=ReadConcern("snapshot"),
                                            write_concern=WriteConcern("majority"))

        return self.retrying("guarded delete", run)

    def _delete_session(self) -> Any:
        """One session for this instance's delete transactions; its id is handed to `on_session`
        (the state file) so that after a crash the next instance can end a transaction left open."""
        if self._session is None:
            self._session = self.client.start_session()
            if self.on_session is not None:
                self.on_session(self._session.session_id)
        return self._session

    def durability_barrier(self, lease: Lease) -> None:
        """A plain journaled write after a segment's delete transactions: a server that syncs
        transaction commits lazily has them on disk once this is acknowledged."""
        self.retrying("durability barrier", lambda: self.leases.with_options(
            write_concern=WriteConcern("majority", j=True)).update_one(
            {"_id": self.cfg.namespace, "owner": lease.owner}, {"$set": {"synced_at": self._now()}}))

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

    def acquire_lease(self, take_from: str | None = None) -> Lease | None:
        """Take or renew the collection's lease; None while another live instance holds it
        (`take_from` names a holder known to be dead, whose lease is taken at once). Every lease
        operation carries maxTimeMS: a killed instance's open transaction can make it wait, and it
        is retried past the server's transaction lifetime, never waited on forever."""
        ns, now = self.cfg.namespace, self._now()
        expires = now + dt.timedelta(seconds=self.cfg.lease_seconds)
        free = [{"owner": self.owner}, {"expires_at": {"$lte": now}}] + ([{"owner": take_from}] if take_from else [])

        def attempt() -> Lease | None:
            try:
                doc = self.leases.find_one_and_update(
                    {"_id": ns, "$or": free},
                    [{"$set": {"token": {"$cond": [{"$eq": ["$owner", self.owner]}, "$token",
                                                   {"$add": [{"$ifNull": ["$token", 0]}, 1]}]},
                               "owner": self.owner, "expires_at": expires, "renewed_at": now}}],
                    upsert=True, return_document=ReturnDocument.AFTER, maxTimeMS=_LEASE_MAX_TIME_MS)
            except pe.DuplicateKeyError:
                return None  # the lease document exists and is held by someone else
            doc = bson.decode(doc.raw)
            return Lease(self.owner, int(doc["token"]))

        return self.retrying("acquire lease", attempt)

    def lease_holder(self) -> dict[str, Any] | None:
        doc = self.retrying("read lease", lambda: self.leases.find_one({"_id": self.cfg.namespace},
                                                                       max_time_ms=_LEASE_MAX_TIME_MS))
        return bson.decode(doc.raw, RAW.with_options(document_class=dict)) if doc is not None else None

    def release_lease(self, lease: Lease) -> None:
        """Free the lease at once (expired since 1970): the next `run --once` need not wait."""
        self.retrying("release lease", lambda: self.leases.update_one(
            {"_id": self.cfg.namespace, "owner": lease.owner, "token": lease.token},
            {"$set": {"expires_at": dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc), "released_at": self._now()}}))

    def check_lease(self, lease: Lease) -> None:
        """Raise LeaseLost unless the lease is still ours (owner and fencing token) and unexpired:
        asked right before a segment is published."""
        now = self._now()
        doc = self.retrying("check lease", lambda: self.leases.find_one(
            {"_id": self.cfg.namespace, "owner": lease.owner, "token": lease.token, "expires_at": {"$gt": now}},
            projection={"_id": 1}, max_time_ms=_LEASE_MAX_TIME_MS))
        if doc is None:
            raise LeaseLost(f"lease on {self.cfg.namespace} (token {lease.token}) is no longer ours; "
                            "nothing published")

    def _check_lease(self, lease: Lease, session: Any) -> None:
        """Fencing: inside the delete transaction, the lease must still be ours and unexpired.
        Writing it makes a concurrent take-over conflict with this transaction."""
        now = self._now()
        doc = self.leases.find_one_and_update(
            {"_id": self.cfg.namespace, "owner": lease.owner, "token": lease.token, "expires_at": {"$gt": now}},
            {"$set": {"fenced_at": now}}, session=session)
        if doc is None:
            raise LeaseLost(f"lease on {self.cfg.namespace} (token {lease.token}) is no longer ours; deletes stopped")

    # -- change stream ------------------------------------------------------------------------------

    def watch(self, resume_token: Any | None) -> Any | None:
        """A change stream on inserts/updates/replaces, or None if the server has none."""
        pipeline = [{"$match": {"operationType": {"$in": ["insert", "update", "replace"]}}}]
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


def _clamp(ms: int) -> int:
    """Keep a computed date inside what BSON (int64 milliseconds) can carry."""
    return max(-(2 ** 63), min(2 ** 63 - 1, ms))
