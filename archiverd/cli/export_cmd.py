"""`archiverd export`: segments to MongoDB Extended JSON lines (mongoexport's format)."""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import IO

import bson
import click
from bson import json_util

from ..segment import DECODE_OPTIONS, SegmentReader


def ejson_line(raw: bytes, canonical: bool) -> str:
    options = json_util.CANONICAL_JSON_OPTIONS if canonical else json_util.RELAXED_JSON_OPTIONS
    return json_util.dumps(bson.decode(raw, DECODE_OPTIONS), json_options=options)


def _write(segments: tuple[Path, ...], canonical: bool, out: IO[str]) -> int:
    count = 0
    for path in segments:
        for raw in SegmentReader(path):
            out.write(ejson_line(raw, canonical) + "\n")
            count += 1
    return count


@click.command("export")
@click.argument("segments", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl", show_default=True)
@click.option("--canonical", is_flag=True, help="Canonical Extended JSON (type-exact) instead of relaxed.")
@click.option("-o", "--output", type=click.Path(path_type=Path),
              help="Write to this file (created only if every document was read intact).")
def command(segments: tuple[Path, ...], fmt: str, canonical: bool, output: Path | None) -> int:
    """Write the documents of SEGMENTS as Extended JSON, one per line, in archive order.

    Every document is checked against its index checksum as it is read; on any damage the command
    stops with exit code 4 (and with -o leaves no output file behind).

    \b
    Examples:
      archiverd export part-0001.mkv > part-0001.jsonl
      archiverd export --canonical -o day.jsonl archives/db/coll/2026/08/01/*.mkv
    """
    if output is None:
        count = _write(segments, canonical, sys.stdout)
    else:
        tmp = output.with_name(f".{output.name}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as out:
                count = _write(segments, canonical, out)
            os.replace(tmp, output)
        finally:
            tmp.unlink(missing_ok=True)
    click.echo(f"exported {count} documents", err=True)
    return 0
