"""End to end, side by side in one run: archiverd against the plainest script a user could write.

    python bench/bench_e2e.py [--docs 1000,10000] [--reps 3] [--per-day 10000] [--workers 1,2]
                              [--cpu-docs 600] [--big] [--baseline DIR] [--out bench/RESULTS-e2e.md]

One SecantusDB server process (started as tests/mongo_server.py does), the same EAT documents
(bench/corpus.py, four 1536-d embeddings, ~85 KB of BSON each), dated in complete days older than
the 90-day threshold (`--per-day` documents per day, so that a day is one segment of that many):

1. archive: (a) bench/plain_pipeline.py archive -- raw BSON read -> zstd level 3 file -> fsync ->
   delete_many -- and (b) `archiverd run --once`, each as its own command, alternating, `--reps`
   times per size, the collection refilled with the same documents before every run. Medians of
   docs/s, the time ratio, bytes per document, and peak RSS of archiverd (the sum over its process
   tree, sampled every 20 ms, and the main process's own VmHWM).
2. restore: (a) bench/plain_pipeline.py restore -- the zstd file -> insert_many -- and (b)
   `archiverd restore SEGMENTS --to DB.COLLECTION`, alternating, into an empty collection.
3. CPU stages, no server: encode + seal (with its read-back verify, also timed on its own between
   the seal's fault points), `SegmentReader.verify()` and `decode_video_to_experiences` of
   `--cpu-docs` documents, with 1 and 2 workers, each in its own interpreter, alternating; medians.
bench/e2e_cpu.py shows where the time goes (CPU of the command, its workers and the server).
`--baseline DIR` also runs another checkout's archiverd (`git archive COMMIT | tar -x -C DIR`) in every
comparison, alternating with this one: a before/after from one run on the same documents and server.
`--big` adds 100,000 documents (one repetition; it needs ~20 GB of disk for the server's data, and a
server that streams query results: SecantusDB materializes them and was OOM-killed at 24 GB of RSS
on 100,000 EAT documents -- bench/bench_daemon.py measures 100,000 a day at a time instead).
Prints markdown tables and writes them, with the command line, to `--out`.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bson  # noqa: E402
from bson.raw_bson import RawBSONDocument  # noqa: E402
from pymongo import MongoClient  # noqa: E402

from bench.corpus import experiences  # noqa: E402
from tests.mongo_server import Server  # noqa: E402

COLLECTION = "eat_agent_experiences"
CHUNK = 500  # documents per insert while filling the collection


# --- the documents -----------------------------------------------------------------------------------

def corpus_file(work: Path, n: int, per_day: int) -> Path:
    """The n documents' BSON, concatenated, generated once: dated in ceil(n / per_day) complete
    days that end 92 days ago."""
    path = work / f"corpus-{n}-{per_day}.bson"
    if path.exists():
        return path
    today = dt.datetime.now(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    end = today - dt.timedelta(days=92)
    days = -(-n // per_day)
    with open(path, "wb") as out:
        for doc in experiences(n, now=end, days=days, seed=11):
            out.write(bson.encode(doc))
    return path


def read_docs(path: Path, limit: int | None = None) -> list[bytes]:
    out = []
    with open(path, "rb") as f:
        while limit is None or len(out) < limit:
            head = f.read(4)
            if not head:
                break
            out.append(head + f.read(int.from_bytes(head, "little") - 4))
    return out


def fill(coll, path: Path) -> int:
    """Insert the corpus file's documents (the collection is emptied first)."""
    coll.delete_many({})
    n, batch = 0, []
    with open(path, "rb") as f:
        while head := f.read(4):
            batch.append(RawBSONDocument(head + f.read(int.from_bytes(head, "little") - 4)))
            if len(batch) == CHUNK:
                coll.insert_many(batch)
                n += len(batch)
                batch = []
    if batch:
        coll.insert_many(batch)
        n += len(batch)
    return n


# --- running a command and measuring it --------------------------------------------------------------

def _tree_rss_kib(root: int) -> int:
    """VmRSS of `root` and all its descendants (KiB)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            with open(f"/proc/{pid}/status") as f:
                total += next((int(line.split()[1]) for line in f if line.startswith("VmRSS:")), 0)
        except OSError:
            pass
    return total


def timed(cmd: list[str], env: dict[str, str], cwd: Path = ROOT) -> tuple[float, int, str]:
    """Run `cmd`: (seconds, peak RSS of its process tree in KiB, stdout); raises if it fails."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            peak[0] = max(peak[0], _tree_rss_kib(proc.pid))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited with {proc.returncode}:\n{err[-3000:]}")
    return seconds, peak[0], out


def base_env(uri: str, database: str, root: Path = ROOT, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARCHIVERD_", "MONGODB_", "ARCHIVE_"))}
    env.update(MONGODB_URI=uri, MONGODB_DATABASE_NAME=database, PYTHONPATH=str(root), **extra)
    return env


# --- 1 and 2: archive and restore ----------------------------------------------------------------------

def _root(name: str, baseline: Path | None) -> Path:
    """The checkout a pipeline's archiverd comes from: "before ..." runs the baseline's."""
    return baseline if baseline is not None and name.startswith("before") else ROOT


def archive_and_restore(uri: str, work: Path, n: int, per_day: int, reps: int, workers: list[str],
                        rows: dict[str, list], restore_rows: list, baseline: Path | None = None) -> None:
    corpus = corpus_file(work, n, per_day)
    database = f"e2e_{n}"
    client = MongoClient(uri, document_class=RawBSONDocument)
    coll = client[database][COLLECTION]
    cutoff_ms = int((dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=91)).timestamp() * 1000)
    plain_file = work / f"plain-{n}.bson.zst"
    names = ([f"before w={w}" for w in workers] if baseline else []) + [f"archiverd w={w}" for w in workers]
    times: dict[str, list[float]] = {"plain": []} | {name: [] for name in names}
    rss: dict[str, list[tuple[int, int]]] = {name: [] for name in names}
    sizes: dict[str, int] = {}
    segments: list[Path] = []
    for rep in range(reps):
        order = ["plain"] + names
        if rep % 2:
            order.reverse()
        for name in order:
            if fill(coll, corpus) != n:
                raise SystemExit("the collection did not take every document")
            if name == "plain":
                seconds, _, out = timed([sys.executable, str(ROOT / "bench" / "plain_pipeline.py"), "archive", uri,
                                         database, COLLECTION, "timestamp", str(cutoff_ms), str(plain_file)],
                                        base_env(uri, database))
                if int(out) != n:
                    raise SystemExit(f"plain pipeline archived {out.strip()} of {n}")
                sizes[name] = plain_file.stat().st_size
            else:
                w = name.split("=")[1]
                archive_dir = work / f"archives-{n}-{name.replace(' ', '-').replace('=', '')}-{rep}"
                shutil.rmtree(archive_dir, ignore_errors=True)
                archive_dir.mkdir()
                peak_file = work / "peak"
                extra = {"ARCHIVERD_ARCHIVE_DIR": str(archive_dir), "PEAK_RSS_FILE": str(peak_file),
                         "ARCHIVERD_LEASE_SECONDS": "600"}
                if w != "default":
                    extra["ARCHIVERD_WORKERS"] = w
                root = _root(name, baseline)
                seconds, tree, _ = timed([sys.executable, str(root / "tests" / "peak_rss.py"), "run", "--once"],
                                         base_env(uri, database, root=root, **extra), cwd=root)
                rss[name].append((tree, int(peak_file.read_text())))
                files = sorted(archive_dir.rglob("part-*"))
                sizes[name] = sum(p.stat().st_size for p in files if p.suffix == ".mkv" or p.name.endswith(".index.json"))
                segments = [p for p in files if p.suffix == ".mkv"]  # the restore comparison reads the last ones
            left = coll.count_documents({})
            if left:
                raise SystemExit(f"{name}: {left} documents were not deleted")
            times[name].append(seconds)
    plain = statistics.median(times["plain"])
    for name, values in times.items():
        t = statistics.median(values)
        peak = "" if name == "plain" else (f"{max(r[0] for r in rss[name]) / 1024:.0f} MB "
                                          f"(main {max(r[1] for r in rss[name]) / 1024:.0f} MB)")
        rows.setdefault("archive", []).append(
            [f"{n:,}", name, f"{n / t:.0f}", f"{t / plain:.2f}×", f"{sizes[name] / n:,.0f}", peak,
             " ".join(f"{v:.1f}" for v in values)])
    # restore: into an empty collection, alternating
    rnames = ["plain"] + (["before restore"] if baseline else []) + ["archiverd restore"]
    rtimes: dict[str, list[float]] = {name: [] for name in rnames}
    for rep in range(reps):
        for name in (rnames if rep % 2 == 0 else rnames[::-1]):
            coll.drop()
            client[database].create_collection(COLLECTION)
            if name == "plain":
                seconds, _, out = timed([sys.executable, str(ROOT / "bench" / "plain_pipeline.py"), "restore", uri,
                                         database, COLLECTION, str(plain_file)], base_env(uri, database))
            else:
                root = _root(name, baseline)
                seconds, _, out = timed([sys.executable, "-m", "archiverd", "restore", *map(str, segments),
                                         "--to", f"{database}.{COLLECTION}"],
                                        base_env(uri, database, root=root, ARCHIVERD_ARCHIVE_DIR=str(work)), cwd=root)
            got = coll.count_documents({})
            if got != n:
                raise SystemExit(f"{name} restored {got} of {n}")
            rtimes[name].append(seconds)
    plain = statistics.median(rtimes["plain"])
    for name, values in rtimes.items():
        t = statistics.median(values)
        restore_rows.append([f"{n:,}", name, f"{n / t:.0f}", f"{t / plain:.2f}×", " ".join(f"{v:.1f}" for v in values)])
    coll.drop()
    client.drop_database(database)
    client.close()


# --- 3: the CPU stages without a server ----------------------------------------------------------------

def cpu_child(corpus: str, n: int, workers: int) -> None:
    """In its own interpreter: time encode + seal, verify() and decode_video_to_experiences."""
    from archiverd import SegmentReader, decode_video_to_experiences, faults
    from archiverd.format import workers as cpu
    from archiverd.format.writer import SegmentWriter
    cpu.set_default(workers)  # decode_video_to_experiences takes no worker count
    docs = read_docs(Path(corpus), n)
    points: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="archiverd-cpu-") as tmp:
        path = Path(tmp) / "part-0001.mkv"
        warm = Path(tmp) / "warm.mkv"
        with SegmentWriter(warm, workers=workers, vectors=False) as w:  # start the workers outside the timing
            for raw in docs[:5]:
                w.append(raw)
            w.seal()
        started = time.perf_counter()
        with SegmentWriter(path, workers=workers) as w:
            for raw in docs:
                w.append(raw)
            finished = time.perf_counter()
            with faults.installed(lambda point: points.setdefault(point, time.perf_counter())):
                w.seal()
        sealed = time.perf_counter()
        reader = SegmentReader(path)
        t0 = time.perf_counter()
        report = reader.verify(workers=workers)
        t1 = time.perf_counter()
        assert report.ok, report.problems
        data = path.read_bytes()
        t2 = time.perf_counter()
        back = decode_video_to_experiences(data)
        t3 = time.perf_counter()
        assert len(back) == n
    print(json.dumps({"encode": finished - started, "seal": sealed - finished, "write": sealed - started,
                      "seal_verify": points["seal:verified"] - points["seal:video-synced"],
                      "verify": t1 - t0, "decode": t3 - t2}))


def cpu_stages(work: Path, n: int, reps: int, workers: list[str], per_day: int,
               baseline: Path | None = None) -> tuple[list[str], list[list[str]]]:
    """(column names, rows): docs/s of each stage per worker count (and per checkout with a baseline)."""
    corpus = corpus_file(work, max(n, 1000), per_day)
    runs = ([f"before {w}" for w in workers] if baseline else []) + workers
    results: dict[str, dict[str, list[float]]] = {run: {} for run in runs}
    for rep in range(reps):
        for run in (runs if rep % 2 == 0 else runs[::-1]):
            root = _root(run, baseline)
            env = {k: v for k, v in os.environ.items() if not k.startswith("ARCHIVERD_")}
            env["PYTHONPATH"] = str(root)
            out = subprocess.run([sys.executable, str(root / "bench" / "bench_e2e.py"), "--cpu-child", str(corpus),
                                  str(n), run.split()[-1]], env=env, capture_output=True, text=True, cwd=root)
            if out.returncode != 0:
                raise SystemExit(out.stderr[-3000:])
            for key, value in json.loads(out.stdout.splitlines()[-1]).items():
                results[run].setdefault(key, []).append(value)
    rows = []
    first = workers[0]
    for stage, label in (("write", "encode + seal (with its verify)"), ("encode", "encode (append + finish)"),
                         ("seal", "seal (fsync, verify, publish)"),
                         ("seal_verify", "the seal's verify (SHA-256 + decode of everything)"),
                         ("verify", "SegmentReader.verify()"),
                         ("decode", "decode_video_to_experiences")):
        base = statistics.median(results[first][stage])
        cells = [f"{n / statistics.median(results[run][stage]):.0f}" for run in runs]
        speedup = base / statistics.median(results[workers[-1]][stage])
        rows.append([label, *cells, f"{speedup:.2f}×"])
    names = [f"{'before, ' if run.startswith('before') else ''}{run.split()[-1]} worker{'s' * (run.split()[-1] != '1')}"
             for run in runs]
    return names + [f"{first} → {workers[-1]}"], rows


# --- the report ------------------------------------------------------------------------------------------

def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--cpu-child":
        cpu_child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", default="1000,10000", help="comma-separated sizes")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--per-day", type=int, default=10_000, help="documents per day (one segment per day)")
    parser.add_argument("--workers", default="default", help="ARCHIVERD_WORKERS values for run --once")
    parser.add_argument("--cpu-workers", default="1,2", help="worker counts for the CPU stages")
    parser.add_argument("--cpu-docs", type=int, default=600)
    parser.add_argument("--big", action="store_true", help="also 100,000 documents (one repetition)")
    parser.add_argument("--skip-cpu", action="store_true")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="another checkout whose archiverd runs alongside, for a before/after")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    sizes = [int(s) for s in args.docs.split(",") if s]
    workers = [w for w in args.workers.split(",") if w]
    command = "python bench/bench_e2e.py " + " ".join(sys.argv[1:])
    sections = []
    with tempfile.TemporaryDirectory(prefix="archiverd-e2e-") as tmp:
        work = Path(tmp)
        if not args.skip_cpu:
            cpu_workers = [w for w in args.cpu_workers.split(",") if w]
            columns, rows = cpu_stages(work, args.cpu_docs, args.reps, cpu_workers, args.per_day, args.baseline)
            sections.append(f"CPU stages, {args.cpu_docs} EAT documents in one segment, no server (docs/s, medians of "
                            f"{args.reps}):\n\n" + table(["stage", *columns], rows))
            print(sections[-1] + "\n", flush=True)
        server = Server(work / "db").start()
        try:
            rows: dict[str, list] = {}
            restore_rows: list = []
            for n in sizes + ([100_000] if args.big else []):
                archive_and_restore(server.uri, work, n, args.per_day, 1 if n >= 100_000 else args.reps, workers,
                                    rows, restore_rows, args.baseline)
                pipelines = 1 + len(workers) * (2 if args.baseline else 1)
                print(table(["documents", "pipeline", "docs/s", "time vs plain", "bytes/doc", "peak RSS", "runs (s)"],
                            rows["archive"][-pipelines:]), flush=True)
                print(table(["documents", "pipeline", "docs/s", "time vs plain", "runs (s)"],
                            restore_rows[-(3 if args.baseline else 2):]) + "\n", flush=True)
        finally:
            server.stop()
        sections.append("Archive: the plain pipeline (raw BSON → zstd-3 file → fsync → delete_many) against "
                        f"`archiverd run --once`, {args.per_day:,} documents per day (medians):\n\n"
                        + table(["documents", "pipeline", "docs/s", "time vs plain", "bytes/doc", "peak RSS", "runs (s)"],
                                rows["archive"]))
        sections.append("Restore into an empty collection: the plain path (zstd file → insert_many) against "
                        "`archiverd restore` (medians):\n\n"
                        + table(["documents", "pipeline", "docs/s", "time vs plain", "runs (s)"], restore_rows))
    text = f"`{command}`\n\n" + "\n\n".join(sections) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
