"""`erase` and `prune` on an S3-API bucket against the archive directory, side by side in one run,
on the same segment.

    flock /tmp/archiverd-heavy.lock .venv/bin/python bench/bench_s3_removal.py [--docs 300] [--rounds 3]

One day segment of EAT documents (bench/corpus.py, ~85 KB of BSON each, with embeddings) is
written once; for every round and destination a fresh copy of its files is put in place (a local
collection directory, or a new prefix of a bucket on a moto S3-API server in its own process, one
bucket plain and one with versioning on); the copying is not timed. Timed, in this process:
`store.erase.erase` of one document (catalog built, every document read and verified, the rewrite
sealed, uploaded and confirmed, the old segment's objects removed -- every version in a bucket),
and `store.retention.prune` of the whole segment. Destinations alternate in order from round to
round; medians. moto keeps objects in memory on localhost: the figures are the protocol's cost
(requests, checksums, read-back), not a network's.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bson  # noqa: E402

from archiverd import config  # noqa: E402
from archiverd.format.writer import write_segment  # noqa: E402
from archiverd.query.ids import parse_id  # noqa: E402
from archiverd.store import erase, objects, retention  # noqa: E402
from bench.corpus import experiences  # noqa: E402
from tests.s3_server import S3Server  # noqa: E402

DAY = "2020/01/10"
KINDS = ("local", "s3", "s3 versioned")


def place(kind: str, template: Path, work: Path, n: int) -> config.Config:
    """A fresh copy of the template's collection: local, or uploaded under a new prefix."""
    env = {"ARCHIVERD_ARCHIVE_DIR": str(work / f"{kind.replace(' ', '-')}-{n}")}
    if kind != "local":
        env["ARCHIVERD_ARCHIVE_URL"] = f"s3://{'versioned' if 'versioned' in kind else 'plain'}/r{n}"
    cfg = config.load(environ=env)
    if kind == "local":
        shutil.copytree(template, cfg.collection_dir)
        return cfg
    store = objects.for_collection(cfg)
    for path in sorted(p for p in template.rglob("*") if p.is_file()):
        data = path.read_bytes()
        store.put_new(path.relative_to(template).as_posix(), data, hashlib.sha256(data).hexdigest())
    return cfg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    raws = [bson.encode(d) for d in experiences(args.docs, embeddings=True, seed=7)]
    victim = str(bson.decode(raws[args.docs // 2])["_id"])
    work = Path(tempfile.mkdtemp(prefix="bench-s3-removal-"))
    server = S3Server().start()
    os.environ.update(server.environment())
    import boto3
    client = boto3.client("s3")
    client.create_bucket(Bucket="plain")
    client.create_bucket(Bucket="versioned")
    client.put_bucket_versioning(Bucket="versioned", VersioningConfiguration={"Status": "Enabled"})
    times: dict[str, dict[str, list[float]]] = {k: {"erase": [], "prune": []} for k in KINDS}
    try:
        template = work / "template"
        (template / DAY).mkdir(parents=True)
        write_segment(template / DAY / "part-0001.mkv", raws,
                      source={"db": "evolving_agents_db", "collection": "eat_agent_experiences",
                              "date_field": "timestamp"})
        files = list((template / DAY).iterdir())
        segment_bytes = sum(p.stat().st_size for p in files)
        n = 0
        for rnd in range(args.rounds):
            for kind in (KINDS if rnd % 2 == 0 else tuple(reversed(KINDS))):
                n += 1
                cfg = place(kind, template, work, n)
                t = time.perf_counter()
                result = erase.erase(cfg, [(victim, parse_id(victim))], "bench", pending=[])
                times[kind]["erase"].append(time.perf_counter() - t)
                assert result.copies == 1 and result.rewrites[0].replacement, result
                n += 1
                cfg = place(kind, template, work, n)
                t = time.perf_counter()
                pruned = retention.prune(cfg, pending=[], retention_days=365)
                times[kind]["prune"].append(time.perf_counter() - t)
                assert len(pruned.removed) == 1 and not objects.for_collection(cfg).names(DAY + "/")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    med = {k: {op: statistics.median(v) for op, v in ops.items()} for k, ops in times.items()}
    command = " ".join(["flock /tmp/archiverd-heavy.lock .venv/bin/python bench/bench_s3_removal.py", *sys.argv[1:]])
    lines = [f"`{command}`", "",
             f"One day segment of {args.docs} EAT documents ({segment_bytes / 1e6:.1f} MB in {len(files)} files), "
             f"{args.rounds} rounds alternating the order, medians, in-process:", "",
             "| destination | erase one document | erase vs local | prune the segment | prune vs local |",
             "|---|---|---|---|---|"]
    for kind in KINDS:
        e, p = med[kind]["erase"], med[kind]["prune"]
        lines.append(f"| {kind} | {e:.2f} s | {e / med['local']['erase']:.2f}× | {p * 1000:.0f} ms | "
                     f"{p / med['local']['prune']:.2f}× |")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
