"""Where the time of `run --once` goes: CPU seconds of the server and of the command (with its worker
processes) against the plain pipeline, on one server and the same documents, alternating.

    python bench/e2e_cpu.py [N] [ROUNDS] [--baseline DIR]

On a machine with C cores, a pipeline cannot take less wall time than (its CPU + the server's) / C:
this shows how far `archiverd run --once` is from that floor and from the plain pipeline's time.
The command's CPU is its own plus its reaped children's (the workers are reaped at exit); "main"
is the command's own process alone. `--baseline DIR`: also run the archiverd of another checkout
(e.g. `git archive COMMIT | tar -x -C DIR`), alternating with this one, for a before/after.
"""
from __future__ import annotations

import datetime as dt
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bson.raw_bson import RawBSONDocument  # noqa: E402
from pymongo import MongoClient  # noqa: E402

from bench.bench_e2e import COLLECTION, base_env, corpus_file, fill  # noqa: E402
from tests.mongo_server import Server  # noqa: E402


def process_cpu(pid: int) -> float:
    """utime + stime of a running process, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# runs the CLI and writes the CPU seconds of this process alone (not its workers) to $SELF_CPU_FILE
_WRAP = """import os, resource, sys
from archiverd.cli import main
try:
    main(sys.argv[1:])
finally:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    with open(os.environ["SELF_CPU_FILE"], "w") as out:
        out.write(str(usage.ru_utime + usage.ru_stime))
"""


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--baseline")]
    baseline = next((Path(a.split("=", 1)[1]) for a in sys.argv[1:] if a.startswith("--baseline=")), None)
    n = int(args[0]) if args else 1000
    rounds = int(args[1]) if len(args) > 1 else 2
    pipelines = ["plain", "archiverd run --once"] + (["archiverd before"] if baseline else [])
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory(prefix="archiverd-e2e-cpu-") as tmp:
        work = Path(tmp)
        corpus = corpus_file(work, n, 10_000)
        server = Server(work / "db").start()
        try:
            coll = MongoClient(server.uri, document_class=RawBSONDocument)["cpu"][COLLECTION]
            cutoff_ms = int((dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=91)).timestamp() * 1000)
            print(f"{n:,} EAT documents, {cores} cores\n")
            print("| pipeline | wall s | command CPU s | main CPU s | server CPU s | floor s (CPU / cores) |")
            print("|---|---|---|---|---|---|")
            for r in range(rounds):
                for name in (pipelines if r % 2 == 0 else pipelines[::-1]):
                    fill(coll, corpus)
                    if name == "plain":
                        cmd = [sys.executable, str(ROOT / "bench" / "plain_pipeline.py"), "archive", server.uri, "cpu",
                               COLLECTION, "timestamp", str(cutoff_ms), str(work / "plain.zst")]
                        env = base_env(server.uri, "cpu")
                        root = ROOT
                    else:
                        archive = work / "archives"
                        shutil.rmtree(archive, ignore_errors=True)
                        archive.mkdir()
                        root = baseline if name == "archiverd before" and baseline else ROOT
                        cmd = [sys.executable, "-c", _WRAP, "run", "--once"]
                        env = base_env(server.uri, "cpu", ARCHIVERD_ARCHIVE_DIR=str(archive),
                                       ARCHIVERD_LEASE_SECONDS="600", SELF_CPU_FILE=str(work / "self-cpu"))
                        env["PYTHONPATH"] = str(root)
                    s0, c0, t0 = process_cpu(server.proc.pid), children_cpu(), time.perf_counter()
                    subprocess.run(cmd, env=env, cwd=root, check=True, capture_output=True)
                    wall = time.perf_counter() - t0
                    command, served = children_cpu() - c0, process_cpu(server.proc.pid) - s0
                    own = f"{float((work / 'self-cpu').read_text()):.2f}" if name != "plain" else ""
                    if coll.count_documents({}):
                        raise SystemExit(f"{name} left documents behind")
                    print(f"| {name} | {wall:.2f} | {command:.2f} | {own} | {served:.2f} | "
                          f"{(command + served) / cores:.2f} |", flush=True)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
