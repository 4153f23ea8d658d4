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

from archiverd import index


def main() -> None:
    uri, database, seconds, seed = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
    rng = random.Random(seed)
    coll = MongoClient(uri, document_class=RawBSONDocument, tz_aware=True)[database]["eat_agent_experiences"]
    now = dt.datetime.now(dt.timezone.utc)
    ledger: dict[str, tuple[object, str | None]] = {}
    existing = [d["_id"] for d in coll.find({}, projection={"_id": 1})]
    n = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        op = rng.random()
        if op < 0.4 or not existing:
            age = rng.choice([5, 30, 95, 120, 200])  # fresh and expired
            raw = bson.encode({"_id": f"w{seed}-{n}", "timestamp": now - dt.timedelta(days=age, seconds=n),
                               "note": "written while archiving", "n": n})
            coll.insert_one(RawBSONDocument(raw))
            existing.append(f"w{seed}-{n}")
            ledger[index.id_key(index.id_json(f"w{seed}-{n}"))] = (f"w{seed}-{n}", hashlib.sha256(raw).hexdigest())
            n += 1
        elif op < 0.85:
            _id = rng.choice(existing)
            doc = coll.find_one_and_update({"_id": _id}, {"$set": {"edited": n}, "$inc": {"edits": 1}},
                                           return_document=ReturnDocument.AFTER)
            if doc is not None:  # not yet archived: this is now its latest version
                ledger[index.id_key(index.id_json(_id))] = (_id, hashlib.sha256(doc.raw).hexdigest())
            n += 1
        else:
            _id = existing.pop(rng.randrange(len(existing)))
            if coll.delete_one({"_id": _id}).deleted_count:
                ledger[index.id_key(index.id_json(_id))] = (_id, None)
    print(json.dumps({k: [index.id_json(v[0]), v[1]] for k, v in ledger.items()}))


if __name__ == "__main__":
    main()
