"""`archiverd config`: the effective settings, where each came from, and (--check) whether they work."""
from __future__ import annotations

import json
import os
from typing import Any, Callable

import click

from .. import config
from ..config import Config
from ..errors import ArchiverdError, DatabaseError, StorageError
from ..service.source import Source
from ..store import objects
from ._common import with_config


def _checks(cfg: Config) -> list[dict[str, Any]]:
    """Each check: what, ok, detail, and the exit code a failure maps to."""
    results = []

    def add(what: str, problem: ArchiverdError | None, detail: str, *, warning: bool = False) -> None:
        results.append({"check": what, "ok": problem is None, "detail": str(problem) if problem else detail,
                        "exit_code": problem.exit_code if problem else 0, "warning": warning})

    root = cfg.archive_dir
    if not root.exists():
        add("archive_dir", StorageError(f"{root} does not exist"), "")
    elif not root.is_dir():
        add("archive_dir", StorageError(f"{root} is not a directory"), "")
    elif not os.access(root, os.W_OK | os.X_OK):
        add("archive_dir", StorageError(f"{root} is not writable by this user"), "")
    else:
        add("archive_dir", None, f"{root} exists and is writable")
    if cfg.archive_url is not None:
        try:
            store = objects.for_collection(cfg)
            add("archive_url", None, f"{store.url} can be listed ({len(store.videos())} videos); the first seal "
                                     "shows that it can be written")
        except ArchiverdError as exc:
            add("archive_url", exc, "")
    if cfg.log_file is not None:
        parent = cfg.log_file.parent
        if cfg.log_file.is_dir():
            add("log_file", StorageError(f"{cfg.log_file} is a directory"), "")
        elif not parent.is_dir():
            add("log_file", StorageError(f"directory {parent} does not exist"), "")
        else:
            add("log_file", None, f"{cfg.log_file} can be created in an existing directory")
    source, stage = None, "mongodb"
    try:
        source = Source(cfg)
        hello = source.ping()
        add("mongodb", None, f"reachable ({'replica set ' + hello['setName'] if hello.get('setName') else 'server'})")
        stage = "namespace"
        source.require_namespace()
        add("namespace", None, f"{cfg.namespace} exists")
        _date_index(source, cfg, add)
    except ArchiverdError as exc:
        add(stage, exc, "")
    finally:
        if source is not None:
            source.close()
    return results


def _date_index(source: Source, cfg: Config, add: Callable[..., None]) -> None:
    """A warning, not a failure: archiving works without the index, but each day it reads scans
    the whole collection (a first catch-up of N days: N scans)."""
    f = cfg.date_field
    create = f"db.{cfg.collection}.createIndex({{{json.dumps(f)}: 1}})"
    try:
        name = source.date_index()
    except DatabaseError as exc:
        add("date_index", None, f"could not list the indexes ({exc}); the role needs the listIndexes action to "
                                f"check; without an index on {f!r} each day's read scans the whole collection: "
                                f"{create}", warning=True)
        return
    if name is None:
        add("date_index", None, f"no index the day's read can use starts with {f!r} (hidden, partial and "
                                f"hashed ones cannot): each day's read scans the whole collection; create one: "
                                f"{create}", warning=True)
    else:
        add("date_index", None, f"index {name} starts with {f!r}")


@click.command("config")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.option("--check", is_flag=True,
              help="Also check that the archive directory is writable and that MongoDB, the database and "
                   "the collection can be reached (gives up within 15 s); warns when no index the day's read "
                   "can use starts with the date field.")
@with_config
def command(cfg: Config, as_json: bool, check: bool) -> int:
    """Print the effective settings and where each one came from; passwords are never shown.

    Precedence: flags > environment > config file > defaults. Pass the unit's environment file to
    see what the service sees: `archiverd config --config /etc/archiverd/archiverd.env`.
    Exit code (with --check): 0 all good, else the code of the first failed check (3, 5 or 6).

    \b
    Examples:
      archiverd config
      archiverd config --config /etc/archiverd/archiverd.env --check
      archiverd config --json | jq -r .settings.archive_dir.value
    """
    rows = config.describe(cfg)
    results = _checks(cfg) if check else []
    if as_json:
        out: dict[str, Any] = {"settings": {key: {"value": value, "from": origin} for key, value, origin in rows},
                               "config_file": str(cfg.config_file) if cfg.config_file else None}
        if check:
            out["checks"] = results
        click.echo(json.dumps(out, indent=1))
    else:
        width = max(len(key) for key, _, _ in rows)
        shown = [(key, "" if value is None else str(value), origin) for key, value, origin in rows]
        vwidth = min(60, max(len(v) for _, v, _ in shown))
        click.echo(f"{'setting':<{width}}  {'value':<{vwidth}}  from")
        for key, value, origin in shown:
            click.echo(f"{key:<{width}}  {value:<{vwidth}}  {origin}")
        for r in results:
            verdict = "FAILED" if not r["ok"] else "WARNING" if r["warning"] else "ok"
            click.echo(f"check {r['check']}: {verdict}: {r['detail']}")
    failed = [r for r in results if not r["ok"]]
    return failed[0]["exit_code"] if failed else 0
