"""Prototypes for the weak cases of bench/bench_corpora.py, measured on the codec's payload (the block
bodies), not built into the format: ideas for the lead, with figures.

    python bench/proto_corpora.py [--docs 300] [--ppmd PATH]

1. `dec`: arrays of doubles that are float32 values written as their shortest decimal and parsed
   back (JSON from a float32 serialiser read by Python or JavaScript) are not float32-exact, so
   they miss the vector packing and fall back to per-element columns (and past MAX_ELEMENTS to
   verbatim storage). Each such double is `float(format(float(f), ".{p-1}e"))` for the float32 `f`
   and the smallest p in 1..9 for which that rounds back to `f` (Python's correctly rounded
   formatting: one rule, every platform); a section could carry a flag "values rebuilt as
   decimals". Measured: how many arrays the rule reproduces bit for bit, and the payload of the
   same documents with those arrays packed (the float32 documents' payload + 1 flag byte per section).
2. `ppmd`: the text stream coded with PPMd (pyppmd, var. H as in 7z, order 6..8) instead of
   bzip2/xz, where smaller. Needs pyppmd (`pip install --target DIR pyppmd`, then --ppmd DIR).
3. `blocks`: 16 and 24 MiB blocks instead of 4 MiB (a writer setting, no format change; a
   document's read still needs only its block's head and its own vector sections).

Estimated archive = measured archive x (new payload / old payload): the layers below the codec
(QR, FFV1, parity, framing) scale with the payload (archive / payload was 1.48-1.50 on every
corpus of 300 documents).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1]))


def decimal_of(f: np.float32) -> float:
    """The double a float32 becomes when printed as its shortest decimal and parsed back."""
    x = float(f)
    for p in range(1, 10):
        d = float(format(x, f".{p - 1}e"))
        if np.float32(d) == f:
            return d
    return x  # unreachable: 9 significant digits always round-trip a float32


def payload(docs: list[bytes], block_bytes: int, text_coder=None) -> int:
    """Sum of the block bodies codec 2 makes of `docs`; with `text_coder`, the text stream's stored
    size is replaced by min(stored, text_coder(raw text)) (+ nothing else changes)."""
    from archiverd.format import blockcodec, bsoncolumns
    from bench.bench_corpora import _blocks
    total = 0
    for block in _blocks(docs, block_bytes):
        body = len(blockcodec.encode_block(block).body)
        if text_coder is not None:
            text = bsoncolumns.split(block).text
            stored = len(blockcodec._pack_text(text)[1])
            body += min(0, len(text_coder(text)) - stored)
        total += body
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=300)
    ap.add_argument("--ppmd", default="")
    args = ap.parse_args()
    import bson
    import zstandard
    from archiverd.api import encode_experiences_to_video
    from archiverd.format import writer
    from bench.corpus_more import corpus

    def floor(docs: list[bytes]) -> int:
        return len(zstandard.ZstdCompressor(level=19).compress(b"".join(docs)))

    default = writer.DEFAULT_BLOCK_BYTES
    print(f"prototypes, {args.docs} documents per corpus; estimated archive / floor\n")

    # 1. decimal-rebuilt float32 arrays
    dec = corpus("man", args.docs, embeddings="f32dec")
    arrays = [v for d in dec for v in d["embeddings"].values()]
    rebuilt = sum(all(decimal_of(np.float32(x)) == x for x in a) for a in arrays)
    as_f32 = [bson.encode({**d, "embeddings": {k: np.array(v, dtype=np.float32).astype(np.float64).tolist()
                                               for k, v in d["embeddings"].items()}}) for d in dec]
    raw = [bson.encode(d) for d in dec]
    video, fl = len(encode_experiences_to_video(raw)), floor(raw)
    old, new = payload(raw, default), payload(as_f32, default) + len(arrays)
    print("| idea | corpus | payload / floor | archive / floor |\n|---|---|---|---|")
    print(f"| dec: {rebuilt}/{len(arrays)} arrays rebuilt exactly | man+f32dec | {old / fl:.3f} -> {new / fl:.3f} | "
          f"{video / fl:.3f} -> {video * new / old / fl:.3f} |", flush=True)

    def estimate(idea: str, rows: tuple[str, ...], variants: dict[str, Any]) -> None:
        """One table row per corpus: payload and archive / floor now, then under each variant
        (a name -> payload(docs) function); the archive is estimated as scaling with the payload."""
        for row in rows:
            style, _, emb = row.partition("+")
            docs = [bson.encode(d) for d in corpus(style, args.docs, embeddings=emb or None)]
            video, fl = len(encode_experiences_to_video(docs)), floor(docs)
            old = payload(docs, default)
            cells = [f"{name}: {(new := fn(docs)) / fl:.3f} / {video * new / old / fl:.3f}"
                     for name, fn in variants.items()]
            print(f"| {idea} (payload / archive) | {row} | {old / fl:.3f} / {video / fl:.3f} -> " + ", ".join(cells)
                  + " |", flush=True)

    # 2. PPMd for the text stream
    if args.ppmd:
        sys.path.insert(0, args.ppmd)
        import pyppmd

        def ppmd(order: int, mem: int):
            return lambda raw: pyppmd.compress(raw, max_order=order, mem_size=mem << 20) if raw else b""

        estimate("ppmd", ("man", "intl", "llm", "logs", "short", "long", "man+f32", "llm+f32", "long+f32"),
                 {f"o{order}": (lambda docs, order=order: payload(docs, default, ppmd(order, 256))) for order in (6, 8)})

    # 3. bigger blocks
    estimate("blocks", ("long", "man+f32", "llm+f32", "long+f32"),
             {f"{mib} MiB": (lambda docs, mib=mib: payload(docs, mib << 20)) for mib in (16, 24)})

if __name__ == "__main__":
    main()
