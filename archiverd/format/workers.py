"""The CPU stages on worker processes: QR + FFV1 encoding of GOPs, FFV1 decoding + QR reading of clusters.

Why processes: these stages are 80 % of the CPU time of a seal (bench/RESULTS-e2e.md), and in
threads they hold the GIL for most of it (numpy on 2,953-byte arrays, PyAV's frame conversions), so
threads gained 1.1-1.3x on two cores. Each task is a pure function of the bytes it is given
(`TASKS`), and results are taken in the order the tasks were submitted, so the output is the same
bytes with any number of workers: `workers=1` runs the same functions in the calling thread.

One pool per process, started on first use with `default_workers()` processes (ARCHIVERD_WORKERS;
default the cores this process may run on) and shared by every writer and reader in it. A worker is
`python -c 'archiverd.format.workers.serve(PARENT)'` on a pair of pipes: no `multiprocessing` start
method runs the parent's main script again, and signals stay with the parent (workers ignore SIGINT
and SIGTERM; the daemon decides when to stop). Workers never outlive their parent, even after a
SIGKILL of it: a worker reads end-of-file on its task pipe when the parent is gone, and a watch
thread ends it within a second of `getppid()` changing, in the middle of a task too (not
PR_SET_PDEATHSIG: that fires when the parent *thread* that started the worker ends).

Every queue is bounded by bytes: a worker's pipes are raised to 1 MiB (F_SETPIPE_SZ) and at most
half of that is submitted to it and not yet taken back, so the parent never blocks writing a task
(no deadlock with a worker blocked writing results); an `Ordered` stream of tasks holds at most
512 KB per worker in flight or waiting to be taken.

A worker that dies (killed, out of memory) raises WorkerError in whoever waits on it: the segment
being written is abandoned (nothing published, nothing deleted) and the next task starts a new pool.
"""
from __future__ import annotations

import atexit
import fcntl
import importlib
import itertools
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .. import faults
from ..errors import WorkerError

# task name -> "module:function"; a task is a pure function of its arguments
TASKS = {
    "encode": "archiverd.format.video:encode_gops",
    "decode": "archiverd.format.video:frames_of",
    "codec_private": "archiverd.format.video:codec_private",
}
MAX_WORKERS = 256
PIPE_BYTES = 1 << 20  # asked for each pipe; the kernel may give less (its pipe-max-size)
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_LENGTH = struct.Struct(">Q")
PARENT_POLL_SECONDS = 0.5

_default: int | None = None


def cores() -> int:
    """The CPU cores this process may run on."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def set_default(workers: int | None) -> None:
    """The worker count for callers that do not name one (the configuration's `workers`)."""
    global _default
    _default = workers


def default_workers() -> int:
    return _default or cores()


def _resolve(function: str) -> Callable[..., Any]:
    module, _, name = TASKS[function].partition(":")
    return getattr(importlib.import_module(module), name)


# --- the worker side ---------------------------------------------------------------------------------

def _read_exact(fd: int, size: int) -> bytes | None:
    """`size` bytes from `fd`, or None at end of file (the other side is gone)."""
    buf = bytearray(size)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = os.readv(fd, [view[got:]])
        if n == 0:
            return None
        got += n
    return bytes(buf)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _send(fd: int, message: Any) -> None:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    _write_all(fd, _LENGTH.pack(len(body)) + body)


def _receive(fd: int) -> Any:
    head = _read_exact(fd, _LENGTH.size)
    if head is None:
        raise EOFError
    body = _read_exact(fd, _LENGTH.unpack(head)[0])
    if body is None:
        raise EOFError
    return pickle.loads(body)


def _watch_parent(parent: int) -> None:
    """End this worker as soon as its parent is gone (it is re-parented: getppid() changes)."""
    while os.getppid() == parent:
        time.sleep(PARENT_POLL_SECONDS)
    os._exit(1)


def serve(parent: int) -> None:
    """A worker's loop: (task id, name, args) in on stdin, (task id, ok, result or exception) out on
    stdout, until stdin ends or the parent `parent` is gone."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if os.getppid() != parent:  # the parent died before we got here
        return
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="watch-parent").start()
    stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
    sys.stdout = sys.stderr  # nothing else may write to the result pipe
    functions: dict[str, Callable[..., Any]] = {}
    while True:
        try:
            task, name, args = _receive(stdin)
        except EOFError:
            return
        faults.hit(f"worker:{name}")
        try:
            fn = functions.get(name) or functions.setdefault(name, _resolve(name))
            reply = (task, True, fn(*args))
        except Exception as exc:  # handed to the caller, who raises it
            reply = (task, False, exc)
        try:
            _send(stdout, reply)
        except BrokenPipeError:
            return


# --- the parent side ---------------------------------------------------------------------------------

class _Worker:
    def __init__(self, number: int) -> None:
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join([package_root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        self.number = number
        self.proc = subprocess.Popen([sys.executable, "-c", f"from archiverd.format.workers import serve; serve({os.getpid()})"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, close_fds=True)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.to_fd, self.from_fd = self.proc.stdin.fileno(), self.proc.stdout.fileno()
        capacity = min(self._grow(self.to_fd), self._grow(self.from_fd))
        self.budget = capacity // 2  # task bytes submitted and not taken back
        self.in_flight = 0
        self.order: deque[int] = deque()  # task ids submitted to it, oldest first

    @staticmethod
    def _grow(fd: int) -> int:
        try:
            return fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_BYTES)
        except OSError:
            return fcntl.fcntl(fd, getattr(fcntl, "F_GETPIPE_SZ", 1032))

    def close(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()  # type: ignore[union-attr]
            except OSError:
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Pool:
    """`size` worker processes. Thread-safe: tasks from several threads may share it; a result read
    while waiting for another is kept for whoever asks for it."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.broken: str | None = None
        self._lock = threading.RLock()
        self._ids = itertools.count()
        self._in_flight: dict[int, tuple[_Worker, int]] = {}  # task -> (its worker, its bytes)
        self._done: dict[int, tuple[bool, Any]] = {}  # task -> (ok, result or exception), not yet taken
        self._abandoned: set[int] = set()  # results to drop when they arrive
        self._workers = [_Worker(n) for n in range(size)]

    def pids(self) -> list[int]:
        return [w.proc.pid for w in self._workers]

    def submit(self, name: str, args: tuple[Any, ...], size: int) -> int:
        """Queue a task on the least loaded worker, first reading back its results until the task
        fits in its budget (so that the write cannot block). Returns the task's id."""
        with self._lock:
            self._check()
            worker = min(self._workers, key=lambda w: w.in_flight)
            while worker.in_flight and worker.in_flight + size > worker.budget:
                self._read_one(worker)
            task = next(self._ids)
            try:
                _send(worker.to_fd, (task, name, args))
            except OSError:
                self._break(worker, "could not be sent a task")
            worker.in_flight += size
            worker.order.append(task)
            self._in_flight[task] = (worker, size)
            return task

    def ready(self, task: int) -> bool:
        with self._lock:
            return task in self._done

    def result(self, task: int) -> Any:
        """The task's result (waiting for it); raises the exception the task raised."""
        with self._lock:
            while task not in self._done:
                self._check()
                self._read_one(self._in_flight[task][0])
            ok, value = self._done.pop(task)
        if not ok:
            raise value
        return value

    def discard(self, tasks: list[int]) -> None:
        """Results nobody will take (an aborted segment): dropped as they arrive."""
        with self._lock:
            for task in tasks:
                if self._done.pop(task, None) is None and task in self._in_flight:
                    self._abandoned.add(task)

    def _read_one(self, worker: _Worker) -> None:
        try:
            task, ok, value = _receive(worker.from_fd)
        except (EOFError, OSError, pickle.UnpicklingError):
            self._break(worker, "exited")
        if not worker.order or task != worker.order[0]:
            self._break(worker, "answered out of order")
        worker.order.popleft()
        worker.in_flight -= self._in_flight.pop(task)[1]
        if task in self._abandoned:
            self._abandoned.discard(task)
        else:
            self._done[task] = (ok, value)

    def _break(self, worker: _Worker, what: str) -> None:
        try:
            code: int | None = worker.proc.wait(1)  # its end of the pipe closed: it is exiting, or has
        except subprocess.TimeoutExpired:
            code = None
        how = f"exit status {code}" if code is not None and code >= 0 else \
            f"killed by {signal.Signals(-code).name}" if code is not None else "still running"
        self.broken = f"worker process {worker.proc.pid} {what} ({how}); the segment in progress is abandoned"
        _forget(self)
        self.close()
        raise WorkerError(self.broken)

    def _check(self) -> None:
        if self.broken:
            raise WorkerError(self.broken)

    def close(self) -> None:
        workers, self._workers = self._workers, []
        for worker in workers:
            worker.close()


_pools: dict[int, Pool] = {}
_pools_lock = threading.Lock()


def pool(size: int) -> Pool:
    """This process's pool of `size` workers, started on first use (again after one broke)."""
    with _pools_lock:
        found = _pools.get(size)
        if found is None or found.broken:
            found = _pools[size] = Pool(size)
        return found


def _forget(broken: Pool) -> None:
    with _pools_lock:
        for size, p in list(_pools.items()):
            if p is broken:
                del _pools[size]


@atexit.register
def shutdown() -> None:
    """Stop every worker of this process and wait for them (they also stop on their own when it
    exits, however it exits)."""
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for p in pools:
        p.close()


def call(name: str, *args: Any, workers: int | None = None) -> Any:
    """One task's result: from a worker process when there are several (what the task imports then
    stays out of this process), else run here."""
    count = workers or default_workers()
    if count == 1:
        return _resolve(name)(*args)
    workers_pool = pool(count)
    return workers_pool.result(workers_pool.submit(name, args, 0))


class Ordered:
    """Tasks of one kind, run on `workers` processes (in the calling thread when 1), results handed
    back in the order the tasks were put. At most `max_bytes` of tasks (by their `size`) are in
    flight or waiting to be taken: `put` hands back what is ready and, past that, waits."""

    def __init__(self, name: str, workers: int | None = None, max_bytes: int | None = None) -> None:
        self.name = name
        self.workers = workers or default_workers()
        if not 1 <= self.workers <= MAX_WORKERS:
            raise ValueError(f"workers must be between 1 and {MAX_WORKERS}, got {self.workers}")
        self._fn = _resolve(name) if self.workers == 1 else None
        self._pool = pool(self.workers) if self.workers > 1 else None
        self.max_bytes = max_bytes or self.workers * (PIPE_BYTES // 2)
        self._pending: deque[tuple[int, int]] = deque()  # (task, bytes)
        self._bytes = 0

    def put(self, *args: Any, size: int) -> Iterator[Any]:
        """Submit one task of `size` bytes; yields the results due now, in order."""
        if self._pool is None:
            assert self._fn is not None
            yield self._fn(*args)
            return
        self._pending.append((self._pool.submit(self.name, args, size), size))
        self._bytes += size
        while self._pending and (self._bytes > self.max_bytes or self._pool.ready(self._pending[0][0])):
            yield self._take()

    def finish(self) -> Iterator[Any]:
        """The results of everything still in flight, in order."""
        while self._pending:
            yield self._take()

    def _take(self) -> Any:
        assert self._pool is not None
        task, size = self._pending.popleft()
        self._bytes -= size
        return self._pool.result(task)

    def close(self) -> None:
        """Give up on what is in flight (an abort)."""
        if self._pool is not None and self._pending and not self._pool.broken:
            self._pool.discard([task for task, _ in self._pending])
        self._pending.clear()
        self._bytes = 0
