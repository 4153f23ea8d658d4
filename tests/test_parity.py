"""The Reed–Solomon erasure code and the stripe layout, against an independent pure-Python reference."""
import math
import random

import numpy as np
import pytest

from archiverd.format import parity


def _ref_mul(a: int, b: int) -> int:
    """GF(2^8) multiplication by shift-and-add over x^8+x^4+x^3+x^2+1, written without tables."""
    out = 0
    while b:
        if b & 1:
            out ^= a
        a <<= 1
        if a & 0x100:
            a ^= 0x11D
        b >>= 1
    return out


def _ref_inv(a: int) -> int:
    return next(x for x in range(1, 256) if _ref_mul(a, x) == 1)


def test_field_arithmetic_matches_the_reference():
    rng = random.Random(1)
    for _ in range(2000):
        a, b = rng.randrange(256), rng.randrange(256)
        assert parity.gf_mul(a, b) == _ref_mul(a, b)
    for a in range(1, 256):
        assert parity.gf_inv(a) == _ref_inv(a)
    with pytest.raises(ZeroDivisionError):
        parity.gf_inv(0)


@pytest.mark.parametrize("count,columns,rows", [(1, 1, 4), (7, 1, 4), (100, 1, 5), (243, 2, 6), (97, 3, 2)])
def test_parity_equals_the_cauchy_definition(count, columns, rows):
    rng = np.random.default_rng(count)
    data = rng.integers(0, 256, size=(count, 40), dtype=np.uint8)
    got = parity.encode(data, columns, rows)
    assert got.shape == (rows * columns, 40)
    for j in range(rows):
        for g in range(columns):
            expect = [0] * 40
            for r in range(math.ceil(count / columns)):
                i = r * columns + g
                if i >= count:
                    continue
                c = _ref_inv(r ^ (255 - j))
                expect = [e ^ _ref_mul(c, int(v)) for e, v in zip(expect, data[i])]
            assert got[j * columns + g].tolist() == expect


def test_any_erasures_up_to_the_parity_rows_are_recovered():
    rng = random.Random(7)
    np_rng = np.random.default_rng(7)
    for trial in range(60):
        count = rng.randrange(1, 241)
        rows = rng.randrange(1, 9)
        data = np_rng.integers(0, 256, size=(count, 64), dtype=np.uint8)
        par = parity.encode(data, 1, rows)
        members = parity.members(count, 1, 0)
        lost_data = rng.randrange(0, min(rows, count) + 1)
        lost = set(rng.sample(range(count), lost_data))
        parity_left = rows - rng.randrange(0, rows - lost_data + 1)
        keep_parity = dict(zip(rng.sample(range(rows), parity_left), [None] * parity_left))
        known = {r: data[r] for r in members if r not in lost}
        available = {j: par[j] for j in keep_parity}
        rebuilt = parity.recover(known, available, members, 64)
        assert set(rebuilt) == lost
        for r, value in rebuilt.items():
            assert np.array_equal(value, data[r]), (trial, r)


def test_a_group_larger_than_the_field_allows_is_refused():
    with pytest.raises(ValueError, match="exceeds 255"):
        parity.encode(np.zeros((250, 4), dtype=np.uint8), 1, 6)


def test_more_erasures_than_parity_is_refused_not_guessed():
    data = np.arange(10 * 8, dtype=np.uint8).reshape(10, 8)
    par = parity.encode(data, 1, 2)
    with pytest.raises(ValueError, match="3 frames lost, 2 parity"):
        parity.recover({r: data[r] for r in range(3, 10)}, {0: par[0], 1: par[1]}, list(range(10)), 8)


def test_geometry_for_the_redundancy_setting():
    g = parity.Geometry.for_percent(5)
    assert (g.rows, g.parity_rows) == (240, 12) and g.rows + g.parity_rows <= parity.MAX_ROWS
    assert parity.Geometry.for_percent(0).parity_rows == 0
    for percent in (0.1, 1, 5, 6.25, 10, 33, 50, 100):
        g = parity.Geometry.for_percent(percent)
        assert g.rows + g.parity_rows <= parity.MAX_ROWS and g.parity_rows >= 1
    for bad in (-1, 101, float("nan")):
        with pytest.raises(ValueError):
            parity.Geometry.for_percent(bad)
    g = parity.Geometry(240, 12)
    assert [g.data_position(n) for n in (0, 7679, 7680)] == [0, 7679, 8064]


@pytest.mark.parametrize("gop", [1, 2, 4, 8])
def test_every_tail_survives_the_loss_of_any_gop_and_costs_the_setting_when_large(gop):
    g = parity.Geometry.for_percent(5)
    for count in list(range(1, 300)) + [500, 1460, 3000, 7679]:
        columns = g.columns(count)
        prows = g.tail_parity_rows(count, gop)
        owners = [i % columns for i in range(count)] + [q % columns for q in range(prows * columns)]
        for start in range(0, len(owners), gop):  # GOPs start at multiples of gop
            window = owners[start:start + gop]
            assert max(window.count(x) for x in set(window)) <= prows, (count, start)
        assert prows * columns >= 2 * gop  # two flips, each garbling the rest of a GOP
        if count >= 100 and gop <= 2:
            assert prows * columns / count <= 0.06, (count, prows, columns)


def test_the_writer_streams_its_stripes_from_disk_and_gets_every_parity_frame_right(tmp_path):
    """The writer keeps a stripe's data bodies in a spill file, not in memory: a full stripe and then
    a shorter tail (whose file region still holds the full stripe's bytes past its end) must both
    get exactly the parity the definition gives, and nothing but the video is left behind."""
    import os

    from archiverd.format import frame, video
    from archiverd.format.writer import FrameWriter

    g = parity.Geometry(rows=3, parity_rows=2)
    path = tmp_path / "seg.mkv"
    writer = FrameWriter(path, b"\x01" * 8, g, workers=1)
    stream = np.random.default_rng(5).integers(0, 256, size=frame.BODY * (g.data_per_stripe + 37) + 100,
                                               dtype=np.uint8).tobytes()
    writer.write(stream)
    writer.close()
    writer.temp.publish(path)
    writer.abort()
    assert os.listdir(tmp_path) == ["seg.mkv"]
    with open(path, "rb") as f:
        reader = video.VideoReader(video.FileSource(f.fileno(), os.fstat(f.fileno()).st_size), str(path))
        frames = [frame.from_image(image)[0] for _, image in reader.frames()]
    assert all(f is not None for f in frames)
    data = [f for f in frames if f.kind != frame.PARITY]
    assert b"".join(f.body for f in data)[:len(stream)] == stream
    stripes = [data[:g.data_per_stripe], data[g.data_per_stripe:]]
    parities = [[f for f in frames if f.kind == frame.PARITY and f.stripe_count == len(s)] for s in stripes]
    for bodies, found in zip(stripes, parities):
        count = len(bodies)
        columns = g.columns(count)
        rows = found[0].stripe_parity_rows
        assert len(found) == rows * columns
        expect = parity.encode(np.array([np.frombuffer(f.body, dtype=np.uint8) for f in bodies]), columns, rows)
        assert [f.body for f in found] == [row.tobytes() for row in expect]
