"""How fast archiverd.query matches EAT experiences (~85 KB of BSON each, 4 x 1536-d embeddings).

Prints, per filter, documents matched per second and the time per 10,000 documents, next to the
cost of decoding the same documents fully with `bson.decode` (what a matcher on decoded dicts would
pay first), all measured in one run (medians of --repeat runs).

    .venv/bin/python bench/bench_query.py [--docs 1000] [--passes 10] [--repeat 3]
"""
from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from pathlib import Path

import bson
from bson.codec_options import CodecOptions, DatetimeConversion

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from archiverd.query import Query, compile_filter  # noqa: E402
from bench.corpus import experiences  # noqa: E402

NOW = dt.datetime(2026, 11, 25, tzinfo=dt.timezone.utc)
FILTERS = {
    "date range": {"timestamp": {"$gte": NOW - dt.timedelta(days=100), "$lt": NOW - dt.timedelta(days=50)}},
    "experience_id": {"experience_id": "00000000-0000-4000-8000-000000000000"},
    "outcome + tag": {"final_outcome": "success", "tags": {"$in": ["finance", "eval"]}},
    "array of documents": {"feedback_signals": {"$elemMatch": {"feedback_rating": {"$gte": 4},
                                                               "feedback_source": "user"}}},
    "$or, $exists, $ne": {"$or": [{"token_usage.prompt": {"$gt": 6000}}, {"agent_version": {"$regex": "^1\\.9"}}],
                          "duration_ms": {"$exists": True}, "initiating_agent_id": {"$ne": "Agent_InvoiceParser"}},
    "regex on text": {"primary_goal_description": {"$regex": "invoice.*approval", "$options": "i"}},
    "inside embeddings": {"embeddings.output_summary_embedding.0": {"$gt": 0}},
}
FULL = CodecOptions(tz_aware=True, datetime_conversion=DatetimeConversion.DATETIME_AUTO)


def timed(fn, repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=1000, help="distinct documents (each ~85 KB)")
    ap.add_argument("--passes", type=int, default=10, help="passes over them (documents are re-read each pass)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    docs = [bson.encode(d) for d in experiences(args.docs, embeddings=True, now=NOW, days=150)]
    n = args.docs * args.passes
    mean_kb = sum(map(len, docs)) / len(docs) / 1000
    decode = timed(lambda: [bson.decode(d, FULL) for _ in range(args.passes) for d in docs], args.repeat)
    print(f"{n} matches over {args.docs} EAT documents ({mean_kb:.1f} KB of BSON each), median of {args.repeat}")
    print("| filter | matched | docs/s | s per 10,000 docs | x full bson.decode time |")
    print("|---|---|---|---|---|")
    print(f"| (full bson.decode, for reference) | - | {n / decode:,.0f} | {decode / n * 1e4:.3f} | 1.00 |")
    for name, spec in FILTERS.items():
        f = compile_filter(spec)
        hits = sum(f.matches(d) for d in docs)
        took = timed(lambda: [f.matches(d) for _ in range(args.passes) for d in docs], args.repeat)
        print(f"| {name} | {hits}/{args.docs} | {n / took:,.0f} | {took / n * 1e4:.3f} | {took / decode:.3f} |")
    q = Query(FILTERS["date range"], {"embeddings": 0}, sort=[("timestamp", -1)], limit=20)
    took = timed(lambda: [list(q.run(docs)) for _ in range(args.passes)], args.repeat)
    print(f"| find: date range, sort -timestamp, limit 20, no embeddings | 20 | {n / took:,.0f} | "
          f"{took / n * 1e4:.3f} | {took / decode:.3f} |")


if __name__ == "__main__":
    main()
