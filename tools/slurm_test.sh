#!/usr/bin/env bash
# Evaluation on a Slurm cluster with srun:
#   tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py args...]
# One task per GPU; environment: GPUS (tasks, default 8), GPUS_PER_NODE
# (default 8), CPUS_PER_TASK (default 5), SRUN_ARGS (more srun options),
# PYTHON (default python).
set -euo pipefail
usage() {
  echo "usage: tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [tools/test.py arguments]"
  echo "runs tools/test.py --launcher=slurm under srun; environment:"
  echo "GPUS (default 8), GPUS_PER_NODE (default 8), CPUS_PER_TASK (default 5), SRUN_ARGS, PYTHON"
}
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
esac
if [ $# -lt 4 ]; then
  usage >&2
  echo "error: PARTITION, JOB_NAME, CONFIG and CHECKPOINT are required" >&2
  exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
CHECKPOINT=$4
shift 4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
read -r -a EXTRA <<< "${SRUN_ARGS:-}"
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python}
PYTHONPATH="$ROOT:${PYTHONPATH:-}" exec srun -p "$PARTITION" \
  --job-name="$JOB_NAME" --gres=gpu:"$GPUS_PER_NODE" --ntasks="$GPUS" \
  --ntasks-per-node="$GPUS_PER_NODE" --cpus-per-task="$CPUS_PER_TASK" \
  --kill-on-bad-exit=1 ${EXTRA[@]+"${EXTRA[@]}"} \
  "$PYTHON" -u "$ROOT/tools/test.py" "$CONFIG" "$CHECKPOINT" \
  --launcher=slurm "$@"
