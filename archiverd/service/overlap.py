"""MongoDB I/O beside the CPU stages: documents read ahead of the encoder, inserts behind the decoder.

pymongo releases the GIL while it waits on its socket, so one I/O thread runs beside the main
thread's block coding and the worker processes' QR and FFV1 work (format/workers.py), and the
server works on the next batch meanwhile. Both are bounded: reading ahead holds at most `max_bytes`
of documents not yet taken; inserting behind holds one batch in flight while the caller fills the
next. An error in the I/O thread is raised in the caller, at its next step.
"""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

T = TypeVar("T")
# about 50 documents of 85 KB: enough to cover the next batch's round trip; each one also carries
# the decoded form `Source.expired` made reading its `_id` (float arrays as Python lists: ~3x its bytes)
READ_AHEAD_BYTES = 4 << 20


def read_ahead(items: Iterable[T], size: Callable[[T], int], max_bytes: int = READ_AHEAD_BYTES) -> Iterator[T]:
    """`items` in order, produced on a thread up to `max_bytes` (by `size`) ahead of the consumer
    (always at least one item). Closing the iterator stops the thread and closes `items`."""
    cond = threading.Condition()
    buffered: deque[tuple[T, int]] = deque()
    held = 0
    done = closed = False
    error: BaseException | None = None

    def produce() -> None:
        nonlocal held, done, error
        source = iter(items)
        try:
            for item in source:
                n = size(item)
                with cond:
                    while held and held + n > max_bytes and not closed:
                        cond.wait()
                    if closed:
                        break
                    buffered.append((item, n))
                    held += n
                    cond.notify_all()
        except BaseException as exc:  # handed to the consumer, who raises it
            error = exc
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()
            with cond:
                done = True
                cond.notify_all()

    thread = threading.Thread(target=produce, name="read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            with cond:
                while not buffered and not done:
                    cond.wait()
                if not buffered:
                    if error is not None:
                        raise error
                    return
                item, n = buffered.popleft()
                held -= n
                cond.notify_all()
            yield item
    finally:
        with cond:
            closed = True
            cond.notify_all()
        thread.join()


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
