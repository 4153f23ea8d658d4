"""`archiverd status`: what the archiver is doing, what it has done, and whether it is healthy.

The exit code is the health, so that a monitor (Nagios-style, a systemd timer with OnFailure=)
can run it. The first rule that applies decides:

| exit | when |
|------|------|
| 3 | the database or collection does not exist (a misspelt name; nothing else is looked at) |
| 6 | MongoDB cannot be reached, or refuses (the local part is still reported) |
| 5 | the archive directory is missing or not a directory, or the state file cannot be read |
| 4 | a video without its index (orphan), an index that does not load, or a segment set aside by recovery |
| 2 | the last cycle failed; or no cycle completed for longer than --stale-after while no live process holds the lease or a day's lease (a long cycle is not a stale one); or documents of a complete day have waited longer than --stale-after since their day became archivable |
| 1 | deletes of a journaled segment or a temporary file left by an interrupted cycle (no live process holds the lease or a day's lease; the next cycle finishes or removes them); encryption on and a master key never exported (or its file unusable, or an unfinished rotation); no document has the date field (a misspelt one archives nothing) |
| 0 | none of these |

Every problem found is listed (`health.problems` in --json), not only the one that set the code.
"""
from __future__ import annotations

import datetime as dt
import json
from typing import Any

import click

from .. import config, units
from ..config import Config, redact
from ..errors import ArchiverdError, ConfigError, DatabaseError, EXIT_OK, EXIT_WARNING, SegmentError, StorageError
from ..service import expiry
from ..service.archiver import iso
from ..service.source import Source, dead_local_owner
from ..service.state import State
from ..crypto import keyring
from ..store import holds, inventory, layout, objects
from ._common import with_config

DEFAULT_STALE_AFTER = "2d"  # as the ArchiverdNoSuccessfulCycle alert (docs/guides/alerts.yml)
FAILED = ArchiverdError.exit_code  # the service is failing
_ORDER = [DatabaseError.exit_code, StorageError.exit_code, SegmentError.exit_code, FAILED, EXIT_WARNING]
# the health line names the kind of problem, not only its code (the codes of the README's table)
HEALTH_WORDS = {EXIT_WARNING: "warning", FAILED: "error", ConfigError.exit_code: "configuration",
                SegmentError.exit_code: "damaged segment", StorageError.exit_code: "storage",
                DatabaseError.exit_code: "database"}
PENDING_SHOWN = 5  # pending days listed at each end; a first catch-up can have years of them


def _when(value: Any) -> dt.datetime | None:
    """A time from the state file (ISO text) or the lease document (a date); None if neither."""
    if isinstance(value, dt.datetime):
        when = value
    else:
        try:
            when = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            return None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def _seconds_since(when: dt.datetime | None, now: dt.datetime) -> float | None:
    return None if when is None else (now - when).total_seconds()


class _Health:
    def __init__(self) -> None:
        self.problems: list[tuple[int, str]] = []

    def add(self, code: int, text: str) -> None:
        self.problems.append((code, text))

    def as_dict(self) -> dict[str, Any]:
        codes = {code for code, _ in self.problems}
        exit_code = next((code for code in _ORDER if code in codes), EXIT_OK)
        return {"ok": not self.problems, "exit_code": exit_code,
                "problems": [{"exit_code": code, "problem": text} for code, text in
                             sorted(self.problems, key=lambda p: _ORDER.index(p[0]))]}


_STATE_OBJECTS = ("set_aside", "last_error", "last_cycle", "last_seal", "lease")


def _state(cfg: Config, health: _Health) -> dict[str, Any]:
    """The state file's contents; {} when it cannot be read (a storage problem, reported)."""
    if not cfg.archive_dir.is_dir():
        what = "does not exist" if not cfg.archive_dir.exists() else "is not a directory"
        health.add(StorageError.exit_code, f"archive directory {cfg.archive_dir} {what}")
        return {}
    try:
        data = State(cfg.state_file).data
    except StorageError as exc:
        health.add(StorageError.exit_code, str(exc))
        return {}
    wrong = [key for key in _STATE_OBJECTS if data.get(key) is not None and not isinstance(data[key], dict)]
    pending = data.get("pending")
    if wrong or not isinstance(pending, list) or not all(_journal_entry(p) for p in pending):
        health.add(StorageError.exit_code, f"state file {cfg.state_file} is damaged ({', '.join(wrong) or 'pending'} "
                                           "has the wrong type); move it aside to start afresh")
        return {}
    return data


def _in_store(cfg: Config, info: dict[str, Any], health: _Health) -> inventory.Inventory:
    """The segments in the object store, from its listing alone (no index is read: counts of
    documents and bytes are left to `check`); orphans are uploaded videos never committed."""
    store = objects.for_collection(cfg)
    inv = inventory.Inventory()
    try:
        segments = store.segments()
        inv.orphans = sorted(set(store.videos()) - set(segments))
    except StorageError as exc:
        health.add(StorageError.exit_code, str(exc))
        segments = []
    days = sorted({inventory.day_of(s) for s in segments})
    info.update(archive_url=store.url, segments=len(segments), documents_on_disk=None, bytes_on_disk=None,
                days_on_disk=len(days), first_day=days[0] if days else None, last_day=days[-1] if days else None, orphans=inv.orphans, unreadable_indexes={},
                temporaries=[str(p.relative_to(cfg.collection_dir)) for p in layout.temporaries(cfg.collection_dir)])
    return inv
def _journal_entry(entry: Any) -> bool:
    """A journal entry: a segment's path, or {"segment": path, "owner": process} (service/state.py)."""
    return isinstance(entry, str) or (isinstance(entry, dict) and isinstance(entry.get("segment"), str))


def _local(cfg: Config, info: dict[str, Any], health: _Health, now: dt.datetime) -> None:
    """The archive directory, the state file and the segments on disk."""
    data = _state(cfg, health)
    if cfg.archive_url is not None:
        inv = _in_store(cfg, info, health)
    else:
        inv = inventory.scan(cfg.collection_dir)
        totals = inv.totals()
        info.update(segments=totals["segments"], documents_on_disk=totals["documents"],
                    bytes_on_disk=totals["bytes"], days_on_disk=totals["days"], first_day=totals["first_day"],
                    last_day=totals["last_day"], orphans=inv.orphans, unreadable_indexes=inv.unreadable,
                    temporaries=inv.temporaries)
    for rel in inv.orphans:
        health.add(SegmentError.exit_code, f"{rel}: video without its index (`archiverd reindex` rebuilds it)")
    for rel, why in inv.unreadable.items():
        health.add(SegmentError.exit_code, f"{rel}: index does not load: {why}")
    info["set_aside"] = data.get("set_aside") or {}
    for rel, why in info["set_aside"].items():
        reason = why.get("reason", "?") if isinstance(why, dict) else why
        health.add(SegmentError.exit_code, f"{rel}: set aside by recovery, nothing deleted against it "
                                           f"({reason}); run `archiverd check` on it")
    journal = [(p, None) if isinstance(p, str) else (p["segment"], p.get("owner")) for p in data.get("pending", [])]
    info["pending_deletes"] = list(dict.fromkeys(segment for segment, _ in journal))
    info["journal"] = [{"segment": segment, "owner": owner} for segment, owner in journal]
    info["last_seal"] = data.get("last_seal")
    info["last_error"] = data.get("last_error")
    info["change_stream"] = data.get("change_stream", "not started")
    info["lease_status"] = data.get("lease")
    cycle = data.get("last_cycle")
    if cycle is not None:
        cycle = dict(cycle, age_seconds=_seconds_since(_when(cycle.get("finished_at")), now))
    info["last_cycle"] = cycle
    if info["last_error"]:
        health.add(FAILED, f"the last cycle failed at {info['last_error'].get('at')}: "
                           f"{info['last_error'].get('error')}")
    _keeping(cfg, info, health, data)


def _keeping(cfg: Config, info: dict[str, Any], health: _Health, data: dict[str, Any]) -> None:
    """Encryption and its key backup, retention, holds and the last prune."""
    info["encryption"] = "off" if cfg.encryption_key_file is None else f"on (key file {cfg.encryption_key_file})"
    warning = keyring.export_warning(cfg)
    info["key_warning"] = warning
    if warning:
        health.add(EXIT_WARNING, f"encryption key: {warning}")
    info["retention_days"] = cfg.retention_days or None
    try:
        info["holds"] = len(holds.Holds(cfg.collection_dir).list()) if cfg.collection_dir.is_dir() else 0
    except StorageError as exc:
        info["holds"] = None
        health.add(StorageError.exit_code, str(exc))
    info["last_prune"] = data.get("last_prune")


def _lease(holder: dict[str, Any] | None, now: dt.datetime) -> dict[str, Any] | None:
    if holder is None:
        return None
    expires, renewed, released = (_when(holder.get(k)) for k in ("expires_at", "renewed_at", "released_at"))
    if released is not None and (renewed is None or released >= renewed):
        state = "released"
    elif expires is not None and expires > now:
        state = "held"
    else:
        state = "expired"
    if state == "released":
        expires = None  # a released lease's expiry is a marker (the epoch), not a time: no -56 years
    return {"owner": holder.get("owner"), "token": holder.get("token"), "state": state,
            "renewed_at": renewed.isoformat() if renewed else None,
            "renewed_seconds_ago": _seconds_since(renewed, now),
            "expires_at": expires.isoformat() if expires else None,
            "expires_in_seconds": -_seconds_since(expires, now) if expires else None,
            "released_seconds_ago": _seconds_since(released, now) if state == "released" else None,
            "dead_local_process": state == "held" and dead_local_owner(holder.get("owner"))}


def _day_leases(documents: list[dict[str, Any]], now: dt.datetime) -> list[dict[str, Any]]:
    """Who works on which day: every day lease held now, and every one that lapsed without a
    release (its holder died or paused mid-day; the next process to reach the day takes it over).
    Released day leases are history and left out."""
    days = []
    for doc in sorted((d for d in documents if d.get("day") is not None), key=lambda d: str(d["day"])):
        lease = _lease(doc, now)
        if lease is not None and lease["state"] != "released":
            since = _when(doc.get("since"))
            days.append({"day": doc["day"], **lease, "since": since.isoformat() if since else None,
                         "archive": doc.get("archive")})
    return days


def _database(cfg: Config, info: dict[str, Any], health: _Health, now_ms: int, stale_after: float) -> None:
    """Backlog, pending days, skipped documents and the lease, from MongoDB."""
    wm, cutoff = expiry.watermark_ms(cfg, now_ms), expiry.cutoff_ms(cfg, now_ms)
    source = Source(cfg)
    try:
        source.require_namespace()  # a misspelt name is a usage error (exit 3), not "unreachable"
        counts = source.counts(wm, cutoff)
        # no document has the date field (a misspelt one): nothing is ever archived
        if counts["skipped"]["date field missing"] and not source.any_has(cfg.date_field):
            dates = [f for f in source.date_fields_of_a_document() if f != cfg.date_field]
            health.add(EXIT_WARNING, f"no document has the date field {cfg.date_field!r}, so none is ever archived"
                                     + (f" (fields holding a date: {', '.join(dates)})" if dates else ""))
        days = source.expired_days(wm)
        holder = source.lease_holder()
        documents = source.lease_documents()
    finally:
        source.close()
    oldest = _when(counts["oldest_expired"])
    info.update(counts)
    info["waiting"] = counts["expired"] - counts["ready"]
    # how long past its expiry the oldest expired document is
    info["oldest_expired_age_seconds"] = (wm - expiry.to_ms(oldest)) / 1000 if oldest else None
    pending = []
    for start, n in sorted(days.items()):
        due = start + expiry.MS_PER_DAY + round(cfg.threshold_days * expiry.MS_PER_DAY) \
            + round(cfg.day_grace_seconds * 1000)  # the cutoff passes the day's end
        pending.append({"day": expiry.day_label(start), "documents": n, "complete": start < cutoff,
                        "archivable_at": iso(due), "overdue_seconds": max(0, now_ms - due) / 1000
                        if start < cutoff else 0.0})
    info["pending_days"] = pending
    late = [d for d in pending if d["complete"] and d["overdue_seconds"] > stale_after]
    if late:
        health.add(FAILED, f"{units.plural(sum(d['documents'] for d in late), 'document')} of "
                           f"{units.plural(len(late), 'complete day')} not archived "
                           f"{units.age(late[0]['overdue_seconds'])} after their day "
                           f"became archivable (--stale-after {units.age(stale_after)})")
    now = dt.datetime.fromtimestamp(now_ms / 1000, dt.timezone.utc)
    info["lease"] = _lease(holder, now)
    info["day_leases"] = _day_leases(documents, now)
    info["database"] = "reachable"


def collect(cfg: Config, *, stale_after: float | None = None, now_ms: int | None = None) -> dict[str, Any]:
    """Everything `status` reports, with its health (`health`: ok, exit_code, problems)."""
    stale_after = stale_after if stale_after is not None else \
        config.parse_duration(DEFAULT_STALE_AFTER).total_seconds()
    now_ms = expiry.now_ms() if now_ms is None else now_ms
    now = dt.datetime.fromtimestamp(now_ms / 1000, dt.timezone.utc)
    health = _Health()
    info: dict[str, Any] = {
        "server": redact(cfg.uri), "namespace": cfg.namespace, "date_field": cfg.date_field,
        "threshold_days": cfg.threshold_days, "day_grace_seconds": cfg.day_grace_seconds,
        "watermark": iso(expiry.watermark_ms(cfg, now_ms)), "complete_days_before": iso(expiry.cutoff_ms(cfg, now_ms)),
        "archive_dir": str(cfg.collection_dir), "at": now.isoformat(),
        "backlog_mode": "shared: processes take a day each" if cfg.shared_backlog else "one active instance",
    }
    _local(cfg, info, health, now)
    try:
        _database(cfg, info, health, now_ms, stale_after)
    except ConfigError:
        raise
    except ArchiverdError as exc:
        info["database"] = f"unreachable: {exc}"
        health.add(DatabaseError.exit_code, f"MongoDB: {exc}")
    held = [lease for lease in [info.get("lease"), *info.get("day_leases", [])]
            if lease is not None and lease["state"] == "held" and not lease["dead_local_process"]]
    someone_working = bool(held)  # the collection's lease or a day's, by a live process
    cycle = info["last_cycle"]
    if cycle is not None and cycle["age_seconds"] is not None and cycle["age_seconds"] > stale_after \
            and not someone_working:  # a long cycle in progress is not a stale one
        health.add(FAILED, f"no cycle completed for {units.age(cycle['age_seconds'])} (last at "
                           f"{cycle['finished_at']}; --stale-after {units.age(stale_after)})")
    if not someone_working and info["database"] == "reachable":
        if info["pending_deletes"]:
            health.add(EXIT_WARNING, f"{len(info['pending_deletes'])} journaled segments with unfinished deletes "
                                     "(an interrupted cycle; the next cycle finishes them)")
        if info["temporaries"]:
            health.add(EXIT_WARNING, f"{len(info['temporaries'])} temporary files of an interrupted seal "
                                     "(the next cycle removes them)")
    info["health"] = health.as_dict()
    return info


def _human(info: dict[str, Any]) -> list[str]:
    """`info` for a person: one topic a line, details indented."""
    out = []

    def row(key: str, text: str) -> None:
        out.append(f"{key + ':':<16}{text}")

    health = info["health"]
    row("health", "ok" if health["ok"] else f"{HEALTH_WORDS.get(health['exit_code'], 'error')} (exit {health['exit_code']})")
    for p in health["problems"]:
        out.append(f"{'':<16}- [{p['exit_code']}] {p['problem']}")
    row("collection", f"{info['namespace']} on {info['server']} (date field {info['date_field']!r}, "
                      f"older than {info['threshold_days']:g} days)")
    row("archive", info["archive_dir"])
    row("watermark", f"{info['watermark']} (complete days end before {info['complete_days_before']})")
    if info["database"] != "reachable":
        row("database", info["database"])
    else:
        oldest = info["oldest_expired"]
        row("backlog", f"{units.plural(info['expired'], 'expired document')} not archived yet: "
                       f"{units.count(info['ready'])} in complete days, {units.count(info['waiting'])} waiting for "
                       f"their day to end" + (f"; oldest {oldest} ({units.age(info['oldest_expired_age_seconds'])} "
                                              "past its expiry)" if oldest else ""))
        pending = info["pending_days"]
        shown = pending if len(pending) <= 2 * PENDING_SHOWN + 1 else pending[:PENDING_SHOWN] + [None] + pending[-PENDING_SHOWN:]
        for d in shown:
            if d is None:
                out.append(f"{'':<16}... {units.plural(len(pending) - 2 * PENDING_SHOWN, 'more day')} "
                           "(`archiverd run --dry-run` or `status --json` lists every day)")
                continue
            when = ("complete: archived at the next cycle" + (f" (became archivable {units.age(d['overdue_seconds'])}"
                                                               " ago)" if d["overdue_seconds"] >= 60 else "")
                    if d["complete"] else f"archivable from {d['archivable_at']}")
            out.append(f"{'':<16}{d['day']:<12} {units.count(d['documents']):>10}  {when}")
        skipped = {k: v for k, v in info["skipped"].items() if v}
        row("never archived", ", ".join(f"{units.count(n)} {why}" for why, n in skipped.items()) or "none")
    cycle = info["last_cycle"]
    if cycle is None:
        row("last cycle", "none yet")
    else:
        when = (f"{cycle['finished_at']} ({units.age(cycle['age_seconds'])} ago)" if cycle.get("finished_at")
                else "time not recorded")
        row("last cycle", f"{when}, {cycle.get('seconds', 0):.1f} s: {units.plural(cycle.get('sealed', 0), 'document')} "
                          f"sealed ({units.size(cycle.get('bytes_sealed', 0))} BSON) into "
                          f"{units.plural(cycle.get('segments', 0), 'segment')}, "
                          f"{units.count(cycle.get('deleted', 0))} deleted "
                          f"({units.size(cycle.get('bytes_deleted', 0))}), {cycle.get('changed', 0)} kept (changed)")
    seal = info["last_seal"]
    row("last seal", f"{seal['segment']}: {units.plural(seal['documents'], 'document')}, {units.size(seal['bytes'])}, "
                     f"at {seal['at']}" if seal else "none yet")
    days = units.plural(info['days_on_disk'], 'day') + (
        f" ({info['first_day']} .. {info['last_day']})" if info["first_day"] else "")
    if info.get("archive_url"):
        row("in store", f"{units.plural(info['segments'], 'segment')}, {days} in {info['archive_url']}")
    else:
        row("on disk", f"{units.plural(info['segments'], 'segment')}, "
                       f"{units.plural(info['documents_on_disk'], 'document')}, {units.size(info['bytes_on_disk'])}, {days}")
    lease = info.get("lease")
    if info["database"] == "reachable":
        if lease is None:
            row("lease", "never taken" + (" (not used: a shared backlog is split by day leases)"
                                          if info["backlog_mode"].startswith("shared") else ""))
        else:
            fresh = f"renewed {units.age(lease['renewed_seconds_ago'])} ago" if lease["renewed_at"] else "never renewed"
            if lease["state"] == "held":
                until = f"expires in {units.age(lease['expires_in_seconds'])}"
            elif lease["state"] == "released":
                until = f"released {units.age(lease['released_seconds_ago'])} ago"
            elif lease["expires_in_seconds"] is not None:
                until = f"expired {units.age(-lease['expires_in_seconds'])} ago"
            else:
                until = "no expiry recorded"
            dead = "; its process on this host no longer runs" if lease["dead_local_process"] else ""
            row("lease", f"{lease['state']}: {lease['owner']} (token {lease['token']}), {fresh}, {until}{dead}")
    if info["database"] == "reachable":
        row("backlog mode", info["backlog_mode"])
        for d in info["day_leases"]:
            if d["state"] == "held":
                since = f"since {d['since']}, " if d["since"] else ""
                what = f"held by {d['owner']} (token {d['token']}), {since}expires in {units.age(d['expires_in_seconds'])}"
            else:
                what = (f"lapsed {units.age(-d['expires_in_seconds'])} ago, held by {d['owner']} (token {d['token']}): "
                        "it died or paused mid-day; the next process to reach the day takes it over")
            dead = "; its process on this host no longer runs" if d["dead_local_process"] else ""
            out.append(f"{'':<16}{d['day']:<12} {what}{dead}")
    if info.get("lease_status"):
        row("daemon", f"{info['lease_status'].get('status')} (at {info['lease_status'].get('at', '?')})")
    row("change stream", str(info["change_stream"]))
    row("encryption", info["encryption"] + (f"; WARNING: {info['key_warning']}" if info["key_warning"] else ""))
    prune = info["last_prune"]
    row("retention", (f"{info['retention_days']:g} days" if info["retention_days"] else "keep forever")
        + (f"; {units.plural(info['holds'], 'legal hold')}" if info["holds"] else "")
        + (f"; last prune (through {prune.get('through_day')}) removed "
           f"{units.plural(prune.get('segments_removed', 0), 'segment')}, kept {prune.get('segments_kept', 0)} held or journaled"
           if prune else ""))
    error = info["last_error"]
    row("last error", f"{error.get('at')}: {error.get('error')}" if error else "none")
    for key, label in (("pending_deletes", "journal"), ("orphans", "orphans"), ("temporaries", "temporary")):
        if info[key]:
            row(label, ", ".join(info[key]))
    if info["set_aside"]:
        row("set aside", ", ".join(info["set_aside"]))
    if info["unreadable_indexes"]:
        row("bad indexes", ", ".join(info["unreadable_indexes"]))
    return out


def _stale_after(_ctx: click.Context, _param: click.Parameter, value: str) -> float:
    try:
        seconds = config.parse_duration(value).total_seconds()
    except ConfigError as exc:
        raise click.BadParameter(str(exc)) from None
    if seconds <= 0:
        raise click.BadParameter(f"{value!r} must be longer than 0 s")
    return seconds


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON (for scripts; `health` holds the verdict).")
@click.option("--stale-after", default=DEFAULT_STALE_AFTER, show_default=True, metavar="AGE", callback=_stale_after,
              help="Unhealthy (exit 2) when no cycle completed for this long, or a complete day's documents "
                   "have waited this long: 30m, 6h, 2d.")
@with_config
def command(cfg: Config, as_json: bool, stale_after: float) -> int:
    """Watermark, backlog and pending days, last cycle, segments on disk, who holds the
    collection's lease and which process works on which day, change stream, skipped documents,
    last error -- and health, as the exit code.

    \b
    Exit codes (the first that applies):
      3  the database or collection does not exist
      6  MongoDB cannot be reached (the local part is still printed)
      5  the archive directory is missing, or the state file cannot be read
      4  an orphan video, an index that does not load, a segment set aside by recovery
      2  the last cycle failed; no cycle for --stale-after (none running); documents
         of a complete day waiting longer than --stale-after
      1  unfinished deletes or temporary files of an interrupted cycle (nobody holds the
         lease); a master key that was never exported; no document has the date field
      0  healthy

    \b
    Examples:
      archiverd status
      archiverd status --config /etc/archiverd/archiverd.env --stale-after 1h   # a monitor's check
      archiverd status --json | jq '.health, .pending_days'
    """
    info = collect(cfg, stale_after=stale_after)
    if as_json:
        click.echo(json.dumps(info, indent=1, default=str))
    else:
        click.echo("\n".join(_human(info)))
    return info["health"]["exit_code"]
