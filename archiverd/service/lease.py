"""Who may work on what: taking the collection's lease and the day leases, and taking them over.

Two kinds of lease document (service/source.py reads and writes them):

* the **collection's lease** admits one active instance. Without `shared_backlog` an instance takes
  it first and the others wait (a hot standby), as before day leases existed;
* a **day lease** lets exactly one process seal and delete one UTC day, and fences it: a segment is
  published, and its documents deleted, only while the day's lease is still that process's, with
  the same token. With `shared_backlog` several processes (on one or many hosts) take the oldest
  days nobody holds, one at a time each; without it the single active instance holds each day in
  turn.

A lease is taken from its holder when that holder's lease expired (it died, paused, or lost the
server) or at once when the holder provably died on this host. Before that, the delete session the
holder recorded in the state file is ended: a transaction it left open would hold the lease
document's lock until the server reaps it (mongod: after 60 s; SecantusDB: only when another
transactional command arrives).

**One archive directory.** Processes that share a backlog must share the collection's archive
directory (on one host, or a network file system with working locks on many): the journal that lets
a day's next holder finish what a dead holder began, the part numbers of a day and the check for
documents already sealed all live there. Each archive directory has an identity (a random id in
`archiverd-archive-id`, created once); every lease records its holder's, and the object store its
holder seals into (ARCHIVERD_ARCHIVE_URL), if any. A process refuses (SharedArchiveError, exit 3)
to take a lease that a process of another archive directory, or of another store, holds, or left
unfinished (lapsed, or released with journal entries): its documents may already be sealed there,
and would be sealed twice.
"""
from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

from .. import log
from ..errors import ArchiverdError, ConfigError, StorageError
from ..format import index
from ..store import durable, layout, objects
from .source import RELEASED, Lease, Source, dead_local_owner
from .state import State

ARCHIVE_ID_FILE = "archiverd-archive-id"


class SharedArchiveError(ConfigError):
    """Another process works on this collection's backlog with another archive directory: sharing
    a backlog needs one archive directory (docs/guides/scale-out.md)."""


def archive_id(collection_dir: Path) -> str:
    """This archive directory's identity: read, or created once (exclusively: two processes
    starting together agree on one)."""
    path = collection_dir / ARCHIVE_ID_FILE
    for _ in range(2):
        try:
            found = path.read_text(encoding="ascii").strip()
        except FileNotFoundError:
            durable.ensure_dir(collection_dir)
            try:
                durable.write_new(path, (uuid.uuid4().hex + "\n").encode())
            except StorageError:
                if not path.exists():
                    raise
            continue
        except (OSError, UnicodeDecodeError) as exc:
            raise StorageError(f"cannot read the archive's identity {path}: {exc}") from None
        if len(found) != 32 or any(c not in "0123456789abcdef" for c in found):
            raise StorageError(f"{path} is damaged (not an archive id); it names this archive directory: "
                               "restore it from a backup of the directory")
        return found
    raise StorageError(f"cannot create the archive's identity {path}")


class Leases:
    def __init__(self, source: Source, state: State) -> None:
        self.source = source
        self.state = state
        self._archive: str | None = None
        cfg = source.cfg
        # the store sealed files go to, when it is not the archive directory (whose path may differ
        # between hosts that mount it: the directory is known by its id)
        self.store = objects.for_collection(cfg).url if cfg.archive_url is not None else ""

    @property
    def archive(self) -> str:
        if self._archive is None:
            self._archive = archive_id(self.source.cfg.collection_dir)
        return self._archive

    def take(self, day: str | None = None) -> tuple[Lease | None, dict[str, Any]]:
        """The collection's lease (`day` None) or a day's, or None while another live process holds
        it; and the lease document as it was found (who held it)."""
        holder = self.source.lease_holder(day) or {}
        owner = holder.get("owner")
        dead = dead_local_owner(owner)
        expires = holder.get("expires_at")
        # lapsed, not released: its holder died or paused, perhaps inside a delete transaction
        lapsed = expires is not None and RELEASED < expires <= dt.datetime.now(dt.timezone.utc)
        if owner and owner != self.source.owner:
            self._same_archive(holder, day, expires)
        if owner and owner != self.source.owner and (dead or lapsed):
            self.end_session_of(owner)
        if dead and not (expires is not None and expires <= RELEASED):  # a clean release is no takeover
            log.event("lease.taken_over", owner=owner, day=day or "all",
                      reason="its process on this host no longer runs")
        lease = self.source.acquire_lease(take_from=owner if dead else None, day=day,
                                          where={"archive": self.archive, "store": self.store,
                                                 "archive_dir": str(self.source.cfg.collection_dir)})
        if lease is None and not owner:  # taken by someone else between the read and the write
            holder = self.source.lease_holder(day) or {}
        return lease, holder

    def _same_archive(self, holder: dict[str, Any], day: str | None, expires: dt.datetime | None) -> None:
        """Refuse a lease whose holder writes to another archive directory, or seals into another
        store, while that holder may have work of it there: it holds it, or left it without a clean
        release (a journal entry there may name a sealed segment of the day). A clean release with
        nothing journaled (and a lease from before archives had identities) is no obstacle."""
        other, other_store = holder.get("archive"), holder.get("store")
        released = expires is not None and expires <= RELEASED
        if ((other is None or other == self.archive) and (other_store is None or other_store == self.store)) \
                or (released and not holder.get("unfinished")):
            return
        what = f"day {day}" if day is not None else "the collection's backlog"
        how = ("holds it now" if expires is not None and expires > dt.datetime.now(dt.timezone.utc)
               else "left it unfinished" + (f" ({holder['unfinished']} journaled segments)"
                                           if holder.get("unfinished") else " (its lease lapsed)"))
        def sealing(store: str | None) -> str:
            return f" sealing into {store}" if store else ""
        raise SharedArchiveError(
            f"{what} of {self.source.cfg.namespace}: {holder.get('owner')} {how} with archive directory "
            f"{holder.get('archive_dir')} (id {other}){sealing(other_store)}, not this one "
            f"({self.source.cfg.collection_dir}, id {self.archive}{sealing(self.store)}). Processes sharing a "
            "backlog must share one archive directory and one ARCHIVERD_ARCHIVE_URL; let a process using "
            "that directory finish its work (docs/guides/scale-out.md)")

    def finished_since(self, holder: dict[str, Any], when: dt.datetime) -> bool:
        """Whether another process released this lease (as found before taking it) cleanly after
        `when`: it worked the day since then and left nothing journaled. (A process that stopped
        early leaves documents behind: the next cycle lists the day again.)"""
        released = holder.get("released_at")
        return (holder.get("owner") not in (None, self.source.owner) and holder.get("expires_at") == RELEASED
                and released is not None and released >= when and not holder.get("unfinished"))

    def unfinished(self, day: str) -> int:
        """Journal entries of `day` (any process's) left in this archive's state file."""
        self.state.reload()
        return sum(1 for rel in self.state.pending if layout.day_of(rel) == day)

    def release(self, lease: Lease, *, once: bool = False) -> None:
        """Release a lease, recording (for a day) how many of its segments are still journaled: a
        process of another archive directory must not take a day with work left here. `once`:
        no retries (after a failure)."""
        self.source.release_lease(lease, unfinished=self.unfinished(lease.day) if lease.day is not None else 0,
                                  once=once)

    def release_after_failure(self, lease: Lease) -> None:
        """Release a lease after an error, without hiding that error: one attempt; a release that
        fails too (the server is gone) leaves the lease to lapse after lease_seconds."""
        try:
            self.release(lease, once=True)
        except (ArchiverdError, OSError) as exc:
            log.warning("lease.release_failed", lease=lease.key, error=str(exc)[:300],
                        action="it lapses after lease_seconds")

    def end_session_of(self, owner: str) -> None:
        """End the delete session `owner` recorded, if any (it no longer holds the lease it fenced)."""
        self.state.reload()
        recorded: dict[str, Any] = self.state.sessions()
        if owner in recorded:
            self.source.end_session(index.from_json(recorded[owner]))
            log.event("lease.ended_stale_session", owner=owner)
            self.state.forget_session(owner)

    def end_dead_sessions(self) -> None:
        """At start: end the sessions of instances of this host that no longer run (their open
        transactions, if any, hold locks until the server reaps them)."""
        self.state.reload()
        for owner in self.state.sessions():
            if dead_local_owner(owner):
                self.end_session_of(owner)

    def record_session(self, session_id: Any) -> None:
        self.state.record_session(self.source.owner, index.id_json(session_id))

    def forget_own_session(self) -> None:
        self.state.forget_session(self.source.owner)
