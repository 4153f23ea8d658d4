"""The cost of an S3-API destination, side by side in one run: the seal into a bucket against the
seal into the archive directory, on the same documents, and one document's `get` by ranged GETs
against the same `get` from a local file.

    python bench/bench_s3.py [--docs 400] [--reps 3] [--gets 30] [--out bench/RESULTS-s3.md]

One SecantusDB server and one moto S3-API server (each its own process, on this machine, as the
tests start them), the same EAT documents (bench/corpus.py, ~85 KB of BSON each) in one complete
day. For each repetition, alternating local and s3: the collection is filled with the documents,
then one cycle (`Archiver.run_cycle`, in this process) archives them; its "seal" stage (finish,
fsync, read-back verify, publish -- or upload and confirm) and the whole cycle are timed. Then
`--gets` documents, chosen at random once, are fetched from each copy: with a reader opened for
each (what `archiverd get --segment` does: index, then the document) and through one open reader,
alternating local and s3 per document. Medians; moto keeps objects in memory and sits on
localhost, so the s3 figures are the protocol's cost (HTTP, checksums, read-back), not a network's.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bson  # noqa: E402
from bson.raw_bson import RawBSONDocument  # noqa: E402
from pymongo import MongoClient  # noqa: E402

from archiverd import config  # noqa: E402
from archiverd.format import index  # noqa: E402
from archiverd.progress import Meter  # noqa: E402
from archiverd.service.archiver import Archiver  # noqa: E402
from archiverd.service.source import Source  # noqa: E402
from archiverd.service.state import State  # noqa: E402
from archiverd.store import objects  # noqa: E402
from bench.corpus import experiences  # noqa: E402
from tests.mongo_server import Server  # noqa: E402
from tests.s3_server import S3Server  # noqa: E402


def cycle(cfg: config.Config, docs: list[bytes]) -> tuple[float, float, list[str]]:
    """Fill the collection, archive it in one cycle: (seal seconds, cycle seconds, segments)."""
    client = MongoClient(cfg.uri, document_class=RawBSONDocument)
    coll = client[cfg.database][cfg.collection]
    coll.insert_many([RawBSONDocument(d) for d in docs])
    source, meter = Source(cfg), Meter()
    lease = source.acquire_lease()
    started = time.perf_counter()
    stats = Archiver(cfg, source, State(cfg.state_file), meter=meter).run_cycle(lease)
    seconds = time.perf_counter() - started
    source.release_lease(lease)
    assert stats.deleted == len(docs) and coll.count_documents({}) == 0, stats.summary()
    client.close()
    return meter.stages["seal"], seconds, stats.segments


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=400)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--gets", type=int, default=30)
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-s3-"))
    mongo, s3 = Server(work / "mongo").start(), S3Server().start()
    os.environ.update(s3.environment())
    import boto3
    boto3.client("s3").create_bucket(Bucket="bench")
    day = (dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=100)).replace(hour=1, minute=0, second=0)
    docs = [bson.encode({**d, "timestamp": day + dt.timedelta(seconds=i)})  # one day: one segment
            for i, d in enumerate(experiences(args.docs, embeddings=True, now=day))]
    mb = sum(map(len, docs)) / 1e6
    rows: dict[str, list[tuple[float, float]]] = {"local": [], "s3": []}
    last: dict[str, tuple[config.Config, list[str]]] = {}
    try:
        for rep in range(args.reps):
            for kind in (("local", "s3") if rep % 2 == 0 else ("s3", "local")):
                archive = work / f"{kind}-{rep}"
                archive.mkdir()
                cfg = config.load(environ={"MONGODB_URI": mongo.uri, "MONGODB_DATABASE_NAME": f"b{kind}{rep}",
                                           "ARCHIVERD_ARCHIVE_DIR": str(archive)})
                if kind == "s3":
                    cfg = dataclasses.replace(cfg, archive_url=f"s3://bench/r{rep}")
                seal, total, segments = cycle(cfg, docs)
                rows[kind].append((seal, total))
                last[kind] = (cfg, segments)
        # one document's get from each copy (the last repetition's), alternating per document
        readers = {k: (objects.for_collection(cfg), seg) for k, (cfg, seg) in last.items()}
        store, segs = readers["local"]
        entries = [(name, e) for name in segs for e in store.reader(name).entries()]
        picks = random.Random(7).sample(entries, min(args.gets, len(entries)))
        opened = {k: {name: s.reader(name) for name in seg} for k, (s, seg) in readers.items()}
        gets: dict[str, dict[str, list[float]]] = {k: {"open+get": [], "get": []} for k in readers}
        size = {k: sum(s.size(n) or 0 for n in seg) for k, (s, seg) in readers.items()}
        for name, entry in picks:
            _id = index.from_json(entry["_id"])
            for kind in ("local", "s3"):
                s, _ = readers[kind]
                t = time.perf_counter()
                raw = s.reader(name).get(_id)
                gets[kind]["open+get"].append(time.perf_counter() - t)
                t = time.perf_counter()
                again = opened[kind][name].get(_id)
                gets[kind]["get"].append(time.perf_counter() - t)
                assert raw == again and len(raw) == entry["bytes"]
    finally:
        mongo.stop()
        s3.stop()
    med = {k: (statistics.median(r[0] for r in v), statistics.median(r[1] for r in v)) for k, v in rows.items()}
    lines = [f"`python bench/bench_s3.py {' '.join(sys.argv[1:])}`: {args.docs} EAT documents ({mb:.1f} MB of BSON, "
             f"{len(last['local'][1])} segment(s), {size['local'] / 1e6:.1f} MB of video), {args.reps} repetitions "
             "alternating, medians", "",
             "| destination | seal (verify + publish / upload + confirm) | seal vs local | whole cycle | cycle vs local |",
             "|---|---|---|---|---|"]
    for kind in ("local", "s3"):
        seal, total = med[kind]
        lines.append(f"| {kind} | {seal:.2f} s | {seal / med['local'][0]:.2f}× | {total:.2f} s | "
                     f"{total / med['local'][1]:.2f}× |")
    lines += ["", f"`get` of one document ({len(picks)} documents at random, alternating local / s3):", "",
              "| from | open reader + get (median) | vs local | get, reader open (median) | vs local |",
              "|---|---|---|---|---|"]
    for kind in ("local", "s3"):
        a, b = (statistics.median(gets[kind][m]) for m in ("open+get", "get"))
        a0, b0 = (statistics.median(gets["local"][m]) for m in ("open+get", "get"))
        lines.append(f"| {kind} | {a * 1000:.1f} ms | {a / a0:.2f}× | {b * 1000:.1f} ms | {b / b0:.2f}× |")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(f"# S3-API destination: cost against the archive directory\n\n{text}\n")


if __name__ == "__main__":
    main()
