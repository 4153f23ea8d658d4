"""Archive size on corpora built independently of ours (bench/corpus_more.py), through the public API.

    python bench/bench_corpora.py [--docs 300] [--rows man,man+f32,...] [--streams]

For each corpus (text style, embedding variant) it encodes the documents with
`encode_experiences_to_video`, decodes them with `decode_video_to_experiences` and checks that
`bson.encode` of every decoded document equals the original bytes, then prints archive bytes per
document and the ratio to the floor (zstd level 19 of the concatenated BSON), beside xz -9e and
bzip2 -9 of the same BSON. Two more columns say where the archive's bytes come from: the codec's
payload (the block bodies that `blockcodec.encode_block` makes of the same documents, cut into
blocks as the writer cuts them) against the floor, and the archive against that payload (QR,
FFV1, parity and framing). `--streams` adds, per corpus, each stream's raw and stored size and
method. A benchmark, not a test: it asserts nothing but the round trip.
"""
from __future__ import annotations

import argparse
import bz2
import lzma
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve()
sys.path.insert(0, str(HERE.parents[1]))

ROWS = ["man", "intl", "llm", "logs", "short", "long",
        "man+f32", "intl+f32", "llm+f32", "logs+f32", "short+f32", "long+f32",
        "man+f32raw", "man+f64", "man+f32dec", "man+3x768"]


def _blocks(docs: list[bytes], target: int) -> list[list[bytes]]:
    """The documents cut into blocks as SegmentWriter cuts them (a block ends once it reaches `target`)."""
    out, block, size = [], [], 0
    for d in docs:
        block.append(d)
        size += len(d)
        if size >= target:
            out.append(block)
            block, size = [], 0
    return out + ([block] if block else [])


def _streams(docs: list[bytes]) -> list[tuple[str, int, int, str]]:
    """(stream, raw bytes, stored bytes, method) summed over the blocks, vector sections as one row."""
    from archiverd.format import blockcodec, bsoncolumns, writer
    names = {0: "stored", 1: "bzip2", 2: "xz", 3: "zstd"}
    rows: dict[str, list] = {}
    for block in _blocks(docs, writer.DEFAULT_BLOCK_BYTES):
        s = bsoncolumns.split(block)
        for name, raw, pack in zip(blockcodec.STREAMS, (s.layout, s.text, s.fixed, s.opaque),
                                   (blockcodec._pack_layout, blockcodec._pack_text, blockcodec._pack_fixed,
                                    blockcodec._pack_opaque)):
            method, data = pack(raw)
            row = rows.setdefault(name, [0, 0, set()])
            row[0] += len(raw)
            row[1] += len(data)
            row[2].add(names[method])
        if s.floats.size:
            row = rows.setdefault("vectors", [0, 0, {"planes"}])
            row[0] += 4 * s.floats.size
            k = 0
            for _, _, n in s.vectors:
                row[1] += len(blockcodec._section(s.floats[k:k + n]))
                k += n
    return [(name, raw, stored, "+".join(sorted(m))) for name, (raw, stored, m) in rows.items()]


def measure(row: str, n: int, with_streams: bool) -> dict:
    import bson
    import zstandard
    from bson.codec_options import CodecOptions, DatetimeConversion
    from archiverd.api import decode_video_to_experiences, encode_experiences_to_video
    from archiverd.format import blockcodec, writer
    from bench.corpus_more import corpus

    style, _, emb = row.partition("+")
    docs = [bson.encode(d) for d in corpus(style, n, embeddings=emb or None)]
    raw = b"".join(docs)
    started = time.perf_counter()
    video = encode_experiences_to_video(docs)
    encode = time.perf_counter() - started
    back = decode_video_to_experiences(video)
    options = CodecOptions(tz_aware=True, datetime_conversion=DatetimeConversion.DATETIME_AUTO)
    if [bson.encode(d, codec_options=options) for d in back] != docs:
        raise SystemExit(f"{row}: the round trip through the public API changed a document")
    payload = sum(len(blockcodec.encode_block(b).body) for b in _blocks(docs, writer.DEFAULT_BLOCK_BYTES))
    return {
        "row": row, "docs": len(docs), "bson": len(raw), "video": len(video), "payload": payload, "encode": encode,
        "floor": len(zstandard.ZstdCompressor(level=19).compress(raw)),
        "xz": len(lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME)),
        "bzip2": len(bz2.compress(raw, 9)),
        "streams": _streams(docs) if with_streams else [],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=300)
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--streams", action="store_true")
    args = ap.parse_args()
    from bench.corpus_more import fingerprint
    print(f"independent corpora, {args.docs} documents each, man page set {fingerprint()}\n")
    head = ["corpus", "BSON B/doc", "floor B/doc", "xz -9e", "bzip2 -9", "archive", "payload / floor",
            "archive / payload"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    details = []
    for row in args.rows.split(","):
        m = measure(row, args.docs, args.streams)
        n, floor = m["docs"], m["floor"]
        ratio = m["video"] / floor
        cells = [row, f"{m['bson'] / n:,.0f}", f"{floor / n:,.0f}",
                 *(f"{m[k] / n:,.0f} ({m[k] / floor:.3f})" for k in ("xz", "bzip2")),
                 f"{m['video'] / n:,.0f} ({'**' if ratio > 1.15 else ''}{ratio:.3f}{'**' if ratio > 1.15 else ''})",
                 f"{m['payload'] / floor:.3f}", f"{m['video'] / m['payload']:.3f}"]
        print("| " + " | ".join(cells) + " |", flush=True)
        details.append(m)
    print("\n(x floor in brackets, over 1.15 in bold; floor = zstd -19 of the concatenated BSON; every corpus "
          "round-tripped byte for byte through the public API)")
    if args.streams:
        print("\nper stream, summed over the blocks (raw -> stored bytes per document, method):\n")
        print("| corpus | " + " | ".join(("layout", "text", "fixed", "opaque", "vectors")) + " |")
        print("|---|---|---|---|---|---|")
        for m in details:
            by = {name: (raw, stored, how) for name, raw, stored, how in m["streams"]}
            cells = [f"{by[s][0] / m['docs']:,.0f} -> {by[s][1] / m['docs']:,.0f} {by[s][2]}" if s in by else "–"
                     for s in ("layout", "text", "fixed", "opaque", "vectors")]
            print(f"| {m['row']} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
