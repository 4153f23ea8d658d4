"""`archiverd get`: one document by `_id`, decoding only its block."""
from __future__ import annotations

from pathlib import Path

import click
from bson import json_util

from ..errors import ConfigError
from ..format.reader import SegmentReader
from .export_cmd import ejson_line


def parse_id(text: str) -> object:
    """An `_id` from the command line: Extended JSON ({"$oid": ...}, 42, "abc") or a bare string."""
    stripped = text.strip()
    if stripped[:1] in ("{", "[", '"') or stripped.lstrip("-").replace(".", "", 1).isdigit():
        try:
            return json_util.loads(stripped)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"cannot parse the _id {text!r} as Extended JSON: {exc}") from None
    return text


@click.command("get")
@click.argument("segment", type=click.Path(path_type=Path))
@click.argument("document_id")
@click.option("--canonical", is_flag=True, help="Canonical Extended JSON instead of relaxed.")
def command(segment: Path, document_id: str, canonical: bool) -> int:
    """Print the document with _id DOCUMENT_ID from SEGMENT as Extended JSON.

    Only the frames of the document's block are decoded; if one of them is damaged, the segment is
    read with parity repair, and the document is printed only if it verifies.

    \b
    Examples:
      archiverd get part-0001.mkv '{"$oid": "66b1f0c2e4b0a1b2c3d4e5f6"}'
      archiverd get part-0001.mkv '"exp-42"'
    """
    reader = SegmentReader(segment)
    try:
        raw = reader.get(parse_id(document_id))
    except KeyError:
        raise ConfigError(f"{segment}: no document with _id {document_id}") from None
    click.echo(ejson_line(raw, canonical))
    return 0
