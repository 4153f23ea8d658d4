"""Segment format benchmark: size against the zstd-19 floor, encode and verify speed, peak memory.

    python bench/bench_format.py [--docs 2000] [--variants eat,text]

For each corpus variant (EAT experiences with four 1536-d embeddings; the same without embeddings)
it prints bytes per document, the ratio to the floor (zstd level 19 of the concatenated BSON of the
same documents), encode and verify throughput, and the peak RSS of the encoding and verifying
processes. Each phase runs in a fresh process that generates its documents on the fly, so the RSS
is the archiver's own. Not a test: it asserts nothing and prints a table.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bson  # noqa: E402
import zstandard  # noqa: E402

from bench.corpus import experiences  # noqa: E402

VARIANTS = {"eat": True, "text": False}


def _docs(variant: str, n: int):
    return (bson.encode(d) for d in experiences(n, embeddings=VARIANTS[variant], seed=42))


def _encode(variant: str, n: int, path: str) -> dict:
    from archiverd.format.writer import SegmentWriter
    docs = list(_docs(variant, min(n, 64)))  # warm-up outside the timing: tables, codecs
    with SegmentWriter(Path(path + ".warm")) as w:
        for d in docs:
            w.append(d)
        w.finish()
    started = time.perf_counter()
    with SegmentWriter(Path(path)) as writer:
        for d in _docs(variant, n):
            writer.append(d)
        idx = writer.seal(verify=False)  # verification is timed on its own below
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "bytes": idx["video"]["bytes"], "frames": idx["frames"],
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _verify(variant: str, n: int, path: str) -> dict:
    from archiverd.format.reader import SegmentReader
    started = time.perf_counter()
    report = SegmentReader(Path(path)).verify()
    seconds = time.perf_counter() - started
    assert report.ok and report.documents == n, report.problems
    return {"seconds": seconds, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _child(phase: str, variant: str, n: int, path: str) -> dict:
    """Run one phase in a fresh interpreter so that its peak RSS is its own."""
    proc = subprocess.run([sys.executable, __file__, "--phase", phase, "--variants", variant, "--docs", str(n),
                           "--path", path], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        sys.exit(f"{phase} {variant} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.splitlines()[-1])


def _floor(variant: str, n: int) -> tuple[int, int]:
    """(BSON bytes, zstd-19 bytes) of the concatenated documents, streamed."""
    raw = 0
    sink = zstandard.ZstdCompressor(level=19).compressobj()
    size = 0
    for d in _docs(variant, n):
        raw += len(d)
        size += len(sink.compress(d))
    size += len(sink.flush())
    return raw, size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=2000)
    ap.add_argument("--variants", default="eat,text")
    ap.add_argument("--phase", choices=["encode", "verify"], help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.phase:
        print(json.dumps({"encode": _encode, "verify": _verify}[args.phase](args.variants, args.docs, args.path)))
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="archiverd-bench-") as tmp:
        for variant in args.variants.split(","):
            n = args.docs
            path = os.path.join(tmp, f"{variant}.mkv")
            enc = _child("encode", variant, n, path)
            ver = _child("verify", variant, n, path)
            raw, floor = _floor(variant, n)
            rows.append((variant, n, raw / n, floor / n, enc["bytes"] / n, enc["bytes"] / floor, enc["frames"],
                         n / enc["seconds"], n / ver["seconds"], enc["rss_mb"], ver["rss_mb"]))
    cores = os.cpu_count()
    print(f"\nsegment format benchmark ({cores} cores, {args.docs} documents per variant)\n")
    head = ("variant", "docs", "BSON B/doc", "floor B/doc", "archive B/doc", "x floor", "frames",
            "encode doc/s", "verify doc/s", "enc RSS MB", "ver RSS MB")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:,.0f} | {r[3]:,.0f} | {r[4]:,.0f} | {r[5]:.3f} | {r[6]} | "
              f"{r[7]:,.0f} | {r[8]:,.0f} | {r[9]:.0f} | {r[10]:.0f} |")
    print("\nfloor = zstd level 19 of the concatenated BSON of the same documents")


if __name__ == "__main__":
    main()
