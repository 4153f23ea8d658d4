"""What the daemon-side commands share: the configuration flags, loading the configuration, logging.

Every command that talks to MongoDB takes mongodump-style flags (--uri, --db, --collection) and the
archiver's own (--date-field, --older-than, --archive-dir), plus --config FILE (TOML or the unit's
KEY=VALUE environment file). Precedence: flags > environment > file > defaults.

A command run by a person fails fast (`Config.fail_fast`): one attempt, a short server timeout.
Only the daemon (`archiverd run` without --dry-run; see service.daemon) retries with backoff.
"""
from __future__ import annotations

import dataclasses
import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import click

from .. import config, log
from ..crypto import keyring
from ..format import encryption, workers
from ..store import durable
from ..errors import EXIT_WARNING
from ..redaction import secrets_in

if TYPE_CHECKING:
    from ..query.ejson import Lines

# command-line flag -> setting
MONGO_FLAGS = {"uri": "--uri", "database": "--db", "collection": "--collection", "date_field": "--date-field",
               "threshold_days": "--older-than", "archive_dir": "--archive-dir"}
# the commands whose log lines belong in the daemon's log file (not with --dry-run); a person's
# `status` or `restore` (perhaps as root) must not append to it, or create it with the wrong owner
_DAEMON_COMMANDS = {"run"}


def _older_than(_ctx: click.Context, _param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return config.parse_duration(value, default_unit="d").total_seconds() / 86400
    except config.ConfigError as exc:
        raise click.BadParameter(str(exc)) from None


def with_config(fn: Callable[..., int] | None = None, *, database: bool = True) -> Any:
    """Adds --config (and, with `database`, the MongoDB flags) and passes a loaded, validated `cfg`
    with logging configured from it."""
    def decorate(fn: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(fn)
        def wrapper(*args: Any, config_file: Path | None, **kwargs: Any) -> int:
            overrides = {key: kwargs.pop(key, None) for key in MONGO_FLAGS}
            if overrides.get("uri") and any(secrets_in(overrides["uri"])):
                click.echo("archiverd: warning: a password on the command line is visible to other local "
                           "users (ps, shell history); prefer MONGODB_URI or --config FILE", err=True)
            cfg = config.load(config_file, overrides=overrides, flags=MONGO_FLAGS)
            cfg = dataclasses.replace(cfg, fail_fast=True)
            encryption.use_keyring(lambda: keyring.from_config(cfg))  # loaded when an encrypted segment is met
            durable.set_group_access(cfg.group_access)
            workers.set_default(cfg.workers)  # every writer and reader of this command
            ctx = click.get_current_context()
            daemon_side = ctx.command.name in _DAEMON_COMMANDS and not ctx.params.get("dry_run")
            log.setup(cfg.log_format, cfg.log_file if daemon_side else None, file_mode=cfg.file_mode)
            return fn(*args, cfg=cfg, **kwargs)

        options = [click.option("--config", "config_file", type=click.Path(path_type=Path, dir_okay=False),
                                help="TOML file, or the unit's KEY=VALUE environment file (also $ARCHIVERD_CONFIG). "
                                     "Environment variables and flags override it.")]
        if database:
            options += [
                click.option("--uri", "uri", metavar="URI", help="MongoDB connection string (overrides MONGODB_URI)."),
                click.option("--db", "database", metavar="NAME", help="Database (MONGODB_DATABASE_NAME)."),
                click.option("--collection", "collection", metavar="NAME", help="Collection (ARCHIVERD_COLLECTION)."),
                click.option("--date-field", "date_field", metavar="FIELD",
                             help="Field holding the document's date (ARCHIVERD_DATE_FIELD)."),
                click.option("--older-than", "threshold_days", metavar="AGE", callback=_older_than,
                             help="Archive documents older than this: 90d, 36h, 2w (ARCHIVE_THRESHOLD_DAYS)."),
                click.option("--archive-dir", "archive_dir", metavar="DIR",
                             help="Root of the archive tree (ARCHIVERD_ARCHIVE_DIR)."),
            ]
        for option in reversed(options):
            wrapper = option(wrapper)
        return wrapper

    return decorate(fn) if fn is not None else decorate


def local_archive_only(cfg: config.Config, what: str) -> None:
    """Refuse, clearly, what works on an archive directory only when the segments are in an object
    store (ARCHIVERD_ARCHIVE_URL): repairs and rebuilds write files beside the segments."""
    if cfg.archive_url is not None:
        raise config.ConfigError(
            f"{what} works on an archive directory; this collection's segments are in an object store, "
            f"{cfg.archive_url} (`check`, `status`, `list`, `find`, `get`, `search`, `export`, `verify` and `restore` read them there; "
            "`prune` and `erase` remove from it)")


def archive_dir_of(cfg: config.Config) -> Path:
    """The configured collection's archive directory (`--archive-dir` may also name a collection's
    own directory, e.g. a copy of it); ConfigError when there is none."""
    from ..query.archive import collection_dir
    local_archive_only(cfg, "this command")
    if cfg.collection_dir.is_dir():
        return cfg.collection_dir
    if not cfg.archive_dir.is_dir():
        raise config.ConfigError(f"archive directory {cfg.archive_dir} does not exist (--archive-dir, "
                                 "ARCHIVERD_ARCHIVE_DIR)")
    found = collection_dir(cfg.archive_dir)
    if found == cfg.archive_dir and any(found.glob("[0-9]*/[0-9]*/[0-9]*/part-*.mkv")):
        return found
    raise config.ConfigError(f"no archive of {cfg.namespace} under {cfg.archive_dir} (is --db/--collection right?)")


def open_archive(cfg: config.Config) -> Any:
    """`archiverd.Archive` over the configured collection's archive directory, or its object store
    (ARCHIVERD_ARCHIVE_URL: the catalog is then kept in the collection's local directory)."""
    from ..query.archive import Archive
    if cfg.archive_url is not None:
        from ..store import durable, objects
        durable.ensure_dir(cfg.collection_dir)
        return Archive(cfg.collection_dir, store=objects.for_collection(cfg))
    return Archive(archive_dir_of(cfg))


def parse_when(text: str | None, option: str) -> Any:
    """A --from/--to bound: an ISO 8601 date or time (UTC unless it says otherwise), or an age
    such as 30d (that long before now). Returns a timezone-aware datetime, or None."""
    import datetime as dt
    if text is None:
        return None
    stripped = text.strip()
    try:
        when = dt.datetime.fromisoformat(stripped.replace("Z", "+00:00").replace("z", "+00:00"))
        return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)
    except ValueError:
        pass
    try:
        return dt.datetime.now(dt.timezone.utc) - config.parse_duration(stripped)
    except config.ConfigError:
        raise config.ConfigError(f"{option} takes an ISO 8601 date or time (2026-03-01, 2026-03-01T12:00Z) or an "
                                 f"age (30d), not {text!r}") from None


def parse_range(start: str | None, end: str | None) -> tuple[Any, Any]:
    """--from and --to (parse_when) as a half-open range; an empty or reversed one is a usage
    error, not a silent empty answer."""
    lo, hi = parse_when(start, "--from"), parse_when(end, "--to")
    if lo is not None and hi is not None and lo >= hi:
        raise config.ConfigError(f"--from {start} is not before --to {end}: the range is half-open (--to is the "
                                 "first moment left out; --from 2026-08-01 --to 2026-08-02 is the whole of 1 August)")
    return lo, hi


def json_option(text: str | None, what: str) -> Any:
    """An Extended JSON option value (--filter, --projection, --sort), parsed with one-line errors."""
    from ..query.ejson import loads
    return None if text is None else loads(text, what)


def lines_written(lines: Lines, code: int) -> int:
    """The exit code of a command that printed documents: `code`, or 1 (a warning) for 0 when a
    document could not be printed exactly (said on stderr)."""
    note = lines.note()
    if note is None:
        return code
    click.echo(f"archiverd: {note}", err=True)
    return code or EXIT_WARNING
