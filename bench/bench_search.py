"""Semantic search benchmark: sidecar size, recall@10 against exact cosine, and latency.

    python bench/bench_search.py [--docs 10000] [--segment-docs 1000] [--queries 200] [--gops 1,8,32]
                                 [--codes 1000:1.93,10000:1.93,50000:1.93,10000:1.6,...]

Builds an archive of EAT experiences (bench/corpus.py: four 1536-d random unit embeddings per
document, the hard case for quantisation) as real segments, with a vector sidecar per segment, then
prints:

1. size: sidecar bytes against segment bytes (video, and video + index), also for small segments;
   sidecar build time against segment write time;
2. recall@10 of `vectors.search` against exact cosine search, per query, for random unit queries and
   perturbed stored vectors, at several confidence settings, with the number of exact vectors
   fetched; also what codes alone (no re-rank) or a fixed re-rank depth would give;
3. latency: the stage-1 scan over all documents; the cost of fetching one exact vector from a video;
   and whole searches that really decode the frames each fetched vector would occupy;
4. the size of each vector stored as its own section, against today's block;
5. recall and re-rank depth against archive size and code size (in-memory vectors, no video).

Exact vectors cannot yet be fetched on their own: today a document's floats sit in a ~4 MiB block.
Stage 2 is therefore *emulated* on the layout proposed in RESULTS-search.md: each (document, field)
vector is its own section of SECTION_BYTES in the record stream. The emulated fetch decodes the
real frames (FFV1 + QR + frame CRC) that such a section would occupy in these segments and then
takes the vector from memory; only where the bytes come from is emulated, not what decoding costs.
Segments are written with video.GOP set to each value in --gops (GOP 32 is today's format).
Not a test: it asserts nothing and prints tables.
"""
from __future__ import annotations

import argparse
import bz2
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import av  # noqa: E402
import bson  # noqa: E402
import numpy as np  # noqa: E402
import zstandard  # noqa: E402

from archiverd.format import frame, index, segment, video  # noqa: E402
from archiverd.query import vectors  # noqa: E402
from bench.corpus import EMBEDDING_FIELDS, experiences  # noqa: E402

FIELDS = [f"embeddings.{name}" for name in EMBEDDING_FIELDS]
# one 1536-d float32 vector as its own section: sign/exponent byte plane zstd-compressed (~640 B),
# three mantissa planes stored (4,608 B), ~20 B of framing (measured on this corpus; see RESULTS)
SECTION_BYTES = 5250
CONFIDENCES = (1.0, 1.5, 2.0)
FIXED_DEPTHS = (10, 20, 50, 100, 200, 400)


def _pct(values, p: float) -> float:
    return float(np.percentile(values, p)) if len(values) else float("nan")


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:,.1f}"


class Segment:
    """One written segment: its video, index, sidecar, and the exact vectors (float32, from memory)."""

    def __init__(self, path: Path, idx: dict, sidecar: vectors.Sidecar, exact: dict[str, np.ndarray]) -> None:
        self.path, self.index, self.sidecar, self.exact = path, idx, sidecar, exact

    def section_frames(self, doc: int, field: int) -> tuple[int, int]:
        """First and last frame of where (doc, field)'s section would lie: sections spread evenly
        through the record stream in document order, as a per-document layout would place them."""
        n = self.index["documents"] * len(FIELDS)
        span = self.index["stream_bytes"] - SECTION_BYTES
        offset = (doc * len(FIELDS) + field) * span // max(n - 1, 1)
        return offset // frame.DATA_PER_FRAME, (offset + SECTION_BYTES - 1) // frame.DATA_PER_FRAME


class FrameReader:
    """Decodes frame ranges of one video through a container kept open (one per thread)."""

    def __init__(self, path: Path, segment_id: str) -> None:
        self.container = av.open(str(path), "r")
        self.stream = self.container.streams.video[0]
        self.ticks = 1 / (video.RATE * self.stream.time_base)
        self.segment_id = bytes.fromhex(segment_id)

    def read(self, first: int, last: int) -> bytes:
        self.container.seek(int(first * self.ticks), stream=self.stream, backward=True, any_frame=False)
        data = bytearray()
        for decoded in self.container.decode(self.stream):
            number = round(decoded.pts / self.ticks)
            if number < first:
                continue  # lead-in from the keyframe: FFV1-decoded, not read as QR
            got, _ = frame.from_image(decoded.to_ndarray())
            if got is None or got.seq != number or got.segment_id != self.segment_id:
                raise RuntimeError(f"frame {number} did not decode as expected")
            data += got.data
            if number >= last:
                return bytes(data)
        raise RuntimeError("video ended early")

    def close(self) -> None:
        self.container.close()


class Fetcher:
    """`fetch_exact` for vectors.search: decodes the frames of each candidate's section on a thread
    pool (containers cached per thread), returns the vector from memory."""

    def __init__(self, segments: dict[str, Segment], field: int, workers: int) -> None:
        self.segments, self.field, self.workers = segments, field, workers
        self.local = threading.local()
        self.readers: list[FrameReader] = []
        self.lock = threading.Lock()
        self.pool = ThreadPoolExecutor(workers) if workers > 1 else None

    def _reader(self, key: str) -> FrameReader:
        cache = self.local.__dict__.setdefault("readers", {})
        if key not in cache:
            seg = self.segments[key]
            cache[key] = FrameReader(seg.path, seg.index["segment_id"])
            with self.lock:
                self.readers.append(cache[key])
        return cache[key]

    def _run(self, part: list[tuple[str, int]]) -> None:
        for key, doc in part:
            self._reader(key).read(*self.segments[key].section_frames(doc, self.field))

    def __call__(self, candidates: list[tuple[str, int]]) -> dict:
        ordered = sorted(candidates, key=lambda c: (c[0], c[1]))
        if self.pool is None:
            self._run(ordered)
        else:
            parts = [ordered[i::self.workers] for i in range(self.workers)]
            for fut in [self.pool.submit(self._run, p) for p in parts if p]:
                fut.result()
        name = FIELDS[self.field]
        return {(key, doc): self.segments[key].exact[name][doc] for key, doc in candidates}

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown()
        for reader in self.readers:
            reader.close()


def build_archive(root: Path, n: int, per_segment: int, gop: int, seed: int,
                  keep: bool) -> tuple[dict[str, Segment], dict]:
    """Write segments with the given GOP; returns them and size/time totals."""
    video.GOP = gop
    segments: dict[str, Segment] = {}
    totals = {"video": 0, "index": 0, "sidecar": 0, "write_s": 0.0, "sidecar_s": 0.0, "docs": 0}
    docs_iter = experiences(n, seed=seed)
    for s in range(0, n, per_segment):
        raws = [bson.encode(next(docs_iter)) for _ in range(min(per_segment, n - s))]
        path = root / f"g{gop}-{s // per_segment:04d}.mkv"
        started = time.perf_counter()
        with segment.SegmentWriter(path) as writer:
            for raw in raws:
                writer.append(raw)
            idx = writer.seal(verify=False)  # verification is not what this benchmark measures
        totals["write_s"] += time.perf_counter() - started
        started = time.perf_counter()
        builder = vectors.SidecarBuilder()
        for i, raw in enumerate(raws):
            builder.add(i, raw)
        data = builder.build(len(raws), idx["content_sha256"])
        totals["sidecar_s"] += time.perf_counter() - started
        side_path = vectors.path_for(path)
        side_path.write_bytes(data)
        sidecar = vectors.load(side_path, idx["content_sha256"], idx["documents"])
        totals["video"] += idx["video"]["bytes"]
        totals["index"] += index.path_for(path).stat().st_size
        totals["sidecar"] += len(data)
        totals["docs"] += len(raws)
        exact = {}
        if keep:
            embeddings = [bson.decode(r)["embeddings"] for r in raws]
            exact = {f"embeddings.{name}": np.array([e[name] for e in embeddings], dtype=np.float32)
                     for name in EMBEDDING_FIELDS}
        segments[path.stem] = Segment(path, idx, sidecar, exact)
    return segments, totals


def size_table(totals: dict, small: list[tuple[int, dict]]) -> None:
    print("\n### Sidecar size\n")
    print("| segment docs | segments | video B/doc | index B/doc | sidecar B/doc | sidecar / video | "
          "sidecar / (video + index) |")
    print("|---|---|---|---|---|---|---|")
    for per, t in small + [(None, totals)]:
        d = t["docs"]
        label = f"{per}" if per else f"{t['per_segment']} (the archive)"
        print(f"| {label} | {t['segments']} | {t['video'] / d:,.0f} | {t['index'] / d:,.0f} | "
              f"{t['sidecar'] / d:,.1f} | {100 * t['sidecar'] / t['video']:.2f} % | "
              f"{100 * t['sidecar'] / (t['video'] + t['index']):.2f} % |")
    print(f"\nbuilding the sidecars took {100 * totals['sidecar_s'] / totals['write_s']:.1f} % of the time "
          f"spent writing the segments ({totals['sidecar_s'] / totals['docs'] * 1e3:.2f} ms/doc vs "
          f"{totals['write_s'] / totals['docs'] * 1e3:.2f} ms/doc, same run)")


def make_queries(segments: dict[str, Segment], count: int, seed: int):
    """(kind, field index, query) -- half random unit vectors, half a stored vector plus noise of
    half its length (cosine ~0.9 to it); fields in turn."""
    rng = np.random.default_rng(seed)
    keys = list(segments)
    out = []
    for j in range(count):
        field = j % len(FIELDS)
        noise = rng.standard_normal(1536)
        noise /= np.linalg.norm(noise)
        if j % 2 == 0:
            out.append(("random", field, noise))
        else:
            seg = segments[keys[rng.integers(len(keys))]]
            stored = seg.exact[FIELDS[field]][rng.integers(seg.index["documents"])].astype(np.float64)
            out.append(("perturbed", field, stored + 0.5 * noise))
    return out


def recall_tables(segments: dict[str, Segment], queries) -> dict:
    keys = list(segments)
    sidecars = {k: s.sidecar for k, s in segments.items()}
    offsets = np.cumsum([0] + [segments[k].index["documents"] for k in keys])
    matrices = {f: np.concatenate([segments[k].exact[f] for k in keys]).astype(np.float64) for f in FIELDS}
    gid = {k: int(offsets[i]) for i, k in enumerate(keys)}

    def memory_fetch(field):
        return lambda cands: {(k, d): segments[k].exact[field][d] for k, d in cands}

    rows: dict = {}
    fixed = {kind: {r: [] for r in FIXED_DEPTHS} for kind in ("random", "perturbed")}
    scan_s, search_s = [], []
    per_query = {c: [] for c in CONFIDENCES}
    for kind, fi, q in queries:
        field = FIELDS[fi]
        exact = matrices[field] @ (q / np.linalg.norm(q))
        truth = set(np.argsort(-exact, kind="stable")[:10].tolist())
        started = time.perf_counter()
        parts = [(gid[k], vectors.estimate(s, field, q)) for k, s in sidecars.items()]
        scan_s.append(time.perf_counter() - started)
        ids = np.concatenate([base + docs for base, (docs, _, _) in parts])
        est = np.concatenate([e for _, (_, e, _) in parts])
        order = ids[np.argsort(-est, kind="stable")]
        for r in FIXED_DEPTHS:
            fixed[kind][r].append(len(truth & set(order[:r].tolist())) / 10)
        for conf in CONFIDENCES:
            stats = vectors.SearchStats()
            started = time.perf_counter()
            hits = vectors.search(q, field, 10, sidecars, memory_fetch(field), confidence=conf, stats=stats)
            if conf == vectors.DEFAULT_CONFIDENCE:
                search_s.append(time.perf_counter() - started)
            got = {gid[h.segment] + h.doc for h in hits}
            per_query[conf].append((kind, len(got & truth) / 10, stats.fetched))
            rows.setdefault((conf, kind), []).append((len(got & truth) / 10, stats.fetched))

    n_docs = int(offsets[-1])
    print(f"\n### Recall@10 against exact cosine ({n_docs:,} documents, {len(queries)} queries, k = 10)\n")
    print("| confidence | queries | mean recall@10 | p5 | min | queries with recall 1.0 | fetched median | "
          "fetched p95 |")
    print("|---|---|---|---|---|---|---|---|")
    for conf in CONFIDENCES:
        for kind in ("random", "perturbed"):
            rec = [r for r, _ in rows[(conf, kind)]]
            fet = [f for _, f in rows[(conf, kind)]]
            mark = " (default)" if conf == vectors.DEFAULT_CONFIDENCE else ""
            print(f"| {conf}{mark} | {kind} ({len(rec)}) | {np.mean(rec):.4f} | {_pct(rec, 5):.1f} | {min(rec):.1f} | "
                  f"{np.mean(np.array(rec) == 1.0):.0%} | {statistics.median(fet):.0f} | {_pct(fet, 95):.0f} |")
    print("\nrecall@10 per query at the default confidence (number of queries with each value):\n")
    hist: dict = {}
    for kind, r, _ in per_query[vectors.DEFAULT_CONFIDENCE]:
        hist.setdefault(kind, {}).setdefault(r, 0)
        hist[kind][r] += 1
    values = sorted({r for h in hist.values() for r in h})
    print("| queries | " + " | ".join(f"{v:.1f}" for v in values) + " |")
    print("|---|" + "---|" * len(values))
    for kind, h in hist.items():
        print(f"| {kind} | " + " | ".join(str(h.get(v, 0)) for v in values) + " |")
    print("\nwithout the error-bounded re-rank: recall@10 of the top R by code estimate alone "
          "(R = 10 is codes only; R > 10 is a fixed-depth re-rank)\n")
    print("| queries | " + " | ".join(f"R = {r}" for r in FIXED_DEPTHS) + " |")
    print("|---|" + "---|" * len(FIXED_DEPTHS))
    for kind in ("random", "perturbed"):
        print(f"| {kind} | " + " | ".join(f"{np.mean(fixed[kind][r]):.3f}" for r in FIXED_DEPTHS) + " |")
    fetched = [f for _, _, f in per_query[vectors.DEFAULT_CONFIDENCE]]
    return {"scan_s": scan_s, "search_s": search_s, "fetched": fetched}


def fetch_costs(archives: dict[int, dict[str, Segment]], samples: int, seed: int) -> dict[int, dict]:
    """Per-candidate cost of decoding one section's frames, per GOP: warm (container open) and cold."""
    rng = np.random.default_rng(seed)
    out = {}
    for gop, segments in archives.items():
        seg = next(iter(segments.values()))
        warm, cold, frames = [], [], []
        reader = FrameReader(seg.path, seg.index["segment_id"])
        for _ in range(samples):
            doc, field = int(rng.integers(seg.index["documents"])), int(rng.integers(len(FIELDS)))
            first, last = seg.section_frames(doc, field)
            started = time.perf_counter()
            reader.read(first, last)
            warm.append(time.perf_counter() - started)
            frames.append(last - first + 1 + first % gop)
            started = time.perf_counter()
            fresh = FrameReader(seg.path, seg.index["segment_id"])
            fresh.read(first, last)
            fresh.close()
            cold.append(time.perf_counter() - started)
        reader.close()
        out[gop] = {"warm": warm, "cold": cold, "frames": frames}
    return out


def per_frame_costs(seg: Segment, count: int = 400) -> tuple[float, float]:
    """(FFV1 decode, QR + frame check) seconds per frame, sequential."""
    images, started = [], time.perf_counter()
    for _, image in video.read_frames(seg.path, 0, count):
        images.append(image)
    ffv1 = (time.perf_counter() - started) / len(images)
    started = time.perf_counter()
    for image in images:
        frame.from_image(image)
    return ffv1, (time.perf_counter() - started) / len(images)


def end_to_end(segments: dict[str, Segment], queries, workers: int) -> list[tuple[float, int]]:
    sidecars = {k: s.sidecar for k, s in segments.items()}
    out = []
    fetchers = {fi: Fetcher(segments, fi, workers) for fi in range(len(FIELDS))}
    try:
        for _, fi, q in queries:
            stats = vectors.SearchStats()
            started = time.perf_counter()
            vectors.search(q, FIELDS[fi], 10, sidecars, fetchers[fi], stats=stats)
            out.append((time.perf_counter() - started, stats.fetched))
    finally:
        for f in fetchers.values():
            f.close()
    return out


def get_latency(segments: dict[str, Segment], samples: int, seed: int) -> list[float]:
    """Today's `get` of one document by _id (decodes its whole block)."""
    rng = np.random.default_rng(seed)
    keys = list(segments)
    out = []
    for _ in range(samples):
        seg = segments[keys[rng.integers(len(keys))]]
        entry = seg.index["docs"][rng.integers(seg.index["documents"])]
        reader = segment.SegmentReader(seg.path)
        started = time.perf_counter()
        reader.get(index.from_json(entry["_id"]))
        out.append(time.perf_counter() - started)
    return out


def proposed_get_latency(segments: dict[str, Segment], samples: int, seed: int) -> list[float]:
    """`get` on the proposed layout (emulated): decode the frames of the document's block text (as
    today: one bzip2 stream of all skeletons of the block, read from the real stream and decompressed)
    and of its four vector sections; rebuilding the BSON from them is not timed (microseconds)."""
    rng = np.random.default_rng(seed)
    keys = list(segments)
    out = []
    for _ in range(samples):
        seg = segments[keys[rng.integers(len(keys))]]
        doc = int(rng.integers(seg.index["documents"]))
        block = seg.index["blocks"][seg.index["docs"][doc]["block"]]
        reader = FrameReader(seg.path, seg.index["segment_id"])
        started = time.perf_counter()
        first = block["frames"][0]
        skip = block["offset"] - first * frame.DATA_PER_FRAME
        head = reader.read(first, (block["offset"] + 64) // frame.DATA_PER_FRAME)[skip:]
        text_len = 8 + 4 + 25 + int.from_bytes(head[8 + 4 + 9:8 + 4 + 13], "big")  # record, block no., codec head
        data = reader.read(first, (block["offset"] + text_len - 1) // frame.DATA_PER_FRAME)[skip:skip + text_len]
        bz2.decompress(data[8 + 4 + 25:])
        reader.read(seg.section_frames(doc, 0)[0], seg.section_frames(doc, len(FIELDS) - 1)[1])
        out.append(time.perf_counter() - started)
        reader.close()
    return out


def codes_table(configs: list[tuple[int, float]], queries: int, seed: int) -> None:
    """Recall and re-rank depth against archive size and code rate, at the default confidence: random
    unit vectors built straight into in-memory sidecars of 1,000 documents (no video: this is about
    the codes; the bytes per EAT document are 4 codes plus the presence bits)."""
    print(f"\n### Archive size and code size vs recall and re-rank depth (random unit vectors, {queries} "
          f"random queries per row, default confidence {vectors.DEFAULT_CONFIDENCE})\n")
    print("| documents | bits/dim | code bytes per 1536-d vector | 4 codes / today's 29,889 B per document | "
          "mean recall@10 | p5 | fetched median | fetched p95 |")
    print("|---|---|---|---|---|---|---|---|")
    rng = np.random.default_rng(seed)
    for n, bits in configs:
        x = rng.standard_normal((n, 1536)).astype(np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        x = x.astype(np.float64)
        sidecars = {}
        for s in range(0, n, 1000):
            builder = vectors.SidecarBuilder(bits_per_dim=bits)
            for i, row in enumerate(x[s:s + 1000]):
                builder.add(i, {"embeddings": {"e": row}})
            sidecars[s] = vectors.parse(builder.build(len(x[s:s + 1000]), str(s)))
        recalls, fetched = [], []
        for _ in range(queries):
            q = rng.standard_normal(1536)
            truth = set(np.argsort(-(x @ q), kind="stable")[:10].tolist())
            stats = vectors.SearchStats()
            hits = vectors.search(q, "embeddings.e", 10, sidecars, lambda c: {(s, d): x[s + d] for s, d in c},
                                  stats=stats)
            recalls.append(len(truth & {h.segment + h.doc for h in hits}) / 10)
            fetched.append(stats.fetched)
        width = vectors.Layout.for_dim(1536, bits).code_bytes
        print(f"| {n:,} | {bits} | {width} | {100 * (4 * width + 0.5) / 29_889:.2f} % | {np.mean(recalls):.4f} | "
              f"{_pct(recalls, 5):.1f} | {statistics.median(fetched):.0f} | {_pct(fetched, 95):.0f} |")


def section_table(seg: Segment) -> None:
    """Bytes per 1536-d vector: today's block (one zstd-1 frame over the byte planes of all floats of
    a block) against ways of storing each vector as its own section (what a fetch needs)."""
    vecs = [seg.exact[f][i] for i in range(seg.index["documents"]) for f in FIELDS]
    planes = [np.ascontiguousarray(v.astype("<f4").view(np.uint8).reshape(-1, 4).T) for v in vecs]
    today, first = 0, 0
    for block in seg.index["blocks"]:
        chunk = vecs[first * len(FIELDS):(first + block["documents"]) * len(FIELDS)]
        first += block["documents"]
        today += len(zstandard.ZstdCompressor(level=1, write_checksum=True).compress(
            np.ascontiguousarray(np.concatenate(chunk).astype("<f4").view(np.uint8).reshape(-1, 4).T).tobytes()))
    today /= len(vecs)
    rows = [("today: per block, one zstd-1 frame over the 4 byte planes of all its floats", today, 0.0)]
    one = zstandard.ZstdCompressor(level=1)
    started = time.perf_counter()
    size = np.mean([len(one.compress(p.tobytes())) for p in planes])
    rows.append(("per vector: one zstd-1 frame over its 4 byte planes", size, time.perf_counter() - started))
    for level in (1, 19):
        z = zstandard.ZstdCompressor(level=level, write_content_size=False)
        started = time.perf_counter()
        size = np.mean([len(z.compress(p[3].tobytes())) + 3 * p.shape[1] for p in planes]) + 6  # length + CRC-32
        rows.append((f"per vector: sign/exponent plane zstd-{level}, 3 mantissa planes stored, u16 length + CRC-32",
                     size, time.perf_counter() - started))
    print(f"\n### Storing each vector as its own section ({len(vecs):,} vectors of one segment)\n")
    print("| layout | bytes per vector | vs today | per EAT document (4 vectors) | of today's segment | "
          "compress time per vector |")
    print("|---|---|---|---|---|---|")
    per_doc = seg.index["video"]["bytes"] / seg.index["documents"]
    for name, size, seconds in rows:
        print(f"| {name} | {size:,.0f} | {size - today:+,.0f} | {4 * (size - today):+,.0f} B | "
              f"{100 * 4 * (size - today) / per_doc:+.2f} % | {seconds / len(vecs) * 1e6:,.0f} us |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=10_000)
    ap.add_argument("--segment-docs", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--gops", default="1,8,32", help="GOPs to measure fetch cost for; the first of 8 or the "
                    "first listed is used for the whole archive")
    ap.add_argument("--e2e-queries", type=int, default=60)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--codes", default="1000:1.93,10000:1.93,50000:1.93,10000:1.6,10000:1.75,10000:2.0",
                    help="documents:bits-per-dim rows of the in-memory codes table (empty to skip)")
    args = ap.parse_args()
    gops = [int(g) for g in args.gops.split(",")]
    main_gop = 8 if 8 in gops else gops[0]
    with tempfile.TemporaryDirectory(prefix="archiverd-bench-search-") as tmp:
        root = Path(tmp)
        print(f"# search benchmark: {args.docs:,} EAT documents in segments of {args.segment_docs:,} "
              f"({os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at start)")
        segments, totals = build_archive(root, args.docs, args.segment_docs, main_gop, args.seed, keep=True)
        totals.update(per_segment=args.segment_docs, segments=len(segments))
        small = []
        for per in (10, 100):
            (root / f"small{per}").mkdir()
            _, t = build_archive(root / f"small{per}", per * 3, per, main_gop, args.seed + per, keep=False)
            t.update(segments=3)
            small.append((per, t))
        size_table(totals, small)

        queries = make_queries(segments, args.queries, args.seed)
        rec = recall_tables(segments, queries)

        archives = {main_gop: segments}
        for gop in gops:
            if gop != main_gop:
                (root / f"gop{gop}").mkdir()
                archives[gop], _ = build_archive(root / f"gop{gop}", args.segment_docs, args.segment_docs, gop,
                                                 args.seed, keep=False)
        costs = fetch_costs(archives, 200, args.seed)
        ffv1, qr_s = per_frame_costs(segments[next(iter(segments))])
        e2e = {w: end_to_end(segments, queries[:args.e2e_queries], w) for w in (1, 2)}
        gets = get_latency(segments, 20, args.seed)
        new_gets = proposed_get_latency(segments, 40, args.seed)
        loads = []
        for _ in range(5):
            started = time.perf_counter()
            for seg in segments.values():
                vectors.load(vectors.path_for(seg.path), seg.index["content_sha256"], seg.index["documents"])
            loads.append(time.perf_counter() - started)
        archive_mb = (totals["video"] + totals["index"] + totals["sidecar"]) / 1e6
        first_segment = segments[next(iter(segments))]

    print(f"\n### Latency (archive: {totals['docs']:,} documents, {len(segments)} segments, "
          f"{archive_mb:,.0f} MB of video + index + sidecars; GOP {main_gop})\n")
    print(f"per frame: FFV1 decode {ffv1 * 1e6:,.0f} us, QR read + frame CRC {qr_s * 1e6:,.0f} us "
          f"(sequential, 400 frames)\n")
    print("fetching one exact vector (decode the frames of one section of "
          f"{SECTION_BYTES:,} bytes; {len(costs[main_gop]['warm'])} random sections):\n")
    print("| GOP | frames decoded (mean, incl. lead-in) | container open: median ms | p95 ms | "
          "opened per fetch: median ms | video size vs GOP 32 |")
    print("|---|---|---|---|---|---|")
    sizes = {g: sum(s.index["video"]["bytes"] for s in list(a.values())[:1]) for g, a in archives.items()}
    for gop, c in sorted(costs.items()):
        rel = f"{100 * (sizes[gop] / sizes[32] - 1):+.2f} %" if 32 in sizes else "-"
        print(f"| {gop} | {np.mean(c['frames']):.1f} | {_ms(statistics.median(c['warm']))} | "
              f"{_ms(_pct(c['warm'], 95))} | {_ms(statistics.median(c['cold']))} | {rel} |")
    print("\n(video size compared on the first segment of each GOP variant: the same documents)\n")
    fetched = rec["fetched"]
    scan = rec["scan_s"]
    print("| step | median | p95 |")
    print("|---|---|---|")
    print(f"| load all {len(segments)} sidecars (read, SHA-256, parse: once per process) | "
          f"{_ms(statistics.median(loads))} ms | {_ms(max(loads))} ms (max) |")
    print(f"| stage 1: scan of {totals['docs']:,} codes (estimate over all sidecars) | "
          f"{_ms(statistics.median(scan))} ms | {_ms(_pct(scan, 95))} ms |")
    print(f"| search without video (vectors from memory: scan + ranking + exact cosines) | "
          f"{_ms(statistics.median(rec['search_s']))} ms | {_ms(_pct(rec['search_s'], 95))} ms |")
    print(f"| exact vectors fetched per query | {statistics.median(fetched):.0f} | {_pct(fetched, 95):.0f} |")
    for w, runs in e2e.items():
        t = [s for s, _ in runs]
        print(f"| whole search, GOP {main_gop}, {w} fetch thread{'s' if w > 1 else ''} ({len(t)} queries, real frame "
              f"decoding) | {_ms(statistics.median(t))} ms | {_ms(_pct(t, 95))} ms |")
    for gop, c in sorted(costs.items()):
        if gop == main_gop:
            continue
        est = [s + f * statistics.median(c["warm"]) for s, f in zip(rec["search_s"], fetched)]
        print(f"| whole search, GOP {gop}, 1 thread (modelled: search without video + fetched x median fetch) | "
              f"{_ms(statistics.median(est))} ms | {_ms(_pct(est, 95))} ms |")
    print(f"| today's `get` of one document by _id (decodes its whole block) | {_ms(statistics.median(gets))} ms | "
          f"{_ms(_pct(gets, 95))} ms |")
    print(f"| `get` on the proposed layout (emulated: block text + the document's 4 vector sections) | "
          f"{_ms(statistics.median(new_gets))} ms | {_ms(_pct(new_gets, 95))} ms |")
    section_table(first_segment)
    if args.codes:
        codes_table([(int(n), float(b)) for n, b in (c.split(":") for c in args.codes.split(","))], 100, args.seed)


if __name__ == "__main__":
    main()
