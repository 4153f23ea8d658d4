"""The catalog's store, SQLite against DuckDB, on the catalog's own workload (not a test).

    python3 -m venv /tmp/benchvenv && /tmp/benchvenv/bin/pip install duckdb   # DuckDB is not a dependency
    /tmp/benchvenv/bin/python bench/bench_catalog.py [--docs 100000,1000000] [--lookups 2000]

The catalog's rows are those of store/catalog.py: one per document (segment, number, block, `_id`
key, date) and one per indexed field value. The workload: add one day's segment at a time (the
daemon, after each seal), look documents up by `_id` key and by field value (`get`), list the
segments of a date range (`find --from/--to`), and count documents in a date range. Both stores
are files on disk, written in one transaction per segment, opened afresh for each lookup batch as
a CLI process would. Prints a table; both engines run in this one process, side by side.
"""
from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

try:
    import duckdb
except ImportError:
    sys.exit("duckdb is not installed here (it is not a dependency of archiverd): see the docstring")

SCHEMA = [
    "CREATE TABLE segments(id INTEGER PRIMARY KEY, path TEXT, day TEXT, documents INTEGER, first_date BIGINT, last_date BIGINT)",
    "CREATE TABLE docs(segment INTEGER, n INTEGER, block INTEGER, id_key TEXT, date BIGINT, PRIMARY KEY(segment, n))",
    "CREATE INDEX docs_id ON docs(id_key)",
    "CREATE TABLE fields(segment INTEGER, n INTEGER, field TEXT, value_key TEXT)",
    "CREATE INDEX fields_value ON fields(field, value_key)",
]
DAY_MS = 86_400_000


def rows(docs: int, per_day: int, seed: int):
    rng = random.Random(seed)
    for seg in range(-(-docs // per_day)):
        count = min(per_day, docs - seg * per_day)
        start = 1_700_000_000_000 + seg * DAY_MS
        d = [(seg, n, n // 50, f'["oid","{rng.getrandbits(96):024x}"]', start + n * (DAY_MS // count)) for n in range(count)]
        f = [(seg, n, "experience_id", f'["string","{rng.getrandbits(128):032x}"]') for n in range(count)]
        yield (seg, f"{seg}/part-0001.mkv", f"day-{seg}", count, start, start + DAY_MS - 1), d, f


class SQLite:
    name = "SQLite"

    def __init__(self, path: Path) -> None:
        self.path = path
        db = sqlite3.connect(path, isolation_level=None)
        for stmt in SCHEMA:
            db.execute(stmt)
        db.close()

    def connect(self):
        return sqlite3.connect(self.path, isolation_level=None)

    def add(self, db, seg, docs, fields) -> None:
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO segments VALUES(?,?,?,?,?,?)", seg)
        db.executemany("INSERT INTO docs VALUES(?,?,?,?,?)", docs)
        db.executemany("INSERT INTO fields VALUES(?,?,?,?)", fields)
        db.execute("COMMIT")


class DuckDB:
    name = "DuckDB"

    def __init__(self, path: Path) -> None:
        self.path = path
        db = duckdb.connect(str(path))
        for stmt in SCHEMA:
            db.execute(stmt)
        db.close()

    def connect(self):
        return duckdb.connect(str(self.path))

    def add(self, db, seg, docs, fields) -> None:
        db.execute("BEGIN TRANSACTION")
        db.execute("INSERT INTO segments VALUES(?,?,?,?,?,?)", seg)
        db.executemany("INSERT INTO docs VALUES(?,?,?,?,?)", docs)
        db.executemany("INSERT INTO fields VALUES(?,?,?,?)", fields)
        db.execute("COMMIT")


def measure(engine, docs: int, per_day: int, lookups: int) -> dict[str, float]:
    out: dict[str, float] = {}
    ids, values = [], []
    t0 = time.perf_counter()
    db = engine.connect()
    per_segment = []
    for seg, d, f in rows(docs, per_day, 1):
        s0 = time.perf_counter()
        engine.add(db, seg, d, f)
        per_segment.append(time.perf_counter() - s0)
        ids += [r[3] for r in d[::max(1, per_day // 20)]]
        values += [r[3] for r in f[::max(1, per_day // 20)]]
    db.close()
    out["build s"] = time.perf_counter() - t0
    out["add one segment ms"] = statistics.median(per_segment) * 1000
    out["file MB"] = sum(p.stat().st_size for p in engine.path.parent.glob(engine.path.name + "*")) / 1e6
    rng = random.Random(2)
    picks = [rng.choice(ids) for _ in range(lookups)]
    fpicks = [rng.choice(values) for _ in range(lookups)]
    t0 = time.perf_counter()
    db = engine.connect()
    out["open ms"] = (time.perf_counter() - t0) * 1000
    for label, sql, args in (
            ("by _id us", "SELECT s.path, d.n FROM docs d JOIN segments s ON s.id = d.segment WHERE d.id_key = ?", picks),
            ("by field us", "SELECT f.segment, f.n FROM fields f WHERE f.field = 'experience_id' AND f.value_key = ?", fpicks)):
        times = []
        for key in args:
            s0 = time.perf_counter()
            got = db.execute(sql, [key]).fetchall()
            times.append(time.perf_counter() - s0)
            assert got, key
        out[label] = statistics.median(times) * 1e6
    lo = 1_700_000_000_000 + 10 * DAY_MS
    times = []
    for i in range(200):
        s0 = time.perf_counter()
        db.execute("SELECT path FROM segments WHERE last_date >= ? AND first_date < ? ORDER BY day",
                   [lo + i * DAY_MS, lo + (i + 30) * DAY_MS]).fetchall()
        times.append(time.perf_counter() - s0)
    out["30-day segments us"] = statistics.median(times) * 1e6
    times = []
    for i in range(50):
        s0 = time.perf_counter()
        db.execute("SELECT count(*) FROM docs WHERE date >= ? AND date < ?", [lo + i * DAY_MS, lo + (i + 30) * DAY_MS]).fetchone()
        times.append(time.perf_counter() - s0)
    out["30-day count us"] = statistics.median(times) * 1e6
    db.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--docs", default="100000,1000000")
    ap.add_argument("--per-day", type=int, default=1000)
    ap.add_argument("--lookups", type=int, default=2000)
    args = ap.parse_args()
    print(f"sqlite {sqlite3.sqlite_version}, duckdb {duckdb.__version__}, load {os.getloadavg()[0]:.2f}\n")
    keys = ["build s", "add one segment ms", "file MB", "open ms", "by _id us", "by field us",
            "30-day segments us", "30-day count us"]
    print("| documents | store | " + " | ".join(keys) + " |")
    print("|---|---|" + "---|" * len(keys))
    for docs in map(int, args.docs.split(",")):
        results = {}
        for engine_type in (SQLite, DuckDB):
            with tempfile.TemporaryDirectory() as tmp:
                engine = engine_type(Path(tmp) / "catalog.db")
                results[engine.name] = measure(engine, docs, args.per_day, args.lookups)
        for name, r in results.items():
            print(f"| {docs:,} | {name} | " + " | ".join(f"{r[k]:,.1f}" for k in keys) + " |")
        ratio = {k: results["DuckDB"][k] / results["SQLite"][k] for k in keys}
        print(f"| {docs:,} | DuckDB / SQLite | " + " | ".join(f"{ratio[k]:.2f}x" for k in keys) + " |")


if __name__ == "__main__":
    main()
