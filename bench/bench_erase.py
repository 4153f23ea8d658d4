"""Erasing one document: the cost of rewriting its segment, against what crypto-shredding would cost.

    flock /tmp/archiverd-heavy.lock .venv/bin/python bench/bench_erase.py [--docs 300] [--rounds 3]

Builds one day segment of EAT documents (plain, and encrypted), then times `archiverd erase ID
--reason ...` (a whole process, as a person runs it: reads and verifies every document, seals and
verifies the new segment, removes the old one) for one document, median of --rounds fresh copies.
For the alternative, per-document keys destroyed to erase (crypto-shredding), it measures what
every document would carry and every read would pay: a data key wrapped by AES-256-GCM (bytes per
document, against the segment's bytes per document) and one unwrap. Prints tables.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bson

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from archiverd.crypto import aead, envelope, keyring  # noqa: E402
from archiverd.crypto.keyring import MasterKey  # noqa: E402
from archiverd.format.writer import write_segment  # noqa: E402
from bench.corpus import experiences  # noqa: E402


def _erase_once(template: Path, victim: str, env: dict[str, str]) -> float:
    with tempfile.TemporaryDirectory(prefix="archiverd-bench-") as tmp:
        root = Path(tmp) / "archives"
        shutil.copytree(template, root)
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "archiverd", "erase", victim, "--reason", "bench"],
                              capture_output=True, text=True, env={**os.environ, **env,
                                                                   "ARCHIVERD_ARCHIVE_DIR": str(root)})
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(proc.stderr)
        return seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    raws = [bson.encode(d) for d in experiences(args.docs, embeddings=True, seed=7)]
    victim = str(bson.decode(raws[args.docs // 2])["_id"])
    rows = []
    with tempfile.TemporaryDirectory(prefix="archiverd-bench-") as work:
        key_file = Path(work) / "master.key"
        subprocess.run([sys.executable, "-m", "archiverd", "key", "init"], check=True, capture_output=True,
                       env={**os.environ, "ARCHIVERD_ENCRYPTION_KEY_FILE": str(key_file)})
        master = keyring.load(key_file).active
        for name, extra, env in (("plain", {}, {}),
                                 ("encrypted", {"encryption": master},
                                  {"ARCHIVERD_ENCRYPTION_KEY_FILE": str(key_file)})):
            template = Path(work) / name
            day = template / "evolving_agents_db" / "eat_agent_experiences" / "2025" / "01" / "10"
            day.mkdir(parents=True)
            write_segment(day / "part-0001.mkv", raws,
                          source={"db": "evolving_agents_db", "collection": "eat_agent_experiences",
                                  "date_field": "timestamp"}, **extra)
            segment_bytes = sum(f.stat().st_size for f in day.iterdir())
            times = [_erase_once(template, victim, env) for _ in range(args.rounds)]
            rows.append((name, statistics.median(times), segment_bytes))
    print(f"erase one document from a day segment of {args.docs} EAT documents (median of {args.rounds}; "
          "the whole command: read and verify all, seal and verify the rewrite, remove the old segment)\n")
    print("| archive | erase s | documents rewritten per s | segment bytes |")
    print("|---|---|---|---|")
    for name, seconds, size in rows:
        print(f"| {name} | {seconds:.2f} | {(args.docs - 1) / seconds:,.0f} | {size:,} |")
    master = MasterKey.generate()
    ring = keyring.Keyring([master])
    record = envelope.wrap(master, os.urandom(aead.KEY_BYTES), "doc")
    wrapped = len(bytes.fromhex(record["nonce"])) + len(bytes.fromhex(record["ciphertext"]))  # raw, binary
    samples = []
    for _ in range(2000):
        t0 = time.perf_counter()
        envelope.unwrap(ring, record)
        samples.append(time.perf_counter() - t0)
    per_doc = rows[0][2] / args.docs
    print("\ncrypto-shredding instead (one data key per document, wrapped by the master key):\n")
    print(f"| what | figure |\n|---|---|\n| wrapped key per document | {wrapped} B = "
          f"{wrapped / per_doc * 100:.2f} % of the {per_doc:,.0f} B a document takes in a segment |\n"
          f"| unwrap per document read | {statistics.median(samples) * 1e6:.1f} µs (median of 2,000) |\n"
          f"| erase | destroy one key -- but the ciphertext stays, and stays only as safe as that key's "
          f"destruction (every backup of the key file) |")


if __name__ == "__main__":
    main()
