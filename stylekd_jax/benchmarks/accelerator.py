"""One prepared accelerator run: generator and distillation speed, a 100-step distillation, one JSON.

    python -m stylekd_jax.benchmarks.accelerator --out OUTDIR/accelerator.json   # GPU/TPU, < 8 min on an H200
    python -m stylekd_jax.benchmarks.accelerator --out /tmp/a.json --smoke       # tiny sizes, any CPU

`benchmarks/accelerator.sh OUTDIR` installs the project on a bare host and runs this. Sections
(each on random weights; speed does not depend on their values):
  devices     jax.devices(), the backend, jax version; measured bf16 / f32 matmul peaks;
  generator   the 256px config-f teacher and the StyleKD student [154]*10+[77,77,39,39],
              float32 and bfloat16, batch 8 and 32: z -> image forward;
  distill     the trainer's step (configs/ffhq256_stylegan2.py without the face mask) at 256px,
              batch 16, float32 and bfloat16, every kind of step (plain, +path length,
              +R1 +path length) at its real rate over one R1 period;
  run         100 steps of that bf16 distillation from a fresh state (the compiled steps of
              `distill` reused), the teacher's own images as the real data; losses at the first
              and last steps, all finite; the student exported as a checkpoint.
Sections run in that order while a time budget (--budget-s) lasts; one that would start after
it is recorded as skipped, so the JSON is always written.

The JSON (one object; times in seconds, memory in bytes; null where not available):
  {"schema": 1, "smoke": bool, "started": ISO time, "seconds": total,
   "devices": {"backend", "count", "kind", "jax", "list": [str], "peak_flops": {"bfloat16",
               "float32": measured matmul FLOP/s}, "spec_peak_bf16": vendor FLOP/s or null},
   "generator": [{"model", "dtype", "batch", "compile_s", "images_per_s", "gflop_per_image",
                  "mfu": achieved / spec bf16 peak (null if unknown), "of_measured_peak"}],
   "distill": [{"resolution", "batch", "dtype", "remat", "student", "compile_s": {kind: s},
                "step_s", "images_per_s", "s_per_kimg", "gflop_per_step", "mfu",
                "of_measured_peak", "compiled_temp_bytes": {kind: bytes},
                "peak_bytes": device peak after the section}],
   "run": {"steps", "dtype", "batch", "seconds", "first": {loss: value}, "last": {...},
           "finite": bool, "export_s", "peak_bytes"},
   "memory": device.memory_stats() at the end (null on CPU),
   "skipped": [section names], "errors": {section: message}}
"s_per_kimg" is seconds per 1000 training images, the unit of NVlabs' and the paper's logs.
"mfu" = model FLOPs (architecture count, benchmarks.distill.step_flops) per second over the
chip's bf16 dense peak (SPEC_PEAKS) for both dtypes; "of_measured_peak" over the measured
matmul peak of the section's dtype.
"""

import argparse
import datetime
import json
import os
import tempfile
import time
import traceback

import jax
import jax.numpy as jnp
import numpy as np

from stylekd_jax.benchmarks.common import SPEC_PEAKS



def spec_peak() -> float | None:
    kind = jax.devices()[0].device_kind
    return next((v for k, v in SPEC_PEAKS.items() if k.lower() in kind.lower()), None)


def peak_bytes() -> int | None:
    stats = jax.devices()[0].memory_stats()
    return None if not stats else int(stats.get("peak_bytes_in_use", 0)) or None


def devices_section(smoke: bool) -> dict:
    from stylekd_jax.benchmarks.common import measured_peak_flops
    d = jax.devices()[0]
    out = {"backend": jax.default_backend(), "count": jax.device_count(), "kind": d.device_kind,
           "jax": jax.__version__, "list": [str(x) for x in jax.devices()],
           "spec_peak_bf16": spec_peak(), "peak_flops": {}}
    for dtype in ("bfloat16", "float32"):
        out["peak_flops"][dtype] = None if smoke else measured_peak_flops(jnp.dtype(dtype))
    return out


def generator_section(smoke: bool, peaks: dict) -> list[dict]:
    from stylekd_jax.architecture import GeneratorConfig, generator_macs
    from stylekd_jax.benchmarks.generator import MODELS, benchmark
    if smoke:
        models = {"tiny-16": GeneratorConfig.teacher(16, channel_base=256, channel_max=32)}
        batches = (2,)
    else:
        models = {k: MODELS[k] for k in ("teacher-256", "student-256")}
        batches = (8, 32)
    rows = []
    for name, cfg in models.items():
        for dtype in ("float32", "bfloat16"):
            for batch in batches:
                images_per_s, flops_per_s, compile_s = benchmark(
                    cfg, batch, jnp.dtype(dtype), min_seconds=0.2 if smoke else 2.0)
                rows.append(_speed({"model": name, "dtype": dtype, "batch": batch,
                                    "compile_s": round(compile_s, 2), "images_per_s": images_per_s,
                                    "gflop_per_image": 2.0 * generator_macs(cfg) / 1e9},
                                   flops_per_s, dtype, peaks))
    return rows


def _speed(row: dict, flops_per_s: float, dtype: str, peaks: dict) -> dict:
    spec = peaks.get("spec_peak_bf16")
    measured = peaks["peak_flops"].get(dtype)
    row["mfu"] = flops_per_s / spec if spec else None
    row["of_measured_peak"] = flops_per_s / measured if measured else None
    return row


def distill_section(workdir: str, smoke: bool, peaks: dict, keep: dict) -> list[dict]:
    from stylekd_jax import sharding
    from stylekd_jax.benchmarks.distill import DistillationStep
    from stylekd_jax.benchmarks.setups import distill_config
    name, batch = ("tiny", 4) if smoke else ("sg2-256", 16)
    rows = []
    # smoke: bf16 with remat only, and every step has R1 and PL: one program (a CPU minute to
    # compile). remat's memory saving shows only here: XLA:CPU drops the recomputation.
    kinds = [("bfloat16", True)] if smoke else [("float32", False), ("bfloat16", False), ("bfloat16", True)]
    for dtype, remat in kinds:
        extra = {"r1_interval": 1, "pl_interval": 1} if smoke else {}
        d = DistillationStep(distill_config(name, os.path.join(workdir, dtype + "_remat" * remat), batch,
                                            dtype, remat=remat, **extra))
        res = d.setup.d_cfg.resolution
        real = sharding.global_batch(d.mesh, np.random.RandomState(0).randint(
            0, 256, (batch, res, res, 3), np.uint8))
        step_s = d.seconds_per_step(real, periods=1 if smoke else 2)
        flops = sum(d.flops.values())
        rows.append(_speed({"config": name, "resolution": res, "batch": batch, "dtype": dtype,
                            "remat": remat, "student": list(d.setup.g_cfg.channels), "compile_s": d.compile_s,
                            "step_s": step_s, "images_per_s": batch / step_s,
                            "s_per_kimg": step_s * 1000 / batch, "gflop_per_step": flops / 1e9,
                            "compiled_temp_bytes": d.temp_bytes, "peak_bytes": peak_bytes()},
                           flops / step_s, dtype, peaks))
        keep.setdefault(dtype, d)   # the run section's step: without remat where it was measured
    return rows


def run_section(workdir: str, smoke: bool, d) -> dict:
    """`steps` distillation steps from a fresh state; the teacher's images are the real data."""
    from stylekd_jax import sharding
    from stylekd_jax.images import to_uint8
    from stylekd_jax.train import export_student
    steps = 4 if smoke else 100
    batch = d.config.batch_size
    teacher = jax.jit(lambda v, z: d.setup.T.apply(v, z, noise_mode="const"))
    z = np.random.RandomState(1).randn(4 * batch, d.setup.teacher_cfg.z_dim).astype(np.float32)
    pool = np.concatenate([to_uint8(teacher(d.consts["teacher"], z[i:i + batch]))
                           for i in range(0, len(z), batch)])

    def reals():
        for k in range(steps):
            j = (k * batch) % len(pool)
            yield sharding.global_batch(d.mesh, pool[j:j + batch])

    start = time.perf_counter()
    state, metrics = d.run(d.device_state(), reals(), 0, steps)
    seconds = time.perf_counter() - start
    host = jax.device_get(metrics)
    keys = [k for k in host[0] if k != "finite"]

    def value(v):   # NaN marks a lazy phase the step skipped: null in the JSON
        return float(v) if np.isfinite(v) else None
    start = time.perf_counter()
    export_student(os.path.join(workdir, "run"), d.setup, state)
    return {"steps": steps, "dtype": d.config.dtype, "batch": batch, "seconds": seconds,
            "s_per_kimg": seconds / steps * 1000 / batch,
            "first": {k: value(host[0][k]) for k in keys}, "last": {k: value(host[-1][k]) for k in keys},
            "finite": bool(all(bool(m["finite"]) for m in host)),
            "export_s": time.perf_counter() - start, "peak_bytes": peak_bytes()}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="the JSON file to write")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script, on any CPU")
    parser.add_argument("--budget-s", type=float, default=None,
                        help="no section starts after this many seconds (default 7 min; none with --smoke)")
    args = parser.parse_args(argv)
    budget = args.budget_s if args.budget_s is not None else (float("inf") if args.smoke else 420.0)
    begin = time.perf_counter()
    result = {"schema": 1, "smoke": args.smoke, "started": datetime.datetime.now().isoformat(timespec="seconds"),
              "devices": None, "generator": None, "distill": None, "run": None, "memory": None,
              "skipped": [], "errors": {}}
    keep: dict = {}
    with tempfile.TemporaryDirectory() as workdir:
        sections = [
            ("devices", lambda: devices_section(args.smoke)),
            ("generator", lambda: generator_section(args.smoke, result["devices"])),
            ("distill", lambda: distill_section(workdir, args.smoke, result["devices"], keep)),
            ("run", lambda: run_section(workdir, args.smoke, keep["bfloat16"])),
        ]
        for name, fn in sections:
            if time.perf_counter() - begin > budget or (name == "run" and "bfloat16" not in keep):
                result["skipped"].append(name)
                continue
            print(f"[{time.perf_counter() - begin:6.0f} s] {name} ...", flush=True)
            try:
                result[name] = fn()
            except Exception as e:   # the JSON is written whatever fails; the error is in it
                traceback.print_exc()
                result["errors"][name] = f"{type(e).__name__}: {e}"[:2000]
            print(json.dumps({name: result[name]}, default=str)[:3000], flush=True)
    stats = jax.devices()[0].memory_stats()
    result["memory"] = {k: int(v) for k, v in stats.items()} if stats else None
    result["seconds"] = time.perf_counter() - begin
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {args.out} ({result['seconds']:.0f} s; skipped {result['skipped'] or 'nothing'}; "
          f"errors in {sorted(result['errors']) or 'nothing'})")
    if result["errors"]:
        raise SystemExit(1)
    return result


if __name__ == "__main__":
    main()
