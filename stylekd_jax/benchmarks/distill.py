"""Distillation step throughput: steps/s, images/s and achieved FLOP/s vs the measured peak.

    python -m stylekd_jax.benchmarks.distill                        # 256px config-f teacher, keep 0.3, batch 16
    python -m stylekd_jax.benchmarks.distill --resolution 64 --batch 8   # a quick run on a CPU

Times the trainer's own jitted step (D step + G step with L1, LPIPS, LD-KL, GAN; the lazy R1
and path-length phases at their real 1/16 and 1/4 rates) on random weights and random
images. FLOPs per step are counted from the architectures (2 x multiply-accumulates):
  teacher forward on the 2B batch [w, w + offset];
  student forward on 2B, backward ~2x forward; student forward on B for the D step;
  discriminator forward + backward (3x) on 2B in the D step, forward + input-gradient (2x) on B
  in the G step; LPIPS-VGG16 forward on 2B and input-gradient (1x) on B;
  R1 (~4x D forward on B) / 16 and path length (~4x student forward on B/2) / 4, amortised.
"""

import argparse
import itertools
import os
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from stylekd_jax import checkpoint, sharding
from stylekd_jax.architecture import DiscriminatorConfig, GeneratorConfig, discriminator_macs, generator_macs
from stylekd_jax.benchmarks.common import measured_peak_flops
from stylekd_jax.sharding import device_description
from stylekd_jax.config import base_config
from stylekd_jax.networks.generator import init_generator
from stylekd_jax.train import build, init_state, jit_train_step, lazy_phases

# VGG16 conv widths per stage (LPIPS uses all 13 convs of `features`).
VGG16 = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


def vgg16_macs(size: int) -> int:
    total, c_in = 0, 3
    for stage, widths in enumerate(VGG16):
        pixels = (size // 2 ** stage) ** 2
        for c_out in widths:
            total += 9 * c_in * c_out * pixels
            c_in = c_out
    return total


def step_flops(config, teacher: GeneratorConfig, student: GeneratorConfig, d: DiscriminatorConfig) -> dict:
    b = config.batch_size
    lpips_size = min(config.loss.lpips_size, teacher.resolution)
    t, s, dm, v = generator_macs(teacher), generator_macs(student), discriminator_macs(d), vgg16_macs(lpips_size)
    macs = {
        "teacher fwd (2B)": 2 * b * t,
        "student fwd+bwd (2B) + fwd (B, D step)": 3 * 2 * b * s + b * s,
        "discriminator": 3 * 2 * b * dm + 2 * b * dm,
        "LPIPS VGG16": (2 * b * v + b * v) if config.loss.lpips > 0 else 0,
        "R1 / 16 + path length / 4": 4 * b * dm / config.r1_interval + 4 * (b // 2) * s / config.pl_interval,
    }
    return {k: 2.0 * m for k, m in macs.items()}


class DistillationStep:
    """The trainer's jitted step for `config` (`train.build` on its teacher), compiled once per
    kind of step (plain, +path length, +R1 +path length), and its FLOPs by term (`step_flops`).
    `benchmarks.accelerator` reuses it for its timings and its 100-step run."""

    def __init__(self, config):
        self.config = config
        self.setup, self.g_vars, self.d_init, consts = build(config)
        self.mesh = sharding.make_mesh()
        self.state_sharding = sharding.param_sharding(self.mesh, jax.eval_shape(self.fresh_state))
        self.consts = jax.device_put(consts, sharding.replicated(self.mesh))
        self.step_fn = jit_train_step(self.setup, self.mesh, self.state_sharding)
        self.flops = step_flops(config, self.setup.teacher_cfg, self.setup.g_cfg, self.setup.d_cfg)
        self.compiled, self.compile_s, self.temp_bytes = {}, {}, {}

    def fresh_state(self):
        return init_state(self.setup, self.g_vars, self.d_init)

    def device_state(self):
        return jax.jit(self.fresh_state, out_shardings=self.state_sharding)()

    def compile_all(self, state, real) -> None:
        """Compiles each kind of step the schedule has; records seconds and temp memory per kind."""
        for kind in sorted({lazy_phases(self.config, i) for i in range(self.config.r1_interval)}):
            start = time.perf_counter()
            compiled = self.step_fn.lower(state, real, self.consts, *kind).compile()
            name = "plain" if kind == (False, False) else "+".join(
                n for n, on in zip(("R1", "PL"), kind) if on)
            self.compile_s[name] = round(time.perf_counter() - start, 2)
            memory = compiled.memory_analysis()
            self.temp_bytes[name] = int(memory.temp_size_in_bytes) if memory is not None else None
            self.compiled[kind] = compiled

    def run(self, state, real_batches, first: int, count: int):
        """`count` steps from step `first`; returns (state, [metrics of each step])."""
        metrics = []
        for i in range(first, first + count):
            state, m = self.compiled[lazy_phases(self.config, i)](state, next(real_batches), self.consts)
            metrics.append(m)
        jax.block_until_ready(state)
        return state, metrics

    def seconds_per_step(self, real, periods: int) -> float:
        """Compiles every kind of step, warms up with one R1 period, then times `periods` more
        on the batch `real` (whole periods: the lazy phases come at their real rates)."""
        state = self.device_state()
        self.compile_all(state, real)
        period = self.config.r1_interval
        state, _ = self.run(state, itertools.repeat(real), 0, period)
        start = time.perf_counter()
        state, _ = self.run(state, itertools.repeat(real), period, periods * period)
        return (time.perf_counter() - start) / (periods * period)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--keep-ratio", type=float, default=0.3)
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--steps", type=int, default=32,
                        help="timed steps after compilation and warm-up (rounded up to whole R1 periods)")
    parser.add_argument("--lpips", type=float, default=3.0,
                        help="LPIPS loss weight; 0 leaves LPIPS out (to compare with a step without it)")
    args = parser.parse_args(argv)

    teacher = GeneratorConfig.teacher(args.resolution)
    with tempfile.TemporaryDirectory() as tmp:
        teacher_dir = os.path.join(tmp, "teacher")
        checkpoint.save(teacher_dir, {"g_ema": init_generator(teacher, jax.random.PRNGKey(0))}, teacher,
                        DiscriminatorConfig.teacher(args.resolution))
        config = base_config()
        config.update_from_flattened_dict({
            "teacher": teacher_dir, "data.source": "folder:unused", "batch_size": args.batch,
            "student.keep_ratio": args.keep_ratio, "dtype": args.dtype, "loss.lpips": args.lpips,
            "loss.ld_layers": tuple(i for i in (2, 3, 4, 5) if 4 * 2 ** i <= args.resolution)})
        step = DistillationStep(config)
    real = sharding.global_batch(step.mesh, np.random.RandomState(0).randint(
        0, 256, (args.batch, args.resolution, args.resolution, 3), np.uint8))

    print(f"device: {device_description()}")
    periods = max(1, -(-args.steps // config.r1_interval))
    start = time.perf_counter()
    seconds = step.seconds_per_step(real, periods)
    print(f"compile, warm-up ({config.r1_interval} steps) and {periods * config.r1_interval} timed steps: "
          f"{time.perf_counter() - start:.1f} s; compile per kind of step (s): {step.compile_s}")

    total = sum(step.flops.values())
    peak = measured_peak_flops(jnp.dtype(args.dtype))
    print(f"teacher {args.resolution}px config-f -> student {list(step.setup.g_cfg.channels)}, "
          f"batch {args.batch}, {args.dtype}, LPIPS weight {args.lpips}")
    for name, f in step.flops.items():
        print(f"  {name:42s} {f / 1e9:10.1f} GFLOP/step")
    print(f"  {'total':42s} {total / 1e9:10.1f} GFLOP/step")
    print(f"steps/s {1 / seconds:.3f}   images/s {args.batch / seconds:.2f}   "
          f"{total / seconds / 1e9:.1f} GFLOP/s = {total / seconds / peak:.1%} of the measured peak "
          f"({peak / 1e9:.0f} GFLOP/s)")


if __name__ == "__main__":
    main()
