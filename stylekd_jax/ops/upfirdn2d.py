"""Upsample, FIR-filter, downsample: the resampling primitive of StyleGAN2.

Reference definition (NVlabs `upfirdn2d`): insert `up - 1` zeros after every pixel, pad
(negative values crop), convolve with the filter (true convolution, i.e. correlation with
the flipped filter) scaled by `gain`, keep every `down`-th pixel.

StyleGAN2 filters are separable (outer products of 1-D taps such as [1, 3, 3, 1]), so the
filter is given by its 1-D taps and applied as two 1-D passes written as sums of shifted
slices. XLA fuses these into one elementwise loop, which is far faster than a depthwise
convolution on CPU and GPU alike.
"""

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


def filter2d(x: jax.Array, f: np.ndarray, padding=0, gain: float = 1.0, down: int = 1) -> jax.Array:
    """Separable FIR filter outer(f, f) * gain on NHWC `x` after padding (negative crops)."""
    px0, px1, py0, py1 = _parse_padding(padding)
    x = jax.lax.pad(x, jnp.array(0, x.dtype), [(0, 0, 0), (py0, py1, 0), (px0, px1, 0), (0, 0, 0)])
    f = np.asarray(f, np.float32)
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
