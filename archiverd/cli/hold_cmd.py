"""`archiverd hold add|remove|list`: legal holds that block `prune` and `erase`."""
from __future__ import annotations

import json

import click

from ..config import Config
from ..crypto import keyring
from ..format import index
from ..query.ids import parse_id
from ..store import audit, holds
from ._common import with_config


@click.group("hold")
def command() -> None:
    """Legal holds: days or documents that `prune` and `erase` must keep, whatever retention says.

    Holds live in archiverd-holds.json in the collection's archive directory; every change is also
    written to the audit log. A document is named there by a digest of its `_id`, never in the
    clear (keyed by the master key when encryption is on).
    """


@command.command("add")
@click.option("--from", "first", metavar="DAY", help="First day held (YYYY-MM-DD, UTC, as in the archive's layout).")
@click.option("--to", "last", metavar="DAY", help="Last day held, inclusive (default: the --from day).")
@click.option("--id", "document_id", metavar="ID",
              help="Hold one document by `_id` (24 hex digits, a number, a quoted string or Extended JSON).")
@click.option("--reason", required=True, metavar="TEXT", help="Why (stored in the clear, and in the audit log).")
@with_config
def add(cfg: Config, first: str | None, last: str | None, document_id: str | None, reason: str) -> int:
    """Place a hold on a range of days, or on one document.

    \b
    Examples:
      archiverd hold add --from 2025-01-01 --to 2025-03-31 --reason "case 2026-17, counsel's letter of 3 May"
      archiverd hold add --id 66b1f0c2e4b0a1b2c3d4e5f6 --reason "case 2026-17"
    """
    if (first is None) == (document_id is None):
        raise click.UsageError("give either --from DAY [--to DAY] or --id ID")
    store = holds.Holds(cfg.collection_dir)
    who = audit.who("archiverd hold add")
    if document_id is not None:
        if last is not None:
            raise click.UsageError("--to goes with --from, not with --id")
        keys = list(dict.fromkeys(index.key_of(v) for v in parse_id(document_id)))
        hold = store.add_document(keys, reason, who, keyring.from_config(cfg))
    else:
        start = holds.parse_day(first, "--from")  # type: ignore[arg-type]
        hold = store.add_days(start, holds.parse_day(last, "--to") if last else start, reason, who)
    click.echo(f"added {hold.describe()}")
    return 0


@command.command("remove")
@click.argument("hold_id", type=int)
@click.option("--reason", required=True, metavar="TEXT", help="Why the hold ends (for the audit log).")
@with_config
def remove(cfg: Config, hold_id: int, reason: str) -> int:
    """Lift hold HOLD_ID (see `archiverd hold list`).

    \b
    Examples:
      archiverd hold remove 2 --reason "case 2026-17 closed"
    """
    hold = holds.Holds(cfg.collection_dir).remove(hold_id, reason, audit.who("archiverd hold remove"))
    click.echo(f"removed {hold.describe()}")
    return 0


@command.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@with_config
def list_(cfg: Config, as_json: bool) -> int:
    """Every hold: id, what it covers, why, when and by whom."""
    found = holds.Holds(cfg.collection_dir).list()
    if as_json:
        click.echo(json.dumps([h.as_json() for h in found], indent=1))
        return 0
    if not found:
        click.echo("no holds")
    for h in found:
        by = h.by.get("sudo_user") or h.by.get("user")
        click.echo(f"{h.describe()}  placed {h.created_at} by {by}@{h.by.get('host')}")
    return 0
