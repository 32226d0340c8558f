#!/usr/bin/env bash
# Distributed training with torchrun: tools/dist_train.sh CONFIG NUM_PROCS [train.py args...]
# Without CUDA, tools/train.py runs the processes on the CPU with gloo (SyncBN
# configs are converted to BN). PYTHON picks the interpreter, PORT the port.
set -euo pipefail
usage() {
  echo "usage: tools/dist_train.sh CONFIG NUM_PROCS [tools/train.py arguments]"
  echo "runs tools/train.py --launcher pytorch under torchrun; environment:"
  echo "NNODES, NODE_RANK, MASTER_ADDR, PORT (default 29500), PYTHON"
}
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
esac
if [ $# -lt 2 ]; then
  usage >&2
  echo "error: CONFIG and NUM_PROCS are required" >&2
  exit 2
fi
if ! [[ $2 =~ ^[1-9][0-9]*$ ]]; then
  echo "error: NUM_PROCS must be a positive integer, got '$2'" >&2
  exit 2
fi
CONFIG=$1
NPROC=$2
shift 2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PYTHON=${PYTHON:-python}
PYTHONPATH="$DIR/..:${PYTHONPATH:-}" exec "$PYTHON" -m torch.distributed.run \
  --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
  --nproc_per_node="$NPROC" --master_port="$PORT" \
  "$DIR/train.py" "$CONFIG" --launcher pytorch "$@"
