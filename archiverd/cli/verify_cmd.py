"""`archiverd verify`: decode every frame of a segment and check every checksum."""
from __future__ import annotations

import json
from pathlib import Path

import click

from .. import units
from ..errors import SegmentError
from ..format.reader import NOT_READ, ScanReport
from ..store import objects


def show(path: Path | str, report: ScanReport) -> None:
    """One segment's outcome for a person: OK on stdout, anything else with its problems on stderr."""
    if report.ok:
        extra = f" ({'; '.join(report.warnings)})" if report.warnings else ""
        click.echo(f"OK      {path}: {units.plural(report.documents, 'document')}, {units.plural(report.frames, 'frame')}, "
                   f"{report.seconds:.2f} s{extra}")
        return
    lost = f", {units.plural(report.lost, 'document')} lost" if report.lost else ""
    repaired = f", {units.plural(report.repaired_frames, 'frame')} rebuilt from parity" if report.repaired_frames else ""
    click.echo(f"FAILED  {path}: {report.status}{lost}{repaired}", err=True)
    for problem in report.problems:
        click.echo(f"  - {problem}", err=True)


@click.command("verify")
@click.argument("segments", nargs=-1, required=True)
@click.option("--independent", is_flag=True,
              help="Also decode every frame with zxing-cpp (a standard QR reader) and require agreement.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON report per segment.")
def command(segments: tuple[str, ...], independent: bool, as_json: bool) -> int:
    """Check SEGMENTS end to end (exit 0 only if every one is intact, 4 otherwise).

    Phases: the video against its index (size, SHA-256); every frame (QR, CRC, segment id,
    position); lost frames rebuilt from parity where possible; the record stream (block CRCs and
    SHA-256s, end record, content digest); every document against its index entry (length,
    SHA-256, _id, block). A damaged segment is `damaged (repairable)` when every document still
    verifies (then `archiverd check --repair` writes a repaired copy), else `damaged (unrepairable)`.
    A segment in an object store is named by its s3:// URL (one ending in `/`: every committed
    segment under it) and read by ranged GETs.

    \b
    Examples:
      archiverd verify archives/evolving_agents_db/eat_agent_experiences/2026/08/01/part-0001.mkv
      archiverd verify --json archives/**/*.mkv
      archiverd verify s3://my-bucket/archives/evolving_agents_db/eat_agent_experiences/2026/08/
    """
    failed = 0
    for text in segments:
        try:
            found = [(r.where, r.verify(independent=independent)) for r in objects.readers_at(text)]
        except SegmentError as exc:
            report = ScanReport(text, status=NOT_READ)
            report.problem(str(exc))
            found = [(text, report)]
        for where, report in found:
            failed += not report.ok
            if as_json:
                click.echo(json.dumps(report.as_dict(), sort_keys=True, default=str))
            else:
                show(text if len(found) == 1 and not text.endswith("/") else where, report)
    return SegmentError.exit_code if failed else 0
