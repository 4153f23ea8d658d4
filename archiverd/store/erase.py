"""Erasing documents (`archiverd erase`): the right to erasure, without breaking any other seal.

Every segment holding a copy of a document to erase is **rewritten without it**: a new segment in
the same day directory (next part number), sealed and verified as the daemon seals (its index
records `rewritten_from`: the old video's name, SHA-256 and creation time, which it keeps so that
the newest-copy rule does not change), then the old segment's files go the way prune removes them
(store/retention.remove_segment: audit record first, index first). Every other document of the
segment keeps its exact bytes, its date and indexed fields.

Why rewrite, not crypto-shredding (a key per document, destroyed to erase it): it works the same
for plain and encrypted archives, leaves no ciphertext behind to depend on a key staying destroyed,
and costs only at erase time -- re-encoding one day segment (seconds per thousand documents),
where per-document keys would cost every document a wrapped key and every read an unwrap. Erase is
rare; reads are not.

What is left of an erased document: nothing archiverd wrote -- not the video, parity, index,
sidecar or key file (all rewritten or removed), not the catalog (rows deleted with SQLite's
secure_delete, which overwrites them), not temporary files (the seal's temporary file is anonymous).
The audit log records a keyed (or, without encryption, plain) digest of the `_id`, the reason and
who asked; never the content. Copies outside archiverd (backups of the disk, MongoDB itself if the
document was restored) are the operator's to erase.

Crash windows: before the new segment is committed, nothing changed (its temporary file vanishes);
after, both the old and the new segment exist (every kept document twice, byte-identical; the
erased one still in the old): a rerun finds the new segment by its `rewritten_from` and only
removes the old one; during the removal, prune's windows apply (an orphan video that a rerun
removes).
"""
from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import audit, derived, durable, holds, objects, retention
from .. import faults
from ..config import Config
from ..crypto import keyring
from ..errors import ConfigError, SegmentError
from ..format import identity, index
from ..format.documents import header_meta, id_entry
from ..format.reader import SegmentReader, SegmentScan
from ..format.writer import SegmentWriter
from .catalog import Catalog



@dataclass
class Rewrite:
    segment: str  # the original, relative to the collection directory
    documents: int
    erased: int
    replacement: str | None = None  # the new segment (None: every document of it was erased)
    reused: bool = False  # a crashed run had already written the replacement


@dataclass
class EraseResult:
    found: dict[str, int] = field(default_factory=dict)  # asked-for text -> copies found
    missing: list[str] = field(default_factory=list)
    rewrites: list[Rewrite] = field(default_factory=list)
    dry_run: bool = False

    @property
    def copies(self) -> int:
        return sum(self.found.values())


def erase(cfg: Config, wanted: list[tuple[str, list[Any]]], reason: str, *, pending: list[str],
          dry_run: bool = False, command: str = "archiverd erase") -> EraseResult:
    """Erase every archived copy of each `_id` in `wanted` ((text as given, the values it may mean:
    query.ids.parse_id)) from the collection's store (its archive directory or its object store;
    the audit log, holds, catalog and lock stay in the collection's local directory). Refuses,
    changing nothing, while a document is held, a segment holding one lies in a held day or is still journaled by the
    daemon, cannot be read completely, or a video has no index (it may hold one)."""
    reason = " ".join(reason.split())
    if not reason:
        raise ConfigError("--reason is required: the audit log records why documents were erased")
    directory = cfg.collection_dir
    store = objects.for_collection(cfg)
    if store.local and not directory.is_dir():
        raise ConfigError(f"no archive of {cfg.namespace} under {cfg.archive_dir}")
    ring = keyring.from_config(cfg)
    durable.ensure_dir(directory)
    lock = contextlib.nullcontext() if dry_run else durable.exclusive_lock(directory / holds.REMOVALS_LOCK)
    with lock:
        who, run = audit.who(command), uuid.uuid4().hex
        if not dry_run:
            _finish_interrupted(store, directory, who)
        orphans = store.orphans()
        if orphans and store.local:
            raise SegmentError(f"{len(orphans)} videos have no index (e.g. {orphans[0]}); they may hold a document "
                               "to erase: `archiverd reindex` them first")
        result, targets, by_segment = _plan(store, directory, wanted, ring)
        uncommitted = {video: _read_uncommitted(store, video) for video in orphans}
        for video, (idx, _) in uncommitted.items():
            _match(result, targets, by_segment, video, idx, wanted)
        result.dry_run = dry_run
        journaled = sorted(set(by_segment) & set(pending))
        if journaled:
            raise SegmentError(f"segment {journaled[0]} is still being archived (its deletes are journaled): run "
                               "`archiverd run --once` or let the daemon finish, then erase")
        hold_list = holds.Holds(directory).list()
        held = [text for text, key in targets.items() if holds.matching(hold_list, key, ring)]
        if held:
            raise ConfigError(f"{', '.join(held)} is under a legal hold (`archiverd hold list`): nothing was erased")
        for rel in sorted(by_segment):
            for hold in holds.days_holding(hold_list, rel):
                raise ConfigError(f"{rel} holds a copy to erase and is under {hold.describe()} (`archiverd hold "
                                  "list`): rewriting it would remove a held file; nothing was erased")
        scheme = audit.digest_scheme(ring)
        digests = sorted({audit.id_digest(key, scheme, ring) for key in targets.values()})
        for rel in sorted(by_segment):
            idx, documents = uncommitted.get(rel) or _committed(store.reader(rel))
            result.rewrites.append(_rewrite(store, directory, rel, idx, documents, set(targets.values()), dry_run,
                                            ring, run, who, {"ids": digests, "reason": reason}))
        if not dry_run:
            with _catalog(store, directory):
                pass  # the catalog drops the old segments' rows now (secure_delete overwrites them)
    return result


def _catalog(store: objects.Store, directory: Path) -> Catalog:
    """The collection's catalog (kept in `directory` for an object store too), brought up to date."""
    return Catalog.for_reading(directory, None if store.local else store)


def _plan(store: objects.Store, directory: Path, wanted: list[tuple[str, list[Any]]], ring: keyring.Keyring | None) \
        -> tuple[EraseResult, dict[str, str], dict[str, set[int]]]:
    result = EraseResult()
    targets: dict[str, str] = {}  # text -> identity key
    by_segment: dict[str, set[int]] = {}
    with _catalog(store, directory) as catalog:
        if catalog.locked:
            raise ConfigError(f"{len(catalog.locked)} segments are encrypted and the key is not at hand: set "
                              "ARCHIVERD_ENCRYPTION_KEY_FILE (an erase must see every segment)")
        catalog.refuse_partial()  # a segment whose index does not load may hold a copy
        for text, values in wanted:
            for value in values:
                found = catalog.by_id(value)
                if found:
                    targets[text] = identity.key(value)
                    result.found[text] = len(found)
                    for where in found:
                        by_segment.setdefault(where.segment, set()).add(where.n)
                    break
            else:
                result.missing.append(text)
    return result, targets, by_segment


def _match(result: EraseResult, targets: dict[str, str], by_segment: dict[str, set[int]], video: str,
           idx: dict[str, Any], wanted: list[tuple[str, list[Any]]]) -> None:
    """Add the copies an uncommitted video holds of the documents to erase."""
    held = {index.id_key(e["_id"]): n for n, e in enumerate(idx["docs"]) if "_id" in e}
    for text, values in wanted:
        keys = [targets[text]] if text in targets else [identity.key(v) for v in values]
        for key in keys:
            if key in held:
                targets[text] = key
                result.found[text] = result.found.get(text, 0) + 1
                by_segment.setdefault(video, set()).add(held[key])
                if text in result.missing:
                    result.missing.remove(text)
                break


def _committed(reader: SegmentReader) -> tuple[dict[str, Any], Callable[[], list[bytes]]]:
    """A committed segment's index, and its documents (each verified; SegmentError if one is lost)."""
    return reader.index, lambda: list(reader)


def _read_uncommitted(store: objects.Store, video: str) -> tuple[dict[str, Any], Callable[[], list[bytes]]]:
    """A video an object store holds without its index: uploaded by a seal that never committed it
    (the daemon crashed, or an erase did, between the video's upload and the index's). Nothing was
    deleted against it, but it may hold a copy of a document to erase, so it is read completely
    from the video alone (every block checked by its digest, the content digest at the end) and
    described as its index would (the header's settings, each document's `_id`, date and indexed
    fields); SegmentError, and nothing is erased, if it cannot be read completely. Its documents
    are read again only if it is rewritten."""
    where = store.where(video)

    def scan(entries: list[dict[str, Any]] | None = None) -> tuple[SegmentScan, list[bytes]]:
        docs = []
        with store.open(video) as source:
            reading = SegmentScan(source, where, None)
            for _, _, raw in reading.documents():
                if entries is None:
                    docs.append(raw)
                else:
                    entries.append(id_entry(raw) | header_meta(raw, reading.header))
        report = reading.report
        if reading.end is None or report.lost or report.lost_blocks or reading.content_sha256 is None:
            raise SegmentError(f"uploaded without its index and not completely readable ({report.status}): it may "
                               "hold a document to erase, so nothing was erased", where)
        return reading, docs

    entries: list[dict[str, Any]] = []
    header = scan(entries)[0].header
    idx = {"documents": len(entries), "docs": entries, "created_at": header.get("created_at"),
           "source": header.get("source"), "compression": header.get("compression"), "parity": header.get("parity")}
    return idx, lambda: scan()[1]


def _finish_interrupted(store: objects.Store, directory: Path, who: dict[str, Any]) -> None:
    """Remove what an interrupted erase had begun to remove (audited `begin`, no `end`): its
    replacement was committed before the begin record, so only the old segment's files are left."""
    for rel, run in sorted(retention.unfinished(directory, "erase").items()):
        retention.remove_segment(store, directory, rel, "erase", who, run=run, finishing=True)


def _replacement_of(store: objects.Store, video: str, sha256: str | None) -> str | None:
    """A committed segment beside `video` that a crashed erase already wrote to replace it."""
    day, _, file = video.rpartition("/")
    for other in store.segments(f"{day}/" if day else ""):
        if other == video:
            continue
        try:
            done = store.load_index(other).get("rewritten_from") or {}
        except SegmentError:
            continue
        if done.get("file") == file and done.get("sha256") == sha256:
            return other
    return None


def _rewrite(store: objects.Store, directory: Path, rel: str, idx: dict[str, Any], documents: Callable[[], list[bytes]],
             keys: set[str], dry_run: bool, ring: keyring.Keyring | None, run: str, who: dict[str, Any],
             why: dict[str, Any]) -> Rewrite:
    """Rewrite the segment (or uncommitted video) `rel` without the documents whose identity keys
    are `keys`, then remove its objects."""
    erased = {n for n, e in enumerate(idx["docs"]) if "_id" in e and index.id_key(e["_id"]) in keys}
    item = Rewrite(rel, idx["documents"], len(erased))
    if dry_run:
        return item
    original_sha = store.sha256(rel)
    replacement = _replacement_of(store, rel, original_sha)
    if replacement is not None:
        item.reused = True
    elif len(erased) < idx["documents"]:
        docs = documents()  # every document, verified; SegmentError if one cannot be read
        replacement = store.next_part(rel.rpartition("/")[0])
        staged = directory / replacement  # the new segment itself locally; its staging file for an object store
        durable.ensure_dir(staged.parent)
        with SegmentWriter(staged, source=idx.get("source"),
                           block_bytes=(idx.get("compression") or {}).get("block_bytes") or 4 << 20,
                           redundancy=(idx.get("parity") or {}).get("percent") or 0.0,
                           encryption=ring.active if ring is not None else None,  # never rewritten in clear
                           created_at=idx["created_at"],
                           rewritten_from={"file": rel.rpartition("/")[2], "sha256": original_sha, "why": "erase",
                                           "created_at": idx["created_at"]}) as writer:
            for n, raw in enumerate(docs):
                if n not in erased:
                    entry = idx["docs"][n]
                    writer.append(raw, {k: entry[k] for k in ("date", "fields") if k in entry})
            sealed = writer.seal(upload=objects.uploader(store, replacement))
            derived.after_commit(store, replacement, sealed, writer)
        faults.hit("erase:rewritten")
    item.replacement = replacement
    retention.remove_segment(store, directory, rel, "erase", who, run=run, documents=idx["documents"],
                             erased=len(erased), replacement=item.replacement, **why)
    return item
