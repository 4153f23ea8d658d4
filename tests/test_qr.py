import os

import numpy as np
import pytest
import zxingcpp

from archiverd.format import frame, qr


@pytest.mark.parametrize("size", [1, 2, 17, 1000, 2929, qr.CAPACITY])
def test_symbols_are_standard_qr_that_zxing_reads(size):
    payload = os.urandom(size)
    image = qr.encode(payload)
    assert image.shape == (qr.SIZE, qr.SIZE) and set(np.unique(image)) <= {0, 255}
    found = zxingcpp.read_barcodes(np.pad(image, 4, constant_values=255), formats=zxingcpp.BarcodeFormat.QRCode)
    assert len(found) == 1
    assert bytes(found[0].bytes) == payload
    assert found[0].extra["Version"] == "40" and found[0].extra["ECLevel"] == "L"
    assert qr.read(image) == payload


def test_damaged_symbol_needs_and_gets_error_correction():
    payload = os.urandom(qr.CAPACITY)
    image = qr.encode(payload)
    rng = np.random.default_rng(3)
    data_modules = qr._tables()["order"]  # damage data only: function patterns locate the symbol
    image.ravel()[rng.choice(data_modules, 120, replace=False)] ^= 255
    assert qr.read(image) != payload  # the fast path has no error correction
    assert qr.read_robust(image) == payload


def test_oversized_payload_is_refused():
    with pytest.raises(ValueError, match="exceeds"):
        qr.encode(bytes(qr.CAPACITY + 1))


def test_what_is_not_a_frame_is_rejected():
    blank = np.full((qr.SIZE, qr.SIZE), 255, np.uint8)
    assert qr.read(np.zeros((10, 10), np.uint8)) is None
    assert qr.read_robust(blank) is None
    # the fast path reads whatever the grid says; the frame layer's magic and CRC reject it
    assert frame.from_image(blank) == (None, True)
    assert frame.from_image(qr.encode(b"ARVD but not a frame")) == (None, True)
