"""filtered_lrelu (polyphase, separable) against a direct NumPy transcription of its definition."""

import jax
import numpy as np
import pytest
import scipy.signal

from stylekd_jax.ops.filtered_lrelu import filtered_lrelu, lowpass_filter


def upfirdn2d_numpy(x, f, up=1, down=1, pad=(0, 0, 0, 0)):
    """NVlabs upfirdn2d on one [H, W] plane: insert zeros, pad/crop, true 2-D convolution, stride."""
    px0, px1, py0, py1 = pad
    h, w = x.shape
    xu = np.zeros((h * up, w * up))
    xu[::up, ::up] = x
    xu = np.pad(xu, ((max(py0, 0), max(py1, 0)), (max(px0, 0), max(px1, 0))))
    xu = xu[max(-py0, 0): xu.shape[0] - max(-py1, 0), max(-px0, 0): xu.shape[1] - max(-px1, 0)]
    f2 = np.outer(f, f) if f.ndim == 1 else f
    f2 = f2[::-1, ::-1]                         # convolution = correlation with the flipped filter
    kh, kw = f2.shape
    out = np.zeros((xu.shape[0] - kh + 1, xu.shape[1] - kw + 1))
    for i in range(kh):
        for j in range(kw):
            out += f2[i, j] * xu[i: i + out.shape[0], j: j + out.shape[1]]
    return out[::down, ::down]


def filtered_lrelu_numpy(x, fu, fd, b, up, down, pad, gain, slope, clamp):
    out = []
    for n in range(x.shape[0]):
        planes = []
        for c in range(x.shape[3]):
            t = upfirdn2d_numpy(x[n, :, :, c].astype(np.float64) + b[c], fu, up, 1, pad) * up * up
            t = np.clip(np.where(t >= 0, t, t * slope) * gain, -clamp, clamp)
            planes.append(upfirdn2d_numpy(t, fd, 1, down))
        out.append(np.stack(planes, -1))
    return np.stack(out)


# (input size, up, down, padding, radial down-filter): the layer kinds of a StyleGAN3 network,
# asymmetric (non-symmetric filters, uneven padding) so that a flipped axis would show.
CASES = [
    (36, 2, 2, (9, 8, 9, 8), False),            # same rate, margin kept
    (36, 4, 2, (-6, -9, -6, -9), False),        # rate doubles
    (36, 2, 2, (-11, -12, -11, -12), False),    # margin cropped (last critically sampled layer)
    (36, 2, 2, (9, 8, 9, 8), True),             # config R: radial (2-D) down-filter
    (16, 4, 2, (3, 1, 2, 5), False),            # uneven x/y padding
]


@pytest.mark.parametrize("size,up,down,pad,radial", CASES)
def test_matches_definition(size, up, down, pad, radial):
    rng = np.random.RandomState(size + up + abs(sum(pad)))
    fu = rng.randn(6 * up).astype(np.float32)
    fd = (lowpass_filter(6 * down, 5.0, 3.0, 32.0, radial=True) if radial
          else rng.randn(6 * down).astype(np.float32))
    x = rng.randn(2, size, size, 3).astype(np.float32)
    b = rng.randn(3).astype(np.float32)
    op = jax.jit(lambda x: filtered_lrelu(x, fu, fd, b, up, down, pad, gain=np.sqrt(2), slope=0.2, clamp=2.0))
    got = np.asarray(op(x))
    want = filtered_lrelu_numpy(x, fu, fd, b, up, down, pad, np.sqrt(2), 0.2, 2.0)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, atol=2e-4 * np.abs(want).max())


def test_torgb_form_is_bias_and_padding_only():
    """No filters, up = down = 1, slope 1, gain 1: x + b with the padding applied."""
    x = np.random.RandomState(0).randn(1, 8, 8, 2).astype(np.float32)
    b = np.array([0.5, -1.0], np.float32)
    got = np.asarray(filtered_lrelu(x, None, None, b, padding=(1, -2, 0, 0), gain=1.0, slope=1.0))
    want = np.pad(x + b, ((0, 0), (0, 0), (1, 0), (0, 0)))[:, :, :7]
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_lowpass_filters():
    f = lowpass_filter(12, 8.0, 6.0, 32.0)
    np.testing.assert_allclose(f, scipy.signal.firwin(12, 8.0, width=6.0, fs=32.0), atol=1e-7)
    r = lowpass_filter(12, 8.0, 6.0, 32.0, radial=True)
    assert r.shape == (12, 12)
    assert abs(r.sum() - 1) < 1e-5 and np.allclose(r, r.T) and np.allclose(r, r[::-1, ::-1])
    assert lowpass_filter(1, 8.0, 6.0, 32.0) is None


@pytest.mark.parametrize("axes,up,down,pads,taps", [
    ((1,), 2, 1, ((9, 8),), (12,)), ((2,), 4, 1, ((-6, -9),), (24,)), ((1,), 1, 2, ((0, 0),), (12,)),
    ((1, 2), 1, 2, ((0, 0), (0, 0)), (12, 12)), ((1, 2), 2, 1, ((3, 1), (2, 4)), (6, 6))])
def test_upfirdn_gradient_is_autodiff_of_definition(axes, up, down, pads, taps):
    """The hand-written adjoint (and the filter cotangent) equal JAX's autodiff of the definition."""
    from stylekd_jax.ops.upfirdn2d import _upfirdn, upfirdn
    rng = np.random.RandomState(len(taps) + up)
    x = jax.numpy.asarray(rng.randn(2, 20, 18, 3), jax.numpy.float32)
    f = jax.numpy.asarray(rng.randn(*taps), jax.numpy.float32)
    ct = jax.numpy.asarray(rng.randn(*_upfirdn(x, f, axes, up, down, pads).shape), jax.numpy.float32)
    want = jax.grad(lambda x, f: (_upfirdn(x, f, axes, up, down, pads) * ct).sum(), (0, 1))(x, f)
    got = jax.grad(lambda x, f: (upfirdn(x, f, axes, up, down, pads) * ct).sum(), (0, 1))(x, f)
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), atol=1e-4 * float(np.abs(w).max()))


def test_gaussian_blur_matches_nvlabs_definition():
    """D's input blur: taps exp(-(t/sigma)^2/2) for |t| <= floor(3 sigma), normalised, 'same' size."""
    from stylekd_jax.ops.upfirdn2d import gaussian_blur2d
    x = np.random.RandomState(0).randn(1, 24, 24, 2).astype(np.float32)
    for sigma in (0.0, 0.2, 1.7, 4.0):
        got = np.asarray(gaussian_blur2d(x, sigma, max_sigma=4.0))
        half = int(np.floor(sigma * 3))
        t = np.arange(-half, half + 1)
        f = np.exp(-0.5 * (t / max(sigma, 1e-8)) ** 2) if half else np.ones(1)
        f /= f.sum()
        want = np.stack([upfirdn2d_numpy(x[0, :, :, c], f, pad=(half,) * 4) for c in range(2)], -1)[None]
        np.testing.assert_allclose(got, want, atol=1e-5)
