"""Flax (Linen) StyleGAN2 networks, NHWC, with NVlabs parameter names.

Variables live in two collections: 'params' (trained) and 'buffers' (`w_avg` of the mapping
network and the fixed `noise_const` maps), so every call passes them explicitly:
`Generator(cfg).apply({'params': p, 'buffers': b}, z)`.
"""

from stylekd_jax.networks.discriminator import Discriminator
from stylekd_jax.networks.generator import Generator
from stylekd_jax.networks.mapping import MappingNetwork
from stylekd_jax.networks.synthesis import SynthesisNetwork

__all__ = ["Discriminator", "Generator", "MappingNetwork", "SynthesisNetwork"]
