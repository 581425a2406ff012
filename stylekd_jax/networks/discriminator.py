"""Residual StyleGAN2 discriminator: image [N,H,W,C] in [-1, 1] -> logits [N, 1]."""

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from stylekd_jax.architecture import DiscriminatorConfig
from stylekd_jax.networks.layers import Conv2dLayer, FullyConnected

SQRT_HALF = math.sqrt(0.5)


def minibatch_stddev(x: jax.Array, group_size: int | None, num_channels: int = 1) -> jax.Array:
    """Append the per-group feature standard deviation as `num_channels` extra channels.

    Groups are strided as in the official code: sample i shares a group with i + k*N/G.
    `group_size=None` makes the whole batch one group (TF-era NVlabs discriminators).
    """
    n, h, w, c = x.shape
    g = n if group_size is None else min(group_size, n)
    if n % g:
        raise ValueError(f"minibatch stddev needs the batch ({n}) to be a multiple of the "
                         f"group size ({g})")
    f = num_channels
    y = x.astype(jnp.float32).reshape(g, n // g, h, w, f, c // f)
    y = y - jnp.mean(y, axis=0)
    y = jnp.sqrt(jnp.mean(jnp.square(y), axis=0) + 1e-8)      # [n/g, h, w, f, c/f]
    y = jnp.mean(y, axis=(1, 2, 4))                             # [n/g, f]
    y = jnp.tile(y, (g, 1))[:, None, None, :]                   # [n, 1, 1, f]
    y = jnp.broadcast_to(y, (n, h, w, f)).astype(x.dtype)
    return jnp.concatenate([x, y], axis=-1)


class DiscriminatorBlock(nn.Module):
    """Block `b{resolution}`: (fromrgb) conv0, downsampling conv1 and a 1x1 skip, each x sqrt(.5)."""

    tmp_channels: int
    out_channels: int
    first: bool
    conv_clamp: float | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        conv = dict(conv_clamp=self.conv_clamp, dtype=self.dtype)
        if self.first:
            x = Conv2dLayer(self.tmp_channels, 1, activation="lrelu", name="fromrgb", **conv)(x)
        # The official skip layer is the one conv that is never clamped.
        y = Conv2dLayer(self.out_channels, 1, use_bias=False, down=2, dtype=self.dtype,
                        name="skip")(x, gain=SQRT_HALF)
        x = Conv2dLayer(self.tmp_channels, 3, activation="lrelu", name="conv0", **conv)(x)
        x = Conv2dLayer(self.out_channels, 3, activation="lrelu", down=2, name="conv1", **conv)(x, gain=SQRT_HALF)
        return y + x


class Discriminator(nn.Module):
    """Residual blocks b{resolution} .. b8, then the b4 epilogue. `remat`: each block's
    activations are recomputed in the backward pass instead of kept (jax.checkpoint)."""

    cfg: DiscriminatorConfig
    dtype: Any = jnp.float32
    remat: bool = False

    @nn.compact
    def __call__(self, img: jax.Array) -> jax.Array:
        cfg = self.cfg
        channels = cfg.channels_dict
        block = nn.remat(DiscriminatorBlock) if self.remat else DiscriminatorBlock
        x = img
        res = cfg.resolution
        while res > 4:
            x = block(channels[res], channels[res // 2], first=res == cfg.resolution,
                      conv_clamp=cfg.conv_clamp, dtype=self.dtype, name=f"b{res}")(x)
            res //= 2
        return DiscriminatorEpilogue(channels[4], cfg.mbstd_group_size, cfg.mbstd_num_channels,
                                     conv_clamp=cfg.conv_clamp, dtype=self.dtype, name="b4")(x)


class DiscriminatorEpilogue(nn.Module):
    """b4: minibatch stddev, 3x3 conv, fc (lrelu), out (linear)."""

    channels: int
    mbstd_group_size: int | None
    mbstd_num_channels: int
    conv_clamp: float | None = None
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.mbstd_num_channels > 0:
            x = minibatch_stddev(x, self.mbstd_group_size, self.mbstd_num_channels)
        x = Conv2dLayer(self.channels, 3, activation="lrelu", conv_clamp=self.conv_clamp,
                        dtype=self.dtype, name="conv")(x)
        # Flatten channel-major (NCHW order) so the fc weights are the official ones.
        x = jnp.transpose(x, (0, 3, 1, 2)).reshape(x.shape[0], -1).astype(jnp.float32)
        x = FullyConnected(self.channels, activation="lrelu", name="fc")(x)
        return FullyConnected(1, name="out")(x)
