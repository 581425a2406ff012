"""Export a generator checkpoint to ONNX, TFLite, SavedModel and PyTorch, verifying each file.

    python -m stylekd_jax.export --checkpoint runs/NAME/student --format onnx,tflite,savedmodel,torch --out DIR
    python -m stylekd_jax.export --checkpoint teacher/ --format tflite --precision float16,int8 --batch 1 \\
        --trunc 0.7 --layout nchw --dtype uint8 --out DIR

Every file is loaded back in its own runtime (onnxruntime, TensorFlow, the TFLite interpreter,
the project's torch-free reader and converter) and run on the z of fixed seeds; the command
prints the largest difference from the JAX generator and fails (exit 2, one `error:` line)
when an export does not reproduce it (see `signature` for the bounds). A file reaches --out
only once it verified (it is written and checked in a hidden `.partial-*` folder there, then
renamed), so a failed or interrupted export never leaves a broken file where a good one was.
"""

import argparse
import os
import re
import shutil
import socket
import sys
import tempfile
import time

import numpy as np

from stylekd_jax import checkpoint
from stylekd_jax.cli import ArgumentParser, positive_int
from stylekd_jax.export.signature import (DTYPES, LAYOUTS, NOISES, SIGNATURES, ExportError,
                                          Signature, compare, example_inputs, export_fn,
                                          input_specs, noise_layers, reference_images)
from stylekd_jax.generate import parse_seeds
from stylekd_jax.outputs import OutputPathError, writable_dir

FORMATS = ("onnx", "tflite", "savedmodel", "torch")
PRECISIONS = ("float32", "float16", "int8")
DEFAULT_PRECISIONS = {"tflite": ("float32", "float16", "int8")}   # others: float32
ONNX_FILE, SAVEDMODEL_DIR = "model.onnx", "savedmodel"


def tflite_name(precision: str) -> str:
    return "model.tflite" if precision == "float32" else f"model_{precision}.tflite"


def _parse_list(text: str, allowed, what: str) -> list[str]:
    items = [t.strip().lower() for t in text.split(",") if t.strip()]
    bad = [t for t in items if t not in allowed]
    if bad or not items:
        raise ExportError(f"unknown {what} {', '.join(bad) or repr(text)}; choose from {', '.join(allowed)}")
    return list(dict.fromkeys(items))


def _seeds(text: str) -> list[int]:
    try:
        return parse_seeds(text)
    except argparse.ArgumentTypeError as e:
        raise ExportError(f"--seeds: {e}") from None


def _size(path: str) -> int:
    return checkpoint.folder_bytes(path) if os.path.isdir(path) else os.path.getsize(path)


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _step(label: str, fn, *args):
    """Run one long step, printing what it is and how long it took."""
    print(f"  {label} ...", end="", flush=True)
    start = time.perf_counter()
    try:
        result = fn(*args)
    except ExportError:
        print()
        raise
    except Exception as e:   # a converter or runtime failure: one line naming it
        print()
        detail = " ".join(str(e).split())[:300] or type(e).__name__
        raise ExportError(f"{label} failed: {type(e).__name__}: {detail}") from None
    print(f" {time.perf_counter() - start:.1f} s", flush=True)
    return result


STAGING_PREFIX = ".partial-"


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # another user's process
        return True
    return True


def _host() -> str:
    """This machine's name as a staging folder's name holds it (`.partial-PID@HOST-*`: who may
    clean it up)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())


def _clear_abandoned_staging(out_dir: str) -> None:
    """Remove the staging folders of killed exports (`.partial-PID@HOST-*` of this host whose
    process is gone), so repeated interrupted exports do not pile up hidden copies of the
    model. Another host's folder is left alone: its process id means nothing here."""
    host = _host()
    for name in os.listdir(out_dir):
        if not name.startswith(STAGING_PREFIX):
            continue
        pid, _, rest = name[len(STAGING_PREFIX):].partition("@")
        if pid.isdigit() and rest.rsplit("-", 1)[0] == host and not _running(int(pid)):
            shutil.rmtree(os.path.join(out_dir, name), ignore_errors=True)


def _publish(staged: str, out_dir: str) -> str:
    """Move a verified file (or SavedModel folder) from the staging folder to its place in
    out_dir with a rename: the path holds the previous export or this one, never part of one."""
    final = os.path.join(out_dir, os.path.basename(staged))
    if os.path.isdir(staged) and os.path.exists(final):
        os.replace(final, staged + ".previous")   # inside the staging folder, removed with it
    os.replace(staged, final)
    return final


def export_all(cfg, variables, sig: Signature, formats, precisions, out_dir: str,
               batch: int = 1, seeds=(0, 1, 2, 3)) -> list[tuple[str, str]]:
    """Write and verify every requested file; returns [(path, verification line)].

    Each file is written into a hidden staging folder in out_dir (`.partial-PID@HOST-*`), run back,
    and only then renamed into out_dir: an export that fails verification, or is interrupted,
    never leaves a file (nor replaces an earlier good one) at a path a user would load.
    """
    from stylekd_jax.export import onnx_format, tf_formats, torch_formats
    os.makedirs(out_dir, exist_ok=True)
    specs = input_specs(cfg, sig)
    fn = export_fn(cfg, variables, sig)
    seeds = list(seeds)
    if "tflite" in formats and len(seeds) % batch:
        seeds += list(range(max(seeds) + 1, max(seeds) + 1 + batch - len(seeds) % batch))
    inputs = example_inputs(cfg, variables, sig, seeds)
    want = reference_images(cfg, variables, sig, seeds)
    done = []
    _clear_abandoned_staging(out_dir)
    staging = tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}@{_host()}-", dir=out_dir)

    def verified(staged, what, got, precision="float32"):
        """Compare, then publish; a failure names the path that was left untouched."""
        try:
            line = compare(what, got, want, sig, precision)
        except ExportError as e:
            raise ExportError(f"{e} ({os.path.join(out_dir, os.path.basename(staged))} not "
                              "written)") from None
        path = _publish(staged, out_dir)
        print(f"  {line}", flush=True)
        done.append((path, line))

    try:
        for fmt in formats:
            print(f"{fmt}:", flush=True)
            if fmt == "onnx":
                staged = os.path.join(staging, ONNX_FILE)
                _step("converting with jax2onnx", onnx_format.export, fn, specs, staged)
                got = _step("running in onnxruntime", onnx_format.run, staged, inputs)
                verified(staged, f"onnx float32 (dynamic batch, {len(seeds)} seeds)", got)
            elif fmt == "savedmodel":
                staged = os.path.join(staging, SAVEDMODEL_DIR)
                _step("converting with jax2tf", tf_formats.export_savedmodel, fn, specs, staged)
                got = _step("running in TensorFlow", tf_formats.run_savedmodel, staged, specs, inputs)
                verified(staged, f"savedmodel float32 (dynamic batch, {len(seeds)} seeds)", got)
            elif fmt == "tflite":
                for precision in precisions.get("tflite", DEFAULT_PRECISIONS["tflite"]):
                    staged = os.path.join(staging, tflite_name(precision))
                    _step(f"converting {precision} (batch {batch})", tf_formats.export_tflite, fn,
                          specs, staged, precision, batch)
                    got = _step("running in the TFLite interpreter", tf_formats.run_tflite, staged,
                                specs, inputs)
                    verified(staged, f"tflite {precision} (batch {batch}, {len(seeds)} seeds)", got,
                             precision)
            elif fmt == "torch":
                staged_paths = _step("writing torch files", torch_formats.export, cfg, variables, staging)
                for staged in staged_paths:
                    name = os.path.basename(staged)
                    if staged.endswith(".json"):   # last: after the state dict it describes verified
                        done.append((_publish(staged, out_dir), "constructor kwargs of the NVlabs Generator"))
                        continue
                    back_cfg, back = _step(f"reading {name} back with the converter",
                                           torch_formats.read_back, cfg, staged)
                    if back_cfg.channels != cfg.channels or back_cfg.kernel_size != cfg.kernel_size:
                        raise ExportError(f"{name} reads back as channels {list(back_cfg.channels)} "
                                          f"kernel {back_cfg.kernel_size}, expected {list(cfg.channels)} "
                                          f"kernel {cfg.kernel_size} ({os.path.join(out_dir, name)} "
                                          "not written)")
                    verified(staged, f"{name} read back ({len(seeds)} seeds)",
                             reference_images(back_cfg, back, sig, seeds))
                if torch_formats.rosinality_unsupported(cfg):
                    print(f"  note: no {torch_formats.ROSINALITY_FILE}: "
                          f"{torch_formats.rosinality_unsupported(cfg)}")
                note = torch_formats.nvlabs_kwargs(cfg).get("note")
                if note:
                    print(f"  note: {note}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return done


def main(argv=None) -> int:
    parser = ArgumentParser(prog="python -m stylekd_jax.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="checkpoint directory (teacher or student)")
    parser.add_argument("--format", required=True, help=f"comma-separated: {', '.join(FORMATS)}")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--signature", default="z", help="z (mapping + synthesis) or ws (synthesis only)")
    parser.add_argument("--trunc", default="1", help="truncation psi baked into a z export (default 1: "
                        "none), or 'input' to make psi a scalar input")
    parser.add_argument("--trunc-cutoff", type=int, default=None, help="truncate only the first N ws")
    parser.add_argument("--noise", default="const",
                        help="StyleGAN2 noise: const (the checkpoint's maps, baked in; default) or input "
                             "(one [N, res, res] input per layer, noise_b4_conv1, noise_b8_conv0, ...)")
    parser.add_argument("--layout", default="nhwc", help="image layout: nhwc or nchw")
    parser.add_argument("--dtype", default="float", help="image type: float (raw, about [-1, 1]) or uint8")
    parser.add_argument("--precision", default=None,
                        help="float32, float16, int8 (comma-separated; float16 and int8 are TFLite "
                             "only; default: all three for TFLite, float32 for the rest)")
    parser.add_argument("--batch", type=positive_int, default=1, help="fixed batch size of TFLite files (default 1); "
                        "ONNX and SavedModel take any batch")
    parser.add_argument("--seeds", default="0-3", help="z seeds the verification runs (default 0-3)")
    parser.add_argument("--network", default=None, help="which stored generator: g_ema (default) or g")
    args = parser.parse_args(argv)
    try:
        return _run(args)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _run(args) -> int:
    from stylekd_jax import checkpoint
    formats = _parse_list(args.format, FORMATS, "format")
    signature = _parse_list(args.signature, SIGNATURES, "signature")[0]
    layout = _parse_list(args.layout, LAYOUTS, "layout")[0]
    dtype = _parse_list(args.dtype, DTYPES, "dtype")[0]
    noise = _parse_list(args.noise, NOISES, "noise")[0]
    precisions = {}
    if args.precision is not None:
        wanted = _parse_list(args.precision, PRECISIONS, "precision")
        for fmt in formats:
            can = DEFAULT_PRECISIONS.get(fmt, ("float32",))
            cannot = [p for p in wanted if p not in can]
            if cannot:
                raise ExportError(f"{fmt} cannot be exported as {', '.join(cannot)} (float16 and "
                                  f"int8 are TFLite-only); export {fmt} separately with --precision float32")
            precisions[fmt] = wanted
    psi: float | None
    if args.trunc.strip().lower() == "input":
        psi = None
    else:
        try:
            psi = float(args.trunc)
        except ValueError:
            raise ExportError(f"--trunc must be a number or 'input', got {args.trunc!r}") from None
        if not np.isfinite(psi):
            raise ExportError(f"--trunc must be finite, got {args.trunc}")
    if signature == "ws" and (psi != 1.0 or args.trunc_cutoff is not None):
        raise ExportError("--trunc and --trunc-cutoff apply to the z signature; a ws export takes "
                          "ws that are already truncated")
    seeds = _seeds(args.seeds)
    try:   # before the networks load and compile
        writable_dir(args.out, "--out")
    except OutputPathError as e:
        raise ExportError(str(e)) from None
    try:
        prefer = (args.network,) if args.network else ("g_ema", "g")
        cfg, variables = checkpoint.load_generator(args.checkpoint, prefer=prefer)
    except (FileNotFoundError, KeyError, ValueError) as e:
        raise ExportError(str(e.args[0]) if e.args else str(e)) from None
    if args.trunc_cutoff is not None and not 0 <= args.trunc_cutoff <= cfg.num_ws:
        raise ExportError(f"--trunc-cutoff must be in [0, {cfg.num_ws}], got {args.trunc_cutoff}")
    sig = Signature(signature, psi, args.trunc_cutoff, layout, dtype, noise)
    if sig.noise == "input":
        noise_layers(cfg)     # a StyleGAN3 generator has none: one line, before any work
    family = getattr(cfg, "family", "stylegan2")
    print(f"{family} {cfg.resolution}px generator from {args.checkpoint}: {sig.describe()}")
    start = time.perf_counter()
    done = export_all(cfg, variables, sig, formats, precisions, args.out, args.batch, seeds)
    print(f"wrote and verified in {time.perf_counter() - start:.0f} s:")
    for path, _ in done:
        print(f"  {path}  {_mb(_size(path))}")
    return 0
