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
"""
from __future__ import annotations

import datetime as dt
from typing import Any

from .. import log
from ..format import index
from .source import RELEASED, Lease, Source, dead_local_owner
from .state import State


class Leases:
    def __init__(self, source: Source, state: State) -> None:
        self.source = source
        self.state = state

    def take(self, day: str | None = None) -> tuple[Lease | None, dict[str, Any]]:
        """The collection's lease (`day` None) or a day's, or None while another live process holds
        it; and the lease document as it was found (who held it)."""
        holder = self.source.lease_holder(day) or {}
        owner = holder.get("owner")
        dead = dead_local_owner(owner)
        expires = holder.get("expires_at")
        # lapsed, not released: its holder died or paused, perhaps inside a delete transaction
        lapsed = expires is not None and RELEASED < expires <= dt.datetime.now(dt.timezone.utc)
        if owner and owner != self.source.owner and (dead or lapsed):
            self.end_session_of(owner)
        if dead:
            log.event("lease.taken_over", owner=owner, day=day or "all",
                      reason="its process on this host no longer runs")
        lease = self.source.acquire_lease(take_from=owner if dead else None, day=day)
        if lease is None and not owner:  # taken by someone else between the read and the write
            holder = self.source.lease_holder(day) or {}
        return lease, holder

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
