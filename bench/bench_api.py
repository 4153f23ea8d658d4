"""Archive size and speed through the public API, per corpus -- the table of issue #12.

    python bench/bench_api.py [--docs 300] [--speed-docs 600] [--reps 3] [--trees A,B]

For each corpus (bench/corpus_text.py styles, with and without embeddings) it encodes the
documents with `encode_experiences_to_video`, decodes them with `decode_video_to_experiences`
(checked against the originals) and prints archive bytes per document and the ratio to the floor
(zstd level 19 of the concatenated BSON), beside xz -9e and bzip2 -9 of the same BSON. Then the
encode and decode speed of the whole pipeline on the EAT variant (random-word text, embeddings).

`--trees` runs every measurement once per source tree (for example a checkout of the previous
version and this one), each in its own interpreter with that tree first on sys.path, interleaved
run by run so that a busy machine slows both alike. Speed figures are medians.
"""
from __future__ import annotations

import argparse
import bz2
import datetime as dt
import json
import lzma
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.timezone.utc)
CORPORA = [("words", False), ("prose", False), ("agent", False), ("words", True), ("prose", True),
           ("agent", True)]


def _docs(style: str, n: int, embeddings: bool) -> list[bytes]:
    import bson
    from bench.corpus import experiences
    from bench.corpus_text import STYLES
    return [bson.encode(d) for d in experiences(n, embeddings=embeddings, seed=42, now=NOW, text=STYLES[style]())]


def _measure(style: str, n: int, embeddings: bool) -> dict:
    """In a child interpreter: one encode and decode through the public API."""
    import bson
    from bson.codec_options import CodecOptions, DatetimeConversion
    from archiverd.api import decode_video_to_experiences, encode_experiences_to_video
    # what the API decodes with, spelled out here so that the script runs against older trees too
    options = CodecOptions(tz_aware=True, datetime_conversion=DatetimeConversion.DATETIME_AUTO)
    docs = _docs(style, n, embeddings)
    encode_experiences_to_video(docs[:10])  # warm-up outside the timing
    started = time.perf_counter()
    video = encode_experiences_to_video(docs)
    encode = time.perf_counter() - started
    started = time.perf_counter()
    back = decode_video_to_experiences(video)
    decode = time.perf_counter() - started
    if [bson.encode(d, codec_options=options) for d in back] != docs:
        raise SystemExit("round trip through the public API changed a document")
    return {"bytes": len(video), "encode": encode, "decode": decode}


def _run(tree: str, style: str, n: int, embeddings: bool) -> dict:
    code = (f"import sys, json, runpy; sys.path.insert(0, {tree!r}); "
            f"measure = runpy.run_path({str(HERE)!r})['_measure']; "
            f"print(json.dumps(measure({style!r}, {n}, {embeddings})))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"{tree} {style}: {proc.stderr}")
    return json.loads(proc.stdout.splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=300)
    ap.add_argument("--speed-docs", type=int, default=600)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--trees", default=str(HERE.parents[1]))
    args = ap.parse_args()
    sys.path.insert(0, str(HERE.parents[1]))
    import zstandard
    trees = args.trees.split(",")
    names = [Path(t).name for t in trees]
    print(f"public API benchmark ({os.cpu_count()} cores, {args.docs} documents per corpus)\n")
    head = ["corpus", "floor B/doc", "xz -9e", "bzip2 -9", *[f"archive ({n})" for n in names]]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for style, embeddings in CORPORA:
        docs = _docs(style, args.docs, embeddings)
        raw = b"".join(docs)
        n = len(docs)
        floor = len(zstandard.ZstdCompressor(level=19).compress(raw))
        cells = [f"{style}{' + emb' if embeddings else ''}", f"{floor / n:,.0f}"]
        for size in (len(lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME)), len(bz2.compress(raw, 9))):
            cells.append(f"{size / n:,.0f} ({size / floor:.3f})")
        for tree in trees:
            size = _run(tree, style, args.docs, embeddings)["bytes"]
            cells.append(f"{size / n:,.0f} ({size / floor:.3f})")
        print("| " + " | ".join(cells) + " |", flush=True)
    print("\n(x floor in brackets; floor = zstd -19 of the concatenated BSON)\n")
    runs: dict[str, list[dict]] = {t: [] for t in trees}
    for _ in range(args.reps):
        for tree in trees:
            runs[tree].append(_run(tree, "words", args.speed_docs, True))
    print(f"EAT variant (words + embeddings), {args.speed_docs} documents, median of {args.reps} interleaved runs:\n")
    print("| tree | encode doc/s | decode doc/s | archive B/doc |")
    print("|---|---|---|---|")
    for tree, name in zip(trees, names):
        enc = statistics.median(args.speed_docs / r["encode"] for r in runs[tree])
        dec = statistics.median(args.speed_docs / r["decode"] for r in runs[tree])
        print(f"| {name} | {enc:,.0f} | {dec:,.0f} | {runs[tree][0]['bytes'] / args.speed_docs:,.0f} |")


if __name__ == "__main__":
    main()
