"""An S3-API store that misbehaves on the wire (store/s3.py): a fault-injecting proxy process
(tests/s3_proxy.py) between archiverd and the test server (moto, tests/s3_server.py) loses the answer
to a PUT that landed, serves fewer bytes than a ranged GET asked for, cuts a body short, or answers
with errors. Nothing is deleted from MongoDB unless every object is confirmed; nothing published is
replaced; a reader never takes a store failure for damage, nor returns a partial answer."""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os

import bson
import pytest
from bson.raw_bson import RawBSONDocument

from archiverd.format import index
from archiverd.service.daemon import Daemon
from archiverd.service.state import State
from archiverd.store import objects
from bench.corpus import experience
from tests.s3_proxy import S3Proxy

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


@pytest.fixture
def proxy(s3, s3_server, tmp_path, monkeypatch):
    """The proxy in front of the test's bucket: archiverd (and boto3 in this process) talk to it."""
    started = S3Proxy(s3_server.port, tmp_path).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", started.endpoint)
    yield started
    started.stop()


@pytest.fixture
def pcfg(cfg, s3, proxy):
    return dataclasses.replace(cfg, archive_url=s3, segment_max_docs=0)


def _seed(collection, n: int) -> dict[str, bytes]:
    docs = [RawBSONDocument(bson.encode(experience(i, when=NOW - dt.timedelta(days=120)))) for i in range(n)]
    collection.insert_many(docs)
    return {index.key_of(d["_id"]): d.raw for d in docs}


def _in_db(collection) -> set[str]:
    return {index.key_of(d["_id"]) for d in collection.find({}, projection={"_id": 1})}


def _archived(store: objects.Store) -> dict[str, bytes]:
    out = {}
    for name in store.segments():
        reader = store.reader(name)
        assert reader.verify().ok, name
        out.update((index.id_key(e["_id"]), raw) for e, raw in zip(reader.entries(), reader))
    return out


def test_a_put_that_landed_but_whose_answer_was_lost_is_confirmed_not_refused(pcfg, collection, proxy):
    """The store took the PUT, the answer never arrived, boto3 sent it again: the conditional retry
    finds the name taken -- by these very bytes. That is this seal's own object, confirmed like any
    upload, not another instance's: the seal goes on, nothing is left orphaned."""
    docs = _seed(collection, 5)
    proxy.rules({"method": "PUT", "key": r"part-0001\.mkv$", "action": "drop", "times": 1},
                {"method": "PUT", "key": r"part-0001\.index\.json$", "action": "drop", "times": 1})
    assert Daemon(pcfg).once()[0] == 0
    puts = [r["path"].rsplit("/", 1)[-1] for r in proxy.requests() if r["method"] == "PUT"]
    assert puts.count("part-0001.mkv") == 2 and puts.count("part-0001.index.json") == 2  # each sent again
    store = objects.for_collection(pcfg)
    assert store.orphans() == [] and len(store.segments()) == 1
    assert _archived(store) == docs and _in_db(collection) == set()
    assert State(pcfg.state_file).pending == []


# -- reading: a ranged GET must give exactly the bytes asked for ------------------------------------

@pytest.mark.parametrize("action", ["short", "whole", "cut"])
def test_a_ranged_get_answered_with_other_bytes_than_asked_is_a_store_error(s3, proxy, action):
    """Fewer bytes than the range (consistent headers: no transport error), the whole object from
    its start (a store that ignores Range), or a body cut short of its Content-Length: never handed
    to the reader as those bytes."""
    from archiverd.errors import StorageError
    store = objects.open_url(s3)
    data = os.urandom(300_000)
    store.put_new("v.mkv", data, hashlib.sha256(data).hexdigest())
    proxy.rules({"method": "GET", "key": r"/v\.mkv$", "action": action, "keep": 100})
    with store.open("v.mkv") as source, pytest.raises(StorageError, match="bytes"):
        got = source.read(1000, 5000)
        assert got == data[1000:6000], f"{len(got)} bytes, {'not ' if got != data[1000:6000] else ''}the ones asked for"


def test_a_store_that_serves_fewer_bytes_during_recovery_fails_the_cycle_and_sets_nothing_aside(pcfg, collection,
                                                                                                  proxy):
    """A committed segment whose deletes a crash interrupted is verified by ranged GETs before they
    are finished. A store failing those reads must fail the cycle (exit 5; the next one retries) --
    not set a sound segment aside as damaged and seal its documents a second time."""
    from archiverd.errors import StorageError
    from tests.reliability import crash_cycle_at
    docs = _seed(collection, 5)
    crash_cycle_at(pcfg, "commit")  # sealed and committed, nothing deleted yet
    store = objects.for_collection(pcfg)
    (segment,) = store.segments()
    proxy.rules({"method": "GET", "key": r"part-0001\.mkv$", "action": "short", "keep": 1000})
    with pytest.raises(StorageError, match="ranged GET"):
        Daemon(pcfg).once()
    assert State(pcfg.state_file).get("set_aside") in (None, {}) and store.segments() == [segment]
    assert _in_db(collection) == set(docs)
    proxy.rules()  # the store is well again
    assert Daemon(pcfg).once()[0] == 0
    assert store.segments() == [segment] and _archived(store) == docs and _in_db(collection) == set()


def test_an_object_read_whole_is_checked_against_the_sha256_the_store_recorded(s3, proxy):
    """An index, a key file or a sidecar is read with one GET. A bit flipped on the way (a store
    without TLS, a bad proxy) must not be parsed as a valid index with one `_id` or SHA-256 changed
    (a wrong catalog, a sound segment set aside as damaged): the SHA-256 the store recorded at the
    upload (which `put_new` confirmed) is asked for, and the bytes must match it."""
    from archiverd.errors import StorageError
    store = objects.open_url(s3)
    idx = json.dumps({"docs": [{"_id": {"$oid": f"{n:024x}"}, "sha256": hashlib.sha256(bytes([n])).hexdigest()}
                               for n in range(50)]}).encode()
    store.put_new("2026/08/01/part-0001.index.json", idx, hashlib.sha256(idx).hexdigest())
    proxy.rules({"method": "GET", "key": r"index\.json$", "action": "flip"})
    with pytest.raises(StorageError, match="checksum"):
        got = store.read("2026/08/01/part-0001.index.json", 1 << 20)
        assert got == idx, "other bytes than were stored, handed on as the index"


# -- a store without conditional puts or the versions API ---------------------------------------------

def test_a_store_without_conditional_puts_gets_a_head_first_and_still_never_an_overwrite(s3, proxy):
    """HTTP 501 to `If-None-Match: *`: the name is looked up, then put plainly (under the lease);
    a name that exists is refused all the same, its object untouched."""
    from archiverd.store.objects import ObjectExists
    store = objects.open_url(s3)
    proxy.rules({"method": "PUT", "header": "If-None-Match", "action": "status", "status": 501,
                 "code": "NotImplemented"})
    first = os.urandom(20_000)
    store.put_new("2026/08/01/part-0001.mkv", first, hashlib.sha256(first).hexdigest())
    with pytest.raises(ObjectExists, match="refusing to overwrite"):
        store.put_new("2026/08/01/part-0001.mkv", b"other bytes", hashlib.sha256(b"other bytes").hexdigest())
    with store.open("2026/08/01/part-0001.mkv") as source:
        assert source.read(0, len(first)) == first
    puts = [(r["action"], "If-None-Match" in r["headers"]) for r in proxy.requests()
            if r["method"] == "PUT" and r["path"].endswith(".mkv")]
    assert puts == [("status", True), ("pass", False), ("status", True)]  # 501, then plain; the second: no PUT


def test_a_store_without_the_versions_api_removes_with_one_delete_and_confirms_it(s3, proxy):
    store = objects.open_url(s3)
    store.put_new("2026/08/01/part-0001.mkv", b"x" * 100, hashlib.sha256(b"x" * 100).hexdigest())
    proxy.rules({"method": "GET", "query": "versions", "action": "status", "status": 501, "code": "NotImplemented"})
    assert store.remove("2026/08/01/part-0001.mkv") == 1
    assert store.names() == []
    asked = [(r["method"], r["action"], r["query"]) for r in proxy.requests() if r["method"] in ("GET", "DELETE")]
    assert ("GET", "status") in [(m, a) for m, a, q in asked if "versions" in q]  # the store said 501
    assert [q for m, _, q in asked if m == "DELETE"] == [""]  # then one plain DELETE, no version id


# -- credentials that lack a permission ------------------------------------------------------------

@pytest.mark.parametrize("denied, message", [
    ({"method": "PUT"}, "cannot upload .*: access denied"),  # read-only credentials
    ({"method": "GET", "query": "list-type"}, "cannot list .*: access denied"),  # no s3:ListBucket
])
def test_credentials_without_a_permission_fail_the_cycle_with_one_clear_error_and_delete_nothing(
        pcfg, collection, proxy, denied, message):
    from archiverd.errors import StorageError
    docs = _seed(collection, 4)
    proxy.rules({**denied, "action": "status", "status": 403, "code": "AccessDenied"})
    with pytest.raises(StorageError, match=message) as caught:
        Daemon(pcfg).once()
    assert "\n" not in str(caught.value) and caught.value.exit_code == 5
    assert _in_db(collection) == set(docs) and State(pcfg.state_file).pending == []
    assert not [p for p in pcfg.archive_dir.rglob("*") if p.is_file() and "part-" in p.name]
    proxy.rules()
    assert Daemon(pcfg).once()[0] == 0 and _archived(objects.for_collection(pcfg)) == docs


def test_a_hung_store_cannot_hold_a_stopping_daemon_past_systemds_stop_timeout():
    """A store that accepts a connection and never answers holds one call for at most its attempts
    x (connect + read timeout); with the 20 s a stop gives MongoDB retries, that must end within the
    shipped unit's TimeoutStopSec, or systemd SIGKILLs a daemon it asked to stop (safe, but not a
    clean stop). The earlier setting (max_attempts 3, i.e. 4 attempts, of 120 s) allowed 500 s."""
    import re
    from pathlib import Path

    from archiverd.service.source import STOP_RETRY_SECONDS
    from archiverd.store import s3
    unit = (Path(__file__).resolve().parents[1] / "systemd" / "archiverd.service").read_text()
    stop_timeout = int(re.search(r"^TimeoutStopSec=(\d+)$", unit, re.M).group(1))
    client = s3._client()
    cfg = client.meta.config
    assert (cfg.connect_timeout, cfg.read_timeout) == (s3.CONNECT_TIMEOUT, s3.READ_TIMEOUT)
    assert cfg.retries["total_max_attempts"] == s3.ATTEMPTS  # botocore's max_attempts counts retries only
    assert s3.ATTEMPTS * (s3.CONNECT_TIMEOUT + s3.READ_TIMEOUT) + STOP_RETRY_SECONDS < stop_timeout
