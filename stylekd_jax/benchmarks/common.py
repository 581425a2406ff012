"""Timing helpers shared by the benchmarks: wall-clock of jitted calls and the device's peak."""

import time

import jax
import jax.numpy as jnp

# bf16 dense FLOP/s per chip by device_kind substring (vendor figures, no sparsity).
SPEC_PEAKS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "V100": 125e12, "L4": 121e12,
              "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v5p": 459e12, "TPU v4": 275e12,
              "TPU v6": 918e12}


def time_call(fn, *args, warmup: int = 2, min_seconds: float = 3.0, min_iters: int = 3) -> float:
    """Seconds per call of a jitted `fn(*args)`, after compilation and warm-up."""
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    iters, start = 0, time.perf_counter()
    while iters < min_iters or time.perf_counter() - start < min_seconds:
        jax.block_until_ready(fn(*args))
        iters += 1
    return (time.perf_counter() - start) / iters


def measured_peak_flops(dtype=jnp.float32) -> float:
    """Best FLOP/s of large square matmuls in `dtype`: the practical peak to compare against."""
    sizes = (2048, 4096) if jax.devices()[0].platform == "cpu" else (8192, 16384)
    best = 0.0
    for n in sizes:
        a = jnp.ones((n, n), dtype)
        seconds = time_call(jax.jit(lambda x: x @ x), a, min_seconds=2.0)
        best = max(best, 2.0 * n ** 3 / seconds)
    return best

