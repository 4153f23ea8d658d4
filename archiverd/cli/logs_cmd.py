"""`archiverd logs`: the last lines of the daemon's log, since a time, and following it.

With a log file configured (`log_file`) it reads that file, following it across logrotate's
renames and copytruncate. Without one the daemon logs to journald (the systemd default), and this
command runs `journalctl -u archiverd` with the same options.
"""
from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import sys
from pathlib import Path
from typing import IO, Iterator

import click

from ..config import Config, parse_duration
from ..errors import ConfigError, StorageError
from ._common import with_config

_TS = re.compile(r'(?:^|\s|<\d>)ts=(\S+)|"ts":\s*"([^"]+)"')
_BLOCK = 1 << 16
DEFAULT_LINES = 50
ALL = -1
MAX_LINES = 10**9  # journalctl refuses larger counts with an error of its own


def parse_since(text: str, now: dt.datetime | None = None) -> dt.datetime:
    """'2h', '30m', '1d' (ago), or a date/time; a time without a zone is UTC, like the log's."""
    now = now or dt.datetime.now(dt.timezone.utc)
    try:
        return now - parse_duration(text)
    except ConfigError:
        pass
    try:
        when = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--since {text!r} is neither a duration (2h, 30m, 1d) nor a time "
                          "(2026-11-25, 2026-11-25T10:00:00Z)") from None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def line_time(line: str) -> dt.datetime | None:
    m = _TS.search(line)
    if not m:
        return None
    try:
        when = dt.datetime.fromisoformat((m.group(1) or m.group(2)).strip('"').replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def _last_lines(f: IO[bytes], n: int) -> int:
    """The offset where the last `n` lines of `f` start, reading backwards from the end."""
    end = f.seek(0, os.SEEK_END)
    pos, newlines = end, 0
    if n <= 0:
        return end
    while pos > 0:
        step = min(_BLOCK, pos)
        pos -= step
        f.seek(pos)
        block = f.read(step)
        if pos + step == end and block.endswith(b"\n"):
            block = block[:-1]  # the final newline ends the last line; it does not start one
        for i in range(len(block) - 1, -1, -1):
            if block[i] == 0x0A:
                newlines += 1
                if newlines == n:
                    return pos + i + 1
    return 0


def _since_offset(f: IO[bytes], since: dt.datetime) -> int:
    """The offset of the first line at or after `since`. The file is in time order, so this is a
    bisection over byte offsets: a large log costs a few dozen reads, not a scan."""
    def line_start(pos: int) -> int:
        if pos == 0:
            return 0
        f.seek(pos - 1)
        f.readline()
        return f.tell()

    def reached(pos: int) -> bool:  # does the first timestamped line from `pos` on reach `since`?
        f.seek(line_start(pos))
        for raw in iter(f.readline, b""):
            when = line_time(raw.decode("utf-8", "replace"))
            if when is not None:
                return when >= since
        return True

    low, high = 0, f.seek(0, os.SEEK_END)
    while low < high:
        mid = (low + high) // 2
        if reached(mid):
            high = mid
        else:
            low = mid + 1
    return line_start(low)


def _open(path: Path) -> IO[bytes]:
    try:
        if path.is_dir():
            raise StorageError(f"log file {path} is a directory")
        return open(path, "rb")
    except FileNotFoundError:
        raise StorageError(f"log file {path} does not exist (yet): has the daemon run with this log_file?") from None
    except PermissionError:
        raise StorageError(f"cannot read log file {path}: permission denied (it is private to the archiverd "
                           "user: use sudo -u archiverd, or group_access)") from None


def _emit(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def _follow(path: Path, f: IO[bytes]) -> None:
    """Print what is appended to `path`; after a rename (logrotate) finish the old file, then read
    the new one from its start; after a truncation (copytruncate) read again from the start."""
    from watchfiles import watch

    pending = seen = b""
    inode = os.fstat(f.fileno()).st_ino
    for _ in _changes(watch, path):
        if _truncated(f, seen, f.tell()):
            f.seek(0)
            pending = seen = b""
        while True:
            start = f.tell()
            chunk = f.read(_BLOCK)
            if not chunk:
                break
            if _truncated(f, seen, start):  # while this was read: the chunk is the new file's middle
                f.seek(0)
                pending = seen = b""
                continue
            seen = (seen + chunk)[-_SEEN:]
            pending += chunk
            *lines, pending = pending.split(b"\n")
            if lines:
                _emit(b"\n".join(lines) + b"\n")
        try:
            st = path.stat()
        except FileNotFoundError:
            continue  # moved away; the new file has not been created yet
        if st.st_ino != inode:
            f.close()
            f = open(path, "rb")
            inode, pending, seen = st.st_ino, b"", b""


_SEEN = 64  # bytes remembered before the read position, to recognise a truncated file that grew back


def _truncated(f: IO[bytes], seen: bytes, end: int) -> bool:
    """Was the file truncated since it was read up to `end` (copytruncate)? It is shorter than
    that now -- or it has grown past it again, and the bytes just before that position are no
    longer the ones read there (looking at the size alone would print the new file's middle as if
    appended)."""
    if os.fstat(f.fileno()).st_size < end:
        return True
    return bool(seen) and os.pread(f.fileno(), len(seen), end - len(seen)) != seen


def _changes(watch, path: Path) -> Iterator[object]:  # type: ignore[no-untyped-def]
    """Wake on any change in the log's directory, and at least once a second (a missed event, or a
    file system that reports none, costs a second, not a line)."""
    yield None
    yield from watch(path.parent, recursive=False, yield_on_timeout=True, rust_timeout=1000, debounce=300)


def _journalctl(lines: int, since: dt.datetime | None, follow: bool, unit: str) -> int:
    exe = shutil.which("journalctl")
    if exe is None:
        raise ConfigError("no log file configured (ARCHIVERD_LOG_FILE) and no journalctl here: nothing to read")
    argv = [exe, "-u", unit, "--no-pager", "-o", "cat"]
    argv += ["-n", "all" if lines == ALL else str(lines)]
    if since is not None:
        argv += ["--since", since.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")]
    if follow:
        argv.append("-f")
    # journalctl -o cat prints nothing at all for a unit with no entries: say where we looked
    click.echo(f"archiverd: no ARCHIVERD_LOG_FILE: reading journalctl -u {unit} (a command run by hand logs to "
               "its own stderr)", err=True)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(exe, argv)
    return 0  # pragma: no cover - execv does not return


def _count(_ctx: click.Context, _param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    if value == "all":
        return ALL
    if not value.isdigit() or int(value) > MAX_LINES:
        raise click.BadParameter(f"{value!r} is not a number of lines up to {MAX_LINES:,} (or 'all')")
    return int(value)


@click.command("logs")
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines as they are written (follows logrotate).")
@click.option("-n", "--lines", callback=_count, metavar="N",
              help=f"How many of the last lines to print first, or 'all' [default: {DEFAULT_LINES}, or all lines "
                   "with --since].")
@click.option("--since", help="Only lines at or after this: a duration ago (2h, 30m, 1d) or a time (UTC unless "
                              "it says otherwise): 2026-11-25T10:00:00Z.")
@click.option("--unit", default="archiverd", show_default=True,
              help="The systemd unit whose journal is read when no log file is configured.")
@with_config(database=False)
def command(cfg: Config, follow: bool, lines: int | None, since: str | None, unit: str) -> int:
    """Print the daemon's log: its log file (ARCHIVERD_LOG_FILE) or, without one, its journal.

    Lines keep their structured fields (logfmt or JSON, as configured).

    \b
    Examples:
      archiverd logs -n 100
      archiverd logs --since 2h
      archiverd logs -f --config /etc/archiverd/archiverd.env
    """
    start = parse_since(since) if since else None
    if lines is None:
        lines = ALL if start is not None else DEFAULT_LINES
    if cfg.log_file is None:
        return _journalctl(lines, start, follow, unit)
    f = _open(cfg.log_file)
    offset = _since_offset(f, start) if start is not None else 0
    if lines != ALL:
        offset = max(offset, _last_lines(f, lines))
    f.seek(offset)
    while chunk := f.read(_BLOCK):
        _emit(chunk)
    if follow:
        try:
            _follow(cfg.log_file, f)
        except KeyboardInterrupt:
            pass
    return 0
