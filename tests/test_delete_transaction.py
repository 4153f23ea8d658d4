"""The guarded delete's transaction when its commit fails: the server itself reports the failures
(SecantusDB's `failCommand` failpoint, scoped to archiverd's connections by appName, as mongod's).
An unknown commit result is resolved by sending the commit again, never by running the delete
again; the count of deleted documents stays right either way; and the retries stop at
retry_seconds with exit code 6. The server going away mid-cycle is in tests/test_reliability.py."""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import bson
import pytest
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient
from pymongo.errors import OperationFailure

from archiverd.errors import DatabaseError
from archiverd.service.source import Source
from bench.corpus import experience
from tests.mongo_server import Server

# applied, but its reply says the majority did not confirm it in time: the result is unknown
APPLIED_UNCONFIRMED = {"writeConcernError": {"code": 64, "codeName": "WriteConcernFailed",
                                             "errmsg": "waiting for replication timed out",
                                             "errInfo": {"wtimeout": True}}}
# refused before it runs: the server does not know the transaction (as after losing its sessions)
REFUSED = {"errorCode": 251, "errorLabels": ["TransientTransactionError"]}
COMMIT_RETRY = "guarded delete: commit (result unknown)"


class Events(logging.Handler):
    """archiverd's log events as (name, fields); `on_event` runs as each one is logged."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self.on_event: Callable[[str, dict[str, Any]], None] = lambda name, fields: None

    def emit(self, record: logging.LogRecord) -> None:
        fields = getattr(record, "fields", {})
        self.seen.append((record.getMessage(), fields))
        self.on_event(record.getMessage(), fields)

    def retries(self, what: str) -> list[dict[str, Any]]:
        return [f for name, f in self.seen if name == "mongodb.retry" and f.get("what") == what]


@pytest.fixture
def events() -> Iterator[Events]:
    handler = Events()
    logger = logging.getLogger("archiverd")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def _has_failpoints(uri: str) -> bool:
    with MongoClient(uri, serverSelectionTimeoutMS=10_000) as client:
        try:
            client.admin.command({"configureFailPoint": "failCommand", "mode": "off"})
        except OperationFailure as exc:
            if exc.code == 59:  # CommandNotFound: started without test commands
                return False
            raise
    return True


@pytest.fixture(scope="module")
def mongo_uri(tmp_path_factory) -> Iterator[str]:
    """A server with mongod's test commands (configureFailPoint) enabled: the one the suite was given
    (ARCHIVERD_TEST_MONGODB_URI) if it has them -- a mongod started with enableTestCommands=1 --, else
    one of this module's own."""
    external = os.environ.get("ARCHIVERD_TEST_MONGODB_URI")
    if external and _has_failpoints(external):
        yield external
        return
    server = Server(tmp_path_factory.mktemp("secantus-failpoints"), test_commands=True).start()
    try:
        yield server.uri
    finally:
        server.stop()


@pytest.fixture
def failpoint(cfg) -> Iterator[Callable[..., None]]:
    """Set the server's failpoint on archiverd's commitTransaction commands (switched off after the test)."""
    client = MongoClient(cfg.uri)

    def configure(mode: Any, data: dict[str, Any]) -> None:
        client.admin.command("configureFailPoint", "failCommand", mode=mode,
                             data={"failCommands": ["commitTransaction"], "appName": "archiverd", **data})

    yield configure
    client.admin.command("configureFailPoint", "failCommand", mode="off")
    client.close()


def _batch(collection, n: int = 5) -> tuple[list[tuple[Any, str]], int]:
    """n expired documents in the collection: the delete batch (_id, SHA-256) and their BSON bytes."""
    when = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=150)
    docs = [RawBSONDocument(bson.encode(experience(i, when=when))) for i in range(n)]
    collection.insert_many(docs)
    return [(d["_id"], hashlib.sha256(d.raw).hexdigest()) for d in docs], sum(len(d.raw) for d in docs)


def _delete(cfg, batch):
    source = Source(cfg)
    try:
        return source.delete_unchanged(batch, source.acquire_lease())
    finally:
        source.close()


def test_an_unknown_commit_result_is_resolved_by_committing_again(cfg, collection, failpoint, events):
    batch, size = _batch(collection)
    failpoint({"times": 1}, APPLIED_UNCONFIRMED)
    out = _delete(cfg, batch)
    assert (out.deleted, out.bytes, out.gone, out.changed) == (5, size, 0, 0)
    assert collection.count_documents({}) == 0
    assert len(events.retries(COMMIT_RETRY)) == 1  # logged, like every other retry
    assert events.retries("guarded delete") == []  # the delete itself ran once


def test_a_commit_applied_then_refused_counts_its_documents_as_deleted(cfg, collection, failpoint, events):
    """The first commit is applied but its result is unknown; the retried commit is refused (a server
    that lost its session records). The delete runs again and finds the documents gone: they were
    deleted by that first commit, not by someone else."""
    batch, size = _batch(collection)
    failpoint({"times": 1}, APPLIED_UNCONFIRMED)

    def refuse_the_retried_commit(name: str, fields: dict[str, Any]) -> None:
        if name == "mongodb.retry" and fields.get("what") == COMMIT_RETRY:
            failpoint({"times": 1}, REFUSED)

    events.on_event = refuse_the_retried_commit
    out = _delete(cfg, batch)
    assert (out.deleted, out.bytes, out.gone) == (5, size, 0)
    assert collection.count_documents({}) == 0
    assert len(events.retries(COMMIT_RETRY)) == 1
    [rerun] = events.retries("guarded delete")  # run again once, after the refusal
    assert rerun["error"].startswith("OperationFailure: Failing command via 'failCommand'"), rerun


def test_a_commit_result_still_unknown_at_retry_seconds_fails_with_exit_6(cfg, collection, failpoint, events):
    batch, _ = _batch(collection)
    failpoint("alwaysOn", APPLIED_UNCONFIRMED)
    with pytest.raises(DatabaseError) as failed:
        _delete(dataclasses.replace(cfg, retry_seconds=2), batch)
    assert failed.value.exit_code == 6 and "unknown" in str(failed.value), failed.value
    assert events.retries(COMMIT_RETRY)  # it waited, and said so
    assert events.retries("guarded delete") == []  # never ran the delete again over an unknown commit
    assert collection.count_documents({}) == 0  # the commit was in fact applied
