#!/usr/bin/env bash
# The README's first command: sets up .venv on first use, then runs configs/demo.py: writes the
# procedural dataset, distils the shipped StyleGAN2 teacher into a 3x smaller student with
# StyleKD, evaluates it and writes WORKDIR/report.md (see configs/demo.py for the time).
#   bash launch/demo.sh [WORKDIR] [--config.KEY=VALUE ...]      (WORKDIR defaults to runs/demo)
# Rerunning reuses what is done (dataset, teacher, checkpoints).
set -euo pipefail
workdir="runs/demo"
if [ $# -gt 0 ] && [[ "$1" != --* ]]; then workdir="$1"; shift; fi
[[ "$workdir" = /* ]] || workdir="$PWD/$workdir"     # env.sh changes to the repository root
source "$(dirname "$0")/env.sh"
# XLA:CPU's YNNPACK kernels run the demo's small convolutions 1.4-1.5x faster (a flag of the
# jax/jaxlib version setup.cfg pins; other versions may not know it). Set XLA_FLAGS to replace it.
export XLA_FLAGS="${XLA_FLAGS---xla_cpu_experimental_ynn_fusion_type=dot}"
exec python -m stylekd_jax.main --config configs/demo.py --workdir "$workdir" "$@"
