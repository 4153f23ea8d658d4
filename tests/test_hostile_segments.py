"""Hostile segments: crafted record streams, lying lengths, compression bombs and mangled indexes get a
clear error and a stable exit code, in bounded memory -- never a traceback, never a wrong document."""
from __future__ import annotations

import json
import random
import struct
import subprocess
import sys

import bson
import pytest

from archiverd import SegmentError, SegmentReader, write_segment
from archiverd.format import blockcodec, index, parity, records
from archiverd.format.reader import LocalFile, SegmentScan
from archiverd.format.writer import FrameWriter
from tests.reliability import ROOT


def craft(path, stream: bytes) -> None:
    """A valid video (frames, parity, container) carrying exactly `stream` as its record stream."""
    writer = FrameWriter(path, b"\x11" * 8, parity.Geometry.for_percent(5))
    try:
        writer.write(stream)
        writer.close()
        writer.temp.publish(path)
    finally:
        writer.abort()


def header() -> bytes:
    return records.pack(records.HEADER, json.dumps({"format_version": 2, "segment_id": "11" * 8}).encode())


def _read(path) -> tuple[list[bytes], object]:
    with LocalFile(path) as source:
        scan = SegmentScan(source, str(path))
        docs = [raw for _, _, raw in scan.documents()]
    return docs, scan.report


def _verify_cli(path) -> tuple[subprocess.CompletedProcess, float]:
    """`archiverd verify` on a file without index, in its own process: (result, peak RSS in MB)."""
    code = ("import sys\nfrom archiverd.format.reader import verify_video\n"
            "r = verify_video(sys.argv[1], None)\nprint(r.status)\n"
            "print(next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')))")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    status, peak = proc.stdout.split("\n")[:2]
    return proc, int(peak) / 1024


@pytest.mark.parametrize("name, stream", [
    ("a block that claims 64 MiB", lambda: header() + struct.pack(">4sI", b"BLCK", records.MAX_BODY) + b"x" * 100),
    ("a block that claims 4 GiB", lambda: header() + struct.pack(">4sI", b"BLCK", 0xFFFFFFFF) + b"x" * 100),
    ("a header nested a million deep", lambda: records.pack(records.HEADER, b"[" * 500_000 + b"]" * 500_000)),
    ("garbage after the header", lambda: header() + bytes(range(256)) * 40),
    ("a block whose codec lies about its sizes", lambda: header() + records.pack(
        records.BLOCK, records.block_head(0, []) + struct.pack(">BIIIIII", 1, 1, 2 ** 31, 10, 2 ** 31, 10, 0)
        + b"\0" * 24)),
])
def test_crafted_streams_are_clear_errors_in_bounded_memory(tmp_path, name, stream):
    path = tmp_path / "part-0001.mkv"
    craft(path, stream())
    docs, report = _read(path)
    assert docs == [] and not report.ok and report.problems, name
    _, peak = _verify_cli(path)
    assert peak < 300, f"{name}: peak RSS {peak:.0f} MB"


def test_a_bzip2_bomb_in_a_block_is_refused_in_bounded_memory(tmp_path):
    """A block whose text decompresses to gigabytes while its header claims a few bytes."""
    import bz2
    bomb = bz2.compress(b"\0" * (512 << 20), 9)  # ~400 bytes that inflate to 512 MiB
    body = struct.pack(">BIIIIII", 1, 1, 20, len(bomb), 0, 0, 0) + bomb
    body += struct.pack(">I", __import__("zlib").crc32(body))
    path = tmp_path / "part-0001.mkv"
    craft(path, header() + records.pack(records.BLOCK, records.block_head(0, []) + body)
          + records.pack(records.END, records.END_BODY.pack(1, 1, b"\0" * 32)))
    with pytest.raises(SegmentError):
        blockcodec.decode(body)
    docs, report = _read(path)
    assert docs == [] and not report.ok
    _, peak = _verify_cli(path)
    assert peak < 300, f"peak RSS {peak:.0f} MB"


def _mutations(idx: dict, rng: random.Random):
    """Type confusions and lies in every part of an index."""
    values = [None, -1, 2 ** 70, "x", [], {}, [1], [-1, 5], [0, 2 ** 40], 1.5, True, {"$oid": "zz"}]
    paths = [("documents",), ("frames",), ("data_frames",), ("stream_bytes",), ("segment_id",),
             ("parity",), ("parity", "data_rows"), ("parity", "parity_rows"), ("video", "bytes"),
             ("video", "sha256"), ("video", "clusters"), ("blocks",), ("docs",)]
    for i in range(len(idx["blocks"])):
        paths += [("blocks", i, k) for k in ("offset", "length", "frames", "documents", "block", "sha256")]
    for i in (0, len(idx["docs"]) - 1):
        paths += [("docs", i, k) for k in ("_id", "sha256", "bytes", "block", "frames")]
    for path in paths:
        for value in rng.sample(values, 4):
            mutated = json.loads(json.dumps(idx))
            target = mutated
            for part in path[:-1]:
                target = target[part]
            target[path[-1]] = value
            yield path, value, mutated


def test_a_mangled_index_never_causes_a_traceback_or_a_wrong_document(tmp_path, eat_docs, text_docs):
    path = tmp_path / "part-0001.mkv"
    docs = eat_docs[:2] + text_docs[:40]
    idx = write_segment(path, docs, block_bytes=60_000)
    good = set(docs)
    rng = random.Random(3)
    tried = 0
    for where, value, mutated in _mutations(idx, rng):
        index.path_for(path).write_text(json.dumps(mutated))
        tried += 1
        try:
            reader = SegmentReader(path)
            got = [raw for _, raw in reader.salvage()]
            reader.verify()
            for raw in docs[:3]:
                try:
                    reader.get(bson.decode(raw)["_id"])
                except KeyError:
                    pass
        except SegmentError:
            continue
        assert set(got) <= good, (where, value)
    assert tried > 100
    proc = subprocess.run([sys.executable, "-m", "archiverd", "verify", str(path)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode in (0, 4) and "Traceback" not in proc.stderr
