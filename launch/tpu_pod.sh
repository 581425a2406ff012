#!/usr/bin/env bash
# Run on every worker of a Cloud TPU VM pod slice (JAX finds the other workers itself):
#   bash launch/tpu_pod.sh TPU_NAME ZONE CONFIG gs://bucket/runs/NAME [--config.KEY=VALUE ...]
# 1. copies this checkout to all workers, 2. installs it with jax[tpu], 3. starts the same
# command on every worker. The workdir should be a gs:// path so all workers share checkpoints;
# the teacher and data paths must be readable from every worker (gs:// or a copy on each).
# Rerunning the same command resumes from the last checkpoint.
set -euo pipefail
if [ $# -lt 4 ]; then
  echo "usage: bash launch/tpu_pod.sh TPU_NAME ZONE CONFIG WORKDIR [--config.KEY=VALUE ...]" >&2; exit 2
fi
tpu="$1"; zone="$2"; config="$3"; workdir="$4"; shift 4
extra=$(printf ' %q' "$@")
repo="$(cd "$(dirname "$0")/.." && pwd)"
ssh() { gcloud compute tpus tpu-vm ssh "$tpu" --zone "$zone" --worker=all --command "$1"; }

gcloud compute tpus tpu-vm scp --zone "$zone" --worker=all --recurse "$repo" "$tpu":~/stylekd_jax_src
ssh "cd ~/stylekd_jax_src && python3 -m venv .venv && .venv/bin/pip install -q -e . 'jax[tpu]==0.10.2'"
ssh "cd ~/stylekd_jax_src && nohup .venv/bin/python -m stylekd_jax.main --config $config --workdir $workdir$extra > train.log 2>&1 &"
echo "started on all workers of $tpu; follow with:"
echo "  gcloud compute tpus tpu-vm ssh $tpu --zone $zone --worker=0 --command 'tail -f ~/stylekd_jax_src/train.log'"
