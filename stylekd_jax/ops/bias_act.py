"""Fused bias + activation + gain + clamp, the epilogue of every StyleGAN2 layer."""

import math

import jax
import jax.numpy as jnp

# Default gain per activation: sqrt(2) keeps the signal magnitude through leaky ReLU.
ACTIVATION_GAINS = {"linear": 1.0, "lrelu": math.sqrt(2.0)}


def bias_act(x: jax.Array, bias: jax.Array | None = None, act: str = "linear",
             gain: float | None = None, clamp: float | None = None,
             alpha: float = 0.2) -> jax.Array:
    """`clamp(act(x + bias) * gain, -clamp, clamp)`, bias broadcast over the last axis.

    `gain=None` uses the activation's default gain (sqrt(2) for lrelu, 1 for linear).
    """
    if act not in ACTIVATION_GAINS:
        raise ValueError(f"unknown activation {act!r}; expected one of {sorted(ACTIVATION_GAINS)}")
    if bias is not None:
        x = x + bias.astype(x.dtype)
    if act == "lrelu":
        x = jnp.where(x >= 0, x, x * alpha)
    gain = ACTIVATION_GAINS[act] if gain is None else gain
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = jnp.clip(x, -clamp, clamp)
    return x
