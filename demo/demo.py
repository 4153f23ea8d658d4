"""`make demo`: archiverd end to end on an embedded MongoDB-wire server with realistic data.

Starts SecantusDB (a separate process, data in a temp dir), seeds a few thousand EAT experiences
spread over the last 150 days (with four 1536-d embeddings each), runs `archiverd run --once`, shows
what was archived per day and `archiverd status`, restores one segment into a scratch collection and
checks the documents are byte-for-byte the originals, reads the archive in place (`get`, `find`,
`search`), then stops the server -- or, with --keep, leaves the server and the archive for you to
try every command on (`make demo KEEP=1`).
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import bson  # noqa: E402
from bson.raw_bson import RawBSONDocument  # noqa: E402
from pymongo import MongoClient  # noqa: E402

from archiverd import SegmentReader, units  # noqa: E402
from archiverd.store import layout  # noqa: E402
from archiverd.format import index  # noqa: E402
from bench.corpus import experiences  # noqa: E402
from tests.mongo_server import Server  # noqa: E402

DOCS = int(os.environ.get("DEMO_DOCS", "2000"))


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    print(f"\n$ archiverd {shlex.join(args)}", flush=True)
    proc = subprocess.run([sys.executable, "-m", "archiverd", *args], env=env, text=True, capture_output=True)
    return proc


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true",
                        help="leave the server running and the archive in place, and print how to use and stop them")
    args = parser.parse_args()
    if args.keep:
        tmp = Path(tempfile.mkdtemp(prefix="archiverd-demo-"))
        server = start(tmp)
        try:
            code = run_demo(server, tmp, keep=True)
        except BaseException:
            server.stop()
            raise
        print(kept(server, tmp))
        return code
    with tempfile.TemporaryDirectory(prefix="archiverd-demo-") as name:
        server = start(Path(name))
        try:
            return run_demo(server, Path(name), keep=False)
        finally:
            server.stop()
            print("\nserver stopped; temporary data removed")


def start(tmp: Path) -> Server:
    server = Server(tmp / "secantus")
    print(f"starting an embedded MongoDB-wire server (SecantusDB) on 127.0.0.1:{server.port}, data in {tmp}")
    return server.start()


def settings(server: Server, tmp: Path) -> dict[str, str]:
    """The demo's settings, as the environment variables a person would export."""
    return {"MONGODB_URI": server.uri, "MONGODB_DATABASE_NAME": "evolving_agents_db",
            "ARCHIVERD_ARCHIVE_DIR": str(tmp / "archives"), "ARCHIVE_THRESHOLD_DAYS": "90"}


def archiverd_exe() -> str:
    """The installed command, as a person in this directory types it (make demo does not activate the venv)."""
    exe = Path(sys.executable).with_name("archiverd")
    return os.path.relpath(exe) if exe.is_relative_to(Path.cwd()) else str(exe)


def kept(server: Server, tmp: Path) -> str:
    """What --keep leaves behind, the commands to try on it, and how to remove it."""
    assert server.proc is not None
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in settings(server, tmp).items())
    tries = ["status", "run --dry-run"]
    segment = next(layout.segments(tmp / "archives" / "evolving_agents_db" / "eat_agent_experiences"), None)
    if segment is not None:
        day = "-".join(segment.parts[-4:-1])
        tries += ["list --segments " + day[:7], f"info {shlex.quote(str(segment))}", "check --read-data-subset 10%",
                  f"export --from {day} --to {day}T23:59:59Z -o day.jsonl"]
    return (f"\nkept: the server (process group {server.proc.pid}) and the archive in {tmp}. In this shell:\n"
            f"  export {exports}\n" + "".join(f"  {archiverd_exe()} {t}\n" for t in tries) +
            f"and every command of docs/guides/archiving.md. To remove them:\n"
            f"  kill -- -{server.proc.pid}; rm -rf {shlex.quote(str(tmp))}")


def run_demo(server: Server, tmp: Path, keep: bool) -> int:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ARCHIVERD_", "MONGODB_", "ARCHIVE_"))}
    env.update(settings(server, tmp))
    (tmp / "archives").mkdir()
    client = MongoClient(server.uri, document_class=RawBSONDocument)
    coll = client.evolving_agents_db.eat_agent_experiences

    started = time.perf_counter()
    originals: dict[str, str] = {}
    batch = []
    for doc in experiences(DOCS, embeddings=True, days=150):
        raw = RawBSONDocument(bson.encode(doc))
        originals[str(doc["_id"])] = hashlib.sha256(raw.raw).hexdigest()
        batch.append(raw)
        if len(batch) == 200:
            coll.insert_many(batch)
            batch = []
    if batch:
        coll.insert_many(batch)
    total_bson = sum(len(d.raw) for d in coll.find())
    print(f"seeded {DOCS} EAT experiences over the last 150 days ({total_bson / 1e6:.0f} MB of BSON) "
          f"in {time.perf_counter() - started:.1f} s")
    coll.create_index("timestamp")
    print("created the index on timestamp that docs/guides/archiving.md recommends: each day's read uses it "
          "(without it,\nevery day archived scans the whole collection; `archiverd config --check` warns)")

    plan = cli(env, "run", "--dry-run")
    print("\n".join(plan.stdout.splitlines()[-2:]))

    t = time.perf_counter()
    run = cli(env, "run", "--once", "--statistics")
    seconds = time.perf_counter() - t
    if run.returncode != 0:
        print(run.stderr)
        return run.returncode
    sealed = [line for line in run.stderr.splitlines() if "event=segment.sealed" in line]
    print(f"{units.plural(len(sealed), 'segment')} sealed, e.g.\n  {sealed[0]}\n  ...\n  {sealed[-1]}")
    statistics = run.stderr[run.stderr.index("statistics:"):].rstrip()
    print(statistics)

    collection_dir = tmp / "archives" / "evolving_agents_db" / "eat_agent_experiences"
    print(f"\narchived per day (first and last 5 of {len(list(layout.segments(collection_dir)))}):")
    print(f"  {'day':<12} {'part':<14} {'docs':>5} {'video KB':>9}")
    rows = []
    archived_bson = video_bytes = archived_docs = 0
    for path in layout.segments(collection_dir):
        idx = index.load(index.path_for(path))
        day = "-".join(path.parent.relative_to(collection_dir).parts)
        rows.append(f"  {day:<12} {path.name:<14} {idx['documents']:>5} {idx['video']['bytes'] / 1e3:>9.0f}")
        archived_bson += sum(d["bytes"] for d in idx["docs"])
        video_bytes += idx["video"]["bytes"]
        archived_docs += idx["documents"]
    on_disk = sum(f.stat().st_size for f in collection_dir.rglob("*") if f.is_file())
    print("\n".join(rows[:5] + ["  ..."] + rows[-5:]))
    print(f"  {archived_docs} documents, {archived_bson / 1e6:.1f} MB of BSON -> {video_bytes / 1e6:.1f} MB of video "
          f"({archived_bson / video_bytes:.1f}x smaller; {on_disk / 1e6:.1f} MB on disk with the indexes and vector "
          f"sidecars),\n  {archived_docs / seconds:.0f} documents/s including seal, verify and delete")

    status = cli(env, "status")
    print(status.stdout.rstrip())

    segment = next(layout.segments(collection_dir))
    restore = cli(env, "restore", str(segment), "--to", "evolving_agents_db.eat_restore_check")
    print(restore.stderr.strip())
    restored = {str(d["_id"]): d.raw for d in client.evolving_agents_db.eat_restore_check.find()}
    from_segment = {str(RawBSONDocument(raw)["_id"]): raw for raw in SegmentReader(segment)}
    identical = (restored == from_segment and
                 all(hashlib.sha256(raw).hexdigest() == originals[_id] for _id, raw in restored.items()))
    print(f"restored {units.plural(len(restored), 'document')} from {segment.relative_to(collection_dir)}: "
          f"{'byte-for-byte identical to the originals' if identical else 'MISMATCH'}")
    verify = cli(env, "verify", str(segment))
    print(verify.stdout.strip())
    reads = [verify] + read_back(env, next(iter(from_segment)))
    client.close()
    if not keep:
        print(f"\nnext: `make demo KEEP=1` leaves the server and the archive running to try every command on (this "
              f"run removes them).\n`{archiverd_exe()} --help` lists the commands; docs/guides/archiving.md installs and "
              "configures archiverd\nagainst your own MongoDB.")
    return 0 if identical and all(p.returncode == 0 for p in reads) else 1


def read_back(env: dict[str, str], some_id: str) -> list[subprocess.CompletedProcess]:
    """The archive read in place, with nothing restored: one document by _id, a query, a semantic search."""
    get = cli(env, "get", some_id)
    print(get.stdout[:150].rstrip() + " ...")
    find = cli(env, "find", "--filter", '{"final_outcome": "failure"}', "--count")
    print(f"{find.stdout.strip()} archived documents match")
    search = cli(env, "search", "--field", "embeddings.output_summary_embedding", "--like", some_id, "-k", "3",
                 "--projection", '{"timestamp": 1}')
    print(search.stdout.strip())
    for proc in (get, find, search):
        if proc.returncode != 0:
            print(proc.stderr.strip())
    return [get, find, search]


if __name__ == "__main__":
    sys.exit(main())
