"""Reading the whole archive back without restoring it -- `get`, `find`, `search`, `export` and
`archiverd.Archive` -- on an archive the daemon built from a real MongoDB-wire server, each answer
compared with the server's own answer (on a mirror collection holding the same documents) or with
exact search over the original embeddings."""
from __future__ import annotations

import collections
import datetime as dt
import json
import os
import shutil
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bson
import numpy as np
import pytest
from bson import Binary, Decimal128, Int64, ObjectId, SON, json_util
from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient
from pymongo.errors import OperationFailure

import archiverd
from archiverd import config
from archiverd.errors import ConfigError, QueryError
from archiverd.format import sidecar
from archiverd.format.documents import DECODE_OPTIONS
from archiverd.query import compile_filter, id_key
from archiverd.service.daemon import Daemon
from archiverd.store import layout
from archiverd.store.catalog import Catalog
from bench.corpus import EMBEDDING_FIELDS, experience
from tests.query_corpus import Grammar, hostile_documents
from tests.test_cli import run
from tests.test_query_differential import Mirror, explain

UTC = dt.timezone.utc
FILTERS = int(os.environ.get("ARCHIVERD_ARCHIVE_FILTERS", "300"))
FIELD = f"embeddings.{EMBEDDING_FIELDS[1]}"
DAY0 = (dt.datetime.now(UTC) - dt.timedelta(days=10)).replace(hour=0, minute=0, second=0, microsecond=0)

# _ids of every kind a user may name, and the text each may be asked for by
ODD_IDS: list[tuple[Any, list[str]]] = [
    ("exp-7", ["exp-7", '"exp-7"']),
    (42, ["42", '{"$numberLong": "42"}', "42.0"]),           # MongoDB: 42, NumberLong(42), 42.0 are one _id
    (Int64(2 ** 40), [str(2 ** 40)]),
    (2.5, ["2.5", '{"$numberDouble": "2.5"}']),
    (Decimal128("7.10"), ['{"$numberDecimal": "7.1"}']),
    (SON([("a", 1), ("b", "x")]), ['{"a": 1, "b": "x"}']),
    (Binary(uuid.UUID(int=99).bytes, 4), [f'{{"$uuid": "{uuid.UUID(int=99)}"}}']),
    ("66b1f0c2e4b0a1b2c3d4e5f6", ['"66b1f0c2e4b0a1b2c3d4e5f6"']),  # a 24-hex string, not an ObjectId
    (True, ["true"]),
]


def _documents() -> list[bytes]:
    """EAT experiences over seven complete days (with embeddings), the odd `_id`s, and the hostile
    corpus of the query tests, each given a date so that it is archived."""
    docs = []
    for i in range(140):
        doc = experience(i, when=DAY0 + dt.timedelta(hours=i * 1.2, minutes=i % 7), seed=21)
        if i < len(ODD_IDS):
            doc["_id"] = ODD_IDS[i][0]
        docs.append(bson.encode(doc))
    for j, raw in enumerate(hostile_documents(11, 120)):
        doc = bson.decode(raw)
        doc["_id"] = f"h{doc['_id']}"
        doc["timestamp"] = DAY0 + dt.timedelta(days=j % 7, minutes=j)
        docs.append(bson.encode(doc))
    return docs


@dataclass
class Built:
    cfg: config.Config
    docs: list[bytes]
    mirror: Mirror
    env: dict[str, str]

    def archive(self) -> archiverd.Archive:
        return archiverd.Archive(self.cfg.archive_dir)

    def by_key(self) -> dict[str, bytes]:
        return {id_key(bson.decode(d)["_id"]): d for d in self.docs}


@pytest.fixture(scope="module")
def built(mongo_uri, tmp_path_factory) -> Built:
    root = tmp_path_factory.mktemp("archive-read")
    env = {"MONGODB_URI": mongo_uri, "MONGODB_DATABASE_NAME": f"aread{os.getpid()}",
           "ARCHIVERD_ARCHIVE_DIR": str(root / "archives"), "ARCHIVE_THRESHOLD_DAYS": "2",
           "ARCHIVERD_SERVER_TIMEOUT_MS": "5000"}
    (root / "archives").mkdir()
    cfg = config.load(environ=env)
    docs = _documents()
    client = MongoClient(mongo_uri, document_class=RawBSONDocument, tz_aware=True)
    db = client[cfg.database]
    db[cfg.collection].insert_many([RawBSONDocument(d) for d in docs])
    db.mirror.insert_many([RawBSONDocument(d) for d in docs])
    stored = {id_key(bson.decode(d.raw)["_id"]): bytes(d.raw) for d in db.mirror.find()}
    code, stats = Daemon(cfg).once()
    assert code == 0 and stats.sealed == len(docs) and db[cfg.collection].count_documents({}) == 0
    yield Built(cfg, docs, Mirror(db.mirror, docs, stored), env)
    client.drop_database(cfg.database)
    client.close()


def cli(built: Built, *args: Any, code: int | None = 0):
    """Run the CLI with the archive's configuration in the environment."""
    saved = {k: os.environ.get(k) for k in built.env}
    os.environ.update(built.env)
    try:
        return run(*args, check_code=code)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# --- derived files --------------------------------------------------------------------------------

def test_every_segment_has_a_small_sidecar_and_the_catalog_knows_every_document(built):
    videos = layout.videos(built.cfg.collection_dir)
    assert len(videos) == 7  # one per day
    for video in videos:
        codes = sidecar.load(sidecar.path_for(video))
        size = sidecar.path_for(video).stat().st_size
        if codes.fields:
            assert set(codes.fields) == {f"embeddings.{n}" for n in EMBEDDING_FIELDS}
            assert size <= 0.05 * video.stat().st_size, (video, size / video.stat().st_size)
    with built.archive() as archive:
        infos = archive.segments()
        assert sum(i.documents for i in infos) == len(built.docs)
        assert [i.day for i in infos] == sorted(i.day for i in infos)
        assert all(i.first_date <= i.last_date for i in infos)
        # a day range prunes segments by their documents' dates
        two = archive.segments(DAY0 + dt.timedelta(days=2), DAY0 + dt.timedelta(days=4))
        assert [i.day for i in two] == [infos[2].day, infos[3].day]


# --- get ------------------------------------------------------------------------------------------

def test_get_finds_every_document_by_every_form_of_its_id(built):
    with built.archive() as archive:
        for raw in built.docs:
            _id = bson.decode(raw)["_id"]
            assert archive.get(_id, raw=True) == raw
        for value, texts in ODD_IDS:
            original = built.by_key()[id_key(value)]
            for text in texts:
                out = cli(built, "get", text).stdout
                assert json_util.loads(out, json_options=json_util.JSONOptions(tz_aware=True)) == \
                    bson.decode(original, DECODE_OPTIONS), text
        oid = next(bson.decode(d)["_id"] for d in built.docs if isinstance(bson.decode(d)["_id"], ObjectId))
        assert json.loads(cli(built, "get", str(oid)).stdout)["_id"] == {"$oid": str(oid)}
        assert archive.get(ObjectId()) is None


def test_get_prints_exact_bson_and_names_what_is_not_archived(built, tmp_path):
    wanted = [bson.decode(d)["_id"] for d in built.docs[20:23]]
    args = [str(w) if isinstance(w, ObjectId) else json_util.dumps(w) for w in wanted]
    out = tmp_path / "docs.bson"
    with open(out, "wb") as f:
        saved = {k: os.environ.get(k) for k in built.env}
        os.environ.update(built.env)
        try:
            import subprocess
            import sys
            proc = subprocess.run([sys.executable, "-m", "archiverd", "get", "--bson", *args], stdout=f,
                                  stderr=subprocess.PIPE, text=False, timeout=300)
        finally:
            for k, v in saved.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
    assert proc.returncode == 0, proc.stderr
    assert out.read_bytes() == b"".join(built.docs[20:23])
    proc = cli(built, "get", args[0], "ffffffffffffffffffffffff", code=1)
    assert "not archived: ffffffffffffffffffffffff" in proc.stderr and proc.stdout.count("\n") == 1
    assert "Traceback" not in cli(built, "get", '{"$oid": "nothex"}', code=3).stderr


def test_get_by_an_indexed_field(built):
    raw = built.docs[30]
    exp_id = bson.decode(raw)["experience_id"]
    with built.archive() as archive:
        assert archive.get_by("experience_id", exp_id, raw=True) == [raw]
        assert archive.get_by("experience_id", "no-such-id") == []
        with pytest.raises(ConfigError, match="not an indexed field"):
            archive.get_by("final_outcome", "failure")
    out = cli(built, "get", "--by", "experience_id", exp_id, "--canonical").stdout
    assert json_util.loads(out) == bson.decode(raw)


def test_get_reads_only_the_frames_of_its_document(built):
    """A document is read from its block's head and its own vector sections: a small share of the
    segment's frames."""
    from archiverd.format import reader as reader_module
    calls = []
    original = reader_module.fetch_ranges

    def counting(source, idx, ranges, where, **kw):
        calls.append(sum(size for _, size in ranges))
        return original(source, idx, ranges, where, **kw)

    reader_module.fetch_ranges = counting
    try:
        with built.archive() as archive:
            raw = built.docs[70]
            assert archive.get(bson.decode(raw)["_id"], raw=True) == raw
            where = archive.locate(bson.decode(raw)["_id"])[0]
            stream = archive.reader(where.segment).index["stream_bytes"]
    finally:
        reader_module.fetch_ranges = original
    assert calls and sum(calls) < stream / 3


# --- find -----------------------------------------------------------------------------------------

def test_find_equals_the_server_on_generated_filters(built):
    """Archive.find over the sealed segments (block heads, then whole documents) against the
    server's find on a mirror of the same documents; every difference must be one the query
    engine's differential tests explain as a known server deviation."""
    grammar = Grammar(built.docs, 5)
    stats: collections.Counter = collections.Counter()
    explained: collections.Counter = collections.Counter()
    unexplained = []
    with built.archive() as archive:
        for _ in range(FILTERS):
            f = grammar.filter()
            try:
                server = built.mirror.server_ids(f)
            except OperationFailure:
                with pytest.raises(QueryError):
                    list(archive.find(f))
                stats["rejected by both"] += 1
                continue
            ours = {id_key(bson.decode(raw)["_id"]) for raw in archive.find(f, raw=True)}
            matcher = compile_filter(f)  # the engine on the original bytes: the archive adds nothing
            assert ours == {id_key(bson.decode(r)["_id"]) for r in built.docs if matcher.matches(r)}, f
            stats["selected some" if ours else "selected none"] += 1
            stats["documents selected"] += len(ours)
            for key in server ^ ours:
                names, bad = explain(built.mirror, f, built.by_key()[key])
                explained.update(names)
                unexplained += [(f, key, leaf) for leaf in bad]
    print(f"\n[archive-find] {FILTERS} filters x {len(built.docs)} archived documents: {dict(stats)}; "
          f"explained server deviations: {dict(explained)}")
    assert not unexplained, unexplained[:5]
    assert stats["selected some"] > FILTERS // 4


def test_find_with_a_date_range_projection_sort_and_limit_equals_the_server(built):
    start, end = DAY0 + dt.timedelta(days=1, hours=5), DAY0 + dt.timedelta(days=3, hours=2)
    cases = [
        ({"final_outcome": "failure"}, None, [("timestamp", -1)], 0),
        ({"tags": {"$in": ["finance", "eval"]}}, {"embeddings": 0, "key_decisions_made": 0}, [("timestamp", 1)], 5),
        ({"$or": [{"duration_ms": {"$gt": 40000}}, {"feedback_signals.feedback_rating": {"$lte": 2}}]},
         {"final_outcome": 1, "timestamp": 1}, [("timestamp", -1)], 7),
        ({}, {"_id": 1}, [("timestamp", 1)], 0),
    ]
    coll = built.mirror.coll
    with built.archive() as archive:
        for f, projection, sort, limit in cases:
            ours = list(archive.find(f, start, end, projection=projection, sort=sort, limit=limit, raw=True))
            ranged = {"$and": [f, {"timestamp": {"$gte": start, "$lt": end}}]}
            theirs = [bytes(d.raw) for d in coll.find(ranged, projection=projection, sort=sort, limit=limit)]
            assert ours == theirs, f
            assert ours or not f  # each case selects something
    out = cli(built, "find", "--from", start.isoformat(), "--to", end.isoformat(), "--filter",
              '{"final_outcome": "failure"}', "--sort", "-timestamp", "--count").stdout
    assert int(out) == coll.count_documents({"$and": [{"final_outcome": "failure"},
                                                      {"timestamp": {"$gte": start, "$lt": end}}]})
    with built.archive() as archive:  # without a filter, counted from the catalog
        assert archive.count() == len(built.docs)
        assert archive.count(None, start, end) == coll.count_documents({"timestamp": {"$gte": start, "$lt": end}})
        assert archive.count({"final_outcome": "failure"}, start) == coll.count_documents(
            {"final_outcome": "failure", "timestamp": {"$gte": start}})
    assert "Traceback" not in cli(built, "find", "--filter", '{"a": {"$bogus": 1}}', code=3).stderr
    assert "ISO 8601" in cli(built, "find", "--from", "last tuesday", code=3).stderr


def test_export_across_the_archive_with_a_range_and_a_filter(built, tmp_path):
    out = tmp_path / "failures.jsonl"
    start, end = DAY0 + dt.timedelta(days=2), DAY0 + dt.timedelta(days=5)
    cli(built, "export", "--from", start.date().isoformat(), "--to", end.date().isoformat(),
        "--filter", '{"final_outcome": "failure"}', "--canonical", "-o", out)
    got = [json_util.loads(line) for line in out.read_text().splitlines()]
    want = [bson.decode(d.raw) for d in built.mirror.coll.find(
        {"final_outcome": "failure", "timestamp": {"$gte": start, "$lt": end}}, sort=[("timestamp", 1)])]
    assert sorted(map(bson.encode, got)) == sorted(map(bson.encode, want)) and want


# --- search ---------------------------------------------------------------------------------------

def _exact(built: Built, query: np.ndarray, k: int, keep=lambda raw: True) -> list[tuple[str, float]]:
    rows = []
    for raw in built.docs:
        doc = bson.decode(raw)
        vec = (doc.get("embeddings") or {}).get(FIELD.split(".")[1])
        if vec is not None and keep(raw):
            v = np.asarray(vec, dtype=np.float64)
            rows.append((id_key(doc["_id"]), float(v @ query / (np.linalg.norm(v) * np.linalg.norm(query)))))
    return sorted(rows, key=lambda r: -r[1])[:k]


def test_search_recall_against_exact_cosine(built):
    rng = np.random.default_rng(3)
    recalls = []
    with built.archive() as archive:
        for q in range(12):
            if q % 2:  # a random direction: the hard case for quantisation
                query = rng.standard_normal(1536)
            else:  # near an archived document
                base = np.asarray(bson.decode(built.docs[q * 9])["embeddings"][FIELD.split(".")[1]])
                query = base + rng.standard_normal(1536) * 0.03
            truth = _exact(built, query, 10)
            hits = archive.search(query, FIELD, 10, raw=True)
            assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
            got = [id_key(bson.decode(h.document)["_id"]) for h in hits]
            recalls.append(len(set(got) & {t[0] for t in truth}) / 10)
            exact = dict(truth)
            for key, hit in zip(got, hits):
                if key in exact:
                    assert abs(exact[key] - hit.score) < 1e-6
                assert built.by_key()[key] == hit.document
    print(f"\n[archive-search] recall@10 per query: {recalls}")
    assert min(recalls) >= 0.8 and sum(recalls) / len(recalls) >= 0.95


def test_search_with_a_filter_and_dates_searches_only_those_documents(built):
    query = np.random.default_rng(8).standard_normal(1536)
    start, end = DAY0 + dt.timedelta(days=1), DAY0 + dt.timedelta(days=4)
    f = {"final_outcome": {"$ne": "success"}}
    matcher = compile_filter(f)

    def keep(raw: bytes) -> bool:
        when = bson.decode(raw, DECODE_OPTIONS)["timestamp"]
        return matcher.matches(raw) and start <= when < end
    truth = _exact(built, query, 5, keep)
    with built.archive() as archive:
        hits = archive.search(query, FIELD, 5, start=start, end=end, filter=f, raw=True)
    assert [id_key(bson.decode(h.document)["_id"]) for h in hits] == [t[0] for t in truth]
    path = Path(built.cfg.archive_dir) / "q.json"
    path.write_text(json.dumps(query.tolist()))
    lines = cli(built, "search", "--field", FIELD, "--vector", path, "-k", "5", "--from", start.isoformat(),
                "--to", end.isoformat(), "--filter", json.dumps(f), "--projection", '{"embeddings": 0}').stdout
    rows = [json.loads(line) for line in lines.splitlines()]
    assert [r["document"]["_id"] for r in rows] == [json.loads(json_util.dumps(bson.decode(built.by_key()[t[0]])["_id"]))
                                                     for t in truth]
    assert all("embeddings" not in r["document"] and r["score"] > -1 for r in rows)


def test_search_like_an_archived_document_finds_the_others_nearest_to_it(built):
    """As Elasticsearch's more_like_this: the document asked about is not among its own results;
    the others come in the order its exact vector ranks them."""
    raw = built.docs[50]
    _id = bson.decode(raw)["_id"]
    lines = cli(built, "search", "--field", FIELD, "--like", str(_id), "-k", "3").stdout.splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) == 3 and {"$oid": str(_id)} not in [r["document"]["_id"] for r in rows]
    with built.archive() as archive:
        query = bson.decode(raw)
        for part in FIELD.split("."):
            query = query[part]
        expected = archive.search(query, FIELD, 4, raw=True)
        everything = archive.search(query, FIELD, 10_000, raw=True)
    ids = [json.loads(json_util.dumps(bson.decode(h.document)["_id"])) for h in expected]
    assert ids[0] == {"$oid": str(_id)} and [r["document"]["_id"] for r in rows] == ids[1:]
    proc = cli(built, "search", "--field", "experience_id", "--like", str(_id), code=3)  # a string, not a vector
    assert f"--like {_id}: its experience_id is not an embedding" in proc.stderr, proc.stderr
    # the largest K the command takes: the document itself is left out without asking for K + 1
    rows = [json.loads(line) for line in cli(built, "search", "--field", FIELD, "--like", str(_id), "-k", "10000",
                                             "--projection", '{"embeddings": 0}').stdout.splitlines()]
    assert [r["document"]["_id"] for r in rows] == [
        json.loads(json_util.dumps(bson.decode(h.document)["_id"])) for h in everything][1:]


def test_bad_search_arguments_are_clear_errors(built):
    with built.archive() as archive:
        with pytest.raises(ConfigError, match="dimension|dims|length"):
            archive.search([1.0, 2.0, 3.0] * 4, FIELD, 5)
        with pytest.raises(ConfigError):
            archive.search(np.zeros(1536), FIELD, 5)
        with pytest.raises(ConfigError):
            archive.search(np.ones(1536), FIELD, 0)
        assert archive.search(np.ones(1536), "embeddings.no_such_field", 5) == []
    proc = cli(built, "search", "--field", "embeddings.no_such_field", "--vector", json.dumps([1.0] * 1536), code=1)
    assert proc.stdout == "" and "no archived document has an embedding in embeddings.no_such_field" in proc.stderr
    for args in (["--vector", "[1, 2, \"x\"]"], ["--vector", "nofile.json"], [],
                 ["--vector", "[1]", "--like", "x"], ["--vector", "[NaN]"]):
        proc = cli(built, "search", "--field", FIELD, *args, code=3)
        assert "Traceback" not in proc.stderr and proc.stderr.startswith("archiverd: error")


# --- when derived files are missing, damaged or stale ---------------------------------------------

def test_lost_or_damaged_sidecars_and_catalog_never_change_an_answer(built, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(built.cfg.collection_dir, copy)
    query = np.random.default_rng(11).standard_normal(1536)
    with archiverd.Archive(copy) as archive:
        before = [(h.document, h.score) for h in archive.search(query, FIELD, 10, raw=True)]
        found = sorted(archive.find({"final_outcome": "partial_success"}, raw=True))
    videos = layout.videos(copy)
    sidecar.path_for(videos[0]).unlink()
    damaged = bytearray(sidecar.path_for(videos[1]).read_bytes())
    damaged[100] ^= 0x40
    sidecar.path_for(videos[1]).write_bytes(bytes(damaged))
    (copy / Catalog.FILE).write_bytes(b"not a database" * 100)
    with archiverd.Archive(copy) as archive:
        assert [(h.document, h.score) for h in archive.search(query, FIELD, 10, raw=True)] == before
        assert sorted(archive.find({"final_outcome": "partial_success"}, raw=True)) == found
    proc = run("check", copy, check_code=1)
    assert "vector sidecar is missing" in proc.stdout and "SHA-256 does not match" in proc.stdout
    assert "catalog" in proc.stdout
    proc = run("check", "--repair", copy, check_code=0)
    assert "vector sidecar rebuilt" in proc.stdout
    for video in videos[:2]:
        assert sidecar.path_for(video).read_bytes() == sidecar.path_for(built.cfg.collection_dir / video.relative_to(copy)).read_bytes()
    run("check", copy, check_code=0)
    with sqlite3.connect(copy / Catalog.FILE) as db:
        assert db.execute("SELECT count(*) FROM docs").fetchone()[0] == len(built.docs)


def test_a_catalog_that_disagrees_with_the_indexes_is_found_and_rebuilt(built, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(built.cfg.collection_dir, copy)
    with archiverd.Archive(copy):
        pass
    query = np.random.default_rng(12).standard_normal(1536)
    with archiverd.Archive(copy) as archive:
        before = [(h.document, h.score) for h in archive.search(query, FIELD, 10, raw=True)]
    with sqlite3.connect(copy / Catalog.FILE) as db:
        db.execute("UPDATE docs SET id_key = 'x' WHERE n = 3")
        # the segment a sidecar must belong to, as search reads it from the catalog: a wrong one makes
        # that segment's sidecar unusable (searched exactly), never a different answer
        first = db.execute("SELECT path FROM segments ORDER BY day LIMIT 1").fetchone()[0]
        db.execute("UPDATE segments SET content_sha256 = ? WHERE path = ?", ("0" * 64, first))
    from archiverd.query.search import SearchStats
    stats = SearchStats()
    with archiverd.Archive(copy) as archive:
        assert [(h.document, h.score) for h in archive.search(query, FIELD, 10, raw=True, stats=stats)] == before
    assert stats.unindexed > 0
    proc = run("check", copy, check_code=1)
    assert "differ from its index" in proc.stdout and f"catalog entries of {first} differ" in proc.stdout
    env = {**built.env, "ARCHIVERD_ARCHIVE_DIR": str(copy)}
    saved = built.env
    built.env = env
    try:
        assert "catalog rebuilt: 7 segments" in cli(built, "catalog", "rebuild").stdout
    finally:
        built.env = saved
    run("check", copy, check_code=0)
    with sqlite3.connect(copy / Catalog.FILE) as db:  # a catalog made before the column existed
        db.execute("ALTER TABLE segments DROP COLUMN content_sha256")
    stats = SearchStats()
    with archiverd.Archive(copy) as archive:
        assert [(h.document, h.score) for h in archive.search(query, FIELD, 10, raw=True, stats=stats)] == before
    assert stats.unindexed == 0  # the sidecars are checked against the indexes instead
    run("check", copy, check_code=0)


def test_a_re_archived_id_answers_with_its_newest_copy_only(tmp_path):
    """An `_id` archived twice (it changed after it was archived, came back and was archived again):
    get, find, count and search answer with the newest copy; all_copies gives both."""
    from archiverd.format.documents import fields_meta
    from archiverd.format.writer import SegmentWriter
    from archiverd.store import durable
    source = {"db": "d", "collection": "c", "date_field": "timestamp", "index_fields": ["experience_id"]}
    coll = tmp_path / "d" / "c"
    first = [experience(i, when=DAY0 + dt.timedelta(hours=i), seed=3) for i in range(6)]
    again = dict(first[2], final_outcome="re-archived", timestamp=DAY0 + dt.timedelta(days=1))
    again["embeddings"] = dict(first[2]["embeddings"])
    for day, docs in ((DAY0, first), (DAY0 + dt.timedelta(days=1), [again, experience(9, when=again["timestamp"], seed=3)])):
        directory = layout.day_dir(coll, day.strftime("%Y-%m-%d"))
        durable.ensure_dir(directory)
        path = layout.next_part(directory)
        writer = SegmentWriter(path, source=source)
        for doc in docs:
            raw = bson.encode(doc)
            writer.append(raw, {"date": doc["timestamp"].isoformat(), **fields_meta(raw, source["index_fields"])})
        with writer:
            idx = writer.seal()
            durable.replace_synced(sidecar.path_for(path), writer.sidecar(idx))
    with archiverd.Archive(coll) as archive:
        assert archive.get(again["_id"])["final_outcome"] == "re-archived"
        assert [d["final_outcome"] for d in archive.get_all(again["_id"])][0] == "re-archived"
        assert len(archive.get_all(again["_id"])) == 2
        found = [d["_id"] for d in archive.find({})]
        assert len(found) == 7 and found.count(again["_id"]) == 1
        assert archive.count() == 7 and archive.count({"_id": again["_id"]}) == 1
        assert sum(1 for _ in archive.find({}, all_copies=True)) == 8
        hits = archive.search(again["embeddings"][FIELD.split(".")[1]], FIELD, k=3)
        assert hits[0].document["final_outcome"] == "re-archived" and hits[0].score > 0.999999
        assert [h.document["_id"] for h in hits].count(again["_id"]) == 1
