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
import numpy as np

from stylekd_jax.ops.bias_act import bias_act
from stylekd_jax.ops.upfirdn2d import filter2d, setup_filter

CONV_DIMS = ("NHWC", "HWIO", "NHWC")


def _normal(scale: float = 1.0):
    return lambda key, shape: jax.random.normal(key, shape, jnp.float32) * scale


def _constant(value: float):
    return lambda key, shape: jnp.full(shape, value, jnp.float32)


class FullyConnected(nn.Module):
    """`act(x @ (W * lr / sqrt(in)) + b * lr)`."""

    features: int
    lr_multiplier: float = 1.0
    bias_init: float = 0.0
    activation: str = "linear"
    use_bias: bool = True

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        in_features = x.shape[-1]
        weight = self.param("weight", _normal(1.0 / self.lr_multiplier), (in_features, self.features))
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


def conv2d_up2(x: jax.Array, weight: jax.Array) -> jax.Array:
    """The StyleGAN2 upsampling conv for a 3x3 (or any k x k) kernel.

    Mathematically `upfirdn2d(x, f, up=2, pad=k) ⋆ flip(W)` (VALID), computed as a
    transposed convolution (input dilation, so no multiplications by inserted zeros) followed
    by the [1,3,3,1] blur with gain 4 on the (2H + k) grid, as NVlabs' fast path does.
    """
    k = weight.shape[0]
    # NVlabs pads the zero-upsampled input by (k//2 + 2, k//2 + 1); the trailing inserted
    # zero that input dilation omits adds one more on the high side.
    pad = k // 2 + 2
    flipped = weight[::-1, ::-1].astype(x.dtype)
    y = jax.lax.conv_general_dilated(
        x, flipped, window_strides=(1, 1), padding=[(pad, pad), (pad, pad)],
        lhs_dilation=(2, 2), dimension_numbers=CONV_DIMS)
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
            x = conv2d(x, weight, stride=2)
        else:
            x = conv2d(x, weight, padding=k // 2)
        bias = self.param("bias", _constant(0.0), (self.features,)) if self.use_bias else None
        act_gain = (math.sqrt(2.0) if self.activation == "lrelu" else 1.0) * gain
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x.astype(jnp.float32), bias, act=self.activation, gain=act_gain, clamp=clamp)
