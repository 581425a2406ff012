"""What a seed, a SeFa edit and a style mix do to the ws: one definition for `edit` and `explore`.

Why one module: the edit grids, the explorer's teacher image (JAX, on the server) and its
student image (onnxruntime-web, in the browser, which repeats these formulas in JavaScript)
must all mean the same thing by "seed 3, psi 0.7, direction 2 at strength 3":

    ws   = truncate(mapping(z(seed)), w_avg, psi)        all layers, as `generate` (no cutoff)
    mix  : layers [0, cutoff) taken from the column seed's ws (NVlabs style_mixing.py's
           col_styles = 0..cutoff-1), the rest from the row seed's
    edit : ws + strength * direction on every layer, as the LD loss's offsets in training

z(seed) is `generate`'s convention, RandomState(seed).randn(1, z_dim).
"""

import argparse

import numpy as np

from stylekd_jax.generate import parse_seeds, seed_latents
from stylekd_jax.networks.mapping import truncate

DIRECTION_SOURCES = ("sefa",)


def seed_ws(map_fn, variables, seeds: list[int], z_dim: int, psi: float) -> np.ndarray:
    """Truncated ws [N, num_ws, w_dim] of the seeds; `map_fn(variables, z)` is the jitted
    mapping without truncation."""
    ws = np.asarray(map_fn(variables, seed_latents(seeds, z_dim)), np.float32)
    w_avg = np.asarray(variables["buffers"]["mapping"]["w_avg"], np.float32)
    return np.asarray(truncate(ws, w_avg, np.float32(psi)), np.float32)


def edit(ws: np.ndarray, direction: np.ndarray, strength: float) -> np.ndarray:
    """ws moved by `strength` along a unit `direction` [w_dim], on every layer."""
    return (ws + np.float32(strength) * np.asarray(direction, np.float32)).astype(np.float32)


def mix(row_ws: np.ndarray, col_ws: np.ndarray, cutoff: int) -> np.ndarray:
    """Layers [0, cutoff) from `col_ws`, the others from `row_ws` (same shapes)."""
    mixed = np.array(row_ws, np.float32, copy=True)
    mixed[..., :cutoff, :] = col_ws[..., :cutoff, :]
    return mixed


def parse_direction_spec(text: str, available: int) -> list[int]:
    """'sefa:0-4' or 'sefa:1,3' -> direction indices, each below `available`."""
    source, _, indices = text.partition(":")
    if source.strip().lower() not in DIRECTION_SOURCES or not indices.strip():
        raise ValueError(f"--directions {text!r}: use sefa:INDICES, e.g. sefa:0-4 or sefa:0,2")
    try:
        chosen = parse_seeds(indices)
    except argparse.ArgumentTypeError:
        raise ValueError(f"--directions {text!r}: indices are numbers and ranges like 0-4,7") from None
    bad = [i for i in chosen if i >= available]
    if bad:
        raise ValueError(f"--directions {text!r}: the teacher has {available} SeFa directions "
                         f"(0-{available - 1}), no direction {bad[0]}")
    return list(dict.fromkeys(chosen))


def parse_strengths(text: str) -> list[float]:
    """'-6,-3,0,3,6' -> [-6.0, -3.0, 0.0, 3.0, 6.0] (finite numbers)."""
    try:
        values = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        values = []
    if not values or not np.all(np.isfinite(values)):
        raise ValueError(f"--strengths {text!r}: use finite numbers separated by commas, e.g. -6,-3,0,3,6")
    return values
