#!/usr/bin/env bash
# The README's first command: sets up .venv on first use, then runs configs/demo.py: writes a
# procedural dataset, trains a small StyleGAN2 teacher on it, distils a >4x smaller student with
# StyleKD, evaluates both and writes WORKDIR/report.md (about 11 minutes on a 2-core CPU).
#   bash launch/demo.sh [WORKDIR] [--config.KEY=VALUE ...]      (WORKDIR defaults to runs/demo)
# Rerunning reuses what is done (dataset, teacher, checkpoints).
set -euo pipefail
workdir="runs/demo"
if [ $# -gt 0 ] && [[ "$1" != --* ]]; then workdir="$1"; shift; fi
[[ "$workdir" = /* ]] || workdir="$PWD/$workdir"     # env.sh changes to the repository root
source "$(dirname "$0")/env.sh"
exec python -m stylekd_jax.main --config configs/demo.py --workdir "$workdir" "$@"
