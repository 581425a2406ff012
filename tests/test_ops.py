"""The resampling ops against a direct NumPy transcription of their reference definitions."""

import jax.numpy as jnp
import numpy as np
import pytest

from stylekd_jax.networks.layers import conv2d_up2
from stylekd_jax.networks.synthesis import modulated_conv2d
from stylekd_jax.ops.bias_act import bias_act
from stylekd_jax.ops.upfirdn2d import downsample2d, filters_as_depthwise_conv, upfirdn2d, upsample2d


def numpy_upfirdn2d(x, f, up=1, down=1, pad=(0, 0, 0, 0), gain=1.0):
    """Zero-insert, pad (negative crops), true 2-D convolution, decimate: loops, NHWC."""
    n, h, w, c = x.shape
    z = np.zeros((n, h * up, w * up, c), x.dtype)
    z[:, ::up, ::up] = x
    px0, px1, py0, py1 = pad
    z = np.pad(z, [(0, 0), (max(py0, 0), max(py1, 0)), (max(px0, 0), max(px1, 0)), (0, 0)])
    z = z[:, max(-py0, 0): z.shape[1] - max(-py1, 0), max(-px0, 0): z.shape[2] - max(-px1, 0)]
    k = f.shape[0]
    fk = f * gain
    oh, ow = z.shape[1] - k + 1, z.shape[2] - k + 1
    out = np.zeros((n, oh, ow, c), np.float64)
    for i in range(oh):
        for j in range(ow):
            # convolution: out[i, j] = sum_{a,b} z[i + a, j + b] * f[k-1-a, k-1-b]
            out[:, i, j] = np.einsum("nabc,ab->nc", z[:, i:i + k, j:j + k], fk[::-1, ::-1])
    return out[:, ::down, ::down]


def numpy_corr_valid(x, w):
    """VALID cross-correlation, NHWC x HWIO."""
    k = w.shape[0]
    oh, ow = x.shape[1] - k + 1, x.shape[2] - k + 1
    out = np.zeros((x.shape[0], oh, ow, w.shape[3]))
    for i in range(oh):
        for j in range(ow):
            out[:, i, j] = np.einsum("nabi,abio->no", x[:, i:i + k, j:j + k], w)
    return out


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("up,down,pad,gain", [(1, 1, (1, 2, 0, -1), 1.0), (2, 1, (2, 1, 2, 1), 4.0),
                                              (1, 2, (1, 1, 1, 1), 1.0), (2, 2, (3, 0, 1, 2), 2.0)])
@pytest.mark.parametrize("as_conv", [False, True], ids=["slices", "depthwise_conv"])
def test_upfirdn2d_matches_definition(rng, up, down, pad, gain, as_conv):
    """Both forms: XLA's (shifted slices) and the exporters' (one depthwise convolution)."""
    x = rng.standard_normal((2, 5, 6, 3)).astype(np.float32)
    taps = rng.standard_normal(4).astype(np.float32)  # asymmetric: checks the flip
    if as_conv:
        with filters_as_depthwise_conv():
            got = upfirdn2d(jnp.asarray(x), taps, up=up, down=down, padding=pad, gain=gain)
    else:
        got = upfirdn2d(jnp.asarray(x), taps, up=up, down=down, padding=pad, gain=gain)
    expected = numpy_upfirdn2d(x, np.outer(taps, taps), up, down, pad, gain)
    np.testing.assert_allclose(np.asarray(got), expected, atol=1e-5)


def test_up_and_down_sampling_shapes_and_dc_gain(rng):
    x = np.ones((1, 8, 8, 2), np.float32)
    up = np.asarray(upsample2d(jnp.asarray(x)))
    down = np.asarray(downsample2d(jnp.asarray(x)))
    assert up.shape == (1, 16, 16, 2) and down.shape == (1, 4, 4, 2)
    np.testing.assert_allclose(up[:, 2:-2, 2:-2], 1.0, atol=1e-6)   # a constant stays constant
    np.testing.assert_allclose(down[:, 1:-1, 1:-1], 1.0, atol=1e-6)


@pytest.mark.parametrize("k,h,w", [(3, 5, 5), (3, 4, 7), (1, 5, 6), (5, 4, 4)])
def test_upsampling_conv_equals_upfirdn_then_flipped_correlation(rng, k, h, w):
    x = rng.standard_normal((2, h, w, 3)).astype(np.float32)
    wk = rng.standard_normal((k, k, 3, 4)).astype(np.float32)
    p0, p1 = k // 2 + 2, k // 2 + 1  # NVlabs conv2d_resample padding for up=2
    f = np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64.0
    upsampled = numpy_upfirdn2d(x, f, up=2, pad=(p0, p1, p0, p1), gain=4.0)
    expected = numpy_corr_valid(upsampled, wk[::-1, ::-1])
    got = np.asarray(conv2d_up2(jnp.asarray(x), jnp.asarray(wk)))
    assert got.shape == (2, 2 * h, 2 * w, 4)
    np.testing.assert_allclose(got, expected, atol=1e-4)


@pytest.mark.parametrize("demodulate", [True, False])
def test_modulated_conv_equals_grouped_per_sample_weights(rng, demodulate):
    x = rng.standard_normal((3, 6, 6, 4)).astype(np.float32)
    w = rng.standard_normal((3, 3, 4, 5)).astype(np.float32)
    s = rng.standard_normal((3, 4)).astype(np.float32)
    got = np.asarray(modulated_conv2d(jnp.asarray(x), jnp.asarray(w), jnp.asarray(s), demodulate))
    padded = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)])
    for n in range(3):
        wn = w * s[n][None, None, :, None]
        if demodulate:
            wn = wn / np.sqrt(np.sum(wn ** 2, axis=(0, 1, 2), keepdims=True) + 1e-8)
        np.testing.assert_allclose(got[n], numpy_corr_valid(padded[n:n + 1], wn)[0], atol=1e-4)


def test_bias_act_lrelu_gain_and_clamp():
    x = jnp.asarray([[-3.0, -0.5, 0.5, 300.0]])
    b = jnp.asarray([1.0, 0.0, 0.0, 0.0])
    got = np.asarray(bias_act(x, b, act="lrelu", clamp=256.0))
    s2 = np.sqrt(2.0)
    np.testing.assert_allclose(got, [[-0.4 * s2, -0.1 * s2, 0.5 * s2, 256.0]], rtol=1e-6)
    with pytest.raises(ValueError, match="unknown activation"):
        bias_act(x, act="relu")
