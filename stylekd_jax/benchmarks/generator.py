"""Generator forward throughput: images/s and achieved FLOP/s vs the device's measured peak.

    python -m stylekd_jax.benchmarks.generator                 # 256px teacher + StyleKD student, batch 8
    python -m stylekd_jax.benchmarks.generator --dtype bfloat16 --batch 32
    python -m stylekd_jax.benchmarks.generator --models sg3t-teacher-256,sg3r-teacher-256 --batch 1,4
    python -m stylekd_jax.benchmarks.generator --list          # channels, params, MACs; no timing

Models (random weights; speed does not depend on their values): the 256px config-f teacher
(channel_base 32768) and the 70%-pruned student [154]*10 + [77,77,39,39] of StyleKD/CAGAN;
the 256px StyleGAN3-T and -R teachers (NVlabs `--cfg stylegan3-t|r`, default --cbase/--cmax)
and an SG3-T student with CAGAN's keep ratio 0.3 per layer (`C - floor(0.7 C)`).
FLOPs = 2 x the multiply-accumulates of `architecture.generator_macs` (StyleGAN2 45.1 G /
4.1 G MACs; StyleGAN3-T 256 231.8 G, -R 100.8 G: convs, affines, mapping and the input's
feature mixing, not the filters of the filtered leaky ReLU, which add 3% for T and 32% for R,
whose radial down-filters have 12 x 12 taps).
"""

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from stylekd_jax.architecture import (GeneratorConfig, StyleGAN3Config, count_params,
                                      generator_macs, sequence_str)
from stylekd_jax.benchmarks.common import measured_peak_flops, time_call
from stylekd_jax.sharding import device_description
from stylekd_jax.networks import make_generator
from stylekd_jax.networks.generator import init_generator
from stylekd_jax.student import student_config

MODELS = {
    "teacher-256": GeneratorConfig.teacher(256),
    "student-256": GeneratorConfig(resolution=256, channels=(154,) * 10 + (77, 77, 39, 39)),
    "student-256-k1": GeneratorConfig(resolution=256, channels=(154,) * 10 + (77, 77, 39, 39),
                                      kernel_size=1),
    "sg3t-teacher-256": StyleGAN3Config.teacher(256, "t"),
    "sg3r-teacher-256": StyleGAN3Config.teacher(256, "r"),
    # [154]*9 + [109, 77, 55, 39, 39]
    "sg3t-student-256": student_config(StyleGAN3Config.teacher(256, "t"), keep_ratio=0.3),
}


def benchmark(cfg, batch: int, dtype, noise_mode: str = "random",
              min_seconds: float = 3.0) -> tuple[float, float, float]:
    """(images/s, FLOP/s, compile seconds) of the jitted z -> image forward (`cfg`: StyleGAN2
    or StyleGAN3)."""
    variables = init_generator(cfg, jax.random.PRNGKey(0))
    model = make_generator(cfg, dtype)
    forward = jax.jit(lambda v, z, key: model.apply(v, z, noise_mode=noise_mode, rngs={"noise": key}))
    z = jnp.asarray(np.random.RandomState(0).randn(batch, cfg.z_dim), jnp.float32)
    start = time.perf_counter()
    compiled = forward.lower(variables, z, jax.random.PRNGKey(1)).compile()
    compile_s = time.perf_counter() - start
    seconds = time_call(compiled, variables, z, jax.random.PRNGKey(1), min_seconds=min_seconds)
    flops = 2.0 * generator_macs(cfg) * batch
    return batch / seconds, flops / seconds, compile_s


def describe(name: str, cfg) -> str:
    """One line: the model's family, channels, parameter count and MACs per image."""
    params = count_params(jax.eval_shape(lambda: init_generator(cfg, jax.random.PRNGKey(0)))["params"])
    family = f"StyleGAN3-{cfg.config_name}" if isinstance(cfg, StyleGAN3Config) else "StyleGAN2"
    return (f"{name:16s} {family:11s} {cfg.resolution}px {params / 1e6:7.2f} M params "
            f"{generator_macs(cfg) / 1e9:7.2f} GMAC/img  channels {sequence_str(cfg.channels)}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="teacher-256,student-256", help=f"from {sorted(MODELS)}")
    parser.add_argument("--batch", default="8", help="batch size, or a comma-separated list")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--noise-mode", default="random", help="StyleGAN2 only (StyleGAN3 has no noise)")
    parser.add_argument("--list", action="store_true",
                        help="print each model's channels, parameters and MACs, and time nothing")
    args = parser.parse_args(argv)
    names = args.models.split(",")
    for name in names:
        if name not in MODELS:
            parser.error(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    try:
        batches = [int(b) for b in args.batch.split(",")]
    except ValueError:
        batches = []
    if not batches or min(batches) < 1:
        parser.error(f"--batch must be positive integers, comma-separated, got {args.batch!r}")
    if args.list:
        for name in names:
            print(describe(name, MODELS[name]))
        return
    dtype = jnp.dtype(args.dtype)
    print(f"device: {device_description()}")
    peak = measured_peak_flops(dtype)
    print(f"measured peak ({args.dtype} matmul): {peak / 1e9:.1f} GFLOP/s")
    print(f"{'model':16s} {'batch':>5s} {'GMAC/img':>9s} {'img/s':>9s} {'GFLOP/s':>9s} {'of peak':>8s}")
    for name in names:
        cfg = MODELS[name]
        for batch in batches:
            images_per_s, flops, _ = benchmark(cfg, batch, dtype, args.noise_mode)
            print(f"{name:16s} {batch:5d} {generator_macs(cfg) / 1e9:9.2f} {images_per_s:9.2f} "
                  f"{flops / 1e9:9.1f} {flops / peak:8.1%}")


if __name__ == "__main__":
    main()
