"""Documents and generated find arguments for the differential tests of archiverd.query.

The corpus mixes EAT experiences (bench/corpus.py, some with their 4 x 1536 embeddings) with hostile
documents: every BSON type, arrays of arrays, missing fields, nulls, one field holding many types,
numeric-looking field names. Filters come from a small grammar over the corpus's own paths and
values plus a pool of edge values, so most of them select something and many touch the edges.
"""
from __future__ import annotations

import datetime as dt
import math
import random
import uuid
from typing import Any

import bson
from bson import Binary, Code, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp
from bson.datetime_ms import DatetimeMS

from bench.corpus import experiences
from tests.conftest import NOW, every_type_document

UTC = dt.timezone.utc

# Values of every type, with the edges of each bracket.
NUMBERS = [0, 1, -1, 2, 3, 1.0, 1.5, -0.0, 2.0, 2 ** 31 - 1, Int64(2 ** 31), Int64(1), Int64(-5), Int64(2 ** 53 + 1),
           float(2 ** 53), Decimal128("1"), Decimal128("1.50"), Decimal128("-0"), Decimal128("0.1"), 0.1,
           Decimal128("NaN"), Decimal128("Infinity"), Decimal128("-Infinity"), math.nan, math.inf, -math.inf,
           1e300, -2.5]
STRINGS = ["", "a", "A", "ab", "abc", "b", "B", "é", "É", "z", "10", "2", "héllo", "x\x00y", "\U0001F600", "a.b",
           "hello world", "HELLO", "line1\nline2", "日本", "٣"]
SCALARS = [None, True, False, dt.datetime(2020, 1, 1, tzinfo=UTC), dt.datetime(1969, 12, 31, 23, 59, 59, 999000,
           tzinfo=UTC), DatetimeMS(0), ObjectId("66b1f0c2e4b0a1b2c3d4e5f6"), ObjectId("000000000000000000000000"),
           Binary(b"", 0), Binary(b"\x01", 0), Binary(b"\x01", 5), Binary(b"\x00\x01", 0),
           Binary(uuid.UUID(int=7).bytes, 4), Binary(b"\x01", 128), Timestamp(1, 1), Timestamp(1, 2),
           Timestamp(2 ** 32 - 1, 0), Regex("^a", "i"), Regex("a", ""), MinKey(), MaxKey(), Code("x"),
           Code("x", {"a": 1})]
DOCUMENTS = [{}, {"b": 1}, {"b": 1, "c": 2}, {"c": 2, "b": 1}, {"b": None}, {"0": 1}, {"b": [1, 2]},
             {"b": {"c": 1}}, {"b": "a"}]
ARRAYS = [[], [1], [1, 2], [2, 1], [[1, 2]], [[]], [None], [{"b": 1}, {"b": 2}], [1, "a", None], [[1], 2],
          [{"b": [1, [2]]}], [1.0, Decimal128("2")], [{"b": 1, "c": 2}], [{"0": "x"}, "y"], [[{"b": 1}]],
          [math.nan], [MinKey(), MaxKey()]]
POOL = NUMBERS + STRINGS + SCALARS + DOCUMENTS + ARRAYS
FIELDS = ["a", "b", "c", "0", "1", "10", "x"]
REGEXES = ["^a", "a", "^$", "é", r"^\w+$", r"\d", "b$", "A", r"^h.*o", r"\s", r"o\b", "^.$", "(?i)é", "[a-c]+",
           r"[\w]+", "^line2", r"\Z", "日", r"^\S+$"]


def _random_value(rng: random.Random, depth: int) -> Any:
    roll = rng.random()
    if depth > 0 and roll < 0.2:
        return {rng.choice(FIELDS): _random_value(rng, depth - 1) for _ in range(rng.randint(0, 3))}
    if depth > 0 and roll < 0.4:
        return [_random_value(rng, depth - 1) for _ in range(rng.randint(0, 3))]
    return rng.choice(POOL)


def hostile_documents(seed: int, n: int) -> list[bytes]:
    """Random documents over a few field names with values of every type, nested up to three deep."""
    rng = random.Random(seed)
    docs = [
        {"_id": 0, "a": [[1, 2], [3]], "b": [[{"c": 1}], {"c": [2, [3]]}]},
        {"_id": 1, "a": {"0": "zero", "1": [10, 11]}, "0": {"0": 0}, "10": 10},
        {"_id": 2, "a": None, "b": [None, {"c": None}]},
        {"_id": 3},
        {"_id": 4, "a": [1, "1", 1.0, Decimal128("1"), Int64(1), True, None, [1]]},
        {"_id": 5, "a": [{"b": 1, "c": 1}, {"b": 2, "c": 0}], "c": [[]]},
        {"_id": 6, "a": [], "b": {}, "c": ""},
        {"_id": 7, "a": [[[[1]]]], "b": [{"0": [5]}, [6]]},
    ]
    for i in range(len(docs), n):
        docs.append({"_id": i, **{rng.choice(FIELDS): _random_value(rng, 3) for _ in range(rng.randint(1, 4))}})
    return [bson.encode(d) for d in docs]


def eat_documents(with_embeddings: int, without: int) -> list[bytes]:
    out = [bson.encode(d) for d in experiences(with_embeddings, embeddings=True, now=NOW, seed=3)]
    out += [bson.encode(d) for d in experiences(without, embeddings=False, now=NOW, seed=4)]
    return out


def corpus() -> list[bytes]:
    """The differential corpus: EAT experiences and hostile documents (every BSON type included)."""
    return eat_documents(6, 60) + hostile_documents(11, 160) + [every_type_document(extreme_dates=False)]


# --- paths and values present in the corpus -----------------------------------------------------

def _walk(value: Any, path: str, out: dict[str, list], in_array: bool = False) -> None:
    out.setdefault(path, []).append(value)
    if isinstance(value, dict) and not isinstance(value, bson.DBRef):
        for name, v in value.items():
            if "." not in name and not name.startswith("$") and name:
                _walk(v, f"{path}.{name}", out)
    elif isinstance(value, list):
        for i, v in enumerate(value[:3]):
            _walk(v, f"{path}.{i}", out, True)
            if isinstance(v, dict):
                for name, w in v.items():
                    if "." not in name and not name.startswith("$") and name:
                        _walk(w, f"{path}.{name}", out)


class Grammar:
    """Generates filters, sorts and projections over the paths and values of a corpus."""

    def __init__(self, docs: list[bytes], seed: int) -> None:
        self.rng = random.Random(seed)
        self.values: dict[str, list] = {}
        for raw in docs:
            for name, v in bson.decode(raw).items():
                if name and "." not in name and not name.startswith("$") and name != "_id":
                    _walk(v, name, self.values)
        self.values.pop("embeddings", None)  # reached through its sub-paths only
        for name in ("nope", "a.nope", "a.5", "a.0.0", "b.1.c", "a.b.c", "a.1.1"):
            self.values.setdefault(name, [])
        self.paths = sorted(self.values)

    # values ------------------------------------------------------------------------------------
    def value(self, path: str) -> Any:
        seen = self.values.get(path)
        if seen and self.rng.random() < 0.7:
            v = self.rng.choice(seen)
            if isinstance(v, list) and v and self.rng.random() < 0.5:
                v = self.rng.choice(v)
            return v
        return self.rng.choice(POOL)

    def scalar(self, path: str) -> Any:
        v = self.value(path)
        return v if not isinstance(v, Regex) else "a"

    # filters -----------------------------------------------------------------------------------
    def path(self) -> str:
        """Half the time any path, half the time one weighted by how many values it holds."""
        if self.rng.random() < 0.5:
            return self.rng.choice(self.paths)
        return self.rng.choices(self.paths, weights=[len(self.values[p]) + 1 for p in self.paths])[0]

    def operator(self, path: str, depth: int = 1) -> dict:
        r = self.rng
        kind = r.choice(["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in", "$nin", "$exists", "$type", "$size",
                         "$all", "$elemMatch", "$regex", "$not", "$mod", "$eq", "$in", "$gt", "$lt"])
        if kind in ("$eq", "$ne", "$gt", "$gte", "$lt", "$lte"):
            v = self.value(path)
            if isinstance(v, Regex) and kind != "$eq":
                v = v.pattern
            return {kind: v}
        if kind in ("$in", "$nin"):
            return {kind: [self.value(path) for _ in range(r.randint(0, 4))]}
        if kind == "$exists":
            return {kind: r.choice([True, False, 1, 0])}
        if kind == "$type":
            names = ["double", "string", "object", "array", "binData", "objectId", "bool", "date", "null", "regex",
                     "int", "long", "decimal", "timestamp", "minKey", "maxKey", "javascript", "number", 1, 2, 16, 18,
                     19, 4, 10]
            return {kind: r.choice(names) if r.random() < 0.7 else r.sample(names, 2)}
        if kind == "$size":
            return {kind: r.randint(0, 3)}
        if kind == "$all":
            if r.random() < 0.25:
                return {kind: [{"$elemMatch": self.operator(path + ".0", 0)}]}
            return {kind: [self.scalar(path) for _ in range(r.randint(0, 3))]}
        if kind == "$elemMatch":
            if r.random() < 0.5 or depth == 0:
                ops: dict = {}
                for _ in range(r.randint(1, 2)):
                    ops.update(self.operator(path + ".0", 0))
                return {kind: ops if not any(k in ops for k in ("$elemMatch", "$not", "$regex")) else {"$gt": 0}}
            sub = self.rng.choice(["b", "c", "0", "nope"])
            return {kind: {sub: self.operator(f"{path}.{sub}", 0) if r.random() < 0.6 else self.value(f"{path}.{sub}")}}
        if kind == "$regex":
            spec: dict = {"$regex": r.choice(REGEXES)}
            if r.random() < 0.4:
                spec["$options"] = r.choice(["i", "m", "s", "x", "im", ""])
            return spec
        if kind == "$not":
            if r.random() < 0.3:
                return {kind: Regex(r.choice(REGEXES), r.choice(["", "i"]))}
            inner = self.operator(path, 0)
            return {kind: inner if "$regex" not in inner else {"$regex": inner["$regex"]}}
        return {kind: r.choice([[2, 0], [2, 1], [3, -1], [-2, 1], [2.5, 1], [Int64(4), 0]])}

    def clause(self, depth: int = 2) -> dict:
        r = self.rng
        roll = r.random()
        if depth > 0 and roll < 0.15:
            op = r.choice(["$and", "$or", "$nor"])
            return {op: [self.clause(depth - 1) for _ in range(r.randint(1, 3))]}
        path = self.path()
        if roll < 0.4:
            v = self.value(path)
            return {path: v} if not (isinstance(v, dict) and v and next(iter(v)).startswith("$")) else {path: {"$eq": v}}
        ops: dict = {}
        for _ in range(1 if r.random() < 0.8 else 2):
            op = self.operator(path, depth)
            if "$regex" in op and "$regex" in ops:
                continue
            ops.update(op)
        return {path: ops}

    def filter(self) -> dict:
        f: dict = {}
        for _ in range(1 if self.rng.random() < 0.75 else 2):
            f.update(self.clause())
        return f

    # sorts and projections ---------------------------------------------------------------------
    def sort(self) -> list[tuple[str, int]]:
        paths = [p for p in self.paths if not p.startswith("embeddings") and not any(
            part.isdigit() for part in p.split("."))]
        return [(self.rng.choice(paths + ["timestamp"] * 5), self.rng.choice([1, -1])), ("_id", 1)]

    def projection(self) -> dict:
        r = self.rng
        paths = [p for p in self.paths if not any(part.isdigit() for part in p.split("."))]
        chosen: list[str] = []
        for p in r.sample(paths, r.randint(1, 4)):
            if not any(p == c or p.startswith(c + ".") or c.startswith(p + ".") for c in chosen):
                chosen.append(p)
        flag = r.choice([0, 1])
        spec: dict = {p: flag for p in chosen}
        if r.random() < 0.3:
            spec["_id"] = r.choice([0, 1]) if flag else 0
        return spec
