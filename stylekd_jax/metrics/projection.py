"""Project images into a generator's W+ space and noise maps (the PSNR evaluation of the paper).

Why: CAGAN and StyleKD report how well a generator can reproduce real faces: each target is
projected by optimising a W+ code (one w per layer) **and** the per-layer noise maps to minimise
MSE + LPIPS, and PSNR / LPIPS between projection and target are reported (StyleKD `get_psnr.py`
on 55 Helen faces, Table 3's PSNR column).

Facts of the official protocol (CAGAN `Evaluation/image_projection`, used unchanged by StyleKD's
`get_psnr.py`): one image at a time; W+ initialised with the mean of 1000 mapped random z
repeated over layers; noise maps initialised N(0, 1), no noise regularisation or
re-normalisation; loss = MSE of the [-1, 1] images (weight 1) + LPIPS-VGG of the clamped images
bilinearly resized to 256 (weight 1; the code switches LPIPS on below an MSE of 100, i.e. from
the start); their own full-batch L-BFGS (lr 1, history 10, weak Wolfe line search c1 1e-4,
c2 0.9, at most 10 line-search steps) for 800 iterations (its loop runs 801 steps); or Adam
lr 0.01 with a cosine ramp.  Here `optimizer='lbfgs'` is optax.lbfgs (history 10) with its zoom
(strong Wolfe, same c1 / c2, at most 10 steps, initial step 1): the same method, not bitwise
the official optimiser; `'adam'` is the ramped Adam.  NVlabs' projector (noise regularisation
1e5 and noise re-normalisation) is available through `noise_regularize` / `normalize_noise`.
PSNR is reported twice: `psnr` (float64, range 2) and `psnr_compat` (the official uint8
computation, see psnr.py).

Explicit noise maps: `Generator.synthesize` reads noise from the `noise_const` buffers (shared by
the batch).  Rather than adding a noise argument to the network, the maps are substituted into a
copy of the variables and the synthesis is run per image under `jax.vmap` with
noise_mode='const': this is exactly "synthesis with these noise maps", and lets every target own
its maps.  The helpers `noise_maps`, `random_noise`, `synthesize_with_noise` are shared by the
other metrics.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util
from flax.core import unfreeze

from stylekd_jax.metrics.psnr import psnr as psnr_images, psnr_official_compat

__all__ = ["Projection", "project", "noise_maps", "random_noise", "with_noise",
           "synthesize_with_noise", "cagan_lr_ramp", "OPTIMIZERS", "LBFGS_MEMORY", "LBFGS_MAX_LINESEARCH"]

OPTIMIZERS = ("lbfgs", "adam")
LBFGS_MEMORY = 10           # official FullBatchLBFGS history_size
LBFGS_MAX_LINESEARCH = 10   # official max_ls


def noise_maps(variables) -> dict:
    """The generator's `noise_const` buffers as {path tuple: [res, res]} (empty when none)."""
    flat = traverse_util.flatten_dict(unfreeze(variables.get("buffers", {})))
    return {k: v for k, v in flat.items() if k[-1] == "noise_const"}


def with_noise(variables, maps: dict) -> dict:
    """A copy of `variables` whose noise_const buffers are replaced by `maps` (same keys)."""
    if not maps:
        return variables
    buffers = traverse_util.flatten_dict(unfreeze(variables["buffers"]))
    unknown = set(maps) - set(buffers)
    if unknown:
        raise KeyError(f"no such noise buffers: {sorted(unknown)[:3]}")
    buffers.update(maps)
    return {**variables, "buffers": traverse_util.unflatten_dict(buffers)}


def random_noise(key: jax.Array, variables, n: int | None = None) -> dict:
    """N(0, 1) maps shaped like the noise buffers, with a leading batch axis n when given."""
    maps = noise_maps(variables)
    keys = jax.random.split(key, max(len(maps), 1))
    lead = () if n is None else (n,)
    return {p: jax.random.normal(k, lead + v.shape, jnp.float32) for k, (p, v) in zip(keys, maps.items())}


def synthesize_with_noise(G, variables, ws: jax.Array, maps: dict) -> jax.Array:
    """Images [N, H, W, C] for ws [N, num_ws, w_dim] and per-image maps {path: [N, res, res]}."""
    def one(w, m):
        return G.apply(with_noise(variables, m), w[None], noise_mode="const", method="synthesize")[0]
    return jax.vmap(one)(ws, maps)


def cagan_lr_ramp(step, steps: int, rampdown: float = 0.25, rampup: float = 0.05):
    """CAGAN's (= rosinality's projector) learning-rate factor at `step` of `steps`."""
    t = step / steps
    ramp = jnp.minimum(1.0, (1.0 - t) / rampdown)
    ramp = 0.5 - 0.5 * jnp.cos(ramp * math.pi)
    return ramp * jnp.minimum(1.0, t / rampup)


def _noise_regularizer(maps: dict) -> jax.Array:
    """NVlabs: squared auto-correlation at shift 1 (both axes), summed over a 2x pyramid down to 8x8.

    maps: {path: [N, res, res]} -> [N]."""
    total = 0.0
    for m in maps.values():
        while True:
            total = total + jnp.mean(m * jnp.roll(m, 1, axis=2), axis=(1, 2)) ** 2
            total = total + jnp.mean(m * jnp.roll(m, 1, axis=1), axis=(1, 2)) ** 2
            if m.shape[1] <= 8:
                break
            n, r, _ = m.shape
            m = m.reshape(n, r // 2, 2, r // 2, 2).mean(axis=(2, 4))
    return total


def _normalize(maps: dict) -> dict:
    return {k: (m - m.mean(axis=(1, 2), keepdims=True)) / m.std(axis=(1, 2), keepdims=True)
            for k, m in maps.items()}


class Projection(NamedTuple):
    """Result of `project`: ws [N, num_ws, w_dim], noises {path: [N, res, res]}, images
    [N, H, W, C] (unclipped), psnr / lpips per image [N] (images clipped to [-1, 1]; PSNR in
    float64 with range 2), their means, the final loss per image, `history`: the mean loss
    per target before each step [steps], and `psnr_compat` [N] / `mean_psnr_compat`: the
    official uint8 wrap-around PSNR (`psnr_official_compat`, target taken as uint8 picture)."""

    ws: jax.Array
    noises: dict
    images: jax.Array
    psnr: np.ndarray
    lpips: np.ndarray
    mean_psnr: float
    mean_lpips: float
    loss: np.ndarray
    history: np.ndarray
    psnr_compat: np.ndarray
    mean_psnr_compat: float


def project(G, g_vars, target_images, lpips: Callable[[jax.Array, jax.Array], jax.Array],
            steps: int = 800, lr: float | None = None, optimizer: str = "adam", w_init="mean",
            w_avg_samples: int = 1000, noise_regularize: float = 0.0, normalize_noise: bool = False,
            lpips_weight: float = 1.0, mse_weight: float = 1.0, key: jax.Array | None = None,
            progress: Callable[[int, int], None] | None = None) -> Projection:
    """Optimise W+ and the noise maps so that G reproduces each target (NHWC in [-1, 1]).

    `lpips(x, y) -> [N]` is differentiated through (e.g. `lpips_fn(params, resize_to=256)`).
    w_init: 'mean' (mean of `w_avg_samples` mapped z, CAGAN), 'w_avg' (the mapping's tracked
    average) or an array [num_ws, w_dim] / [N, num_ws, w_dim].  lr defaults to 0.01 for Adam
    (CAGAN, with `cagan_lr_ramp`) and 1.0 for L-BFGS.  Targets are independent: the summed loss
    has per-target gradients, but L-BFGS's line search is shared, so for the exact one-image-at-
    a-time protocol call it with one target at a time.
    """
    key = jax.random.PRNGKey(0) if key is None else key
    k_w, k_noise = jax.random.split(key)
    targets = jnp.asarray(target_images, jnp.float32)
    n = targets.shape[0]
    ws_template = jax.eval_shape(lambda z: G.apply(g_vars, z, method="map"),
                                 jax.ShapeDtypeStruct((1, G.cfg.z_dim), jnp.float32))
    num_ws, w_dim = ws_template.shape[1:]

    if isinstance(w_init, str) and w_init == "mean":
        z = jax.random.normal(k_w, (w_avg_samples, G.cfg.z_dim))
        w0 = jnp.mean(jax.jit(lambda z: G.apply(g_vars, z, method="map"))(z), axis=0)
    elif isinstance(w_init, str) and w_init == "w_avg":
        w0 = jnp.broadcast_to(g_vars["buffers"]["mapping"]["w_avg"], (num_ws, w_dim))
    elif isinstance(w_init, str):
        raise ValueError(f"w_init must be 'mean', 'w_avg' or an array, got {w_init!r}")
    else:
        w0 = jnp.asarray(w_init, jnp.float32)
    ws = jnp.broadcast_to(w0, (n, num_ws, w_dim)).astype(jnp.float32)
    params = {"ws": ws, "noise": random_noise(k_noise, g_vars, n)}
    target_clip = jnp.clip(targets, -1.0, 1.0)

    # g_vars and the targets are jit arguments (not baked-in constants) of the functions below.
    def per_image_loss(p, variables, tgt):
        images = synthesize_with_noise(G, variables, p["ws"], p["noise"])
        mse = jnp.mean(jnp.square(images - tgt), axis=(1, 2, 3))
        loss = mse_weight * mse + lpips_weight * lpips(jnp.clip(images, -1.0, 1.0),
                                                       jnp.clip(tgt, -1.0, 1.0))
        if noise_regularize:
            loss = loss + noise_regularize * _noise_regularizer(p["noise"])
        return loss

    def total_loss(p, variables, tgt):
        return jnp.sum(per_image_loss(p, variables, tgt))

    if optimizer == "adam":
        base_lr = 0.01 if lr is None else lr
        opt = optax.adam(lambda i: base_lr * cagan_lr_ramp(i, steps))
    elif optimizer == "lbfgs":
        linesearch = optax.scale_by_zoom_linesearch(LBFGS_MAX_LINESEARCH, initial_guess_strategy="one")
        opt = optax.lbfgs(learning_rate=1.0 if lr is None else lr, memory_size=LBFGS_MEMORY,
                          linesearch=linesearch)
    else:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    # Strong types: optax.lbfgs's initial scalars are weakly typed, its updated ones not, and
    # the jitted step would otherwise compile twice.
    state = jax.tree_util.tree_map(lambda x: jnp.asarray(x, x.dtype), opt.init(params))

    @jax.jit
    def step(p, s, variables, tgt):
        loss_fn = lambda q: total_loss(q, variables, tgt)
        if optimizer == "lbfgs":
            value, grad = optax.value_and_grad_from_state(loss_fn)(p, state=s)
            updates, s = opt.update(grad, s, p, value=value, grad=grad, value_fn=loss_fn)
        else:
            value, grad = jax.value_and_grad(loss_fn)(p)
            updates, s = opt.update(grad, s, p)
        p = optax.apply_updates(p, updates)
        if normalize_noise:
            p = {**p, "noise": _normalize(p["noise"])}
        return p, s, value / n

    history = []
    for i in range(steps):
        params, state, value = step(params, state, g_vars, targets)
        history.append(value)
        if progress is not None:
            progress(i + 1, steps)

    @jax.jit
    def finish(p, variables, tgt):
        images = synthesize_with_noise(G, variables, p["ws"], p["noise"])
        return (images, lpips(jnp.clip(images, -1.0, 1.0), jnp.clip(tgt, -1.0, 1.0)),
                per_image_loss(p, variables, tgt))

    images, dist, loss = finish(params, g_vars, targets)
    psnr = np.atleast_1d(psnr_images(np.clip(np.asarray(images), -1.0, 1.0), np.asarray(target_clip)))
    compat = np.atleast_1d(psnr_official_compat(np.asarray(images), np.asarray(target_clip)))
    dist = np.asarray(dist, np.float64)
    return Projection(params["ws"], params["noise"], images, psnr, dist, float(np.mean(psnr)),
                      float(np.mean(dist)), np.asarray(loss), np.asarray(history, np.float64),
                      compat, float(np.mean(compat)))
