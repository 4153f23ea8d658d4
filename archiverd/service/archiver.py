"""One archiving cycle: recover -> read expired -> per-day segment -> seal -> guarded delete.

The seal protocol and its crash windows are in docs/ARCHITECTURE.md. In short: a segment's intent is
journaled in the state file before anything is written; its index, published last, is the commit
point; deletes happen only after that, only for documents whose current bytes still match what was
sealed; the journal entry is removed when the deletes are done. A restart replays the journal.
"""
from __future__ import annotations

import datetime as dt
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable


from ..store import layout, durable
from .. import faults, log
from ..format import index
from ..config import Config
from ..errors import DatabaseError, SegmentError
from ..format import rebuild
from ..format.reader import SegmentReader
from ..format.writer import SegmentWriter
from .source import DeleteOutcome, Lease, LeaseLost, Source
from .state import State

@dataclass
class CycleStats:
    watermark: str = ""
    read: int = 0
    sealed: int = 0
    deleted: int = 0
    changed: int = 0  # updated after it was read: kept in MongoDB, archived again later
    gone: int = 0
    segments: list[str] = field(default_factory=list)
    per_day: dict[str, int] = field(default_factory=dict)
    recovered: int = 0
    set_aside: int = 0  # journaled segments that failed verification (nothing deleted against them)
    stopped: bool = False
    seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """What status and the logs show: counts, not the per-day and per-segment lists."""
        out = {k: v for k, v in self.__dict__.items() if k not in ("segments", "per_day")}
        out.update(segments=len(self.segments), days=len(self.per_day))
        return out


def watermark(cfg: Config, now: dt.datetime | None = None) -> dt.datetime:
    now = now or dt.datetime.now(dt.timezone.utc)
    # BSON dates have millisecond precision; truncate so the query is exactly reproducible
    wm = now - dt.timedelta(days=cfg.threshold_days)
    return wm.replace(microsecond=wm.microsecond // 1000 * 1000)


class Archiver:
    def __init__(self, cfg: Config, source: Source, state: State, *, stop: threading.Event | None = None,
                 progress: Callable[[int], None] | None = None) -> None:
        self.cfg = cfg
        self.source = source
        self.state = state
        self.stop = stop or threading.Event()
        self.progress = progress

    # -- recovery -----------------------------------------------------------------------------------

    def recover(self, lease: Lease, stats: CycleStats) -> None:
        """Finish what a crash interrupted: sweep unpublished temporary files, then for every
        journaled segment drop the entry (nothing was published), or complete its commit (the video
        was published but not its index: the index is rebuilt from the video), verify it and finish
        its guarded deletes. A journaled segment that does not verify is set aside: nothing more is
        deleted against it, its file stays, `status` and `check` report it, and its documents still
        in MongoDB are archived again. Published files are never removed."""
        for path in layout.sweep(self.cfg.collection_dir):
            log.event("recovery.removed_temporary", path=str(path))
        self.state.reload()
        for rel in self.state.pending:
            video = self.cfg.collection_dir / rel
            try:
                if not index.path_for(video).exists():
                    if not video.exists():
                        log.event("recovery.uncommitted", segment=rel)
                        self.state.remove_pending(rel)
                        continue
                    rebuilt = rebuild.reindex(video)  # raises unless the video decodes completely
                    log.warning("recovery.reindexed", segment=rel, documents=rebuilt.index["documents"],
                                reason="the video was published but not its index; index rebuilt from the video")
                reader = SegmentReader(video)
                report = reader.verify()
                if not report.ok:
                    raise SegmentError(f"{report.status}: " + "; ".join(report.problems[:5]), str(video))
            except SegmentError as exc:
                self._set_aside(rel, str(exc), stats)
                continue
            entries = [(index.from_json(e["_id"]), e["sha256"]) for e in reader.entries() if "_id" in e]
            outcome = self._delete(entries, lease, rel)
            stats.recovered += outcome.deleted
            if not self.stop.is_set():
                self.state.remove_pending(rel)
                log.event("recovery.completed", segment=rel, deleted=outcome.deleted, changed=outcome.changed)

    def _set_aside(self, rel: str, reason: str, stats: CycleStats) -> None:
        """A journaled segment that cannot be trusted: no delete against it, ever; keep the file."""
        log.error("recovery.set_aside", segment=rel, reason=reason[:500],
                  action="nothing is deleted against it; its documents still in MongoDB are archived again; "
                         "run `archiverd check` on it")
        aside = dict(self.state.get("set_aside") or {})
        aside[rel] = {"at": dt.datetime.now(dt.timezone.utc).isoformat(), "reason": reason[:500]}
        self.state.update(set_aside=aside)
        self.state.remove_pending(rel)
        stats.set_aside += 1

    # -- the cycle ----------------------------------------------------------------------------------

    def run_cycle(self, lease: Lease) -> CycleStats:
        started = time.monotonic()
        wm = watermark(self.cfg)
        stats = CycleStats(watermark=wm.isoformat())
        self.recover(lease, stats)
        writer: SegmentWriter | None = None
        pending: list[tuple[Any, str]] = []
        day = ""
        try:
            for doc in self.source.expired(wm):
                if self.stop.is_set():
                    stats.stopped = True
                    break
                when = self.source.date_of(doc)
                label = layout.day_label(when)
                if writer is not None and (label != day or writer.documents >= self.cfg.segment_max_docs):
                    full, writer = writer, None  # from here on the journal, not this frame, owns it
                    self._seal_and_delete(full, pending, lease, stats)
                    pending = []
                if writer is None:
                    day = label
                    writer = self._open(layout.day_dir(self.cfg.collection_dir, when))
                faults.hit("read")
                entry = writer.append(doc.raw, {"date": when.isoformat() if isinstance(when, dt.datetime) else None})
                pending.append((doc["_id"], entry["sha256"]))
                stats.read += 1
                stats.per_day[label] = stats.per_day.get(label, 0) + 1
                faults.hit("appended")
                if self.progress:
                    self.progress(1)
                if self.cfg.throttle_seconds and stats.read % self.cfg.batch_size == 0:
                    self.stop.wait(self.cfg.throttle_seconds)
            if writer is not None and not stats.stopped:
                full, writer = writer, None
                self._seal_and_delete(full, pending, lease, stats)
        finally:
            if writer is not None:  # stopped or failed before sealing: abandon, nothing was deleted
                rel = self._rel(writer.path)
                writer.abort()
                self.state.remove_pending(rel)
        stats.seconds = round(time.monotonic() - started, 3)
        return stats

    def _rel(self, path: Path) -> str:
        return str(path.relative_to(self.cfg.collection_dir))

    def _open(self, directory: Path) -> SegmentWriter:
        durable.ensure_dir(directory)
        path = layout.next_part(directory)
        self.state.add_pending(self._rel(path))  # intent first: recovery knows what to look for
        return SegmentWriter(path, source={"db": self.cfg.database, "collection": self.cfg.collection,
                                           "date_field": self.cfg.date_field},
                             block_bytes=self.cfg.block_bytes, redundancy=self.cfg.parity_percent)

    def _seal_and_delete(self, writer: SegmentWriter, entries: list[tuple[Any, str]], lease: Lease,
                         stats: CycleStats) -> None:
        rel = self._rel(writer.path)
        faults.hit("before-seal")
        try:
            # fencing: an instance whose lease is gone or superseded publishes nothing
            idx = writer.seal(verify=True, before_publish=lambda: self.source.check_lease(lease))
        except BaseException:
            if not writer.path.exists():  # nothing published: nothing to recover
                self.state.remove_pending(rel)
            # else the video is published without its index: recovery rebuilds the index from the
            # video and verifies it before any delete (or reports it, and deletes nothing)
            raise
        faults.hit("commit")
        stats.sealed += idx["documents"]
        stats.segments.append(rel)
        log.event("segment.sealed", segment=rel, documents=idx["documents"], frames=idx["frames"],
                  bytes=idx["video"]["bytes"])
        self.state.update(last_seal={"segment": rel, "documents": idx["documents"], "bytes": idx["video"]["bytes"],
                                     "at": dt.datetime.now(dt.timezone.utc).isoformat()})
        outcome = self._delete(entries, lease, rel)
        stats.deleted += outcome.deleted
        stats.changed += outcome.changed
        stats.gone += outcome.gone
        if not self.stop.is_set():
            self.state.remove_pending(rel)

    def _delete(self, entries: list[tuple[Any, str]], lease: Lease, rel: str) -> DeleteOutcome:
        """Guarded deletes in batches, then a read that confirms them: a server that acknowledged a
        delete it then lost (an interrupted commit, a rollback) gets the delete again. Returns what
        happened; raises if unchanged documents are still there after that (the journal entry stays)."""
        total = self._delete_batches(entries, lease, rel)
        for _ in range(3):
            if self.stop.is_set():
                return total
            present = self.source.present([i for i, _ in entries])
            again = [(i, sha) for i, sha in entries if index.key_of(i) in present]
            if len(again) <= total.changed:  # only the documents kept because they changed
                break
            log.warning("delete.not_durable", segment=rel, documents=len(again) - total.changed,
                        reason="acknowledged deletes are not visible; deleting again")
            redo = self._delete_batches(again, lease, rel)
            total.deleted += redo.deleted
            total.changed = redo.changed
        else:
            raise DatabaseError(f"{rel}: deletes are acknowledged but do not stay deleted; the segment stays "
                                "journaled and is retried")
        if total.changed:
            log.warning("delete.kept_changed", segment=rel, documents=total.changed,
                        reason="updated after it was read; stays in MongoDB and is archived again later")
        log.event("segment.deleted", segment=rel, deleted=total.deleted, changed=total.changed, gone=total.gone)
        return total

    def _delete_batches(self, entries: list[tuple[Any, str]], lease: Lease, rel: str) -> DeleteOutcome:
        total = DeleteOutcome()
        size = self.cfg.batch_size
        for start in range(0, len(entries), size):
            if self.stop.is_set():
                log.event("delete.interrupted", segment=rel, remaining=len(entries) - start)
                break
            batch = entries[start:start + size]
            try:
                outcome = self.source.delete_unchanged(batch, lease)
            except LeaseLost:
                # Fencing refused: another instance may hold the lease. If it is free again (its
                # document expired or was lost in a server crash), take it with a new token and go
                # on; the deletes stay guarded by content either way.
                renewed = self.source.acquire_lease()
                if renewed is None:
                    raise
                log.warning("lease.reacquired", token=renewed.token)
                lease = renewed
                outcome = self.source.delete_unchanged(batch, lease)
            total.deleted += outcome.deleted
            total.changed += outcome.changed
            total.gone += outcome.gone
            faults.hit("delete-batch")
        return total
