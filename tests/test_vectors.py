"""Vector sidecars and two-stage search (archiverd/query/vectors.py): recall against exact cosine
search on random embeddings (the hard case for quantisation), determinism, damage detection,
bounded reads, absent values, filters and the exact fallback."""
from __future__ import annotations

import hashlib
import json
import struct

import bson
import numpy as np
import pytest

from archiverd.errors import SegmentError
from archiverd.format import sidecar as S
from archiverd.query import search as Q

DIM = 1536
FIELD = "embeddings.e"


def _unit_rows(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float64)  # float32 values as doubles, like corpus.py


def _sidecar(rows: np.ndarray, identity: str = "seg") -> bytes:
    builder = S.SidecarBuilder()
    for i, row in enumerate(rows):
        builder.add(i, {"embeddings": {"e": row}})
    return builder.build(len(rows), identity)


def _shake_vectors(n: int, dim: int, label: str) -> np.ndarray:
    """Vectors from SHAKE-256, reproducible by anyone (unlike a numpy generator across versions)."""
    raw = np.frombuffer(hashlib.shake_256(label.encode()).digest(2 * n * dim), dtype="<u2")
    return (raw.astype(np.float64) - 32767.5).reshape(n, dim) / 32768.0


@pytest.fixture(scope="module")
def archive():
    """10,000 random unit vectors in 5 segments of 2,000, their sidecars, and the exact vectors."""
    rng = np.random.default_rng(2024)
    x = _unit_rows(rng, 10_000)
    segments = {f"s{i}": x[i * 2000:(i + 1) * 2000] for i in range(5)}
    sidecars = {key: S.parse(_sidecar(rows, key), key, len(rows)) for key, rows in segments.items()}
    return x, segments, sidecars


def _fetcher(segments, calls=None):
    def fetch(candidates):
        if calls is not None:
            calls.append(list(candidates))
        return {(key, doc): segments[key][doc] for key, doc in candidates}
    return fetch


def test_code_size_fits_the_budget():
    layout = S.Layout.for_dim(DIM)
    assert (layout.two_bit, layout.trit, layout.code_bytes) == (1256, 280, 370)
    # 4 fields of an EAT document: 5 % of the ~29,850 bytes a segment spends per document is 1,492
    assert 4 * layout.code_bytes + 4 / 8 <= 0.05 * 29_800
    for dim in (8, 100, 384, 768, 1024, 3072):
        lay = S.Layout.for_dim(dim)
        assert lay.two_bit % 4 == 0 and lay.two_bit + lay.trit == dim
        assert lay.code_bytes <= max(dim * S.BITS_PER_DIM // 8, -(-dim // 5))


@pytest.mark.parametrize("dim", [1536, 100, 8])
def test_rotation_is_orthogonal(dim):
    r = S.rotate(np.eye(dim))
    assert np.allclose(r @ r.T, np.eye(dim), atol=1e-12)
    assert not np.allclose(np.abs(r), np.eye(dim))  # it does mix coordinates


def test_estimates_are_unbiased_with_the_predicted_error(archive):
    x, segments, sidecars = archive
    rng = np.random.default_rng(7)
    for q in _unit_rows(rng, 3):
        errors, sigma = [], 0.0
        for key, sidecar in sidecars.items():
            docs, est, sigma = Q.estimate(sidecar, FIELD, q)
            errors.append(est - segments[key][docs] @ q)
        e = np.concatenate(errors)
        assert abs(e.mean()) < 0.1 * sigma
        assert 0.9 * sigma < e.std() < 1.1 * sigma
        assert 0.008 < sigma < 0.012  # what sets the re-rank depth


@pytest.mark.parametrize("kind", ["random", "perturbed"])
def test_recall_at_10_against_exact_cosine(archive, kind):
    x, segments, sidecars = archive
    rng = np.random.default_rng({"random": 11, "perturbed": 12}[kind])
    queries = _unit_rows(rng, 200)
    if kind == "perturbed":  # a stored vector plus noise (cosine ~0.9 to it)
        queries = x[rng.integers(0, len(x), 200)] + 0.5 * queries
    recalls, codes_only, fetched = [], [], []
    fetch = _fetcher(segments)
    exact = x @ (queries / np.linalg.norm(queries, axis=1, keepdims=True)).T
    for j, q in enumerate(queries):
        stats = Q.SearchStats()
        hits = Q.search(q, FIELD, 10, sidecars, fetch, stats=stats)
        truth = set(np.argsort(-exact[:, j], kind="stable")[:10].tolist())
        found = [int(h.segment[1:]) * 2000 + h.doc for h in hits]
        recalls.append(len(truth & set(found)) / 10)
        fetched.append(stats.fetched)
        scores = [h.score for h in hits]
        assert scores == sorted(scores, reverse=True)
        assert np.allclose(scores, [Q.cosine(q, x[i]) for i in found], rtol=0, atol=1e-12)  # exact, not estimated
        est = np.concatenate([Q.estimate(s, FIELD, q)[1] for s in sidecars.values()])
        codes_only.append(len(truth & set(np.argsort(-est)[:10].tolist())) / 10)
    assert np.mean(recalls) >= 0.95, np.mean(recalls)
    assert np.mean(codes_only) < 0.8  # why the re-rank exists: codes alone miss a good part of the top 10
    assert np.median(fetched) < 200  # and it stays a re-rank, not a scan


def test_scores_match_exact_search_and_ties_rank_by_segment_then_document():
    rng = np.random.default_rng(3)
    rows = _unit_rows(rng, 300)
    segments = {"a": rows, "b": rows.copy()}  # every vector twice
    sidecars = {key: S.parse(_sidecar(r, key)) for key, r in segments.items()}
    q = rows[17] + 0.1 * _unit_rows(rng, 1)[0]
    hits = Q.search(q, FIELD, 6, sidecars, _fetcher(segments), confidence=10.0)
    expected = Q.exact_search(q, [((key, i), v) for key, r in segments.items() for i, v in enumerate(r)], 6)
    assert [(h.segment, h.doc) for h in hits] == [key for key, _ in expected]
    assert [h.score for h in hits] == [score for _, score in expected]
    assert [(h.segment, h.doc) for h in hits[:2]] == [("a", 17), ("b", 17)]


def test_fetches_in_bounded_batches_in_order_of_estimate(archive):
    x, segments, sidecars = archive
    calls: list = []
    q = _unit_rows(np.random.default_rng(5), 1)[0]
    Q.search(q, FIELD, 10, sidecars, _fetcher(segments, calls), batch=16)
    assert calls and all(1 <= len(c) <= 16 for c in calls)
    flat = [c for call in calls for c in call]
    assert len(flat) == len(set(flat))
    est = {}
    for key, sidecar in sidecars.items():
        docs, e, _ = Q.estimate(sidecar, FIELD, q)
        est.update({(key, int(d)): float(v) for d, v in zip(docs, e)})
    seq = [est[c] for c in flat]
    assert seq == sorted(seq, reverse=True)


def test_filters_and_unindexed_segments_match_exact_search(archive):
    x, segments, sidecars = archive
    rng = np.random.default_rng(9)
    allowed = {"s1": rng.random(2000) < 0.3, "s4": np.zeros(2000, dtype=bool)}
    indexed = {k: v for k, v in sidecars.items() if k != "s2"}
    unindexed = {"s2": 2000}  # e.g. its sidecar is damaged: searched exactly
    for q in _unit_rows(rng, 20):
        stats = Q.SearchStats()
        hits = Q.search(q, FIELD, 10, indexed, _fetcher(segments), unindexed=unindexed, allowed=allowed,
                        confidence=4.0, stats=stats)
        pool = [((key, i), v) for key in [*indexed, *unindexed] for i, v in enumerate(segments[key])
                if key not in allowed or allowed[key][i]]
        assert [(h.segment, h.doc) for h in hits] == [key for key, _ in Q.exact_search(q, pool, 10)]
        assert stats.unindexed == 2000 and stats.fetched >= 2000
        assert all(h.segment != "s4" and (h.segment != "s1" or allowed["s1"][h.doc]) for h in hits)
    with pytest.raises(ValueError, match="filter mask"):
        Q.search(q, FIELD, 10, indexed, _fetcher(segments), allowed={"s0": np.ones(5, dtype=bool)})


def test_build_is_deterministic_and_the_same_from_bson_or_mappings():
    vecs = _shake_vectors(40, DIM, "test-vectors/a")
    other = _shake_vectors(40, 768, "test-vectors/b")
    docs = []
    for i in range(40):
        doc = {"_id": i, "embeddings": {"a": vecs[i].tolist(), "b": other[i].tolist()}}
        if i % 7 == 3:
            del doc["embeddings"]["b"]
        docs.append(doc)
    builders = [S.SidecarBuilder(), S.SidecarBuilder()]
    for i, doc in enumerate(docs):
        builders[0].add(i, doc)
        builders[1].add(i, bson.encode(doc))
    first, second = (b.build(40, "id") for b in builders)
    assert first == second
    # pins the format and the quantiser: an accidental change (or a platform-dependent result) fails here
    assert hashlib.sha256(first).hexdigest() == GOLDEN_SHA256
    sidecar = S.parse(first, "id", 40)
    assert sorted(sidecar.fields) == ["embeddings.a", "embeddings.b"]
    assert sidecar.fields["embeddings.b"].docs.tolist() == [i for i in range(40) if i % 7 != 3]
    assert sidecar.fields["embeddings.b"].layout.dim == 768


GOLDEN_SHA256 = "d249d34f765ee7e46fe38993cbc75340ac4e1da1e210742e7ef2ca86b94bbebf"


def _element(key: str, raw_value: bytes, etype: int) -> bytes:
    return bytes([etype]) + key.encode() + b"\0" + raw_value


def _subdocument(*elements: bytes) -> bytes:
    body = b"".join(elements)
    return struct.pack("<i", len(body) + 5) + body + b"\0"


def test_arrays_read_from_the_bytes_give_the_codes_of_decoded_values(monkeypatch):
    """The builder reads canonical arrays of doubles straight from the BSON bytes: on every shape of
    value it must build the same sidecar as decoding each document whole."""
    rng = np.random.default_rng(9)
    good = _unit_rows(rng, 12)
    canonical = bson.encode({"v": good[0].tolist()})[4 + 3:-1]  # the array's bytes after its key
    renumbered = bytearray(canonical)
    renumbered[5:7] = b"7\0"  # key "7" where "0" belongs: a list all the same to bson.decode
    values = [
        {"e": good[1].tolist(), "f": good[2].tolist()},
        {"e": [int(v * 1000) for v in good[3]]},  # integers
        {"e": [bson.int64.Int64(int(v * 1000)) for v in good[4]]},
        {"e": good[5].tolist()[:-1] + [1]},  # mixed
        {"e": [float("nan")] + good[6].tolist()[1:], "f": [0.0] * DIM, "g": []},
        {"e": "text", "f": {"nested": good[7].tolist()}, "g": None, "h": good[8].tolist()[:100]},
        {"e": [True] * DIM, "a.b": good[9].tolist()},
        {"e": good[10].tolist(), "f": [str(v) for v in good[11]]},
    ]
    docs = [bson.encode({"_id": i, "embeddings": v, "x": 1}) for i, v in enumerate(values)]
    docs.append(bson.encode({"_id": 90, "embeddings": [good[0].tolist()]}))  # an array, not a sub-document
    docs.append(bson.encode({"_id": 91}))
    for body in (_subdocument(_element("e", canonical, 4), _element("e", bytes(renumbered), 4)),  # duplicate key
                 _subdocument(_element("f", bytes(renumbered), 4)),
                 _subdocument(_element("\xe9", canonical, 4)),
                 _subdocument(b"\x04\xff\xfe\0" + canonical)):  # a key that is not UTF-8
        docs.append(_subdocument(bson.encode({"_id": len(docs)})[4:-1], _element("embeddings", body, 3)))
    fast = S.SidecarBuilder()
    for i, raw in enumerate(docs):
        fast.add(i, raw)
    monkeypatch.setattr(S, "_under_prefix", lambda raw, prefix: None)
    whole = S.SidecarBuilder()
    for i, raw in enumerate(docs):
        whole.add(i, raw)
    assert fast.build(len(docs), "x") == whole.build(len(docs), "x")
    assert sorted(S.parse(fast.build(len(docs), "x")).fields) == ["embeddings.a.b", "embeddings.e",
                                                                   "embeddings.f", "embeddings.h", "embeddings.\xe9"]


def test_absent_values_are_recorded_and_never_returned():
    rng = np.random.default_rng(4)
    good = _unit_rows(rng, 4)
    values = [good[0].tolist(), "text", good[1][:100].tolist(), [True] * DIM, [float("nan")] + good[2][1:].tolist(),
              [0.0] * DIM, None, [str(v) for v in good[3]], good[2].tolist(), list(range(1, DIM + 1))]
    builder = S.SidecarBuilder(fields=[FIELD, "embeddings.missing"])
    for i, value in enumerate(values):
        doc = {"embeddings": {"e": value}} if value is not None else {"other": 1}
        builder.add(i, bson.encode(doc))
    sidecar = S.parse(builder.build(len(values) + 2, "x"))
    assert sidecar.fields[FIELD].docs.tolist() == [0, 8, 9]
    assert "embeddings.missing" not in sidecar.fields
    hits = Q.search(good[0], FIELD, 10, {"x": sidecar}, lambda cands: {c: values[c[1]] for c in cands})
    assert [h.doc for h in hits][0] == 0 and sorted(h.doc for h in hits) == [0, 8, 9]


def test_queries_and_k_are_checked(archive):
    _, segments, sidecars = archive
    for bad in ([], [1.0, float("nan")] * 8, [0.0] * DIM, "abc", [[1.0] * DIM]):
        with pytest.raises(ValueError, match="query"):
            Q.search(bad, FIELD, 10, sidecars, _fetcher(segments))
    with pytest.raises(ValueError, match="k must"):
        Q.search([1.0] * DIM, FIELD, 0, sidecars, _fetcher(segments))
    assert Q.search([1.0] * 100, FIELD, 10, sidecars, _fetcher(segments)) == []  # no field of that size
    assert Q.search([1.0] * DIM, "embeddings.nope", 10, sidecars, _fetcher(segments)) == []


# --- damage and bounded reads ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def small() -> bytes:
    return _sidecar(_unit_rows(np.random.default_rng(1), 30), "ident")


def _resealed(data: bytes, header_edit=None, tail: bytes | None = None) -> bytes:
    """A sidecar with an edited header (or tail) and a valid SHA-256: damage only the structure checks see."""
    _, version, head_len = struct.unpack_from("<4sHI", data)
    header = json.loads(data[10:10 + head_len])
    if header_edit:
        header_edit(header)
    head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    body = data[10 + head_len:-32] if tail is None else tail
    out = b"ARVQ" + struct.pack("<HI", version, len(head)) + head + body
    return out + hashlib.sha256(out).digest()


def test_every_damaged_byte_is_detected(small, tmp_path):
    path = tmp_path / "seg.vectors"
    for pos in range(0, len(small), max(1, len(small) // 97)):
        damaged = bytearray(small)
        damaged[pos] ^= 0x10
        path.write_bytes(bytes(damaged))
        with pytest.raises(SegmentError, match="vector sidecar"):
            S.load(path, "ident", 30)
    for cut in (small[:-1], small[:20], small + b"\0", b""):
        path.write_bytes(cut)
        with pytest.raises(SegmentError):
            S.load(path, "ident", 30)
    path.write_bytes(small)
    assert S.load(path, "ident", 30).fields[FIELD].docs.size == 30


def test_a_foreign_or_stale_sidecar_is_refused(small, tmp_path):
    path = S.path_for(tmp_path / "seg.mkv")
    assert path == tmp_path / "seg.vectors"
    path.write_bytes(small)
    with pytest.raises(SegmentError, match="another segment"):
        S.load(path, "other", 30)
    with pytest.raises(SegmentError, match="covers 30 documents"):
        S.load(path, "ident", 31)
    with pytest.raises(SegmentError, match="missing"):
        S.load(tmp_path / "none.vectors")


@pytest.mark.parametrize("edit, message", [
    (lambda h: h["fields"][0].update(present=10_000_000), "implausible|past the end"),
    (lambda h: h.update(documents=1 << 30), "malformed"),
    (lambda h: h["fields"][0].update(dim=1 << 20), "implausible"),
    (lambda h: h["fields"][0].update(code_bytes=371), "code size"),
    (lambda h: h["fields"][0].update(two_bit=1258, trit=278), "implausible"),
    (lambda h: h["fields"][0].update(present=29), "disagrees"),
    (lambda h: h["fields"].append(dict(h["fields"][0])), "past the end|twice"),
    (lambda h: h.update(rotation="other"), "rotation"),
    (lambda h: h["quantiser"].update(mse2=2.0), "quantiser"),
    (lambda h: h["quantiser"].update(levels3=[1.0, 0.0, -1.0]), "quantiser"),
    (lambda h: h.update(fields="x"), "malformed"),
])
def test_declared_lengths_are_checked_before_use(small, edit, message):
    with pytest.raises(ValueError, match=message):
        S.parse(_resealed(small, edit), "ident")


def test_any_well_sealed_but_malformed_header_raises_only_value_error(small):
    """Every header value replaced by values of other types: parse says ValueError, nothing else (the
    only edit that stays valid is renaming the field)."""
    junk = [None, True, -1, 0, 2 ** 70, 1.5, float("inf"), "x", [], [1, "a"], {}, {"name": 1}]
    header = json.loads(small[10:10 + struct.unpack_from("<I", small, 6)[0]])
    paths = [(k,) for k in header] + [("quantiser", k) for k in header["quantiser"]] \
        + [("fields", 0, k) for k in header["fields"][0]] + [("fields", 0)]
    accepted = []
    for path in paths:
        for value in junk:
            def edit(h, path=path, value=value):
                target = h
                for step in path[:-1]:
                    target = target[step]
                target[path[-1]] = value
            try:
                S.parse(_resealed(small, edit), "ident", 30)
                accepted.append((path, value))
            except ValueError:
                pass
    assert accepted == [(("fields", 0, "name"), "x")]


def test_invalid_code_bytes_and_bitmap_padding_are_refused(small):
    body = bytearray(small[10 + struct.unpack_from("<I", small, 6)[0]:-32])
    trit_byte = 4 + 1256 // 4  # first trit byte of the first code (after the 4-byte bitmap)
    body[trit_byte] = 250
    with pytest.raises(ValueError, match="invalid code"):
        S.parse(_resealed(small, tail=bytes(body)))
    body = bytearray(small[10 + struct.unpack_from("<I", small, 6)[0]:-32])
    body[3] |= 0x80  # bit 31: a document past the 30th
    with pytest.raises(ValueError, match="past the end"):
        S.parse(_resealed(small, tail=bytes(body)))
    big = b"ARVQ" + struct.pack("<HI", 1, 1 << 30) + b"{}"
    with pytest.raises(ValueError, match="header length"):
        S.parse(big + hashlib.sha256(big).digest())


def test_rebuilt_from_the_video_bit_for_bit_and_searchable_through_decoded_documents(tmp_path):
    from archiverd import SegmentReader, write_segment
    from bench.corpus import experiences

    docs = [bson.encode(d) for d in experiences(12, seed=5)]
    docs[4] = bson.encode({"_id": 4, "embeddings": {"primary_goal_description_embedding": "not a vector"}})
    idx = write_segment(tmp_path / "seg.mkv", docs)
    at_seal = S.SidecarBuilder()
    for i, raw in enumerate(docs):
        at_seal.add(i, raw)
    data = at_seal.build(len(docs), idx["content_sha256"])
    rebuilt = S.SidecarBuilder()
    for i, raw in enumerate(SegmentReader(tmp_path / "seg.mkv")):
        rebuilt.add(i, raw)
    assert rebuilt.build(idx["documents"], idx["content_sha256"]) == data
    path = S.path_for(tmp_path / "seg.mkv")
    path.write_bytes(data)
    sidecar = S.load(path, idx["content_sha256"], idx["documents"])
    assert len(sidecar.fields) == 4 and all(f.docs.size == 11 for f in sidecar.fields.values())
    decoded = [bson.decode(raw) for raw in SegmentReader(tmp_path / "seg.mkv")]
    field = "embeddings.output_summary_embedding"
    query = np.array(decoded[7]["embeddings"]["output_summary_embedding"])
    fetch = lambda cands: {(s, d): decoded[d]["embeddings"].get("output_summary_embedding") for s, d in cands}
    hits = Q.search(query, field, 3, {"seg": sidecar}, fetch)
    assert (hits[0].segment, hits[0].doc) == ("seg", 7) and abs(hits[0].score - 1.0) < 1e-12
    pool = [(i, d["embeddings"].get("output_summary_embedding")) for i, d in enumerate(decoded)]
    assert [h.doc for h in hits] == [i for i, _ in Q.exact_search(query, pool, 3)]


def test_builder_refuses_documents_out_of_order():
    builder = S.SidecarBuilder()
    builder.add(3, {"embeddings": {"e": [1.0] * 16}})
    for bad in (3, 2):
        with pytest.raises(ValueError, match="segment order"):
            builder.add(bad, {})
    with pytest.raises(ValueError, match="cannot hold"):
        builder.build(3, "x")


def test_a_segment_is_either_indexed_or_unindexed(archive):
    _, segments, sidecars = archive
    with pytest.raises(ValueError, match="both indexed and unindexed"):
        Q.search([1.0] * DIM, FIELD, 10, sidecars, _fetcher(segments), unindexed={"s0": 2000})


@pytest.mark.parametrize("scale", [1e300, 1e-310], ids=["near the largest double", "subnormal"])
def test_a_query_or_stored_vector_of_extreme_magnitude_scores_like_its_direction(archive, scale):
    """Squares of such values overflow to inf (or underflow to 0): the norm must not, or every score is NaN."""
    x, segments, sidecars = archive
    q = _unit_rows(np.random.default_rng(5), 1)[0]
    plain = Q.search(q, FIELD, 10, sidecars, _fetcher(segments))
    scaled = Q.search(q * scale, FIELD, 10, sidecars, _fetcher(segments))
    assert [(h.segment, h.doc) for h in scaled] == [(h.segment, h.doc) for h in plain]
    assert np.allclose([h.score for h in scaled], [h.score for h in plain], rtol=0, atol=1e-12)
    assert abs(Q.cosine(q, x[0] * scale) - Q.cosine(q, x[0])) < 1e-12
    extreme = Q.exact_search(q, [(i, (x[i] * scale).tolist()) for i in range(50)], 5)  # the stored side
    usual = Q.exact_search(q, [(i, x[i].tolist()) for i in range(50)], 5)
    assert [key for key, _ in extreme] == [key for key, _ in usual]
    assert np.allclose([s for _, s in extreme], [s for _, s in usual], rtol=0, atol=1e-12)


def test_a_cosine_never_steps_past_one():
    """A vector against itself scores at most 1, never 1.0000000000000002 (rounding in the dot product
    of two unit vectors lands above 1 for about one vector in seven)."""
    rng = np.random.default_rng(0)
    vectors = [rng.standard_normal(1536).astype(np.float32).astype(np.float64) for _ in range(200)]
    assert any(float(np.dot(Q._unit(v), Q._unit(v))) > 1 for v in vectors)  # what the bound is for
    assert all(1 - 1e-12 < Q.cosine(v, v) <= 1.0 and -1.0 <= Q.cosine(v, -v) < -1 + 1e-12 for v in vectors)
