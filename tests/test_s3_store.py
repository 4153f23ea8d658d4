"""Sealed files in an S3-API store (store/s3.py) on a real server process (moto, tests/s3_server.py):
the same contract as the local directory, the daemon's seal confirmed before any delete, reading by
ranged GETs, crashes and failures between upload and delete, and names never taken twice."""
from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import signal
import subprocess
import sys
import time

import bson
import pytest
from bson import json_util
from bson.raw_bson import RawBSONDocument

from archiverd import faults
from archiverd.errors import SegmentError, StorageError
from archiverd.format import index
from archiverd.service.archiver import Archiver
from archiverd.service.daemon import Daemon
from archiverd.service.lease import ARCHIVE_ID_FILE
from archiverd.service.source import LeaseLost, Source
from archiverd.service.state import State
from archiverd.store import objects
from archiverd.store.objects import LocalStore, ObjectExists
from bench.corpus import experience
from tests.reliability import ROOT, World, crash_cycle_at, wait_stopped
from tests.s3_server import S3Server


@pytest.fixture(params=["local", "s3"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalStore(tmp_path / "store")
    return objects.open_url(request.getfixturevalue("s3"))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_every_store_keeps_the_same_contract(store):
    data = os.urandom(700_000)
    assert not store.exists("2026/08/01/part-0001.mkv") and store.size("2026/08/01/part-0001.mkv") is None
    assert store.names("2026/") == []
    store.put_new("2026/08/01/part-0001.mkv", data, _sha(data))
    store.put_new("2026/08/01/part-0001.index.json", b"{}", _sha(b"{}"))
    store.put_new("2026/08/02/part-0001.mkv", b"x", _sha(b"x"))
    assert store.size("2026/08/01/part-0001.mkv") == len(data) and store.sha256("2026/08/01/part-0001.mkv") == _sha(data)
    assert store.names("2026/08/01/") == ["2026/08/01/part-0001.index.json", "2026/08/01/part-0001.mkv"]
    assert store.segments("2026/") == ["2026/08/01/part-0001.mkv"]  # the other video has no index
    assert store.next_part("2026/08/01") == "2026/08/01/part-0002.mkv"
    assert store.next_part("2026/08/03") == "2026/08/03/part-0001.mkv"
    with store.open("2026/08/01/part-0001.mkv") as source:
        assert source.size == len(data)
        assert source.read(123_456, 1000) == data[123_456:124_456]
        assert source.read(len(data) - 10, 100) == data[-10:]
    with store.open("2026/08/01/part-0001.mkv") as source:
        assert source.read(len(data), 100) == b""  # at its end, as a file reads
    assert store.read("2026/08/01/part-0001.index.json", 100) == b"{}"
    with pytest.raises(SegmentError, match="larger than"):
        store.read("2026/08/01/part-0001.mkv", 100)
    with pytest.raises(SegmentError, match="missing"):
        store.read("2026/08/01/part-0009.index.json", 100)
    with pytest.raises(SegmentError, match="no such segment"):
        store.open("2026/08/01/part-0009.mkv")


def test_no_store_ever_replaces_an_object(store):
    store.put_new("a/part-0001.mkv", b"first", _sha(b"first"))
    with pytest.raises(ObjectExists, match="refusing to overwrite"):
        store.put_new("a/part-0001.mkv", b"second", _sha(b"second"))
    with store.open("a/part-0001.mkv") as source:
        assert source.read(0, 100) == b"first"


def test_an_upload_the_store_does_not_confirm_is_an_error(s3):
    """What the store holds must have the SHA-256 that was verified, or nothing counts as uploaded."""
    store = objects.open_url(s3)
    with pytest.raises(Exception, match="other bytes than were verified"):
        store.put_new("a/part-0001.mkv", b"what was sent", _sha(b"what was verified"))


def test_ranged_reads_fetch_only_what_is_asked(s3):
    store = objects.open_url(s3)
    data = os.urandom(3 << 20)
    store.put_new("v.mkv", data, _sha(data))
    with store.open("v.mkv") as source:
        for offset in (0, 100, 5000, 2 << 20):
            assert source.read(offset, 200) == data[offset:offset + 200]
        assert source.requests == 2  # the first three fall inside one read-ahead span
        assert source.read(1 << 20, 100_000) == data[1 << 20:(1 << 20) + 100_000]  # a large read: exactly that
        assert source.requests == 3 and source.read((1 << 20) + 100_000, 10) == data[(1 << 20) + 100_000:][:10]
        assert source.requests == 4


# -- the daemon's seal into a bucket ------------------------------------------------------------------

NOW = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)


def _seed(collection, n: int, start: int = 0, embeddings: bool = False) -> dict[str, bytes]:
    docs = [RawBSONDocument(bson.encode(experience(i, when=NOW - dt.timedelta(days=120),
                                                   embeddings=embeddings)))
            for i in range(start, start + n)]
    collection.insert_many(docs)
    return {index.key_of(d["_id"]): d.raw for d in docs}


def _bucket_store(cfg) -> objects.Store:
    return objects.for_collection(cfg)


def _archived(store: objects.Store) -> list[tuple[str, bytes]]:
    """(id key, exact bytes) of every document in every committed segment, each segment verified."""
    out = []
    for name in store.segments():
        reader = store.reader(name)
        assert reader.verify().ok, name
        out += [(index.id_key(e["_id"]), raw) for e, raw in zip(reader.entries(), reader)]
    return out


def _in_db(collection) -> set[str]:
    return {index.key_of(d["_id"]) for d in collection.find({}, projection={"_id": 1})}


def _staged_files(cfg) -> list[str]:
    """What the seal left in the local staging directory besides the state file, its lock and the
    archive's identity (service/lease.py)."""
    return sorted(p.name for p in cfg.archive_dir.rglob("*")
                  if p.is_file() and p.name not in ("archiverd-state.json", ".archiverd-state.lock", ARCHIVE_ID_FILE))


@pytest.fixture
def s3cfg(cfg, s3):
    return dataclasses.replace(cfg, archive_url=s3, segment_max_docs=6)


def test_run_once_seals_into_the_bucket_and_every_reader_gets_the_exact_bytes_back(mongo_uri, tmp_path, s3):
    world = World(mongo_uri, tmp_path, ARCHIVERD_ARCHIVE_URL=s3)
    try:
        world.seed(10, fresh=2, embeddings_every=3)
        originals = {index.key_of(d["_id"]): d.raw for d in world.coll.find()}
        proc = world.cli("run", "--once")
        assert proc.returncode == 0, proc.stderr
        assert world.expired_count() == 0 and world.coll.count_documents({}) == 2
        collection_url = f"{s3}/{world.database}/eat_agent_experiences"
        store = objects.open_url(collection_url)
        segments = store.segments()
        assert len(segments) == 3  # the documents of three days: one segment each
        for name in segments:  # video, index and the derived vector sidecar, nothing else
            stem = name.removesuffix(".mkv")
            assert store.names(stem) == [f"{stem}.index.json", f"{stem}.mkv", f"{stem}.vectors"]
        archived = _archived(store)
        assert len(archived) == 10 and all(originals[k] == raw for k, raw in archived)
        assert not [p for p in world.archive_dir.rglob("part-*")]  # nothing sealed stays local

        verify = world.cli("verify", f"{collection_url}/")
        assert verify.returncode == 0 and verify.stdout.count("OK ") == 3, verify.stderr
        key, raw = archived[3]
        _id = RawBSONDocument(raw)["_id"]
        video = next(n for n in segments if any(index.id_key(e["_id"]) == key for e in store.load_index(n)["docs"]))
        got = subprocess.run([sys.executable, "-m", "archiverd", "get", "--bson", "--segment",
                              store.where(video), str(_id)], env=world.env(), capture_output=True, timeout=120)
        assert got.returncode == 0 and got.stdout == raw, got.stderr
        restored = world.cli("restore", f"{collection_url}/", "--to", f"{world.database}.restored")
        assert restored.returncode == 0, restored.stderr
        back = {index.key_of(d["_id"]): d.raw for d in world.client[world.database]["restored"].find()}
        assert back == {k: raw for k, raw in archived}
    finally:
        world.close()


def test_one_document_is_read_with_a_few_ranged_gets_not_the_whole_video(s3cfg, collection):
    docs = _seed(collection, 60, embeddings=True)
    assert Daemon(dataclasses.replace(s3cfg, segment_max_docs=0, block_bytes=256 << 10)).once()[0] == 0
    store = _bucket_store(s3cfg)
    (name,) = store.segments()
    fetched: list[int] = []
    ranged = store.range

    def counted(n: str, offset: int, length: int) -> bytes:
        data = ranged(n, offset, length)
        fetched.append(len(data))
        return data

    store.range = counted  # type: ignore[method-assign]
    reader = store.reader(name)
    entry = reader.entries()[37]
    assert reader.get(index.from_json(entry["_id"])) == docs[index.id_key(entry["_id"])]
    size = store.size(name)
    assert sum(fetched) < size / 3, (sum(fetched), size)  # its own frames (and the file's head) only
    print(f"get of one document fetched {sum(fetched)} of {size} bytes in {len(fetched)} ranged GETs")


@pytest.mark.parametrize("point", ["seal:video-uploaded", "seal:uploaded", "commit", "delete-batch"])
def test_a_crash_between_upload_and_delete_loses_nothing_and_seals_nothing_twice(s3cfg, collection, point):
    docs = _seed(collection, 8)
    crash_cycle_at(s3cfg, point)
    store = _bucket_store(s3cfg)
    first = {n: store.sha256(n) for n in store.names()}
    committed = bool(store.segments())
    assert committed == (point != "seal:video-uploaded")
    if not committed:
        assert _in_db(collection) == set(docs)  # nothing deleted against an uncommitted upload
    assert State(s3cfg.state_file).pending  # the journal knows what to finish

    code, stats = Daemon(s3cfg).once()  # the rerun
    assert code == 0
    assert {n: store.sha256(n) for n in first} == first  # nothing replaced, nothing removed
    archived = _archived(store)
    assert sorted(k for k, _ in archived) == sorted(docs)  # every document once, in committed segments
    assert all(docs[k] == raw for k, raw in archived)
    assert _in_db(collection) == set() and State(s3cfg.state_file).pending == []
    if not committed:  # the uploaded video without an index stays, and is not a segment
        assert len(store.videos()) == len(store.segments()) + 1
    assert _staged_files(s3cfg) == []


def test_a_crash_by_signal_after_the_upload_is_finished_by_the_next_run(mongo_uri, tmp_path, s3):
    world = World(mongo_uri, tmp_path, ARCHIVERD_ARCHIVE_URL=s3)
    try:
        world.seed(9)
        assert world.crash_once("seal:uploaded", 1) == -9
        proc = world.run_once()
        assert proc.returncode == 0, proc.stderr
        assert world.expired_count() == 0
        store = objects.open_url(f"{s3}/{world.database}/eat_agent_experiences")
        keys = [k for k, _ in _archived(store)]
        assert len(keys) == len(set(keys)) == 9
    finally:
        world.close()


@pytest.mark.parametrize("point", ["seal:verified", "seal:video-uploaded"])
def test_a_store_that_fails_mid_upload_fails_the_cycle_and_nothing_is_deleted(cfg, collection, point):
    server = S3Server().start()
    env = server.environment()
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        import boto3
        boto3.client("s3").create_bucket(Bucket="flaky")
        bcfg = dataclasses.replace(cfg, archive_url="s3://flaky/archives", segment_max_docs=6)
        docs = _seed(collection, 8)

        def die(at: str) -> None:
            if at == point:
                server.stop()  # the store goes away mid-seal

        with faults.installed(die), pytest.raises(StorageError, match="cannot upload"):
            Daemon(bcfg).once()  # `run --once` exits 5; the daemon logs it and retries at its next cycle
        assert _in_db(collection) == set(docs)  # nothing deleted
        assert State(bcfg.state_file).pending  # the store could not say what it holds: recovery looks again

        server.start()  # back, empty (moto keeps nothing): a store that lost the upload too
        boto3.client("s3").create_bucket(Bucket="flaky")
        assert Daemon(bcfg).once()[0] == 0
        archived = _archived(_bucket_store(bcfg))
        assert sorted(k for k, _ in archived) == sorted(docs) and all(docs[k] == raw for k, raw in archived)
        assert _in_db(collection) == set() and State(bcfg.state_file).pending == []
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_a_second_instance_cannot_overwrite_an_object(s3cfg, collection):
    """Two instances that both believe they may seal part-0001 of a day: the store takes one upload
    under that name; the other's seal fails and deletes nothing, and its rerun takes the next part."""
    docs = _seed(collection, 5)
    store = _bucket_store(s3cfg)
    other = b"another instance's video"

    def race(at: str) -> None:
        if at == "seal:verified":  # the other instance's upload lands first
            (pending,) = State(s3cfg.state_file).pending
            store.put_new(pending, other, hashlib.sha256(other).hexdigest())

    with faults.installed(race), pytest.raises(ObjectExists, match="refusing to overwrite"):
        Daemon(s3cfg).once()
    assert _in_db(collection) == set(docs)
    (taken,) = store.names()
    with store.open(taken) as source:
        assert source.read(0, 100) == other  # not overwritten
    assert Daemon(s3cfg).once()[0] == 0
    assert store.names()[0] == taken and store.segments() == [taken.replace("part-0001", "part-0002")]
    assert sorted(k for k, _ in _archived(store)) == sorted(docs) and _in_db(collection) == set()


def test_an_instance_that_lost_its_lease_uploads_nothing(s3cfg, collection):
    docs = _seed(collection, 5)
    source = Source(s3cfg)
    lease = source.acquire_lease()

    def steal(at: str) -> None:
        if at == "seal:verified":
            source.leases.update_one({"_id": s3cfg.namespace}, {"$set": {"owner": "someone-else"}, "$inc": {"token": 1}})

    with faults.installed(steal), pytest.raises(LeaseLost):
        Archiver(s3cfg, source, State(s3cfg.state_file)).run_cycle(lease)
    assert _bucket_store(s3cfg).names() == [] and _in_db(collection) == set(docs)
    assert State(s3cfg.state_file).pending == []


@pytest.mark.parametrize("point", ["seal:video-uploaded", "seal:key-uploaded"])
def test_a_holder_that_loses_its_day_while_uploading_commits_nothing(s3cfg, collection, tmp_path, point):
    """The fencing check before the first PUT is not enough in a bucket: the video's upload and
    read-back take long (a paused process, a slow link), and meanwhile the day's lease may lapse and
    be taken by another process, which seals the same documents under the next part. The index --
    the commit point -- goes up only while the day is still this process's: a stale holder leaves
    an uncommitted upload (an orphan the day's holder drops), never a second committed copy."""
    from archiverd.crypto import keyring
    if point == "seal:key-uploaded":  # an encrypted segment: video, key file, then index
        key_file = tmp_path / "master.key"
        keyring.create(key_file, keyring.Keyring([keyring.MasterKey.generate()]))
        s3cfg = dataclasses.replace(s3cfg, encryption_key_file=key_file)
    docs = _seed(collection, 5)
    source = Source(s3cfg)
    future = dt.datetime.now(dt.timezone.utc) + dt.timedelta(hours=1)

    def taken_over(at: str) -> None:
        if at == point:  # another process takes the day meanwhile
            source.leases.update_many({"_id": {"$regex": r"\$"}}, {"$set": {"owner": "other-host:1:x",
                                                                            "expires_at": future},
                                                                   "$inc": {"token": 1}})

    with faults.installed(taken_over):
        stats = Archiver(s3cfg, source, State(s3cfg.state_file)).run_cycle(None)
    assert stats.days_lost == 1 and stats.deleted == 0
    store = _bucket_store(s3cfg)
    assert store.segments() == []  # nothing committed by a process that no longer held the day
    assert _in_db(collection) == set(docs)


def test_a_holder_paused_during_its_upload_and_resumed_after_another_sealed_the_day_commits_nothing(
        mongo_uri, tmp_path, s3):
    """Real processes: A is paused (SIGSTOP) right after its video is uploaded; its day lease lapses;
    B takes the day, sees A's uploaded video, seals the day under the next part and deletes. A
    resumes: its fencing check before the index finds the day no longer its own, so A commits
    nothing -- every document is in exactly one committed segment, B's."""
    world = World(mongo_uri, tmp_path, ARCHIVERD_ARCHIVE_URL=s3, ARCHIVERD_SHARED_BACKLOG="true",
                  ARCHIVERD_SEGMENT_MAX_DOCS="0", ARCHIVERD_LEASE_SECONDS="3")
    try:
        world.seed(expired=6)
        a = subprocess.Popen([sys.executable, "-m", "archiverd", "run", "--once"], cwd=ROOT, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True,
                             env=world.env(_ARCHIVERD_CRASH_AT="seal:video-uploaded@1:STOP"))
        try:
            wait_stopped(a)
            time.sleep(3.5)  # A's day lease lapses (its renewer is paused with it)
            b = world.cli("run", "--once")
            assert b.returncode == 0 and "event=recovery.orphan_uploaded" in b.stderr, b.stderr
        finally:
            a.send_signal(signal.SIGCONT)
            _, a_err = a.communicate(timeout=120)
        assert a.returncode == 1 and "event=day.lost" in a_err and "segment.sealed" not in a_err, a_err
        store = objects.open_url(f"{s3}/{world.database}/eat_agent_experiences")
        keys = [k for k, _ in _archived(store)]
        assert len(keys) == len(set(keys)) == 6 and world.coll.count_documents({}) == 0
        assert len(store.orphans()) == 1 and len(store.segments()) == 3  # A's video, never committed
    finally:
        world.close()


def test_a_process_sealing_into_another_store_is_refused_a_day_left_unfinished(s3cfg, collection):
    """Processes sharing a backlog must share its store as well as its archive directory (the state
    file): a process whose ARCHIVERD_ARCHIVE_URL differs (a typo on one host, or one host without
    it) would not find the segment a dead holder committed, drop its journal entry and seal the
    documents a second time, elsewhere -- an archive split between two stores that `get`, `find`
    and `export` each see only half of. Refused with exit 3, as another archive directory is;
    once the day is finished, as with directories, the other store is no obstacle."""
    from archiverd.service.lease import SharedArchiveError
    docs = _seed(collection, 5)
    crash_cycle_at(s3cfg, "commit")  # committed into the bucket, nothing deleted: the day is unfinished
    for other in (dataclasses.replace(s3cfg, archive_url=s3cfg.archive_url + "-elsewhere"),
                  dataclasses.replace(s3cfg, archive_url=None)):  # same archive directory, another store
        with pytest.raises(SharedArchiveError, match="must share one archive"):
            Daemon(other).once()
    store = _bucket_store(s3cfg)
    assert _in_db(collection) == set(docs) and len(store.segments()) == 1
    assert Daemon(s3cfg).once()[0] == 0  # the store's own process finishes the day
    assert sorted(k for k, _ in _archived(store)) == sorted(docs) and _in_db(collection) == set()
    assert Daemon(dataclasses.replace(s3cfg, archive_url=None)).once()[0] == 0


def test_the_staging_directory_is_swept_of_unpublished_temporaries_only(s3cfg, collection):
    day = s3cfg.collection_dir / "2026" / "08" / "01"
    day.mkdir(parents=True)
    (day / ".part-0001.mkv.0a1b2c3d.tmp").write_bytes(b"an interrupted seal's named temporary")
    (day / "part-0001.mkv").write_bytes(b"not archiverd's to remove")
    docs = _seed(collection, 3)
    assert Daemon(s3cfg).once()[0] == 0
    assert sorted(p.name for p in day.iterdir()) == ["part-0001.mkv"]
    assert sorted(k for k, _ in _archived(_bucket_store(s3cfg))) == sorted(docs)


# -- the commands around it ---------------------------------------------------------------------------

def test_check_and_status_read_the_bucket_and_what_needs_a_directory_says_so(mongo_uri, tmp_path, s3):
    world = World(mongo_uri, tmp_path, ARCHIVERD_ARCHIVE_URL=s3)
    try:
        world.seed(6)
        assert world.cli("run", "--once").returncode == 0
        store = objects.open_url(f"{s3}/{world.database}/eat_agent_experiences")
        check = world.cli("check", "--read-data", "-v")
        assert check.returncode == 0 and check.stdout.count("(2 documents, read)") == 3, check.stdout + check.stderr
        status = world.cli("status")
        assert status.returncode == 0 and "in store" in status.stdout and "3 segments" in status.stdout, status.stdout
        listed = world.cli("list", "--segments", "--json")
        assert listed.returncode == 0, listed.stderr
        out = json.loads(listed.stdout)
        assert out["totals"]["documents"] == 6 and out["totals"]["segments"] == 3
        assert out["totals"]["bytes"] == sum(store.listing().values())  # video, index, sidecar of each
        checked = world.cli("config", "--check")
        assert checked.returncode == 0 and "3 videos" in checked.stdout + checked.stderr, checked.stdout
        missing = world.cli("config", "--check", ARCHIVERD_ARCHIVE_URL="s3://no-such-bucket-here/x")
        assert missing.returncode == StorageError.exit_code and "bucket does not exist" in missing.stdout + missing.stderr
        # an uploaded video never committed: check and status name it, nothing is lost
        orphan = store.next_part(store.segments()[0].rsplit("/", 1)[0])
        store.put_new(orphan, b"uploaded, never committed", hashlib.sha256(b"uploaded, never committed").hexdigest())
        check = world.cli("check")
        assert check.returncode == SegmentError.exit_code and "orphan" in check.stdout, check.stdout
        assert world.cli("status").returncode == SegmentError.exit_code
        assert world.cli("check", "--repair").returncode == 3
        proc = world.cli("catalog", "rebuild")  # the catalog of a bucket lives in memory, rebuilt on every read
        assert proc.returncode == 3 and "object store" in proc.stderr and "Traceback" not in proc.stderr
        assert store.segments() and store.names()  # nothing removed
    finally:
        world.close()


def test_get_find_and_export_read_the_bucket_through_a_local_catalog(mongo_uri, tmp_path, s3):
    world = World(mongo_uri, tmp_path, ARCHIVERD_ARCHIVE_URL=s3)
    try:
        world.seed(9, embeddings_every=3)
        originals = {index.key_of(d["_id"]): d.raw for d in world.coll.find()}
        assert world.cli("run", "--once").returncode == 0
        key, raw = sorted(originals.items())[4]
        got = subprocess.run([sys.executable, "-m", "archiverd", "get", "--bson", str(RawBSONDocument(raw)["_id"])],
                             env=world.env(), capture_output=True, timeout=120)
        assert got.returncode == 0 and got.stdout == raw, got.stderr
        count = world.cli("find", "--count")
        assert count.returncode == 0 and count.stdout.strip() == "9", count.stdout + count.stderr
        exported = world.cli("export", "--canonical")
        assert exported.returncode == 0, exported.stderr
        back = [json_util.loads(line) for line in exported.stdout.splitlines()]
        assert {index.key_of(d["_id"]): bson.encode(d) for d in back} == originals
        assert (world.collection_dir / "catalog.sqlite").exists()  # kept locally, derived from the indexes
        assert not list(world.archive_dir.rglob("part-*"))
    finally:
        world.close()


@pytest.mark.parametrize("url, why", [("http://bucket/x", "s3://BUCKET/PREFIX"), ("s3://Bad_Bucket/x", "bucket name"),
                                      ("s3://bucket/a/../b", "plain path")])
def test_a_bad_archive_url_is_a_configuration_error(tmp_path, url, why):
    proc = subprocess.run([sys.executable, "-m", "archiverd", "status"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "ARCHIVERD_ARCHIVE_URL": url, "ARCHIVERD_ARCHIVE_DIR": str(tmp_path)})
    assert proc.returncode == 3 and why in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


def test_an_encrypted_segment_uploads_its_key_file_before_its_index(s3, tmp_path, text_docs):
    """The seal's order in a store: video, key file, index (the commit point), each confirmed."""
    from archiverd.crypto import keyring
    from archiverd.format.writer import SegmentWriter
    store = objects.open_url(s3)
    order: list[str] = []
    with faults.installed(order.append):
        with SegmentWriter(tmp_path / "part-0001.mkv", encryption=keyring.MasterKey.generate()) as writer:
            for raw in text_docs[:10]:
                writer.append(raw)
            writer.seal(upload=objects.uploader(store, "2026/08/01/part-0001.mkv"))
    assert [p for p in order if p.endswith("uploaded")] == ["seal:video-uploaded", "seal:key-uploaded", "seal:uploaded"]
    assert store.names() == ["2026/08/01/part-0001.index.json", "2026/08/01/part-0001.key.json",
                             "2026/08/01/part-0001.mkv"]


def test_without_boto3_only_an_s3_archive_needs_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "boto3", None)  # as if it were not installed
    store = objects.open_url("s3://some-bucket/archives")  # nothing imported yet
    with pytest.raises(Exception, match=r"pip install 'archiverd\[s3\]'") as caught:
        store.names()
    assert caught.value.exit_code == 3
    local = LocalStore(tmp_path)
    local.put_new("a/part-0001.mkv", b"x", _sha(b"x"))
    assert local.names() == ["a/part-0001.mkv"]


def test_search_in_a_bucket_ranks_by_the_sidecars_the_seal_uploaded(s3cfg, collection):
    """Search reads each segment's vector sidecar object (uploaded after the commit) and fetches only
    the candidates' vectors by ranged GETs; its answers are those of exact search."""
    import numpy as np

    import archiverd
    from archiverd.query.search import SearchStats, exact_search
    docs = _seed(collection, 24, embeddings=True)
    assert Daemon(dataclasses.replace(s3cfg, segment_max_docs=8)).once()[0] == 0
    store = _bucket_store(s3cfg)
    assert len(store.segments()) == 3 and all(store.exists(n.replace(".mkv", ".vectors")) for n in store.segments())
    field = "embeddings.output_summary_embedding"
    vectors = [(key, bson.decode(raw)["embeddings"]["output_summary_embedding"]) for key, raw in docs.items()]
    query = np.random.default_rng(4).standard_normal(len(vectors[0][1]))
    stats = SearchStats()
    s3cfg.collection_dir.mkdir(parents=True, exist_ok=True)
    with archiverd.Archive(s3cfg.collection_dir, store=store) as archive:
        hits = archive.search(query, field, 5, raw=True, stats=stats)
    assert stats.unindexed == 0 and stats.scanned == 24  # every segment ranked by its sidecar
    assert [(index.key_of(bson.decode(h.document)["_id"]), round(h.score, 9)) for h in hits] == \
        [(key, round(score, 9)) for key, score in exact_search(query, vectors, 5)]
    assert all(docs[index.key_of(bson.decode(h.document)["_id"])] == h.document for h in hits)
