#!/usr/bin/env bash
# The README's first command: sets up .venv and runs the demo on the embedded default.
# Until the distillation demo (configs/demo.py) lands, the demo builds the 256px StyleKD
# student architecture with random weights, generates a grid from seeds 0-15 and measures
# generator throughput on this machine.
source "$(dirname "$0")/env.sh"
workdir="${1:-runs/demo}"
python - "$workdir" <<'PY'
import sys, jax
from stylekd_jax import checkpoint
from stylekd_jax.benchmarks.generator import MODELS
from stylekd_jax.networks.generator import init_generator
cfg = MODELS["student-256"]
checkpoint.save(f"{sys.argv[1]}/student_random_init", {"g_ema": init_generator(cfg, jax.random.PRNGKey(0))},
                cfg, overwrite=True, source={"format": "random init (demo)"})
PY
python -m stylekd_jax.generate --checkpoint "$workdir/student_random_init" --seeds 0-15 --outdir "$workdir/images"
python -m stylekd_jax.benchmarks.generator --models teacher-256,student-256 --batch 8
