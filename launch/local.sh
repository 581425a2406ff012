#!/usr/bin/env bash
# Train on this machine (all its GPUs / CPU), creating .venv on first use:
#   bash launch/local.sh configs/ffhq256_stylegan2.py runs/ffhq256 --config.teacher=teacher/ --config.data.source=folder:/data/ffhq256
# Rerunning the same command resumes from the last checkpoint in the workdir.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: bash launch/local.sh CONFIG WORKDIR [--config.KEY=VALUE ...]" >&2; exit 2
fi
config="$1"; workdir="$2"; shift 2
[[ "$config" = /* ]] || config="$PWD/$config"        # env.sh changes to the repository root
[[ "$workdir" = /* ]] || workdir="$PWD/$workdir"
source "$(dirname "$0")/env.sh"
exec python -m stylekd_jax.main --config "$config" --workdir "$workdir" "$@"
