"""Vector sidecars (`<segment>.vectors`) and two-stage semantic search over archived embeddings.

A search must not decode whole segments, so every sealed segment gets a small derived file holding a
~1.9-bit code of each document's embedding in each vector field. A query scores every code (stage 1,
a table lookup per code byte), then re-ranks the best candidates with their exact vectors, fetched
from the video by a callback (stage 2), and returns exact cosine scores, best first.

Why both stages (bench/RESULTS-search.md has the figures): the sidecar may cost at most 5 % of the
segment, about 370 bytes per 1536-d vector. With random unit vectors and 10,000 documents the true
top-10 cosines are separated by ~0.002 while any code of that size estimates a cosine with an error
of ~0.01, so codes alone find ~half of the top 10. Exact vectors exist only in the video.

Quantiser. Each vector x is normalised, rotated by a fixed randomised Hadamard transform (so that
every coordinate of any vector, however skewed, is close to N(0, 1/d)), scaled to unit variance and
cut by Lloyd-Max quantisers for N(0, 1): the first `two_bit` rotated coordinates with 4 levels (packed
4 per byte), the rest with 3 levels (packed 5 per byte, base 3), so that a 1536-d vector takes 370
bytes (1.93 bits per dimension; 2 bits everywhere would be 384 bytes, over budget). The estimate
of cos(q, x) is sum_i q'_i c_i / ((1 - D_i) sqrt d), with q' the rotated unit query, c_i the level of
coordinate i and D_i its quantiser's mean squared error: unbiased, with standard deviation
sigma = sqrt(sum_i q'_i^2 D_i / (1 - D_i) / d) (~0.010 for 1536-d), which sets the re-rank depth.

Re-rank depth. Candidates are fetched in order of their estimate until the next estimate is below
the k-th best exact score so far minus `confidence` * sigma: a true neighbour is missed only if its
estimate errs low by more than that margin, so recall depends on `confidence`, not on archive size
(the number fetched grows with it instead).

Determinism. Building uses only IEEE-exact elementwise operations (no BLAS, no reductions whose
order depends on the CPU): norms by a fixed tree of adds, the rotation as Hadamard butterflies,
thresholds by comparison, the rotation's signs and permutations from SHAKE-256. So `reindex`
rebuilds a sidecar bit for bit from the documents, on any machine.

File layout (little-endian):

    0     4  magic b"ARVQ"
    4     2  version (1)
    6     4  header length H (at most 1 MiB)
    10    H  header: UTF-8 JSON, sorted keys -- documents, identity (the segment's content_sha256),
             rotation, quantiser levels/cuts/mse, and per field: name, dim, two_bit, trit,
             code_bytes, present
    .        per field, in header order: presence bitmap (ceil(documents / 8) bytes, bit i of byte
             i // 8, least significant first = document i has a code), then `present` codes of
             `code_bytes` bytes, in document order
    end-32 32 SHA-256 of every byte before it

A sidecar is derived data: never needed to restore a document, checked in full on load (a damaged,
foreign or stale one raises SegmentError and the caller searches that segment exactly instead).
"""
from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from bson.int64 import Int64
from bson.raw_bson import RawBSONDocument

from ..errors import SegmentError

MAGIC = b"ARVQ"
VERSION = 1
SUFFIX = ".vectors"
ROTATION = "hadamard-3-shake256"
ROUNDS = 3
BITS_PER_DIM = 1.93  # 370 bytes per 1536-d vector: 4 fields of EAT = 4.96 % of a segment
DEFAULT_PREFIX = "embeddings"
DEFAULT_CONFIDENCE = 1.5  # recall@10 ~0.98 on random embeddings (bench/RESULTS-search.md)
DEFAULT_BATCH = 32  # fetched counts are the same for 4..32 (the cutoff rarely moves within a batch)
MIN_DIM, MAX_DIM = 8, 65536
MAX_FIELDS = 256
MAX_DOCUMENTS = 1 << 24
MAX_HEADER = 1 << 20
MAX_FILE = 1 << 31
_PREFIX = struct.Struct("<4sHI")
_DIGEST = 32
_CHUNK = 256  # vectors encoded at once while building (bounded memory)
_NUMERIC = frozenset((float, int, Int64))
_TRIT_VALUES = 243  # 3 ** 5


def path_for(video: Path) -> Path:
    """part-0001.mkv -> part-0001.vectors"""
    return video.with_name(video.name.rsplit(".", 1)[0] + SUFFIX)


# --- quantiser -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Quantiser:
    """Lloyd-Max quantisers for N(0, 1): 4 levels (2 bits) and 3 levels (packed base 3)."""

    levels2: tuple[float, ...] = (-1.5104176085, -0.4527800346, 0.4527800346, 1.5104176085)
    cuts2: tuple[float, ...] = (-0.9815988216, 0.0, 0.9815988216)
    mse2: float = 0.1174818478
    levels3: tuple[float, ...] = (-1.2240063619, 0.0, 1.2240063619)
    cuts3: tuple[float, ...] = (-0.6120031810, 0.6120031810)
    mse3: float = 0.1901740392

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, value: Any) -> Quantiser:
        """Parse and check header parameters (ValueError if implausible)."""
        if not isinstance(value, dict) or set(value) != set(cls.__dataclass_fields__):
            raise ValueError("quantiser parameters are missing or unknown")
        lists = {k: v for k, v in value.items() if not k.startswith("mse")}

        def number(v: Any) -> bool:
            return type(v) in (int, float) and math.isfinite(v)

        if not all(isinstance(v, list) and all(map(number, v)) and v == sorted(v) for v in lists.values()) \
                or not all(number(value[k]) and 0 < value[k] < 1 for k in ("mse2", "mse3")):
            raise ValueError("quantiser parameters are implausible")
        q = cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in value.items()})
        if (len(q.levels2), len(q.cuts2), len(q.levels3), len(q.cuts3)) != (4, 3, 3, 2):
            raise ValueError("quantiser parameters are implausible")
        return q


@dataclass(frozen=True)
class Layout:
    """How the rotated coordinates of a `dim`-d vector are coded: `two_bit` of them (a multiple of 4)
    with 4 levels, the remaining `trit` with 3 levels."""

    dim: int
    two_bit: int
    trit: int

    @property
    def code_bytes(self) -> int:
        return self.two_bit // 4 + -(-self.trit // 5)

    @classmethod
    def for_dim(cls, dim: int, bits_per_dim: float = BITS_PER_DIM) -> Layout:
        """The most 2-bit coordinates that keep the code within `bits_per_dim`."""
        budget = max(int(dim * bits_per_dim) // 8, -(-dim // 5))
        quads = dim // 4
        while quads and quads + -(-(dim - 4 * quads) // 5) > budget:
            quads -= 1
        return cls(dim, 4 * quads, dim - 4 * quads)


@lru_cache(maxsize=32)
def _rotation(dim: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """(permutation, signs) per round, from SHAKE-256 so that any implementation can reproduce them."""
    sign_bytes = -(-dim // 8)
    stream = hashlib.shake_256(f"{ROTATION}/{dim}".encode()).digest(ROUNDS * (8 * dim + sign_bytes))
    rounds, pos = [], 0
    for _ in range(ROUNDS):
        keys = np.frombuffer(stream, dtype="<u8", count=dim, offset=pos)
        pos += 8 * dim
        bits = np.unpackbits(np.frombuffer(stream, dtype=np.uint8, count=sign_bytes, offset=pos),
                             bitorder="little")[:dim]
        pos += sign_bytes
        rounds.append((np.argsort(keys, kind="stable"), 1.0 - 2.0 * bits))
    return tuple(rounds)


def _blocks(dim: int) -> list[tuple[int, int]]:
    """(start, size) of the power-of-two blocks the Hadamard transform works on (binary digits of dim)."""
    out, start = [], 0
    for bit in reversed(range(dim.bit_length())):
        if dim >> bit & 1:
            out.append((start, 1 << bit))
            start += 1 << bit
    return out


def rotate(x: np.ndarray) -> np.ndarray:
    """Rows of `x` (float64) times the fixed orthogonal rotation for their dimension."""
    n, dim = x.shape
    for perm, signs in _rotation(dim):
        x = x[:, perm] * signs
        for start, size in _blocks(dim):
            a = x[:, start:start + size]
            h = 1
            while h < size:  # butterflies: elementwise adds only, so the result is bit-reproducible
                pairs = a.reshape(n, size // (2 * h), 2, h)
                out = np.empty_like(pairs)
                np.add(pairs[:, :, 0], pairs[:, :, 1], out=out[:, :, 0])
                np.subtract(pairs[:, :, 0], pairs[:, :, 1], out=out[:, :, 1])
                a = out.reshape(n, size)
                h *= 2
            x[:, start:start + size] = a * (1.0 / math.sqrt(size))
    return x


def _squared_norms(x: np.ndarray) -> np.ndarray:
    """Sum of squares per row by a fixed tree of elementwise adds: unlike np.sum or BLAS, the same
    bits on every machine and numpy version."""
    s = x * x
    while s.shape[1] > 1:
        if s.shape[1] % 2:
            s = np.concatenate((s, np.zeros((s.shape[0], 1))), axis=1)
        s = s[:, 0::2] + s[:, 1::2]
    return s[:, 0]


_POW3 = 3 ** np.arange(5, dtype=np.uint8)
_DIGITS2 = (np.arange(256)[:, None] >> (2 * np.arange(4))) & 3          # byte -> 4 level indices
_DIGITS3 = (np.arange(_TRIT_VALUES)[:, None] // 3 ** np.arange(5)) % 3  # byte -> 5 level indices


def encode(vectors: np.ndarray, layout: Layout, quantiser: Quantiser = Quantiser()) -> np.ndarray:
    """Codes (n, code_bytes) of n non-zero finite float64 vectors, reproducible bit for bit."""
    n, dim = vectors.shape
    z = rotate(vectors) * (math.sqrt(dim) / np.sqrt(_squared_norms(vectors)))[:, None]
    two = z[:, :layout.two_bit]
    digits2 = sum((two > c).astype(np.uint8) for c in quantiser.cuts2).reshape(n, -1, 4)
    packed2 = digits2[:, :, 0] | digits2[:, :, 1] << 2 | digits2[:, :, 2] << 4 | digits2[:, :, 3] << 6
    three = z[:, layout.two_bit:]
    digits3 = np.ones((n, -(-layout.trit // 5) * 5), dtype=np.uint8)  # padding: the middle level
    digits3[:, :layout.trit] = sum((three > c).astype(np.uint8) for c in quantiser.cuts3)
    packed3 = (digits3.reshape(n, -1, 5) * _POW3).sum(axis=2, dtype=np.uint8)
    return np.concatenate((packed2, packed3), axis=1).astype(np.uint8)


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
    t2 = sum(np.outer(q2[:, j], w2[_DIGITS2[:, j]]) for j in range(4))
    q3 = np.zeros(-(-layout.trit // 5) * 5)
    q3[:layout.trit] = q[layout.two_bit:]
    q3 = q3.reshape(-1, 5)
    t3 = np.zeros((q3.shape[0], 256))
    t3[:, :_TRIT_VALUES] = sum(np.outer(q3[:, j], w3[_DIGITS3[:, j]]) for j in range(5))
    var = (np.square(q[:layout.two_bit]).sum() * quantiser.mse2 / (1 - quantiser.mse2)
           + np.square(q[layout.two_bit:]).sum() * quantiser.mse3 / (1 - quantiser.mse3)) / layout.dim
    return _Probe(np.concatenate((t2, t3)).astype(np.float32), float(math.sqrt(var)))


# --- values --------------------------------------------------------------------------------------

def as_vector(value: Any, dim: int | None = None) -> np.ndarray | None:
    """`value` as a float64 vector if it is a finite, non-zero array of numbers (of length `dim` when
    given), else None: such a document simply has no vector in that field."""
    if isinstance(value, np.ndarray):
        if value.ndim != 1 or value.dtype.kind not in "fiu":
            return None
        v = value.astype(np.float64)
    elif isinstance(value, (list, tuple)):
        if not value or not set(map(type, value)) <= _NUMERIC:
            return None
        v = np.array(value, dtype=np.float64)
    else:
        return None
    if (dim is not None and v.size != dim) or not MIN_DIM <= v.size <= MAX_DIM \
            or not np.isfinite(v).all() or not v.any():
        return None
    return v


def _lookup(document: Mapping[str, Any], path: str) -> Any:
    value: Any = document
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def cosine(query: np.ndarray, vector: np.ndarray) -> float:
    return float(np.dot(query, vector) / (np.linalg.norm(query) * np.linalg.norm(vector)))


# --- building ------------------------------------------------------------------------------------

class _FieldBuild:
    def __init__(self, dim: int, layout: Layout) -> None:
        self.dim, self.layout = dim, layout
        self.docs: list[int] = []
        self.pending: list[np.ndarray] = []
        self.codes: list[np.ndarray] = []

    def add(self, doc: int, vector: np.ndarray) -> None:
        self.docs.append(doc)
        self.pending.append(vector)
        if len(self.pending) >= _CHUNK:
            self.flush()

    def flush(self) -> None:
        if self.pending:
            self.codes.append(encode(np.stack(self.pending), self.layout))
            self.pending = []


class SidecarBuilder:
    """Collects codes document by document (in segment order) and writes the sidecar bytes.

    `fields` are dotted paths; None means every numeric array directly under `prefix` (for EAT:
    `embeddings.<name>`), discovered as documents arrive. A field's dimension is that of the first
    document holding it; documents without the field, or with a non-numeric, non-finite, zero or
    differently sized array there, are recorded as absent.
    """

    def __init__(self, fields: Sequence[str] | None = None, *, prefix: str = DEFAULT_PREFIX,
                 bits_per_dim: float = BITS_PER_DIM) -> None:
        self._explicit = tuple(fields) if fields is not None else None
        self._prefix = prefix
        self._bits = bits_per_dim
        self._fields: dict[str, _FieldBuild] = {}
        self._last = -1

    def add(self, doc: int, document: bytes | Mapping[str, Any]) -> None:
        """Add document number `doc` (its position in the segment), as BSON bytes or a mapping."""
        if doc <= self._last:
            raise ValueError(f"documents must be added in segment order ({doc} after {self._last})")
        self._last = doc
        if isinstance(document, (bytes, bytearray, memoryview)):
            document = RawBSONDocument(bytes(document))
        if self._explicit is not None:
            candidates = [(name, _lookup(document, name)) for name in self._explicit]
        else:
            sub = document.get(self._prefix)
            candidates = [(f"{self._prefix}.{key}", value) for key, value in sub.items()] \
                if isinstance(sub, Mapping) else []
        for name, value in candidates:
            built = self._fields.get(name)
            vector = as_vector(value, built.dim if built else None)
            if vector is None:
                continue
            if built is None:
                built = self._fields[name] = _FieldBuild(vector.size, Layout.for_dim(vector.size, self._bits))
            built.add(doc, vector)

    def build(self, documents: int, identity: str) -> bytes:
        """The sidecar for a segment of `documents` documents; `identity` ties it to the segment (use the
        index's content_sha256: known once the segment is finished, and the same when rebuilt)."""
        if documents <= self._last or documents > MAX_DOCUMENTS:
            raise ValueError(f"segment of {documents} documents cannot hold document {self._last}")
        names = sorted(self._fields)
        if len(names) > MAX_FIELDS:
            raise ValueError(f"more than {MAX_FIELDS} vector fields")
        quantiser = Quantiser()
        header: dict[str, Any] = {"documents": documents, "identity": identity, "rotation": ROTATION,
                                  "quantiser": quantiser.as_json(), "fields": []}
        body = bytearray()
        for name in names:
            built = self._fields[name]
            built.flush()
            layout = built.layout
            header["fields"].append({"name": name, "dim": layout.dim, "two_bit": layout.two_bit,
                                     "trit": layout.trit, "code_bytes": layout.code_bytes,
                                     "present": len(built.docs)})
            present = np.zeros(documents, dtype=bool)
            present[built.docs] = True
            body += np.packbits(present, bitorder="little").tobytes()
            for chunk in built.codes:
                body += chunk.tobytes()
        head = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
        data = _PREFIX.pack(MAGIC, VERSION, len(head)) + head + body
        return data + hashlib.sha256(data).digest()


# --- loading -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FieldCodes:
    """The codes of one field: `docs[j]` is the document whose code is column j of `codes`."""

    name: str
    layout: Layout
    docs: np.ndarray   # (present,) int64, ascending
    codes: np.ndarray  # (code_bytes, present) uint8: one row per code byte, for the scan


@dataclass(frozen=True)
class Sidecar:
    """A loaded, checked sidecar: the codes of each vector field of one segment."""

    documents: int
    identity: str
    quantiser: Quantiser
    fields: Mapping[str, FieldCodes]


def load(path: Path, identity: str | None = None, documents: int | None = None) -> Sidecar:
    """Read and fully check a sidecar; `identity` and `documents` (from the segment's index) must
    match when given. Raises SegmentError naming what is wrong."""
    try:
        size = path.stat().st_size
        if size > MAX_FILE:
            raise SegmentError(f"vector sidecar is {size} bytes, more than any segment needs", str(path))
        data = path.read_bytes()
    except FileNotFoundError:
        raise SegmentError("vector sidecar is missing", str(path)) from None
    except OSError as exc:
        raise SegmentError(f"cannot read vector sidecar: {exc.strerror}", str(path)) from None
    try:
        return parse(data, identity, documents)
    except ValueError as exc:
        raise SegmentError(f"vector sidecar: {exc}", str(path)) from None


def parse(data: bytes, identity: str | None = None, documents: int | None = None) -> Sidecar:
    """The sidecar in `data`; ValueError if it is damaged, foreign or does not match."""
    if len(data) < _PREFIX.size + _DIGEST or data[:4] != MAGIC:
        raise ValueError("not an archiverd vector sidecar")
    if hashlib.sha256(data[:-_DIGEST]).digest() != data[-_DIGEST:]:
        raise ValueError("SHA-256 does not match (damaged)")
    _, version, head_len = _PREFIX.unpack_from(data)
    if version != VERSION:
        raise ValueError(f"unsupported version {version}")
    end = len(data) - _DIGEST
    if head_len > MAX_HEADER or _PREFIX.size + head_len > end:
        raise ValueError("header length is out of bounds")
    try:
        header = json.loads(data[_PREFIX.size:_PREFIX.size + head_len])
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ValueError("header is not JSON") from None
    if not isinstance(header, dict) or header.get("rotation") != ROTATION:
        raise ValueError("header is malformed or names an unknown rotation")
    n, ident, specs = header.get("documents"), header.get("identity"), header.get("fields")
    if not _is_int(n, 0, MAX_DOCUMENTS) or not isinstance(ident, str) or not isinstance(specs, list) \
            or len(specs) > MAX_FIELDS:
        raise ValueError("header is malformed")
    if identity is not None and ident != identity:
        raise ValueError("belongs to another segment (identity differs)")
    if documents is not None and n != documents:
        raise ValueError(f"covers {n} documents, the segment holds {documents}")
    quantiser = Quantiser.from_json(header.get("quantiser"))
    fields: dict[str, FieldCodes] = {}
    pos = _PREFIX.size + head_len
    bitmap_len = -(-n // 8)
    for spec in specs:
        codes = _field(spec, data, pos, end, n, bitmap_len)
        if codes.name in fields:
            raise ValueError(f"field {codes.name!r} appears twice")
        fields[codes.name] = codes
        pos += bitmap_len + codes.docs.size * codes.layout.code_bytes
    if pos != end:
        raise ValueError("length does not match the header")
    return Sidecar(n, ident, quantiser, fields)


def _is_int(value: Any, lo: int, hi: int) -> bool:
    return type(value) is int and lo <= value <= hi


def _field(spec: Any, data: bytes, pos: int, end: int, n: int, bitmap_len: int) -> FieldCodes:
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise ValueError("field entry is malformed")
    name = spec["name"]
    dim, two, trit, width, present = (spec.get(k) for k in ("dim", "two_bit", "trit", "code_bytes", "present"))
    if not (_is_int(dim, MIN_DIM, MAX_DIM) and _is_int(two, 0, dim) and two % 4 == 0 and _is_int(trit, 0, dim)
            and two + trit == dim and _is_int(present, 0, n)):
        raise ValueError(f"field {name!r}: implausible dimensions")
    layout = Layout(dim, two, trit)
    if width != layout.code_bytes:
        raise ValueError(f"field {name!r}: code size does not match its layout")
    if pos + bitmap_len + present * width > end:  # checked before anything is allocated
        raise ValueError(f"field {name!r}: extends past the end of the file")
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8, count=bitmap_len, offset=pos), bitorder="little")
    if bits[n:].any():
        raise ValueError(f"field {name!r}: presence bitmap marks documents past the end")
    docs = np.flatnonzero(bits[:n])
    if docs.size != present:
        raise ValueError(f"field {name!r}: presence bitmap disagrees with its count")
    rows = np.frombuffer(data, dtype=np.uint8, count=present * width, offset=pos + bitmap_len)
    rows = rows.reshape(present, width)
    if (rows[:, two // 4:] >= _TRIT_VALUES).any():
        raise ValueError(f"field {name!r}: invalid code bytes")
    return FieldCodes(name, layout, docs, np.ascontiguousarray(rows.T))


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
    return _estimate(sidecar, field_name, _unit_query(query))


def _estimate(sidecar: Sidecar, field_name: str, query: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    codes = sidecar.fields.get(field_name)
    if codes is None or codes.layout.dim != query.size:
        return np.empty(0, np.int64), np.empty(0, np.float32), 0.0
    probe = _probe_cached(query.tobytes(), codes.layout, sidecar.quantiser)
    scores = np.zeros(codes.docs.size, dtype=np.float32)
    for row, table in zip(codes.codes, probe.table):  # np.take: ~4 ms per 10,000 codes of 370 bytes
        scores += np.take(table, row)
    return codes.docs, scores, probe.sigma


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
    return q / math.sqrt(math.fsum((q * q).tolist()))


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
    for key, sidecar in sidecars.items():
        docs, est, s = _estimate(sidecar, field_name, q)
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
