"""Vector sidecars (`<segment>.vectors`): the compact codes behind semantic search (query/search.py).

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
             rotation, quantiser levels/cuts/mse, covers ({"prefix": "embeddings"}: every numeric
             array directly under that sub-document was coded; or {"fields": [...]}), and per
             field: name, dim, two_bit, trit, code_bytes, present
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import bson
from bson.int64 import Int64

from ..errors import SegmentError
from ..store import durable
from . import bsonpack
from .documents import field_value
from .encryption import SegmentKeys, is_sealed_sidecar, open_sidecar
MAGIC = b"ARVQ"
VERSION = 1
SUFFIX = ".vectors"
ROTATION = "hadamard-3-shake256"
ROUNDS = 3
BITS_PER_DIM = 1.93  # 370 bytes per 1536-d vector: 4 fields of EAT = 4.96 % of a segment
DEFAULT_PREFIX = "embeddings"
MIN_DIM, MAX_DIM = 8, 65536
MAX_FIELDS = 256
MAX_DOCUMENTS = 1 << 24
MAX_HEADER = 1 << 20
MAX_FILE = 1 << 31
_PREFIX = struct.Struct("<4sHI")
_DIGEST = 32
_CHUNK = 64  # vectors encoded at once while building: 3 MB for four 1536-d fields; as fast as 256
_NUMERIC = frozenset((float, int, Int64))
TRIT_VALUES = 243  # 3 ** 5


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
DIGITS2 = (np.arange(256)[:, None] >> (2 * np.arange(4))) & 3          # code byte -> its 4 level indices
DIGITS3 = (np.arange(TRIT_VALUES)[:, None] // 3 ** np.arange(5)) % 3  # code byte -> its 5 level indices


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


# --- building ------------------------------------------------------------------------------------

def _under_prefix(raw: bytes, prefix: str) -> list[tuple[str, Any]] | None:
    """What `SidecarBuilder.add` takes from the sub-document `prefix` of BSON bytes -- (dotted name,
    value) of each of its elements -- read straight from the bytes: an array of doubles in the
    canonical framing becomes a float64 array over its bytes (the values `bson.decode` gives,
    without a Python float for each of 1,536 of them: a third of the CPU of building); any other
    value is decoded on its own. None when the document is not plain enough for this (a dotted
    prefix or key, a prefix that is not a sub-document): then the caller decodes it as a whole."""
    if "." in prefix:
        return None
    element = bsonpack.top_level_element(raw, prefix.encode("utf-8", "surrogatepass"))
    if element is None:
        return []  # no such field (or not a well-formed document): no vectors
    if element[4] != 0x03:
        return None
    start = element.index(b"\0", 5) + 1
    found: dict[str, Any] = {}
    try:
        buf = np.frombuffer(element, dtype=np.uint8)
        for etype, key, at, end in bsonpack.elements(element, start, len(element) - 1):
            name = key.decode("utf-8")
            if "." in name:
                return None
            values = bsonpack.float64_values(buf, at, end - at) if etype == 0x04 else None
            if values is None:
                piece = element[at - len(key) - 2:end]
                ok, values = field_value(bsonpack.INT32.pack(len(piece) + 5) + piece + b"\0", name)
                if not ok:
                    return []  # a value that does not decode: like a sub-document that does not
            found[f"{prefix}.{name}"] = values
    except ValueError:  # malformed, or a key that is not UTF-8: decoding the whole fails the same way
        return []
    return list(found.items())


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
        """Add document number `doc` (its position in the segment), as BSON bytes or a mapping; a
        value that cannot be decoded is no vector, never an error."""
        if doc <= self._last:
            raise ValueError(f"documents must be added in segment order ({doc} after {self._last})")
        if isinstance(document, Mapping):
            def lookup(path: str) -> tuple[bool, Any]:
                value: Any = document
                for part in path.split("."):
                    if not isinstance(value, Mapping) or part not in value:
                        return False, None
                    value = value[part]
                return True, value
        else:
            raw = bytes(document)
            if self._explicit is None:
                direct = _under_prefix(raw, self._prefix)
                if direct is not None:
                    for name, value in direct:
                        self.add_vector(doc, name, value)
                    self._last = doc
                    return

            def lookup(path: str) -> tuple[bool, Any]:
                return field_value(raw, path)
        if self._explicit is not None:
            candidates = [(name, lookup(name)[1]) for name in self._explicit]
        else:
            found, sub = lookup(self._prefix)
            try:
                candidates = [(f"{self._prefix}.{key}", value) for key, value in sub.items()] \
                    if found and isinstance(sub, Mapping) else []
            except (bson.errors.BSONError, ValueError, OverflowError):
                candidates = []
        for name, value in candidates:
            self.add_vector(doc, name, value)
        self._last = doc

    def add_vector(self, doc: int, name: str, value: Any) -> None:
        """Add one embedding of document `doc` (documents in segment order within each field); a
        value that is not a usable vector (or not of the field's dimension) is recorded as absent."""
        built = self._fields.get(name)
        if built is not None and built.docs and doc <= built.docs[-1]:
            raise ValueError(f"documents must be added in segment order ({doc} after {built.docs[-1]} in {name})")
        vector = as_vector(value, built.dim if built else None)
        if vector is None:
            return
        if built is None:
            built = self._fields[name] = _FieldBuild(vector.size, Layout.for_dim(vector.size, self._bits))
        built.add(doc, vector)
        self._last = max(self._last, doc)

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
                                  "quantiser": quantiser.as_json(), "fields": [],
                                  "covers": {"fields": list(self._explicit)} if self._explicit is not None
                                  else {"prefix": self._prefix}}
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
    covers_prefix: str | None = None  # every numeric array directly under this sub-document was coded
    covers_fields: tuple[str, ...] = ()  # else: these fields were

    def covers(self, name: str) -> bool:
        """Whether every usable vector of field `name` is in this sidecar (absent = the document has none)."""
        if self.covers_prefix is not None:
            head, _, rest = name.partition(".")
            return head == self.covers_prefix and bool(rest) and "." not in rest
        return name in self.covers_fields


def load(path: Path, identity: str | None = None, documents: int | None = None,
         keys: SegmentKeys | None = None) -> Sidecar:
    """Read and fully check a sidecar; `identity` and `documents` (from the segment's index) must
    match when given; an encrypted segment's sidecar is opened with its `keys`. Raises SegmentError
    naming what is wrong."""
    return opened(durable.read_bounded(path, MAX_FILE, "vector sidecar"), str(path), identity, documents, keys)


def opened(data: bytes, where: str, identity: str | None = None, documents: int | None = None,
           keys: SegmentKeys | None = None) -> Sidecar:
    """`load` of a sidecar's bytes read elsewhere (an object store); `where` names it in errors."""
    if is_sealed_sidecar(data):
        if keys is None:
            raise SegmentError("vector sidecar is encrypted, the segment is not", where)
        data = open_sidecar(keys, data, where)
    elif keys is not None:
        raise SegmentError("vector sidecar is not encrypted, the segment is", where)
    try:
        return parse(data, identity, documents)
    except ValueError as exc:
        raise SegmentError(f"vector sidecar: {exc}", where) from None


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
    covers = header.get("covers")
    prefix = covers.get("prefix") if isinstance(covers, dict) else None
    named = covers.get("fields") if isinstance(covers, dict) else None
    if not isinstance(prefix, str) and not (isinstance(named, list) and all(isinstance(f, str) for f in named)):
        raise ValueError("header does not say which fields it covers")
    return Sidecar(n, ident, quantiser, fields, prefix if isinstance(prefix, str) else None,
                   tuple(named) if isinstance(named, list) else ())


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
    if (rows[:, two // 4:] >= TRIT_VALUES).any():
        raise ValueError(f"field {name!r}: invalid code bytes")
    return FieldCodes(name, layout, docs, np.ascontiguousarray(rows.T))
