"""What is expired, and which UTC day it belongs to.

A document is archived only when its date field is a single BSON date: not an array (MongoDB's
`$lt` matches an array when any element matches, so `[<old>, <now>]` would look expired), not a
path through an array, not missing, null, a string or any other type. Every other document stays in
MongoDB, counted by reason. Dates are handled as BSON's int64 milliseconds, so year 1, year 9999 and
the limits of BSON dates (far outside Python's datetime) never break arithmetic or sorting.

A day is *complete* once the watermark (now - threshold) has passed its end by `day_grace_seconds`;
only complete days are archived, so that a day becomes one segment, not a trickle of parts.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from bson.datetime_ms import DatetimeMS

from ..config import Config

MS_PER_DAY = 86_400_000
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
MIN_DATETIME_MS = -62_135_596_800_000  # 0001-01-01T00:00:00Z, Python's datetime.min
MAX_DATETIME_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, Python's datetime.max
OUT_OF_RANGE = "out-of-range"


def to_ms(value: dt.datetime | DatetimeMS) -> int:
    if isinstance(value, DatetimeMS):
        return int(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def to_datetime(ms: int) -> dt.datetime | None:
    """The UTC datetime of a BSON date, or None outside Python's range."""
    if not MIN_DATETIME_MS <= ms <= MAX_DATETIME_MS:
        return None
    return _EPOCH + dt.timedelta(milliseconds=ms)


def bson_date(ms: int) -> dt.datetime | DatetimeMS:
    """A value pymongo encodes as this BSON date."""
    return to_datetime(ms) or DatetimeMS(ms)


def now_ms() -> int:
    return to_ms(dt.datetime.now(dt.timezone.utc))


def watermark_ms(cfg: Config, now: int | None = None) -> int:
    """now - threshold_days, in milliseconds (BSON dates have millisecond precision)."""
    return (now_ms() if now is None else now) - round(cfg.threshold_days * MS_PER_DAY)


def cutoff_ms(cfg: Config, now: int | None = None) -> int:
    """Documents dated before this are in complete days: UTC midnight at or before
    watermark - day_grace_seconds."""
    edge = watermark_ms(cfg, now) - round(cfg.day_grace_seconds * 1000)
    return edge - edge % MS_PER_DAY


def next_cutoff_due(cfg: Config, now: int | None = None) -> float:
    """Seconds until the cutoff moves on by a day (the next day becomes complete)."""
    now = now_ms() if now is None else now
    cutoff = cutoff_ms(cfg, now)
    due = cutoff + MS_PER_DAY + round(cfg.threshold_days * MS_PER_DAY) + round(cfg.day_grace_seconds * 1000)
    return max(0.0, (due - now) / 1000)


def date_ms(doc: Mapping[str, Any], path: str) -> tuple[int | None, str | None]:
    """(milliseconds, None) when the field at `path` is a single BSON date, else (None, reason).
    Path components only go through embedded documents: never into arrays."""
    value: Any = doc
    parts = path.split(".")
    for i, part in enumerate(parts):
        if isinstance(value, list):
            return None, "date path runs through an array"
        if not isinstance(value, Mapping):
            return None, "date path runs through a non-document"
        try:
            value = value[part]
        except KeyError:
            return None, "date field missing"
    if isinstance(value, (dt.datetime, DatetimeMS)):
        return to_ms(value), None
    if isinstance(value, list):
        return None, "date field is an array"
    if value is None:
        return None, "date field is null"
    return None, f"date field is a {type(value).__name__}, not a date"


def day_range(ms: int) -> tuple[int, int]:
    """[start, end) in milliseconds of the UTC day holding `ms`; for a date outside years 1..9999,
    the out-of-range side it lies on (one label, two ranges)."""
    if ms < MIN_DATETIME_MS:
        return -(2 ** 63), MIN_DATETIME_MS
    if ms > MAX_DATETIME_MS:
        return MAX_DATETIME_MS + 1, 2 ** 63
    start = ms - ms % MS_PER_DAY
    return start, start + MS_PER_DAY


def day_label(ms: int) -> str:
    """YYYY-MM-DD of a BSON date (UTC), or "out-of-range" outside years 1..9999."""
    when = to_datetime(ms)
    return f"{when.year:04d}-{when.month:02d}-{when.day:02d}" if when is not None else OUT_OF_RANGE
