"""Prometheus metrics: a textfile for cron runs (counters carry on across runs), /metrics for the
daemon, and alert rules that only name metrics archiverd exports."""
from __future__ import annotations

import re
import signal
import stat
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

import archiverd
from archiverd import config
from archiverd.service.metrics import Metrics
from tests.mongo_server import free_port
from tests.test_cli_daemon import env_for, run
from tests.test_daemon import seed

ROOT = Path(__file__).resolve().parents[1]


def samples(text: str) -> dict[str, float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
    return out


def test_textfile_for_cron_runs(cfg, collection, tmp_path):
    prom = tmp_path / "archiverd.prom"
    seed(collection, [(i, 200 + i) for i in range(5)] + [(50, 3)])
    proc = subprocess.run(["sh", "-c", f'umask 077; exec "{sys.executable}" -m archiverd run --once'],
                          env=env_for(cfg, ARCHIVERD_METRICS_TEXTFILE=str(prom)), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    m = samples(prom.read_text())
    assert m["archiverd_documents_archived_total"] == 5 and m["archiverd_documents_deleted_total"] == 5
    assert m["archiverd_segments_sealed_total"] == 5 and m["archiverd_cycles_total"] == 1
    on_disk = sum(p.stat().st_size for p in cfg.collection_dir.rglob("part-*")
                  if p.name.endswith((".mkv", ".index.json")))  # the sealed files, not derived sidecars
    assert m["archiverd_segment_bytes_total"] == on_disk > 0
    assert m["archiverd_backlog_documents"] == 0 and m["archiverd_lease_held"] == 1
    assert abs(m["archiverd_last_success_timestamp_seconds"] - time.time()) < 120
    assert m["archiverd_threshold_seconds"] == 90 * 86400
    assert stat.S_IMODE(prom.stat().st_mode) == 0o644  # node_exporter runs as another user
    assert not any(name.endswith("_created") for name in m)
    # the next run carries the counters on
    seed(collection, [(60, 300), (61, 301)])
    run(cfg, "run", "--once", code=0, ARCHIVERD_METRICS_TEXTFILE=str(prom))
    m2 = samples(prom.read_text())
    assert m2["archiverd_documents_archived_total"] == 7 and m2["archiverd_cycles_total"] == 2
    assert m2["archiverd_last_success_timestamp_seconds"] >= m["archiverd_last_success_timestamp_seconds"]
    # a failed run counts its error and keeps the last success time
    run(cfg, "run", "--once", code=6, ARCHIVERD_METRICS_TEXTFILE=str(prom), ARCHIVERD_RETRY_SECONDS="0",
        MONGODB_URI=f"mongodb://127.0.0.1:{free_port()}/?directConnection=true", ARCHIVERD_SERVER_TIMEOUT_MS="300")
    m3 = samples(prom.read_text())
    assert m3["archiverd_errors_total{kind=DatabaseError}"] == 1
    assert m3["archiverd_last_success_timestamp_seconds"] == m2["archiverd_last_success_timestamp_seconds"]
    assert m3["archiverd_documents_archived_total"] == 7


def test_backlog_is_measured_after_a_cycle(cfg, collection):
    import dataclasses
    from archiverd.service.daemon import Daemon
    seed(collection, [(i, 200) for i in range(3)] + [(9, 400)])
    cfg = dataclasses.replace(cfg, metrics_textfile=cfg.archive_dir.parent / "m.prom")
    daemon = Daemon(cfg)
    daemon.stop.set()  # stops the cycle before it reads anything: the backlog stays
    code, stats = daemon.once()
    m = samples(cfg.metrics_textfile.read_text())
    assert m["archiverd_backlog_documents"] == 4
    oldest = next(collection.find().sort("timestamp", 1).limit(1))["timestamp"]
    assert m["archiverd_backlog_oldest_timestamp_seconds"] == oldest.timestamp()


def test_daemon_serves_metrics(cfg, collection, tmp_path):
    seed(collection, [(i, 150) for i in range(3)])
    port = free_port()
    log_file = tmp_path / "d.log"
    daemon = subprocess.Popen([sys.executable, "-m", "archiverd", "run"],
                              env=env_for(cfg, ARCHIVERD_METRICS_ADDR=f"127.0.0.1:{port}", ARCHIVERD_POLL_SECONDS="300",
                                          ARCHIVERD_LOG_FILE=str(log_file)),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        m: dict[str, float] = {}
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and m.get("archiverd_cycles_total", 0) < 1:
            time.sleep(0.3)
            try:
                m = samples(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode())
            except OSError:
                continue
        assert m.get("archiverd_cycles_total") == 1, log_file.read_text() if log_file.exists() else m
        assert m["archiverd_documents_archived_total"] == 3 and m["archiverd_lease_held"] == 1
        assert m[f"archiverd_info{{namespace={cfg.namespace},version={archiverd.__version__}}}"] == 1
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(60)
    assert daemon.returncode == 0


def test_metrics_port_in_use_is_a_clear_error(cfg, collection):
    import socket
    collection.database.create_collection(cfg.collection)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        proc = run(cfg, "run", code=3, ARCHIVERD_METRICS_ADDR=f"127.0.0.1:{busy.getsockname()[1]}")
    assert "cannot serve metrics" in proc.stderr


def test_alert_rules_name_only_exported_metrics(tmp_path):
    exported = set(samples(_exposition(tmp_path)))
    families = {re.sub(r"\{.*", "", name) for name in exported} | {"archiverd_errors_total"}
    rules = (ROOT / "docs" / "guides" / "alerts.yml").read_text()
    exprs = re.findall(r"expr: (?:>\n((?:\s{10}.*\n)+)|(.*))", rules)
    assert len(exprs) == 6
    for folded, line in exprs:
        names = set(re.findall(r"\barchiverd_[a-z_]+", folded or line))
        assert names and names <= families, names - families
    guide = (ROOT / "docs" / "guides" / "observing.md").read_text()
    for name in families:
        assert name in guide or name.replace("_total", "") in guide, f"{name} is not documented"


def _exposition(tmp_path: Path) -> str:
    cfg = config.load(environ={"ARCHIVERD_ARCHIVE_DIR": str(tmp_path)})
    m = Metrics(cfg)
    m.errors.labels(kind="SegmentError").inc()
    from prometheus_client import generate_latest
    return generate_latest(m.registry).decode()
