"""The whole generator: z -> mapping -> ws -> synthesis -> image."""

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from stylekd_jax.architecture import GeneratorConfig, count_params
from stylekd_jax.networks.mapping import MappingNetwork
from stylekd_jax.networks.synthesis import SynthesisNetwork


class Generator(nn.Module):
    """StyleGAN2 generator with submodules `mapping` and `synthesis` (NVlabs names).

    `apply(variables, z)` gives images; `method="map"` / `"synthesize"` run
    the halves, e.g. to mix styles by editing ws between them.
    """

    cfg: GeneratorConfig
    dtype: Any = jnp.float32
    remat: bool = False   # recompute each synthesis block's activations in the backward pass

    def setup(self):
        cfg = self.cfg
        self.mapping = MappingNetwork(cfg.mapping_features, cfg.num_ws,
                                      lr_multiplier=cfg.mapping_lr_multiplier,
                                      normalize_z=cfg.mapping_normalize_z,
                                      w_avg_beta=cfg.w_avg_beta)
        self.synthesis = SynthesisNetwork(cfg.resolution, cfg.channels, kernel_size=cfg.kernel_size,
                                          img_channels=cfg.img_channels, conv_clamp=cfg.conv_clamp,
                                          dtype=self.dtype, remat=self.remat)

    def map(self, z: jax.Array, truncation_psi: float = 1.0, truncation_cutoff: int | None = None,
            update_w_avg: bool = False) -> jax.Array:
        return self.mapping(z, truncation_psi, truncation_cutoff, update_w_avg)

    def synthesize(self, ws: jax.Array, noise_mode: str = "const", return_features: bool = False):
        return self.synthesis(ws, noise_mode, return_features)

    def __call__(self, z: jax.Array, truncation_psi: float = 1.0,
                 truncation_cutoff: int | None = None, noise_mode: str = "const") -> jax.Array:
        return self.synthesis(self.mapping(z, truncation_psi, truncation_cutoff), noise_mode)


@functools.lru_cache(maxsize=32)
def _init_fn(cfg):
    """The jitted initialiser of `cfg`, compiled once per architecture and process."""
    from stylekd_jax.networks import make_generator
    return jax.jit(lambda k: make_generator(cfg).init(
        {"params": k, "noise": k}, jnp.zeros((1, cfg.z_dim), jnp.float32)))


def init_generator(cfg, key: jax.Array) -> dict:
    """Freshly initialised variables {'params', 'buffers'} for `cfg` (StyleGAN2 or StyleGAN3)."""
    # Compiled: run op by op, a StyleGAN3 forward pass dispatches thousands of small ops.
    return _init_fn(cfg)(key)


def num_params(cfg: GeneratorConfig) -> int:
    """Parameter count of a generator of this architecture (shapes only, nothing allocated)."""
    return count_params(jax.eval_shape(lambda: init_generator(cfg, jax.random.PRNGKey(0)))["params"])
