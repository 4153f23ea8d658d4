"""One process against two on the same backlog, side by side in one run (issue #11, "several hosts").

    flock /tmp/archiverd-heavy.lock python bench/bench_hosts.py [--docs 600] [--per-day 100] [--reps 3]
                                                                 [--out bench/RESULTS-hosts.md]

One SecantusDB server process (as tests/mongo_server.py starts it), the same EAT documents
(bench/corpus.py, four 1536-d embeddings, ~85 KB of BSON each) dated in `docs / per_day` complete
days older than the threshold, with the index on the date field that docs/guides/archiving.md
recommends (`--no-index`: without). Each repetition, alternating the order, refills the collection with
the same documents and archives them into a fresh archive directory with

* 1 process: `archiverd run --once` with ARCHIVERD_SHARED_BACKLOG=true;
* 2 processes: two such commands started together on the same archive directory (the day leases
  split the days between them).

Measured per run: wall time from the first start to the last exit, the server's CPU seconds
(utime + stime of its process from /proc/<pid>/stat, before and after), archiverd's CPU seconds
(rusage of the processes), and the CPU the rest of the machine used meanwhile (/proc/stat's busy
time minus both): on a shared machine that is what the run could not use. Checked per run: every document left MongoDB, each day has one segment,
the segments hold every document once, each process of a 2-process run took at least one day.
Medians; the speed-up is the ratio of the medians of docs/s.
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bson.raw_bson import RawBSONDocument  # noqa: E402
from pymongo import MongoClient  # noqa: E402

from archiverd.format import index  # noqa: E402
from archiverd.store import layout  # noqa: E402
from bench.bench_e2e import COLLECTION, base_env, corpus_file, fill  # noqa: E402
from tests.mongo_server import Server  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (and of its waited-for children), from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / TICKS


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return (sum(values) - values[3] - values[4]) / TICKS  # all but idle and iowait


def run_processes(n: int, env: dict[str, str]) -> tuple[float, float, list[str]]:
    """Start n `archiverd run --once` together: (wall seconds, their CPU seconds, their logs)."""
    started = time.perf_counter()
    procs = []
    for k in range(n):
        log = open(Path(env["ARCHIVERD_ARCHIVE_DIR"]).parent / f"log-{os.getpid()}-{k}", "w+")
        procs.append((subprocess.Popen([sys.executable, "-m", "archiverd", "run", "--once"], env=env, cwd=ROOT,
                                       stdout=subprocess.DEVNULL, stderr=log, text=True), log))
    cpu, logs = 0.0, []
    for proc, log in procs:
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        cpu += usage.ru_utime + usage.ru_stime
        log.seek(0)
        logs.append(log.read())
        log.close()
        if proc.returncode != 0:
            raise SystemExit(f"archiverd exited with {proc.returncode}:\n{logs[-1][-3000:]}")
    return time.perf_counter() - started, cpu, logs


def check(archive_dir: Path, database: str, n: int, days: int, logs: list[str]) -> int:
    """Every document sealed once, one segment per day, every process took a day; the bytes of
    the archive directory."""
    collection_dir = archive_dir / database / COLLECTION
    segments = list(layout.segments(collection_dir))
    per_day = Counter(layout.day_of(str(p.relative_to(collection_dir))) for p in segments)
    ids = Counter(index.id_key(e["_id"]) for p in segments for e in index.load(index.path_for(p))["docs"])
    if len(per_day) != days or set(per_day.values()) != {1}:
        raise SystemExit(f"expected one segment for each of {days} days: {dict(per_day)}")
    if len(ids) != n or set(ids.values()) != {1}:
        raise SystemExit(f"expected {n} documents sealed once each: {len(ids)} ids, {Counter(ids.values())}")
    taken = [re.findall(r"event=day\.taken day=(\S+)", log) for log in logs]
    if not all(taken) or sum(map(len, taken)) != days:
        raise SystemExit(f"days taken per process: {taken}")
    return sum(p.stat().st_size for p in collection_dir.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=600)
    parser.add_argument("--per-day", type=int, default=100)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS-hosts.md")
    parser.add_argument("--no-index", action="store_true",
                        help="leave out the index on the date field that docs/guides/archiving.md recommends")
    args = parser.parse_args()
    days = -(-args.docs // args.per_day)
    with tempfile.TemporaryDirectory(prefix="archiverd-hosts-") as tmp:
        work = Path(tmp)
        server = Server(work / "db").start()
        try:
            uri, database = server.uri, "hosts_bench"
            corpus = corpus_file(work, args.docs, args.per_day)
            bson_bytes = corpus.stat().st_size
            client = MongoClient(uri, document_class=RawBSONDocument)
            coll = client[database][COLLECTION]
            if not args.no_index:
                coll.create_index("timestamp")
            runs: dict[int, list[tuple[float, float, float, float]]] = {1: [], 2: []}
            for rep in range(args.reps):
                for procs in ([1, 2] if rep % 2 == 0 else [2, 1]):
                    if fill(coll, corpus) != args.docs:
                        raise SystemExit("the collection did not take every document")
                    archive_dir = work / "archives"
                    shutil.rmtree(archive_dir, ignore_errors=True)
                    archive_dir.mkdir()
                    env = base_env(uri, database, ARCHIVERD_ARCHIVE_DIR=str(archive_dir),
                                   ARCHIVERD_SHARED_BACKLOG="true", ARCHIVERD_LEASE_SECONDS="120")
                    server_before, busy_before = cpu_seconds(server.proc.pid), machine_busy_seconds()
                    seconds, cpu, logs = run_processes(procs, env)
                    server_cpu = cpu_seconds(server.proc.pid) - server_before
                    others = machine_busy_seconds() - busy_before - server_cpu - cpu
                    if coll.count_documents({}):
                        raise SystemExit(f"{procs} processes: documents left in MongoDB")
                    stored = check(archive_dir, database, args.docs, days, logs)
                    runs[procs].append((seconds, server_cpu, cpu, others))
                    print(f"rep {rep} processes {procs}: {seconds:.1f} s, {args.docs / seconds:.1f} docs/s, "
                          f"server CPU {server_cpu:.1f} s, archiverd CPU {cpu:.1f} s, other work {others:.1f} s",
                          flush=True)
            client.close()
        finally:
            server.stop()
    median = {p: tuple(statistics.median(r[i] for r in runs[p]) for i in range(4)) for p in runs}
    rate = {p: args.docs / median[p][0] for p in runs}
    lines = [
        "# One process vs two on one backlog",
        "",
        f"`flock /tmp/archiverd-heavy.lock {' '.join([Path(sys.executable).name, *sys.argv])}` -- "
        f"{args.docs} EAT documents (~85 KB of BSON each) in {days} complete days, one SecantusDB server, "
        f"{'no index' if args.no_index else 'an index on the date field'}, "
        f"{os.cpu_count()} cores shared with other work; {args.reps} repetitions each, alternating; medians.",
        "",
        "| processes | wall s | docs/s | speed-up | server CPU s | server CPU ms/doc | archiverd CPU s | "
        "archiverd CPU ms/doc | cores busy with this run | other work's CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for p in (1, 2):
        seconds, server_cpu, cpu, others = median[p]
        lines.append(f"| {p} | {seconds:.1f} | {rate[p]:.1f} | {rate[p] / rate[1]:.2f}x | {server_cpu:.1f} | "
                     f"{1000 * server_cpu / args.docs:.1f} | {cpu:.1f} | {1000 * cpu / args.docs:.1f} | "
                     f"{(server_cpu + cpu) / seconds:.2f} | {others:.1f} |")
    lines += ["", f"The archive directory holds {stored / args.docs / 1024:.1f} KiB per document (segments, indexes, "
              f"sidecars, state) for {bson_bytes / args.docs / 1024:.1f} KiB of BSON; each is written once and read "
              "back once by the seal's verify.",
              "", "Every run: " + ", ".join(f"{p} process{'es' if p > 1 else ''} "
                                             + " / ".join(f"{args.docs / r[0]:.1f}" for r in runs[p])
                                             for p in (1, 2)) + " docs/s."]
    text = "\n".join(lines) + "\n"
    print(text)
    args.out.write_text(text)


if __name__ == "__main__":
    main()
