"""Filtered leaky ReLU, the nonlinearity of StyleGAN3: bias, upsample, lrelu, downsample.

Reference definition (NVlabs `filtered_lrelu`, `impl='ref'`), on NHWC input:

    x = x + bias
    x = upfirdn2d(x, fu, up=up, padding=padding, gain=up**2)     # band-limited upsampling
    x = clamp(lrelu(x, slope) * gain, -clamp, clamp)             # at the higher rate
    x = upfirdn2d(x, fd, down=down)                              # band-limited downsampling

Written for XLA: the filters are 1-D separable (the radial down-filter of config R is the
one 2-D filter) and each pass is `upfirdn2d.upfirdn`, a sum of shifted slices that never
multiplies by inserted zeros (polyphase) and whose gradient is again such a pass. The filters
are arrays (the layers keep them as buffers, read from the checkpoint), so their values may
be traced; their lengths are static.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import scipy.signal
import scipy.special

from stylekd_jax.ops.upfirdn2d import take_or_pad, upfirdn


def lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float,
                   radial: bool = False) -> np.ndarray | None:
    """StyleGAN3's low-pass filters: Kaiser-windowed sinc (1-D, separable) or jinc (2-D).

    `numtaps == 1` means no filter (None). The separable filter is
    `scipy.signal.firwin(numtaps, cutoff, width=width, fs=fs)`; the radial one is the jinc
    `J1(2 pi cutoff r) / (pi r)` times the outer product of the Kaiser window that firwin
    would use, normalised to sum 1.
    """
    if numtaps == 1:
        return None
    if not radial:
        return scipy.signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs).astype(np.float32)
    x = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(x, x))
    f = scipy.special.j1(2 * cutoff * (np.pi * r)) / (np.pi * r)
    beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(numtaps, width / (fs / 2)))
    window = np.kaiser(numtaps, beta)
    f *= np.outer(window, window)
    return (f / np.sum(f)).astype(np.float32)


def filtered_lrelu(x: jax.Array, fu: jax.Array | None = None, fd: jax.Array | None = None,
                   bias: jax.Array | None = None, up: int = 1, down: int = 1,
                   padding=(0, 0, 0, 0), gain: float = math.sqrt(2), slope: float = 0.2,
                   clamp: float | None = None) -> jax.Array:
    """NHWC filtered leaky ReLU (module docstring). `fu`: 1-D up-filter or None (identity);
    `fd`: 1-D or 2-D down-filter or None; `padding` = (x0, x1, y0, y1), may be negative."""
    px0, px1, py0, py1 = padding
    if bias is not None:
        x = x + bias.astype(x.dtype)
    if fu is None:
        if up != 1:
            raise ValueError("upsampling needs an up-filter")
        x = take_or_pad(x, 1, -py0, x.shape[1] + py0 + py1)
        x = take_or_pad(x, 2, -px0, x.shape[2] + px0 + px1)
    else:
        fu = jnp.asarray(fu, jnp.float32) * up                  # gain up**2 over two passes
        x = upfirdn(x, fu, (1,), up, 1, ((py0, py1),))
        x = upfirdn(x, fu, (2,), up, 1, ((px0, px1),))
    x = jnp.where(x >= 0, x, x * slope) if slope != 1 else x
    if gain != 1:
        x = x * gain
    if clamp is not None:
        x = jnp.clip(x, -clamp, clamp)
    if fd is None:
        if down != 1:
            raise ValueError("downsampling needs a down-filter")
        return x
    fd = jnp.asarray(fd, jnp.float32)
    if fd.ndim == 2:
        return upfirdn(x, fd, (1, 2), 1, down, ((0, 0), (0, 0)))
    x = upfirdn(x, fd, (1,), 1, down, ((0, 0),))
    return upfirdn(x, fd, (2,), 1, down, ((0, 0),))
