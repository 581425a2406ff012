"""PSNR on known MSEs and the official uint8 wrap-around variant."""

import math

import numpy as np
import pytest

from stylekd_jax.metrics import psnr, psnr_uint8_wraparound, to_uint8_cagan


def test_psnr_known_mse():
    a = np.zeros((2, 4, 4, 3), np.float32)
    b = a.copy()
    b[0] += 0.1          # MSE 0.01 -> 10 log10(4 / 0.01)
    b[1, 0, 0, 0] = 2.0  # MSE 4 / 48
    got = psnr(a, b)
    np.testing.assert_allclose(got, [10 * math.log10(400), 10 * math.log10(48)], rtol=1e-6)
    assert psnr(a[0], a[0]) == math.inf
    assert psnr(a[0] + 0.5, a[0], data_range=1.0) == pytest.approx(10 * math.log10(4))


def test_uint8_wraparound_differs_from_float():
    a = np.full((4, 4, 3), 10, np.uint8)
    b = np.full((4, 4, 3), 20, np.uint8)
    # correct: diff 10, MSE 100; uint8: (10 - 20) % 256 = 246, 246^2 % 256 = 100 -> same here,
    c = np.full((4, 4, 3), 30, np.uint8)
    # ... but diff 20: 20^2 = 400 wraps to 144.
    want_float = 20 * math.log10(255 / 20)
    assert psnr(a.astype(float), c.astype(float), data_range=255) == pytest.approx(want_float)
    assert psnr_uint8_wraparound(a, c) == pytest.approx(20 * math.log10(255 / math.sqrt(144)))
    assert psnr_uint8_wraparound(a, b) == pytest.approx(20 * math.log10(255 / 10))
    assert psnr_uint8_wraparound(a, a) == 100.0
    # 16^2 = 256 wraps to 0: the official code calls a visibly different image perfect
    assert psnr_uint8_wraparound(a, a + 16) == 100.0
    np.testing.assert_allclose(psnr_uint8_wraparound(np.stack([a, a]), np.stack([c, a])),
                               [20 * math.log10(255 / 12), 100.0])
    with pytest.raises(TypeError):
        psnr_uint8_wraparound(a.astype(np.float32), c)


def test_to_uint8_cagan_truncates():
    x = np.array([-2.0, -1.0, 0.0, 0.999, 1.0, 3.0], np.float32)
    np.testing.assert_array_equal(to_uint8_cagan(x), [0, 0, 127, 254, 255, 255])
