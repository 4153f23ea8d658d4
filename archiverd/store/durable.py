"""Every fsync, private file mode and no-replace publish in one place, and the one bounded read of
a whole derived file (`read_bounded`).

A file is durable once its bytes and then its directory entry are synced. A sealed file is never
overwritten, truncated or renamed over: `TempFile.publish` links the temporary file's *inode* (the
bytes this process wrote and verified through its own descriptor) under the final name, and fails if
that name exists. The temporary file is anonymous where the file system allows it (O_TMPFILE): no
other process can open, truncate or replace it, and a crash leaves nothing behind. Elsewhere it is a
uniquely named dot-file created with O_EXCL, swept by recovery.

Archive, state and log files are 0600 and directories 0700 whatever the umask (`set_group_access`
opens them to the group: 0640 / 0750).
"""
from __future__ import annotations

import errno
import fcntl
import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import SegmentError, StorageError

TEMP_SUFFIX = ".tmp"
_modes = {"file": 0o600, "dir": 0o700}


def set_group_access(group: bool) -> None:
    """Let the owning group read archive files (0640 / 0750) instead of the private default."""
    _modes.update(file=0o640 if group else 0o600, dir=0o750 if group else 0o700)


def file_mode() -> int:
    return _modes["file"]


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


def ensure_dir(path: Path) -> None:
    """Create `path` and missing parents with the private directory mode."""
    missing = []
    probe = path
    while not probe.exists():
        missing.append(probe)
        if probe.parent == probe:
            break
        probe = probe.parent
    try:
        for directory in reversed(missing):
            try:
                directory.mkdir()
            except FileExistsError:
                continue
            os.chmod(directory, _modes["dir"])
    except OSError as exc:
        raise _storage_error("create directory", path, exc) from None
    if not path.is_dir():
        raise StorageError(f"{path} exists and is not a directory")


def read_bounded(path: Path, limit: int, what: str) -> bytes:
    """The whole of a file read as one record (an index, a vector sidecar, a segment key file),
    refused above `limit` bytes before anything is read: a damaged or hostile file cannot make a
    reader allocate what it likes. SegmentError (exit 4) says `what` is missing, larger than the
    bound, unreadable, not a regular file (a FIFO would block the reader for ever), or grew while
    it was read."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; it changes nothing for a regular file
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise SegmentError(f"{what} is not a regular file", str(path))
            size = st.st_size
            if size > limit:
                raise SegmentError(f"{what} is larger than {limit} bytes", str(path))
            data = f.read(size + 1)  # one byte more than its size: a file that grew since (or a /proc file) shows
    except FileNotFoundError:
        raise SegmentError(f"{what} is missing", str(path)) from None
    except OSError as exc:
        raise SegmentError(f"cannot read {what}: {exc.strerror or exc}", str(path)) from None
    if len(data) > size:
        raise SegmentError(f"{what} grew while it was read", str(path))
    return data


def write_new(path: Path, data: bytes, *, mode: int | None = None) -> None:
    """Create `path` (it must not exist) holding `data`, synced, private (or `mode`: key files are
    0600 whatever `set_group_access` says)."""
    temp = TempFile(path.parent, path.name, mode=mode)
    try:
        temp.write(data)
        temp.sync()
        temp.publish(path)
    finally:
        temp.close()


def replace_synced(path: Path, data: bytes, *, mode: int | None = None, keep_owner: bool = False) -> None:
    """Atomically replace `path` with `data` (temp -> fsync -> rename -> fsync dir): for small
    mutable state, never for sealed files. `mode` overrides the private file mode; `keep_owner`
    gives the new file the old one's owner and group where this process may (root rewriting the
    service's key file must not leave it unreadable to the service)."""
    tmp = path.with_name(f".{path.name}{TEMP_SUFFIX}")
    mode = _modes["file"] if mode is None else mode
    try:
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            os.fchmod(fd, mode)
            if keep_owner and path.exists():
                old = path.stat()
                if (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
                    try:
                        os.fchown(fd, old.st_uid, old.st_gid)
                    except PermissionError:
                        pass  # not root: the file is then ours, as it would be anyway
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except OSError as exc:
        raise _storage_error("replace", path, exc) from None
    fsync_dir(path.parent)


def append_synced(path: Path, data: bytes) -> None:
    """Append `data` to `path` (created private if missing) and sync it: for append-only logs.
    Appenders are serialised by a lock on the file; a last line torn by a crash is ended first, so
    the new record starts on a line of its own."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, _modes["file"])
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:
        raise _storage_error("append to", path, exc) from None
    if size == 0:
        fsync_dir(path.parent)


@contextmanager
def exclusive_lock(lock: Path, mode: int | None = None) -> Iterator[None]:
    """Hold an exclusive flock on the file `lock` (created if missing) for the block: for
    read-modify-write of small files (holds, the key file) and for one prune at a time."""
    mode = _modes["file"] if mode is None else mode
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_EXCL, mode)
        os.fchmod(fd, mode)  # the mode asked for, whatever the umask
    except FileExistsError:
        try:
            fd = os.open(lock, os.O_RDWR)
        except OSError as exc:
            raise _storage_error("open lock file", lock, exc) from None
    except OSError as exc:
        raise _storage_error("open lock file", lock, exc) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def unlink(path: Path) -> bool:
    """Remove one file (the caller syncs its directory); False if it was already gone. Only `prune`
    and `erase` remove published files, when a person or a configured retention asks."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise _storage_error("remove", path, exc) from None
    return True


def rmdir_if_empty(path: Path) -> bool:
    """Remove an empty directory and sync its parent; False if it holds anything (or is gone)."""
    try:
        path.rmdir()
    except (FileNotFoundError, OSError) as exc:
        if isinstance(exc, FileNotFoundError) or exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
            return False
        raise _storage_error("remove directory", path, exc) from None
    fsync_dir(path.parent)
    return True


def _write_all(fd: int, data: bytes, offset: int | None = None) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view) if offset is None else os.pwrite(fd, view, offset)
        view = view[n:]
        if offset is not None:
            offset += n


class TempFile:
    """A new, private, unpublished file in `directory`, written and read through one descriptor."""

    def __init__(self, directory: Path, name: str, mode: int | None = None) -> None:
        self.directory = Path(directory)
        self.name = name
        self.path: Path | None = None  # a named fallback file, None when anonymous
        self.size = 0
        mode = _modes["file"] if mode is None else mode
        try:
            try:
                self.fd = os.open(self.directory, os.O_TMPFILE | os.O_RDWR, mode)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                    raise
                self.path = self.directory / f".{name}.{secrets.token_hex(4)}{TEMP_SUFFIX}"
                self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, mode)
            os.fchmod(self.fd, mode)
        except OSError as exc:
            raise _storage_error("create a file in", self.directory, exc) from None

    def write(self, data: bytes, offset: int | None = None) -> None:
        """Append `data`, or write it at `offset`."""
        try:
            if offset is None:
                _write_all(self.fd, data)
                self.size += len(data)
            else:
                _write_all(self.fd, data, offset)
                self.size = max(self.size, offset + len(data))
        except OSError as exc:
            raise _storage_error("write", self.directory / self.name, exc) from None

    def read(self, offset: int, length: int) -> bytes:
        return os.pread(self.fd, max(0, min(length, self.size - offset)), offset)

    def sync(self) -> None:
        try:
            os.fsync(self.fd)
        except OSError as exc:
            raise _storage_error("sync", self.directory / self.name, exc) from None

    def publish(self, final: Path) -> None:
        """Give exactly this file's bytes the name `final`, never replacing an existing file."""
        try:
            # linkat(AT_SYMLINK_FOLLOW) through /proc links the inode this descriptor refers to,
            # whatever happened to any name; Python only calls linkat when given a directory fd
            dfd = os.open(final.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.link(f"/proc/self/fd/{self.fd}", final.name, dst_dir_fd=dfd, follow_symlinks=True)
            finally:
                os.close(dfd)
        except FileExistsError:
            raise StorageError(f"refusing to overwrite sealed file {final}") from None
        except OSError as exc:
            raise _storage_error("publish", final, exc) from None
        self._drop_name()

    def _drop_name(self) -> None:
        """Remove the temporary name, but only while it still names this file's inode."""
        if self.path is None:
            return
        try:
            if self.fd >= 0 and os.stat(self.path).st_ino == os.fstat(self.fd).st_ino:
                self.path.unlink()
        except FileNotFoundError:
            pass
        self.path = None

    def close(self) -> None:
        """Close; an unpublished named file is removed (an anonymous one simply vanishes)."""
        self._drop_name()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> TempFile:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
