"""The CPU stages on worker processes (format/workers.py): the same segments as the single-process
path, workers that never outlive their parent, a worker killed mid-seal failing the cycle cleanly
(nothing published, nothing deleted) with a rerun archiving everything, and ARCHIVERD_WORKERS checked
like every other setting. Real worker processes, a real server, real videos."""
from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
from pathlib import Path

import bson
import pytest
from bson.raw_bson import RawBSONDocument

from archiverd import SegmentReader
from archiverd.format import index, workers, writer
from archiverd.format.reader import verify_video
from bench.corpus import experiences
from tests.reliability import proc_state, wait_stopped, wait_until
from tests.test_cli_daemon import env_for

ROOT = Path(__file__).resolve().parents[1]


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    return out


def _write(path: Path, docs: list[bytes], count: int) -> dict:
    with writer.SegmentWriter(path, workers=count, created_at="2026-01-02T03:04:05.000Z") as w:
        for raw in docs:
            w.append(raw)
        return w.seal()


def test_worker_processes_write_the_same_segment_as_one_process(tmp_path, eat_docs, text_docs, monkeypatch):
    """Byte for byte: 1, 2 and 3 workers give the same video and index for the same documents and
    segment id; and reading with workers gives the same report as reading in one process."""
    monkeypatch.setattr(writer.os, "urandom", lambda n: bytes(range(1, n + 1)))  # one segment id for all
    docs = eat_docs[:10] + text_docs[:40]
    sealed = {}
    for count in (1, 2, 3):
        path = tmp_path / f"w{count}" / "part-0001.mkv"
        path.parent.mkdir()
        idx = _write(path, docs, count)
        sealed[count] = (path.read_bytes(), index.path_for(path).read_bytes(), idx)
    video, idx_bytes, idx = sealed[1]
    assert idx["documents"] == len(docs) and idx["frames"] > 50
    for count in (2, 3):
        assert sealed[count][0] == video, f"{count} workers wrote a different video"
        assert sealed[count][1] == idx_bytes, f"{count} workers wrote a different index"
    path = tmp_path / "w2" / "part-0001.mkv"
    reports = [verify_video(path, idx, workers=count) for count in (1, 2)]
    assert all(r.ok for r in reports) and reports[0].frames == reports[1].frames == idx["frames"]
    assert list(SegmentReader(path)) == docs


def test_workers_die_with_their_parent(tmp_path):
    """SIGKILL of the parent (nothing runs in it afterwards) leaves no worker behind."""
    script = ("import time; from archiverd.format import workers; p = workers.pool(2); "
              "print(*p.pids(), flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    pids = [int(p) for p in proc.stdout.readline().split()]
    assert len(pids) == 2 and all(proc_state(p) for p in pids)
    proc.kill()
    proc.wait()
    assert wait_until(lambda: not any(proc_state(p) for p in pids), timeout=10)


def _expired_documents(count: int) -> list[bytes]:
    """EAT documents of one complete day, 100 days ago."""
    day = dt.datetime.now(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0) - dt.timedelta(days=100)
    return [bson.encode(d) for d in experiences(count, now=day + dt.timedelta(hours=23), days=0.9, seed=5)]


def _stopped_run(cfg, point: str) -> tuple[subprocess.Popen, list[int]]:
    """`run --once` with 2 workers, stopped (SIGSTOP) at the fault point; its worker pids."""
    proc = subprocess.Popen([sys.executable, "-m", "archiverd", "run", "--once"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env=env_for(cfg, ARCHIVERD_WORKERS="2", _ARCHIVERD_CRASH_AT=f"{point}:STOP"))
    wait_stopped(proc)
    pids = _children(proc.pid)
    assert len(pids) == 2, pids
    return proc, pids


def _videos(cfg) -> list[Path]:
    return sorted(cfg.collection_dir.rglob("part-*.mkv"))


def test_a_worker_killed_mid_seal_fails_the_cycle_cleanly_and_a_rerun_archives_everything(cfg, collection):
    docs = _expired_documents(12)
    collection.insert_many([RawBSONDocument(d) for d in docs])
    # the video is written and synced, its read-back verify not begun: a worker dies
    proc, pids = _stopped_run(cfg, "seal:video-synced")
    os.kill(pids[0], signal.SIGKILL)
    os.kill(proc.pid, signal.SIGCONT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2, (out, err)
    assert "Traceback" not in err and "worker process" in err and "killed by SIGKILL" in err, err
    assert len(err.strip().splitlines()) <= 3, err
    assert collection.count_documents({}) == len(docs)  # nothing deleted
    assert _videos(cfg) == [] and not list(cfg.collection_dir.rglob("*.index.json"))  # nothing published
    assert wait_until(lambda: not any(proc_state(p) for p in pids), timeout=10)  # the other worker went with it

    rerun = subprocess.run([sys.executable, "-m", "archiverd", "run", "--once"], capture_output=True, text=True,
                           env=env_for(cfg, ARCHIVERD_WORKERS="2"), timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert collection.count_documents({}) == 0
    [video] = _videos(cfg)
    assert list(SegmentReader(video)) == docs and SegmentReader(video).verify().ok


def test_sigkill_of_the_daemon_mid_seal_leaves_no_worker_and_a_rerun_finishes(cfg, collection):
    docs = _expired_documents(6)
    collection.insert_many([RawBSONDocument(d) for d in docs])
    proc, pids = _stopped_run(cfg, "seal:verified")
    proc.kill()
    proc.communicate(timeout=60)
    assert wait_until(lambda: not any(proc_state(p) for p in pids), timeout=10)
    assert collection.count_documents({}) == len(docs)
    rerun = subprocess.run([sys.executable, "-m", "archiverd", "run", "--once"], capture_output=True, text=True,
                           env=env_for(cfg), timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert collection.count_documents({}) == 0
    [video] = _videos(cfg)
    assert list(SegmentReader(video)) == docs


@pytest.mark.parametrize("value", ["0", "-1", "-8", "1.5", "two", "", "257"])
def test_bad_worker_counts_are_configuration_errors(cfg, value):
    proc = subprocess.run([sys.executable, "-m", "archiverd", "run", "--once"], capture_output=True, text=True,
                          env=env_for(cfg, ARCHIVERD_WORKERS=value), timeout=120)
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and "workers" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_the_worker_count_defaults_to_the_cores_available(cfg):
    from archiverd import config
    assert config.load(environ={}).workers == len(os.sched_getaffinity(0))
    assert config.load(environ={"ARCHIVERD_WORKERS": "3"}).workers == 3
    assert workers.Ordered("encode", 1).workers == 1



@pytest.mark.parametrize("bound,arenas", [(None, 5), (2, 2)])
def test_the_allocator_keeps_at_most_two_arenas_whatever_the_threads(bound, arenas):
    """archiverd/memory.py, which the CLI calls before threads start: four threads that allocate
    while alive get an arena each from glibc (5 with the main one), but 2 once bounded."""
    code = f"""
import ctypes, threading
from archiverd import memory
if {bound!r}:
    assert memory.bound_arenas({bound!r})
gate = threading.Barrier(5)
def work():
    keep = [bytearray(2000) for _ in range(1000)]
    gate.wait(); gate.wait()
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads: t.start()
gate.wait()
ctypes.CDLL(None).malloc_stats()
gate.wait()
for t in threads: t.join()
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert sum(line.startswith("Arena ") for line in out.stderr.splitlines()) == arenas
