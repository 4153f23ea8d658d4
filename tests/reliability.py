"""The loses-nothing harness: shared by tests/test_reliability.py (fast subset) and
bench/bench_reliability.py (the full matrix and the soak that produce docs/RELIABILITY.md).

A `World` is one database on a real MongoDB-wire server plus an archive directory and a ledger of
every document version ever written to it. `check()` states the invariants:

* lost: a document's latest version is neither in MongoDB nor in a sealed segment that verifies;
* deleted without a verified seal: a document missing from MongoDB whose latest version is in no
  verifying segment (a document deleted by the test's own writer is not counted);
* sealed twice: one (_id, version) in more than one segment;
* after recovery also: no temporary files, an empty intent journal, no expired document left behind.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import bson
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient

from archiverd import SegmentReader, faults
from archiverd.config import Config
from archiverd.store import layout
from archiverd.format import index
from archiverd.service.archiver import Archiver
from archiverd.service.source import Source
from archiverd.service.state import State
from bench.corpus import experience

ROOT = Path(__file__).resolve().parents[1]
CRASH_POINTS = [  # (pattern, occurrence, what it means)
    ("read", 1, "while reading, first document"),
    ("read", 9, "while reading, mid-segment"),
    ("appended", 4, "while encoding / writing the video"),
    ("seal:video-written", 1, "video written, before fsync"),
    ("seal:video-synced", 1, "after fsync, before verify"),
    ("seal:verified", 1, "after verify, before the index is written"),
    ("seal:index-written", 1, "index written, before any rename"),
    ("seal:video-published", 1, "video renamed, index not yet"),
    ("seal:index-published", 1, "index renamed (commit), before the directory fsync"),
    ("commit", 1, "committed, before any delete"),
    ("delete-txn", 1, "inside an open delete transaction, before its commit"),
    ("delete-batch", 1, "between delete batches"),
    ("commit", 2, "second segment committed, first one deleted"),
    ("state-save:pending", 2, "while persisting the intent journal"),
    ("state-save:last_seal", 1, "while persisting the last seal"),
    ("state-save:*resume_token*", 1, "while persisting the change-stream resume token (daemon)"),
]
_numbers = itertools.count()


@dataclass
class Report:
    documents: int = 0
    in_db: int = 0
    archived: int = 0
    lost: list[Any] = field(default_factory=list)
    deleted_unsealed: list[Any] = field(default_factory=list)
    sealed_twice: list[Any] = field(default_factory=list)
    bad_segments: list[str] = field(default_factory=list)
    temp_files: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    expired_left: int = 0

    @property
    def safe(self) -> bool:
        return not (self.lost or self.deleted_unsealed or self.sealed_twice or self.bad_segments)

    @property
    def converged(self) -> bool:
        return self.safe and not (self.temp_files or self.pending or self.expired_left)


class World:
    def __init__(self, uri: str, workdir: Path, **settings: str) -> None:
        self.uri = uri
        self.workdir = workdir
        self.database = f"rel{os.getpid()}_{next(_numbers)}"
        self.archive_dir = workdir / f"archives-{self.database}"
        self.archive_dir.mkdir(parents=True)
        self.settings = {"ARCHIVERD_RETRY_SECONDS": "30", "ARCHIVERD_SERVER_TIMEOUT_MS": "2000",
                         "ARCHIVERD_LEASE_SECONDS": "3",
                         "ARCHIVERD_BATCH_SIZE": "4", "ARCHIVERD_SEGMENT_MAX_DOCS": "6", **settings}
        self.client = MongoClient(uri, document_class=RawBSONDocument, tz_aware=True)
        self.coll = self.client[self.database]["eat_agent_experiences"]
        self.latest: dict[str, str | None] = {}  # id key -> SHA-256 of the latest version (None: deleted by us)
        self.ids: dict[str, Any] = {}
        self.now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
        self._next = 0

    @property
    def collection_dir(self) -> Path:
        return self.archive_dir / self.database / "eat_agent_experiences"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ARCHIVERD_", "MONGODB_", "ARCHIVE_", "_ARCHIVERD"))}
        env.update({"MONGODB_URI": self.uri, "MONGODB_DATABASE_NAME": self.database,
                    "ARCHIVERD_ARCHIVE_DIR": str(self.archive_dir), **self.settings, **extra})
        return env

    # -- data -----------------------------------------------------------------------------------------

    def record(self, raw: bytes) -> None:
        _id = RawBSONDocument(raw)["_id"]
        key = index.key_of(_id)
        self.ids[key] = _id
        self.latest[key] = hashlib.sha256(raw).hexdigest()

    def seed(self, expired: int, fresh: int = 0, embeddings_every: int = 0, days: float = 100) -> list[Any]:
        """Insert `expired` documents spread over three days older than the threshold, and `fresh`
        ones inside it. Every embeddings_every-th document carries four 1536-d embeddings."""
        docs = []
        for k in range(expired + fresh):
            i = self._next
            self._next += 1
            age = days + (k % 3) + 0.5 if k < expired else 10 + k % 50
            emb = bool(embeddings_every) and i % embeddings_every == 0
            docs.append(RawBSONDocument(bson.encode(experience(i, when=self.now - dt.timedelta(days=age),
                                                               embeddings=emb, seed=17))))
        if docs:
            self.coll.insert_many(docs)
        for d in docs:
            self.record(d.raw)
        return [d["_id"] for d in docs]

    def expired_count(self) -> int:
        wm = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=90)
        return self.coll.count_documents({"timestamp": {"$lt": wm, "$type": "date"}})

    # -- running archiverd ----------------------------------------------------------------------------

    def cli(self, *args: str, timeout: float = 300, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "archiverd", *args], env=self.env(**extra), cwd=ROOT,
                              capture_output=True, text=True, timeout=timeout)

    def start_daemon(self, **extra: str) -> subprocess.Popen:
        """The daemon in the background; its log goes to a file (a pipe nobody drains would fill up
        and block it): read it with `daemon_log(proc)`."""
        log = self.workdir / f"daemon-{self.database}-{next(_numbers)}.log"
        with open(log, "w") as sink:
            proc = subprocess.Popen([sys.executable, "-m", "archiverd", "run"], env=self.env(**extra), cwd=ROOT,
                                    stdout=subprocess.DEVNULL, stderr=sink, text=True)
        proc.log_path = log  # type: ignore[attr-defined]
        return proc

    def crash_once(self, pattern: str, nth: int, daemon: bool = False) -> int:
        """Run a cycle (or the daemon) that SIGKILLs itself at the nth matching point; its exit status."""
        spec = f"{pattern}@{nth}"
        if not daemon:
            return self.cli("run", "--once", _ARCHIVERD_CRASH_AT=spec).returncode
        proc = self.start_daemon(_ARCHIVERD_CRASH_AT=spec, ARCHIVERD_POLL_SECONDS="1")
        try:
            return proc.wait(120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def recover(self) -> tuple[int, float]:
        """Clean cycles after a crash, as cron would run them, until one gets the lease (the killed
        instance's lease must expire first): (exit code, seconds from the first attempt)."""
        started = time.monotonic()
        while True:
            proc = self.cli("run", "--once")
            if proc.returncode != 1 or "lease.held" not in proc.stderr or time.monotonic() - started > 60:
                return proc.returncode, time.monotonic() - started
            time.sleep(0.5)

    def run_once(self) -> subprocess.CompletedProcess:
        """One cycle, waiting out a lease left by a killed instance."""
        deadline = time.monotonic() + 60
        while True:
            proc = self.cli("run", "--once")
            if proc.returncode != 1 or "lease.held" not in proc.stderr or time.monotonic() > deadline:
                return proc
            time.sleep(0.5)

    # -- invariants -----------------------------------------------------------------------------------

    def check(self, verify: bool = True) -> Report:
        rep = Report(documents=sum(1 for v in self.latest.values() if v is not None))
        in_db = {index.key_of(d["_id"]): hashlib.sha256(d.raw).hexdigest() for d in self.coll.find()}
        rep.in_db = len(in_db)
        archived: dict[str, set[str]] = {}
        seen: set[tuple[str, str]] = set()
        for path in layout.segments(self.collection_dir):
            reader = SegmentReader(path)
            if verify and not reader.verify().ok:
                rep.bad_segments.append(str(path))
                continue
            for entry in reader.entries():
                key = (index.id_key(entry["_id"]), entry["sha256"])
                if key in seen:
                    rep.sealed_twice.append(entry["_id"])
                seen.add(key)
                archived.setdefault(key[0], set()).add(entry["sha256"])
        rep.archived = len(seen)
        for key, sha in self.latest.items():
            if sha is None:
                continue
            if in_db.get(key) == sha or sha in archived.get(key, set()):
                continue
            rep.lost.append(self.ids[key])  # the latest version is nowhere
            if key not in in_db:
                rep.deleted_unsealed.append(self.ids[key])  # and it was deleted from MongoDB
        if self.collection_dir.exists():
            rep.temp_files = [str(p) for p in self.collection_dir.rglob(".*tmp*")]
        rep.pending = State(self.collection_dir / "archiverd-state.json").pending
        rep.expired_left = self.expired_count()
        return rep

    def close(self) -> None:
        self.client.drop_database(self.database)
        self.client.close()


class Crash(BaseException):
    """Raised at a fault point by `crash_cycle_at`: the cycle stops there as if its process died
    (a BaseException: no `except Exception` of the cycle handles it)."""


def crash_cycle_at(cfg: Config, point: str, strike: Callable[[], None] | None = None, *, nth: int = 1,
                   release: bool = True) -> None:
    """One archiving cycle in this process, under the collection's lease, cut off at the `nth`
    fault point named `point` (faults.py) -- `strike()` runs there first (kill the server, ...).
    Fails unless the cycle got there. The lease is released afterwards unless `release` is False
    (the server is gone); the test then checks what the crash left in the archive and the collection."""
    source = Source(cfg)
    seen = 0
    try:
        lease = source.acquire_lease()

        def crash(at: str) -> None:
            nonlocal seen
            if at != point:
                return
            seen += 1
            if seen == nth:
                if strike is not None:
                    strike()
                raise Crash(at)

        try:
            with faults.installed(crash):
                Archiver(cfg, source, State(cfg.state_file)).run_cycle(lease)
        except Crash:
            pass
        else:
            raise AssertionError(f"the cycle never reached the fault point {point!r}@{nth}")
        if release:
            source.release_lease(lease)
    finally:
        source.client.close()


def frame_records(path: Path) -> list[bytes]:
    """The QR payload (frame record) of every frame of a segment's video, in file order."""
    from archiverd.format import qr, video
    from archiverd.format.reader import LocalFile
    with LocalFile(path) as source:
        return [qr.read(image) for _, image in video.VideoReader(source, str(path)).frames()]


def write_frames(path: Path, records: list) -> None:
    """A video of exactly these frame records (a valid archiverd video, whatever they say)."""
    from archiverd.format import mkv, qr, video
    with open(path, "wb") as out:
        def write(data: bytes, offset: Any) -> None:
            if offset is not None:
                out.seek(offset)
                out.write(data)
                out.seek(0, 2)
            else:
                out.write(data)
        writer = mkv.Writer(write, codec_id=video.CODEC_ID, codec_private=video.codec_private(), width=qr.SIZE,
                            height=qr.SIZE, frame_ms=video.FRAME_MS, app="test")
        for i in range(0, len(records), video.GOP):
            writer.add_cluster(video.encode_gop(records[i:i + video.GOP]))
        writer.close()


def rewrite_frames(path: Path, edit: Any) -> None:
    """Re-encode a segment's video with its list of frame records edited (each frame stays a valid
    QR frame): how dropped, duplicated, reordered and foreign frames are made."""
    records = edit(frame_records(path))
    tmp = path.with_name("rewritten.mkv")
    write_frames(tmp, records)
    tmp.replace(path)


CORRUPTIONS = ("byte flip", "truncation", "dropped frame", "duplicated frame", "reordered frames",
               "foreign frame", "swapped index", "tampered checksum", "tampered _id")


def corrupt(kind: str, path: Path, rng: Any, other: Path) -> None:
    """Damage the segment at `path` in one of the CORRUPTIONS ways (`other` is a second segment)."""
    data = path.read_bytes()
    idx_path = index.path_for(path)
    if kind == "byte flip":
        pos = rng.randrange(len(data))
        damaged = bytearray(data)
        damaged[pos] ^= 1 << rng.randrange(8)
        path.write_bytes(bytes(damaged))
    elif kind == "truncation":
        path.write_bytes(data[: rng.randrange(len(data))])
    elif kind in ("dropped frame", "duplicated frame", "reordered frames", "foreign frame"):
        def edit(frames: list) -> list:
            k = rng.randrange(len(frames) - 1)
            if kind == "dropped frame":
                return frames[:k] + frames[k + 1:]
            if kind == "duplicated frame":
                return frames[:k + 1] + [frames[k]] + frames[k + 1:]
            if kind == "reordered frames":
                return frames[:k] + [frames[k + 1], frames[k]] + frames[k + 2:]
            foreign = frame_records(other)
            return frames[:k] + [foreign[min(k, len(foreign) - 1)]] + frames[k + 1:]
        rewrite_frames(path, edit)
    elif kind == "swapped index":
        idx_path.write_bytes(index.path_for(other).read_bytes())
    else:
        idx = json.loads(idx_path.read_text())
        entry = idx["docs"][rng.randrange(len(idx["docs"]))]
        if kind == "tampered checksum":
            entry["sha256"] = f"{int(entry['sha256'], 16) ^ 1:064x}"
        else:
            entry["_id"] = {"$oid": "0" * 24}
        idx_path.write_text(json.dumps(idx))


def daemon_log(proc: subprocess.Popen) -> str:
    return proc.log_path.read_text()  # type: ignore[attr-defined]


# -- waiting on events, not on time -----------------------------------------------------------------
# A test that sleeps and then asserts on a log line or a state passes or fails with the machine's
# load. These wait for the event itself (with a generous deadline) and hand the assertion back.

def wait_until(condition: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Poll `condition` until it is true or `timeout` seconds passed; its last value (assert it)."""
    deadline = time.monotonic() + timeout
    while not (value := condition()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


def proc_state(pid: int) -> str | None:
    """A process's state letter from /proc (T: stopped), None once it is gone (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None
    return None if state in ("Z", "X") else state


def wait_stopped(proc: subprocess.Popen, timeout: float = 120) -> None:
    """Wait until `proc` stopped itself at its `_ARCHIVERD_CRASH_AT=<point>@<n>:STOP` fault point
    (faults.py); fail if it exits first or never gets there. SIGCONT resumes it."""
    deadline = time.monotonic() + timeout
    while proc_state(proc.pid) != "T":
        if proc.poll() is not None:
            raise AssertionError(f"exited with {proc.returncode} before its fault point: "
                                 + (proc.stderr.read() if proc.stderr else ""))
        assert time.monotonic() < deadline, "never reached its fault point"
        time.sleep(0.05)


def cycles_done(log_text: str) -> int:
    """How many cycles a daemon's log says it completed."""
    return log_text.count("event=cycle.done")


def kill(proc: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        proc.wait(60)


def to_json(obj: Any) -> str:
    return json.dumps(obj, default=str)
