"""Reliability figures for docs/RELIABILITY.md: the loses-nothing harness (tests/reliability.py) run
at scale against a real MongoDB-wire server (SecantusDB in its own process).

    python bench/bench_reliability.py [--runs-per-point 3] [--soak 20] [--corruptions 20]

1. crash matrix: for every named crash point, N runs that SIGKILL `archiverd run --once` there,
   check the invariants, recover, check convergence;
2. soak: runs that start the daemon while a concurrent writer process inserts, updates and deletes,
   SIGKILL it at a random moment, and check the invariants; a clean cycle at the end must converge;
3. corruption campaign: every kind of damage, N times each, against `verify` and `restore`.
Prints a markdown table; asserts nothing itself but exits 1 if any invariant was broken.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bson  # noqa: E402

from archiverd import SegmentError, SegmentReader, write_segment  # noqa: E402
from archiverd.format import index
from bench.corpus import experiences  # noqa: E402
from tests.mongo_server import Server  # noqa: E402
from tests.reliability import CORRUPTIONS, CRASH_POINTS, World, corrupt, crash_cycle_at, kill  # noqa: E402


def crash_matrix(uri: str, work: Path, runs: int) -> tuple[list[str], dict]:
    rows, totals = [], {"runs": 0, "at_risk": 0, "lost": 0, "unsealed": 0, "twice": 0, "unconverged": 0,
                        "recover": []}
    for pattern, nth, meaning in CRASH_POINTS:
        reached = lost = unsealed = twice = bad = 0
        recover_times = []
        for _ in range(runs):
            world = World(uri, work)
            world.seed(expired=14, fresh=3, embeddings_every=7)
            reached += world.crash_once(pattern, nth, daemon="resume_token" in pattern) == -signal.SIGKILL
            after = world.check()
            code, seconds = world.recover()
            final = world.check()
            recover_times.append(seconds)
            lost += len(after.lost) + len(final.lost)
            unsealed += len(after.deleted_unsealed) + len(final.deleted_unsealed)
            twice += len(final.sealed_twice)
            bad += not (code == 0 and final.converged)
            world.close()
        rows.append(f"| `{pattern}@{nth}` | {meaning} | {reached}/{runs} | {lost} | {unsealed} | {twice} | "
                    f"{runs - bad}/{runs} | {statistics.median(recover_times):.1f} s |")
        totals["runs"] += runs
        totals["at_risk"] += 14 * runs
        totals["lost"] += lost
        totals["unsealed"] += unsealed
        totals["twice"] += twice
        totals["unconverged"] += bad + (runs - reached)
        totals["recover"] += recover_times
    return rows, totals


def soak(server: Server, work: Path, runs: int, seed: int = 7) -> dict:
    """A kill can land inside a delete transaction, which holds the lease document's lock; the next
    instance ends that session itself. The server is never restarted to get past it."""
    rng = random.Random(seed)
    world = World(server.uri, work)
    out = {"runs": runs, "at_risk": [], "lost": 0, "unsealed": 0, "twice": 0, "converged": False}
    for r in range(runs):
        world.seed(expired=rng.randint(5, 30), fresh=rng.randint(0, 5), embeddings_every=rng.choice([0, 3, 5]))
        out["at_risk"].append(world.expired_count())
        writer = subprocess.Popen([sys.executable, str(ROOT / "tests" / "writer_process.py"), world.uri,
                                   world.database, "3", str(seed * 1000 + r)], stdout=subprocess.PIPE, text=True,
                                  cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
        daemon = world.start_daemon(ARCHIVERD_POLL_SECONDS="0.5")
        time.sleep(rng.uniform(0.3, 4.0))
        kill(daemon)
        ledger, _ = writer.communicate(timeout=300)
        for key, (_id, sha) in json.loads(ledger).items():
            world.ids[key] = index.from_json(_id)
            world.latest[key] = sha
        report = world.check()
        out["lost"] += len(report.lost)
        out["unsealed"] += len(report.deleted_unsealed)
        out["twice"] += len(report.sealed_twice)
    world.recover()
    final = world.check()
    out["converged"] = final.converged
    out["lost"] += len(final.lost)
    out["twice"] += len(final.sealed_twice)
    world.close()
    return out


def corruption_campaign(work: Path, per_kind: int) -> list[str]:
    """Every kind of damage: detected by verify? How many documents does a salvage read (what
    restore, export and get use) give back byte-exact, and does it ever give back a wrong one?"""
    docs = [bson.encode(d) for d in experiences(4, embeddings=True, seed=3)] + \
           [bson.encode(d) for d in experiences(60, embeddings=False, seed=4)]
    good = set(docs)
    other = work / "other" / "part-0001.mkv"
    other.parent.mkdir(parents=True)
    write_segment(other, docs[4:40])
    rows = []
    for kind in CORRUPTIONS:
        rng = random.Random(hash(kind) & 0xFFFF)
        detected = restored = wrong = 0
        for i in range(per_kind):
            path = work / f"{kind.replace(' ', '-')}-{i}" / "part-0001.mkv"
            path.parent.mkdir(parents=True)
            write_segment(path, docs, block_bytes=150_000)
            corrupt(kind, path, rng, other)
            try:
                reader = SegmentReader(path)
                detected += not reader.verify().ok
                got = [raw for _, raw in reader.salvage()]
            except SegmentError:
                detected += 1
                got = []
            restored += sum(raw in good for raw in got)
            wrong += sum(raw not in good for raw in got)
        rows.append(f"| {kind} | {per_kind} | {detected} | {restored}/{per_kind * len(docs)} | {wrong} |")
    return rows


def server_kill_campaign(work: Path, runs: int) -> dict:
    """The server SIGKILLed right after a delete transaction's commit (SecantusDB then forgets the
    last commits: documents come back), restarted, and a clean cycle run: nothing lost, nothing
    sealed twice."""
    from archiverd import config
    out = {"runs": runs, "lost": 0, "twice": 0, "converged": 0, "came_back": 0}
    for r in range(runs):
        server = Server(work / f"kill-{r}").start()
        world = World(server.uri, work / f"w{r}", ARCHIVERD_BATCH_SIZE="4", ARCHIVERD_LEASE_SECONDS="30",
                      ARCHIVERD_SEGMENT_MAX_DOCS="0")
        try:
            world.seed(expired=16, embeddings_every=4)
            # the server dies right after the 1st, 2nd or 3rd delete transaction's commit
            crash_cycle_at(config.load(environ=world.env()), "delete-batch", lambda: server.stop(signal.SIGKILL),
                           nth=1 + r % 3, release=False)
            server.start()
            out["came_back"] += world.expired_count()
            world.run_once()
            report = world.check()
            out["lost"] += len(report.lost)
            out["twice"] += len(report.sealed_twice)
            out["converged"] += report.converged
        finally:
            world.client.close()
            server.stop()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs-per-point", type=int, default=3)
    ap.add_argument("--soak", type=int, default=20)
    ap.add_argument("--corruptions", type=int, default=20)
    ap.add_argument("--server-kills", type=int, default=6)
    args = ap.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="archiverd-reliability-") as tmp:
        work = Path(tmp)
        server = Server(work / "db").start()
        try:
            rows, totals = crash_matrix(server.uri, work, args.runs_per_point)
            print(f"\n## Crash at every step ({args.runs_per_point} runs per point, SIGKILL)\n")
            print("| point | what was in flight | reached | lost | deleted without verified seal | sealed twice | "
                  "converged after restart | median recovery |")
            print("|---|---|---|---|---|---|---|---|")
            print("\n".join(rows))
            print(f"\n{len(CRASH_POINTS)} points, {totals['runs']} runs, {totals['at_risk']} documents at risk "
                  f"(14 per run); lost {totals['lost']}, deleted without a verified seal {totals['unsealed']}, "
                  f"sealed twice {totals['twice']}, runs that did not reach their point or converge "
                  f"{totals['unconverged']}; recovery median {statistics.median(totals['recover']):.1f} s, "
                  f"max {max(totals['recover']):.1f} s",
                  flush=True)
            soaked = soak(server, work, args.soak)
        finally:
            server.stop()
        risk = soaked["at_risk"]
        print(f"\n## Soak: random SIGKILL of the daemon with a concurrent writer ({soaked['runs']} runs)\n")
        print(f"documents at risk per run: median {statistics.median(risk):.0f}, max {max(risk)}; "
              f"lost {soaked['lost']}; deleted without a verified seal {soaked['unsealed']}; "
              f"sealed twice {soaked['twice']}; converged after a clean cycle: {soaked['converged']}", flush=True)
        killed = server_kill_campaign(work / "server-kill", args.server_kills)
        print(f"\n## The server SIGKILLed right after a delete commit ({killed['runs']} runs)\n")
        print(f"expired documents in MongoDB after the restart (not yet deleted, or back after an acknowledged delete): {killed['came_back']}; lost {killed['lost']}; "
              f"sealed twice {killed['twice']}; converged {killed['converged']}/{killed['runs']}", flush=True)
        corruption_rows = corruption_campaign(work / "corrupt", args.corruptions)
    print(f"\n## Damaged archives ({args.corruptions} of each)\n")
    print("| damage | tried | detected by verify | documents a salvage read gives back byte-exact | wrong documents given back |")
    print("|---|---|---|---|---|")
    print("\n".join(corruption_rows))
    print(f"\n(total wall time {time.monotonic() - started:.0f} s)")
    broken = totals["lost"] + totals["unsealed"] + totals["twice"] + totals["unconverged"] + soaked["lost"] + \
        soaked["unsealed"] + soaked["twice"] + (not soaked["converged"]) + killed["lost"] + killed["twice"] + \
        (killed["converged"] != killed["runs"])
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
