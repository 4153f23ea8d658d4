"""Sizes, counts and durations as a person reads them (`status`, `list`, `info`, progress lines,
the summary line of each command).

Machine output (`--json`) never goes through here: it carries plain numbers and ISO times.
"""
from __future__ import annotations

import math


def size(n: float | None) -> str:
    """Bytes in decimal units, three significant figures: 0 B, 950 B, 12.3 kB, 4.5 GB."""
    if n is None:
        return "?"
    if n < 1000:
        return f"{int(n)} B"
    for unit in ("kB", "MB", "GB", "TB", "PB"):
        n /= 1000
        if n < 999.5 or unit == "PB":
            return f"{n:.3g} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


def count(n: int) -> str:
    return f"{n:,}"


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """A count and its noun, as one-line summaries say it: 1 document, 0 documents, 1,234 segments,
    1 older copy (`nouns` for a plural that is not noun + s)."""
    return f"{count(n)} {noun if n == 1 else nouns or noun + 's'}"


def age(seconds: float | None) -> str:
    """A coarse duration: 45 s, 12 min, 3 h 5 min, 4 d 2 h (two units at most)."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def clock(seconds: float | None) -> str:
    """H:MM:SS (or M:SS) for elapsed time and ETAs; '?' when unknown."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
