"""Equalised-learning-rate layers: raw weights are stored, their gain applied in the forward pass.

Weights use the Flax layouts: dense [in, out], conv HWIO. Initialisation follows NVlabs
(weights N(0, 1) / lr_multiplier, biases constant) so freshly initialised networks train
like the official ones.
"""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from stylekd_jax.ops.bias_act import bias_act
from stylekd_jax.ops.upfirdn2d import filter2d, setup_filter

CONV_DIMS = ("NHWC", "HWIO", "NHWC")


def _normal(scale: float = 1.0):
    return lambda key, shape: jax.random.normal(key, shape, jnp.float32) * scale


def _constant(value: float):
    return lambda key, shape: jnp.broadcast_to(jnp.asarray(value, jnp.float32), shape)


class FullyConnected(nn.Module):
    """`act(x @ (W * lr / sqrt(in)) + b * lr)`."""

    features: int
    lr_multiplier: float = 1.0
    bias_init: float | tuple[float, ...] = 0.0   # a number, or one value per output
    activation: str = "linear"
    use_bias: bool = True
    weight_init: float = 1.0                      # initial standard deviation (x lr_multiplier)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        in_features = x.shape[-1]
        weight = self.param("weight", _normal(self.weight_init / self.lr_multiplier),
                            (in_features, self.features))
        y = x @ (weight * (self.lr_multiplier / math.sqrt(in_features))).astype(x.dtype)
        bias = None
        if self.use_bias:
            bias = self.param("bias", _constant(self.bias_init), (self.features,)) * self.lr_multiplier
        return bias_act(y, bias, act=self.activation)


def conv2d(x: jax.Array, weight: jax.Array, padding: int = 0, stride: int = 1) -> jax.Array:
    """Plain cross-correlation, NHWC x HWIO."""
    return jax.lax.conv_general_dilated(
        x, weight.astype(x.dtype), window_strides=(stride, stride),
        padding=[(padding, padding), (padding, padding)], dimension_numbers=CONV_DIMS)


def conv2d_stride2(x: jax.Array, weight: jax.Array) -> jax.Array:
    """VALID stride-2 cross-correlation as one matmul over the k*k strided views of `x`.

    The same numbers as `conv2d(x, weight, stride=2)`. XLA:CPU computes the weight gradient
    of a strided convolution as a dilated convolution at a few GFLOP/s (R1's double backward
    through a 32px config-f discriminator spent 3.6 s in one such layer); here every
    derivative is a matmul, a strided slice or its transpose (an interior pad).
    """
    k = weight.shape[0]
    n, h, w, c = x.shape
    ho, wo = (h - k) // 2 + 1, (w - k) // 2 + 1
    views = [jax.lax.slice(x, (0, i, j, 0), (n, i + 2 * ho - 1, j + 2 * wo - 1, c), (1, 2, 2, 1))
             for i in range(k) for j in range(k)]
    patches = views[0] if k == 1 else jnp.concatenate(views, axis=-1)   # [n, ho, wo, k*k*c], HWI order
    return patches @ weight.reshape(k * k * c, -1).astype(x.dtype)


def _phase_taps(k: int, pad: int, phase: int) -> tuple[list[int], int]:
    """Taps of a k-tap correlation over a 2x zero-upsampled signal that hit real samples.

    Output n = 2i + phase reads upsampled index n + t - pad, a real sample (index
    (n + t - pad) / 2) only when that is even: returns those t and the offset of the first
    sample relative to i.
    """
    taps = [t for t in range(k) if (phase + t - pad) % 2 == 0]
    return taps, ((phase + taps[0] - pad) // 2 if taps else 0)


def conv2d_up2(x: jax.Array, weight: jax.Array) -> jax.Array:
    """The StyleGAN2 upsampling conv: `upfirdn2d(x, f, up=2, pad=k//2+(2,1), gain=4) ⋆ flip(W)`.

    Computed without multiplying by inserted zeros: the correlation of the zero-upsampled
    input with flip(W) splits into four sub-pixel phases, each a small plain convolution of
    `x` (1x1, 1x2, 2x1 and 2x2 taps for a 3x3 kernel, 9 taps in all, like a transposed
    convolution); the phases are interleaved and the [1,3,3,1] blur (gain 4) follows, as in
    NVlabs' fast path.
    """
    n, h, w, _ = x.shape
    k = weight.shape[0]
    pad = k // 2 + 2            # left padding of the upsampled input (right: k//2 + 1, + 1 zero)
    size_h, size_w = 2 * h + 2 * pad - k, 2 * w + 2 * pad - k   # pre-blur size
    half_h, half_w = (size_h + 1) // 2, (size_w + 1) // 2       # per-phase size
    flipped = weight[::-1, ::-1].astype(x.dtype)
    rows = []
    for a in (0, 1):
        taps_a, off_a = _phase_taps(k, pad, a)
        cols = []
        for b in (0, 1):
            taps_b, off_b = _phase_taps(k, pad, b)
            if not taps_a or not taps_b:
                cols.append(jnp.zeros((n, half_h, half_w, weight.shape[-1]), x.dtype))
                continue
            # out[i] = sum_s x[i + off + s] * sub[s]: pad (or crop) x so a VALID conv gives that.
            padding = [(-off_a, half_h - 1 + off_a + len(taps_a) - h),
                       (-off_b, half_w - 1 + off_b + len(taps_b) - w)]
            cols.append(jax.lax.conv_general_dilated(
                x, flipped[taps_a[0]::2, taps_b[0]::2], window_strides=(1, 1), padding=padding,
                dimension_numbers=CONV_DIMS))
        rows.append(jnp.stack(cols, axis=3))                    # [n, half_h, half_w, 2, c]
    y = jnp.stack(rows, axis=2)                                  # [n, half_h, 2, half_w, 2, c]
    y = y.reshape(n, 2 * half_h, 2 * half_w, -1)[:, :size_h, :size_w]
    return filter2d(y, setup_filter(), gain=4.0)


class Conv2dLayer(nn.Module):
    """Discriminator conv: optional 2x downsampling (blur, then stride-2 conv), bias_act."""

    features: int
    kernel_size: int
    use_bias: bool = True
    activation: str = "linear"
    down: int = 1
    conv_clamp: float | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, gain: float = 1.0) -> jax.Array:
        k = self.kernel_size
        in_channels = x.shape[-1]
        weight = self.param("weight", _normal(), (k, k, in_channels, self.features))
        weight = weight * (1.0 / math.sqrt(in_channels * k * k))
        x = x.astype(self.dtype)
        if self.down == 2:
            # NVlabs conv2d_resample: blur with padding k//2 + 1 (4-tap filter), then a
            # stride-2 VALID conv, which halves the size.
            x = filter2d(x, setup_filter(), padding=k // 2 + 1)
            x = conv2d_stride2(x, weight)
        else:
            x = conv2d(x, weight, padding=k // 2)
        bias = self.param("bias", _constant(0.0), (self.features,)) if self.use_bias else None
        act_gain = (math.sqrt(2.0) if self.activation == "lrelu" else 1.0) * gain
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x.astype(jnp.float32), bias, act=self.activation, gain=act_gain, clamp=clamp)
