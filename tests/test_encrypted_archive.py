"""An encrypted archive end to end, on a real MongoDB-wire server and real segments: the daemon
seals format version 3 segments; verify, check, restore, get, find and search work with the key;
nothing on disk names a document without it; a wrong key, a tampered frame, index or sidecar, a
lost key file, a rotation and a paper backup behave as docs/FORMAT.md and the guide say."""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import bson
import numpy as np
import pytest
from bson import ObjectId
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient

import archiverd
from archiverd.crypto import envelope, keyring
from archiverd.errors import CryptoError, SegmentError
from archiverd.format import encryption, frame, index, reader, sidecar, writer
from archiverd.query import id_key
from archiverd.store import layout
from bench.corpus import EMBEDDING_FIELDS, experience

UTC = dt.timezone.utc
DAY0 = (dt.datetime.now(UTC) - dt.timedelta(days=6)).replace(hour=0, minute=0, second=0, microsecond=0)
FIELD = f"embeddings.{EMBEDDING_FIELDS[0]}"


def run(*args, env, code=None, stdin=None):
    proc = subprocess.run([sys.executable, "-m", "archiverd", *map(str, args)], capture_output=True, text=True,
                          timeout=600, env={**os.environ, **env}, input=stdin)
    assert "Traceback" not in proc.stderr, proc.stderr
    if code is not None:
        assert proc.returncode == code, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    return proc


def _documents() -> list[bytes]:
    docs = [bson.encode(experience(i, when=DAY0 + dt.timedelta(hours=i * 1.3), seed=31)) for i in range(60)]
    docs.append(bson.encode({"_id": "person-42", "timestamp": DAY0 + dt.timedelta(hours=5),
                             "user_query": "my address is 221B Baker Street, London NW1 6XE"}))
    return docs


class Built:
    def __init__(self, root: Path, env: dict[str, str], docs: list[bytes], uri: str, db: str) -> None:
        self.root, self.env, self.docs, self.uri, self.db = root, env, docs, uri, db

    @property
    def collection_dir(self) -> Path:
        return self.root / "archives" / self.db / "eat_agent_experiences"

    def ring(self) -> keyring.Keyring:
        return keyring.load(Path(self.env["ARCHIVERD_ENCRYPTION_KEY_FILE"]))


@pytest.fixture(scope="module")
def built(mongo_uri, tmp_path_factory) -> Built:
    root = tmp_path_factory.mktemp("encrypted")
    (root / "archives").mkdir()
    (root / "keys").mkdir()
    db = f"enc{os.getpid()}"
    env = {"MONGODB_URI": mongo_uri, "MONGODB_DATABASE_NAME": db, "ARCHIVERD_ARCHIVE_DIR": str(root / "archives"),
           "ARCHIVE_THRESHOLD_DAYS": "1", "ARCHIVERD_ENCRYPTION_KEY_FILE": str(root / "keys" / "master.key"),
           "ARCHIVERD_SERVER_TIMEOUT_MS": "5000"}
    run("key", "init", env=env, code=0)
    docs = _documents()
    client = MongoClient(mongo_uri, document_class=RawBSONDocument, tz_aware=True)
    client[db].eat_agent_experiences.insert_many([RawBSONDocument(d) for d in docs])
    proc = run("run", "--once", env=env, code=0)
    assert client[db].eat_agent_experiences.count_documents({}) == 0, proc.stderr[-2000:]
    yield Built(root, env, docs, mongo_uri, db)
    client.drop_database(db)
    client.close()


@pytest.fixture
def keys_in_process(built):
    encryption.use_keyring(built.ring())
    yield
    encryption.use_keyring(None)


def test_segments_are_version_3_and_every_command_works_with_the_key(built, keys_in_process):
    videos = layout.videos(built.collection_dir)
    assert videos
    for video in videos:
        public = index.load(index.path_for(video), public_only=True)
        assert public["format_version"] == 3 and "docs" not in public and "sealed" in public
        assert envelope.path_for(video).exists() and sidecar.path_for(video).read_bytes()[:4] == b"ARVE"
        assert archiverd.SegmentReader(video).verify().ok
    assert run("verify", *videos, env=built.env, code=0)
    assert "ok" in run("check", "--read-data", env=built.env, code=0).stdout
    run("restore", *videos, "--to", f"{built.db}.restored", env=built.env, code=0)
    client = MongoClient(built.uri, document_class=RawBSONDocument)
    restored = {id_key(bson.decode(d.raw)["_id"]): bytes(d.raw) for d in client[built.db].restored.find()}
    client.close()
    assert restored == {id_key(bson.decode(d)["_id"]): d for d in built.docs}  # byte-exact
    with archiverd.Archive(built.root / "archives") as archive:
        assert archive.get("person-42", raw=True) == built.docs[-1]
        some = bson.decode(built.docs[7])
        assert archive.get_by("experience_id", some["experience_id"], raw=True) == [built.docs[7]]
        failures = {bson.decode(r)["_id"] for r in archive.find({"final_outcome": "failure"}, raw=True)}
        assert failures == {bson.decode(d)["_id"] for d in built.docs if bson.decode(d).get("final_outcome") == "failure"}
        query = np.asarray(some["embeddings"][EMBEDDING_FIELDS[0]])
        hits = archive.search(query, FIELD, 3, raw=True)
        assert hits[0].document == built.docs[7] and hits[0].score > 0.999999
        assert archive.count() == len(built.docs)
    out = run("get", str(some["_id"]), env=built.env, code=0).stdout
    assert json.loads(out)["experience_id"] == some["experience_id"]


def _files(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file())


def _stream_payloads(video: Path) -> bytes:
    """Every data frame's body as a QR reader (zxing) would see it, concatenated."""
    with reader.LocalFile(video) as source:
        vr = reader.video.VideoReader(source, str(video))
        out = bytearray()
        for _, decoded, _ in reader.decoded_frames(vr, vr.clusters(), independent=True):
            if decoded is not None and decoded.kind != frame.PARITY:
                out += decoded.body
    return bytes(out)


def test_nothing_on_disk_names_a_document_without_the_key(built):
    """Every file archiverd wrote (indexes, sidecars, catalog, state, key files, videos) and every QR
    payload in the videos, searched for what the documents hold."""
    run("find", "--count", env=built.env, code=0)  # the catalog is written too
    needles = []
    for raw in built.docs[::6] + built.docs[-1:]:
        doc = bson.decode(raw)
        _id = doc["_id"]
        needles += [str(_id).encode(), _id.binary if isinstance(_id, ObjectId) else str(_id).encode()]
        for key in ("experience_id", "user_query", "final_outcome_reason"):
            if isinstance(doc.get(key), str):
                needles.append(doc[key][:24].encode())
    disk = _files(built.root / "archives")
    payloads = b"".join(_stream_payloads(v) for v in layout.videos(built.collection_dir))
    for needle in needles:
        assert needle not in disk, needle
        assert needle not in payloads, needle
    assert b"221B Baker" not in disk and b"221B Baker" not in payloads
    # the plain SHDR record is all that is readable in the stream: no document text
    assert b'"encryption"' in payloads and b"experience_id" not in payloads.replace(b'"index_fields": ["experience_id"]', b"")


def test_without_the_key_structure_is_checked_and_content_refused(built):
    env = {k: v for k, v in built.env.items() if k != "ARCHIVERD_ENCRYPTION_KEY_FILE"}
    proc = run("check", env=env, code=0)
    assert "content not checked" in proc.stdout
    video = layout.videos(built.collection_dir)[0]
    proc = run("verify", video, env=env, code=3)
    assert "encrypted" in proc.stderr and "ARCHIVERD_ENCRYPTION_KEY_FILE" in proc.stderr
    assert "encrypted" in run("get", "person-42", env=env, code=3).stderr
    assert "encrypted" in run("find", "--count", env=env, code=3).stderr


def test_a_wrong_key_file_is_named_not_taken_for_damage(built, tmp_path):
    other = tmp_path / "other.key"
    run("key", "init", env={**built.env, "ARCHIVERD_ENCRYPTION_KEY_FILE": str(other)}, code=0)
    env = {**built.env, "ARCHIVERD_ENCRYPTION_KEY_FILE": str(other)}
    proc = run("verify", layout.videos(built.collection_dir)[0], env=env, code=3)
    assert "does not hold" in proc.stderr and built.ring().active.id in proc.stderr


def _copy(built: Built, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(built.collection_dir, target)
    return target


def test_tampering_is_detected_and_never_decoded_into_a_wrong_document(built, tmp_path, keys_in_process):
    copy = _copy(built, tmp_path)
    video = layout.videos(copy)[0]
    # the sealed index: one changed character
    idx_path = index.path_for(video)
    text = json.loads(idx_path.read_text())
    blob = bytearray(text["sealed"].encode())
    blob[40] = ord("A") if blob[40] != ord("A") else ord("B")
    text["sealed"] = blob.decode()
    idx_path.write_text(json.dumps(text))
    encryption.use_keyring(built.ring())
    with pytest.raises(CryptoError):
        archiverd.SegmentReader(video)
    assert "authentication failed" in run("verify", video, env=built.env, code=4).stderr


def test_a_rewritten_frame_with_a_valid_crc_fails_authentication(built, tmp_path, keys_in_process, monkeypatch):
    """An attacker who rewrites a data frame consistently (valid CRC, parity left alone): the block's
    tag fails, the reader names it, and no document of that block is ever returned changed."""
    docs = built.docs[:12]
    path = tmp_path / "2026" / "01" / "01" / "part-0001.mkv"
    path.parent.mkdir(parents=True)
    target = 5
    original = frame.pack

    def tampered(record: frame.Frame) -> bytes:
        if record.position == target and record.kind != frame.PARITY:
            body = bytearray(record.body)
            body[100] ^= 0x01
            record = frame.Frame(**{**record.__dict__, "body": bytes(body)})
        return original(record)

    monkeypatch.setattr(frame, "pack", tampered)
    with pytest.raises(SegmentError):  # the seal's own read-back refuses it
        writer.write_segment(path, docs, encryption=built.ring().active, block_bytes=200_000)
    assert not path.exists()
    monkeypatch.setattr(frame, "pack", original)
    # now seal it cleanly, and tamper with the published file the same way through the writer
    idx = writer.write_segment(path, docs, encryption=built.ring().active, block_bytes=200_000)
    monkeypatch.setattr(frame, "pack", tampered)
    tampered_path = tmp_path / "t" / "part-0001.mkv"
    tampered_path.parent.mkdir()
    fw = writer.FrameWriter(tampered_path, bytes.fromhex(idx["segment_id"]),
                            reader.parity.Geometry(idx["parity"]["data_rows"], idx["parity"]["parity_rows"]),
                            version=3)
    with reader.LocalFile(path) as source:
        scan = reader.SegmentScan(source, str(path), idx, on_data=lambda _, body: fw.write(body))
        assert len(list(scan.documents())) == len(docs)
    fw.end_stream_at(scan.stream_end)
    fw.close()
    fw.temp.publish(tampered_path)
    monkeypatch.setattr(frame, "pack", original)
    shutil.copy(index.path_for(path), index.path_for(tampered_path))
    shutil.copy(envelope.path_for(path), envelope.path_for(tampered_path))
    idx_t = json.loads(index.path_for(tampered_path).read_text())
    assert idx_t  # same index: the attacker cannot re-seal it
    encryption.use_keyring(built.ring())
    r = archiverd.SegmentReader(tampered_path)
    got = dict(r.salvage())
    report = r.last_report
    assert not report.ok and any("authentication failed" in p or "SHA-256" in p for p in report.problems)
    for n, raw in got.items():
        assert raw == docs[n]  # what comes back is exact; the tampered block does not come back
    assert len(got) < len(docs)
    lost = [n for n in range(len(docs)) if n not in got]
    with pytest.raises(SegmentError):
        r.document(lost[0])


def test_lost_key_file_uses_the_header_copy_and_reindex_writes_it_back(built, tmp_path, keys_in_process):
    copy = _copy(built, tmp_path)
    video = layout.videos(copy)[1]
    envelope.path_for(video).unlink()
    encryption.use_keyring(built.ring())
    assert archiverd.SegmentReader(video).verify().ok  # from the header's copy
    proc = run("check", copy, env=built.env, code=0)
    assert "header" in proc.stdout
    index.path_for(video).unlink()
    proc = run("reindex", video, env=built.env, code=0)
    assert "index rebuilt" in proc.stdout and envelope.path_for(video).exists()
    encryption.use_keyring(built.ring())
    assert archiverd.SegmentReader(video).verify().ok


def test_a_damaged_sidecar_is_rebuilt_and_search_stays_exact(built, tmp_path, keys_in_process):
    copy = _copy(built, tmp_path)
    video = layout.videos(copy)[0]
    data = bytearray(sidecar.path_for(video).read_bytes())
    data[-5] ^= 1
    sidecar.path_for(video).write_bytes(bytes(data))
    proc = run("check", copy, env=built.env, code=1)
    assert "authentication failed" in proc.stdout
    run("check", "--repair", copy, env=built.env, code=0)
    encryption.use_keyring(built.ring())
    idx = index.load(index.path_for(video))
    assert sidecar.load(sidecar.path_for(video), idx["content_sha256"], idx["documents"],
                        encryption.keys_of(idx, str(video))).fields


def test_rotation_and_a_paper_backup_keep_the_archive_readable(built, tmp_path):
    root = tmp_path / "rot"
    shutil.copytree(built.root / "archives", root / "archives")
    (root / "keys").mkdir()
    key_file = root / "keys" / "master.key"
    shutil.copy(built.env["ARCHIVERD_ENCRYPTION_KEY_FILE"], key_file)
    os.chmod(key_file, 0o600)
    env = {**built.env, "ARCHIVERD_ARCHIVE_DIR": str(root / "archives"), "ARCHIVERD_ENCRYPTION_KEY_FILE": str(key_file)}
    run("key", "rotate", env=env, code=0)
    before = json.loads(run("status", "--json", env=env, code=1).stdout)  # the new key was never exported
    assert "never been exported" in before["key_warning"] and before["encryption"].startswith("on")
    assert any("encryption key" in p["problem"] for p in before["health"]["problems"])
    ring = keyring.load(key_file)
    assert len(ring.keys) == 2
    for video in layout.videos(root / "archives" / built.db / "eat_agent_experiences"):
        assert envelope.read_file(envelope.path_for(video))["key_id"] == ring.active.id
    assert json.loads(run("get", "person-42", env=env, code=0).stdout)["_id"] == "person-42"
    paper = tmp_path / "paper.html"
    run("key", "export", "--paper", paper, env=env, code=0)
    after = run("status", env=env)
    assert "never been exported" not in after.stdout and "encryption:" in after.stdout, after.stdout
    key_file.rename(tmp_path / "lost.key")
    lines = re.search(r"<pre>(ARCHIVERD PAPER KEY.*?)</pre>", paper.read_text(), re.S).group(1)
    (tmp_path / "typed.txt").write_text(lines)
    run("key", "import", "--paper", tmp_path / "typed.txt", env=env, code=0)
    assert json.loads(run("get", "person-42", env=env, code=0).stdout)["_id"] == "person-42"
