"""Which AEAD for encryption at rest: AES-256-GCM, ChaCha20-Poly1305 (and AES-256-GCM-SIV for reference).

    python bench/bench_crypto.py [--repeat 15] [--docs 120]

Sizes that matter to archiverd: a 4 MiB compressed block (the payload), a 1 MB index, a 5 KB
vector-sidecar section. Every cipher seals and opens every size, interleaved in one process, and the
table shows medians; the same measurement runs a second time in a child process with AES-NI and
carry-less multiply hidden from OpenSSL (OPENSSL_ia32cap), so both machines -- with and without AES
instructions -- are measured side by side in one run. Last, the cost of sealing the bytes one real
segment holds, against the time to encode that segment (the goal: encryption costs <= 5 %).
Not a test: it asserts nothing and prints tables.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESGCMSIV, ChaCha20Poly1305  # noqa: E402

CIPHERS = {"AES-256-GCM": AESGCM, "ChaCha20-Poly1305": ChaCha20Poly1305, "AES-256-GCM-SIV": AESGCMSIV}
SIZES = {"4 MiB block": 4 << 20, "1 MB index": 1_000_000, "5 KB section": 5_000}
# CPUID.1: bits 57 (AES-NI) and 33 (PCLMULQDQ); CPUID.7 (second word): VAES and VPCLMULQDQ (ECX 9, 10)
NO_AESNI = "~0x200000200000000:~0x60000000000"


def _measure(repeat: int) -> dict[str, dict[str, dict[str, float]]]:
    """{cipher: {size: {"seal": MB/s, "open": MB/s}}}, medians over `repeat` interleaved rounds."""
    key, nonce, aad = os.urandom(32), os.urandom(12), b"archiverd bench"
    plain = {name: os.urandom(size) for name, size in SIZES.items()}
    times: dict[tuple[str, str, str], list[float]] = {}
    for _ in range(repeat):
        for cname, cls in CIPHERS.items():
            aead = cls(key)
            for sname, data in plain.items():
                loops = max(1, (4 << 20) // len(data))  # time ~4 MiB per sample for every size
                t0 = time.perf_counter()
                for _ in range(loops):
                    sealed = aead.encrypt(nonce, data, aad)
                t1 = time.perf_counter()
                for _ in range(loops):
                    aead.decrypt(nonce, sealed, aad)
                t2 = time.perf_counter()
                times.setdefault((cname, sname, "seal"), []).append((t1 - t0) / loops)
                times.setdefault((cname, sname, "open"), []).append((t2 - t1) / loops)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for (cname, sname, op), samples in times.items():
        out.setdefault(cname, {}).setdefault(sname, {})[op] = SIZES[sname] / statistics.median(samples) / 1e6
    return out


def _segment_cost(docs: int, repeat: int) -> dict[str, float]:
    """Encode a real EAT segment, then seal its payload (blocks) and index with AES-256-GCM."""
    import bson

    from archiverd.format.writer import write_segment
    from bench.corpus import experiences
    raws = [bson.encode(d) for d in experiences(docs, embeddings=True, seed=42)]
    with tempfile.TemporaryDirectory(prefix="archiverd-bench-") as tmp:
        started = time.perf_counter()
        idx = write_segment(Path(tmp) / "part-0001.mkv", raws)
        encode = time.perf_counter() - started
        video = (Path(tmp) / "part-0001.mkv").stat().st_size
        index_bytes = (Path(tmp) / "part-0001.index.json").stat().st_size
    blocks = [b["length"] for b in idx["blocks"]]
    key, aad = os.urandom(32), b"x"
    payload = [os.urandom(n) for n in blocks] + [os.urandom(index_bytes)]
    samples = []
    for _ in range(repeat):
        aead = AESGCM(key)
        t0 = time.perf_counter()
        for i, data in enumerate(payload):
            aead.encrypt(i.to_bytes(12, "big"), data, aad)
        samples.append(time.perf_counter() - t0)
    seal = statistics.median(samples)
    return {"documents": docs, "encode_s": encode, "seal_s": seal, "blocks": len(blocks),
            "payload_bytes": sum(blocks), "index_bytes": index_bytes, "video_bytes": video,
            "tag_bytes": 16 * len(payload)}


def _end_to_end(docs: int, rounds: int) -> dict[str, dict[str, float]]:
    """The same EAT documents sealed as a plain (format 2) and an encrypted (format 3) segment,
    alternating, `rounds` times each: seal time (write, fsync, read-back verify, publish), full
    verify time, and the bytes of every file the seal writes (video, index, key file, sidecar)."""
    import bson

    from archiverd.crypto.keyring import Keyring, MasterKey
    from archiverd.format import encryption
    from archiverd.format.reader import SegmentReader
    from archiverd.format.writer import write_segment
    from bench.corpus import experiences
    raws = [bson.encode(d) for d in experiences(docs, embeddings=True, seed=42)]
    master = MasterKey.generate()
    variants = {"plain": {}, "AES-256-GCM": {"encryption": master}}
    samples: dict[str, dict[str, list[float]]] = {v: {"seal": [], "seal_cpu": [], "verify": []} for v in variants}
    sizes: dict[str, dict[str, int]] = {}
    encryption.use_keyring(None)
    for round_ in range(rounds):
        order = list(variants.items()) if round_ % 2 == 0 else list(variants.items())[::-1]  # no first-run bias
        for name, extra in order:
            with tempfile.TemporaryDirectory(prefix="archiverd-bench-") as tmp:
                video = Path(tmp) / "part-0001.mkv"
                t0, c0 = time.perf_counter(), time.process_time()
                write_segment(video, raws, **extra)
                samples[name]["seal"].append(time.perf_counter() - t0)
                samples[name]["seal_cpu"].append(time.process_time() - c0)
                if extra:
                    encryption.use_keyring(Keyring([master]))
                t0 = time.perf_counter()
                assert SegmentReader(video).verify().ok
                samples[name]["verify"].append(time.perf_counter() - t0)
                encryption.use_keyring(None)
                sizes[name] = {"video": video.stat().st_size,
                               "all files": sum(f.stat().st_size for f in Path(tmp).iterdir() if f.is_file())}
    return {name: {"seal_s": statistics.median(v["seal"]), "seal_cpu_s": statistics.median(v["seal_cpu"]),
                   "verify_s": statistics.median(v["verify"]),
                   **{f"{k} bytes": n for k, n in sizes[name].items()}} for name, v in samples.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--docs", type=int, default=120)
    parser.add_argument("--rounds", type=int, default=7, help="end-to-end rounds of each variant")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_measure(args.repeat)))
        return
    runs = {}
    for label, extra in (("AES-NI", {}), ("no AES-NI", {"OPENSSL_ia32cap": NO_AESNI})):
        out = subprocess.run([sys.executable, __file__, "--child", "--repeat", str(args.repeat)],
                             env={**os.environ, **extra}, check=True, capture_output=True, text=True).stdout
        runs[label] = json.loads(out)
    print(f"AEAD throughput, MB/s (median of {args.repeat} interleaved rounds; seal / open)\n")
    print("| cipher | CPU | " + " | ".join(SIZES) + " | × AES-GCM (4 MiB seal) |")
    print("|---|---|" + "---|" * len(SIZES) + "---|")
    for label, result in runs.items():
        base = result["AES-256-GCM"]["4 MiB block"]["seal"]
        for cname, sizes in result.items():
            cells = " | ".join(f"{sizes[s]['seal']:,.0f} / {sizes[s]['open']:,.0f}" for s in SIZES)
            print(f"| {cname} | {label} | {cells} | {sizes['4 MiB block']['seal'] / base:.2f} |")
    cost = _segment_cost(args.docs, args.repeat)
    share = cost["seal_s"] / cost["encode_s"] * 100
    growth = cost["tag_bytes"] / cost["video_bytes"] * 100
    print(f"\nOne EAT segment of {cost['documents']} documents: encode {cost['encode_s']:.2f} s; "
          f"AES-256-GCM over its {cost['blocks']} blocks ({cost['payload_bytes']:,} B) and index "
          f"({cost['index_bytes']:,} B): {cost['seal_s'] * 1000:.1f} ms = {share:.2f} % of the encode time; "
          f"tags add {cost['tag_bytes']} B = {growth:.4f} % of the video ({cost['video_bytes']:,} B)")
    e2e = _end_to_end(args.docs, args.rounds)
    base = e2e["plain"]
    print(f"\nEnd to end, the same {args.docs} EAT documents, plain (format 2) and encrypted (format 3) "
          f"alternating, median of {args.rounds} rounds each\n")
    print("| segment | seal (write, verify, publish) s | × plain | seal CPU s | × plain | verify s | × plain "
          "| video B | × plain | all files B | × plain |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in e2e.items():
        print(f"| {name} | {r['seal_s']:.2f} | {r['seal_s'] / base['seal_s']:.3f} | {r['seal_cpu_s']:.2f} | "
              f"{r['seal_cpu_s'] / base['seal_cpu_s']:.3f} | {r['verify_s']:.2f} | "
              f"{r['verify_s'] / base['verify_s']:.3f} | {r['video bytes']:,} | "
              f"{r['video bytes'] / base['video bytes']:.5f} | {r['all files bytes']:,} | "
              f"{r['all files bytes'] / base['all files bytes']:.5f} |")


if __name__ == "__main__":
    main()
