"""The service in steady state and under memory pressure: the figures of docs/RELIABILITY.md ("The
service, day after day").

    python bench/bench_service.py [--docs 40] [--big 3]

1. Documents expire one per second across a UTC midnight while the daemon runs (the watermark is
   placed just before a midnight): segments per completed day, and the bytes of that day's segment
   against the same documents written as one segment in one go (goal <= 1.1x).
2. Peak RSS of `run --once` over a collection mixing 15 MB documents with ordinary ones (goal < 300 MB),
   read from /proc (VmHWM) of the archiverd process itself.
Runs against its own SecantusDB server process.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bson
from bson import Binary
from bson.raw_bson import RawBSONDocument

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from archiverd import write_segment  # noqa: E402
from archiverd.store import layout  # noqa: E402
from bench.corpus import experience  # noqa: E402
from tests.mongo_server import Server  # noqa: E402
from tests.reliability import ROOT, World, kill  # noqa: E402


def steady_state(server: Server, work: Path, n: int, embeddings: bool) -> None:
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    midnight = (now - dt.timedelta(days=91)).replace(hour=0, minute=0, second=0)
    threshold = (now - midnight).total_seconds() + n / 2 + 5
    world = World(server.uri, work, ARCHIVE_THRESHOLD_DAYS=repr(threshold / 86400), ARCHIVERD_DAY_GRACE_SECONDS="5",
                  ARCHIVERD_POLL_SECONDS="1", ARCHIVERD_SEGMENT_MAX_DOCS="0", ARCHIVERD_BATCH_SIZE="200")
    try:
        docs = [RawBSONDocument(bson.encode(experience(i, when=midnight + dt.timedelta(seconds=s), embeddings=embeddings)))
                for i, s in enumerate(range(-n, 15))]
        world.coll.insert_many(docs)
        daemon = world.start_daemon()
        day = (midnight - dt.timedelta(days=1)).strftime("%Y/%m/%d")
        deadline = time.monotonic() + n + 120
        while time.monotonic() < deadline and not any(world.collection_dir.glob(f"{day}/part-*.index.json")):
            time.sleep(0.5)
        time.sleep(3)
        kill(daemon, signal.SIGTERM)
        parts = [p for p in layout.segments(world.collection_dir) if p.parent.relative_to(world.collection_dir).as_posix() == day]
        size = sum(p.stat().st_size for p in parts)
        expired = [d.raw for d in docs[:n]]
        one = work / f"one-{embeddings}" / "part-0001.mkv"
        one.parent.mkdir()
        idx = write_segment(one, expired)
        print(f"| {'EAT with embeddings' if embeddings else 'EAT text only'} | {n} expiring 1/s | {len(parts)} | "
              f"{size:,} | {idx['video']['bytes']:,} | {size / idx['video']['bytes']:.3f} |")
    finally:
        world.close()


def peak_rss(server: Server, work: Path, big: int) -> None:
    world = World(server.uri, work, ARCHIVERD_SEGMENT_MAX_DOCS="0", ARCHIVERD_LEASE_SECONDS="60")
    try:
        when = world.now - dt.timedelta(days=120)
        for i in range(big):
            world.coll.insert_one(RawBSONDocument(bson.encode({"_id": f"big{i}", "timestamp": when,
                                                               "blob": Binary(os.urandom(15 << 20))})))
        world.seed(expired=60, embeddings_every=2)
        peak = work / "peak"
        started = time.monotonic()
        proc = subprocess.run([sys.executable, str(ROOT / "tests" / "peak_rss.py"), "run", "--once"], cwd=ROOT,
                              env=world.env(PEAK_RSS_FILE=str(peak), PYTHONPATH=str(ROOT)), capture_output=True,
                              text=True, timeout=1800)
        seconds = time.monotonic() - started
        assert proc.returncode == 0, proc.stderr
        print(f"\n`run --once` over {big} documents of 15 MB and 60 EAT documents: peak RSS "
              f"{int(peak.read_text()) / 1024:.0f} MB (goal < 300 MB), {seconds:.0f} s")
    finally:
        world.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=40)
    parser.add_argument("--big", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="archiverd-service-") as tmp:
        server = Server(Path(tmp) / "db").start()
        try:
            print("| documents | arrival | segments for the completed day | bytes | same documents as one segment | ratio |")
            print("|---|---|---|---|---|---|")
            steady_state(server, Path(tmp) / "text", args.docs, embeddings=False)
            steady_state(server, Path(tmp) / "eat", args.docs, embeddings=True)
            peak_rss(server, Path(tmp) / "rss", args.big)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
