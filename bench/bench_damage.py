"""Damage campaign and parity costs: the figures of docs/RELIABILITY.md ("Damage and repair").

    python bench/bench_damage.py [--docs 300] [--flips 100] [--gops 20] [--tails 10] [--rounds 3]

One real EAT segment (four 1536-d embeddings per document) is damaged in fresh copies: single flipped
bits at random offsets, a whole GOP's cluster overwritten, the tail cut by 0.1-1 %. Each copy is read
the way `restore` reads it (parity repair, every document checked against its index SHA-256) and
compared with the original documents: documents restored byte-exact, lost, and false accepts (a
document returned that differs from the original; must be 0). Then parity's cost, side by side in one
run: segment size, encode and verify speed with the default 5 % and with parity off; and
`check --read-data` speed. Prints tables; medians over --rounds.
"""
from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import bson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from archiverd import SegmentReader, write_segment  # noqa: E402
from archiverd.format import index  # noqa: E402
from archiverd.store.check import check  # noqa: E402
from bench.corpus import experiences  # noqa: E402


def _trial(original: bytes, idx_bytes: bytes, damage, workdir: Path, docs: list[bytes], good: set[str]):
    path = workdir / "part-0001.mkv"
    path.write_bytes(damage(bytearray(original)))
    index.path_for(path).write_bytes(idx_bytes)
    reader = SegmentReader(path)
    got = [raw for _, raw in reader.salvage()]
    false = sum(hashlib.sha256(r).hexdigest() not in good for r in got)
    exact = sum(1 for r in got if hashlib.sha256(r).hexdigest() in good)
    return exact, false, reader.last_report


def campaign(args: argparse.Namespace, workdir: Path) -> None:
    now = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
    docs = [bson.encode(d) for d in experiences(args.docs, embeddings=True, now=now, seed=3)]
    good = {hashlib.sha256(d).hexdigest() for d in docs}
    seg = workdir / "orig" / "part-0001.mkv"
    seg.parent.mkdir()
    idx = write_segment(seg, docs)
    original, idx_bytes = seg.read_bytes(), index.path_for(seg).read_bytes()
    clusters = idx["video"]["clusters"]
    rng = random.Random(7)
    trial_dir = workdir / "trial"
    trial_dir.mkdir()
    print(f"segment: {len(docs)} EAT documents, {len(original):,} bytes, {idx['frames']} frames "
          f"({idx['data_frames']} data + {idx['frames'] - idx['data_frames']} parity), {len(clusters)} GOPs\n")

    def flip(data: bytearray) -> bytes:
        pos = rng.randrange(len(data))
        data[pos] ^= 1 << rng.randrange(8)
        return bytes(data)

    def gop(data: bytearray) -> bytes:
        offset, length = clusters[rng.randrange(len(clusters))]
        data[offset:offset + length] = rng.randbytes(length)
        return bytes(data)

    def tail(data: bytearray) -> bytes:
        cut = rng.uniform(0.001, 0.01)
        return bytes(data[:len(data) - int(len(data) * cut)])

    rows = []
    for name, damage, n in (("single flipped bit", flip, args.flips), ("whole GOP lost", gop, args.gops),
                            ("tail cut 0.1-1 %", tail, args.tails)):
        exact = false = complete = repaired = 0
        started = time.perf_counter()
        for _ in range(n):
            got, wrong, report = _trial(original, idx_bytes, damage, trial_dir, docs, good)
            exact += got
            false += wrong
            complete += got == len(docs)
            repaired += report.repaired_frames
            shutil.rmtree(trial_dir)
            trial_dir.mkdir()
        rows.append((name, n, complete, exact, n * len(docs), false, repaired, time.perf_counter() - started))
    print("| damage | trials | segments fully restored | documents restored byte-exact | false accepts | frames rebuilt |")
    print("|---|---|---|---|---|---|")
    for name, n, complete, exact, total, false, repaired, _ in rows:
        print(f"| {name} | {n} | {complete}/{n} | {exact}/{total} ({100 * exact / total:.1f} %) | {false} | {repaired} |")


def costs(args: argparse.Namespace, workdir: Path) -> None:
    now = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
    docs = [bson.encode(d) for d in experiences(args.docs, embeddings=True, now=now, seed=4)]
    bson_bytes = sum(map(len, docs))
    timings: dict[float, dict[str, list[float]]] = {p: {"encode": [], "verify": []} for p in (5.0, 0.0)}
    sizes: dict[float, int] = {}
    for r in range(args.rounds):
        for percent in (5.0, 0.0) if r % 2 == 0 else (0.0, 5.0):  # alternate the order: noise hits both
            path = workdir / f"cost-{percent}-{r}" / "part-0001.mkv"
            path.parent.mkdir()
            started = time.perf_counter()
            idx = write_segment(path, docs, redundancy=percent)
            timings[percent]["encode"].append(time.perf_counter() - started)
            sizes[percent] = idx["video"]["bytes"]
            started = time.perf_counter()
            assert SegmentReader(path).verify().ok
            timings[percent]["verify"].append(time.perf_counter() - started)
    print(f"\nparity cost, {len(docs)} EAT documents ({bson_bytes / len(docs):,.0f} B BSON each), "
          f"median of {args.rounds} rounds, run side by side:\n")
    print("| parity | segment bytes | bytes/doc | parity share of the segment | encode (incl. seal verify) | verify |")
    print("|---|---|---|---|---|---|")
    for percent in (0.0, 5.0):
        enc = statistics.median(timings[percent]["encode"])
        ver = statistics.median(timings[percent]["verify"])
        share = (sizes[percent] - sizes[0.0]) / sizes[percent] * 100
        print(f"| {percent:g} % | {sizes[percent]:,} | {sizes[percent] / len(docs):,.0f} | {share:.2f} % | "
              f"{len(docs) / enc:.0f} docs/s | {len(docs) / ver:.0f} docs/s |")
    e5, e0 = (statistics.median(timings[p]["encode"]) for p in (5.0, 0.0))
    v5, v0 = (statistics.median(timings[p]["verify"]) for p in (5.0, 0.0))
    print(f"\nwith parity / without: size {sizes[5.0] / sizes[0.0]:.4f}x, encode time {e5 / e0:.3f}x, "
          f"verify time {v5 / v0:.3f}x")
    root = workdir / "cost-check"
    for r in range(args.rounds):
        shutil.copytree(workdir / f"cost-5.0-{r}", root / f"{r:04d}")
    result = check([root], read_data=True)
    s = result.summary()
    total = sum(p.stat().st_size for p in root.rglob("*.mkv"))
    print(f"\ncheck --read-data: {s['segments']} segments, {total / 1e6:.1f} MB, {s['documents_read']} documents in "
          f"{s['seconds']:.1f} s: {total / 1e6 / s['seconds']:.1f} MB/s, {s['documents_read'] / s['seconds']:.0f} docs/s; "
          f"all ok: {result.ok}")
    print(json.dumps({"sizes": sizes}, sort_keys=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=300)
    parser.add_argument("--flips", type=int, default=100)
    parser.add_argument("--gops", type=int, default=20)
    parser.add_argument("--tails", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="archiverd-damage-") as tmp:
        campaign(args, Path(tmp))
        costs(args, Path(tmp))


if __name__ == "__main__":
    main()
