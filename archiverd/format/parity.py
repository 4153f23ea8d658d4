"""Reed–Solomon erasure coding across frames, and where data and parity frames sit in the video.

Why across frames: one flipped bit in an FFV1 frame garbles the rest of its GOP, and a lost sector
or a truncated tail loses whole frames. A frame that fails its CRC is an *erasure* (its position is
known), so a systematic erasure code repairs up to `m` lost frames in a group of `k + m` -- the
cheapest code for the job (par2 and restic-style repair do the same).

Layout (docs/FORMAT.md §4). Data frames are cut into *stripes* of `rows` x `columns` data frames;
a stripe's parity rows follow its data. Column `g` of a stripe (data frames g, g+columns, ...) is one
Reed–Solomon group with one parity frame per parity row, so a run of consecutive lost frames -- a
GOP garbled by one flipped bit, a damaged cluster, a lost sector -- is spread over the groups: any run
of up to (parity rows x columns) frames, i.e. as long as the stripe's whole parity, is recoverable,
and so is any scatter of up to `parity rows` lost frames per group. Full stripes have COLUMNS
columns; the last stripe holds what is left (`count` data frames) in as few columns as the group
size allows (ceil(count / rows)), with the redundancy setting's share of parity frames, never fewer
than two GOPs' worth, and enough that no GOP-sized window of it can take out more frames of one
group than that group has parity.

The code: GF(2^8) with the polynomial x^8+x^4+x^3+x^2+1 (0x11D, as QR codes use); data row r is the
field element r, parity row j the element 255-j, and parity = Cauchy matrix x data:
P[j] = XOR over rows r of D[r] * inv(r XOR (255-j)). Any square submatrix of a Cauchy matrix is
invertible, so any e <= (parity rows) lost rows of a group are recovered from any e surviving
parity rows, for any number of data rows up to 255 - parity rows.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .qr import gf_tables

COLUMNS = 32
MAX_ROWS = 255  # data rows + parity rows of one stripe (distinct field elements)
DEFAULT_PERCENT = 5.0
DEFAULT_DATA_ROWS = 240


@lru_cache(maxsize=1)
def _tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(exp, log, mul): exp/log over 0x11D (QR's field) and the full 256x256 multiplication table."""
    exp, log = gf_tables()
    mul = np.zeros((256, 256), dtype=np.uint8)
    lg = log[1:256]
    mul[1:, 1:] = exp[lg[:, None] + lg[None, :]]
    return exp, log, mul


def gf_mul(a: int, b: int) -> int:
    return int(_tables()[2][a, b])


def gf_inv(a: int) -> int:
    if a == 0:
        raise ZeroDivisionError("0 has no inverse in GF(256)")
    exp, log, _ = _tables()
    return int(exp[255 - log[a]])


def coefficient(parity_row: int, data_row: int) -> int:
    """The Cauchy coefficient of data row `data_row` in parity row `parity_row`."""
    return gf_inv(data_row ^ (255 - parity_row))


@dataclass(frozen=True)
class Geometry:
    """Stripe shape: `rows` data rows and `parity_rows` parity rows of COLUMNS frames each.
    parity_rows == 0 means no parity at all (every position is a data frame)."""

    rows: int = DEFAULT_DATA_ROWS
    parity_rows: int = 12

    def __post_init__(self) -> None:
        if self.parity_rows and not (1 <= self.rows and self.rows + self.parity_rows <= MAX_ROWS):
            raise ValueError(f"stripe of {self.rows} + {self.parity_rows} rows is not possible (at most {MAX_ROWS})")

    @classmethod
    def for_percent(cls, percent: float) -> Geometry:
        """The geometry for a redundancy setting (parity as a percentage of the data)."""
        if not (0 <= percent <= 100) or math.isnan(percent):
            raise ValueError(f"redundancy must be between 0 and 100 percent (got {percent})")
        if percent == 0:
            return cls(DEFAULT_DATA_ROWS, 0)
        rows = min(DEFAULT_DATA_ROWS, int(MAX_ROWS / (1 + percent / 100)))
        return cls(rows, max(1, min(MAX_ROWS - rows, round(rows * percent / 100))))

    @property
    def data_per_stripe(self) -> int:
        return self.rows * COLUMNS

    @property
    def stripe_positions(self) -> int:
        return (self.rows + self.parity_rows) * COLUMNS

    def data_position(self, n: int) -> int:
        """Video position of data frame n."""
        if not self.parity_rows:
            return n
        stripe, i = divmod(n, self.data_per_stripe)
        return stripe * self.stripe_positions + i

    def stripe_start(self, stripe: int) -> int:
        return stripe * self.stripe_positions

    def columns(self, count: int) -> int:
        """Columns (Reed–Solomon groups) of a stripe of `count` data frames."""
        return max(1, min(COLUMNS, math.ceil(count / self.rows)))

    def tail_parity_rows(self, count: int, gop: int) -> int:
        """Parity rows for a last stripe of `count` data frames: the setting's share of parity
        frames, at least two GOPs' worth (two flipped bits each garble at most the rest of a GOP),
        raised until no window of `gop` consecutive frames holds more frames of one group than that
        group has parity."""
        if not self.parity_rows:
            return 0
        columns = self.columns(count)
        share = round(count * self.parity_rows / self.rows)
        want = math.ceil(max(2 * gop, share) / columns)
        while want < MAX_ROWS - math.ceil(count / columns) and _worst_window(count, columns, want, gop) > want:
            want += 1
        return want

    def tail_parity_at_least(self, positions: int, gop: int) -> int:
        """A lower bound on the parity frames of a last stripe that spans `positions` frames, from
        its length alone: `tail_parity_rows` gives it at least max(2 GOPs, the setting's share of its
        data) parity frames, and its data are the positions less its parity. A reader that has not
        seen the stripe's parity frames uses it to leave them undecoded."""
        if not self.parity_rows:
            return 0
        least = 0
        while least < positions and least < max(2 * gop, round((positions - least) * self.parity_rows / self.rows)):
            least += 1
        return least


def _worst_window(count: int, columns: int, parity_rows: int, gop: int) -> int:
    """Most frames of one group inside any `gop` consecutive positions of a stripe."""
    owners = [i % columns for i in range(count)] + [q % columns for q in range(parity_rows * columns)]
    worst = 0
    for start in range(max(1, len(owners) - gop + 1)):
        window = owners[start:start + gop]
        worst = max(worst, max(window.count(g) for g in set(window)))
    return worst


@dataclass(frozen=True)
class ParityRef:
    """Where a parity frame belongs: its stripe, parity row and group."""

    stripe: int
    row: int
    group: int


def parity_ref(geometry: Geometry, position: int, count: int) -> ParityRef:
    """The stripe, row and group of the parity frame at `position`, given its stripe's data count."""
    stripe, offset = divmod(position, geometry.stripe_positions)
    q = offset - count
    if q < 0:
        raise ValueError(f"position {position} is a data position of its stripe")
    row, group = divmod(q, geometry.columns(count))
    return ParityRef(stripe, row, group)


def members(count: int, columns: int, group: int) -> list[int]:
    """Data rows of `group` in a stripe of `count` data frames (index in the stripe = row*columns+group)."""
    return [r for r in range(math.ceil(count / columns)) if r * columns + group < count]


def encode(data: np.ndarray, columns: int, parity_rows: int) -> np.ndarray:
    """Parity for one stripe. `data` is (count, body) uint8 in stripe order (a short last row is
    padded with zero frames, which are not stored); returns (parity_rows * columns, body) in parity
    position order (row-major)."""
    count, body = data.shape
    rows = math.ceil(count / columns)
    if count == rows * columns and data.flags.c_contiguous:
        padded = data
    else:
        padded = np.zeros((rows * columns, body), dtype=np.uint8)
        padded[:count] = data
    return encode_rows(padded.reshape(rows, columns * body), columns, parity_rows, body)


def encode_rows(rows: Iterable[np.ndarray], columns: int, parity_rows: int, body: int) -> np.ndarray:
    """`encode` from the stripe's data rows, one at a time (each `columns` x `body` bytes, the last
    padded with zero frames): the writer streams them from its spill file instead of holding a
    22 MB stripe. Returns (parity_rows * columns, body) in parity position order."""
    _, _, mul = _tables()
    out = np.zeros((parity_rows, columns * body), dtype=np.uint8)
    r = -1
    for r, row in enumerate(rows):
        if r + parity_rows >= MAX_ROWS:
            raise ValueError(f"a group of {r + 1} data rows and {parity_rows} parity rows exceeds {MAX_ROWS}")
        for j in range(parity_rows):
            out[j] ^= np.take(mul[coefficient(j, r)], row)
    return out.reshape(parity_rows * columns, body)


def _invert(matrix: list[list[int]]) -> list[list[int]]:
    """Inverse of a square matrix over GF(256) (Gauss–Jordan)."""
    n = len(matrix)
    a = [row[:] + [int(i == j) for j in range(n)] for i, row in enumerate(matrix)]
    for col in range(n):
        pivot = next((r for r in range(col, n) if a[r][col]), None)
        if pivot is None:
            raise ValueError("singular matrix")
        a[col], a[pivot] = a[pivot], a[col]
        inv = gf_inv(a[col][col])
        a[col] = [gf_mul(v, inv) for v in a[col]]
        for r in range(n):
            if r != col and a[r][col]:
                f = a[r][col]
                a[r] = [v ^ gf_mul(f, w) for v, w in zip(a[r], a[col])]
    return [row[n:] for row in a]


def recover(known: dict[int, np.ndarray], parity: dict[int, np.ndarray], rows: list[int],
            body: int) -> dict[int, np.ndarray]:
    """Rebuild the lost data rows of one group.

    known: data row -> body for the rows that survived; parity: parity row -> body that survived;
    rows: every data row of the group. Returns the lost rows, or raises ValueError when more rows
    are lost than surviving parity can rebuild.
    """
    _, _, mul = _tables()
    lost = [r for r in rows if r not in known]
    if not lost:
        return {}
    if len(lost) > len(parity):
        raise ValueError(f"{len(lost)} frames lost, {len(parity)} parity frames left")
    use = sorted(parity)[:len(lost)]
    syndromes = []
    for j in use:
        s = parity[j].copy()
        for r, value in known.items():
            s ^= mul[coefficient(j, r)][value]
        syndromes.append(s)
    inverse = _invert([[coefficient(j, r) for r in lost] for j in use])
    out = {}
    for i, r in enumerate(lost):
        acc = np.zeros(body, dtype=np.uint8)
        for col, s in enumerate(syndromes):
            if inverse[i][col]:
                acc ^= mul[inverse[i][col]][s]
        out[r] = acc
    return out
