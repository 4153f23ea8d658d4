"""`make demo`: encode a realistic batch of agent experiences, decode it, show sizes and speed."""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import bson
import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from archiverd import SegmentReader, write_segment  # noqa: E402
from bench.corpus import experiences  # noqa: E402


def main() -> None:
    docs = [bson.encode(d) for d in experiences(300, embeddings=True)]
    raw = sum(map(len, docs))
    floor = len(zstandard.ZstdCompressor(level=19, threads=-1).compress(b"".join(docs)))
    with tempfile.TemporaryDirectory(prefix="archiverd-demo-") as tmp:
        path = Path(tmp) / "part-0001.mkv"
        t = time.perf_counter()
        idx = write_segment(path, docs, source={"db": "demo", "collection": "eat_agent_experiences"})
        sealed = time.perf_counter() - t
        reader = SegmentReader(path)
        t = time.perf_counter()
        back = list(reader)
        read = time.perf_counter() - t
        size = path.stat().st_size
        print(f"documents            {len(docs)} EAT experiences with 4 x 1536-d embeddings")
        print(f"BSON                 {raw / 1e6:8.1f} MB  ({raw / len(docs):,.0f} B/doc)")
        print(f"zstd-19 floor        {floor / 1e6:8.1f} MB")
        print(f"segment (.mkv)       {size / 1e6:8.1f} MB  = {size / floor:.3f} x floor, {idx['frames']} QR frames")
        print(f"seal (encode+verify) {len(docs) / sealed:8.0f} docs/s")
        print(f"decode               {len(docs) / read:8.0f} docs/s")
        print(f"byte-exact           {back == docs}")
        if back != docs:
            sys.exit(1)


if __name__ == "__main__":
    main()
