"""Prometheus metrics for the daemon and for cron runs; opt-in, off by default.

Two ways out, either or both:
- `metrics_addr` (ARCHIVERD_METRICS_ADDR=127.0.0.1:9464): the long-running daemon serves /metrics.
- `metrics_textfile` (ARCHIVERD_METRICS_TEXTFILE=/var/lib/node_exporter/textfile/archiverd.prom):
  rewritten atomically after every cycle and every error, for node_exporter's textfile collector --
  the way to watch `archiverd run --once` from cron. Counters continue from the previous file, so
  they are true totals across runs. The file is mode 0644: node_exporter runs as another user, and
  it holds counts and times only, never data or settings.

Names and meanings are listed in docs/guides/observing.md, with alert rules.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from prometheus_client import (CollectorRegistry, Counter, Gauge, disable_created_metrics, generate_latest,
                               start_http_server)
from prometheus_client.parser import text_string_to_metric_families

from .. import __version__, log
from ..config import Config, parse_listen
from ..errors import ArchiverdError, ConfigError
from ..format import index
from . import expiry
from .archiver import CycleStats
from .source import Source

disable_created_metrics()  # no *_created series: they double every counter and nobody alerts on them


class Metrics:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.enabled = cfg.metrics_addr is not None or cfg.metrics_textfile is not None
        r = self.registry = CollectorRegistry()
        self.archived = Counter("archiverd_documents_archived", "Documents sealed into verified segments.", registry=r)
        self.deleted = Counter("archiverd_documents_deleted",
                               "Documents deleted from MongoDB after their segment was sealed (recovery included).",
                               registry=r)
        self.kept = Counter("archiverd_documents_kept",
                            "Archived documents kept in MongoDB because they changed after they were read.",
                            registry=r)
        self.bytes_archived = Counter("archiverd_bytes_archived", "BSON bytes sealed into segments.",
                                      registry=self.registry)
        self.bytes_deleted = Counter("archiverd_bytes_deleted", "BSON bytes deleted from MongoDB after their seal.",
                                     registry=self.registry)
        self.segment_bytes = Counter("archiverd_segment_bytes", "Bytes of sealed segments written (video + index).",
                                     registry=r)
        self.segments = Counter("archiverd_segments_sealed", "Segments sealed.", registry=r)
        self.cycles = Counter("archiverd_cycles", "Completed archiving cycles.", registry=r)
        self.cycle_seconds = Counter("archiverd_cycle_seconds", "Time spent in completed cycles.", registry=r)
        self.errors = Counter("archiverd_errors", "Failed cycles and failed attempts to reach MongoDB, by error class.",
                              ["kind"], registry=r)
        self.last_duration = Gauge("archiverd_last_cycle_duration_seconds", "Duration of the last completed cycle.",
                                   registry=r)
        self.last_success = Gauge("archiverd_last_success_timestamp_seconds",
                                  "Unix time of the last completed cycle (0: none yet).", registry=r)
        self.backlog = Gauge("archiverd_backlog_documents",
                             "Expired documents not archived yet, counted after the last cycle.", registry=r)
        self.backlog_oldest = Gauge("archiverd_backlog_oldest_timestamp_seconds",
                                    "Date of the oldest expired document not archived yet (0: none).", registry=r)
        self.lease_held = Gauge("archiverd_lease_held", "1 while this instance holds the collection's lease.",
                                registry=r)
        self.started = Gauge("archiverd_start_time_seconds", "Unix time this process started.", registry=r)
        self.threshold = Gauge("archiverd_threshold_seconds", "Documents older than this are archived.", registry=r)
        self.info = Gauge("archiverd_info", "Version and namespace of this archiver.", ["version", "namespace"],
                          registry=r)
        self.started.set(time.time())
        self.threshold.set(cfg.threshold_days * 86400)
        self.info.labels(version=__version__, namespace=cfg.namespace).set(1)
        if cfg.metrics_textfile is not None:
            self._continue_from(cfg.metrics_textfile)

    def serve(self) -> None:
        """Start the /metrics endpoint (the long-running daemon only)."""
        if self.cfg.metrics_addr is None:
            return
        host, port = parse_listen(self.cfg.metrics_addr)
        try:
            start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise ConfigError(f"cannot serve metrics on {self.cfg.metrics_addr}: {exc.strerror or exc}") from None
        log.event("metrics.serving", address=f"{host}:{port}")

    def cycle_done(self, source: Source, stats: CycleStats) -> None:
        self.archived.inc(stats.sealed)
        self.deleted.inc(stats.deleted + stats.recovered)
        self.kept.inc(stats.changed)
        self.bytes_archived.inc(stats.bytes_sealed)
        self.bytes_deleted.inc(stats.bytes_deleted)
        self.segments.inc(len(stats.segments))
        self.segment_bytes.inc(sum(_size(self.cfg.collection_dir / rel) for rel in stats.segments))
        self.cycles.inc()
        self.cycle_seconds.inc(stats.seconds)
        self.last_duration.set(stats.seconds)
        self.last_success.set(time.time())
        if self.enabled:
            try:
                count, oldest = source.backlog(expiry.watermark_ms(self.cfg))
                self.backlog.set(count)
                self.backlog_oldest.set(oldest.timestamp() if oldest else 0)
            except ArchiverdError as exc:  # the cycle itself succeeded; the gauge stays as it was
                log.warning("metrics.backlog_failed", error=str(exc))
        self._publish()

    def failed(self, exc: BaseException) -> None:
        self.errors.labels(kind=exc.__class__.__name__).inc()
        self._publish()

    def lease(self, held: bool) -> None:
        self.lease_held.set(1 if held else 0)

    def _publish(self) -> None:
        """Rewrite the textfile atomically: temp file -> rename (node_exporter never sees half a file)."""
        path = self.cfg.metrics_textfile
        if path is None:
            return
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                os.fchmod(fd, 0o644)
                os.write(fd, generate_latest(self.registry))
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except OSError as exc:  # metrics must never stop archiving
            log.warning("metrics.write_failed", path=str(path), error=exc.strerror or str(exc))
            tmp.unlink(missing_ok=True)

    def _continue_from(self, path: Path) -> None:
        """Counters and the last success time from the previous run's file (cron: one process per run)."""
        try:
            text = path.read_text(encoding="utf-8")
            families = list(text_string_to_metric_families(text))
        except (OSError, ValueError, UnicodeDecodeError):
            return  # no previous file (or not ours): start from zero
        counters: dict[str, Counter] = {
            "archiverd_documents_archived_total": self.archived, "archiverd_documents_deleted_total": self.deleted,
            "archiverd_documents_kept_total": self.kept, "archiverd_segment_bytes_total": self.segment_bytes,
            "archiverd_bytes_archived_total": self.bytes_archived, "archiverd_bytes_deleted_total": self.bytes_deleted,
            "archiverd_segments_sealed_total": self.segments, "archiverd_cycles_total": self.cycles,
            "archiverd_cycle_seconds_total": self.cycle_seconds}
        for family in families:
            for sample in family.samples:
                if sample.name in counters:
                    counters[sample.name].inc(sample.value)
                elif sample.name == "archiverd_errors_total" and sample.labels.get("kind"):
                    self.errors.labels(kind=sample.labels["kind"]).inc(sample.value)
                elif sample.name == "archiverd_last_success_timestamp_seconds":
                    self.last_success.set(sample.value)


def _size(video: Path) -> int:
    total = 0
    for path in (video, index.path_for(video)):
        try:
            total += path.stat().st_size
        except OSError:
            pass
    return total
