"""What a segment costs apart from its documents: `archiverd run --once --statistics` over backlogs
of different shapes (documents per day x days, plus newer documents that stay), each on a fresh
test server, then a least-squares fit of the cycle's seconds to

    seconds = per_cycle + per_segment x segments + per_document x documents

    python bench/bench_segment_costs.py                      # 1x30, 13x10, 100x3, 400x1 (about 2 minutes)
    python bench/bench_segment_costs.py 13x60+1200 --index   # the demo's shape, with an index on timestamp

A shape is PER_DAYxDAYS[+NEWER]: NEWER documents dated in the last 60 days stay in the collection
(the test server reads past them on each day's query unless an index serves it). Prints a markdown
table of the stage times (`--statistics`) per shape, then the fit when there are three shapes or more.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import bson  # noqa: E402
import numpy as np  # noqa: E402
from bson.raw_bson import RawBSONDocument  # noqa: E402
from pymongo import MongoClient  # noqa: E402

from bench.bench_e2e import table  # noqa: E402
from bench.corpus import experiences  # noqa: E402
from tests.mongo_server import Server  # noqa: E402

STAGES = ("read", "encode", "seal", "delete", "recover", "other")


def parse(shape: str) -> tuple[int, int, int]:
    m = re.fullmatch(r"(\d+)x(\d+)(?:\+(\d+))?", shape)
    if m is None:
        raise argparse.ArgumentTypeError(f"{shape!r} is not PER_DAYxDAYS[+NEWER]")
    return int(m[1]), int(m[2]), int(m[3] or 0)


def cycle(per_day: int, days: int, newer: int, index: bool) -> dict[str, float]:
    """One `run --once --statistics` over a fresh server holding that backlog: the cycle's seconds
    (from its cycle.done event) and each stage's."""
    with tempfile.TemporaryDirectory(prefix="archiverd-segcost-") as name:
        tmp = Path(name)
        server = Server(tmp / "db").start()
        try:
            client = MongoClient(server.uri, document_class=RawBSONDocument)
            coll = client.evolving_agents_db.eat_agent_experiences
            today = dt.datetime.now(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
            for day in range(days):
                coll.insert_many([RawBSONDocument(bson.encode(d)) for d in experiences(
                    per_day, now=today - dt.timedelta(days=92 + day), days=1, seed=100 + day)])
            docs = [RawBSONDocument(bson.encode(d)) for d in experiences(newer, now=today, days=60, seed=7)]
            for i in range(0, len(docs), 200):
                coll.insert_many(docs[i:i + 200])
            if index:
                coll.create_index("timestamp")
            (tmp / "archive").mkdir()
            env = {k: v for k, v in os.environ.items() if not k.startswith(("ARCHIVERD_", "MONGODB_", "ARCHIVE_"))}
            env.update(MONGODB_URI=server.uri, MONGODB_DATABASE_NAME="evolving_agents_db",
                       ARCHIVERD_ARCHIVE_DIR=str(tmp / "archive"))
            proc = subprocess.run([sys.executable, "-m", "archiverd", "run", "--once", "--statistics"], env=env,
                                  capture_output=True, text=True, cwd=ROOT)
            if proc.returncode != 0 or coll.estimated_document_count() != newer:
                raise SystemExit(f"run --once exited {proc.returncode}:\n{proc.stderr[-3000:]}")
            client.close()
        finally:
            server.stop()
    out = {m[1]: float(m[2]) for m in re.finditer(r"^\s+(\w+)\s+([\d.]+)\s+[\d.]+$", proc.stderr, re.M)}
    out["cycle"] = float(re.search(r"event=cycle\.done .* seconds=([\d.]+)", proc.stderr)[1])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("shapes", nargs="*", type=parse, default=[parse(s) for s in ("1x30", "13x10", "100x3", "400x1")])
    parser.add_argument("--index", action="store_true", help="create an index on timestamp before the cycle")
    args = parser.parse_args()
    rows, fit = [], []
    for per_day, days, newer in args.shapes:
        r = cycle(per_day, days, newer, args.index)
        rows.append([f"{per_day}x{days}" + (f"+{newer}" if newer else ""), str(days), str(per_day * days),
                     f"{r['cycle']:.2f}", f"{per_day * days / r['cycle']:.0f}"] + [f"{r.get(s, 0):.2f}" for s in STAGES])
        fit.append((days, per_day * days, r["cycle"]))
        print(" | ".join(rows[-1]), flush=True)
    print(f"\n`python bench/bench_segment_costs.py {' '.join(r[0] for r in rows)}{' --index' if args.index else ''}`\n")
    print(table(["shape", "segments", "documents", "cycle s", "docs/s", *STAGES], rows))
    if len(fit) >= 3:
        a = np.array([[s, n, 1.0] for s, n, _ in fit])
        (seg, doc, fixed), *_ = np.linalg.lstsq(a, np.array([t for *_, t in fit]), rcond=None)
        print(f"\nfit: {fixed:.2f} s per cycle + {seg * 1000:.1f} ms per segment + {doc * 1000:.2f} ms per document")


if __name__ == "__main__":
    main()
