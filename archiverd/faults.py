"""Named points in the write and delete sequence, where the crash tests strike.

Production code calls `hit("seal:verified")` at each step boundary; it returns at once unless a
test installed a handler (`installed(...)`) or started the process with `_ARCHIVERD_CRASH_AT`:

    _ARCHIVERD_CRASH_AT="seal:verified"        SIGKILL this process at the first such point
    _ARCHIVERD_CRASH_AT="read@57"              ... at the 57th document read
    _ARCHIVERD_CRASH_AT="state-save:*resume_token*"   fnmatch patterns select points
    _ARCHIVERD_CRASH_AT="seal:verified@1:STOP"  SIGSTOP instead (a paused instance; SIGCONT resumes it)

Points (docs/RELIABILITY.md lists which runs covered each): read, appended, seal:video-written,
seal:video-synced, seal:verified, seal:index-written, seal:video-published, seal:index-published,
seal:video-uploaded, seal:key-uploaded, seal:uploaded (the seal into an object store: each object
confirmed by the store; seal:uploaded is the index, the commit point), commit, delete-txn (inside an
open delete transaction), delete-batch, state-save:<keys>, day:taken (a day's lease was just taken,
before anything of the day is touched); prune:audited
(a segment's removal is audited, nothing removed yet), prune:uncommitted (its index is gone),
erase:rewritten (the replacement segment is committed, the old one untouched), erase:audited,
erase:uncommitted (as prune's), rotate:key-added (the new master key is saved), rotate:rewrapped (after each segment key file);
worker:encode, worker:decode (in a worker process of format/workers.py, before each task).
"""
from __future__ import annotations

import fnmatch
import os
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Handler = Callable[[str], None]
_handler: Handler | None = None


def hit(point: str) -> None:
    if _handler is not None:
        _handler(point)


@contextmanager
def installed(handler: Handler) -> Iterator[None]:
    """Run `handler(point)` at every point inside the block (in-process tests)."""
    global _handler
    previous, _handler = _handler, handler
    try:
        yield
    finally:
        _handler = previous


def _from_environment() -> Handler | None:
    spec = os.environ.get("_ARCHIVERD_CRASH_AT")
    if not spec:
        return None
    signum = signal.SIGSTOP if spec.endswith(":STOP") else signal.SIGKILL
    spec = spec.removesuffix(":STOP")
    pattern, _, nth = spec.rpartition("@") if "@" in spec else (spec, "", "1")
    target, seen = int(nth), 0

    def crash(point: str) -> None:
        nonlocal seen
        if fnmatch.fnmatchcase(point, pattern):
            seen += 1
            if seen == target:
                os.kill(os.getpid(), signum)

    return crash


_handler = _from_environment()
