"""Deployment speed on this CPU: exported teacher and student in ONNX Runtime and TFLite, beside JAX.

    python -m stylekd_jax.benchmarks.deploy                    # 256px teacher and student, all runtimes
    python -m stylekd_jax.benchmarks.deploy --models student-256 --runtimes jax,onnx
    python -m stylekd_jax.benchmarks.deploy --list             # channels, params, MACs; no timing

For each model (random weights, see `benchmarks.generator.MODELS`; speed does not depend on
their values) it exports the z -> image function (psi 1, constant noise, NHWC float) the way
`python -m stylekd_jax.export` does, then times it:
  jax            jitted XLA:CPU, with `--xla-flags` (default
                 `--xla_cpu_experimental_ynn_fusion_type=dot`: XLA:CPU's experimental YNNPACK
                 kernels for dot fusions; a 256px student 187 -> 118 ms at batch 1, the same
                 images to 7e-6; --xla-flags='' for XLA's defaults)
  onnx float32   ONNX Runtime, CPU provider (one file, dynamic batch)
  tflite float32 / float16 / int8 (dynamic range)   TFLite interpreter with XNNPACK (one file per batch size)
Latency is the median of single calls at batch 1; images/s is 8 / the median call at batch 8.
Runtimes use `--threads` threads (default: all cores). Prints a markdown table (with the
files' sizes) and whether the student's batch-1 latency is under a third of the teacher's.
"""

import argparse
import os
import tempfile
import time

import jax
import numpy as np

from stylekd_jax.architecture import generator_macs
from stylekd_jax.benchmarks.generator import MODELS, describe
from stylekd_jax.benchmarks.setups import random_variables
from stylekd_jax.export.signature import Signature, export_fn, input_specs

RUNTIMES = ("jax", "onnx", "tflite")
YNN_DOTS = "--xla_cpu_experimental_ynn_fusion_type=dot"
TFLITE_PRECISIONS = ("float32", "float16", "int8")
BATCHES = (1, 8)


def time_calls(fn, min_seconds: float, min_iters: int = 3) -> float:
    """Median seconds of `fn()` after one warm-up call."""
    fn()
    times, start = [], time.perf_counter()
    while len(times) < min_iters or time.perf_counter() - start < min_seconds:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def benchmark_model(name: str, runtimes, threads: int, out_dir: str, min_seconds: float):
    """[(runtime, precision, latency_ms, images/s, file bytes or None)] for one model."""
    from stylekd_jax.export import onnx_format, tf_formats
    cfg = MODELS[name]
    variables = random_variables(cfg)
    sig = Signature()
    specs = input_specs(cfg, sig)
    fn = export_fn(cfg, variables, sig)
    z = {b: np.random.RandomState(b).randn(b, cfg.z_dim).astype(np.float32) for b in BATCHES}
    rows = []

    def measure(runtime, precision, call, size):
        seconds = {b: time_calls(lambda: call(b), min_seconds) for b in BATCHES}
        rows.append((runtime, precision, seconds[1] * 1e3, BATCHES[-1] / seconds[BATCHES[-1]], size))
        print(f"  {name} {runtime} {precision}: batch 1 {seconds[1] * 1e3:.0f} ms, "
              f"batch {BATCHES[-1]} {BATCHES[-1] / seconds[BATCHES[-1]]:.2f} images/s", flush=True)

    if "jax" in runtimes:
        jitted = jax.jit(fn)
        measure("jax", "float32", lambda b: jax.block_until_ready(jitted(z[b])), None)
    if "onnx" in runtimes:
        path = os.path.join(out_dir, f"{name}.onnx")
        start = time.perf_counter()
        onnx_format.export(fn, specs, path)
        print(f"  {name}: ONNX export {time.perf_counter() - start:.0f} s", flush=True)
        session = onnx_format.session(path, threads)
        measure("onnx", "float32", lambda b: onnx_format.run(session, [z[b]]), os.path.getsize(path))
    if "tflite" in runtimes:
        for precision in TFLITE_PRECISIONS:
            interpreters, size = {}, None
            start = time.perf_counter()
            for b in BATCHES:
                path = os.path.join(out_dir, f"{name}_{precision}_b{b}.tflite")
                tf_formats.export_tflite(fn, specs, path, precision, b)
                interpreters[b] = tf_formats.interpreter(path, threads)
                size = size or os.path.getsize(path)
            print(f"  {name}: TFLite {precision} export {time.perf_counter() - start:.0f} s", flush=True)
            measure("tflite", precision,
                    lambda b: tf_formats.run_tflite(interpreters[b], specs, [z[b]]), size)
    return rows


def table(results: dict) -> str:
    lines = ["| network | runtime | precision | batch-1 latency (ms) | images/s (batch 8) | file |",
             "|---|---|---|---:|---:|---:|"]
    for name, rows in results.items():
        gmacs = generator_macs(MODELS[name]) / 1e9
        for runtime, precision, latency, throughput, size in rows:
            file = f"{size / 1e6:.1f} MB" if size else "-"
            lines.append(f"| {name} ({gmacs:.1f} GMAC) | {runtime} | {precision} | {latency:.0f} | "
                         f"{throughput:.2f} | {file} |")
    return "\n".join(lines)


def goals(results: dict) -> list[str]:
    """The issue's two goals, checked on the measured numbers."""
    out = []
    teacher, student = results.get("teacher-256"), results.get("student-256")
    if teacher and student:
        t = {(r, p): lat for r, p, lat, _, _ in teacher}
        for runtime, precision, latency, _, _ in student:
            if (runtime, precision) in t:
                ratio = latency / t[runtime, precision]
                out.append(f"student/teacher batch-1 latency, {runtime} {precision}: {ratio:.2f} "
                           f"({'met' if ratio < 1 / 3 else 'NOT met'}: goal < 0.33)")
    for name, rows in results.items():
        best = min(lat for _, _, lat, _, _ in rows)
        for runtime, precision, latency, _, _ in rows:
            out.append(f"{name} {runtime} {precision}: {latency / best:.2f}x the best batch-1 latency "
                       f"({'met' if latency <= 1.5 * best else 'NOT met'}: goal <= 1.5x)")
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="teacher-256,student-256", help=f"from {sorted(MODELS)}")
    parser.add_argument("--runtimes", default=",".join(RUNTIMES), help=f"from {', '.join(RUNTIMES)}")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads per runtime")
    parser.add_argument("--min-seconds", type=float, default=3.0, help="time each setting at least this long")
    parser.add_argument("--keep", default=None, help="keep the exported files in this folder")
    parser.add_argument("--list", action="store_true", help="describe the models, time nothing")
    parser.add_argument("--xla-flags", default=YNN_DOTS,
                        help=f"added to XLA_FLAGS for the jax runtime (default {YNN_DOTS}; '' for none)")
    args = parser.parse_args(argv)
    # Read by XLA when the CPU backend starts, at the first computation below.
    os.environ["XLA_FLAGS"] = " ".join(f for f in (os.environ.get("XLA_FLAGS", ""), args.xla_flags) if f)
    names = args.models.split(",")
    for name in names:
        if name not in MODELS:
            parser.error(f"unknown model {name!r}; choose from {sorted(MODELS)}")
    runtimes = args.runtimes.split(",")
    if not set(runtimes) <= set(RUNTIMES):
        parser.error(f"unknown runtime in {args.runtimes!r}; choose from {', '.join(RUNTIMES)}")
    if args.list:
        for name in names:
            print(describe(name, MODELS[name]))
        return
    print(f"{os.cpu_count()} CPU cores, {args.threads} threads per runtime, jax {jax.__version__}, "
          f"XLA_FLAGS={os.environ['XLA_FLAGS']!r}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = args.keep or tmp
        os.makedirs(out_dir, exist_ok=True)
        for name in names:
            results[name] = benchmark_model(name, runtimes, args.threads, out_dir, args.min_seconds)
    print(table(results))
    for line in goals(results):
        print(line)


if __name__ == "__main__":
    main()
