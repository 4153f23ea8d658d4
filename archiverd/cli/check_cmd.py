"""`archiverd check`: the whole archive, or some segments, like `borg check` / `restic check`."""
from __future__ import annotations

import json
import re
from pathlib import Path

import click

from .. import progress, units
from ..config import Config
from ..errors import ConfigError, EXIT_WARNING, SegmentError, StorageError
from ..store import objects
from ..format.reader import refuse_url
from ..store.check import SegmentCheck, check, check_store
from ._common import with_config


def _percent(text: str | None) -> float | None:
    if text is None:
        return None
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*%?\s*", text)
    if not m or not 0 < float(m.group(1)) <= 100:
        raise ConfigError(f"--read-data-subset takes a percentage between 0 and 100, like 10%, not {text!r}")
    return float(m.group(1))


def _noteworthy(item: SegmentCheck) -> bool:
    """A segment the default output names: not ok, or with a warning, a derived problem or a repair.
    Like borg and restic, an intact segment is only counted in the summary (60 `ok` lines hide the one
    that matters); --verbose lists it too."""
    return not item.ok or bool(item.warnings or item.derived or item.repaired)


def _line(item: SegmentCheck) -> None:
    where = item.path
    if item.ok:
        how = "read" if item.read else "checksum"
        click.echo(f"ok                            {where} ({units.plural(item.documents, 'document')}, {how})")
    else:
        click.echo(f"{item.status:<30}{where}" + (f" ({units.plural(item.lost, 'document')} lost)" if item.lost else ""))
        for problem in item.problems[:10]:
            click.echo(f"    - {problem}")
    for warning in item.warnings:
        click.echo(f"    ! {warning}")
    for problem in item.derived:
        click.echo(f"    ~ vector sidecar: {problem}")
    if item.repaired:
        click.echo(f"    + {item.repaired}")


@click.command("check")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option("--read-data", is_flag=True, help="Decode every segment completely (slow; default: checksums only).")
@click.option("--read-data-subset", "subset", metavar="N%", help="Decode a random N% of the segments completely.")
@click.option("--repair", is_flag=True,
              help="Write a verified repaired copy beside each repairable segment, rebuild missing indexes and "
                   "damaged derived files (sidecars, catalog). Never deletes or modifies a sealed file.")
@click.option("-v", "--verbose", is_flag=True, help="List every segment, the intact ones too (default: only "
              "segments with a problem, a warning or a repair, then the summary).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (a `segments` list and a summary).")
@progress.options("checking")
@with_config
def command(cfg: Config, paths: tuple[Path, ...], read_data: bool, subset: str | None, repair: bool,
            verbose: bool, as_json: bool, meter: progress.Meter) -> int:
    """Check PATHS (segment files or directories; default: this collection's archive, in its
    directory or, with ARCHIVERD_ARCHIVE_URL, in its object store).

    Phases: structure (every video has its index, orphans, leftover temporary files), checksums
    (each video's size and SHA-256 against its index), and with --read-data (or a sampled
    --read-data-subset) a full decode with parity repair, every document checked against the index.
    A segment whose checksum fails is always decoded, so that it is classified. Derived files are
    checked too: each segment's vector sidecar, and the catalog against the indexes.

    Prints each segment that is not ok or has a warning (with what was found), then a summary that
    counts the segments by status; --verbose lists every segment. The statuses: ok, damaged
    (repairable), damaged (unrepairable: K documents), orphan, missing video, unusable repaired copy
    (a `.repaired.` copy beside it that is not its repair: another segment's files, or half a copy;
    no read uses it). Exit 0 only when everything is ok; 1 when only leftover temporary files or
    derived files needing a rebuild (nothing is lost) were found; 4 when any segment is not ok.
    Progress (by bytes): a bar on a terminal, lines with --progress; --statistics times the
    structure, checksum and decode phases.

    \b
    Examples:
      archiverd check                              # checksums of the whole archive; problems and a summary
      archiverd check -v                           # the same, one line per segment
      archiverd check --read-data-subset 10%       # and a full decode of a random tenth (weekly timer)
      archiverd check --read-data --json archives/evolving_agents_db/eat_agent_experiences/2026/08
      archiverd check --repair 2026/08/01/part-0003.mkv
    """
    share = _percent(subset)

    def show(item: SegmentCheck) -> None:
        if not as_json and (verbose or _noteworthy(item)):
            _line(item)

    for path in paths:
        refuse_url(path)
    if cfg.archive_url is not None and not paths:
        if repair:
            raise ConfigError(f"--repair writes beside segments in an archive directory; nothing is repaired in "
                              f"the object store {cfg.archive_url}")
        result = check_store(objects.for_collection(cfg), read_data=read_data, subset=share,
                             progress=show, meter=meter)
    else:
        if not paths and not cfg.archive_dir.is_dir():
            raise StorageError(f"archive directory {cfg.archive_dir} does not exist or is not a directory: fix "
                               "ARCHIVERD_ARCHIVE_DIR (or --archive-dir)")
        if not paths and not cfg.collection_dir.is_dir():
            raise ConfigError(f"no archive of {cfg.namespace} under {cfg.archive_dir} (is --db/--collection "
                              "right?)")
        targets = list(paths) or [cfg.collection_dir]
        for path in targets:
            if not path.exists():
                raise SegmentError("no such segment file or directory", str(path))
        result = check(targets, read_data=read_data, subset=share, repair=repair,
                       progress=show, meter=meter)
    meter.close()
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=1, default=str))
    else:
        for temp in result.temporaries:
            click.echo(f"temporary file (an interrupted seal; removed by the next cycle): {temp}")
        for problem in result.catalog:
            click.echo(f"catalog: {problem}" + (" (rebuilt)" if result.catalog_rebuilt else ""))
        s = result.summary()
        mb = s["bytes_read"] / 1e6
        decoded = sum(1 for seg in result.segments if seg.read)
        what = (f"{decoded} decoded in full, {units.plural(s['documents_read'], 'document')}" if decoded
                else "checksums only")  # says whether --read-data-subset did decode something
        click.echo(f"checked {units.plural(s['segments'], 'segment')} in {s['seconds']:.1f} s ({mb:.1f} MB read, "
                   f"{what}); "
                   + ", ".join(f"{n} {status}" for status, n in sorted(s["by_status"].items())))
    if not result.ok:
        return SegmentError.exit_code
    return EXIT_WARNING if result.temporaries or result.derived_problems else 0
