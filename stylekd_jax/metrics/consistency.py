"""Output consistency between a teacher and a student for the same latents and noise.

Why: StyleKD's central claim is that a distilled student should map the same z to the same image
as its teacher (the paper's "output discrepancy"; inheriting the teacher's mapping network
removes most of it).  This measures it: for shared z and shared noise, the pixel L1,
LPIPS and PSNR between teacher and student images, and the mapping discrepancy of Table 2,
"|S_s - S_t|_1".

Conventions:
- mapping_l1 = mean over samples and w elements of |w_s - w_t| (torch `F.l1_loss`, the reduction
  StyleKD's mapping-mimic stage uses; our ws repeat one w over layers, so this equals the mean over
  the w_dim entries of the single w).  Table 2 values (1.027 random init, 0.156 two-stage) are on
  this per-element scale.
- image L1: mean absolute difference per pixel and channel, images in [-1, 1], unclipped;
  PSNR: per image, from the float32 per-image MSE of the images clipped to [-1, 1], converted in
  float64 with data range 2 (inf when identical), averaged over images;
  LPIPS: the passed `lpips` on clipped images, defined as exactly 0 for bit-identical images (XLA
  reductions leave ~1e-16 otherwise).
- noise: 'const' renders both generators with the TEACHER's noise_const maps (a student has maps
  of the same shapes); 'random' draws per-image maps shared by teacher and student; 'none'.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from stylekd_jax.metrics.projection import noise_maps, random_noise, synthesize_with_noise, with_noise
from stylekd_jax.metrics.psnr import psnr_from_mse

__all__ = ["consistency"]


def consistency(teacher, t_vars, student, s_vars, lpips: Callable[[jax.Array, jax.Array], jax.Array],
                num_samples: int = 1000, batch: int = 16, seed: int = 0, noise_mode: str = "const",
                truncation_psi: float = 1.0,
                progress: Callable[[int, int], None] | None = None) -> dict:
    """Returns {'l1', 'lpips', 'psnr', 'mapping_l1', 'num_samples'} averaged over samples.

    z for sample i is row i of `jax.random.normal(fold_in(PRNGKey(seed), b), (batch, z_dim))`.
    """
    if noise_mode not in ("const", "random", "none"):
        raise ValueError(f"noise_mode must be 'const', 'random' or 'none', got {noise_mode!r}")
    if teacher.cfg.z_dim != student.cfg.z_dim:
        raise ValueError(f"z_dim differs: teacher {teacher.cfg.z_dim}, student {student.cfg.z_dim}")
    if noise_mode == "const":
        t_maps = noise_maps(t_vars)
        s_shapes = {k: v.shape for k, v in noise_maps(s_vars).items()}
        if s_shapes != {k: v.shape for k, v in t_maps.items()}:
            raise ValueError("teacher and student noise buffers differ; cannot share const noise")
        s_vars = with_noise(s_vars, t_maps)
    z_dim = teacher.cfg.z_dim

    def render(G, variables, k):
        k_z, k_noise = jax.random.split(k)
        z = jax.random.normal(k_z, (batch, z_dim))
        ws = G.apply(variables, z, truncation_psi, method="map")
        if noise_mode == "random":  # per-image maps shaped like the teacher's, from the same key
            return ws, synthesize_with_noise(G, variables, ws, random_noise(k_noise, t_vars, batch))
        return ws, G.apply(variables, ws, noise_mode=noise_mode, method="synthesize")

    # One executable per generator: a generator compared with itself runs the same compiled code
    # on the same inputs and gives bit-identical outputs (fused into one program, XLA may round
    # the two copies differently).
    render = jax.jit(render, static_argnums=0)

    @jax.jit
    def compare(w_t, x_t, w_s, x_s):
        axes = tuple(range(1, x_t.ndim))
        l1 = jnp.mean(jnp.abs(x_s - x_t), axis=axes)
        c_t, c_s = jnp.clip(x_t, -1, 1), jnp.clip(x_s, -1, 1)
        mse = jnp.mean(jnp.square(c_s - c_t), axis=axes)
        same = jnp.all(c_t == c_s, axis=axes)
        map_l1 = jnp.mean(jnp.abs(w_s - w_t), axis=tuple(range(1, w_t.ndim)))
        return l1, mse, same, map_l1, c_t, c_s

    def one_batch(k):
        return compare(*render(teacher, t_vars, k), *render(student, s_vars, k))

    key = jax.random.PRNGKey(seed)
    num_batches = -(-num_samples // batch)
    acc = {name: [] for name in ("l1", "mse", "lpips", "mapping_l1")}
    for b in range(num_batches):
        l1, mse, same, map_l1, c_t, c_s = one_batch(jax.random.fold_in(key, b))
        d = jnp.where(same, 0.0, lpips(c_t, c_s))
        for name, v in zip(acc, (l1, mse, d, map_l1)):
            acc[name].append(np.asarray(v, np.float64))
        if progress is not None:
            progress(min((b + 1) * batch, num_samples), num_samples)
    per = {k: np.concatenate(v)[:num_samples] for k, v in acc.items()}
    return {"l1": float(per["l1"].mean()), "lpips": float(per["lpips"].mean()),
            "psnr": float(psnr_from_mse(per["mse"]).mean()),
            "mapping_l1": float(per["mapping_l1"].mean()), "num_samples": num_samples}
