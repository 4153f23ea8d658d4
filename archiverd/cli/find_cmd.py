"""`archiverd find`: MongoDB's find over the whole archive, without restoring it."""
from __future__ import annotations

from typing import Any

import click

from ..config import Config
from ..errors import SegmentError
from ..query import ejson
from ._common import json_option, lines_written, open_archive, parse_range, with_config


def parse_sort(text: str | None) -> Any:
    """--sort '{"timestamp": -1}', or the shorthand `timestamp` / `-timestamp`."""
    if text is None:
        return None
    stripped = text.strip()
    if stripped.startswith("{"):
        return json_option(stripped, "--sort")
    if stripped.startswith("-"):
        return {stripped[1:]: -1}
    return {stripped.lstrip("+"): 1}


@click.command("find")
@click.option("--filter", "filter_", metavar="JSON", help="A MongoDB query filter (Extended JSON), as for find().")
@click.option("--from", "start", metavar="WHEN", help="Only documents dated at or after WHEN (ISO 8601, or an age: 120d).")
@click.option("--to", "end", metavar="WHEN", help="Only documents dated before WHEN.")
@click.option("--projection", metavar="JSON", help="Fields to include or exclude, as for find().")
@click.option("--sort", metavar="SPEC", help="'{\"timestamp\": -1}', or timestamp / -timestamp.")
@click.option("--limit", type=click.IntRange(min=0), help="At most this many documents (0: no limit).")
@click.option("--canonical", is_flag=True, help="Canonical Extended JSON (type-exact) instead of relaxed.")
@click.option("--all-copies", is_flag=True, help="Include older copies of _ids archived more than once.")
@click.option("--count", "count_only", is_flag=True, help="Print only how many documents match.")
@with_config
def command(cfg: Config, filter_: str | None, start: str | None, end: str | None, projection: str | None,
            sort: str | None, limit: int | None, canonical: bool, all_copies: bool, count_only: bool) -> int:
    """Print the archived documents that match a MongoDB query, as Extended JSON lines.

    The filter language is MongoDB's (comparison and type-bracketing rules, dotted paths into
    arrays and sub-documents, $eq $ne $gt $gte $lt $lte $in $nin $exists $type $and $or $nor $not
    $regex $elemMatch $size $all $mod), checked the way the server checks it. --from/--to select
    by the date field the archive was built on, half-open [from, to), and skip segments of other
    days unread. A filter that reads no embedding is matched on each block's documents without
    their embeddings, and only the matches are read whole.

    Of an _id archived more than once, only its newest copy is considered (--all-copies: every
    copy). Exit 4 if a segment is damaged beyond repair: what could be read is printed and what
    was lost is named on stderr.

    \b
    Examples:
      archiverd find --from 2026-03-01 --to 2026-04-01 --filter '{"final_outcome": "failure"}'
      archiverd find --filter '{"tags": {"$all": ["finance", "production"]}}' --projection '{"embeddings": 0}'
      archiverd find --from 120d --sort -timestamp --limit 20 --count
    """
    spec = json_option(filter_, "--filter")
    if spec is not None and not isinstance(spec, dict):
        raise click.BadParameter("a filter is a JSON object", param_hint="--filter")
    damaged: list[str] = []
    count = 0
    lines = ejson.Lines(canonical)
    lo, hi = parse_range(start, end)
    with open_archive(cfg) as archive:
        if count_only and not sort and not limit:
            click.echo(archive.count(spec, lo, hi,
                                     all_copies=all_copies, on_damage=damaged.append))
            return _damage(damaged)
        for raw in archive.find(spec, lo, hi,
                                projection=json_option(projection, "--projection"), sort=parse_sort(sort),
                                limit=limit, raw=True, all_copies=all_copies, on_damage=damaged.append):
            count += 1
            if not count_only:
                click.echo(lines.line(raw))
    if count_only:
        click.echo(count)
    return lines_written(lines, _damage(damaged))


def _damage(damaged: list[str]) -> int:
    for line in damaged:
        click.echo(f"archiverd: damaged: {line}", err=True)
    return SegmentError.exit_code if damaged else 0
