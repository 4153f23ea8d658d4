"""Block codec benchmark: payload size against the zstd-19 floor, encode/decode speed, block size.

    python bench/bench_codec.py [--docs 300] [--eat-docs 300] [--reps 5] [--tables size,speed,blocks]

Corpora (EAT-schema documents, bench/corpus.py; text styles from bench/corpus_text.py), each with
and without the four 1536-d embeddings: `words` (random words from a 50-word vocabulary, the old
bench corpus), `prose` (real English sentences, none repeated), `agent` (templated, repetitive
agent output).

Table 1, per corpus: floor = zstd level 19 of the concatenated BSON; xz -9e, bzip2 -9 of the same
BSON; codec 1 and codec 2 block bodies (documents cut into blocks of --block-bytes of BSON as the
segment writer does); and variants of codec 2 with one text compressor forced, to show what the
per-stream choice buys. bz3 (bzip3) and brotli are measured if installed, for reference only.
Table 2: encode and decode speed of codec 1 and codec 2, interleaved, medians of --reps runs, in
CPU seconds of this process (the codecs are single-threaded; CPU time is far steadier than wall time
on a shared machine).
Table 3: codec 2 size by block size. Not a test: it asserts nothing but byte-exact round trips.
"""
from __future__ import annotations

import argparse
import bz2
import datetime as dt
import lzma
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bson  # noqa: E402
import zstandard  # noqa: E402

from archiverd.format import blockcodec  # noqa: E402
from bench import codec_v1  # noqa: E402
from bench.corpus import experiences  # noqa: E402
from bench.corpus_text import STYLES  # noqa: E402

NOW = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.timezone.utc)
MIB = 1 << 20


def corpus(style: str, n: int, embeddings: bool) -> list[bytes]:
    return [bson.encode(d) for d in experiences(n, embeddings=embeddings, seed=42, now=NOW, text=STYLES[style]())]


def blocks(docs: Sequence[bytes], block_bytes: int) -> list[list[bytes]]:
    """Documents cut into blocks the way the segment writer does: a block ends once it holds
    `block_bytes` of BSON."""
    out: list[list[bytes]] = [[]]
    size = 0
    for d in docs:
        out[-1].append(d)
        size += len(d)
        if size >= block_bytes:
            out.append([])
            size = 0
    return [b for b in out if b]


def _forced_text(method: int | None, how: Callable[[bytes], bytes] | None) -> Callable[[bytes], tuple[int, bytes]]:
    """A text packer for codec-2 variants: always `how` (stored under `method`)."""
    def pack(raw: bytes) -> tuple[int, bytes]:
        return (method, how(raw)) if raw else (blockcodec.METHOD_STORED, raw)
    return pack


def _variant(text_pack: Callable[[bytes], tuple[int, bytes]]) -> Callable[[Sequence[bytes]], bytes]:
    """codec 2 with its text packer replaced (bodies stay decodable when the method is standard)."""
    def encode(docs: Sequence[bytes]) -> bytes:
        original = blockcodec._pack_text
        blockcodec._pack_text = text_pack
        try:
            return blockcodec.encode(docs)
        finally:
            blockcodec._pack_text = original
    return encode


def candidates() -> dict[str, Callable[[Sequence[bytes]], bytes]]:
    out = {
        "codec 1": codec_v1.encode,
        "codec 2": blockcodec.encode,
        "c2 text=bzip2": _variant(_forced_text(blockcodec.METHOD_BZIP2, blockcodec._bzip2)),
        "c2 text=xz": _variant(_forced_text(blockcodec.METHOD_XZ, blockcodec._xz)),
        "c2 text=zstd19": _variant(_forced_text(blockcodec.METHOD_ZSTD, lambda b: zstandard.ZstdCompressor(
            level=19).compress(b))),
    }
    try:  # reference only: rejected (see RESULTS-codec.md); bodies are not decodable
        import bz3
        out["c2 text=bz3 (ref)"] = _variant(_forced_text(250, lambda b: bz3.compress(b, 16 * MIB)))
    except ImportError:
        pass
    try:
        import brotli
        out["c2 text=brotli11 (ref)"] = _variant(_forced_text(251, lambda b: brotli.compress(
            b, quality=11, lgwin=24)))
    except ImportError:
        pass
    return out


def size_table(styles: list[str], n_text: int, n_eat: int, block_bytes: int) -> None:
    cands = candidates()
    head = ["corpus", "docs", "BSON B/doc", "floor B/doc", "xz -9e", "bzip2 -9", *cands]
    print("\n### Payload bytes per document (and x floor)\n")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for embeddings in (False, True):
        for style in styles:
            n = n_eat if embeddings else n_text
            docs = corpus(style, n, embeddings)
            raw = b"".join(docs)
            floor = len(zstandard.ZstdCompressor(level=19).compress(raw))
            cells = [f"{style}{' + emb' if embeddings else ''}", str(n), f"{len(raw) / n:,.0f}", f"{floor / n:,.0f}"]
            whole = [len(lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME)), len(bz2.compress(raw, 9))]
            for size in whole:
                cells.append(f"{size / n:,.0f} ({size / floor:.3f})")
            for name, encode in cands.items():
                bodies = [encode(b) for b in blocks(docs, block_bytes)]
                if name in ("codec 1", "codec 2"):
                    assert [d for body in bodies for d in blockcodec.decode(body)] == docs, name
                size = sum(map(len, bodies))
                cells.append(f"{size / n:,.0f} ({size / floor:.3f})")
            print("| " + " | ".join(cells) + " |", flush=True)
    print(f"\nfloor = zstd -19 of the concatenated BSON; xz and bzip2 likewise of the whole corpus; codecs "
          f"on blocks of {block_bytes // MIB} MiB of BSON, bytes of block bodies")


def speed_table(styles: list[str], n_text: int, n_eat: int, block_bytes: int, reps: int) -> None:
    print(f"\n### Speed, documents per CPU second (median of {reps} interleaved runs)\n")
    head = ["corpus", "encode c1", "encode c2", "c2/c1", "decode c1", "decode c2", "c2/c1"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    runs = [("words", True, n_eat)] + [(s, False, n_text) for s in styles]
    for style, embeddings, n in runs:
        groups = blocks(corpus(style, n, embeddings), block_bytes)
        times: dict[str, list[float]] = {k: [] for k in ("e1", "e2", "d1", "d2")}
        bodies = {"1": [codec_v1.encode(g) for g in groups], "2": [blockcodec.encode(g) for g in groups]}
        for c in "12":  # warm-up outside the timing: lookup tables, decoder paths
            blockcodec.decode(bodies[c][0])
        for _ in range(reps):
            for c, encode in (("1", codec_v1.encode), ("2", blockcodec.encode)):
                started = time.process_time()
                for g in groups:
                    encode(g)
                times["e" + c].append(time.process_time() - started)
                started = time.process_time()
                for body in bodies[c]:
                    blockcodec.decode(body)
                times["d" + c].append(time.process_time() - started)
        m = {k: n / statistics.median(v) for k, v in times.items()}
        print(f"| {style}{' + emb' if embeddings else ''} | {m['e1']:,.0f} | {m['e2']:,.0f} | "
              f"{m['e2'] / m['e1']:.2f} | {m['d1']:,.0f} | {m['d2']:,.0f} | {m['d2'] / m['d1']:.2f} |", flush=True)


def block_table(styles: list[str], n_text: int, n_eat: int) -> None:
    sizes = [1, 2, 4, 8, 16]
    print("\n### codec 2 payload by block size (x floor of the whole corpus)\n")
    head = ["corpus", "docs", *[f"{s} MiB" for s in sizes]]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    runs = [(s, False, n_text) for s in styles] + [("words", True, n_eat)]
    for style, embeddings, n in runs:
        docs = corpus(style, n, embeddings)
        floor = len(zstandard.ZstdCompressor(level=19).compress(b"".join(docs)))
        cells = [f"{style}{' + emb' if embeddings else ''}", str(n)]
        for s in sizes:
            cells.append(f"{sum(len(blockcodec.encode(b)) for b in blocks(docs, s * MIB)) / floor:.3f}")
        print("| " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=300, help="documents per text-only corpus")
    ap.add_argument("--eat-docs", type=int, default=300, help="documents per corpus with embeddings")
    ap.add_argument("--block-bytes", type=int, default=4 * MIB)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--styles", default="words,prose,agent")
    ap.add_argument("--big-docs", type=int, default=4000, help="text-only documents for the block-size table")
    ap.add_argument("--big-eat-docs", type=int, default=400, help="EAT documents for the block-size table")
    ap.add_argument("--tables", default="size,speed,blocks")
    args = ap.parse_args()
    styles = args.styles.split(",")
    print(f"block codec benchmark ({os.cpu_count()} cores)")
    tables = args.tables.split(",")
    if "size" in tables:
        size_table(styles, args.docs, args.eat_docs, args.block_bytes)
    if "speed" in tables:
        speed_table(styles, args.docs, max(args.eat_docs // 3, 48), args.block_bytes, args.reps)
    if "blocks" in tables:
        block_table(styles, args.big_docs, args.big_eat_docs)


if __name__ == "__main__":
    main()
