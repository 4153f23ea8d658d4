"""What a collection's archive holds, from its indexes alone: per segment, per day, in total.

Nothing is decoded and nothing is cached on disk: `status` and `list` walk the tree and load every
index (`index.load`, which also checks its structure) each time they run -- a few hundred small
segments take a fraction of a second (tests/test_list_info.py measures it). A repaired copy stands
in for its damaged original, as for every reader. Sizes count every file of a segment (video, index,
repaired copy); the total counts every file in the collection's directory.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import layout, objects
from ..errors import SegmentError
from ..format import index


@dataclass
class Segment:
    rel: str  # the original video, relative to the collection directory
    day: str  # YYYY-MM-DD, or the name of a directory outside the day layout
    documents: int
    bson_bytes: int  # of the documents it holds
    bytes: int  # on disk: video, index and any repaired copy
    created_at: str  # when it was sealed (UTC)
    repaired: bool  # a verified repaired copy is read instead of the original


@dataclass
class Day:
    day: str
    segments: int = 0
    documents: int = 0
    bson_bytes: int = 0
    bytes: int = 0


@dataclass
class Inventory:
    segments: list[Segment] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)  # videos without an index
    unreadable: dict[str, str] = field(default_factory=dict)  # index that does not load -> why
    temporaries: list[str] = field(default_factory=list)  # left by an interrupted seal
    bytes_on_disk: int = 0  # every file under the collection directory

    @property
    def documents(self) -> int:
        return sum(s.documents for s in self.segments)

    def days(self) -> list[Day]:
        out: dict[str, Day] = {}
        for s in self.segments:
            day = out.setdefault(s.day, Day(s.day))
            day.segments += 1
            day.documents += s.documents
            day.bson_bytes += s.bson_bytes
            day.bytes += s.bytes
        return list(out.values())

    def totals(self) -> dict[str, Any]:
        days = sorted({s.day for s in self.segments})
        return {"segments": len(self.segments), "documents": self.documents, "bytes": self.bytes_on_disk,
                "bson_bytes": sum(s.bson_bytes for s in self.segments), "days": len(days),
                "first_day": days[0] if days else None, "last_day": days[-1] if days else None}


def day_of(rel: Path | str) -> str:
    """The day of a segment from its directory (2026/08/01/part-0001.mkv -> 2026-08-01): the inverse
    of layout.day_dir."""
    return "-".join(Path(rel).parent.parts)


def scan(collection_dir: Path) -> Inventory:
    """Walk the collection's directory once for sizes, then load every segment's index."""
    inv = Inventory()
    if not collection_dir.is_dir():
        return inv
    sizes: dict[tuple[Path, str], int] = {}  # (directory, "part-NNNN") -> bytes of its files
    for directory, _dirs, files in os.walk(collection_dir):
        for name in files:
            try:
                size = os.stat(os.path.join(directory, name), follow_symlinks=False).st_size
            except OSError:  # removed meanwhile
                continue
            inv.bytes_on_disk += size
            if name.startswith("part-"):
                key = (Path(directory), name.split(".", 1)[0])
                sizes[key] = sizes.get(key, 0) + size
    for video in layout.videos(collection_dir):
        rel = video.relative_to(collection_dir)
        if not index.path_for(video).exists():
            inv.orphans.append(str(rel))
            continue
        target = index.preferred(video)
        try:
            idx = index.load(index.path_for(target))
        except SegmentError as exc:
            inv.unreadable[str(rel)] = str(exc)
            continue
        inv.segments.append(Segment(
            rel=str(rel), day=day_of(rel), documents=idx["documents"],
            bson_bytes=sum(d["bytes"] for d in idx["docs"]),
            bytes=sizes.get((video.parent, video.name.split(".", 1)[0]), 0),
            created_at=idx["created_at"], repaired=target != video))
    inv.temporaries = [str(t.relative_to(collection_dir)) for t in layout.temporaries(collection_dir)]
    return inv


def scan_store(store: objects.Store) -> Inventory:
    """The same from an object store: one listing for the sizes, then every index (one GET each;
    nothing is cached, as on disk)."""
    inv = Inventory()
    sizes = store.listing()
    inv.bytes_on_disk = sum(sizes.values())
    for video in store.videos():
        if objects.index_name(video) not in sizes:
            inv.orphans.append(video)
            continue
        try:
            idx = store.load_index(video)
        except SegmentError as exc:
            inv.unreadable[video] = str(exc)
            continue
        stem = video.rsplit(".", 1)[0] + "."
        inv.segments.append(Segment(
            rel=video, day=day_of(video), documents=idx["documents"], bson_bytes=sum(d["bytes"] for d in idx["docs"]),
            bytes=sum(size for name, size in sizes.items() if name.startswith(stem)),
            created_at=idx["created_at"], repaired=False))
    return inv
