"""Two-stage semantic search over archived embeddings (the sidecars are format/sidecar.py).

A query scores every code of every segment's sidecar (stage 1, a table lookup per code byte), then
re-ranks the best candidates with their exact vectors, read from the video's vector sections by a
callback (stage 2), and returns exact cosine scores, best first. Candidates are fetched in order of
their estimate until the next estimate is below the k-th best exact score so far minus
`confidence` * sigma (the code's predicted estimation error): a true neighbour is missed only if its
estimate errs low by more than that margin, so recall depends on `confidence`, not on archive size.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from ..format.sidecar import (DIGITS2, DIGITS3, MAX_DIM, MIN_DIM, TRIT_VALUES, Layout, Quantiser, Sidecar, as_vector,
                              rotate)

DEFAULT_CONFIDENCE = 2.0  # mean recall@10 0.988 random / 0.995 perturbed queries (bench/RESULTS-search.md)
DEFAULT_BATCH = 32  # fetched counts are the same for 4..32 (the cutoff rarely moves within a batch)


@dataclass(frozen=True)
class _Probe:
    """A query prepared for one layout: per code byte, the contribution of each byte value."""

    table: np.ndarray  # (code_bytes, 256) float32
    sigma: float       # standard deviation of an estimate's error


def _probe(unit: np.ndarray, layout: Layout, quantiser: Quantiser) -> _Probe:
    q = rotate(unit[None, :])[0]
    root = math.sqrt(layout.dim)
    w2 = np.asarray(quantiser.levels2) / ((1 - quantiser.mse2) * root)
    w3 = np.asarray(quantiser.levels3) / ((1 - quantiser.mse3) * root)
    q2 = q[:layout.two_bit].reshape(-1, 4)
    t2 = sum(np.outer(q2[:, j], w2[DIGITS2[:, j]]) for j in range(4))
    q3 = np.zeros(-(-layout.trit // 5) * 5)
    q3[:layout.trit] = q[layout.two_bit:]
    q3 = q3.reshape(-1, 5)
    t3 = np.zeros((q3.shape[0], 256))
    t3[:, :TRIT_VALUES] = sum(np.outer(q3[:, j], w3[DIGITS3[:, j]]) for j in range(5))
    var = (np.square(q[:layout.two_bit]).sum() * quantiser.mse2 / (1 - quantiser.mse2)
           + np.square(q[layout.two_bit:]).sum() * quantiser.mse3 / (1 - quantiser.mse3)) / layout.dim
    return _Probe(np.concatenate((t2, t3)).astype(np.float32), float(math.sqrt(var)))

def cosine(query: np.ndarray, vector: np.ndarray) -> float:
    """The cosine of the angle between them, within [-1, 1] (rounding can step just past: 1.0000000000000002)."""
    return min(1.0, max(-1.0, float(np.dot(_unit(query), _unit(vector)))))


def _unit(v: np.ndarray) -> np.ndarray:
    """A finite, non-zero `v` scaled to length 1. Values near 1e308 (or subnormal ones) square to
    inf (or 0): such a vector is first scaled by its largest magnitude, else every score is NaN."""
    with np.errstate(over="ignore", under="ignore"):
        norm = math.sqrt(math.fsum((v * v).tolist()))
    if not 0 < norm < math.inf:
        v = v / np.max(np.abs(v))
        norm = math.sqrt(math.fsum((v * v).tolist()))
    return v / norm

# --- searching -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Hit:
    segment: Hashable
    doc: int
    score: float  # exact cosine


@dataclass
class SearchStats:
    """What a search did: vectors scored from codes, exact vectors fetched, fetch rounds, and
    documents of segments searched exactly because they had no usable sidecar."""

    scanned: int = 0
    fetched: int = 0
    rounds: int = 0
    unindexed: int = 0


Candidate = tuple[Hashable, int]
FetchExact = Callable[[list[Candidate]], Mapping[Candidate, Any]]


def estimate(sidecar: Sidecar, field_name: str, query: Any) -> tuple[np.ndarray, np.ndarray, float]:
    """(documents, estimated cosines, error sigma) for every code of `field_name` in one sidecar."""
    ((docs, scores, sigma),) = _estimates([sidecar], field_name, _unit_query(query))
    return docs, scores, sigma


def _estimates(sidecars: list[Sidecar], field_name: str,
               query: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """`estimate` for each of several sidecars. Codes of the same layout are scanned together, as
    one array: a table lookup per code byte costs ~4 ms per 10,000 codes in one pass, but ~0.8 ms
    per segment when each segment is its own pass."""
    out: list[tuple[np.ndarray, np.ndarray, float]] = [(np.empty(0, np.int64), np.empty(0, np.float32), 0.0)] \
        * len(sidecars)
    groups: dict[tuple[Layout, Quantiser], list[int]] = {}
    for i, sidecar in enumerate(sidecars):
        codes = sidecar.fields.get(field_name)
        if codes is not None and codes.layout.dim == query.size:
            groups.setdefault((codes.layout, sidecar.quantiser), []).append(i)
    for (layout, quantiser), members in groups.items():
        probe = _probe_cached(query.tobytes(), layout, quantiser)
        parts = [sidecars[i].fields[field_name] for i in members]
        codes = parts[0].codes if len(parts) == 1 else np.concatenate([c.codes for c in parts], axis=1)
        scores = np.zeros(codes.shape[1], dtype=np.float32)
        for row, table in zip(codes, probe.table):
            scores += np.take(table, row)
        start = 0
        for i, part in zip(members, parts):
            out[i] = (part.docs, scores[start:start + part.docs.size], probe.sigma)
            start += part.docs.size
    return out


@lru_cache(maxsize=8)
def _probe_cached(unit: bytes, layout: Layout, quantiser: Quantiser) -> _Probe:
    return _probe(np.frombuffer(unit), layout, quantiser)


def _unit_query(query: Any) -> np.ndarray:
    try:
        q = as_vector(np.asarray(query, dtype=np.float64))
    except (TypeError, ValueError):
        q = None
    if q is None:
        raise ValueError(f"the query must be a finite, non-zero array of {MIN_DIM}..{MAX_DIM} numbers")
    return _unit(q)


def search(query: Any, field_name: str, k: int, sidecars: Mapping[Hashable, Sidecar],
           fetch_exact: FetchExact, *, unindexed: Mapping[Hashable, int] | None = None,
           allowed: Mapping[Hashable, np.ndarray] | None = None, confidence: float = DEFAULT_CONFIDENCE,
           batch: int = DEFAULT_BATCH, stats: SearchStats | None = None) -> list[Hit]:
    """The k documents most similar to `query` in `field_name`, best first, with exact cosine scores.

    `sidecars` maps a segment key to its loaded sidecar; `unindexed` maps a segment without a usable
    sidecar to its document count (all of its documents are fetched; keys disjoint from
    `sidecars`). `allowed` optionally maps a segment key to a boolean mask over its documents
    (filters); segments absent from it are searched whole. `fetch_exact(candidates)` returns, for
    each (segment key, document number) asked, that document's value in the field (array of
    numbers, or None if it has none); it is called with at most `batch` candidates at a time (plus
    whole unindexed segments), in order of decreasing estimate, so it may fetch them in parallel.
    Ties rank by segment order, then document.
    """
    if not isinstance(k, int) or k < 1:
        raise ValueError("k must be a positive integer")
    q = _unit_query(query)
    if unindexed and not unindexed.keys().isdisjoint(sidecars.keys()):
        raise ValueError("a segment cannot be both indexed and unindexed")
    stats = stats if stats is not None else SearchStats()
    order_of = {key: i for i, key in enumerate([*sidecars, *(unindexed or {})])}
    seg_parts, doc_parts, est_parts, sigma = [], [], [], 0.0
    for (key, sidecar), (docs, est, s) in zip(sidecars.items(), _estimates(list(sidecars.values()), field_name, q)):
        stats.scanned += docs.size
        if allowed is not None and key in allowed:
            keep = _mask(allowed[key], sidecar.documents)[docs]
            docs, est = docs[keep], est[keep]
        sigma = max(sigma, s)
        seg_parts.append(np.full(docs.size, order_of[key]))
        doc_parts.append(docs)
        est_parts.append(est.astype(np.float64))
    keys = list(order_of)
    exact: dict[Candidate, float] = {}

    def take(candidates: list[Candidate]) -> None:
        if not candidates:
            return
        stats.rounds += 1
        stats.fetched += len(candidates)
        got = fetch_exact(candidates)
        for cand in candidates:
            vector = as_vector(got.get(cand), q.size)
            if vector is not None:
                exact[cand] = cosine(q, vector)

    for key, count in (unindexed or {}).items():
        docs = np.arange(count)
        if allowed is not None and key in allowed:
            docs = docs[_mask(allowed[key], count)]
        stats.unindexed += docs.size
        take([(key, int(d)) for d in docs])
    seg = np.concatenate(seg_parts) if seg_parts else np.empty(0, np.int64)
    doc = np.concatenate(doc_parts) if doc_parts else np.empty(0, np.int64)
    est = np.concatenate(est_parts) if est_parts else np.empty(0)
    order = np.lexsort((doc, seg, -est))
    margin = confidence * sigma
    i = 0
    while i < order.size:
        ranked = sorted(exact.values(), reverse=True)
        if len(ranked) >= k:
            cutoff = ranked[k - 1] - margin
            stop = i
            while stop < order.size and stop - i < batch and est[order[stop]] >= cutoff:
                stop += 1
        else:
            stop = min(order.size, i + max(batch, k - len(ranked)))
        if stop == i:
            break
        take([(keys[seg[j]], int(doc[j])) for j in order[i:stop]])
        i = stop
    best = sorted(exact.items(), key=lambda item: (-item[1], order_of[item[0][0]], item[0][1]))[:k]
    return [Hit(key, d, score) for (key, d), score in best]


def _mask(mask: np.ndarray, documents: int) -> np.ndarray:
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (documents,):
        raise ValueError(f"filter mask has shape {mask.shape}, the segment holds {documents} documents")
    return mask


def exact_search(query: Any, vectors: Iterable[tuple[Hashable, Any]], k: int) -> list[tuple[Hashable, float]]:
    """Exact cosine search over (key, vector) pairs: the k best, ties in input order. The reference
    that stage 2 must agree with, and the fallback when no sidecar can be used."""
    q = _unit_query(query)
    scored = [(key, cosine(q, v), i) for i, (key, value) in enumerate(vectors)
              if (v := as_vector(value, q.size)) is not None]
    scored.sort(key=lambda item: (-item[1], item[2]))
    return [(key, score) for key, score, _ in scored[:k]]
