#!/usr/bin/env bash
# Training on a Slurm cluster with srun:
#   tools/slurm_train.sh PARTITION JOB_NAME CONFIG [WORK_DIR] [train.py args...]
# One task per GPU; environment: GPUS (tasks, default 8), GPUS_PER_NODE
# (default 8), CPUS_PER_TASK (default 5), SRUN_ARGS (more srun options),
# PYTHON (default python).
set -euo pipefail
usage() {
  echo "usage: tools/slurm_train.sh PARTITION JOB_NAME CONFIG [WORK_DIR] [tools/train.py arguments]"
  echo "runs tools/train.py --launcher=slurm under srun; environment:"
  echo "GPUS (default 8), GPUS_PER_NODE (default 8), CPUS_PER_TASK (default 5), SRUN_ARGS, PYTHON"
}
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
esac
if [ $# -lt 3 ]; then
  usage >&2
  echo "error: PARTITION, JOB_NAME and CONFIG are required" >&2
  exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
shift 3
WORK_DIR=()
if [ $# -gt 0 ] && [[ $1 != -* ]]; then
  WORK_DIR=(--work-dir "$1")
  shift
fi
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
  "$PYTHON" -u "$ROOT/tools/train.py" "$CONFIG" --launcher=slurm \
  ${WORK_DIR[@]+"${WORK_DIR[@]}"} "$@"
