"""Private data in an S3-API bucket (issue 13 on object storage), on a real server process (moto,
tests/s3_server.py): encrypted segments sealed into and read back from a bucket, key rotation
where nothing is overwritten, and `prune` and `erase` removing every version of what they remove
in a versioned bucket -- with holds, the audit log, and a crash at each step."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import bson
import pytest
from bson import ObjectId, json_util
from bson.raw_bson import RawBSONDocument

from archiverd import config, faults
from archiverd.crypto import keyring
from archiverd.errors import RemovalRefused
from archiverd.format import encryption, index
from archiverd.format.writer import SegmentWriter
from archiverd.query.ids import parse_id
from archiverd.store import audit, derived, erase, holds, objects, retention
from tests.reliability import World

NEEDLE = "Flat 3, 17 Erasure Lane, Leeds LS1 4AB"
VICTIM = ObjectId(f"{5:024x}")
OLD_DAYS = ["2020-03-01", "2020-03-02"]


def doc(n: int, day: str, text: str | None = None) -> bytes:
    when = dt.datetime.fromisoformat(day).replace(hour=1 + n % 20, tzinfo=dt.timezone.utc)
    return bson.encode({"_id": ObjectId(f"{n:024x}"), "experience_id": f"exp-{n}-{day}", "timestamp": when,
                        "user_query": text or f"ordinary question number {n}", "score": n / 7})


def forms(raw: bytes) -> list[bytes]:
    """What of a document must not be readable in the bucket: its `_id` (bytes, hex) and its text."""
    d = RawBSONDocument(raw)
    text = d.get("user_query") or d.get("primary_goal_description")
    return [d["_id"].binary, str(d["_id"]).encode(), text.encode()[:40]]


def bucket_of(url: str) -> str:
    return objects.parse_url(url)[0]


def every_version(bucket: str) -> dict[tuple[str, str], bytes]:
    """(key, version id) -> bytes of every stored version of every object in the bucket."""
    import boto3
    client = boto3.client("s3")
    out = {}
    for page in client.get_paginator("list_object_versions").paginate(Bucket=bucket):
        for v in page.get("Versions", []):
            got = client.get_object(Bucket=bucket, Key=v["Key"], VersionId=v["VersionId"])
            out[(v["Key"], v["VersionId"])] = got["Body"].read()
    return out


def found_in(bucket: str, raws: list[bytes]) -> list[tuple[str, bytes]]:
    """(object key, form) for every form of these documents found in any version of any object."""
    stored = every_version(bucket)
    return [(key, form) for (key, _), data in stored.items() for raw in raws for form in forms(raw) if form in data]


def versioned(url: str) -> None:
    import boto3
    boto3.client("s3").put_bucket_versioning(Bucket=bucket_of(url), VersioningConfiguration={"Status": "Enabled"})


@pytest.fixture
def keys_in_process():
    """Readers in this process find the configured key file, as the CLI sets it up."""
    yield lambda cfg: encryption.use_keyring(lambda: keyring.from_config(cfg))
    encryption.use_keyring(None)


def bucket_archive(s3: str, tmp_path: Path, *, encrypted: bool, segments: dict[tuple[str, int], list[bytes]]):
    """A collection's archive sealed straight into the bucket (as the daemon's seal uploads it:
    video, key file, index, then the vector sidecar); returns its config and store."""
    env = {"ARCHIVERD_ARCHIVE_DIR": str(tmp_path / "staging"), "ARCHIVERD_ARCHIVE_URL": s3}
    if encrypted:
        env["ARCHIVERD_ENCRYPTION_KEY_FILE"] = str(tmp_path / "master.key")
        ring = keyring.Keyring([keyring.MasterKey.generate()])
        keyring.create(tmp_path / "master.key", ring)
    cfg = config.load(environ=env)
    store = objects.for_collection(cfg)
    for (day, part), raws in segments.items():
        name = f"{day.replace('-', '/')}/part-{part:04d}.mkv"
        staged = tmp_path / "build" / name
        staged.parent.mkdir(parents=True, exist_ok=True)
        with SegmentWriter(staged, encryption=ring.active if encrypted else None) as writer:
            for raw in raws:
                writer.append(raw)
            idx = writer.seal(upload=objects.uploader(store, name))
            derived.after_commit(store, name, idx, writer)
    return cfg, store


def archived(store: objects.Store) -> list[bytes]:
    """Every document of every committed segment of the store, each segment verified first."""
    out = []
    for name in store.segments():
        reader = store.reader(name)
        assert reader.verify().ok, name
        out += list(reader)
    return out


def cli(*args: str, env: dict[str, str], crash_at: str | None = None) -> subprocess.CompletedProcess:
    extra = {"_ARCHIVERD_CRASH_AT": crash_at} if crash_at else {}
    proc = subprocess.run([sys.executable, "-m", "archiverd", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env, **extra})
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


# -- 1. encryption together with an object store --------------------------------------------------

def test_an_encrypted_archive_in_a_bucket_end_to_end_and_its_key_rotated(mongo_uri, tmp_path, s3):
    key_file = tmp_path / "master.key"
    world = World(mongo_uri, tmp_path, ARCHIVERD_ARCHIVE_URL=s3, ARCHIVERD_ENCRYPTION_KEY_FILE=str(key_file))
    try:
        assert world.cli("key", "init").returncode == 0
        world.seed(9, embeddings_every=3)
        originals = {index.key_of(d["_id"]): bytes(d.raw) for d in world.coll.find()}
        proc = world.cli("run", "--once")
        assert proc.returncode == 0, proc.stderr
        assert world.coll.count_documents({}) == 0
        url = f"{s3}/{world.database}/eat_agent_experiences"
        store = objects.open_url(url)
        segments = store.segments()
        assert len(segments) == 3
        for name in segments:
            stem = name.removesuffix(".mkv")
            assert store.names(stem) == [f"{stem}.index.json", f"{stem}.key.json", f"{stem}.mkv", f"{stem}.vectors"]
            assert "sealed" in json.loads(store.read(objects.index_name(name), 1 << 20))  # the private part sealed
        assert found_in(bucket_of(s3), list(originals.values())) == []  # no id, no text, in any object
        assert not list(world.archive_dir.rglob("part-*"))

        # every reader, with the key
        verify = world.cli("verify", f"{url}/")
        assert verify.returncode == 0 and verify.stdout.count("OK ") == 3, verify.stdout + verify.stderr
        check = world.cli("check", "--read-data", "-v")
        assert check.returncode == 0 and check.stdout.count("(3 documents, read)") == 3, check.stdout + check.stderr
        key, raw = sorted(originals.items())[4]
        _id = str(RawBSONDocument(raw)["_id"])
        got = subprocess.run([sys.executable, "-m", "archiverd", "get", "--bson", _id], env=world.env(),
                             capture_output=True, timeout=120)
        assert got.returncode == 0 and got.stdout == raw, got.stderr
        count = world.cli("find", "--count")
        assert count.returncode == 0 and count.stdout.strip() == "9", count.stdout + count.stderr
        exported = world.cli("export", "--canonical")
        assert exported.returncode == 0, exported.stderr
        assert sorted(bson.encode(json_util.loads(line)) for line in exported.stdout.splitlines()) == \
            sorted(originals.values())
        with_vectors = next(r for r in originals.values() if "embeddings" in RawBSONDocument(r))
        hit = world.cli("search", "--field", "embeddings.output_summary_embedding", "--like",
                        str(RawBSONDocument(with_vectors)["_id"]), "-k", "1", "--projection", '{"_id": 1}')
        assert hit.returncode == 0, hit.stderr
        assert hit.stdout and json.loads(hit.stdout)["document"]["_id"] != \
            {"$oid": str(RawBSONDocument(with_vectors)["_id"])}  # the nearest other document
        restored = world.cli("restore", f"{url}/", "--to", f"{world.database}.restored")
        assert restored.returncode == 0, restored.stderr
        back = {index.key_of(d["_id"]): bytes(d.raw) for d in world.client[world.database]["restored"].find()}
        assert back == originals

        # without the key: structure and the store's checksums only, never a document
        keyless = world.cli("check", ARCHIVERD_ENCRYPTION_KEY_FILE="")
        assert keyless.stdout.count("content not checked") == 3, keyless.stdout + keyless.stderr
        nokey = world.cli("get", _id, ARCHIVERD_ENCRYPTION_KEY_FILE="")
        assert nokey.returncode == 3 and nokey.stdout == "", nokey.stdout

        # rotation: a crash after the first re-wrap, then the rerun resumes; nothing is overwritten
        before = {n: store.sha256(n) for n in store.names()}
        assert world.cli("key", "rotate", _ARCHIVERD_CRASH_AT="rotate:rewrapped").returncode == -9
        rotated = world.cli("key", "rotate")
        assert rotated.returncode == 0, rotated.stdout + rotated.stderr
        assert "resumed" in rotated.stdout and "2 segment key files re-wrapped, 1 already under it" in rotated.stdout
        ring = keyring.load(key_file)
        new_id = ring.active.id
        assert {n: store.sha256(n) for n in before} == before  # every object as it was
        added = sorted(set(store.names()) - set(before))
        assert added == sorted(n.removesuffix(".mkv") + f".key.{new_id}.json" for n in segments)
        listed = json.loads(world.cli("key", "list", "--json").stdout)
        assert {k["state"]: k["segments"] for k in listed["keys"]} == {"retired": 3, "active": 3}
        # a key file holding only the new key reads every segment through the rotated copies
        only_new = tmp_path / "only-new.key"
        keyring.create(only_new, keyring.Keyring([dataclasses.replace(ring.active)]))
        check = world.cli("check", "--read-data", "-v", ARCHIVERD_ENCRYPTION_KEY_FILE=str(only_new))
        assert check.returncode == 0 and check.stdout.count("(3 documents, read)") == 3, check.stdout + check.stderr
        got = subprocess.run([sys.executable, "-m", "archiverd", "get", "--bson", _id], capture_output=True,
                             env=world.env(ARCHIVERD_ENCRYPTION_KEY_FILE=str(only_new)), timeout=120)
        assert got.returncode == 0 and got.stdout == raw, got.stderr
    finally:
        world.close()


# -- 2. erase on a bucket ---------------------------------------------------------------------------

def _victim_archive(s3, tmp_path, encrypted):
    """Two days; the victim (document 5) in day 1's part 1 and, as a late duplicate, in part 2."""
    segments = {
        (OLD_DAYS[0], 1): [doc(n, OLD_DAYS[0], NEEDLE if n == 5 else None) for n in range(12)],
        (OLD_DAYS[0], 2): [doc(5, OLD_DAYS[0], NEEDLE), doc(40, OLD_DAYS[0])],
        (OLD_DAYS[1], 1): [doc(n, OLD_DAYS[1]) for n in range(20, 30)],
    }
    cfg, store = bucket_archive(s3, tmp_path, encrypted=encrypted, segments=segments)
    docs = [d for raws in segments.values() for d in raws]
    return cfg, store, docs, [d for d in docs if RawBSONDocument(d)["_id"] == VICTIM]


def _erase(cfg, reason="GDPR request 2026-114"):
    return erase.erase(cfg, [(str(VICTIM), parse_id(str(VICTIM)))], reason, pending=[])


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_erase_in_a_versioned_bucket_leaves_no_version_of_the_document(s3, tmp_path, keys_in_process, encrypted):
    cfg, store, docs, victims = _victim_archive(s3, tmp_path, encrypted)
    keys_in_process(cfg)
    versioned(s3)
    if not encrypted:  # the scan sees what is there: a plain index names its `_id`s
        assert found_in(bucket_of(s3), victims)
    old = store.names()

    result = _erase(cfg)
    assert result.copies == 2 and [r.erased for r in result.rewrites] == [1, 1]
    assert found_in(bucket_of(s3), victims) == []  # in no version of any object: not a delete marker's shadow
    kept = [d for d in docs if RawBSONDocument(d)["_id"] != VICTIM]
    assert Counter(archived(store)) == Counter(kept)  # every other document byte-exact, from the bucket
    assert store.orphans() == [] and len(store.segments()) == 3
    gone = [n for n in old if n.startswith("2020/03/01/part-0001.") or n.startswith("2020/03/01/part-0002.")]
    assert gone and not set(gone) & set(store.names())
    if encrypted:
        assert all("sealed" in store.load_index(n, public_only=True) for n in store.segments())
    records = [r for r in audit.read(cfg.collection_dir)[0] if r["event"] == "erase"]
    begins = [r for r in records if r["phase"] == "begin"]
    ends = [r for r in records if r["phase"] == "end"]
    assert len(begins) == len(ends) == 2
    assert all(r["versioning"] == "Enabled" and r["store"] == store.url and r["reason"] == "GDPR request 2026-114"
               for r in begins)
    for r in ends:  # every object of the old segment, each version: the object and no delete marker left
        assert r["versions_removed"] and all(n >= 1 for n in r["versions_removed"].values())
    assert str(VICTIM) not in audit.path_for(cfg.collection_dir).read_text()


@pytest.mark.parametrize("point", ["seal:key-uploaded", "erase:rewritten", "erase:audited", "erase:uncommitted"])
def test_a_crash_at_each_step_of_an_erase_in_a_bucket_then_a_rerun_finishes(s3, tmp_path, keys_in_process, point):
    cfg, store, docs, victims = _victim_archive(s3, tmp_path, encrypted=True)
    keys_in_process(cfg)
    versioned(s3)
    kept = Counter(d for d in docs if RawBSONDocument(d)["_id"] != VICTIM)

    class Crash(BaseException):
        pass

    def crash(at: str) -> None:
        if at == point:
            raise Crash(at)

    with faults.installed(crash), pytest.raises(Crash):
        _erase(cfg)
    assert kept - Counter(archived(store)) == Counter()  # nothing lost meanwhile
    _erase(cfg)
    assert Counter(archived(store)) == kept  # and no third copy
    assert found_in(bucket_of(s3), victims) == []
    assert retention.unfinished(cfg.collection_dir, "erase") == {}


def test_erase_rewrites_an_uncommitted_upload_that_holds_a_copy(s3, tmp_path, keys_in_process):
    """A seal that stopped between its video's upload and its index's leaves a video in the bucket
    that nothing was deleted against -- and that may hold a copy of the document to erase."""
    cfg, store, docs, _ = _victim_archive(s3, tmp_path, encrypted=True)
    keys_in_process(cfg)
    stranded = [doc(5, OLD_DAYS[1], NEEDLE), doc(50, OLD_DAYS[1])]
    name = "2020/03/02/part-0002.mkv"

    class Crash(BaseException):
        pass

    def crash(at: str) -> None:
        if at == "seal:key-uploaded":
            raise Crash(at)

    ring = keyring.load(tmp_path / "master.key")
    with faults.installed(crash), pytest.raises(Crash), \
            SegmentWriter(tmp_path / "stranded.mkv", encryption=ring.active) as writer:
        for raw in stranded:
            writer.append(raw)
        writer.seal(upload=objects.uploader(store, name))
    assert store.orphans() == [name]

    result = _erase(cfg)
    assert result.copies == 3 and {r.segment: r.erased for r in result.rewrites}[name] == 1
    assert store.orphans() == [] and store.names("2020/03/02/part-0002.") == []  # video and key file gone
    assert Counter(archived(store)) == Counter(d for d in docs + stranded if RawBSONDocument(d)["_id"] != VICTIM)
    replacement = next(r.replacement for r in result.rewrites if r.segment == name)
    assert store.load_index(replacement)["rewritten_from"]["file"] == "part-0002.mkv"


def test_a_hold_blocks_erase_and_prune_on_a_bucket(s3, tmp_path):
    cfg, store, docs, _ = _victim_archive(s3, tmp_path, encrypted=False)
    who = audit.who("test")
    held = holds.Holds(cfg.collection_dir).add_document([index.key_of(VICTIM)], "case 17", who, None)
    before = {n: store.sha256(n) for n in store.names()}
    with pytest.raises(config.ConfigError, match="legal hold"):
        _erase(cfg)
    result = retention.prune(cfg, pending=[], retention_days=365)
    assert [s.video.as_posix() for s in result.kept] == ["2020/03/01/part-0001.mkv", "2020/03/01/part-0002.mkv"]
    assert [s.video.as_posix() for s in result.removed] == ["2020/03/02/part-0001.mkv"]
    assert {n: store.sha256(n) for n in store.names()} == {n: v for n, v in before.items()
                                                           if not n.startswith("2020/03/02/")}
    holds.Holds(cfg.collection_dir).remove(held.id, "case closed", who)
    assert len(_erase(cfg).rewrites) == 2


# -- 3. prune on a bucket ---------------------------------------------------------------------------

def _prunable(s3, tmp_path):
    recent = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=100)).date().isoformat()
    segments = {(OLD_DAYS[0], 1): [doc(n, OLD_DAYS[0]) for n in range(6)],
                (OLD_DAYS[1], 1): [doc(n, OLD_DAYS[1]) for n in range(6, 12)],
                (recent, 1): [doc(n, recent) for n in range(12, 18)]}
    cfg, store = bucket_archive(s3, tmp_path, encrypted=False, segments=segments)
    return dataclasses.replace(cfg, retention_days=365), store, segments, recent


@pytest.mark.parametrize("point", [None, "prune:audited", "prune:uncommitted"])
def test_prune_removes_every_version_of_segments_past_retention(s3, tmp_path, point):
    cfg, store, segments, recent = _prunable(s3, tmp_path)
    versioned(s3)
    held = holds.Holds(cfg.collection_dir).add_days(dt.date(2020, 3, 2), dt.date(2020, 3, 2), "case 9",
                                                    audit.who("test"))
    plan = retention.prune(cfg, pending=[], dry_run=True)
    assert [s.video.as_posix() for s in plan.removed] == ["2020/03/01/part-0001.mkv"]
    assert len(store.names()) == 9  # a dry run removes nothing

    class Crash(BaseException):
        pass

    def crash(at: str) -> None:
        if at == point:
            raise Crash(at)

    if point is not None:
        with faults.installed(crash), pytest.raises(Crash):
            retention.prune(cfg, pending=[])
    result = retention.prune(cfg, pending=[])  # (the rerun, after a crash)
    assert [s.video.as_posix() for s in result.kept] == ["2020/03/02/part-0001.mkv"]
    stored = every_version(bucket_of(s3))
    assert not [k for k, _ in stored if "/2020/03/01/" in k]  # no version of any of its objects
    assert Counter(archived(store)) == Counter(segments[(OLD_DAYS[1], 1)] + segments[(recent, 1)])
    records = [r for r in audit.read(cfg.collection_dir)[0] if r["event"] == "prune"]
    assert [r["phase"] for r in records][-1] == "end" and retention.unfinished(cfg.collection_dir, "prune") == {}
    ended = [r for r in records if r["phase"] == "end"][-1]
    left = ["2020/03/01/part-0001.mkv", "2020/03/01/part-0001.vectors"]  # what a crash after the index leaves
    assert sorted(ended["versions_removed"]) == left if point == "prune:uncommitted" else \
        ["2020/03/01/part-0001.index.json", *left]
    assert all(n == 1 for n in ended["versions_removed"].values())  # one version each, no delete marker left

    holds.Holds(cfg.collection_dir).remove(held.id, "case closed", audit.who("test"))
    assert len(retention.prune(cfg, pending=[]).removed) == 1
    assert store.segments() == [f"{recent.replace('-', '/')}/part-0001.mkv"]


def test_prune_and_erase_run_from_the_command_line_on_a_bucket(s3, tmp_path):
    cfg, store, _, recent = _prunable(s3, tmp_path)
    env = {"ARCHIVERD_ARCHIVE_DIR": str(cfg.archive_dir), "ARCHIVERD_ARCHIVE_URL": s3,
           "ARCHIVERD_RETENTION_DAYS": "365"}
    dry = cli("prune", "--dry-run", "--json", env=env)
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["summary"]["segments_removed"] == 2 and len(store.names()) == 9
    done = cli("prune", env=env)
    assert done.returncode == 0 and "removed 2 segments" in done.stdout, done.stdout + done.stderr
    assert store.segments() == [f"{recent.replace('-', '/')}/part-0001.mkv"]
    erased = cli("erase", str(ObjectId(f"{13:024x}")), "--reason", "GDPR", env=env)
    assert erased.returncode == 0 and "erased 1 archived copy of 1 document" in erased.stdout, erased.stderr
    assert len(archived(store)) == 5


def test_a_store_that_keeps_a_version_fails_the_erase_with_exit_7(s3, tmp_path):
    """An object lock (here: a legal hold on the objects) refuses the removal of a version; the
    erase must say so and exit 7, leave its audit record unended, and claim nothing."""
    import boto3
    client = boto3.client("s3")
    bucket = f"locked-{os.getpid()}"
    client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    url = f"s3://{bucket}/archives"
    cfg, store, _, victims = _victim_archive(url, tmp_path, encrypted=False)
    for name in store.names():
        client.put_object_legal_hold(Bucket=bucket, Key=store.key(name), LegalHold={"Status": "ON"})
    env = {"ARCHIVERD_ARCHIVE_DIR": str(cfg.archive_dir), "ARCHIVERD_ARCHIVE_URL": url}
    proc = cli("erase", str(VICTIM), "--reason", "GDPR", env=env)
    assert proc.returncode == RemovalRefused.exit_code == 7, proc.stdout + proc.stderr
    assert "cannot remove version" in proc.stderr and "object lock" in proc.stderr, proc.stderr
    assert "erased" not in proc.stdout
    assert retention.unfinished(cfg.collection_dir, "erase")  # begun, never ended: a rerun finishes it
    assert found_in(bucket, victims)  # still there, and nothing said otherwise
