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
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from . import envelope, keyring
from .. import faults
from ..errors import ArchiverdError, CryptoError


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


def rotate(key_file: Path, archive_root: Path, progress: Callable[[Path, str], None] | None = None) -> RotationReport:
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
            try:
                wrapped = envelope.read_file(path)
                if wrapped["key_id"] == ring.active.id:
                    report.current += 1
                    continue
                data_key = envelope.unwrap(ring, wrapped, str(path))
                fresh = envelope.wrap(ring.active, data_key, wrapped["segment_id"])
                if envelope.unwrap(ring, fresh, str(path)) != data_key:
                    raise CryptoError("the re-wrapped key does not open to the same data key", str(path))
                envelope.replace(path, fresh)
                faults.hit("rotate:rewrapped")
                report.rewrapped += 1
                if progress:
                    progress(path, "re-wrapped")
            except ArchiverdError as exc:
                report.failed.append(str(exc))
                if progress:
                    progress(path, f"failed: {exc}")
        if report.finished:
            keyring.replace_states(ring, keyring.PREVIOUS, keyring.RETIRED, retired_at=keyring.now_iso())
            ring.rotation = None
            keyring.save(ring)
        return report
