#!/usr/bin/env bash
# Multi-node GPU training with SLURM, one process per GPU:
#   sbatch --nodes=2 --ntasks-per-node=8 --gpus-per-node=8 launch/slurm.sh CONFIG WORKDIR [--config.KEY=VALUE ...]
# jax.distributed.initialize() reads the SLURM environment (coordinator, process count and id).
# Install once on the shared filesystem: python3 -m venv .venv && .venv/bin/pip install -e . 'jax[cuda12]==0.10.2'
# Resubmitting the same job resumes from the last checkpoint in WORKDIR (a shared path).
#SBATCH --job-name=stylekd
#SBATCH --output=%x-%j.out
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: sbatch launch/slurm.sh CONFIG WORKDIR [--config.KEY=VALUE ...]" >&2; exit 2
fi
config="$1"; workdir="$2"; shift 2
cd "${SLURM_SUBMIT_DIR:-$(dirname "$0")/..}"
srun .venv/bin/python -m stylekd_jax.main --config "$config" --workdir "$workdir" "$@"
