"""`archiverd export`: segments to MongoDB Extended JSON lines (mongoexport's format)."""
from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import IO

import click

from .. import progress, units
from ..config import Config
from ..errors import EXIT_WARNING, ConfigError, SegmentError, StorageError
from ..format import index
from ..format.reader import RECOVERED, SegmentReader
from ..query import ejson
from ..query.archive import date_range
from ..query.match import Filter
from ..service.restore import newest_copies
from ._common import json_option, lines_written, open_archive, parse_range, with_config


def _write(readers: list[SegmentReader], lines: ejson.Lines, newest_only: bool, out: IO[str],
           meter: progress.Meter, flt: Filter | None = None) -> tuple[int, int, list[tuple[str, bool]]]:
    """Write every document that verifies (and matches `flt`); returns (written, older copies
    seen, damage notes with whether documents were lost)."""
    meter.expect(documents=sum(r.index["documents"] for r in readers),
                 bytes=sum(e["bytes"] for r in readers for e in r.entries()))
    newest = newest_copies(readers)
    count = older = 0
    damaged = []
    for r, reader in enumerate(readers):
        entries = reader.entries()
        for i, raw in meter.timed("decode", reader.salvage()):
            meter.add(1, len(raw))
            if flt is not None and not flt.matches(raw):
                continue
            if i is not None and newest[index.id_key(entries[i].get("_id"))] != (r, i):
                older += 1
                if newest_only:
                    continue
            with meter.stage("write"):
                out.write(lines.line(raw) + "\n")
            count += 1
        report = reader.last_report
        if not report.ok:
            lost = bool(report.lost or report.lost_blocks)
            what = RECOVERED
            if lost:
                named = ", ".join(map(str, report.lost_documents[:10]))
                what = f"{units.plural(report.lost, 'document')} could not be recovered" + (f" (_ids: {named})" if named else "")
            damaged.append((f"{reader.path}: {report.status}; {what}", lost))
    return count, older, damaged


def _date_field(readers: list[SegmentReader]) -> str | None:
    return next((str(r.index["source"]["date_field"]) for r in readers
                 if isinstance(r.index.get("source"), dict) and r.index["source"].get("date_field")), None)


def check_output(output: Path) -> None:
    """An output file must go into an existing directory and must not be a directory."""
    if output.is_dir():
        raise ConfigError(f"{output} is a directory; give a file name")
    if not output.parent.is_dir():
        raise ConfigError(f"directory {output.parent} does not exist")


def _special(output: Path) -> bool:
    """An existing file that is not a regular file (/dev/null, a FIFO, /dev/stdout) is written in
    place: renaming a temporary file over it would replace the device (as root: for everyone)."""
    try:
        return not stat.S_ISREG(output.stat().st_mode)
    except OSError:
        return False


@click.command("export")
@click.argument("segments", nargs=-1, type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["jsonl"]), default="jsonl", show_default=True)
@click.option("--canonical", is_flag=True, help="Canonical Extended JSON (type-exact) instead of relaxed.")
@click.option("-o", "--output", type=click.Path(path_type=Path), help="Write to this file instead of stdout.")
@click.option("--newest-only", is_flag=True,
              help="Of an _id archived more than once, write only its newest copy (as restore does).")
@click.option("--from", "start", metavar="WHEN", help="Only documents dated at or after WHEN (ISO 8601, or an age: 120d).")
@click.option("--to", "end", metavar="WHEN", help="Only documents dated before WHEN.")
@click.option("--filter", "filter_", metavar="JSON", help="Only documents matching this MongoDB filter.")
@progress.options("exporting")
@with_config
def command(cfg: Config, segments: tuple[Path, ...], fmt: str, canonical: bool, output: Path | None,
            newest_only: bool, start: str | None, end: str | None, filter_: str | None,
            meter: progress.Meter) -> int:
    """Write the documents of SEGMENTS (default: the whole archive of the configured collection)
    as Extended JSON, one per line, in archive order (day by day).

    --from/--to (half-open, by the archive's date field; segments of other days are not read) and
    --filter (MongoDB's query language) select documents.

    Every document is checked against its index checksum as it is read. From a damaged segment,
    every document that verifies (after parity repair) is written; the others are named on stderr
    and the exit code is 4 (1 when parity recovered every document). A document that changed after it was archived can be archived again;
    the newest copy is the one from the most recently sealed segment, and the summary says how many
    older copies there were. Progress: a bar on a terminal, lines with --progress; --statistics
    times decoding and writing.

    \b
    Examples:
      archiverd export part-0001.mkv > part-0001.jsonl
      archiverd export --canonical --newest-only -o day.jsonl archives/db/coll/2026/08/01/*.mkv
      archiverd export --from 2026-03-01 --to 2026-04-01 --filter '{"final_outcome": "failure"}' -o march.jsonl
    """
    if output is not None:
        check_output(output)
    elif meter.mode == progress.BAR and sys.stdout.isatty():
        meter.mode = progress.OFF  # the documents scrolling by on the same terminal are the progress
    when = parse_range(start, end)
    spec = json_option(filter_, "--filter")
    if spec is not None and not isinstance(spec, dict):
        raise ConfigError("--filter must be a JSON object")
    if segments:
        readers = [SegmentReader(p) for p in segments]
        flt = Filter(date_range(spec, *when, lambda: _date_field(readers)))
    else:
        with open_archive(cfg) as archive:
            readers = [archive.reader(info.path) for info in archive.segments(*when)]
            flt = Filter(archive.date_range(spec, *when))
    chosen = flt if (spec or when != (None, None)) else None
    lines = ejson.Lines(canonical)
    if output is None:
        count, older, damaged = _write(readers, lines, newest_only, sys.stdout, meter, chosen)
    else:
        tmp = output if _special(output) else output.with_name(f".{output.name}.tmp")
        try:
            with open(tmp, "w", encoding="utf-8") as out:
                count, older, damaged = _write(readers, lines, newest_only, out, meter, chosen)
            if tmp != output:
                os.replace(tmp, output)
        except OSError as exc:
            raise StorageError(f"cannot write {output}: {exc.strerror or exc}") from None
        finally:
            if tmp != output:
                tmp.unlink(missing_ok=True)
    meter.close()
    note = ""
    if older:
        note = (f"; {units.plural(older, 'older copy', 'older copies')} of re-archived _ids "
                f"{'skipped' if newest_only else 'included'} "
                "(newest = most recently sealed segment" + ("" if newest_only else "; --newest-only drops them") + ")")
    click.echo(f"exported {units.plural(count, 'document')}{note}", err=True)
    for line, _ in damaged:
        click.echo(f"archiverd: damaged: {line}", err=True)
    code = SegmentError.exit_code if any(lost for _, lost in damaged) else EXIT_WARNING if damaged else 0
    return lines_written(lines, code)
