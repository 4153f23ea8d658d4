"""`archiverd key rotate`: a new master key, and every segment key file re-wrapped under it, without
touching a video.

The procedure, in this order, under the key file's lock:

1. add a new key as `active`, the old active key becomes `previous`, and a `rotation` marker names
   both; save the key file (atomic replace, fsync) -- before anything is wrapped under the new key;
2. for every segment key file under the archive directory (every database and collection: one key
   file serves them all) that names another key: unwrap, wrap the same data key under the new key,
   check it opens, replace the file atomically (temp -> fsync -> rename -> fsync dir);
3. only when every file was re-wrapped: `previous` keys become `retired`, the marker goes, save.

Crash windows: before 1 is durable, nothing changed. Between 1 and 3 some key files name the new key
and some the old; both keys are in the key file, so every segment opens; the marker makes the next
`key rotate` resume (same new key, no third one) and `status` warn. A re-wrapped file is either the
old or the new one (atomic replace). After 3 the old key stays, retired: the video headers keep their
copy of each data key under the key that sealed them, so no key is ever deleted.

A key file that cannot be re-wrapped (damaged, or wrapped by a key this key file lacks) is reported
and left as it is; the rotation stays unfinished until a rerun re-wraps everything.

In an object store (ARCHIVERD_ARCHIVE_URL) nothing is ever overwritten, so step 2 does not replace
a key file: it adds `part-NNNN.key.<new key id>.json` beside it (envelope.rotated_name), the same
data key wrapped under the new key, uploaded with `put_new` (conditional, confirmed by its
SHA-256). A segment counts as re-wrapped when its seal's key file or such a copy names the new key
and opens. Readers try the seal's key file first and list the rotated copies only when it does not
open under the keyring at hand (store/objects.Store.key_copies): every copy holds the same data
key, so which one serves does not matter. Crash windows: an upload either completed (the copy is
there; a rerun finds it and checks that it opens) or did not (no object; a rerun uploads it); a
copy another run uploaded first (ObjectExists) is checked the same way. Old copies stay until
`prune` or `erase` removes the whole segment: like the header copy, they open only with the old
key, which the key file keeps anyway.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import envelope, keyring
from .. import faults
from ..errors import ArchiverdError, CryptoError
from ..store import objects


@dataclass
class RotationReport:
    new_key: str
    resumed: bool
    rewrapped: int = 0
    current: int = 0  # already under the new key
    failed: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return not self.failed


def key_files(archive_root: Path) -> list[Path]:
    """Every segment key file under the archive directory."""
    return sorted(archive_root.rglob("part-*" + envelope.SUFFIX)) if archive_root.is_dir() else []


def rotate(key_file: Path, archive_root: Path, progress: Callable[[str, str], None] | None = None,
           store: objects.Store | None = None) -> RotationReport:
    """Rotate to a new master key and re-wrap every segment key file under `archive_root` and, with
    `store` (the archive's object store, every collection in it), every key object there."""
    with keyring.locked(key_file):
        ring = keyring.load(key_file)
        resumed = ring.rotation is not None
        if not resumed:
            old = ring.active
            new = keyring.MasterKey.generate()
            keyring.replace_states(ring, keyring.ACTIVE, keyring.PREVIOUS)
            ring.keys.append(new)
            ring.rotation = {"from": old.id, "to": new.id, "started_at": keyring.now_iso()}
            keyring.save(ring)
        faults.hit("rotate:key-added")
        report = RotationReport(ring.active.id, resumed)
        for path in key_files(archive_root):
            _rewrap(ring, report, str(path), progress, lambda path=path: _rewrap_file(ring, path))
        if store is not None:
            names = set(store.names())
            for name in sorted(n for n in names if n.endswith(envelope.SUFFIX)):
                _rewrap(ring, report, store.where(name), progress,
                        lambda name=name: _rewrap_object(ring, store, name, names))
        if report.finished:
            keyring.replace_states(ring, keyring.PREVIOUS, keyring.RETIRED, retired_at=keyring.now_iso())
            ring.rotation = None
            keyring.save(ring)
        return report


def _rewrap(ring: keyring.Keyring, report: RotationReport, where: str, progress: Callable[[str, str], None] | None,
            one: Callable[[], bool]) -> None:
    """Count one key file's re-wrap (`one` returns whether it was re-wrapped now, not already)."""
    try:
        if one():
            faults.hit("rotate:rewrapped")
            report.rewrapped += 1
            if progress:
                progress(where, "re-wrapped")
        else:
            report.current += 1
    except ArchiverdError as exc:
        report.failed.append(str(exc))
        if progress:
            progress(where, f"failed: {exc}")


def _fresh(ring: keyring.Keyring, data_key: bytes, segment_id: str, where: str) -> dict[str, str]:
    """The data key wrapped under the active key, checked to open to the same data key."""
    fresh = envelope.wrap(ring.active, data_key, segment_id)
    if envelope.unwrap(ring, fresh, where) != data_key:
        raise CryptoError("the re-wrapped key does not open to the same data key", where)
    return fresh


def _rewrap_file(ring: keyring.Keyring, path: Path) -> bool:
    """A key file in the archive directory: replaced atomically by the re-wrapped one."""
    wrapped = envelope.read_file(path)
    if wrapped["key_id"] == ring.active.id:
        return False
    data_key = envelope.unwrap(ring, wrapped, str(path))
    envelope.replace(path, _fresh(ring, data_key, wrapped["segment_id"], str(path)))
    return True


def _rewrap_object(ring: keyring.Keyring, store: objects.Store, name: str, names: set[str]) -> bool:
    """A key object in a store: a copy under the active key is added beside it (never replaced)."""
    sealed = store.read_key_file(name)
    if sealed["key_id"] == ring.active.id:
        return False
    video = name.removesuffix(envelope.SUFFIX) + ".mkv"
    where = store.where(video)
    data_key = envelope.keys_for_segment(Path(where), ring, None, sealed["segment_id"], None, store.key_copies(video))
    target = envelope.rotated_name(name, ring.active.id)
    if target not in names:
        data = envelope.dumps(_fresh(ring, data_key, sealed["segment_id"], store.where(target)))
        try:
            store.put_new(target, data, hashlib.sha256(data).hexdigest())
            return True
        except objects.ObjectExists:  # another run uploaded it first: checked below like any copy found
            pass
    copy = store.read_key_file(target)
    if copy["segment_id"] != sealed["segment_id"] or envelope.unwrap(ring, copy, store.where(target)) != data_key:
        raise CryptoError("the rotated copy of this data key does not open to the same data key", store.where(target))
    return False
