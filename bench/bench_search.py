"""Reading a whole archive back: get, find and semantic search on real segments (not a test).

    flock /tmp/archiverd-heavy.lock .venv/bin/python bench/bench_search.py [--docs 10000] [--days 90]
                                                                          [--queries 40] [--keep DIR]

Builds an archive of EAT experiences (bench/corpus.py: four 1536-d random unit embeddings each, the
hard case for quantisation), one segment per day as the daemon writes them (index entries with
their date and indexed fields, a vector sidecar per segment), then prints:

1. the archive: documents, segments, bytes, sidecar bytes against segment bytes, catalog build time;
2. `get` by _id and by experience_id: a fresh `Archive` per lookup (no block cache), and the CLI
   (a whole process) for a few, median and p95;
3. `find`: a filter on text fields over the whole archive and over 30 days, a filter that reads an
   embedding over one day, and `--count`, each on a fresh `Archive`;
4. semantic search: recall@10 against exact cosine (float64, over every archived vector) for random
   queries and for stored vectors plus noise, exact vectors fetched, latency median and p95.

The figures printed are measured in this run on this machine; compare them within the run.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bson  # noqa: E402
import numpy as np  # noqa: E402

import archiverd  # noqa: E402
from archiverd.format import sidecar  # noqa: E402
from archiverd.format.documents import fields_meta  # noqa: E402
from archiverd.format.writer import SegmentWriter  # noqa: E402
from archiverd.query import id_key  # noqa: E402
from archiverd.query.search import SearchStats  # noqa: E402
from archiverd.store import durable, layout  # noqa: E402
from archiverd.store.catalog import Catalog  # noqa: E402
from bench.corpus import EMBEDDING_FIELDS, experience  # noqa: E402

UTC = dt.timezone.utc
SOURCE = {"db": "evolving_agents_db", "collection": "eat_agent_experiences", "date_field": "timestamp",
          "index_fields": ["experience_id"]}
FIELD = f"embeddings.{EMBEDDING_FIELDS[2]}"


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:,.0f} ms median, {pct(values, 95) * 1000:,.0f} ms p95"


def build(root: Path, docs: int, days: int) -> tuple[Path, dict[str, np.ndarray], list[bytes]]:
    """Write the archive; return its collection directory, the FIELD vector of every document by
    _id key, and a sample of documents to look up."""
    coll = root / SOURCE["db"] / SOURCE["collection"]
    start = dt.datetime(2026, 1, 1, tzinfo=UTC)
    per_day = -(-docs // days)
    vectors: dict[str, np.ndarray] = {}
    sample: list[bytes] = []
    name = FIELD.split(".")[1]
    t0 = time.perf_counter()
    n = 0
    for day in range(days):
        if n >= docs:
            break
        label = (start + dt.timedelta(days=day)).strftime("%Y-%m-%d")
        directory = layout.day_dir(coll, label)
        durable.ensure_dir(directory)
        kept = directory / "part-0001.mkv"  # --keep: a day already written is reused, not written again
        path = kept if kept.exists() else layout.next_part(directory)
        writer = None if kept.exists() else SegmentWriter(path, source=SOURCE)
        for i in range(min(per_day, docs - n)):
            when = start + dt.timedelta(days=day, seconds=i * 86400 // per_day)
            doc = experience(n, when=when, seed=5)
            raw = bson.encode(doc)
            if writer is not None:
                writer.append(raw, {"date": when.isoformat(), **fields_meta(raw, SOURCE["index_fields"])})
            vectors[id_key(doc["_id"])] = np.asarray(doc["embeddings"][name])
            if n % max(1, docs // 60) == max(1, docs // 60) // 2:
                sample.append(raw)
            n += 1
        if writer is not None:
            with writer:
                idx = writer.seal()
                durable.replace_synced(sidecar.path_for(path), writer.sidecar(idx))
        print(f"  {'wrote' if writer else 'reused'} {label} ({time.perf_counter() - t0:,.0f} s)", file=sys.stderr)
    return coll, vectors, sample


def exact_top(vectors: dict[str, np.ndarray], keys: list[str], matrix: np.ndarray, query: np.ndarray, k: int) -> list[str]:
    scores = matrix @ (query / np.linalg.norm(query))
    return [keys[i] for i in np.argsort(-scores, kind="stable")[:k]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--queries", type=int, default=40)
    ap.add_argument("--skip-find", action="store_true", help="Leave out the find table (minutes on a large archive).")
    ap.add_argument("--keep", type=Path, help="Build the archive here (or reuse it) instead of a temporary directory.")
    args = ap.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-search-"))
    try:
        t0 = time.perf_counter()
        coll, vectors, sample = build(root, args.docs, args.days)
        build_s = time.perf_counter() - t0
        videos = layout.videos(coll)
        video_bytes = sum(v.stat().st_size for v in videos)
        side_bytes = sum(sidecar.path_for(v).stat().st_size for v in videos)
        index_bytes = sum((v.with_name(v.name.replace(".mkv", ".index.json"))).stat().st_size for v in videos)
        (coll / Catalog.FILE).unlink(missing_ok=True)
        t0 = time.perf_counter()
        with archiverd.Archive(coll):
            pass
        catalog_s = time.perf_counter() - t0
        catalog_bytes = (coll / Catalog.FILE).stat().st_size
        print(f"\n## Archive ({time.strftime('%Y-%m-%d %H:%M')}, load {os.getloadavg()[0]:.2f})\n")
        print("| documents | segments | video | index | sidecars | sidecars / video | catalog | catalog build | archive build |")
        print("|---|---|---|---|---|---|---|---|---|")
        print(f"| {len(vectors):,} | {len(videos)} | {video_bytes / 1e6:,.1f} MB | {index_bytes / 1e6:,.1f} MB | "
              f"{side_bytes / 1e6:,.2f} MB | {side_bytes / video_bytes:.2%} | {catalog_bytes / 1e6:,.2f} MB | "
              f"{catalog_s:.2f} s | {build_s:,.0f} s |")

        # -- get ---------------------------------------------------------------------------------
        by_id, by_field, cli = [], [], []
        for raw in sample:
            doc = bson.decode(raw)
            t0 = time.perf_counter()
            with archiverd.Archive(coll) as archive:
                assert archive.get(doc["_id"], raw=True) == raw
            by_id.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            with archiverd.Archive(coll) as archive:
                assert archive.get_by("experience_id", doc["experience_id"], raw=True) == [raw]
            by_field.append(time.perf_counter() - t0)
        env = {**os.environ, "ARCHIVERD_ARCHIVE_DIR": str(root), "MONGODB_DATABASE_NAME": SOURCE["db"]}
        for raw in sample[:10]:
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "archiverd", "get", str(bson.decode(raw)["_id"])], env=env,
                           check=True, capture_output=True)
            cli.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "archiverd", "--help"], env=env, check=True, capture_output=True)
        startup = time.perf_counter() - t0
        print("\n## get (each on a fresh Archive: catalog lookup, then only the document's frames)\n")
        print("| lookup | n | latency |")
        print("|---|---|---|")
        print(f"| Archive.get(_id) | {len(by_id)} | {ms(by_id)} |")
        print(f"| Archive.get_by('experience_id', ...) | {len(by_field)} | {ms(by_field)} |")
        print(f"| `archiverd get ID` (whole process; `archiverd --help` alone takes {startup * 1000:,.0f} ms) | "
              f"{len(cli)} | {ms(cli)} |")

        # -- find --------------------------------------------------------------------------------
        last = max(bson.decode(r)["timestamp"] for r in sample).replace(tzinfo=UTC)
        day = dt.datetime(2026, 1, 1, tzinfo=UTC) + dt.timedelta(days=args.days // 2)
        cases = [
            ("text fields, whole archive", {"final_outcome": "failure", "tags": "finance"}, None, None),
            ("text fields, 30 days", {"final_outcome": "failure"}, last - dt.timedelta(days=30), None),
            ("every document, whole archive (each decoded whole)", {}, None, None),
            ("an embedding, one day", {f"{FIELD}.0": {"$gt": 0}}, day, day + dt.timedelta(days=1)),
        ]
        print("\n## find (each on a fresh Archive)\n")
        print("| query | segments read | documents matched | time | documents / s |")
        print("|---|---|---|---|---|")
        for label, spec, start, end in cases if not args.skip_find else []:
            t0 = time.perf_counter()
            with archiverd.Archive(coll) as archive:
                count = sum(1 for _ in archive.find(spec, start, end, raw=True))
                segments = len(archive.segments(start, end))
                scanned = sum(i.documents for i in archive.segments(start, end))
            took = time.perf_counter() - t0
            print(f"| {label} | {segments} | {count:,} | {took:,.2f} s | {scanned / took:,.0f} |")
        t0 = time.perf_counter()
        with archiverd.Archive(coll) as archive:
            count = archive.count()
        took = time.perf_counter() - t0
        print(f"| `count()`, whole archive (from the catalog) | 0 | {count:,} | {took:,.2f} s | "
              f"{count / took:,.0f} |")

        # -- search ------------------------------------------------------------------------------
        keys = list(vectors)
        matrix = np.stack([vectors[k] / np.linalg.norm(vectors[k]) for k in keys])
        rng = np.random.default_rng(17)
        rows = {"random": ([], [], []), "stored + noise": ([], [], [])}
        with archiverd.Archive(coll) as archive:  # warm: open the indexes and sidecars once
            archive.search(rng.standard_normal(1536), FIELD, 10)
        for q in range(args.queries):
            kind = "random" if q % 2 else "stored + noise"
            if kind == "random":
                query = rng.standard_normal(1536)
            else:
                base = matrix[rng.integers(len(keys))]
                query = base + rng.standard_normal(1536) * (0.5 / np.sqrt(1536))
            truth = exact_top(vectors, keys, matrix, query, 10)
            stats = SearchStats()
            t0 = time.perf_counter()
            with archiverd.Archive(coll) as archive:
                hits = archive.search(query, FIELD, 10, raw=True, stats=stats)
            took = time.perf_counter() - t0
            got = [id_key(bson.decode(h.document)["_id"]) for h in hits]
            recall, fetched, times = rows[kind]
            recall.append(len(set(got) & set(truth)) / 10)
            fetched.append(stats.fetched)
            times.append(took)
        print(f"\n## search: {FIELD}, k = 10, over {len(keys):,} documents (each on a fresh Archive)\n")
        print("| queries | n | mean recall@10 | min | queries at 1.0 | exact vectors fetched (median) | latency |")
        print("|---|---|---|---|---|---|---|")
        for kind, (recall, fetched, times) in rows.items():
            print(f"| {kind} | {len(recall)} | {statistics.mean(recall):.3f} | {min(recall):.1f} | "
                  f"{sum(r == 1.0 for r in recall) / len(recall):.0%} | {statistics.median(fetched):.0f} | {ms(times)} |")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
