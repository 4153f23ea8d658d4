"""One long-running `archiverd run` daemon over many days of EAT documents: docs/s per day and the
peak RSS of its process tree, day after day (does memory level off? does cost stay linear?).

    python bench/bench_daemon.py [--days 10] [--per-day 10000]

SecantusDB (the test server) materializes a query's matches in memory: 100,000 EAT documents at once
(~8 GB of BSON) got it OOM-killed at 24 GB counting them per day. So the server holds one day at a
time: the daemon and its workers are SIGSTOPped while a day's documents are inserted (bench/corpus.py,
four 1536-d embeddings, ~85 KB each, one complete day older than the threshold), then SIGCONTed; a
day is timed from SIGCONT until the collection is empty (sealed, verified, deleted). The tree's RSS
is sampled every 100 ms the whole time; the main process's own VmHWM comes from tests/peak_rss.py.
Prints a markdown table.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bson  # noqa: E402
from bson.raw_bson import RawBSONDocument  # noqa: E402
from pymongo import MongoClient  # noqa: E402

from bench.bench_e2e import COLLECTION, _tree_rss_kib, base_env, table  # noqa: E402
from bench.corpus import experiences  # noqa: E402
from tests.mongo_server import Server  # noqa: E402

DATABASE = "bench_daemon"


def _tree(root: int) -> list[int]:
    """`root` and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    children.setdefault(int(f.read().rsplit(")", 1)[1].split()[1]), []).append(int(entry))
            except (OSError, ValueError, IndexError):
                continue
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _signal_tree(root: int, sig: int) -> None:
    for pid in _tree(root):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def run(work: Path, days: int, per_day: int) -> list[list[str]]:
    server = Server(work / "db").start()
    proc: subprocess.Popen[bytes] | None = None
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.1):
            if proc is not None:
                peak[0] = max(peak[0], _tree_rss_kib(proc.pid))

    threading.Thread(target=sample, daemon=True).start()
    rows: list[list[str]] = []
    try:
        client = MongoClient(server.uri, document_class=RawBSONDocument)
        coll = client[DATABASE][COLLECTION]
        archive = work / "archive"
        archive.mkdir()
        env = base_env(server.uri, DATABASE, ARCHIVERD_ARCHIVE_DIR=str(archive), PEAK_RSS_FILE=str(work / "peak"),
                       ARCHIVERD_LEASE_SECONDS="600", ARCHIVERD_POLL_SECONDS="1")
        today = dt.datetime.now(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
        times = []
        for day in range(days):
            if proc is not None:
                _signal_tree(proc.pid, signal.SIGSTOP)
            docs = [RawBSONDocument(bson.encode(d)) for d in experiences(
                per_day, now=today - dt.timedelta(days=92 + days - day), days=1, seed=100 + day)]
            for i in range(0, len(docs), 500):
                coll.insert_many(docs[i:i + 500])
            del docs
            client.admin.command("fsync")
            started = time.perf_counter()
            if proc is None:
                proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "peak_rss.py"), "run"], env=env,
                                        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(work / "log", "w"))
            else:
                _signal_tree(proc.pid, signal.SIGCONT)
            while coll.estimated_document_count() and proc.poll() is None:
                time.sleep(0.2)
            if proc.poll() is not None:
                raise SystemExit(f"the daemon exited with {proc.returncode}; its log: {work / 'log'}")
            seconds = time.perf_counter() - started
            times.append(seconds)
            rows.append([str(day + 1), f"{per_day:,}", f"{seconds:.1f}", f"{per_day / seconds:.0f}",
                         f"{peak[0] / 1024:.0f} MB"])
            print(table(["day", "documents", "seconds", "docs/s", "tree peak so far"], rows[-1:]).splitlines()[-1],
                  flush=True)
        proc.send_signal(signal.SIGTERM)
        if proc.wait(120) != 0:
            raise SystemExit(f"the daemon exited with {proc.returncode}; its log: {work / 'log'}")
        done.set()
        rows.append(["all", f"{days * per_day:,}", f"{sum(times):.1f} (median day {statistics.median(times):.1f})",
                     f"{days * per_day / sum(times):.0f}",
                     f"{peak[0] / 1024:.0f} MB (main {int((work / 'peak').read_text()) / 1024:.0f} MB)"])
        return rows
    finally:
        done.set()
        if proc is not None and proc.poll() is None:
            _signal_tree(proc.pid, signal.SIGCONT)
            proc.kill()
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--per-day", type=int, default=10_000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="archiverd-daemon-"))
    try:
        rows = run(work, args.days, args.per_day)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"\n`python bench/bench_daemon.py --days {args.days} --per-day {args.per_day}`\n")
    print(table(["day", "documents", "seconds", "docs/s", "tree peak so far"], rows))


if __name__ == "__main__":
    main()
