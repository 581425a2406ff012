"""Per-device memory, FLOPs and collective bytes of the real training step, compiled without a device.

    python -m stylekd_jax.benchmarks.plan                     # the paper's configs, meshes 8, 4x2, 32, bf16
    python -m stylekd_jax.benchmarks.plan --configs sg2-256 --meshes 8 --dtype float32
    python -m stylekd_jax.benchmarks.plan --configs tiny --meshes 2,1x2 --batches 1,2   # seconds

Why: accelerator time is scarce, so what fits where and how fast it could run is worked out
from compiled programs first. The trainer's own jitted step (`train.jit_train_step`: D step,
G step with L1 + LPIPS + LD-KL + GAN, the R1 and path-length phases) is lowered and compiled
for N fake CPU devices (`--xla_force_host_platform_device_count`, set by re-running this
module when the process has too few devices), with the state, batch and constants given as
shapes only: nothing is allocated or run. Per mesh it prints, per device:
  - bytes from `compiled.memory_analysis()`: arguments (state, batch, teacher, LPIPS...),
    outputs, temporaries; peak = arguments + outputs - aliased (the donated state) + temporaries;
  - FLOPs from `compiled.cost_analysis()` beside the architecture count (benchmarks.distill);
  - collective bytes: the operand sizes of all-reduce / all-gather / reduce-scatter /
    all-to-all / collective-permute in the compiled HLO.
Only the step with R1 and path length (the largest kind) is compiled: at two per-device
batches on the first mesh and at the first batch on the other meshes; bytes are taken to
grow linearly per sample (extrapolated from the two batches, the slope shared by meshes).
FLOPs of an average step (R1 every 16 steps, path length every 4) are the architecture
count scaled by compiled / architecture FLOPs of the compiled step. XLA:CPU's buffer assignment and fusion differ from a GPU's or TPU's:
the numbers are a plan (within tens of percent), not a measurement; `benchmarks/accelerator.sh`
measures.
"""

import argparse
import json
import os
import re
import sys
import tempfile
import time

from stylekd_jax.benchmarks.common import SPEC_PEAKS

XLA_DEVICES_FLAG = "--xla_force_host_platform_device_count"


def _ensure_devices(count: int, argv) -> None:
    """Re-run this module with `count` fake CPU devices unless the process already has them."""
    import jax
    if jax.device_count() >= count:
        return
    if XLA_DEVICES_FLAG in os.environ.get("XLA_FLAGS", ""):
        raise SystemExit(f"error: {jax.device_count()} devices, {count} needed; XLA_FLAGS already "
                         f"sets {XLA_DEVICES_FLAG}: raise it")
    env = dict(os.environ, XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} {XLA_DEVICES_FLAG}={count}".strip(),
               JAX_PLATFORMS="cpu")
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, "-m", "stylekd_jax.benchmarks.plan", *argv], env)


# Per chip: bf16 dense peak FLOP/s (SPEC_PEAKS, by device kind) and GiB of memory.
CHIPS = {name: (SPEC_PEAKS[kind], gib)
         for name, kind, gib in (("TPU v5e", "TPU v5e", 16), ("TPU v4", "TPU v4", 32), ("H100 SXM", "H100", 80))}
MFU = 0.4
COLLECTIVES = ("all-reduce", "all-gather", "reduce-scatter", "all-to-all", "collective-permute")
_DTYPE_BYTES = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4,
                "u32": 4, "f32": 4, "s64": 8, "u64": 8, "f64": 8}
_SHAPE = re.compile(r"\b(pred|[sufb]f?\d+)\[([\d,]*)\]")


def _shape_bytes(text: str) -> int:
    total = 0
    for dtype, dims in _SHAPE.findall(text):
        if dtype in _DTYPE_BYTES:
            n = 1
            for d in filter(None, dims.split(",")):
                n *= int(d)
            total += n * _DTYPE_BYTES[dtype]
    return total


def collective_bytes(hlo_text: str) -> dict[str, int]:
    """{collective: operand bytes summed over its instructions} of a compiled HLO module.

    Operands are read from the instruction's argument list (`all-reduce(f32[..] %x, ...)`);
    `-start` forms are counted, `-done` forms are not (the same transfer).
    """
    out = {name: 0 for name in COLLECTIVES}
    for line in hlo_text.splitlines():
        for name in COLLECTIVES:
            m = re.search(rf"\s{name}(-start)?\((.*?)\)(,|$)", line)
            if m:
                operands = _shape_bytes(m.group(2))
                if not operands:   # operands printed without shapes: the result's shape
                    operands = _shape_bytes(line.split("=", 1)[1].split(name, 1)[0])
                out[name] += operands
                break
    return out


def compile_step(setup, g_vars, d_init, consts, mesh, batch: int, r1: bool, pl: bool):
    """The compiled step of kind (r1, pl) for global `batch` on `mesh`, from shapes only."""
    import jax
    import jax.numpy as jnp
    from stylekd_jax import sharding
    from stylekd_jax.train import init_state, jit_train_step
    config = setup.config.copy_and_resolve_references()
    config.batch_size = batch
    setup = setup._replace(config=config)
    abstract = jax.eval_shape(lambda: init_state(setup, g_vars, d_init))
    state_sharding = sharding.param_sharding(mesh, abstract)
    spec = lambda a, sh: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=sh)  # noqa: E731
    state = jax.tree_util.tree_map(spec, abstract, state_sharding)
    res = setup.d_cfg.resolution
    real = jax.ShapeDtypeStruct((batch, res, res, 3), jnp.uint8, sharding=sharding.batch_sharding(mesh))
    rep = sharding.replicated(mesh)
    consts = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.asarray(a).dtype,
                                                                   sharding=rep), consts)
    return jit_train_step(setup, mesh, state_sharding).lower(state, real, consts, r1, pl).compile()


def memory(compiled) -> dict[str, int]:
    m = compiled.memory_analysis()
    out = {"arguments": m.argument_size_in_bytes, "outputs": m.output_size_in_bytes,
           "aliased": m.alias_size_in_bytes, "temporaries": m.temp_size_in_bytes}
    out["peak"] = out["arguments"] + out["outputs"] - out["aliased"] + out["temporaries"]
    return out


def flops(compiled) -> float:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", 0.0))


def parse_meshes(text: str) -> list[tuple[int, int]]:
    """'8,4x2,32' -> [(8, 1), (4, 2), (32, 1)] (data x model)."""
    meshes = []
    for part in text.split(","):
        data, _, model = part.partition("x")
        meshes.append((int(data), int(model or 1)))
    return meshes


def plan_config(name: str, meshes, batches, dtype: str, log=print) -> dict:
    """Compile config `name` (setups.PAPER) on `meshes` at per-device `batches`; returns the
    numbers as a dict (per device; bytes, FLOPs)."""
    import jax
    from stylekd_jax import sharding
    from stylekd_jax.architecture import count_params
    from stylekd_jax.benchmarks.distill import step_flops
    from stylekd_jax.benchmarks.setups import distill_config
    from stylekd_jax.train import build, init_state
    with tempfile.TemporaryDirectory() as tmp:
        config = distill_config(name, tmp, batch=8, dtype=dtype, values=False)
        setup, g_vars, d_init, consts = build(config)
    state = jax.eval_shape(lambda: init_state(setup, g_vars, d_init))
    result = {"config": name, "dtype": dtype, "student": list(setup.g_cfg.channels),
              "resolution": setup.d_cfg.resolution, "meshes": [],
              "trained_params": {"g": count_params(state.g["params"]), "d": count_params(state.d["params"])}}
    full = (True, config.pl_weight > 0)   # the largest kind of step: R1 and path length
    first = True
    slope = None
    for data, model in meshes:
        mesh = sharding.make_mesh(data, model)
        entry = {"mesh": f"data {data} x model {model}", "devices": data * model, "by_batch": {}}
        for b in (batches if first else batches[:1]):
            start = time.perf_counter()
            compiled = compile_step(setup, g_vars, d_init, consts, mesh, b * data, *full)
            seconds = time.perf_counter() - start
            text = compiled.as_text()
            entry["by_batch"][b] = {"memory": memory(compiled), "flops": flops(compiled),
                                    "collective_bytes": collective_bytes(text), "compile_s": seconds}
            log(f"  {name} {entry['mesh']} per-device batch {b}: compiled in {seconds:.0f} s, "
                f"peak {entry['by_batch'][b]['memory']['peak'] / 2 ** 30:.2f} GiB")
        if first:
            b0, b1 = batches[0], batches[-1]
            if b1 > b0:
                slope = {k: (entry["by_batch"][b1]["memory"][k] - entry["by_batch"][b0]["memory"][k]) / (b1 - b0)
                         for k in ("temporaries", "peak")}
            # Compiled FLOPs of this (R1 + PL) step beside the architecture count of the same
            # step; the amortised count (R1 every r1_interval steps, PL every pl_interval)
            # scaled by their ratio predicts the FLOPs of an average step.
            every = config.copy_and_resolve_references()
            every.batch_size, every.r1_interval, every.pl_interval = b0 * data, 1, 1
            arch_full = sum(step_flops(every, setup.teacher_cfg, setup.g_cfg, setup.d_cfg).values())
            every.r1_interval, every.pl_interval = config.r1_interval, config.pl_interval
            arch_avg = sum(step_flops(every, setup.teacher_cfg, setup.g_cfg, setup.d_cfg).values())
            compiled_full = entry["by_batch"][b0]["flops"] * data * model   # all devices
            result["flops_full_step"] = {"compiled": compiled_full, "architecture": arch_full,
                                         "global_batch": b0 * data}
            result["architecture_flops_per_image"] = arch_avg / (b0 * data)
            result["compiled_flops_per_image"] = arch_avg * compiled_full / arch_full / (b0 * data)
            first = False
        entry["peak_per_sample"] = slope["peak"] if slope else None
        result["meshes"].append(entry)
    return result


def largest_batch(entry: dict, gib: float) -> int | None:
    """The largest per-device batch whose extrapolated peak fits `gib` (None: unknown)."""
    (b0, m0), = list(entry["by_batch"].items())[:1]
    slope = entry["peak_per_sample"]
    if not slope or slope <= 0:
        return None
    fixed = m0["memory"]["peak"] - slope * b0
    return max(int((gib * 2 ** 30 - fixed) // slope), 0)


def markdown(results: list[dict]) -> str:
    """The README table: largest per-device batch per chip and predicted s/kimg at 40% MFU."""
    lines = ["| config | mesh | peak GiB/device (batch b) | GiB per extra sample | "
             + " | ".join(f"max batch {c} ({g} GiB)" for c, (_, g) in CHIPS.items())
             + " | GFLOP/image (compiled / architecture) | "
             + " | ".join(f"s/kimg, 1 {c} at 40%" for c in CHIPS) + " |",
             "|" + "---|" * (5 + 2 * len(CHIPS))]
    for r in results:
        per_image = r["compiled_flops_per_image"]
        for e in r["meshes"]:
            b0, m0 = next(iter(e["by_batch"].items()))
            fits = [largest_batch(e, g) for _, g in CHIPS.values()]
            skimg = [1000 * per_image / (peak * MFU) for peak, _ in CHIPS.values()]
            slope = e["peak_per_sample"]
            lines.append(
                f"| {r['config']} {r['dtype']} | {e['mesh']} | {m0['memory']['peak'] / 2 ** 30:.2f} ({b0}) | "
                f"{'?' if slope is None else f'{slope / 2 ** 30:.3f}'} | "
                + " | ".join("?" if f is None else str(f) for f in fits)
                + f" | {per_image / 1e9:.0f} / {r['architecture_flops_per_image'] / 1e9:.0f} | "
                + " | ".join(f"{s:.2f}" for s in skimg) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="sg2-256,sg2-1024,sg3t-256",
                        help="from benchmarks.setups.PAPER: sg2-256, sg2-1024, sg3t-256, tiny")
    parser.add_argument("--meshes", default="8,4x2,32", help="data[xmodel], comma-separated")
    parser.add_argument("--batches", default="1,2",
                        help="per-device batches compiled on the first mesh (two: the per-sample slope)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], default="bfloat16")
    parser.add_argument("--json", help="also write the numbers here")
    args = parser.parse_args(argv)
    meshes = parse_meshes(args.meshes)
    batches = [int(b) for b in args.batches.split(",")]
    _ensure_devices(max(d * m for d, m in meshes), argv)
    from stylekd_jax.sharding import device_description
    print(f"devices: {device_description()} (compile only)", flush=True)
    start = time.perf_counter()
    results = []
    for name in args.configs.split(","):
        r = plan_config(name, meshes, batches, args.dtype, log=lambda s: print(s, flush=True))
        results.append(r)
        if args.json:   # after each config: a long run keeps what it finished
            with open(args.json, "w") as f:
                json.dump(results, f, indent=1, default=str)
        full = r["flops_full_step"]
        params = r["trained_params"]
        print(f"{name}: student {r['student']} ({params['g'] / 1e6:.2f}M trained parameters, D "
              f"{params['d'] / 1e6:.2f}M), {r['dtype']}; step with R1 + PL, global batch "
              f"{full['global_batch']}: compiled {full['compiled'] / 1e9:.1f} GFLOP, architecture count "
              f"{full['architecture'] / 1e9:.1f}; average step per image: "
              f"{r['compiled_flops_per_image'] / 1e9:.1f} GFLOP (architecture {r['architecture_flops_per_image'] / 1e9:.1f})")
        for e in r["meshes"]:
            for b, m in e["by_batch"].items():
                mem = m["memory"]
                coll = ", ".join(f"{k} {v / 2 ** 20:.1f} MiB" for k, v in m["collective_bytes"].items() if v)
                print(f"  {e['mesh']:18s} batch/device {b}: arguments {mem['arguments'] / 2 ** 30:.2f} GiB, "
                      f"outputs {mem['outputs'] / 2 ** 30:.2f}, aliased {mem['aliased'] / 2 ** 30:.2f}, "
                      f"temporaries {mem['temporaries'] / 2 ** 30:.2f}, peak {mem['peak'] / 2 ** 30:.2f} GiB; "
                      f"{m['flops'] / 1e9:.1f} GFLOP/device/step; collectives/device/step: {coll or 'none'}")
    print()
    print(markdown(results))
    print(f"\nplan: {time.perf_counter() - start:.0f} s in all; peak FLOP/s assumed per chip (bf16 dense): "
          + ", ".join(f"{c} {p / 1e12:.0f} T" for c, (p, _) in CHIPS.items()))


if __name__ == "__main__":
    main()
