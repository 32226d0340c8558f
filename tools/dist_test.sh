#!/usr/bin/env bash
# Distributed evaluation with torchrun: tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCS [test.py args...]
# Without CUDA, tools/test.py runs the processes on the CPU with gloo (SyncBN
# configs are converted to BN). PYTHON picks the interpreter, PORT the port.
set -euo pipefail
usage() {
  echo "usage: tools/dist_test.sh CONFIG CHECKPOINT NUM_PROCS [tools/test.py arguments]"
  echo "runs tools/test.py --launcher pytorch under torchrun; environment:"
  echo "NNODES, NODE_RANK, MASTER_ADDR, PORT (default 29500), PYTHON"
}
case "${1:-}" in
  -h|--help) usage; exit 0 ;;
esac
if [ $# -lt 3 ]; then
  usage >&2
  echo "error: CONFIG, CHECKPOINT and NUM_PROCS are required" >&2
  exit 2
fi
if ! [[ $3 =~ ^[1-9][0-9]*$ ]]; then
  echo "error: NUM_PROCS must be a positive integer, got '$3'" >&2
  exit 2
fi
CONFIG=$1
CHECKPOINT=$2
NPROC=$3
shift 3
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PYTHON=${PYTHON:-python}
PYTHONPATH="$DIR/..:${PYTHONPATH:-}" exec "$PYTHON" -m torch.distributed.run \
  --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
  --nproc_per_node="$NPROC" --master_port="$PORT" \
  "$DIR/test.py" "$CONFIG" "$CHECKPOINT" --launcher pytorch "$@"
