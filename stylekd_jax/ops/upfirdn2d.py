"""Upsample, FIR-filter, downsample: the resampling primitive of StyleGAN2.

Reference definition (NVlabs `upfirdn2d`): insert `up - 1` zeros after every pixel, pad
(negative values crop), convolve with the filter (true convolution, i.e. correlation with
the flipped filter) scaled by `gain`, keep every `down`-th pixel.

StyleGAN2 filters are separable (outer products of 1-D taps such as [1, 3, 3, 1]), so the
filter is given by its 1-D taps and applied as two 1-D passes written as sums of shifted
slices. XLA fuses these into one elementwise loop, which is far faster than a depthwise
convolution on CPU and GPU alike. Runtimes that run a graph op by op (ONNX Runtime, TFLite)
do the opposite: there one depthwise convolution beats the 8 slices, products and sums of a
4-tap filter, so the exporters trace `filter2d` inside `filters_as_depthwise_conv()`.
"""

import contextlib
import contextvars
import functools
import itertools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

# The binomial filter StyleGAN2 uses for every up- and downsampling.
DEFAULT_TAPS = (1.0, 3.0, 3.0, 1.0)


def setup_filter(taps: Sequence[float] = DEFAULT_TAPS) -> np.ndarray:
    """1-D taps normalised so that the separable 2-D filter outer(f, f) sums to 1."""
    f = np.asarray(taps, dtype=np.float64)
    return (f / f.sum()).astype(np.float32)


def _parse_padding(padding) -> tuple[int, int, int, int]:
    """int or [x0, x1, y0, y1] -> (x0, x1, y0, y1)."""
    if isinstance(padding, int):
        return padding, padding, padding, padding
    return tuple(padding)


def _filter_axis(x: jax.Array, taps: np.ndarray, axis: int, down: int) -> jax.Array:
    """VALID 1-D convolution along `axis` with stride `down`, as a sum of shifted slices."""
    k = len(taps)
    size = (x.shape[axis] - k) // down + 1
    flipped = taps[::-1]  # convolution = correlation with the flipped filter
    out = None
    for t in range(k):
        part = jax.lax.slice_in_dim(x, t, t + (size - 1) * down + 1, stride=down, axis=axis)
        part = part * jnp.asarray(flipped[t], x.dtype)
        out = part if out is None else out + part
    return out


_AS_DEPTHWISE_CONV = contextvars.ContextVar("filter2d_as_depthwise_conv", default=False)


@contextlib.contextmanager
def filters_as_depthwise_conv():
    """Trace `filter2d` as one depthwise convolution (same numbers up to float round-off).

    For exports only: a 256px student in ONNX Runtime took 221 ms with the slices, 147 ms
    with depthwise Convs; jitted XLA:CPU went the other way, 187 -> 515 ms.
    """
    token = _AS_DEPTHWISE_CONV.set(True)
    try:
        yield
    finally:
        _AS_DEPTHWISE_CONV.reset(token)


def _depthwise_filter(x: jax.Array, f: np.ndarray, gain: float, down: int) -> jax.Array:
    """VALID 2-D convolution of every channel with outer(f, f) * gain, stride `down`."""
    kernel = (np.outer(f, f) * np.float32(gain))[::-1, ::-1]   # convolution: flipped taps
    channels = x.shape[-1]
    weight = np.ascontiguousarray(np.broadcast_to(kernel[:, :, None, None], kernel.shape + (1, channels)))
    return jax.lax.conv_general_dilated(
        x, jnp.asarray(weight, x.dtype), window_strides=(down, down), padding="VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=channels)


def filter2d(x: jax.Array, f: np.ndarray, padding=0, gain: float = 1.0, down: int = 1) -> jax.Array:
    """Separable FIR filter outer(f, f) * gain on NHWC `x` after padding (negative crops)."""
    px0, px1, py0, py1 = _parse_padding(padding)
    x = jax.lax.pad(x, jnp.array(0, x.dtype), [(0, 0, 0), (py0, py1, 0), (px0, px1, 0), (0, 0, 0)])
    f = np.asarray(f, np.float32)
    if _AS_DEPTHWISE_CONV.get():
        return _depthwise_filter(x, f, gain, down)
    x = _filter_axis(x, f * np.float32(gain), axis=1, down=down)
    return _filter_axis(x, f, axis=2, down=down)


def upfirdn2d(x: jax.Array, f: np.ndarray, up: int = 1, down: int = 1, padding=0,
              gain: float = 1.0) -> jax.Array:
    """NVlabs upfirdn2d on NHWC input with the separable filter outer(f, f)."""
    if up > 1:
        # Interior padding inserts up-1 zeros between pixels; the trailing zeros after the
        # last pixel come from the high-side padding.
        x = jax.lax.pad(x, jnp.array(0, x.dtype),
                        [(0, 0, 0), (0, up - 1, up - 1), (0, up - 1, up - 1), (0, 0, 0)])
    return filter2d(x, f, padding=padding, gain=gain, down=down)


def upsample2d(x: jax.Array, f: np.ndarray | None = None, up: int = 2) -> jax.Array:
    """2x upsampling as in the skip generator's image path (pad [2, 1], gain up**2)."""
    f = setup_filter() if f is None else f
    p0, p1 = (len(f) + up - 1) // 2, (len(f) - up) // 2
    return upfirdn2d(x, f, up=up, padding=(p0, p1, p0, p1), gain=up * up)


def downsample2d(x: jax.Array, f: np.ndarray | None = None, down: int = 2) -> jax.Array:
    """2x downsampling with the anti-aliasing filter (pad 1 for the 4-tap filter)."""
    f = setup_filter() if f is None else f
    p0, p1 = (len(f) - down + 1) // 2, (len(f) - down) // 2
    return upfirdn2d(x, f, down=down, padding=(p0, p1, p0, p1))


# ---------------------------------------------------------------------------------------
# Traced filters, one or two axes at a time (StyleGAN3's filtered leaky ReLU, D's input blur)


def take_or_pad(x: jax.Array, axis: int, start: int, size: int, stride: int = 1) -> jax.Array:
    """x[start : start + (size - 1) * stride + 1 : stride] along `axis`, zeros outside x."""
    n = x.shape[axis]
    stop = start + (size - 1) * stride + 1
    lo, hi = max(0, -start), max(0, stop - n)
    if lo or hi:
        pads = [(0, 0, 0)] * x.ndim
        pads[axis] = (lo, hi, 0)
        x = jax.lax.pad(x, jnp.array(0, x.dtype), pads)
    return jax.lax.slice_in_dim(x, start + lo, stop + lo, stride=stride, axis=axis)


def _interleave(phases: dict, axes: tuple[int, ...], up: int, prefix: tuple = ()) -> jax.Array:
    """Merge phase arrays {(r_1, .., r_n): y_r} into y[.., up * i + r, ..] along `axes`."""
    if len(prefix) == len(axes):
        return phases[prefix]
    axis = axes[len(prefix)]
    parts = [_interleave(phases, axes, up, prefix + (r,)) for r in range(up)]
    y = jnp.stack(parts, axis=axis + 1)
    shape = list(parts[0].shape)
    shape[axis] *= up
    return y.reshape(shape)


def _upfirdn(x, f, axes, up, down, pads):
    """Upsample (insert zeros), pad (negative crops), convolve with `f`, keep every `down`-th.

    `f` has one dimension per axis in `axes`; one of `up`, `down` must be 1. Output i of a
    `up`-fold upsampling in phase r (position up * i + r) only meets the taps t with
    `(r + t - pad0) % up == 0`, which read `x[i + (r + t - pad0) // up]`: each phase is a sum
    of shifted slices of x, and no product with an inserted zero is computed.
    """
    if up > 1 and down > 1:
        raise ValueError("_upfirdn resamples one way at a time (up or down)")
    g = jnp.flip(f)                      # convolution = correlation with the flipped filter
    sizes = [x.shape[a] * up + p0 + p1 - k + 1 for a, (p0, p1), k in zip(axes, pads, f.shape)]
    if up == 1:
        out_len = [-(-m // down) for m in sizes]
        out = None
        for t in itertools.product(*(range(k) for k in f.shape)):
            part = x
            for a, ti, (p0, _), n in zip(axes, t, pads, out_len):
                part = take_or_pad(part, a, ti - p0, n, down)
            part = part * g[t].astype(x.dtype)
            out = part if out is None else out + part
        return out
    phase_len = [-(-m // up) for m in sizes]
    phases = {}
    for r in itertools.product(range(up), repeat=len(axes)):
        out = None
        for t in itertools.product(*(range(k) for k in f.shape)):
            offsets = [ri + ti - p0 for ri, ti, (p0, _) in zip(r, t, pads)]
            if any(o % up for o in offsets):
                continue
            part = x
            for a, o, n in zip(axes, offsets, phase_len):
                part = take_or_pad(part, a, o // up, n)
            part = part * g[t].astype(x.dtype)
            out = part if out is None else out + part
        if out is None:
            shape = list(x.shape)
            for a, n in zip(axes, phase_len):
                shape[a] = n
            out = jnp.zeros(shape, x.dtype)
        phases[r] = out
    y = _interleave(phases, axes, up)
    for a, m in zip(axes, sizes):
        y = jax.lax.slice_in_dim(y, 0, m, axis=a)
    return y


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def upfirdn(x: jax.Array, f: jax.Array, axes: tuple[int, ...], up: int, down: int,
            pads: tuple[tuple[int, int], ...]) -> jax.Array:
    """NVlabs upfirdn2d restricted to `axes` (see `_upfirdn`), with a fast gradient.

    The gradient with respect to x is again an upfirdn: the adjoint of "upsample by u,
    filter, downsample by d" is "upsample by d, filter with the flipped taps, downsample by u"
    with complementary padding (as in NVlabs' upfirdn2d backward). Left to autodiff, the
    transposed slices become padded copies that XLA:CPU does not fuse (a 36 px layer's
    backward took 40x its forward).
    """
    return _upfirdn(x, f, axes, up, down, pads)


def _upfirdn_fwd(x, f, axes, up, down, pads):
    return _upfirdn(x, f, axes, up, down, pads), (x, f)


def _upfirdn_bwd(axes, up, down, pads, residuals, dy):
    x, f = residuals
    adjoint_pads = []
    for a, (p0, p1), k in zip(axes, pads, f.shape):
        full = x.shape[a] * up + p0 + p1 - k + 1        # length before keeping every down-th
        adjoint_pads.append((k - 1 - p0, full - dy.shape[a] * down + k - 1 - p1))
    dx = upfirdn(dy, jnp.flip(f), axes, down, up, tuple(adjoint_pads))
    # The filters are buffers, never trained; their cotangent is still exact (a few reductions).
    _, f_vjp = jax.vjp(lambda taps: _upfirdn(x, taps, axes, up, down, pads), f)
    return dx, f_vjp(dy)[0]


upfirdn.defvjp(_upfirdn_fwd, _upfirdn_bwd)


def gaussian_blur2d(x: jax.Array, sigma: jax.Array, max_sigma: float) -> jax.Array:
    """NVlabs StyleGAN3 discriminator input blur: a normalised Gaussian of `sigma` (traced)
    with taps |t| <= floor(3 sigma), same-size output. `max_sigma` fixes the filter length
    (2 floor(3 max_sigma) + 1) so a fading sigma needs no recompilation; sigma <= 0 is identity.
    """
    half = int(np.floor(max_sigma * 3))
    if half < 1:
        return x
    t = jnp.arange(-half, half + 1, dtype=jnp.float32)
    sigma = jnp.asarray(sigma, jnp.float32)
    safe = jnp.maximum(sigma, 1e-8)
    f = jnp.where(jnp.abs(t) <= jnp.floor(sigma * 3), jnp.exp(-0.5 * jnp.square(t / safe)), 0.0)
    f = jnp.where(sigma > 0, f, (t == 0).astype(jnp.float32))
    f = f / jnp.sum(f)
    x = upfirdn(x, f, (1,), 1, 1, ((half, half),))
    return upfirdn(x, f, (2,), 1, 1, ((half, half),))
