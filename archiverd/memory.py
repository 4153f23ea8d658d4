"""The C allocator's arenas, bounded for the whole process.

glibc gives each thread that allocates an arena of its own (up to 8 per core) and never hands memory
freed in one arena to another, so a process whose threads take turns with 85 KB documents (the
main thread reading and sealing; pymongo's monitors, the lease renewer and the change stream
waking) keeps several arenas' worth of freed memory resident. Measured on the daemon archiving
1,000 EAT documents (bench/RESULTS-e2e.md): main process peak RSS 194 MB with glibc's default, 165 MB
with a single arena, the same speed. Two arenas keep two threads of C code (the restore's insert
thread, search's fetch threads) from waiting on one lock.

Between segments the freed memory is handed back (`release`): otherwise what one segment's seal
freed stays resident, scattered between live objects, and the next segment's peak stacks on it.
"""
from __future__ import annotations

import ctypes
from typing import Any

ARENAS = 2
_M_ARENA_MAX = -8  # glibc's mallopt parameter number


def _libc(name: str, *argtypes: type) -> Any:
    """The C library's function `name`, or None where there is no such function (not glibc)."""
    try:
        function = getattr(ctypes.CDLL(None), name)
    except (OSError, AttributeError):
        return None
    function.argtypes, function.restype = argtypes, ctypes.c_int
    return function


def bound_arenas(count: int = ARENAS) -> bool:
    """Ask the C library for at most `count` arenas from now on (call it before threads start);
    False where the C library has no `mallopt` or refuses (not glibc): nothing changes there."""
    mallopt = _libc("mallopt", ctypes.c_int, ctypes.c_int)
    return mallopt is not None and bool(mallopt(_M_ARENA_MAX, count))


def release() -> bool:
    """Return the C heap's free pages to the system (glibc's malloc_trim); False where there is
    no such call. Cheap (a walk of the free lists): called once per sealed segment."""
    trim = _libc("malloc_trim", ctypes.c_size_t)
    return trim is not None and bool(trim(0))
