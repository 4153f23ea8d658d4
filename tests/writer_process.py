"""A concurrent writer, run as its own process: inserts, updates and deletes documents (expired and
fresh) for a while and prints its ledger -- the latest version it wrote of every _id -- as JSON.

    python tests/writer_process.py URI DATABASE SECONDS SEED
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import random
import sys
import time

import bson
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient, ReturnDocument
from pymongo.errors import PyMongoError

from archiverd.format import index


def main() -> None:
    uri, database, seconds, seed = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    rng = random.Random(seed)
    coll = MongoClient(uri, document_class=RawBSONDocument, tz_aware=True, socketTimeoutMS=5000,
                       serverSelectionTimeoutMS=5000)[database]["eat_agent_experiences"]
    now = dt.datetime.now(dt.timezone.utc)
    ledger: dict[str, tuple[object, str | None]] = {}
    existing = [d["_id"] for d in coll.find({}, projection={"_id": 1})]
    n = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        op = rng.random()
        _id = f"w{seed}-{n}" if op < 0.4 or not existing else rng.choice(existing)
        key = index.key_of(_id)
        try:
            if op < 0.4 or not existing:
                age = rng.choice([5, 30, 95, 120, 200])  # fresh and expired
                raw = bson.encode({"_id": _id, "timestamp": now - dt.timedelta(days=age, seconds=n),
                                   "note": "written while archiving", "n": n})
                coll.insert_one(RawBSONDocument(raw))
                existing.append(_id)
                ledger[key] = (_id, hashlib.sha256(raw).hexdigest())
            elif op < 0.85:
                doc = coll.find_one_and_update({"_id": _id}, {"$set": {"edited": n}, "$inc": {"edits": 1}},
                                               return_document=ReturnDocument.AFTER)
                if doc is not None:  # not yet archived: this is now its latest version
                    ledger[key] = (_id, hashlib.sha256(doc.raw).hexdigest())
            else:
                existing.remove(_id)
                if coll.delete_one({"_id": _id}).deleted_count:
                    ledger[key] = (_id, None)
        except PyMongoError:
            # the outcome is unknown: record only what a re-read can prove, else exempt the _id
            try:
                doc = coll.find_one({"_id": _id})
                ledger[key] = (_id, hashlib.sha256(doc.raw).hexdigest() if doc is not None else None)
            except PyMongoError:
                ledger[key] = (_id, None)
        n += 1
    print(json.dumps({k: [index.id_json(v[0]), v[1]] for k, v in ledger.items()}))


if __name__ == "__main__":
    main()
