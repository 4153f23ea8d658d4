"""One archiving cycle: recover -> read expired -> per-day segment -> seal -> guarded delete.

Only complete days are read (expiry.py): a day's documents become one segment once the watermark
has passed the day's end by `day_grace_seconds`; a backlog of complete days is sealed day after day
in one pass. A document whose exact bytes a sealed segment of its day already holds (a delete the
server lost, a restore from backup) is deleted against that segment, never sealed twice. A document
that cannot be archived (its date is not a single BSON date, it cannot be encoded) stays in MongoDB,
counted by reason and logged once per cycle; the cycle goes on.

The seal protocol and its crash windows are in docs/ARCHITECTURE.md. In short: a segment's intent is
journaled in the state file before anything is written; its index, published last, is the commit
point; deletes happen only after that, only for documents whose current bytes still match what was
sealed; the journal entry is removed when the deletes are done. A restart replays the journal.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..store import derived, layout, durable, objects
from .. import faults, log, memory
from ..crypto import keyring
from ..format import encryption, index
from ..format.documents import fields_meta
from ..progress import Meter
from ..config import Config
from ..errors import DatabaseError, SegmentError, StorageError
from ..format import rebuild
from ..format.reader import SegmentReader
from ..format.writer import SegmentWriter
from . import expiry
from .lease import Leases
from .source import DeleteOutcome, Lease, LeaseLost, Source
from .state import State

Entry = tuple[Any, str, int]  # (_id, SHA-256 of the archived bytes, their length)


@dataclass
class CycleStats:
    watermark: str = ""
    cutoff: str = ""  # documents dated before this (complete days) are archived in this cycle
    read: int = 0
    sealed: int = 0
    deleted: int = 0
    changed: int = 0  # updated after it was read: kept in MongoDB, archived again later
    gone: int = 0
    segments: list[str] = field(default_factory=list)
    per_day: dict[str, int] = field(default_factory=dict)
    recovered: int = 0
    set_aside: int = 0  # journaled segments that failed verification (nothing deleted against them)
    held_elsewhere: int = 0  # days skipped because another process held their lease
    days_lost: int = 0  # days whose lease another process took midway (left to it)
    already_sealed: int = 0  # documents found again whose exact bytes a sealed segment holds
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> documents left in MongoDB
    bytes_sealed: int = 0  # BSON bytes sealed into segments
    bytes_deleted: int = 0  # BSON bytes deleted from MongoDB (recovery and documents found again included)
    stopped: bool = False
    seconds: float = 0.0
    finished_at: str = ""  # UTC, ISO 8601: when `status` last saw a cycle complete

    def skip(self, reason: str) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + 1

    def summary(self) -> dict[str, Any]:
        """What status and the logs show: counts, not the per-day and per-segment lists."""
        out = {k: v for k, v in self.__dict__.items() if k not in ("segments", "per_day")}
        out.update(segments=len(self.segments), days=len(self.per_day))
        return out


def iso(ms: int) -> str:
    when = expiry.to_datetime(ms)
    return when.isoformat() if when is not None else f"{ms} ms since the epoch"


class _SealedDays:
    """Which sealed segment of a document's day already holds its exact bytes, checked before
    anything is deleted against it: the segment's file is exactly as sealed (size and SHA-256) and
    the document decodes from it with that SHA-256. A day's directory is where an earlier copy would
    be; indexes are loaded on demand, segments set aside by recovery never count."""

    def __init__(self, collection_dir: Path, set_aside: Iterable[str], store: objects.Store) -> None:
        self.collection_dir = collection_dir
        self.store = store
        self.set_aside = {collection_dir / rel for rel in set_aside}
        self._days: dict[str, dict[tuple[str, str], tuple[Path, int]]] = {}
        self._readers: dict[Path, SegmentReader | None] = {}

    def holder(self, label: str, _id: Any, sha: str) -> Path | None:
        day = self._days.get(label)
        if day is None:
            day = self._days[label] = {}
            prefix = layout.day_dir(Path(), label).as_posix() + "/"
            for rel in self.store.segments(prefix):
                video = self.collection_dir / rel
                if video in self.set_aside:
                    continue
                try:
                    idx = self.store.load_index(rel)
                except SegmentError:
                    continue
                for n, entry in enumerate(idx["docs"]):
                    if "_id" in entry:
                        day[(index.id_key(entry["_id"]), entry["sha256"])] = (video, n)
        found = day.get((index.key_of(_id), sha))
        if found is None:
            return None
        video, n = found
        reader = self._reader(video)
        try:
            if reader is None or hashlib.sha256(reader.document(n)).hexdigest() != sha:
                return None
        except SegmentError:
            return None
        return video

    def _reader(self, video: Path) -> SegmentReader | None:
        if video not in self._readers:
            try:
                reader = self.store.reader(video.relative_to(self.collection_dir).as_posix())
                ok = self.store.mismatch(reader) is None
            except SegmentError:
                reader, ok = None, False
            if not ok:
                log.warning("cycle.sealed_copy_unusable", segment=str(video),
                            reason="not exactly as sealed; documents are archived again instead")
            self._readers[video] = reader if ok else None
        return self._readers[video]


class _Retaken(Exception):
    """The day's lease lapsed and was taken again with a new token: another process may have worked
    on the day meanwhile, so the documents read before are stale and the day is read afresh."""


class Archiver:
    def __init__(self, cfg: Config, source: Source, state: State, *, stop: threading.Event | None = None,
                 progress: Callable[[int], None] | None = None, meter: Meter | None = None) -> None:
        self.cfg = cfg
        self.source = source
        self.state = state
        self.stop = stop or threading.Event()
        self.progress = progress
        self.meter = meter or Meter()  # observes only: counts, stage times, `--progress` display
        self.store = objects.for_collection(cfg)  # where sealed files go: the collection directory or a bucket
        self.leases = Leases(source, state)
        self._admission: Lease | None = None  # the collection's lease, when one active instance runs
        self._day = Lease("", "", 0)  # the lease of the day being worked on (set by `_in_day`)
        self._retaken = False

    # -- the cycle ----------------------------------------------------------------------------------

    def run_cycle(self, admission: Lease | None = None) -> CycleStats:
        """One pass over the backlog, a UTC day at a time, each under its own lease: first the days
        with journal entries or temporary files (a crash's leftovers), then, oldest first, every complete day with
        expired documents -- a day another process holds is left to it. `admission` is the
        collection's lease when one active instance runs (then it is fenced with the day's before
        every publish); None when several processes share the backlog."""
        started = time.monotonic()
        cutoff = expiry.cutoff_ms(self.cfg)
        stats = CycleStats(watermark=iso(expiry.watermark_ms(self.cfg)), cutoff=iso(cutoff))
        self._admission = admission
        encryption.use_keyring(lambda: keyring.from_config(self.cfg))  # recovery may read encrypted segments
        self.state.reload()
        temporaries = [str(t.relative_to(self.cfg.collection_dir)) for t in layout.temporaries(self.cfg.collection_dir)]
        for label in sorted({layout.day_of(rel) for rel in self.state.pending + temporaries}):
            if not self.stop.is_set():
                self._in_day(label, stats, None)
        # the days with a backlog, listed once (one aggregation, not one query a day)
        listed_at = dt.datetime.now(dt.timezone.utc)
        for start, end in sorted({expiry.day_range(ms) for ms in self.source.expired_days(cutoff)}):
            if self.stop.is_set():
                break
            label = expiry.day_label(start)
            self._in_day(label, stats, lambda: self._archive_day(label, start, min(end, cutoff), stats), listed_at)
        stats.stopped = stats.stopped or self.stop.is_set()
        if stats.skipped:
            log.warning("cycle.skipped", reason="left in MongoDB", **{k.replace(" ", "_")[:60]: v
                                                                      for k, v in stats.skipped.items()})
        stats.seconds = round(time.monotonic() - started, 3)
        stats.finished_at = dt.datetime.now(dt.timezone.utc).isoformat()
        return stats

    def _in_day(self, label: str, stats: CycleStats, work: Callable[[], None] | None,
                listed_at: dt.datetime | None = None) -> None:
        """Take the day's lease, recover the day's journal, do `work`, release the lease. A day
        another process holds is skipped; so is a day (with `work`) that another process finished
        after it was listed at `listed_at`; a day whose lease is lost midway is left to its new
        holder (nothing more is published or deleted for it here)."""
        lease, holder = self.leases.take(label)
        if lease is None:
            log.event("day.held", day=label, holder=holder.get("owner"), expires_at=str(holder.get("expires_at")))
            stats.held_elsewhere += 1
            return
        if work is not None and listed_at is not None and self.leases.finished_since(holder, listed_at):
            self.leases.release(lease)
            log.event("day.done_elsewhere", day=label, by=holder.get("owner"), at=str(holder.get("released_at")))
            return
        log.event("day.taken", day=label, token=lease.token)
        self._day = lease
        faults.hit("day:taken")
        try:
            while True:
                self._retaken = False
                try:
                    with self.meter.stage("recover"):
                        self._recover_day(label, stats)
                    if work is not None:
                        work()
                    break
                except _Retaken:
                    log.warning("day.reread", day=label, token=self._day.token,
                                reason="its lease lapsed and was taken again; its documents are read afresh")
        except LeaseLost as exc:
            if self._admission is not None and self._admission in exc.lost:
                self.leases.release_after_failure(self._day)
                raise
            self.source.drop_session()
            log.warning("day.lost", day=label, error=str(exc), action="left to the lease's new holder")
            stats.days_lost += 1
        except BaseException:
            self.leases.release_after_failure(self._day)
            raise
        self.leases.release(self._day)

    def _leases(self) -> list[Lease]:
        return [self._day] + ([self._admission] if self._admission is not None else [])

    def _regain(self, error: LeaseLost, *, stale_ok: bool) -> None:
        """Leases found lost (by a renewal, a fencing check or a delete): take each again if it is
        free -- it lapsed, or the server lost its document in a crash -- and go on; raise `error`
        if another process holds one. A new token means another process held it in between: what
        was read before may be stale -- raise `error` too, unless `stale_ok` (a committed segment's
        deletes, guarded by content, go on; `_retaken` has the day read afresh after them)."""
        for lease in error.lost:
            renewed, _ = self.leases.take(lease.day)
            if renewed is None:
                raise error
            if lease.day is None:
                self._admission = renewed
            else:
                self._day = renewed  # released when the day ends, whatever happens next
            log.warning("lease.reacquired", lease=renewed.key, token=renewed.token)
            if renewed.token != lease.token:
                if not stale_ok:
                    raise error
                self._retaken = True

    def _check_renewed(self) -> None:
        """While reading: once a renewal found the day's lease (or the collection's) no longer
        ours, take it again if it is free and untouched, else stop (the day is left)."""
        lost = [lease for lease in self._leases() if not self.source.holds(lease)]
        if lost:
            self._regain(LeaseLost(f"{', '.join(lease.describe() for lease in lost)} was taken by another process",
                                   lost), stale_ok=False)

    def _fence(self) -> None:
        """Right before a publish: the day's lease (and the collection's) must still be ours --
        or free and taken again with the same token (a server crash lost its document). Another
        holder in between: nothing is published."""
        try:
            self.source.check_lease(*self._leases())
        except LeaseLost as exc:
            self._regain(exc, stale_ok=False)
            self.source.check_lease(*self._leases())

    # -- recovery -----------------------------------------------------------------------------------

    def _recover_day(self, label: str, stats: CycleStats) -> None:
        """Finish what a crash interrupted in this day (whichever process it was: the day's lease
        is ours): sweep its unpublished temporary files, then for every journaled segment of the
        day drop the entry (nothing was published), or complete its commit (the video was
        published but not its index: the index is rebuilt from the video), verify it and finish its
        guarded deletes. A journaled segment that does not verify is set aside: nothing more is
        deleted against it, its file stays, `status` and `check` report it, and its documents still
        in MongoDB are archived again. Published files are never removed."""
        for path in layout.sweep(layout.day_dir(self.cfg.collection_dir, label)):
            log.event("recovery.removed_temporary", path=str(path))
        self.state.reload()
        for rel in [rel for rel in self.state.pending if layout.day_of(rel) == label]:
            video = self.cfg.collection_dir / rel
            try:
                if not self.store.exists(objects.index_name(rel)):
                    if not self.store.exists(rel):
                        log.event("recovery.uncommitted", segment=rel)
                        self.state.remove_pending(rel)
                        continue
                    if not self.store.local:  # uploaded, never committed: its documents are all in MongoDB
                        log.warning("recovery.orphan_uploaded", segment=self.store.where(rel),
                                    reason="the video was uploaded but not its index; it stays (never deleted), "
                                           "its documents are archived again under the next part")
                        self.state.remove_pending(rel)
                        continue
                    rebuilt = rebuild.reindex(video)  # raises unless the video decodes completely
                    log.warning("recovery.reindexed", segment=rel, documents=rebuilt.index["documents"],
                                reason="the video was published but not its index; index rebuilt from the video")
                reader = self.store.reader(rel)
                report = reader.verify()
                if not report.ok:
                    raise SegmentError(f"{report.status}: " + "; ".join(report.problems[:5]), str(video))
            except SegmentError as exc:
                self._set_aside(rel, str(exc), stats)
                continue
            derived.after_commit(self.store, rel, reader.index)
            entries = [(index.from_json(e["_id"]), e["sha256"], e["bytes"]) for e in reader.entries() if "_id" in e]
            outcome = self._delete(entries, rel)
            stats.recovered += outcome.deleted
            stats.bytes_deleted += outcome.bytes
            if outcome.complete:
                self.state.remove_pending(rel)
                log.event("recovery.completed", segment=rel, deleted=outcome.deleted, changed=outcome.changed)

    def _set_aside(self, rel: str, reason: str, stats: CycleStats) -> None:
        """A journaled segment that cannot be trusted: no delete against it, ever; keep the file."""
        log.error("recovery.set_aside", segment=rel, reason=reason[:500],
                  action="nothing is deleted against it; its documents still in MongoDB are archived again; "
                         "run `archiverd check` on it")
        self.state.set_aside(rel, {"at": dt.datetime.now(dt.timezone.utc).isoformat(), "reason": reason[:500]})
        self.state.remove_pending(rel)
        stats.set_aside += 1

    # -- one day ------------------------------------------------------------------------------------

    def _archive_day(self, label: str, start: int, end: int, stats: CycleStats) -> None:
        """Seal the day's expired documents (dated in [start, end)) into its next part(s) and
        delete them; documents whose exact bytes a sealed part of the day already holds are deleted
        against that part instead. They are read only now, under the day's lease."""
        sealed = _SealedDays(self.cfg.collection_dir, self.state.get("set_aside") or {}, self.store)
        again: dict[Path, list[Entry]] = {}
        writer: SegmentWriter | None = None
        entries: list[Entry] = []
        # read in this thread: a read-ahead thread cost ~40 MB of peak RSS with 15 MB documents (the
        # allocator's per-thread arenas), over the 300 MB bound; the CPU stages overlap in the workers
        reading = self.source.expired(end, since=start)
        try:
            for raw, _id, ms, reason in self.meter.timed("read", reading):
                if self.stop.is_set():
                    stats.stopped = True
                    break
                if ms is None:
                    stats.skip(reason or "not a date")
                    continue
                self._check_renewed()  # a lease found lost stops the reading, not just the publish
                if writer is not None and self.cfg.segment_max_docs and writer.documents >= self.cfg.segment_max_docs:
                    full, writer = writer, None  # from here on the journal, not this frame, owns it
                    self._seal_and_delete(full, entries, stats)
                    del full
                    entries = []
                    memory.release()
                    if self._retaken:
                        raise _Retaken
                sha = hashlib.sha256(raw).hexdigest()
                holder = sealed.holder(label, _id, sha)
                if holder is not None:
                    again.setdefault(holder, []).append((_id, sha, len(raw)))
                    stats.already_sealed += 1
                    continue
                if writer is None:
                    writer = self._open(layout.day_dir(self.cfg.collection_dir, label))
                faults.hit("read")
                try:
                    with self.meter.stage("encode"):
                        writer.append(raw, {"date": iso(ms), **fields_meta(raw, self.cfg.indexed)}, sha256=sha)
                except (ValueError, TypeError) as exc:  # cannot be encoded: it stays in MongoDB
                    stats.skip(f"cannot be archived: {exc}"[:120])
                    continue
                entries.append((_id, sha, len(raw)))
                stats.read += 1
                stats.bytes_sealed += len(raw)
                stats.per_day[label] = stats.per_day.get(label, 0) + 1
                faults.hit("appended")
                if self.progress:
                    self.progress(1)
                self.meter.add(1, len(raw))
                if self.cfg.throttle_seconds and stats.read % self.cfg.batch_size == 0:
                    self.stop.wait(self.cfg.throttle_seconds)
            if writer is not None and not stats.stopped:
                full, writer = writer, None
                self._seal_and_delete(full, entries, stats)
                del full, entries
                memory.release()
        finally:
            reading.close()
            if writer is not None:  # stopped or failed before sealing: abandon, nothing was deleted
                rel = self._rel(writer.path)
                writer.abort()
                self.state.remove_pending(rel, self.source.owner)
        for segment, items in again.items():
            if not self.stop.is_set():
                self._delete_against(segment, items, stats)

    def _delete_against(self, segment: Path, items: list[Entry], stats: CycleStats) -> None:
        """Documents found again whose exact bytes `segment` holds (checked by `_SealedDays`): delete
        them against it (guarded as always) instead of sealing them a second time."""
        rel = self._rel(segment)
        log.warning("delete.already_sealed", segment=rel, documents=len(items),
                    reason="their exact bytes are already sealed (a delete the server lost, or a restore "
                           "from backup); deleted against that segment")
        with self.meter.stage("delete"):
            outcome = self._delete(items, rel)
        stats.deleted += outcome.deleted
        stats.changed += outcome.changed
        stats.bytes_deleted += outcome.bytes

    def _rel(self, path: Path) -> str:
        return str(path.relative_to(self.cfg.collection_dir))

    def _open(self, directory: Path) -> SegmentWriter:
        durable.ensure_dir(directory)
        # The day's lease makes this process the only one choosing a part name in this directory. A
        # holder that lost the lease in the instant between its fencing check and its publish could
        # still publish this very name: the publish is an exclusive create (link, never rename over),
        # so exactly one of the two seals gets the name and the other publishes nothing.
        ring = keyring.from_config(self.cfg)  # read at each segment: a `key rotate` is taken up at once
        encryption.use_keyring(ring)
        path = self.cfg.collection_dir / self.store.next_part(self._rel(directory))
        self.state.add_pending(self._rel(path), self.source.owner)  # intent first: recovery knows what to look for
        return SegmentWriter(path, source={"db": self.cfg.database, "collection": self.cfg.collection,
                                           "date_field": self.cfg.date_field, "index_fields": list(self.cfg.indexed)},
                             block_bytes=self.cfg.block_bytes, redundancy=self.cfg.parity_percent,
                             encryption=ring.active if ring is not None else None, workers=self.cfg.workers)

    def _seal_and_delete(self, writer: SegmentWriter, entries: list[Entry], stats: CycleStats) -> None:
        rel = self._rel(writer.path)
        faults.hit("before-seal")
        try:
            # fencing: a process whose day (or collection) lease is gone or superseded publishes nothing
            with self.meter.stage("seal"):
                idx = writer.seal(verify=True, before_publish=self._fence,
                                  upload=objects.uploader(self.store, rel, self._fence))
        except BaseException:
            try:
                published = self.store.exists(rel)
            except StorageError:  # the store cannot say: the journal entry stays, recovery looks again
                published = True
            if not published:  # nothing published: nothing to recover
                self.state.remove_pending(rel, self.source.owner)
            # else the video is published without its index: recovery rebuilds the index from the
            # video and verifies it before any delete (or reports it, and deletes nothing)
            raise
        faults.hit("commit")
        derived.after_commit(self.store, rel, idx, writer)
        stats.sealed += idx["documents"]
        stats.segments.append(rel)
        log.event("segment.sealed", segment=rel, documents=idx["documents"], frames=idx["frames"],
                  bytes=idx["video"]["bytes"])
        self.state.update(last_seal={"segment": rel, "documents": idx["documents"], "bytes": idx["video"]["bytes"],
                                     "at": dt.datetime.now(dt.timezone.utc).isoformat()})
        with self.meter.stage("delete"):
            outcome = self._delete(entries, rel)
        stats.deleted += outcome.deleted
        stats.changed += outcome.changed
        stats.gone += outcome.gone
        stats.bytes_deleted += outcome.bytes
        if outcome.complete:
            self.state.remove_pending(rel, self.source.owner)

    def _delete(self, entries: list[Entry], rel: str) -> DeleteOutcome:
        """Guarded deletes in batches, a durability barrier, then a read that confirms them: a
        server that acknowledged a delete it then lost (an interrupted commit, a rollback) gets the
        delete again. Returns what happened; raises if unchanged documents are still there after
        that (the journal entry stays). A stop interrupts it between batches; once every batch
        has run, the barrier and the confirming read still run, so that a stop right after the
        last batch does not leave the segment journaled (`complete` says whether it got there)."""
        total, ran = self._delete_batches(entries, rel)
        if not ran:
            return total
        if total.deleted:
            self.source.durability_barrier(self._day)
        for attempt in range(3):
            if attempt and self.stop.is_set():  # a re-delete is a new step: leave it journaled
                return total
            present = self.source.present([i for i, _, _ in entries])
            # by identity, not by count: a kept (changed) document someone deleted meanwhile must
            # not let one whose acknowledged delete was lost pass for done
            again = [e for e in entries if (key := index.key_of(e[0])) in present and key not in total.kept]
            if not again:
                break
            log.warning("delete.not_durable", segment=rel, documents=len(again),
                        reason="acknowledged deletes are not visible; deleting again")
            redo, ran = self._delete_batches(again, rel)
            if not ran:
                return total
            total.deleted += redo.deleted
            total.bytes += redo.bytes
            total.kept |= redo.kept
            if redo.deleted:
                self.source.durability_barrier(self._day)
        else:
            raise DatabaseError(f"{rel}: deletes are acknowledged but do not stay deleted; the segment stays "
                                "journaled and is retried")
        if total.changed:
            log.warning("delete.kept_changed", segment=rel, documents=total.changed,
                        reason="updated after it was read; stays in MongoDB and is archived again later")
        log.event("segment.deleted", segment=rel, deleted=total.deleted, changed=total.changed, gone=total.gone)
        total.complete = True
        return total

    def _batches(self, entries: list[Entry]) -> Iterator[list[tuple[Any, str]]]:
        """Delete batches of at most batch_size documents and batch_bytes of BSON (a transaction
        re-reads its batch: 16 MB documents must not make that a gigabyte)."""
        batch: list[tuple[Any, str]] = []
        size = 0
        for _id, sha, length in entries:
            if batch and (len(batch) >= self.cfg.batch_size or size + length > self.cfg.batch_bytes):
                yield batch
                batch, size = [], 0
            batch.append((_id, sha))
            size += length
        if batch:
            yield batch

    def _delete_batches(self, entries: list[Entry], rel: str) -> tuple[DeleteOutcome, bool]:
        """(what the batches did, whether every batch ran: a stop is looked at between batches)."""
        total = DeleteOutcome()
        done = 0
        for batch in self._batches(entries):
            if self.stop.is_set():
                log.event("delete.interrupted", segment=rel, remaining=len(entries) - done)
                return total, False
            done += len(batch)
            try:
                outcome = self.source.delete_unchanged(batch, self._day)
            except LeaseLost as exc:
                # Fencing refused: another process may hold the day now. If its lease is free again
                # (it lapsed, or its document was lost in a server crash), take it and go on: the
                # deletes of a committed segment stay guarded by content either way. If another
                # process had the day meanwhile (a new token), the day's documents are read afresh
                # after this segment.
                self._regain(exc, stale_ok=True)
                outcome = self.source.delete_unchanged(batch, self._day)
            total.deleted += outcome.deleted
            total.bytes += outcome.bytes
            total.kept |= outcome.kept
            total.gone += outcome.gone
            faults.hit("delete-batch")
        return total, True
