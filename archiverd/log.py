"""Structured logging: one line per event, logfmt or JSON; exactly one copy of each line.

Call `event("segment.sealed", path=..., documents=...)`. Where lines go:
- a log file, when one is configured (`log_file`), created with mode 0600 (0640 with group_access)
  and reopened when logrotate moves it away;
- stderr, unless stderr is journald's stream (systemd sets $JOURNAL_STREAM) and a file is
  configured: under systemd without a file, journald is the one copy. On journald's stream each
  line carries its syslog priority (`<3>` ...), so `journalctl -p warning` works.
Every value passes through `redaction.redact` before it is written, so a URI or a driver error that
holds a password cannot reach a log, whatever the caller passed. Python warnings (pymongo warns
about URI options) become log lines too, redacted like the rest.
"""
from __future__ import annotations

import datetime as dt
import errno
import json
import logging
import logging.handlers
import os
import sys
from pathlib import Path
from typing import Any

from .errors import StorageError
from .redaction import redact

LOGGER = logging.getLogger("archiverd")
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}


def _clean(value: Any) -> Any:
    """`value` with every string redacted; anything that is not plain JSON becomes a redacted string."""
    if isinstance(value, str):
        return redact(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return redact(str(value))


def _logfmt_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    if text == "" or any(c in text for c in ' ="\\') or any(ord(c) < 32 for c in text):
        return json.dumps(text)
    return text


class _Formatter(logging.Formatter):
    def __init__(self, style: str, priority_prefix: bool = False) -> None:
        super().__init__()
        self.style_name = style
        self.priority_prefix = priority_prefix

    def format(self, record: logging.LogRecord) -> str:
        ts = dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds")
        fields: dict[str, Any] = {"ts": ts.replace("+00:00", "Z"), "level": record.levelname.lower()}
        if record.name == "py.warnings":  # "file:line: Category: message\n  source line"
            fields.update(event="python.warning", message=record.getMessage().strip().splitlines()[0])
        else:
            fields["event"] = record.getMessage()
            fields.update(getattr(record, "fields", {}))
        fields = _clean(fields)
        if self.style_name == "json":
            line = json.dumps(fields)
        else:
            line = " ".join(f"{k}={_logfmt_value(v)}" for k, v in fields.items())
        return f"<{_PRIORITY.get(record.levelno, 6)}>{line}" if self.priority_prefix else line


class _PrivateFileHandler(logging.handlers.WatchedFileHandler):
    """A WatchedFileHandler (reopens after logrotate moves the file) that creates its file with
    `mode` whatever the umask, and narrows an existing file's mode to it."""

    def __init__(self, path: Path, mode: int) -> None:
        self.file_mode = mode
        super().__init__(path, encoding="utf-8")

    def _open(self):  # type: ignore[no-untyped-def]  # signature of logging.FileHandler._open
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, self.file_mode)
        try:
            if os.fstat(fd).st_mode & 0o777 != self.file_mode:
                os.fchmod(fd, self.file_mode)
        except PermissionError:  # someone else's file: it keeps its mode
            pass
        return os.fdopen(fd, "a", encoding="utf-8")


def under_journald() -> bool:
    """True when stderr is connected to journald (systemd documents $JOURNAL_STREAM as dev:inode)."""
    stream = os.environ.get("JOURNAL_STREAM", "")
    try:
        st = os.fstat(sys.stderr.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return stream == f"{st.st_dev}:{st.st_ino}"


def setup(style: str = "logfmt", file: Path | None = None, level: int = logging.INFO, *,
          file_mode: int = 0o600) -> None:
    """(Re)configure the archiverd logger; safe to call more than once. A log file whose directory
    does not exist is an error (a typo must not go unnoticed), as is one that cannot be written."""
    for logger in (LOGGER, logging.getLogger("py.warnings")):
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
            handler.close()
    journald = under_journald()
    handlers: list[logging.Handler] = []
    if file is not None:
        handlers.append(_open_file(file, file_mode, style))
    if file is None or not journald:
        stderr = logging.StreamHandler(sys.stderr)
        stderr.setFormatter(_Formatter(style, priority_prefix=journald))
        handlers.append(stderr)
    logging.captureWarnings(True)
    for logger in (LOGGER, logging.getLogger("py.warnings")):
        for handler in handlers:
            logger.addHandler(handler)
        logger.setLevel(level)
        logger.propagate = False


def _open_file(file: Path, mode: int, style: str) -> logging.Handler:
    if not file.parent.is_dir():
        raise StorageError(f"log file {file}: directory {file.parent} does not exist (create it, or fix "
                           "ARCHIVERD_LOG_FILE)")
    if file.is_dir():
        raise StorageError(f"log file {file} is a directory; log_file must name a file")
    try:
        handler = _PrivateFileHandler(file, mode)
    except OSError as exc:
        reason = {errno.EACCES: "permission denied", errno.EROFS: "read-only file system",
                  errno.ENOSPC: "no space left on device"}.get(exc.errno or 0, exc.strerror or str(exc))
        raise StorageError(f"cannot open log file {file}: {reason}") from None
    handler.setFormatter(_Formatter(style))
    return handler


def event(name: str, level: int = logging.INFO, **fields: Any) -> None:
    LOGGER.log(level, name, extra={"fields": fields})


def warning(name: str, **fields: Any) -> None:
    event(name, logging.WARNING, **fields)


def error(name: str, **fields: Any) -> None:
    event(name, logging.ERROR, **fields)
