"""`archiverd list`: the days (or segments) of a collection's archive, with counts and sizes."""
from __future__ import annotations

import datetime as dt
import difflib
import json
import re
from dataclasses import asdict

import click

from .. import units
from ..config import Config
from ..errors import EXIT_OK, ConfigError, SegmentError, StorageError
from ..store import inventory, objects
from ._common import with_config

_DAY_PREFIX = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$|^out-of-range$")


def _prefix(_ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not (_DAY_PREFIX.match(value) and (value == "out-of-range" or _a_calendar_prefix(value))):
        raise click.BadParameter(f"{value!r} is not a day or the start of one: 2026, 2026-08, 2026-08-01 "
                                 "(or out-of-range)")
    return value


def _a_calendar_prefix(value: str) -> bool:
    """2026, 2026-08 or 2026-08-01 naming a month and day that exist (not 2026-13 or 2026-02-30)."""
    parts = value.split("-")
    try:
        dt.date(int(parts[0]), int(parts[1]) if len(parts) > 1 else 1, int(parts[2]) if len(parts) > 2 else 1)
    except ValueError:
        return False
    return True


def _check_namespace(cfg: Config) -> None:
    """A misspelt --db or --collection would list nothing, silently: when this name has no archive
    but others do, say so, with the closest name."""
    if cfg.collection_dir.is_dir():
        return
    db_dir = cfg.archive_dir / cfg.database
    where, what, name = (db_dir, "collection", cfg.collection) if db_dir.is_dir() else \
        (cfg.archive_dir, "database", cfg.database)
    others = sorted(p.name for p in where.iterdir() if p.is_dir())
    if others:
        hint = difflib.get_close_matches(name, others, n=1)
        raise ConfigError(f"no archive of {what} {name!r} in {where} (there are: {', '.join(others[:10])}"
                          + (f"; did you mean {hint[0]!r}?)" if hint else ")"))


@click.command("list")
@click.argument("day", required=False, callback=_prefix)
@click.option("--segments", "per_segment", is_flag=True, help="One line per segment instead of per day.")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@with_config
def command(cfg: Config, day: str | None, per_segment: bool, as_json: bool) -> int:
    """List the archive's days (or, with --segments, its segments) with document counts and sizes,
    from the indexes alone; DAY (2026, 2026-08, 2026-08-01) narrows it. MongoDB is not contacted.

    Videos without an index (orphans) and indexes that do not load are listed too (on stderr), and
    make the exit code 4 (`archiverd check` tells more; `archiverd reindex` rebuilds a lost index).
    Exit 5 if the archive directory does not exist, 3 if this database or collection has no archive
    but others do (a misspelt name). With ARCHIVERD_ARCHIVE_URL the segments are listed from the
    object store (one listing, then one GET of each index).

    \b
    Examples:
      archiverd list
      archiverd list 2026-08 --segments
      archiverd list --json | jq '.totals'
    """
    where = str(cfg.collection_dir)
    if cfg.archive_url is not None:
        store = objects.for_collection(cfg)
        where, inv = store.url, inventory.scan_store(store)
    else:
        if not cfg.archive_dir.is_dir():
            raise StorageError(f"archive directory {cfg.archive_dir} "
                               f"{'is not a directory' if cfg.archive_dir.exists() else 'does not exist'}")
        _check_namespace(cfg)
        inv = inventory.scan(cfg.collection_dir)
    if day:
        inv = inventory.Inventory(
            segments=[s for s in inv.segments if s.day.startswith(day)],
            orphans=[o for o in inv.orphans if inventory.day_of(o).startswith(day)],
            unreadable={k: v for k, v in inv.unreadable.items() if inventory.day_of(k).startswith(day)},
            bytes_on_disk=sum(s.bytes for s in inv.segments if s.day.startswith(day)))
    totals = inv.totals()
    if as_json:
        rows = inv.segments if per_segment else inv.days()
        click.echo(json.dumps({"archive_dir": where, "totals": totals,
                               "segments" if per_segment else "days": [asdict(r) for r in rows],
                               "orphans": inv.orphans, "unreadable_indexes": inv.unreadable}, indent=1))
    else:
        if per_segment:
            click.echo(f"{'segment':<32} {'documents':>10} {'BSON':>9} {'on disk':>9}  sealed")
            for s in inv.segments:
                click.echo(f"{s.rel:<32} {units.count(s.documents):>10} {units.size(s.bson_bytes):>9} "
                           f"{units.size(s.bytes):>9}  {s.created_at}" + ("  (repaired copy)" if s.repaired else ""))
        else:
            click.echo(f"{'day':<12} {'segments':>8} {'documents':>12} {'BSON':>9} {'on disk':>9}")
            for d in inv.days():
                click.echo(f"{d.day:<12} {d.segments:>8} {units.count(d.documents):>12} "
                           f"{units.size(d.bson_bytes):>9} {units.size(d.bytes):>9}")
        click.echo(f"total: {units.plural(totals['segments'], 'segment')}, {units.plural(totals['documents'], 'document')}, "
                   f"{units.size(totals['bson_bytes'])} of BSON, {units.size(totals['bytes'])} on disk, "
                   f"{units.plural(totals['days'], 'day')}")
        if per_segment:  # the names above are relative to it; `verify`, `info`, `restore` take a path or URL
            click.echo(f"in {where}/")
        for rel in inv.orphans:
            click.echo(f"orphan (a video without its index): {rel}", err=True)
        for rel, why in inv.unreadable.items():
            click.echo(f"unreadable index: {rel}: {why}", err=True)
    return SegmentError.exit_code if inv.orphans or inv.unreadable else EXIT_OK
