"""Perceptual path length (PPL): how fast the image changes along a latent interpolation.

Why: the paper's Table 3 reports PPL (teacher 0.162, StyleKD 0.135).  Two definitions are in use;
the paper's number is the StyleKD one with sampling 'full' over 5000 pairs (`ppl_wfull_stylekd`
of `python -m stylekd_jax.evaluate`).

NVlabs (stylegan2-ada-pytorch `metrics/perceptual_path_length.py`), the default here:
  z0, z1 ~ N(0, I); w0, w1 = mapping(z) (no truncation); t ~ U[0, 1) ('full') or t = 0 ('end');
  images at lerp(w0, w1, t) and lerp(w0, w1, t + eps); both images of a pair get the SAME noise
  (NVlabs re-draws the `noise_const` buffers per batch and renders with noise_mode='const');
  optional face crop rows [3H/8, 7H/8), columns [2W/8, 6W/8) (c = H // 8:
  img[3c:7c, 2c:6c]; NVlabs' ppl_wend / ppl_wfull / ppl_z* metrics all crop, `crop=True`); images of generators above 256 px are box-downsampled by the integer
  factor resolution // 256 (taken before the crop, so a 1024px face crop ends at 128x128);
  distance = LPIPS-VGG / eps^2; keep values in [p1, p99] (np.percentile, method 'lower' for p1
  and 'higher' for p99, bounds inclusive); mean.

StyleKD (`Evaluation/ppl.py` of CAGAN, used by StyleKD's `get_ppl.py`), `stylekd_variant=True`:
  the same, except that the LPIPS distance is NOT divided by eps^2, every image gets its own
  random noise (rosinality's generator with noise=None), and images larger than 256 are resized
  bilinearly (align_corners=False).  The official script (`get_ppl.py`) uses sampling 'full',
  5000 pairs and no crop.  Its
  numbers (teacher 0.162) are therefore dominated by noise differences and are not comparable to
  NVlabs' PPL.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from stylekd_jax.metrics.projection import random_noise, with_noise

__all__ = ["path_length", "percentile_filter_mean", "slerp"]


def percentile_filter_mean(dist) -> float:
    """Mean of the values within [p1 ('lower'), p99 ('higher')], bounds inclusive (NVlabs)."""
    dist = np.asarray(dist, np.float64)
    lo = np.percentile(dist, 1, method="lower")
    hi = np.percentile(dist, 99, method="higher")
    return float(dist[(dist >= lo) & (dist <= hi)].mean())


def slerp(a: jax.Array, b: jax.Array, t: jax.Array) -> jax.Array:
    """Spherical interpolation of normalised vectors (NVlabs' PPL in Z space)."""
    a = a / jnp.linalg.norm(a, axis=-1, keepdims=True)
    b = b / jnp.linalg.norm(b, axis=-1, keepdims=True)
    d = jnp.sum(a * b, axis=-1, keepdims=True)
    p = t * jnp.arccos(d)
    c = b - d * a
    c = c / jnp.linalg.norm(c, axis=-1, keepdims=True)
    out = a * jnp.cos(p) + c * jnp.sin(p)
    return out / jnp.linalg.norm(out, axis=-1, keepdims=True)


def _crop_and_resize(img: jax.Array, crop: bool, bilinear: bool) -> jax.Array:
    # NVlabs takes the downsampling factor from the generator's resolution, before the crop:
    # a 1024px face crop (512x512) is box-filtered by 4 to 128x128, not to 256x256.
    factor = img.shape[1] // 256
    if crop:
        if img.shape[1] != img.shape[2]:
            raise ValueError(f"the face crop needs square images, got {img.shape}")
        c = img.shape[1] // 8
        img = img[:, c * 3: c * 7, c * 2: c * 6]
    if factor > 1:
        n, h, w, ch = img.shape
        if bilinear:
            img = jax.image.resize(img, (n, 256, 256, ch), "linear", antialias=False)
        else:
            img = img.reshape(n, h // factor, factor, w // factor, factor, ch).mean(axis=(2, 4))
    return img


def path_length(G, g_vars, lpips: Callable[[jax.Array, jax.Array], jax.Array], key: jax.Array,
                num_samples: int = 50000, batch: int = 16, epsilon: float = 1e-4,
                sampling: str = "end", space: str = "w", crop: bool = False,
                stylekd_variant: bool = False, noise_mode: str = "random",
                return_distances: bool = False,
                progress: Callable[[int, int], None] | None = None):
    """PPL of generator `G` (a Module with `map` and `synthesize`) with variables `g_vars`.

    `lpips(x, y) -> [N]` takes NHWC images in [-1, 1] (e.g. `lpips_fn(params)`).
    noise_mode: 'random' (NVlabs: fresh noise maps per batch, shared by both images of a pair),
    'const' (the generator's stored maps) or 'none'.  With `stylekd_variant`, 'random' means
    independent noise per image and distances are not divided by eps^2.
    Returns the filtered mean (and the raw distances [num_samples] with `return_distances`).
    """
    if sampling not in ("end", "full"):
        raise ValueError(f"sampling must be 'end' or 'full', got {sampling!r}")
    if space not in ("w", "z"):
        raise ValueError(f"space must be 'w' or 'z', got {space!r}")
    if noise_mode not in ("random", "const", "none"):
        raise ValueError(f"noise_mode must be 'random', 'const' or 'none', got {noise_mode!r}")
    z_dim = G.cfg.z_dim

    @jax.jit
    def pair_images(variables, k):
        k_z, k_t, k_noise = jax.random.split(k, 3)
        z0, z1 = jnp.split(jax.random.normal(k_z, (2 * batch, z_dim)), 2)
        t = jax.random.uniform(k_t, (batch,)) if sampling == "full" else jnp.zeros((batch,))
        mapping = lambda z: G.apply(variables, z, method="map")
        if space == "w":
            w0, w1 = jnp.split(mapping(jnp.concatenate([z0, z1])), 2)
            tt = t[:, None, None]
            wt0, wt1 = w0 + (w1 - w0) * tt, w0 + (w1 - w0) * (tt + epsilon)
        else:
            wt0, wt1 = jnp.split(mapping(jnp.concatenate([slerp(z0, z1, t[:, None]),
                                                          slerp(z0, z1, t[:, None] + epsilon)])), 2)
        ws = jnp.concatenate([wt0, wt1])
        if noise_mode == "random" and not stylekd_variant:
            variables = with_noise(variables, random_noise(k_noise, variables))
        mode = "const" if noise_mode == "random" and not stylekd_variant else noise_mode
        img = G.apply(variables, ws, noise_mode=mode, method="synthesize", rngs={"noise": k_noise})
        img = _crop_and_resize(img, crop, bilinear=stylekd_variant)
        return img[:batch], img[batch:]

    num_batches = -(-num_samples // batch)
    dists = []
    for b in range(num_batches):
        img0, img1 = pair_images(g_vars, jax.random.fold_in(key, b))
        dists.append(np.asarray(lpips(img0, img1), np.float64))
        if progress is not None:
            progress(min((b + 1) * batch, num_samples), num_samples)
    dist = np.concatenate(dists)[:num_samples]
    if not stylekd_variant:
        dist = dist / epsilon ** 2
    ppl = percentile_filter_mean(dist)
    return (ppl, dist) if return_distances else ppl
