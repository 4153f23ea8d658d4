"""`archiverd get`: documents by `_id` (or an indexed field) from the whole archive, reading only
their own frames."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..config import Config
from ..errors import EXIT_WARNING, ConfigError
from ..query import ejson
from ..query.ids import parse_id
from ..store import objects
from ._common import lines_written, open_archive, with_config


class _Output:
    """Extended JSON lines, or the exact BSON bytes with --bson (never onto a terminal)."""

    def __init__(self, canonical: bool, as_bson: bool) -> None:
        if as_bson and sys.stdout.isatty():
            raise ConfigError("--bson writes binary BSON: redirect it to a file (archiverd get --bson ID > doc.bson)")
        self.as_bson, self.lines = as_bson, ejson.Lines(canonical)

    def write(self, raw: bytes) -> None:
        if self.as_bson:
            sys.stdout.buffer.write(raw)
            sys.stdout.buffer.flush()
        else:
            click.echo(self.lines.line(raw))


def _first_found(lookup: Any, text: str) -> list[bytes]:
    """What `lookup(value)` finds for the first of the values `text` may mean (query.ids.parse_id)."""
    for value in parse_id(text):
        found = lookup(value)
        if found:
            return found
    return []


@click.command("get")
@click.argument("ids", nargs=-1)
@click.option("--by", "by", nargs=2, metavar="FIELD VALUE",
              help="Look up by an indexed field (ARCHIVERD_INDEX_FIELDS) instead of _id, e.g. --by experience_id 3f2a...")
@click.option("--segment", help="Read this segment only (its file, or its s3:// URL; no catalog).")
@click.option("--canonical", is_flag=True, help="Canonical Extended JSON (type-exact) instead of relaxed.")
@click.option("--bson", "as_bson", is_flag=True, help="Write the documents' exact BSON bytes (as mongodump's .bson).")
@click.option("--all-copies", is_flag=True, help="Every archived copy of an _id archived more than once, newest first.")
@with_config
def command(cfg: Config, ids: tuple[str, ...], by: tuple[str, str] | None, segment: str | None, canonical: bool,
            as_bson: bool, all_copies: bool) -> int:
    """Print archived documents by _id, from anywhere in the archive.

    An ID may be a bare 24-hex ObjectId, a number, a string, or Extended JSON
    ('{"$oid": "..."}', '{"$numberLong": "7"}', '{"$uuid": "..."}', '"quoted string"'); ambiguous
    text is tried as each thing it may mean (24 hex: the ObjectId, then the string). Numbers
    match as MongoDB matches _ids: 7, 7.0 and NumberLong(7) are the same _id.

    Only the frames of each document are decoded (its block's head and its own embeddings), and
    it is printed only after it matches its SHA-256. Of an _id archived more than once (it changed
    after it was archived and was archived again), the newest copy is printed.

    Exit 0 when every ID was found; 1 when some were not (named on stderr) or a string that is not
    valid UTF-8 was printed with U+FFFD (--bson gives the exact bytes); 4 when one is damaged
    beyond repair.

    \b
    Examples:
      archiverd get 66b1f0c2e4b0a1b2c3d4e5f6
      archiverd get --by experience_id 3f2a8c1e-6d7b-4a52-9e0f-1b2c3d4e5f60
      archiverd get '{"$numberLong": "42"}' exp-7 --canonical
      archiverd get --bson 66b1f0c2e4b0a1b2c3d4e5f6 > doc.bson
    """
    if segment is None and ids and ids[0].endswith(".mkv") and Path(ids[0]).is_file():
        segment, ids = ids[0], ids[1:]  # the older form: get SEGMENT ID
    if by and ids:
        raise ConfigError("give IDs or --by FIELD VALUE, not both")
    if not by and not ids:
        raise ConfigError("name at least one _id (or --by FIELD VALUE)")
    out = _Output(canonical, as_bson)
    missing = []
    if segment is not None:
        if by:
            raise ConfigError("--by looks up through the catalog; it cannot be combined with --segment")
        reader = objects.reader_at(segment)

        def lookup_segment(value: Any) -> list[bytes]:
            try:
                return [reader.get(value)]
            except KeyError:
                return []
        for text in ids:
            found = _first_found(lookup_segment, text)
            missing += [] if found else [text]
            for raw in found:
                out.write(raw)
    else:
        with open_archive(cfg) as archive:
            if by:
                field, text = by
                found = _first_found(lambda v: archive.get_by(field, v, raw=True, all_copies=all_copies), text)
                missing += [] if found else [f"{field}={text}"]
                for raw in found:
                    out.write(raw)
            for text in ids:
                found = _first_found(lambda v: archive.get_all(v, raw=True) if all_copies
                                     else [d for d in [archive.get(v, raw=True)] if d is not None], text)
                missing += [] if found else [text]
                for raw in found:
                    out.write(raw)
    if missing:
        click.echo(f"archiverd: not archived: {', '.join(missing)}", err=True)
    return lines_written(out.lines, EXIT_WARNING if missing else 0)

