"""The archive directory: <archive_dir>/<db>/<collection>/YYYY/MM/DD/part-NNNN.mkv (+ .index.json).

One directory per UTC day of the documents' date field, so a day's archive is found with `ls`, and
parts numbered in the order they were sealed. A sealed part is never rewritten; a day that receives
late documents gets the next part. Documents whose date lies outside what Python's datetime holds
(before year 1 or after 9999) go to `out-of-range/`.

Names: `part-NNNN.mkv` + `part-NNNN.index.json` is a segment; `part-NNNN.repaired.mkv` (+ index) is
the verified repaired copy `check --repair` wrote beside a damaged one, which readers prefer; a
video without its index is an *orphan* (kept, reported, rebuilt by `reindex`); `.part-*.tmp` files
are unpublished temporary files of an interrupted seal, the only thing recovery ever removes.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath

from . import durable
from ..format import index

_PART = re.compile(r"^\.?part-(\d{4,})\.")
_VIDEO = re.compile(r"^part-\d{4,}\.mkv$")
TEMP_GLOB = ".part-*" + durable.TEMP_SUFFIX


def day_dir(collection_dir: Path, label: str) -> Path:
    """The directory of a day label ("2026-08-01" -> 2026/08/01; "out-of-range" stays as is)."""
    return collection_dir.joinpath(*label.split("-")) if label[:1].isdigit() else collection_dir / label


def day_of(relpath: str) -> str:
    """The day label of a segment path relative to the collection directory (day_dir's inverse):
    "2026/08/01/part-0003.mkv" -> "2026-08-01"."""
    return "-".join(Path(relpath).parts[:-1])


def next_part(directory: Path) -> Path:
    """The next free part name in a day directory (every existing name counts as taken: temporary
    files, orphans and repaired copies included)."""
    numbers = [int(m.group(1)) for p in directory.iterdir() if (m := _PART.match(p.name))] \
        if directory.is_dir() else []
    return directory / f"part-{max(numbers, default=0) + 1:04d}.mkv"


def sweep(directory: Path) -> list[Path]:
    """Remove the temporary files an interrupted seal left in `directory` (a day's, under that
    day's lease: another process may be writing into the others) and below it (named `.part-*.tmp`,
    never published: where the file system allows, temporary files are anonymous and leave nothing).
    A published name -- a video, an index, a repaired copy, an orphan -- is never removed here."""
    removed = []
    if not directory.is_dir():
        return removed
    for tmp in directory.rglob(TEMP_GLOB):
        if tmp.is_file() and not _VIDEO.match(tmp.name):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    for directory in {p.parent for p in removed}:
        durable.fsync_dir(directory)
    return removed


def videos(collection_dir: Path) -> list[Path]:
    """Every original video (`part-NNNN.mkv`), oldest day and part first."""
    if not collection_dir.is_dir():
        return []
    return sorted(p for p in collection_dir.rglob("part-*.mkv") if _VIDEO.match(p.name))


def segments(collection_dir: Path) -> Iterator[Path]:
    """Sealed segments (those with an index), oldest day and part first; a repaired copy stands in
    for its damaged original."""
    for video in videos(collection_dir):
        if index.path_for(video).exists():
            yield index.preferred(video)


def removal_order(video: str, names: Iterable[str]) -> list[str]:
    """Of `names` (in the video's directory, or whole store names), the segment `video`'s, in the
    order they are removed: its index first (from then on the segment is no longer committed:
    readers skip it, `check` calls the video an orphan), the repaired copy's index, every derived
    file named `part-NNNN.<anything>` (vector sidecar, key files, ...), the repaired copy, and the
    video last."""
    path = PurePosixPath(video)
    m = _PART.match(path.name)
    if m is None or path.name.startswith("."):
        return []
    stem = video[:len(video) - len(path.name)] + f"part-{m.group(1)}."
    found = {n for n in names if n.startswith(stem)}
    repaired = index.repaired_path(Path(video)).as_posix()
    first = [index.path_for(Path(video)).as_posix(), index.path_for(Path(repaired)).as_posix()]
    last = [repaired, video]
    return [n for n in first if n in found] + sorted(found - set(first) - set(last)) + [n for n in last if n in found]


def temporaries(collection_dir: Path) -> list[Path]:
    """Leftover temporary files of interrupted seals."""
    return sorted(collection_dir.rglob(TEMP_GLOB)) if collection_dir.is_dir() else []


def usage(collection_dir: Path) -> tuple[int, int]:
    """(sealed segments, bytes on disk of every file in the collection's tree)."""
    count = sum(1 for _ in segments(collection_dir))
    size = sum(p.stat().st_size for p in collection_dir.rglob("part-*") if p.is_file()) \
        if collection_dir.is_dir() else 0
    return count, size
