"""The archive directory: <archive_dir>/<db>/<collection>/YYYY/MM/DD/part-NNNN.mkv (+ .index.json).

One directory per UTC day of the documents' date field, so a day's archive is found with `ls`, and
parts numbered in the order they were sealed. A sealed part is never rewritten; a day that receives
late documents gets the next part. Documents whose date lies outside what Python's datetime holds
(before year 1 or after 9999) go to `out-of-range/`.
"""
from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from . import durable
from ..format import index

_PART = re.compile(r"^\.?part-(\d{4,})\.")
TEMP_GLOB = ".part-*.tmp*"


def day_dir(collection_dir: Path, when: Any) -> Path:
    if isinstance(when, dt.datetime):
        return collection_dir / f"{when.year:04d}" / f"{when.month:02d}" / f"{when.day:02d}"
    return collection_dir / "out-of-range"


def day_label(when: Any) -> str:
    return when.strftime("%Y-%m-%d") if isinstance(when, dt.datetime) else "out-of-range"


def next_part(directory: Path) -> Path:
    """The next free part name in a day directory (temporary and orphaned files count as taken)."""
    numbers = [int(m.group(1)) for p in directory.glob("*part-*") if (m := _PART.match(p.name))] \
        if directory.is_dir() else []
    return directory / f"part-{max(numbers, default=0) + 1:04d}.mkv"


def sweep(collection_dir: Path) -> list[Path]:
    """Remove what an interrupted seal leaves: temporary files, and videos whose index (the commit
    point) was never published. Their documents are still in MongoDB: deletes follow the index."""
    removed = []
    if not collection_dir.is_dir():
        return removed
    for tmp in collection_dir.rglob(TEMP_GLOB):
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    for video in collection_dir.rglob("part-*.mkv"):
        if not index.path_for(video).exists():
            video.unlink(missing_ok=True)
            removed.append(video)
    for directory in {p.parent for p in removed}:
        durable.fsync_dir(directory)
    return removed


def segments(collection_dir: Path) -> Iterator[Path]:
    """Sealed segments (those with an index), oldest day and part first."""
    if collection_dir.is_dir():
        yield from sorted(p for p in collection_dir.rglob("part-*.mkv") if index.path_for(p).exists())


def usage(collection_dir: Path) -> tuple[int, int]:
    """(sealed segments, bytes on disk including indexes)."""
    count = size = 0
    for video in segments(collection_dir):
        count += 1
        size += video.stat().st_size + index.path_for(video).stat().st_size
    return count, size
