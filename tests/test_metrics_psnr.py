"""PSNR on known MSEs, the official rounded uint8 conversion and its wrap-around PSNR."""

import math

import numpy as np
import pytest

from stylekd_jax.metrics import psnr, psnr_official_compat, psnr_uint8_wraparound, to_uint8_cagan


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


def test_to_uint8_cagan_rounds_half_up_like_convert_tensor_to_image():
    # official: clamp(-1, 1), (x + 1) / 2, * 255, + 0.5, clamp(0, 255), uint8 cast
    x = np.array([-2.0, -1.0, -0.5, 0.0, 0.5, 0.999, 1.0, 3.0], np.float32)
    # by hand: 0.5 -> 0, 64.25 -> 64, 128.0 -> 128, 191.75 -> 191, 255.37 -> 255
    want = [0, 0, 64, 128, 191, 255, 255, 255]
    np.testing.assert_array_equal(to_uint8_cagan(x), want)
    truncated = ((np.clip(x, -1, 1) + 1) / 2 * 255).astype(np.uint8)
    assert not np.array_equal(truncated, want)          # 63, 127, 254: what the old code gave
    u = np.arange(256, dtype=np.uint8)
    np.testing.assert_array_equal(to_uint8_cagan(u / 127.5 - 1.0), u)   # pictures round-trip


def test_official_compat_psnr_by_hand():
    rng = np.random.RandomState(0)
    target = rng.randint(0, 256, (3, 4, 4, 3)).astype(np.uint8)
    image = (target / 127.5 - 1.0 + rng.uniform(-0.003, 0.003, target.shape)).astype(np.float32)
    image[0, 0, 0] = [-1.7, 1.4, 0.0]                   # clamped by the conversion
    image[1, 0, 0, 0] = 0.3                             # a large error: (t - o)^2 wraps
    # by hand: round half up to [0, 255], then (t - o) and its square modulo 256
    out = np.clip(np.floor((np.clip(image.astype(np.float64), -1, 1) + 1) / 2 * 255 + 0.5), 0, 255)
    sq = ((target.astype(np.int64) - out.astype(np.int64)) % 256) ** 2 % 256
    want = [20 * math.log10(255 / math.sqrt(np.mean(s))) if np.mean(s) else 100.0 for s in sq]
    assert want[2] == 100.0                             # image 2 rounds back to its target
    got = psnr_official_compat(image, target)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(psnr_official_compat(image, target / 127.5 - 1.0), want, rtol=1e-12)
    # truncating instead of rounding changes the number
    trunc = np.clip((np.clip(image.astype(np.float64), -1, 1) + 1) / 2 * 255, 0, 255).astype(np.int64)
    assert np.mean(((target[2].astype(np.int64) - trunc[2]) % 256) ** 2 % 256) > 0.1
    assert psnr_official_compat(image[0], target[0]) == pytest.approx(want[0], rel=1e-12)
