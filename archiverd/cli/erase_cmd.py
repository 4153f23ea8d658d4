"""`archiverd erase`: make documents unrecoverable from the archive (the right to erasure)."""
from __future__ import annotations

import click

from .. import units
from ..config import Config
from ..errors import EXIT_WARNING
from ..query.ids import parse_id
from ..service.state import State
from ..store import erase
from ._common import with_config


@click.command("erase")
@click.argument("ids", nargs=-1, required=True)
@click.option("--reason", required=True, metavar="TEXT", help="Why, for the audit log (required).")
@click.option("--dry-run", is_flag=True, help="Show which segments would be rewritten; change nothing.")
@with_config
def command(cfg: Config, ids: tuple[str, ...], reason: str, dry_run: bool) -> int:
    """Erase every archived copy of the documents with these _ids (same forms as `get`).

    Each segment holding one is rewritten without it -- a new segment, sealed and verified, every
    other document byte-exact -- and then the old segment's files are removed (video, parity,
    index, vector sidecar, key file; the catalog's rows are overwritten). The audit log records a
    digest of each _id, the reason and who asked, never the content. Nothing is erased while a
    document is under a legal hold (`archiverd hold`), while its segment's deletes are still
    journaled, or while a video has no index. An interrupted erase is finished by running it again.
    Documents still (or again) in MongoDB are not touched: erase them there too.

    With ARCHIVERD_ARCHIVE_URL the segments are read from the bucket, the rewritten one is
    uploaded and confirmed (video, key file, index) before any old object goes, and every version
    of each old object is removed (a versioned bucket keeps no older copy of the erased bytes).

    Exit 0 when every ID was found and erased; 1 when some were not archived (named); 3 when one
    is held or the reason is missing; 7 when the object store refused to remove a version of an
    old object (nothing is reported erased; rerun with credentials that may delete versions).

    \b
    Examples:
      archiverd erase --dry-run 66b1f0c2e4b0a1b2c3d4e5f6 --reason "GDPR request 2026-114"
      archiverd erase 66b1f0c2e4b0a1b2c3d4e5f6 exp-7 --reason "GDPR request 2026-114"
    """
    wanted = [(text, parse_id(text)) for text in ids]
    result = erase.erase(cfg, wanted, reason, pending=State(cfg.state_file).pending, dry_run=dry_run)
    verb = "would rewrite" if dry_run else "rewrote"
    for r in result.rewrites:
        if dry_run:
            after = ""
        elif r.replacement is None:
            after = " (every document erased: segment removed)"
        else:
            after = f" -> {r.replacement}" + (" (written by an interrupted erase)" if r.reused else "")
        click.echo(f"{verb} {r.segment}: {r.erased} of {units.plural(r.documents, 'document')} erased{after}")
    click.echo(f"{'would erase' if dry_run else 'erased'} "
               f"{units.plural(result.copies, 'archived copy', 'archived copies')} of "
               f"{units.plural(len(result.found), 'document')} from {units.plural(len(result.rewrites), 'segment')}")
    if result.missing:
        click.echo(f"archiverd: not archived: {', '.join(result.missing)}", err=True)
        return EXIT_WARNING
    return 0
