"""Synthesis network ws -> image: a 4x4 constant, modulated convs, skip ToRGB outputs.

The modulated convolution is computed in its non-fused form: scale the activations by the
styles, run ONE convolution with the shared weight over the whole batch, then scale the
outputs by the demodulation coefficients. It equals the grouped ("fused") per-sample-weight
form exactly in real arithmetic and maps onto plain batched convolutions (MXU / tensor cores).
"""

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from stylekd_jax.networks.layers import FullyConnected, _constant, _normal, conv2d, conv2d_up2
from stylekd_jax.ops.bias_act import bias_act
from stylekd_jax.ops.upfirdn2d import upsample2d

NOISE_MODES = ("const", "random", "none")


def modulated_conv2d(x: jax.Array, weight: jax.Array, styles: jax.Array, demodulate: bool = True,
                     up: bool = False) -> jax.Array:
    """x [N,H,W,I] (any float dtype), weight [k,k,I,O], styles [N,I] -> [N,H',W',O].

    Demodulation coefficients `rsqrt(sum_{kh,kw,i} (W s_i)^2 + 1e-8)` are computed in float32.
    """
    x = x * styles[:, None, None, :].astype(x.dtype)
    if up:
        y = conv2d_up2(x, weight)
    else:
        y = conv2d(x, weight, padding=weight.shape[0] // 2)
    if demodulate:
        weight_sq = jnp.sum(jnp.square(weight.astype(jnp.float32)), axis=(0, 1))  # [I, O]
        dcoefs = jax.lax.rsqrt(jnp.square(styles.astype(jnp.float32)) @ weight_sq + 1e-8)
        y = y * dcoefs[:, None, None, :].astype(y.dtype)
    return y


class SynthesisLayer(nn.Module):
    """Modulated conv + noise + bias + lrelu·sqrt(2) + clamp. Upsamples 2x when `up`."""

    features: int
    resolution: int
    kernel_size: int = 3
    up: bool = False
    conv_clamp: float | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, w: jax.Array, noise_mode: str = "const") -> jax.Array:
        in_channels = x.shape[-1]
        k = self.kernel_size
        styles = FullyConnected(in_channels, bias_init=1.0, name="affine")(w)
        weight = self.param("weight", _normal(), (k, k, in_channels, self.features))
        noise_strength = self.param("noise_strength", _constant(0.0), ())
        noise_const = self.variable(
            "buffers", "noise_const",
            lambda: jax.random.normal(self.make_rng("params"), (self.resolution, self.resolution)))
        bias = self.param("bias", _constant(0.0), (self.features,))

        x = modulated_conv2d(x.astype(self.dtype), weight, styles, up=self.up).astype(jnp.float32)
        if noise_mode == "const":
            # The stored map [H, W] is shared by the batch; an export with noise inputs
            # (`export.signature`) puts one map per image here, [N, H, W].
            noise = noise_const.value * noise_strength
            x = x + (noise if noise.ndim == 3 else noise[None])[..., None]
        elif noise_mode == "random":
            noise = jax.random.normal(self.make_rng("noise"), (x.shape[0], self.resolution, self.resolution, 1))
            x = x + noise * noise_strength
        elif noise_mode != "none":
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        return bias_act(x, bias, act="lrelu", clamp=self.conv_clamp)


class ToRGBLayer(nn.Module):
    """1x1 modulated conv without demodulation (styles scaled by 1/sqrt(C_in)), linear.

    Always float32 (`dtype` is kept for a uniform interface): its output is added straight
    into the image, which bfloat16's 8-bit mantissa would round (1 part in 256), and with 3
    output channels it is under 1% of a block's FLOPs.
    """

    features: int
    conv_clamp: float | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, w: jax.Array) -> jax.Array:
        in_channels = x.shape[-1]
        styles = FullyConnected(in_channels, bias_init=1.0, name="affine")(w)
        styles = styles * (1.0 / math.sqrt(in_channels))
        weight = self.param("weight", _normal(), (1, 1, in_channels, self.features))
        bias = self.param("bias", _constant(0.0), (self.features,))
        x = modulated_conv2d(x.astype(jnp.float32), weight, styles, demodulate=False)
        return bias_act(x, bias, clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """Block `b{resolution}`: (const | upsampling conv0) -> conv1 -> torgb, image skip-summed.

    `features` = (channels after conv0 or of the const, channels after conv1).
    """

    resolution: int
    features: tuple[int, int]
    kernel_size: int = 3
    img_channels: int = 3
    conv_clamp: float | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, img, ws: jax.Array, noise_mode: str):
        """ws: the block's [N, num_conv + 1, w_dim] slice. Returns (features, image)."""
        first = self.resolution == 4
        layer = dict(resolution=self.resolution, conv_clamp=self.conv_clamp, dtype=self.dtype)
        if first:
            const = self.param("const", _normal(), (4, 4, self.features[0]))
            x = jnp.broadcast_to(const[None], (ws.shape[0],) + const.shape)
            x = SynthesisLayer(self.features[1], name="conv1", **layer)(x, ws[:, 0], noise_mode)
        else:
            x = SynthesisLayer(self.features[0], up=True, name="conv0", **layer)(x, ws[:, 0], noise_mode)
            x = SynthesisLayer(self.features[1], kernel_size=self.kernel_size, name="conv1",
                               **layer)(x, ws[:, 1], noise_mode)
        y = ToRGBLayer(self.img_channels, conv_clamp=self.conv_clamp, dtype=self.dtype,
                       name="torgb")(x, ws[:, -1])
        img = y if img is None else upsample2d(img) + y
        return x, img


class SynthesisNetwork(nn.Module):
    """Blocks b4 .. b{resolution}; see `architecture` for the per-layer channel list.

    `remat`: each block's activations are recomputed in the backward pass instead of kept
    (jax.checkpoint per block): less memory for a training step, about a third more FLOPs.
    """

    resolution: int
    channels: Sequence[int]
    kernel_size: int = 3
    img_channels: int = 3
    conv_clamp: float | None = None
    dtype: Any = jnp.float32
    remat: bool = False

    @nn.compact
    def __call__(self, ws: jax.Array, noise_mode: str = "const", return_features: bool = False):
        """ws [N, num_ws, w_dim] -> image [N, H, W, img_channels] (float32, unclipped).

        With `return_features`, returns (image, aux): aux['features'] holds each block's
        output activations (after conv1) from b4 up, the features StyleKD's latent-direction
        loss compares, and aux['images'] the skip-summed image after each block.
        """
        num_blocks = int(math.log2(self.resolution)) - 1
        if ws.shape[1] != 2 * num_blocks:
            raise ValueError(f"expected ws with {2 * num_blocks} layers, got shape {ws.shape}")
        block = nn.remat(SynthesisBlock, static_argnums=(4,)) if self.remat else SynthesisBlock
        x = img = None
        features, images = [], []
        for k in range(num_blocks):
            res = 4 * 2 ** k
            # Block k reads ws[2k-1 .. 2k+1]: torgb of block k shares its w with conv0 of k+1.
            block_ws = ws[:, 0:2] if k == 0 else ws[:, 2 * k - 1: 2 * k + 2]
            chans = (self.channels[2 * k], self.channels[2 * k + 1])
            x, img = block(res, chans, kernel_size=self.kernel_size, img_channels=self.img_channels,
                           conv_clamp=self.conv_clamp, dtype=self.dtype,
                           name=f"b{res}")(x, img, block_ws, noise_mode)
            features.append(x)
            images.append(img)
        return (img, {"features": features, "images": images}) if return_features else img
