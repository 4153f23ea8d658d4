"""Retention: `archiverd prune` removes whole day segments whose day ended more than
ARCHIVERD_RETENTION_DAYS ago (counted from the documents' UTC day, like the archiving threshold).

Prune and erase are the only commands that ever remove sealed files, and only when a person or a
configured retention asks -- never as recovery or cleanup. Nothing under a hold goes (store/holds.py:
a day range, or a document, which keeps its whole segment); nothing whose deletes are still
journaled goes (its documents would otherwise be archived again); `out-of-range/` never goes (its
documents have no day a retention can count from).

Per segment, in this order (docs/ARCHITECTURE.md, "Removing sealed files"):

1. the audit record `prune`/`begin` (what: every file, its size, each video's SHA-256, the document
   count; why; who) is appended and fsynced;
2. the index is removed and the directory synced -- the segment is no longer committed;
3. the other files (repaired copy's index, derived files: vector sidecar, key file, ...), then the
   repaired copy and the video, then the directory is synced;
4. the audit record `prune`/`end`; then empty day, month and year directories go.

A crash before 2 leaves the whole segment (a rerun prunes it, checking holds again); after 2, an
orphan video and perhaps derived files, which `check` and `status` report and a rerun removes: the
`begin` record without its `end` tells the rerun that this segment was already checked against the
holds, so it finishes even though its index is gone.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from . import audit, durable, holds, layout, objects
from .. import faults, log
from ..config import Config
from ..crypto import keyring
from ..errors import ArchiverdError, ConfigError, EncryptionKeyError, SegmentError
from ..format import index

_SEGMENT_NAME = re.compile(r"^(\d{4})/(\d{2})/(\d{2})/part-(\d{4,})\.")


@dataclass
class SegmentPlan:
    day: dt.date
    video: Path  # the video's name in the store (YYYY/MM/DD/part-NNNN.mkv); it may be gone already
    files: list[str]  # the segment's names in the store, in removal order
    bytes: int = 0
    documents: int | None = None
    held_by: list[str] = field(default_factory=list)
    skipped: str | None = None  # why it stays although it is past retention and not held

    @property
    def removable(self) -> bool:
        return not self.held_by and self.skipped is None


@dataclass
class PruneResult:
    retention_days: int
    last_day: dt.date  # the newest day past retention
    dry_run: bool
    segments: list[SegmentPlan] = field(default_factory=list)
    removed_dirs: list[Path] = field(default_factory=list)

    @property
    def removed(self) -> list[SegmentPlan]:
        return [s for s in self.segments if s.removable]

    @property
    def kept(self) -> list[SegmentPlan]:
        return [s for s in self.segments if not s.removable]

    def summary(self) -> dict[str, Any]:
        return {"retention_days": self.retention_days, "through_day": self.last_day.isoformat(),
                "dry_run": self.dry_run, "segments_removed": len(self.removed), "segments_kept": len(self.kept),
                "files_removed": sum(len(s.files) for s in self.removed),
                "bytes_removed": sum(s.bytes for s in self.removed)}


def last_prunable_day(retention_days: int, now: dt.datetime) -> dt.date:
    """The newest day every moment of which is more than `retention_days` before `now`: day D goes
    once D + 1 day, 00:00 UTC, is at or before now - retention."""
    return (now - dt.timedelta(days=retention_days)).astimezone(dt.timezone.utc).date() - dt.timedelta(days=1)


def day_parts(names: Iterable[str]) -> dict[dt.date, list[str]]:
    """The video name of every part with any object in the store (the video itself may be gone),
    by day, oldest day and part first (`out-of-range/` has no day)."""
    found: dict[dt.date, set[tuple[int, str]]] = {}
    for name in names:
        m = _SEGMENT_NAME.match(name)
        if m is None:
            continue
        try:
            day = dt.date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        except ValueError:
            continue
        found.setdefault(day, set()).add((int(m.group(4)), f"{name[:11]}part-{m.group(4)}.mkv"))
    return {day: [video for _, video in sorted(found[day])] for day in sorted(found)}


def _document_keys(store: objects.Store, video: str) -> tuple[int, list[str]] | None:
    """(document count, identity key of every `_id`) from the segment's index; None if unreadable."""
    try:
        idx = store.load_index(video)
    except SegmentError:
        return None
    return idx["documents"], [index.id_key(e["_id"]) for e in idx["docs"] if "_id" in e]


def unfinished(collection_dir: Path, event: str) -> dict[str, str]:
    """Segments whose removal by `event` (prune, erase) began (audited) but did not end: a crash in
    between. Segment -> the run that began it."""
    begun: dict[tuple[Any, Any], str] = {}
    for r in audit.read(collection_dir)[0]:
        if r.get("event") == event and isinstance(r.get("segment"), str):
            key = (r.get("run"), r["segment"])
            if r.get("phase") == "begin":
                begun[key] = r["segment"]
            elif r.get("phase") == "end":
                begun.pop(key, None)
    return {segment: run for (run, _), segment in begun.items()}


def plan(store: objects.Store, collection_dir: Path, retention_days: int, *, now: dt.datetime,
         hold_list: list[holds.Hold], pending: Iterable[str], ring: keyring.Keyring | None) -> PruneResult:
    """What prune would remove from `store` and what it keeps, and why; changes nothing. The audit
    log is in `collection_dir`."""
    last = last_prunable_day(retention_days, now)
    result = PruneResult(retention_days, last, dry_run=True)
    journaled = set(pending)
    interrupted = unfinished(collection_dir, "prune")
    document_holds = [h for h in hold_list if h.kind == holds.DOCUMENT]
    sizes = store.listing()
    for day, videos in day_parts(sizes).items():
        if day > last:
            break
        for video in videos:
            files = layout.removal_order(video, sizes)
            item = SegmentPlan(day, Path(video), files, sum(sizes[f] for f in files))
            item.held_by = [h.describe() for h in hold_list if h.covers_day(day)]
            contents = _document_keys(store, video) if objects.index_name(video) in sizes else None
            item.documents = contents[0] if contents else None
            if video in journaled:
                item.skipped = "journaled: its deletes are unfinished (the next cycle finishes them)"
            elif document_holds and not item.held_by:
                if contents is not None:
                    try:
                        held = {h.describe() for key in contents[1] for h in holds.matching(document_holds, key, ring)}
                    except EncryptionKeyError as exc:
                        item.skipped = f"document holds cannot be checked: {exc}"
                    else:
                        item.held_by = sorted(held)
                elif video not in interrupted:
                    item.skipped = "its index cannot be read, so document holds cannot be checked"
            result.segments.append(item)
    return result


def remove_segment(store: objects.Store, collection_dir: Path, video: str, event: str, who: dict[str, Any],
                   **record: Any) -> list[str]:
    """Remove every object of the segment `video` from `store` (prune and erase, nothing else): the
    audit record `begin` in `collection_dir` (naming each object, its size, each video's SHA-256,
    and `record`; in an object store also the store and its versioning), the index (the un-commit
    point), the other objects, the audit record `end` (in an object store with the number of
    versions of each object removed). Returns the objects removed."""
    sizes = store.listing(video.rsplit("/", 1)[0] + "/" if "/" in video else "")  # what is there now
    files = layout.removal_order(video, sizes)
    if not files:
        return []
    described: list[dict[str, Any]] = []
    for name in files:
        entry: dict[str, Any] = {"path": name, "bytes": sizes[name]}
        if name.endswith(".mkv"):
            entry["sha256"] = store.sha256(name)
        described.append(entry)
    where = {} if store.local else {"store": store.url, "versioning": store.versioning()}
    audit.append(collection_dir, event, who, phase="begin", segment=video, files=described, **where, **record)
    faults.hit(f"{event}:audited")
    committed, versions = objects.index_name(video), {}
    for name in files:
        versions[name] = store.remove(name)
        if name == committed:
            faults.hit(f"{event}:uncommitted")
    done = {} if store.local else {"versions_removed": versions}
    audit.append(collection_dir, event, who, phase="end", segment=video, removed=len(files), **done,
                 **{k: v for k, v in record.items() if k == "run"})
    return files


def _remove_empty_dirs(collection_dir: Path, day_dir: Path) -> list[Path]:
    removed = []
    for directory in (day_dir, day_dir.parent, day_dir.parent.parent):
        if directory == collection_dir or not durable.rmdir_if_empty(directory):
            break
        removed.append(directory)
    return removed


def prune(cfg: Config, *, pending: Iterable[str], retention_days: int | None = None, reason: str | None = None,
          dry_run: bool = False, command: str = "archiverd prune", now: dt.datetime | None = None) -> PruneResult:
    """Plan, and unless `dry_run`, remove every segment past retention that nothing keeps, from the
    collection's store (its archive directory or its object store; the audit log, holds and lock
    stay in the collection's local directory). `retention_days` overrides the setting (a person
    asking); `pending` is the state's journal."""
    days = cfg.retention_days if retention_days is None else retention_days
    if not days:
        raise ConfigError("no retention is configured (ARCHIVERD_RETENTION_DAYS=0 keeps everything forever): set "
                          "it, or pass --keep-days N to prune once")
    if days <= cfg.threshold_days:
        raise ConfigError(f"a retention of {days} days would prune documents archived only after "
                          f"{cfg.threshold_days:g} days: it must be longer than the threshold")
    now = now or dt.datetime.now(dt.timezone.utc)
    store = objects.for_collection(cfg)
    if store.local and not cfg.collection_dir.is_dir():
        return PruneResult(days, last_prunable_day(days, now), dry_run)
    if not dry_run:
        durable.ensure_dir(cfg.collection_dir)
    lock = contextlib.nullcontext() if dry_run else durable.exclusive_lock(cfg.collection_dir / holds.REMOVALS_LOCK)
    with lock:  # one prune at a time; a dry run creates nothing, not even the lock file
        hold_list = holds.Holds(cfg.collection_dir).list()
        needs_key = any(audit.scheme_of(d) != audit.PLAIN for h in hold_list for d in h.digests)
        ring = keyring.from_config(cfg) if needs_key else None
        result = plan(store, cfg.collection_dir, days, now=now, hold_list=hold_list, pending=pending, ring=ring)
        result.dry_run = dry_run
        if dry_run:
            return result
        origin = ("command line (--keep-days)" if retention_days is not None
                  else cfg.origins.get("retention_days", "default"))
        why = {"rule": "retention", "retention_days": days, "setting": origin, "reason": reason,
               "through_day": result.last_day.isoformat()}
        who, run = audit.who(command), uuid.uuid4().hex
        interrupted = unfinished(cfg.collection_dir, "prune")  # finished under the run that began them
        for item in result.removed:
            rel = item.video.as_posix()
            item.files = remove_segment(store, cfg.collection_dir, rel, "prune", who, run=interrupted.get(rel, run),
                                        day=item.day.isoformat(), documents=item.documents, why=why)
        if isinstance(store, objects.LocalStore):  # an object store has no directories
            for day_dir in sorted({store.path(s.video.parent.as_posix()) for s in result.removed}):
                result.removed_dirs += _remove_empty_dirs(cfg.collection_dir, day_dir)
    return result


class _State(Protocol):
    pending: list[str]

    def get(self, key: str, default: Any = None) -> Any: ...

    def update(self, **values: Any) -> None: ...


def after_cycle(cfg: Config, state: _State, now: dt.datetime | None = None) -> PruneResult | None:
    """The daemon's retention: only with ARCHIVERD_RETENTION_DAYS set, at most once per UTC day
    (the first cycle of a day that completes; a failed or interrupted prune is tried again next
    cycle). A failure is logged and never stops archiving."""
    if not cfg.retention_days:
        return None
    now = now or dt.datetime.now(dt.timezone.utc)
    today = now.date().isoformat()
    if state.get("last_prune_day") == today:
        return None
    try:
        result = prune(cfg, pending=state.pending, command="archiverd run", now=now)
    except (ArchiverdError, OSError) as exc:
        log.error("prune.failed", error=f"{exc.__class__.__name__}: {exc}", retention_days=cfg.retention_days)
        return None
    log.event("prune.done", **result.summary())
    for item in result.kept:
        log.warning("prune.kept", segment=item.video.as_posix(),
                    why="; ".join(item.held_by) or item.skipped)
    state.update(last_prune_day=today, last_prune=result.summary())
    return result
