"""`archiverd restore`: segments back into a MongoDB collection, insert-only."""
from __future__ import annotations

import dataclasses
import json
import re

import click

from .. import config, progress, redaction, units
from ..config import Config
from ..errors import ConfigError, SegmentError
from ..format.reader import RECOVERED
from ..service.restore import restore
from ..service.source import Source
from ._common import with_config


def _target(cfg: Config, to: str) -> Config:
    """--to DB.COLLECTION on the configured server, or a whole URI mongodb://HOSTS/DB.COLLECTION?OPTIONS
    whose options (replicaSet, tls, authSource, ...) are kept. The target may not exist yet: restore
    creates it (the one command that may)."""
    uri = cfg.uri
    match = re.match(r"(?i)mongodb(?:\+srv)?://", to)
    if match:
        redaction.remember(to)
        if redaction.secrets_in(to):
            click.echo("archiverd: warning: a password on the command line is visible to other local users (ps, "
                       "shell history); prefer MONGODB_URI or --config FILE with --to DB.COLLECTION", err=True)
        rest = to[match.end():]
        authority_end = rest.find("/", rest.rfind("@") + 1)
        if authority_end < 0:
            raise ConfigError(f"--to {redaction.redact(to)!r} names no DB.COLLECTION after the host "
                              "(mongodb://HOST/DB.COLLECTION)")
        path, _, options = rest[authority_end + 1:].partition("?")
        uri = to[:match.end()] + rest[:authority_end] + "/" + (f"?{options}" if options else "")
        to = path
    db, dot, coll = to.partition(".")
    if not dot or not db or not coll:
        raise ConfigError(f"--to must name DB.COLLECTION (got {redaction.redact(to)!r})")
    config.check_database_name(db, f"--to database {db!r}")
    config.check_collection_name(coll, f"--to collection {coll!r}")
    if not uri.startswith(("mongodb://", "mongodb+srv://")):
        raise ConfigError("--to URI must start with mongodb:// or mongodb+srv://")
    return dataclasses.replace(cfg, uri=uri, database=db, collection=coll)


@click.command("restore")
@click.argument("segments", nargs=-1, required=True)
@click.option("--to", "to", required=True,
              help="DB.COLLECTION (on the server of --uri / MONGODB_URI), or mongodb://HOST/DB.COLLECTION?OPTIONS.")
@click.option("--dry-run", is_flag=True, help="Report what would be inserted and what already exists.")
@progress.options("restoring")
@with_config
def command(cfg: Config, segments: tuple[str, ...], to: str, dry_run: bool, meter: progress.Meter) -> int:
    """Insert the documents of SEGMENTS into a collection with their exact bytes.

    A segment is a video's path, or in an object store its s3:// URL; an s3:// URL ending in `/`
    names every committed segment under it (read by ranged GETs).

    Existing _ids are reported and never overwritten. If an _id was archived more than once, only
    its newest copy is restored. Every document is checked against its index SHA-256 before it is
    inserted. From a damaged segment, every document that verifies (after parity repair) is
    restored and the others are named: exit 4 with their count. Exit 1 if some _ids already existed,
    or a segment needed parity repair (named; every document was recovered).
    The target collection (and database) may not exist yet: restore creates them.
    Progress: a bar on a terminal, lines with --progress; --statistics times decoding and inserting.

    \b
    Examples:
      archiverd restore archives/evolving_agents_db/eat_agent_experiences/2026/08/01/*.mkv \\
          --to evolving_agents_db.eat_restored
      archiverd restore part-0001.mkv --to mongodb://localhost:27017/scratch.check --dry-run
      archiverd restore s3://my-bucket/archives/evolving_agents_db/eat_agent_experiences/2026/08/ \\
          --to evolving_agents_db.eat_restored
    """
    target = _target(cfg, to)
    stats = restore(segments, Source(target), dry_run=dry_run, meter=meter)
    meter.close()
    verb = "would insert" if dry_run else "inserted"
    click.echo(f"{verb} {units.plural(stats.inserted, 'document')} into {target.namespace}; "
               f"{units.plural(stats.existing, '_id')} already existed (not overwritten); "
               f"{units.plural(stats.older_copies, 'older copy', 'older copies')} skipped", err=True)
    if stats.existing_ids:
        click.echo("existing _ids: " + json.dumps(stats.existing_ids), err=True)
    for line in stats.damaged:
        click.echo(f"archiverd: damaged: {line}" + ("" if stats.lost else f"; {RECOVERED}"), err=True)
    if stats.lost:
        click.echo(f"archiverd: error: {stats.lost} archived documents could not be recovered and were not "
                   "restored" + (f" (_ids: {json.dumps(stats.lost_ids, default=str)})" if stats.lost_ids else ""),
                   err=True)
        return SegmentError.exit_code
    return 1 if stats.existing or stats.damaged else 0
