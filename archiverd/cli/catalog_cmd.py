"""`archiverd catalog`: the archive's lookup catalog (derived from the indexes; rebuildable)."""
from __future__ import annotations

import click

from .. import units
from ..config import Config
from ..errors import SegmentError
from ..store.catalog import Catalog
from ._common import archive_dir_of, with_config


@click.group("catalog")
def command() -> None:
    """The catalog behind get, find and search: which segment holds which _id and indexed field
    value, and each segment's day, time range, document count and size. It lives in the
    collection's archive directory (catalog.sqlite), is derived only from the sealed indexes, is
    brought up to date before every read, and can always be rebuilt."""


@command.command("rebuild")
@with_config
def rebuild(cfg: Config) -> int:
    """Make the catalog again from the segments' indexes (a damaged or foreign catalog file is
    replaced; no segment file is touched).

    \b
    Examples:
      archiverd catalog rebuild
    """
    where = archive_dir_of(cfg)
    segments, documents, unreadable = Catalog.rebuild_file(where)
    click.echo(f"catalog rebuilt: {units.plural(segments, 'segment')}, {units.plural(documents, 'document')} "
               f"({where / Catalog.FILE})")
    for segment in unreadable:
        click.echo(f"not in it, its index does not load: {segment}", err=True)
    return SegmentError.exit_code if unreadable else 0
