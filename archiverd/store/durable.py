"""All fsync and no-replace file operations in one place.

A file is durable once its bytes and then its directory entry are synced; a sealed file is never
overwritten (publish() fails if the name exists, like Litestream's exclusive create).
"""
from __future__ import annotations

import errno
import os
from pathlib import Path

from ..errors import StorageError


def _storage_error(action: str, path: Path, exc: OSError) -> StorageError:
    reason = {errno.ENOSPC: "no space left on device", errno.EROFS: "read-only file system",
              errno.EACCES: "permission denied", errno.EDQUOT: "disk quota exceeded"}.get(
        exc.errno or 0, exc.strerror or str(exc))
    return StorageError(f"cannot {action} {path}: {reason}")


def fsync_file(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise _storage_error("sync", path, exc) from None


def fsync_dir(path: Path) -> None:
    fsync_file(path)


def write_synced(path: Path, data: bytes) -> None:
    """Create `path` (must not exist) with `data`, synced to disk."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise _storage_error("write", path, exc) from None


def publish(tmp: Path, final: Path) -> None:
    """Give the synced file `tmp` its final name without ever replacing an existing file."""
    try:
        os.link(tmp, final)
        os.unlink(tmp)
    except FileExistsError:
        raise StorageError(f"refusing to overwrite sealed file {final}") from None
    except OSError as exc:
        raise _storage_error("publish", final, exc) from None


def ensure_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _storage_error("create directory", path, exc) from None


def replace_synced(path: Path, data: bytes) -> None:
    """Atomically replace `path` with `data` (temp -> fsync -> rename -> fsync dir): for small
    mutable state, never for sealed files."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    write_synced(tmp, data)
    try:
        os.replace(tmp, path)
    except OSError as exc:
        raise _storage_error("replace", path, exc) from None
    fsync_dir(path.parent)
