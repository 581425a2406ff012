"""Flax (Linen) StyleGAN2 and StyleGAN3 networks, NHWC, with NVlabs parameter names.

Variables live in two collections: 'params' (trained) and 'buffers' (`w_avg` of the mapping
network, StyleGAN2's fixed `noise_const` maps, StyleGAN3's filters, input transform and
magnitude EMAs), so every call passes them explicitly:
`make_generator(cfg).apply({'params': p, 'buffers': b}, z)`. Both generator families have
the methods `map` (z -> ws) and `synthesize` (ws -> image), called as `method="map"`.
"""

import jax.numpy as jnp

from stylekd_jax.architecture import StyleGAN3Config
from stylekd_jax.networks import stylegan3
from stylekd_jax.networks.discriminator import Discriminator
from stylekd_jax.networks.generator import Generator
from stylekd_jax.networks.mapping import MappingNetwork
from stylekd_jax.networks.synthesis import SynthesisNetwork


def make_generator(cfg, dtype=jnp.float32, remat: bool = False):
    """The generator module for an architecture config (StyleGAN2 or StyleGAN3); `remat`
    recomputes synthesis activations in the backward pass (config.remat)."""
    if isinstance(cfg, StyleGAN3Config):
        return stylegan3.Generator(cfg, dtype=dtype, remat=remat)
    return Generator(cfg, dtype=dtype, remat=remat)


__all__ = ["Discriminator", "Generator", "MappingNetwork", "SynthesisNetwork", "make_generator"]
