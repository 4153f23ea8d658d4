"""Back to MongoDB: insert-only restore of archived documents with their exact bytes.

Existing `_id`s are reported and never overwritten (like `mongorestore` without --drop). When one
`_id` is archived more than once (it changed after it was read, and was archived again later), the
newest copy -- from the most recently sealed segment -- is the one restored; older copies are counted.
Every document is checked against its index SHA-256 before it is inserted; from a damaged segment,
every document that verifies (after parity repair) is restored and the others are named and counted.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bson.raw_bson import RawBSONDocument
from pymongo import errors as pe

from .. import units
from ..format import index
from ..format.reader import SegmentReader
from ..progress import Meter
from ..store import objects
from . import overlap
from .source import Source


@dataclass
class RestoreStats:
    inserted: int = 0
    existing: int = 0
    older_copies: int = 0
    existing_ids: list[Any] = field(default_factory=list)
    lost: int = 0  # archived documents that could not be recovered (damaged beyond repair)
    lost_ids: list[Any] = field(default_factory=list)
    damaged: list[str] = field(default_factory=list)  # segment: status


def newest_copies(readers: Sequence[SegmentReader]) -> dict[str, tuple[int, int]]:
    """For every _id: (reader number, document number) of its newest copy. Segments are ordered by
    when they were sealed (index created_at), then by position within a segment."""
    order = sorted(range(len(readers)), key=lambda r: (readers[r].index["created_at"], readers[r].where))
    newest: dict[str, tuple[int, int]] = {}
    for r in order:
        for i, entry in enumerate(readers[r].entries()):
            newest[index.id_key(entry.get("_id"))] = (r, i)
    return newest


def restore(segments: Sequence[Path | str], source: Source, *, dry_run: bool = False, batch: int = 200,
            meter: Meter | None = None) -> RestoreStats:
    """`segments`: paths or s3:// URLs (store/objects.readers_at). `meter` (progress, statistics)
    counts every document read and times decoding and inserting."""
    meter = meter or Meter()
    readers = [r for p in segments for r in objects.readers_at(p)]
    meter.expect(documents=sum(r.index["documents"] for r in readers),
                 bytes=sum(e["bytes"] for r in readers for e in r.entries()))
    newest = newest_copies(readers)
    stats = RestoreStats()
    # inserts run on a thread, one batch in flight, while the next batch is decoded ("insert" is
    # the time decoding waited for them)
    with overlap.Behind(lambda docs: _insert(docs, source, dry_run, stats)) as inserter:
        for r, reader in enumerate(readers):
            chunk: list[RawBSONDocument] = []
            for i, raw in meter.timed("decode", reader.salvage()):
                meter.add(1, len(raw))
                entry = reader.entries()[i] if i is not None else {}
                if i is None or newest[index.id_key(entry.get("_id"))] != (r, i):
                    stats.older_copies += i is not None
                    continue
                chunk.append(RawBSONDocument(raw))
                if len(chunk) >= batch:
                    with meter.stage("insert"):
                        inserter.put(chunk)
                    chunk = []
            with meter.stage("insert"):
                inserter.put(chunk)
            _account(reader, stats)
        with meter.stage("insert"):
            inserter.wait()
    return stats


def _account(reader: SegmentReader, stats: RestoreStats) -> None:
    """A damaged segment's lost documents, once it has been read."""
    report = reader.last_report
    if not report.ok:
        stats.damaged.append(f"{reader.where}: {report.status}, {units.plural(report.lost, 'document')} lost")
        stats.lost += report.lost
        stats.lost_ids.extend(report.lost_documents[:20 - len(stats.lost_ids)])


def _insert(docs: list[RawBSONDocument], source: Source, dry_run: bool, stats: RestoreStats) -> None:
    if not docs:
        return
    if dry_run:
        ids = [d["_id"] for d in docs]
        existing = {index.key_of(d["_id"]) for d in source.retrying(
            "look up existing ids", lambda: list(source.collection.find({"_id": {"$in": ids}}, projection={"_id": 1})))}
        for _id in ids:
            if index.key_of(_id) in existing:
                _note_existing(stats, _id)
            else:
                stats.inserted += 1
        return

    def insert() -> None:
        try:
            source.collection.insert_many(docs, ordered=False)
            stats.inserted += len(docs)  # inserted_ids is empty for RawBSONDocument
        except pe.BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != 11000 for e in errors):
                raise
            stats.inserted += exc.details.get("nInserted", 0)
            for e in errors:  # (an _id is read only here: it decodes the whole document)
                _note_existing(stats, docs[e["index"]]["_id"])

    source.retrying("insert", insert)


def _note_existing(stats: RestoreStats, _id: Any) -> None:
    stats.existing += 1
    if len(stats.existing_ids) < 20:
        stats.existing_ids.append(index.id_json(_id))
