"""Upsample, FIR-filter, downsample: the resampling primitive of StyleGAN2.

Reference definition (NVlabs `upfirdn2d`): insert `up - 1` zeros after every pixel, pad
(negative values crop), convolve with the filter (true convolution, i.e. correlation with
the flipped filter) scaled by `gain ** (ndim / 2)`, keep every `down`-th pixel.
All StyleGAN2 filters are symmetric, but the flip is kept so the op is right for any filter.
"""

from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

# The [1, 3, 3, 1] binomial filter StyleGAN2 uses for every up- and downsampling.
DEFAULT_FILTER = (1.0, 3.0, 3.0, 1.0)


def setup_filter(taps: Sequence[float] = DEFAULT_FILTER) -> np.ndarray:
    """2-D separable filter [k, k] from 1-D taps, normalised to sum 1."""
    taps = np.asarray(taps, dtype=np.float32)
    f = np.outer(taps, taps)
    return f / f.sum()


def _parse_padding(padding) -> tuple[int, int, int, int]:
    """int or [x0, x1, y0, y1] -> (x0, x1, y0, y1)."""
    if isinstance(padding, int):
        return padding, padding, padding, padding
    if len(padding) == 2:
        px, py = padding
        return px, px, py, py
    return tuple(padding)


def filter2d(x: jax.Array, f: np.ndarray, padding=0, gain: float = 1.0,
             down: int = 1) -> jax.Array:
    """Depthwise convolution of NHWC `x` with filter `f` after padding (negative crops)."""
    px0, px1, py0, py1 = _parse_padding(padding)
    x = jax.lax.pad(x, jnp.array(0, x.dtype),
                    [(0, 0, 0), (py0, py1, 0), (px0, px1, 0), (0, 0, 0)])
    channels = x.shape[-1]
    kernel = np.asarray(f, np.float32)[::-1, ::-1] * gain  # convolution = flipped correlation
    kernel = jnp.asarray(np.tile(kernel[:, :, None, None], (1, 1, 1, channels)), x.dtype)
    return jax.lax.conv_general_dilated(
        x, kernel, window_strides=(down, down), padding="VALID",
        dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=channels)


def upfirdn2d(x: jax.Array, f: np.ndarray, up: int = 1, down: int = 1, padding=0,
              gain: float = 1.0) -> jax.Array:
    """NVlabs upfirdn2d on NHWC input; `gain` is applied as gain ** (2 / 2) for 2-D filters."""
    if up > 1:
        # Interior padding inserts up-1 zeros between pixels; the trailing zeros after the
        # last pixel come from the high-side padding.
        x = jax.lax.pad(x, jnp.array(0, x.dtype),
                        [(0, 0, 0), (0, up - 1, up - 1), (0, up - 1, up - 1), (0, 0, 0)])
    return filter2d(x, f, padding=padding, gain=gain, down=down)


def upsample2d(x: jax.Array, f: np.ndarray | None = None, up: int = 2) -> jax.Array:
    """2x upsampling as in the skip generator's image path (pad [2, 1], gain up**2)."""
    f = setup_filter() if f is None else f
    fw = f.shape[0]
    p0 = (fw + up - 1) // 2
    p1 = (fw - up) // 2
    return upfirdn2d(x, f, up=up, padding=(p0, p1, p0, p1), gain=up * up)


def downsample2d(x: jax.Array, f: np.ndarray | None = None, down: int = 2) -> jax.Array:
    """2x downsampling with the anti-aliasing filter (pad 1 for the 4-tap filter)."""
    f = setup_filter() if f is None else f
    fw = f.shape[0]
    p0 = (fw - down + 1) // 2
    p1 = (fw - down) // 2
    return upfirdn2d(x, f, down=down, padding=(p0, p1, p0, p1))
