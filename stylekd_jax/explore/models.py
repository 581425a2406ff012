"""The student as two ONNX files for the browser: mapping (z -> w) and synthesis (ws -> image).

Why two files: the page computes truncation, style mixing and SeFa edits on w itself (the
formulas of `latents`, repeated in JavaScript), so it needs w between the two networks. Both
are written with the export package (jax2onnx through `export.portable`) and run in
onnxruntime against the JAX generator before the page is served, as `python -m
stylekd_jax.export` does. Conversion takes a while, so the files are cached in a folder named
by a fingerprint of the checkpoint's files; a second start with the same student is immediate.
"""

import hashlib
import os
import shutil

import jax
import numpy as np

from stylekd_jax.export import onnx_format
from stylekd_jax.export.cli import ONNX_FILE, export_all
from stylekd_jax.export.signature import InputSpec, Signature, compare
from stylekd_jax.generate import seed_latents
from stylekd_jax.networks import make_generator

MAPPING_FILE, SYNTHESIS_FILE = "mapping.onnx", "synthesis.onnx"
VERIFY_SEEDS = (0, 1, 2, 3)


def fingerprint(checkpoint_dir: str) -> str:
    """A short hash of the checkpoint's path and every file's name, size and modification time."""
    root = os.path.abspath(checkpoint_dir)
    digest = hashlib.sha256(root.encode())
    for folder, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(files):
            stat = os.stat(os.path.join(folder, name))
            digest.update(f"{os.path.relpath(os.path.join(folder, name), root)}:{stat.st_size}:"
                          f"{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def mapping_fn(cfg, variables):
    """z [N, z_dim] -> w [N, w_dim], without truncation (the page truncates)."""
    model = make_generator(cfg)
    variables = jax.tree_util.tree_map(np.asarray, variables)
    return lambda z: model.apply(variables, z, method="map")[:, 0]


def export_mapping(cfg, variables, path: str) -> str:
    """Write the mapping to `path` and check it in onnxruntime; returns the check's line."""
    fn = mapping_fn(cfg, variables)
    onnx_format.export(fn, [InputSpec("z", (None, cfg.z_dim))], path)
    z = seed_latents(VERIFY_SEEDS, cfg.z_dim)
    want = np.asarray(jax.jit(fn)(z))
    return compare(f"onnx mapping ({len(VERIFY_SEEDS)} seeds)", onnx_format.run(path, [z]), want, Signature())


def student_models(cfg, variables, checkpoint_dir: str, cache_root: str) -> str:
    """The folder holding MAPPING_FILE and SYNTHESIS_FILE for this checkpoint, exported if needed.

    Written into a temporary folder that is renamed when both files verified, so an
    interrupted export is never taken for a finished one."""
    folder = os.path.join(os.path.abspath(os.path.expanduser(cache_root)), fingerprint(checkpoint_dir))
    if all(os.path.isfile(os.path.join(folder, f)) for f in (MAPPING_FILE, SYNTHESIS_FILE)):
        print(f"ONNX models of {checkpoint_dir}: cached in {folder}", flush=True)
        return folder
    print(f"exporting {checkpoint_dir} to ONNX for the browser (once; cached in {folder})", flush=True)
    work = folder + ".partial"
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    print("mapping:", flush=True)
    print(f"  {export_mapping(cfg, variables, os.path.join(work, MAPPING_FILE))}", flush=True)
    export_all(cfg, variables, Signature("ws"), ["onnx"], {}, work, seeds=VERIFY_SEEDS)
    os.replace(os.path.join(work, ONNX_FILE), os.path.join(work, SYNTHESIS_FILE))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(work, folder)
    return folder
