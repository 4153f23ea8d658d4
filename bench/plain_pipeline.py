"""The plainest scripts a user could write instead of archiverd: the yardstick of bench/bench_e2e.py.

    python bench/plain_pipeline.py archive URI DB COLLECTION DATE_FIELD CUTOFF_MS FILE
    python bench/plain_pipeline.py restore URI DB COLLECTION FILE

archive: raw BSON of every document dated before the cutoff -> one zstd level 3 file -> fsync ->
delete_many by _id. restore: the same file -> insert_many. No checks, no index, no verify, no
guarded delete: what archiverd is compared against, not what anyone should run.
"""
from __future__ import annotations

import datetime as dt
import os
import sys

import zstandard
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient

BATCH = 1000


def archive(uri: str, db: str, coll_name: str, date_field: str, cutoff_ms: int, path: str) -> int:
    coll = MongoClient(uri, document_class=RawBSONDocument)[db][coll_name]
    cutoff = dt.datetime.fromtimestamp(cutoff_ms / 1000, dt.timezone.utc)
    ids = []
    with open(path, "wb") as out:
        with zstandard.ZstdCompressor(level=3).stream_writer(out, closefd=False) as writer:
            for doc in coll.find({date_field: {"$lt": cutoff}}):
                writer.write(doc.raw)
                ids.append(doc["_id"])
        out.flush()
        os.fsync(out.fileno())
    for start in range(0, len(ids), BATCH):
        coll.delete_many({"_id": {"$in": ids[start:start + BATCH]}})
    return len(ids)


def restore(uri: str, db: str, coll_name: str, path: str) -> int:
    coll = MongoClient(uri, document_class=RawBSONDocument)[db][coll_name]
    count = 0
    with open(path, "rb") as f, zstandard.ZstdDecompressor().stream_reader(f) as reader:
        batch: list[RawBSONDocument] = []
        while head := _read(reader, 4):
            batch.append(RawBSONDocument(head + _read(reader, int.from_bytes(head, "little") - 4)))
            if len(batch) == BATCH:
                coll.insert_many(batch, ordered=False)
                count += len(batch)
                batch = []
        if batch:
            coll.insert_many(batch, ordered=False)
            count += len(batch)
    return count


def _read(reader: zstandard.ZstdDecompressionReader, size: int) -> bytes:
    data = b""
    while len(data) < size and (chunk := reader.read(size - len(data))):
        data += chunk
    return data


if __name__ == "__main__":
    if sys.argv[1] == "archive":
        print(archive(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], int(sys.argv[6]), sys.argv[7]))
    else:
        print(restore(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]))
