"""`archiverd prune`: remove day segments past retention, like `borg prune` / `restic forget --prune`."""
from __future__ import annotations

import json

import click

from .. import units
from ..config import Config
from ..errors import EXIT_WARNING
from ..service.state import State
from ..store import retention
from ._common import with_config


def _kept(kept: list[retention.SegmentPlan]) -> str:
    """What the summary's kept count is: segments past retention that stay, and why (each is named above)."""
    if not kept:
        return "nothing kept back"
    held = sum(1 for s in kept if s.held_by)
    why = ", ".join(f"{n} {what}" for n, what in ((held, "under a hold"),
                                                  (len(kept) - held, "journaled or not checkable")) if n)
    return f"kept {units.plural(len(kept), 'segment')} past retention ({why})"


@click.command("prune")
@click.option("--dry-run", is_flag=True, help="Show what would be removed and what is kept; change nothing.")
@click.option("--keep-days", "keep_days", type=click.IntRange(1, 36_500), metavar="N",
              help="Prune once with this retention instead of ARCHIVERD_RETENTION_DAYS (a person asking).")
@click.option("--reason", metavar="TEXT", help="Why, for the audit log.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@with_config
def command(cfg: Config, dry_run: bool, keep_days: int | None, reason: str | None, as_json: bool) -> int:
    """Remove whole day segments whose day ended more than the retention ago.

    Every file of such a segment goes (video, index, repaired copy, vector sidecar, key file, ...),
    then empty day directories. Each removal is first written to the audit log
    (archiverd-audit.jsonl: files, sizes, video SHA-256, document count, why, who; no document
    content or ids). Kept, and listed: segments under a hold (`archiverd hold`), segments whose
    deletes are still journaled, and, while document holds exist, segments whose index cannot be
    read. An interrupted prune is finished by running it again.

    With ARCHIVERD_ARCHIVE_URL the segments' objects go from the bucket -- every version of each
    (ListObjectVersions, then DeleteObject by version id), so that a versioned bucket keeps no
    older copy; the audit log (which records the versions removed), holds and lock stay in the
    collection's local directory.

    Exit 0 when everything past retention was removed (or nothing was); 1 when something was
    kept; 3 when no retention is set; 7 when the object store refused to remove a version (the
    credentials lack s3:DeleteObjectVersion or s3:ListBucketVersions, or an object lock).

    \b
    Examples:
      archiverd prune --dry-run                     # with ARCHIVERD_RETENTION_DAYS=730
      archiverd prune
      archiverd prune --keep-days 3650 --reason "ticket 1234: ten years are enough"
    """
    result = retention.prune(cfg, pending=State(cfg.state_file).pending, retention_days=keep_days, reason=reason,
                             dry_run=dry_run)
    if as_json:
        click.echo(json.dumps({"summary": result.summary(), "segments": [
            {"segment": s.video.as_posix(), "day": s.day.isoformat(), "files": s.files, "bytes": s.bytes,
             "documents": s.documents, "removed": s.removable and not dry_run, "held_by": s.held_by,
             "skipped": s.skipped} for s in result.segments]}, indent=1))
    else:
        verb = "would remove" if dry_run else "removed"
        for s in result.segments:
            rel = s.video.as_posix()
            if s.removable:
                docs = "? documents" if s.documents is None else units.plural(s.documents, "document")
                click.echo(f"{verb:<13} {rel} ({docs}, {units.plural(len(s.files), 'file')}, "
                           f"{units.plural(s.bytes, 'byte')})")
            else:
                click.echo(f"{'kept':<13} {rel}: {'; '.join(s.held_by) or s.skipped}")
        summary = result.summary()
        click.echo(f"retention {result.retention_days} days (days through {result.last_day}): {verb} "
                   f"{units.plural(summary['segments_removed'], 'segment')} "
                   f"({units.plural(summary['bytes_removed'], 'byte')}), {_kept(result.kept)}")
    return EXIT_WARNING if result.kept else 0
