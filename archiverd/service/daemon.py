"""The long-running loop: be admitted, run cycles, sleep until there is work.

Admission: without `shared_backlog` one instance holds the collection's lease and the others wait
(a hot standby); with it, every process runs cycles and the day leases (service/lease.py) split the
backlog between them. A cycle that found days held by others looks again after half a lease, so a
day whose holder died is finished once its lease lapses.

Work arrives three ways: time passes (the watermark slides: the loop sleeps until the oldest live
document expires, at most poll_seconds), a change-stream event shows a document that is already
expired (an import or backfill), or a restart. The change stream's resume token is saved after each
completed cycle, so a restart replays what it missed; on a server without change streams the loop
says so once and polls.

Signals: the first SIGTERM/SIGINT lets the current step finish safely (an unsealed segment is
abandoned, a delete batch completes -- after a segment's last one its deletes are still confirmed
and its journal entry dropped -- and deletes not yet begun stay journaled), releases the lease and exits 0;
a second one exits at once -- still safe, because nothing is deleted outside a committed, journaled
segment. SIGHUP reloads the configuration file between cycles (settings that name what is archived
and where -- server, database, collection, archive directory -- need a restart and are kept).

Retention: only with ARCHIVERD_RETENTION_DAYS set, the first cycle of each UTC day that completes
then prunes day segments past retention (store/retention.py), logging `prune.done` (and `prune.kept`
for each segment a hold or an unfinished delete keeps); a failed prune is logged and archiving goes on.

A killed instance can leave a delete transaction open, which holds its lease document's lock until
the server reaps it (mongod: after 60 s). Each process records its delete session's id in the state
file; whoever takes a lease over from it ends that session first (service/lease.py), and every lease
operation carries maxTimeMS and is retried past the server's transaction lifetime.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import signal
import threading
import time
from typing import Any, Callable

from .. import log, units
from . import notify
from . import expiry
from .archiver import Archiver, CycleStats
from .metrics import Metrics
from ..config import Config, redact
from ..errors import EXIT_OK, EXIT_WARNING, ArchiverdError, DatabaseError, StorageError
from ..store import retention
from .lease import Leases
from .source import Lease, Source, token_from_json, token_to_json
from .state import State


class ChangeWatcher(threading.Thread):
    """Sets `wake` when an insert/update/replace carries an already expired date."""

    def __init__(self, cfg: Config, source: Source, state: State, wake: threading.Event,
                 stop: threading.Event) -> None:
        super().__init__(name="change-stream", daemon=True)
        self.cfg, self.source, self.state, self.wake, self.stop = cfg, source, state, wake, stop
        self.token: Any = token_from_json(state.get("resume_token"))
        self.status = "starting"

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                stream = self.source.watch(self.token)
                if stream is None:
                    self.status = f"unsupported by the server; polling every {self.cfg.poll_seconds:g} s"
                    log.warning("changestream.unsupported", poll_seconds=self.cfg.poll_seconds)
                    return
                self.status = "active"
                with stream:
                    while not self.stop.is_set() and stream.alive:
                        change = stream.try_next()
                        self.token = stream.resume_token
                        if change is not None and self._expired(change) and not self.wake.is_set():
                            log.event("changestream.wake", operation=change["operationType"])
                            self.wake.set()
            except Exception as exc:  # noqa: BLE001 - report, back off, reopen from the last token
                self.status = f"reconnecting ({exc.__class__.__name__})"
                log.warning("changestream.error", error=f"{exc.__class__.__name__}: {exc}"[:300])
                self.stop.wait(5)

    def _expired(self, change: Any) -> bool:
        """The document is dated in a day that is already complete: archive it now."""
        doc = change.get("fullDocument")
        if doc is None:
            return False
        ms, _ = expiry.date_ms(doc, self.cfg.date_field)
        return ms is not None and ms < expiry.cutoff_ms(self.cfg)


class Renewer:
    """Renews the leases this process holds (the collection's, the day's) every lease_seconds / 3 on
    a thread while a cycle runs. `stop()` waits for the thread, so that a release that follows is
    never undone by a renewal in flight (nor is a release during the cycle: see renew_leases)."""

    def __init__(self, source: Source, lease_seconds: float) -> None:
        self._done = threading.Event()
        self._source = source
        self._interval = lease_seconds / 3
        self._thread = threading.Thread(target=self._run, name="lease-renewer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(self._interval):
            try:
                for lease in self._source.renew_leases():  # fencing stops this cycle's publishes and deletes
                    log.error("lease.lost", lease=lease.key, token=lease.token)
            except Exception as exc:  # noqa: BLE001 - fencing protects the deletes anyway
                log.warning("lease.renew_failed", error=str(exc)[:200])

    def stop(self) -> None:
        self._done.set()
        self._thread.join()


class Daemon:
    def __init__(self, cfg: Config, *, progress: Callable[[int], None] | None = None,
                 reload: Callable[[], Config] | None = None) -> None:
        if not cfg.archive_dir.is_dir():  # a typo must not grow a second archive tree somewhere
            raise StorageError(f"archive directory {cfg.archive_dir} does not exist: create it, or fix "
                               "ARCHIVERD_ARCHIVE_DIR")
        self.cfg = cfg = dataclasses.replace(cfg, fail_fast=False)  # cron and the daemon ride out outages
        self.metrics = Metrics(cfg)
        self.stop = threading.Event()
        self.wake = threading.Event()
        self.state = State(cfg.state_file)
        self.source = Source(cfg)
        self.source.stopping = self.stop
        self.beat = time.monotonic()  # last sign of progress, for the systemd watchdog

        def on_progress(n: int) -> None:
            self.beat = time.monotonic()
            if progress:
                progress(n)

        self.archiver = Archiver(cfg, self.source, self.state, stop=self.stop, progress=on_progress)
        self.leases: Leases = self.archiver.leases
        self.source.on_session = self.leases.record_session
        self._signals = 0
        self._reload = reload
        self._reload_requested = False

    def install_signal_handlers(self) -> None:
        def handle(signum: int, _frame: Any) -> None:
            self._signals += 1
            if self._signals > 1:
                log.warning("daemon.abort", signal=signal.Signals(signum).name)
                os._exit(0)  # safe: deletes only ever follow a committed, journaled seal
            log.event("daemon.stopping", signal=signal.Signals(signum).name)
            notify.notify("STOPPING=1")
            self.stop.set()
            self.wake.set()

        def hangup(_signum: int, _frame: Any) -> None:
            log.event("daemon.reload_requested", signal="SIGHUP")
            self._reload_requested = True
            self.wake.set()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)
        signal.signal(signal.SIGHUP, hangup)

    def _admit(self) -> tuple[bool, Lease | None, dict[str, Any]]:
        """(may run a cycle, the collection's lease if one was taken, the lease document as found).
        A shared backlog needs no admission: the day leases split the work."""
        if self.cfg.shared_backlog:
            return True, None, {}
        lease, holder = self.leases.take()
        return lease is not None, lease, holder

    def _apply_reload(self) -> None:
        """SIGHUP: take the settings of the configuration file that are safe to change live."""
        self._reload_requested = False
        if self._reload is None:
            log.warning("daemon.reload_ignored", reason="no configuration file to reload")
            return
        try:
            new = self._reload()
        except ArchiverdError as exc:
            log.error("daemon.reload_failed", error=str(exc), action="keeping the running configuration")
            return
        fixed = ("uri", "database", "collection", "archive_dir", "date_field", "shared_backlog")
        kept = [k for k in fixed if getattr(new, k) != getattr(self.cfg, k)]
        # flags given on the command line keep their values: the file cannot override them
        pinned = {k for k, origin in self.cfg.origins.items() if origin.startswith(("flag", "command line"))}
        new = dataclasses.replace(new, **{k: getattr(self.cfg, k) for k in set(fixed) | pinned}, fail_fast=False)
        self.cfg = self.archiver.cfg = self.source.cfg = new
        log.event("daemon.reloaded", **({"needs_restart": ",".join(kept)} if kept else {}))

    def _record_error(self, exc: BaseException, *, in_state: bool = True) -> None:
        self.metrics.failed(exc)
        if in_state:
            self.state.update(last_error={"at": dt.datetime.now(dt.timezone.utc).isoformat(),
                                          "error": redact(f"{exc.__class__.__name__}: {exc}")})

    def once(self) -> tuple[int, CycleStats | None]:
        """One cycle (cron mode). Exit code 0, or 1 if documents were kept back or the lease is held."""
        try:
            self.source.ping()
            self.source.require_namespace()
            self.leases.end_dead_sessions()
            admitted, lease, holder = self._admit()
        except Exception as exc:
            self._record_error(exc, in_state=False)  # metrics only: a typo must not grow a state directory
            raise
        self.metrics.lease(admitted)
        if not admitted:
            log.warning("lease.held", holder=holder.get("owner"), expires_at=str(holder.get("expires_at")))
            return EXIT_WARNING, None
        renewer = Renewer(self.source, self.cfg.lease_seconds)
        failed = False
        try:
            stats = self.archiver.run_cycle(lease)
        except BaseException as exc:
            failed = True
            self._record_error(exc)
            raise
        finally:
            renewer.stop()
            if lease is not None and failed:
                self.leases.release_after_failure(lease)  # the cycle's error is the one reported
            elif lease is not None:
                self.leases.release(lease)
            self.leases.forget_own_session()
        self.state.update(last_cycle=stats.summary(), last_error=None)
        log.event("cycle.done", **stats.summary())
        self.metrics.cycle_done(self.source, stats)
        retention.after_cycle(self.cfg, self.state)  # only with ARCHIVERD_RETENTION_DAYS set
        # days another process holds are its work when the backlog is shared; a leftover otherwise
        held = stats.held_elsewhere and not self.cfg.shared_backlog
        return (EXIT_WARNING if stats.changed or stats.set_aside or stats.days_lost or held else EXIT_OK), stats

    def run(self) -> int:
        """Run until signalled. An unreachable server is waited for, with backoff, for as long as it
        takes (systemd sees READY and a STATUS saying so; `status` shows it as the last error)."""
        notify.notify("READY=1", "STATUS=connecting to MongoDB")
        self._start_watchdog()
        if not self.source.wait_until_reachable(self.stop, self._unreachable):
            log.event("daemon.stopped")
            return EXIT_OK
        self.source.require_namespace()
        self.metrics.serve()
        log.event("daemon.started", server=redact(self.cfg.uri), namespace=self.cfg.namespace,
                  threshold_days=self.cfg.threshold_days, archive_dir=str(self.cfg.collection_dir))
        watcher = ChangeWatcher(self.cfg, self.source, self.state, self.wake, self.stop)
        watcher.start()
        notify.notify("STATUS=starting")
        self.leases.end_dead_sessions()
        lease = None
        try:
            while not self.stop.is_set():
                self.beat = time.monotonic()
                # cleared before the cycle, not after it: a stop, a reload or an expired document
                # that arrives while the cycle runs must end the sleep that follows it
                self.wake.clear()
                if self._reload_requested:
                    self._apply_reload()
                    watcher.cfg = self.cfg
                admitted, lease, holder = self._admit()
                self.metrics.lease(admitted)
                if not admitted:
                    status = f"waiting: lease held by {holder.get('owner')} until {holder.get('expires_at')}"
                    self.state.update(lease={"status": status})
                    notify.notify(f"STATUS={status}")
                    log.event("lease.waiting", holder=holder.get("owner"))
                    self.stop.wait(min(self.cfg.poll_seconds, self.cfg.lease_seconds / 2))
                    continue
                if lease is not None:
                    self.state.update(lease={"status": f"held by this instance ({self.source.owner}, token "
                                                       f"{lease.token})",
                                             "at": dt.datetime.now(dt.timezone.utc).isoformat()})
                renewer = Renewer(self.source, self.cfg.lease_seconds)
                try:
                    token_at_start = watcher.token
                    stats = self.archiver.run_cycle(lease)
                    self.state.update(last_cycle=stats.summary(), last_error=None, change_stream=watcher.status,
                                      resume_token=token_to_json(token_at_start) if token_at_start else
                                      self.state.get("resume_token"))
                    log.event("cycle.done", **stats.summary())
                    self.metrics.cycle_done(self.source, stats)
                    notify.notify(f"STATUS=archived {units.plural(stats.sealed, 'document')} in the last cycle")
                    retention.after_cycle(self.cfg, self.state)  # only with ARCHIVERD_RETENTION_DAYS set
                except Exception as exc:  # noqa: BLE001 - the daemon reports and carries on
                    self._record_error(exc)
                    log.error("cycle.failed", error=f"{exc.__class__.__name__}: {exc}")
                    self.stop.wait(min(self.cfg.poll_seconds, 30))
                    continue
                finally:
                    renewer.stop()
                if not self.stop.is_set():
                    self.wake.wait(self._sleep_seconds(stats))
        finally:
            if lease is not None:
                self.leases.release(lease)
                self.state.update(lease={"status": "released", "at": dt.datetime.now(dt.timezone.utc).isoformat()})
            self.leases.forget_own_session()
            self.state.update(change_stream=watcher.status)
            log.event("daemon.stopped")
        return EXIT_OK

    def _unreachable(self, attempt: int, wait: float, error: str) -> None:
        """While the server cannot be reached: tell systemd and `status`, and keep the watchdog fed."""
        self.beat = time.monotonic()
        self._record_error(DatabaseError(f"cannot reach MongoDB ({error}); retrying (attempt {attempt}, next in "
                                         f"{wait:.0f} s)"))
        notify.notify(f"STATUS=waiting for MongoDB: attempt {attempt} failed, next in {wait:.0f} s")

    def _sleep_seconds(self, stats: CycleStats) -> float:
        """Until the next day becomes complete (the cutoff moves on), at most poll_seconds. Documents
        dated in complete days that arrive meanwhile wake the loop through the change stream. Days
        another process held (or took midway) are looked at again after half a lease: if that
        process died, its lease has lapsed by then and the day is finished here."""
        seconds = min(self.cfg.poll_seconds, expiry.next_cutoff_due(self.cfg) + 1)
        if stats.held_elsewhere or stats.days_lost:
            seconds = min(seconds, self.cfg.lease_seconds / 2)
        return max(1.0, seconds)

    def _start_watchdog(self) -> None:
        """Ping systemd's watchdog only while the main loop shows progress (a document read, a loop
        turn): a hung cycle stops the pings and systemd restarts the service. Sealing and verifying
        a full part, or a sleep of poll_seconds, must fit in the stale limit."""
        interval = notify.watchdog_interval()
        if interval is None:
            return
        stale_after = max(2 * interval, self.cfg.poll_seconds + 300)

        def ping() -> None:
            while not self.stop.wait(interval):
                if time.monotonic() - self.beat < stale_after:
                    notify.notify("WATCHDOG=1")
                else:
                    log.error("daemon.stalled", seconds=round(time.monotonic() - self.beat))

        threading.Thread(target=ping, name="watchdog", daemon=True).start()
