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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import audit, derived, durable, holds, layout, retention
from .. import faults
from ..config import Config
from ..crypto import keyring
from ..errors import ConfigError, SegmentError
from ..format import identity, index
from ..format.reader import LocalFile, SegmentReader
from ..format.writer import SegmentWriter, file_sha256
from .catalog import Catalog

LOCK = ".archiverd-prune.lock"  # one removal at a time: prune and erase share it


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
    query.ids.parse_id)). Refuses, changing nothing, while a document is held, a segment holding one
    is still journaled by the daemon, cannot be read completely, or a video has no index (it may
    hold one)."""
    reason = " ".join(reason.split())
    if not reason:
        raise ConfigError("--reason is required: the audit log records why documents were erased")
    directory = cfg.collection_dir
    if not directory.is_dir():
        raise ConfigError(f"no archive of {cfg.namespace} under {cfg.archive_dir}")
    ring = keyring.from_config(cfg)
    lock = contextlib.nullcontext() if dry_run else durable.exclusive_lock(directory / LOCK)
    with lock:
        who, run = audit.who(command), uuid.uuid4().hex
        if not dry_run:
            _finish_interrupted(directory, who)
        orphans = layout.orphans(directory)
        if orphans:
            raise SegmentError(f"{len(orphans)} videos have no index (e.g. {orphans[0].relative_to(directory)}); "
                               "they may hold a document to erase: `archiverd reindex` them first")
        result, targets, by_segment = _plan(directory, wanted, ring)
        result.dry_run = dry_run
        journaled = sorted(set(by_segment) & set(pending))
        if journaled:
            raise SegmentError(f"segment {journaled[0]} is still being archived (its deletes are journaled): run "
                               "`archiverd run --once` or let the daemon finish, then erase")
        held = [text for text, key in targets.items() if holds.Holds(directory).holding(key, ring)]
        if held:
            raise ConfigError(f"{', '.join(held)} is under a legal hold (`archiverd hold list`): nothing was erased")
        scheme = audit.digest_scheme(ring)
        digests = sorted({audit.id_digest(key, scheme, ring) for key in targets.values()})
        for rel in sorted(by_segment):
            result.rewrites.append(_rewrite(directory, rel, set(targets.values()), dry_run, ring, run, who,
                                            {"ids": digests, "reason": reason}))
        if not dry_run:
            with Catalog.for_reading(directory):
                pass  # the catalog drops the old segments' rows now (secure_delete overwrites them)
    return result


def _plan(directory: Path, wanted: list[tuple[str, list[Any]]], ring: keyring.Keyring | None) \
        -> tuple[EraseResult, dict[str, str], dict[str, set[int]]]:
    result = EraseResult()
    targets: dict[str, str] = {}  # text -> identity key
    by_segment: dict[str, set[int]] = {}
    with Catalog.for_reading(directory) as catalog:
        if catalog.locked:
            raise ConfigError(f"{len(catalog.locked)} segments are encrypted and the key is not at hand: set "
                              "ARCHIVERD_ENCRYPTION_KEY_FILE (an erase must see every segment)")
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


def _finish_interrupted(directory: Path, who: dict[str, Any]) -> None:
    """Remove what an interrupted erase had begun to remove (audited `begin`, no `end`): its
    replacement was committed before the begin record, so only the old segment's files are left."""
    for rel, run in sorted(retention.unfinished(directory, "erase").items()):
        retention.remove_segment(directory, directory / rel, "erase", who, run=run, finishing=True)


def _replacement_of(video: Path, sha256: str) -> Path | None:
    """A committed segment beside `video` that a crashed erase already wrote to replace it."""
    for other in layout.videos(video.parent):
        if other == video or not index.path_for(other).exists():
            continue
        try:
            done = index.load(index.path_for(other)).get("rewritten_from") or {}
        except SegmentError:
            continue
        if done.get("file") == video.name and done.get("sha256") == sha256:
            return other
    return None


def _rewrite(directory: Path, rel: str, keys: set[str], dry_run: bool, ring: keyring.Keyring | None, run: str,
             who: dict[str, Any], why: dict[str, Any]) -> Rewrite:
    video = directory / rel
    reader = SegmentReader(video)
    idx = reader.index
    erased = {n for n, e in enumerate(idx["docs"]) if "_id" in e and index.id_key(e["_id"]) in keys}
    item = Rewrite(rel, idx["documents"], len(erased))
    if dry_run:
        return item
    with LocalFile(video) as source:
        original_sha = file_sha256(source)
    replacement = _replacement_of(video, original_sha)
    if replacement is not None:
        item.reused = True
    elif len(erased) < idx["documents"]:
        docs = list(reader)  # every document, verified; SegmentError if one cannot be read
        replacement = layout.next_part(video.parent)
        with SegmentWriter(replacement, source=idx.get("source"),
                           block_bytes=(idx.get("compression") or {}).get("block_bytes") or 4 << 20,
                           redundancy=(idx.get("parity") or {}).get("percent") or 0.0,
                           encryption=ring.active if ring is not None else None,  # never rewritten in clear
                           created_at=idx["created_at"],
                           rewritten_from={"file": video.name, "sha256": original_sha, "why": "erase",
                                           "created_at": idx["created_at"]}) as writer:
            for n, raw in enumerate(docs):
                if n not in erased:
                    entry = idx["docs"][n]
                    writer.append(raw, {k: entry[k] for k in ("date", "fields") if k in entry})
            derived.after_seal(directory, replacement, writer.seal(), writer)
        faults.hit("erase:rewritten")
    item.replacement = replacement.relative_to(directory).as_posix() if replacement is not None else None
    retention.remove_segment(directory, video, "erase", who, run=run, documents=idx["documents"],
                             erased=len(erased), replacement=item.replacement, **why)
    return item
