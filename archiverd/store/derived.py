"""Files derived from sealed segments: each segment's vector sidecar and the archive's catalog.

Derived files are never the only copy of anything and never needed to restore a document: they
are rebuilt from the videos and indexes (`archiverd reindex`, `archiverd catalog rebuild`,
`archiverd check --repair`). So, unlike sealed files, a derived file that fails its checks is
replaced, and failing to write one is logged, never fatal: the daemon's deletes depend only on the
sealed segment.
"""
from __future__ import annotations

import hashlib
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import log
from ..errors import ArchiverdError, SegmentError, StorageError
from ..format import encryption, index, sidecar
from ..format.reader import SegmentReader
from ..format.writer import SegmentWriter
from . import durable, objects
from .catalog import Catalog

def after_commit(store: objects.Store, video: str, idx: dict[str, Any], writer: SegmentWriter | None = None) -> None:
    """The daemon's derived files for a segment committed to `store`: in the local directory, the
    sidecar and the catalog (`after_seal`); in an object store, the sidecar object, uploaded after
    the commit from the codes the writer collected (a failure is logged only; the catalog of an
    object store is not kept yet)."""
    if isinstance(store, objects.LocalStore):
        after_seal(store.root, store.path(video), idx, writer)
        return
    if writer is None:
        return
    name = sidecar.path_for(Path(video)).as_posix()
    try:
        data = writer.sidecar(idx)
        store.put_new(name, data, hashlib.sha256(data).hexdigest())
    except (ArchiverdError, ValueError) as exc:
        log.warning("derived.sidecar_failed", segment=store.where(video), reason=str(exc)[:300],
                    fix="search reads this segment's vectors exactly meanwhile")


def after_seal(collection_dir: Path, video: Path, idx: dict[str, Any], writer: SegmentWriter | None = None) -> None:
    """The daemon's derived files for a segment it has just sealed (the sidecar from the codes its
    writer collected, or, after recovery, rebuilt from the video); failures are logged only."""
    rel = video.relative_to(collection_dir).as_posix()
    try:
        if writer is not None:
            durable.replace_synced(sidecar.path_for(video), writer.sidecar(idx))
        elif sidecar_problem(video, idx):
            rebuild_sidecar(video)
    except (ArchiverdError, OSError, ValueError) as exc:
        log.warning("derived.sidecar_failed", segment=rel, reason=str(exc)[:300],
                    fix="`archiverd reindex` rebuilds it; search reads this segment's vectors exactly meanwhile")
    try:
        try:
            with Catalog(collection_dir) as catalog:
                catalog.add(rel, idx, index.path_for(video))
        except StorageError:  # damaged, or kept under another digest scheme (encryption turned on)
            Catalog.rebuild_file(collection_dir)
    except (ArchiverdError, OSError, sqlite3.Error) as exc:
        log.warning("derived.catalog_failed", segment=rel, reason=str(exc)[:300],
                    fix="the next read brings the catalog up to date; `archiverd catalog rebuild` remakes it")


def sidecar_problem(video: Path, idx: dict[str, Any]) -> str | None:
    """Why the sidecar of a segment (its original video, even when a repaired copy is read) is not
    usable, or None."""
    try:
        loaded = sidecar.load(sidecar.path_for(video), idx["content_sha256"], idx["documents"],
                              encryption.keys_of(idx, str(video)))
    except SegmentError as exc:
        return exc.message
    missing = sorted(f for f in idx.get("vector_fields") or [] if loaded.covers(f) and f not in loaded.fields)
    return f"vector sidecar lacks the fields {', '.join(missing)}" if missing else None


def rebuild_sidecar(video: Path) -> Path:
    """Rebuild a segment's sidecar from its documents (bit for bit what the seal wrote). Raises
    SegmentError when a document cannot be read; nothing is written then."""
    reader = SegmentReader(video)
    builder = sidecar.SidecarBuilder()
    for n, raw in enumerate(reader):
        builder.add(n, raw)
    path = sidecar.path_for(reader.requested)  # a repaired copy shares its original's sidecar
    data = builder.build(reader.index["documents"], reader.index["content_sha256"])
    keys = encryption.keys_of(reader.index, str(video))
    durable.replace_synced(path, encryption.seal_sidecar(keys, data) if keys is not None else data)
    return path


@dataclass
class CatalogCheck:
    """How the catalog of one collection directory compares with its indexes."""

    problems: list[str] = field(default_factory=list)
    rebuilt: bool = False


def check_catalog(collection_dir: Path, *, repair: bool = False) -> CatalogCheck:
    """Compare the catalog with the indexes on disk (segments, document counts, `_id`s); with
    `repair`, rebuild it when they differ. A missing catalog is not a problem (it is made on use)."""
    result = CatalogCheck()
    if not (collection_dir / Catalog.FILE).exists():
        return result
    try:
        with Catalog(collection_dir, writable=False) as catalog:
            result.problems = catalog.differences()
    except ArchiverdError as exc:
        result.problems = [str(exc)]
    if result.problems and repair:
        try:
            Catalog.rebuild_file(collection_dir)
            result.rebuilt = True
        except (ArchiverdError, sqlite3.Error) as exc:
            result.problems.append(f"rebuild failed: {exc}")
    return result
