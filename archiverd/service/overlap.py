"""MongoDB I/O beside the CPU stages: `restore` inserts behind the decoder.

pymongo releases the GIL while it waits on its socket, so one insert thread runs beside the main
thread's decoding and the worker processes' FFV1 and QR work (format/workers.py), and the server
works on the batch meanwhile. Bounded: one batch in flight while the caller fills the next. An error
in the insert thread is raised in the caller, at its next step.

(Reading ahead of the encoder the same way was tried and measured: with 15 MB documents it cost
about 40 MB of peak RSS -- the allocator's per-thread arenas -- and broke the 300 MB bound of
issue #8, so `run` reads in its own thread.)
"""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")


class Behind(Generic[T]):
    """`fn(batch)` on a thread, one batch at a time: `put` waits for the previous batch (raising
    what it raised), then hands over this one; `finish` waits for the last."""

    def __init__(self, fn: Callable[[T], None]) -> None:
        self._fn = fn
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="behind")
        self._pending: Future[None] | None = None

    def put(self, batch: T) -> None:
        self.wait()
        self._pending = self._pool.submit(self._fn, batch)

    def wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def finish(self) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> Behind[T]:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.finish()
        else:  # the caller failed: let the batch in flight end, keep the caller's exception
            self._pool.shutdown(wait=True)
