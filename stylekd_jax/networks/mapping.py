"""Mapping network z -> w: normalise z, a stack of lrelu layers at lr x0.01, broadcast, truncate."""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from stylekd_jax.networks.layers import FullyConnected


def normalize_2nd_moment(x: jax.Array, eps: float = 1e-8) -> jax.Array:
    return x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)


def truncate(ws: jax.Array, w_avg: jax.Array, psi: float, cutoff: int | None = None) -> jax.Array:
    """`w_avg + psi * (w - w_avg)` on the first `cutoff` layers of ws [N, num_ws, w_dim] (all if None)."""
    truncated = w_avg + psi * (ws - w_avg)
    if cutoff is None:
        return truncated
    layer = jnp.arange(ws.shape[1])[None, :, None]
    return jnp.where(layer < cutoff, truncated, ws)


class MappingNetwork(nn.Module):
    """Layers `fc0 .. fc{n-1}` with output widths `features` (the last is w_dim), buffer `w_avg`."""

    features: Sequence[int]
    num_ws: int
    lr_multiplier: float = 0.01
    w_avg_beta: float = 0.995
    normalize_z: bool = True            # False: plain linear layers on z (StyleKD --mlp_cfg)

    @nn.compact
    def __call__(self, z: jax.Array, truncation_psi: float = 1.0,
                 truncation_cutoff: int | None = None, update_w_avg: bool = False) -> jax.Array:
        w_dim = self.features[-1]
        w_avg = self.variable("buffers", "w_avg", jnp.zeros, (w_dim,), jnp.float32)
        x = z.astype(jnp.float32)
        if self.normalize_z:
            x = normalize_2nd_moment(x)
        for i, width in enumerate(self.features):
            x = FullyConnected(width, lr_multiplier=self.lr_multiplier, activation="lrelu",
                               name=f"fc{i}")(x)
        if update_w_avg:
            batch_mean = jnp.mean(x, axis=0)
            w_avg.value = batch_mean + self.w_avg_beta * (w_avg.value - batch_mean)
        ws = jnp.broadcast_to(x[:, None, :], (x.shape[0], self.num_ws, w_dim))
        if truncation_psi != 1:
            ws = truncate(ws, w_avg.value, truncation_psi, truncation_cutoff)
        return ws
