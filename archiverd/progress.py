"""Progress and statistics for long work: `run --once`, `restore`, `export`, `check`.

A `Meter` counts documents and bytes as the work reports them and times its stages. It shows:
- on a terminal (stderr is a TTY), a bar redrawn in place with rate and ETA, cleared whenever
  anything else is written to the terminal (log lines, per-segment results);
- with `--progress`, one complete line on stderr at most every `--progress-interval` seconds (and a
  last one when the work ends), for logs, pipes and cron mail;
- with `--statistics`, a summary when the work ends (pt-archiver's habit): documents, bytes,
  seconds, rates, and the time spent in each stage, the rest counted as "other".
It only observes: the work is exactly the same with or without it, and a failure to write to the
terminal never stops it.
"""
from __future__ import annotations

import functools
import logging
import math
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import IO, Any, TypeVar

import click

from . import units

T = TypeVar("T")
OFF, BAR, LINES = "off", "bar", "lines"
DEFAULT_INTERVAL = 10.0
_REDRAW_SECONDS = 0.2  # a bar is redrawn at most this often


class Meter:
    """Counts, stage times and their display (see the module docstring)."""

    def __init__(self, label: str = "", *, mode: str = OFF, interval: float = DEFAULT_INTERVAL,
                 stream: IO[str] | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.label = label
        self.mode = mode
        self.interval = interval
        self.stream = stream
        self.clock = clock
        self.started = clock()
        self.ended: float | None = None
        self.documents = 0
        self.bytes = 0
        self.total_documents: int | None = None
        self.total_bytes: int | None = None
        self.stages: dict[str, float] = {}
        self._shown_at = self.started  # when the last line or bar was written
        self._active = False  # the work has reported something: there is something to show
        self._bar_visible = False
        self._restore: list[Callable[[], None]] = []

    # -- what the work reports --------------------------------------------------------------------

    def expect(self, documents: int | None = None, bytes: int | None = None) -> None:  # noqa: A002
        """The totals, once known (an ETA needs one of them)."""
        self.total_documents = documents
        self.total_bytes = bytes
        self._start()

    def add(self, documents: int = 0, bytes: int = 0) -> None:  # noqa: A002
        self.documents += documents
        self.bytes += bytes
        self._start()
        if self.mode != OFF:
            self._show(final=False)

    def _start(self) -> None:
        """The first report: from now on there is something to show. A bar makes every other
        writer to the terminal clear it first."""
        if not self._active:
            self._active = True
            if self.mode == BAR:
                self._wrap_terminal()

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage of the work (stages must not nest: the time would count twice)."""
        start = self.clock()
        try:
            yield
        finally:
            self.stages[name] = self.stages.get(name, 0.0) + self.clock() - start

    def timed(self, name: str, items: Iterable[T]) -> Iterator[T]:
        """`items`, with the time spent producing each one (a cursor, a decoder) counted as `name`."""
        iterator = iter(items)
        while True:
            start = self.clock()
            try:
                item = next(iterator)
            except StopIteration:
                self.stages[name] = self.stages.get(name, 0.0) + self.clock() - start
                return
            self.stages[name] = self.stages.get(name, 0.0) + self.clock() - start
            yield item

    # -- figures ------------------------------------------------------------------------------------

    def elapsed(self) -> float:
        return (self.ended if self.ended is not None else self.clock()) - self.started

    def eta(self) -> float | None:
        """Seconds left at the average rate so far, from documents (or bytes when only their total
        is known); None while unknown."""
        elapsed = self.elapsed()
        for done, total in ((self.documents, self.total_documents), (self.bytes, self.total_bytes)):
            if total is not None:
                if done >= total:
                    return 0.0
                return (total - done) * elapsed / done if done and elapsed > 0 else None
        return None

    def statistics(self) -> dict[str, Any]:
        """Documents, bytes, seconds, rates and seconds per stage ("other": the rest)."""
        seconds = self.elapsed()
        stages = dict(sorted(self.stages.items(), key=lambda kv: -kv[1]))
        stages["other"] = max(0.0, seconds - sum(self.stages.values()))
        return {"label": self.label, "documents": self.documents, "bytes": self.bytes, "seconds": seconds,
                "documents_per_second": self.documents / seconds if seconds > 0 else None,
                "bytes_per_second": self.bytes / seconds if seconds > 0 else None,
                "stages": stages}

    def statistics_text(self) -> str:
        s = self.statistics()
        rate = ""
        if s["seconds"] > 0:
            rate = f" ({s['documents_per_second']:,.1f} documents/s, {units.size(s['bytes_per_second'])}/s)"
        lines = [f"statistics: {self.label}: {units.count(s['documents'])} documents, {units.size(s['bytes'])}, "
                 f"{s['seconds']:.2f} s{rate}", f"  {'stage':<12} {'seconds':>9} {'%':>6}"]
        for name, secs in s["stages"].items():
            share = 100 * secs / s["seconds"] if s["seconds"] > 0 else 0.0
            lines.append(f"  {name:<12} {secs:>9.2f} {share:>6.1f}")
        return "\n".join(lines)

    # -- display ------------------------------------------------------------------------------------

    def _text(self) -> str:
        elapsed = self.elapsed()
        parts = [self.label]
        if self.total_documents is not None:
            share = f" ({100 * self.documents / self.total_documents:.1f}%)" if self.total_documents else ""
            parts.append(f"{units.count(self.documents)} of {units.count(self.total_documents)} documents{share}")
        else:
            parts.append(f"{units.count(self.documents)} documents")
        parts.append(units.size(self.bytes) + (f" of {units.size(self.total_bytes)}"
                                               if self.total_bytes is not None else ""))
        if elapsed > 0:
            parts.append(f"{self.documents / elapsed:,.1f} documents/s, {units.size(self.bytes / elapsed)}/s")
        parts.append(f"elapsed {units.clock(elapsed)}")
        parts.append(f"ETA {units.clock(self.eta())}")
        return ", ".join(parts)

    def _show(self, final: bool) -> None:
        now = self.clock()
        try:
            if self.mode == LINES:
                if final or now - self._shown_at >= self.interval:
                    self._write(f"archiverd: progress: {self._text()}{' (done)' if final else ''}\n")
                    self._shown_at = now
            elif self.mode == BAR and (final or now - self._shown_at >= _REDRAW_SECONDS or not self._bar_visible):
                width = shutil.get_terminal_size((100, 20)).columns - 1
                self._write("\r\x1b[K" + self._bar(width)[:width] + ("\n" if final else ""))
                self._bar_visible = not final
                self._shown_at = now
        except (OSError, ValueError):  # a closed or broken stderr must never stop the work
            self.mode = OFF

    def _bar(self, width: int) -> str:
        """`label [#####.....] 45% 27/60 docs 1.2 MB 85 docs/s 2.5 MB/s ETA 0:03`, as wide as the terminal."""
        elapsed = self.elapsed()
        docs = units.count(self.documents) + (f"/{units.count(self.total_documents)}"
                                              if self.total_documents is not None else "")
        rate = (f" {self.documents / elapsed:,.0f} docs/s {units.size(self.bytes / elapsed)}/s"
                if elapsed > 0 else "")
        text = f"{docs} docs {units.size(self.bytes)}{rate} ETA {units.clock(self.eta())}"
        total, done = ((self.total_documents, self.documents) if self.total_documents is not None
                       else (self.total_bytes, self.bytes))
        room = min(40, width - len(self.label) - len(text) - 9)
        if not total or room < 10:
            return f"{self.label} {text}"
        share = min(1.0, done / total)
        filled = int(room * share)
        return f"{self.label} [{'#' * filled}{'.' * (room - filled)}] {100 * share:3.0f}% {text}"

    def _write(self, text: str) -> None:
        stream = self.stream or sys.stderr
        stream.write(text)
        stream.flush()

    def clear(self) -> None:
        """Erase the bar before something else is written to the terminal; it is redrawn on the
        next count."""
        if self._bar_visible:
            self._bar_visible = False
            try:
                self._write("\r\x1b[K")
            except (OSError, ValueError):
                self.mode = OFF

    # -- life ---------------------------------------------------------------------------------------

    def __enter__(self) -> Meter:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        """End the display: the bar's last state on a line of its own, or a last progress line
        (nothing if the work never reported anything)."""
        if self.ended is not None:
            return
        self.ended = self.clock()
        if self.mode != OFF and self._active:
            self._show(final=True)
        for undo in reversed(self._restore):
            undo()
        self._restore.clear()

    def _wrap_terminal(self) -> None:
        """Make every other writer to the terminal (stdout, stderr, the log's stream handler) clear
        the bar first; `close` undoes it."""
        for name in ("stdout", "stderr"):
            real = getattr(sys, name)
            if real is not None and real.isatty():
                setattr(sys, name, _Clearing(real, self))
                self._restore.append(functools.partial(setattr, sys, name, real))
        for handler in logging.getLogger("archiverd").handlers:
            stream = getattr(handler, "stream", None)
            if isinstance(handler, logging.StreamHandler) and stream is not None and stream.isatty():
                handler.setStream(_Clearing(stream, self))
                self._restore.append(functools.partial(handler.setStream, stream))
        if self.stream is None:
            self.stream = getattr(sys.stderr, "real", sys.stderr)


class _Clearing:
    """A terminal stream that clears the progress bar before anything else is written to it."""

    def __init__(self, real: IO[str], meter: Meter) -> None:
        self.real = real
        self.meter = meter

    def write(self, text: str) -> int:
        self.meter.clear()
        return self.real.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def choose_mode(progress: bool | None, stream: IO[str] | None = None) -> str:
    """--progress: periodic lines; --no-progress: nothing; neither: a bar on a terminal, else nothing."""
    if progress is not None:
        return LINES if progress else OFF
    stream = stream or sys.stderr
    try:
        return BAR if stream.isatty() else OFF
    except (AttributeError, ValueError):
        return OFF


def _interval(_ctx: click.Context, _param: click.Parameter, value: float) -> float:
    if not math.isfinite(value) or not 0.1 <= value <= 86_400:
        raise click.BadParameter(f"must be a number of seconds from 0.1 to 86400 (got {value:g})")
    return value


def options(label: str) -> Callable[[Callable[..., int]], Callable[..., int]]:
    """Adds --progress/--no-progress, --progress-interval and --statistics to a command, and hands
    it a `meter` (labelled `label`) that is closed -- and its statistics printed when asked for --
    when the command returns."""
    def decorate(fn: Callable[..., int]) -> Callable[..., int]:
        @functools.wraps(fn)
        def wrapper(*args: Any, progress: bool | None, progress_interval: float, statistics: bool,
                    **kwargs: Any) -> int:
            meter = Meter(label, mode=choose_mode(progress), interval=progress_interval)
            with meter:
                code = fn(*args, meter=meter, **kwargs)
            if statistics:
                click.echo(meter.statistics_text(), err=True)
            return code

        for option in reversed([
            click.option("--progress/--no-progress", "progress", default=None,
                         help="Print a progress line on stderr every --progress-interval seconds "
                              "(default: a progress bar when stderr is a terminal, else nothing)."),
            click.option("--progress-interval", type=float, default=DEFAULT_INTERVAL, show_default=True,
                         metavar="SECONDS", callback=_interval, help="Seconds between progress lines."),
            click.option("--statistics", is_flag=True,
                         help="At the end, print documents, bytes, seconds and the time of each stage on stderr."),
        ]):
            wrapper = option(wrapper)
        return wrapper

    return decorate
