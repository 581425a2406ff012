"""Generator forward throughput: images/s and achieved FLOP/s vs the device's measured peak.

    python -m stylekd_jax.benchmarks.generator                 # 256px teacher + StyleKD student, batch 8
    python -m stylekd_jax.benchmarks.generator --dtype bfloat16 --batch 32

Models (random weights; speed does not depend on their values): the 256px config-f teacher
(channel_base 32768) and the 70%-pruned student [154]*10 + [77,77,39,39] of StyleKD/CAGAN.
FLOPs = 2 x the multiply-accumulates of `architecture.generator_macs` (45.1 G / 4.1 G MACs).
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np

from stylekd_jax.architecture import GeneratorConfig, generator_macs
from stylekd_jax.benchmarks.common import device_description, measured_peak_flops, time_call
from stylekd_jax.networks import Generator
from stylekd_jax.networks.generator import init_generator

MODELS = {
    "teacher-256": GeneratorConfig.teacher(256),
    "student-256": GeneratorConfig(resolution=256, channels=(154,) * 10 + (77, 77, 39, 39)),
    "student-256-k1": GeneratorConfig(resolution=256, channels=(154,) * 10 + (77, 77, 39, 39),
                                      kernel_size=1),
}


def benchmark(cfg: GeneratorConfig, batch: int, dtype, noise_mode: str) -> tuple[float, float]:
    """(images/s, FLOP/s) of the jitted z -> image forward."""
    variables = init_generator(cfg, jax.random.PRNGKey(0))
    model = Generator(cfg, dtype=dtype)
    forward = jax.jit(lambda v, z, key: model.apply(v, z, noise_mode=noise_mode, rngs={"noise": key}))
    z = jnp.asarray(np.random.RandomState(0).randn(batch, cfg.z_dim), jnp.float32)
    seconds = time_call(forward, variables, z, jax.random.PRNGKey(1))
    flops = 2.0 * generator_macs(cfg) * batch
    return batch / seconds, flops / seconds


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="teacher-256,student-256", help=f"from {sorted(MODELS)}")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--noise-mode", default="random")
    args = parser.parse_args(argv)
    dtype = jnp.dtype(args.dtype)
    print(f"device: {device_description()}")
    peak = measured_peak_flops(dtype)
    print(f"measured peak ({args.dtype} matmul): {peak / 1e9:.1f} GFLOP/s")
    print(f"{'model':16s} {'batch':>5s} {'GMAC/img':>9s} {'img/s':>9s} {'GFLOP/s':>9s} {'of peak':>8s}")
    for name in args.models.split(","):
        if name not in MODELS:
            parser.error(f"unknown model {name!r}; choose from {sorted(MODELS)}")
        cfg = MODELS[name]
        images_per_s, flops = benchmark(cfg, args.batch, dtype, args.noise_mode)
        print(f"{name:16s} {args.batch:5d} {generator_macs(cfg) / 1e9:9.2f} {images_per_s:9.2f} "
              f"{flops / 1e9:9.1f} {flops / peak:8.1%}")


if __name__ == "__main__":
    main()
