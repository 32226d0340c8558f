#!/usr/bin/env bash
# Packaging check: an sdist, a wheel built from that sdist, the wheel
# installed into a fresh virtualenv that reuses this environment's packages
# (torch, mmcv, mmengine, mmseg, ...: --system-site-packages, --no-deps), and
# .ci/smoke.py run with that virtualenv from a directory outside the
# checkout. Needs only pip and setuptools (no network: --no-index).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

cd "$ROOT"
"$PY" setup.py -q sdist -d "$WORK/dist" >/dev/null
SDIST=$(ls "$WORK"/dist/mmrep-*.tar.gz)
"$PY" -m pip wheel -q --disable-pip-version-check --no-deps \
  --no-build-isolation --no-index -w "$WORK/dist" "$SDIST"
WHEEL=$(ls "$WORK"/dist/mmrep-*.whl)
"$PY" -m venv --system-site-packages "$WORK/venv"
"$WORK/venv/bin/python" -m pip install -q --disable-pip-version-check \
  --no-deps --no-index "$WHEEL"
cd "$WORK"
env -u PYTHONPATH "$WORK/venv/bin/python" -W ignore "$ROOT/.ci/smoke.py" \
  "$ROOT" "$SDIST"

# mim, as a user of the installed package calls it: openmim without its
# dataset-download dependencies (opendatalab -> openxlab pins setuptools
# 60, below what torch needs), then search, train and test by config name.
VPY="$WORK/venv/bin/python"
env -u PYTHONPATH "$VPY" -m pip install -q --disable-pip-version-check \
  --no-deps openmim==0.3.9
env -u PYTHONPATH "$VPY" -m pip install -q --disable-pip-version-check \
  click colorama model-index pandas rich tabulate requests
MIM="env -u PYTHONPATH $VPY -W ignore -m mim"
FOUND=$($MIM search mmrep --field config 2>/dev/null | grep -c 'cityscapes\|ade20k\|coco\|imagenet' || true)
[ "$FOUND" -gt 0 ] || { echo "packaging: FAILED: mim search mmrep lists no model"; exit 1; }
echo "packaging: mim search mmrep lists $FOUND rows"
DATA="$WORK/demo_cityscapes"
env -u PYTHONPATH "$VPY" -c "import sys; from mmrep.datasets import make_cityscapes_like; make_cityscapes_like(sys.argv[1], num_train=4, num_val=2, seed=1)" "$DATA"
DEMO=demo_upernet_repmlpnet-tiny_1xb8-cpu_cityscapes-synthetic.py
OPTS=(--cfg-options "train_dataloader.dataset.data_root=$DATA"
      "val_dataloader.dataset.data_root=$DATA"
      "test_dataloader.dataset.data_root=$DATA"
      train_dataloader.batch_size=2 train_cfg.max_iters=1
      train_cfg.val_interval=1 default_hooks.checkpoint.interval=1)
$MIM train mmrep "$DEMO" --work-dir "$WORK/mim_work" "${OPTS[@]}" > "$WORK/mim_train.log" 2>&1 \
  || { tail -20 "$WORK/mim_train.log"; echo "packaging: FAILED: mim train mmrep"; exit 1; }
[ -f "$WORK/mim_work/iter_1.pth" ] || { echo "packaging: FAILED: mim train wrote no iter_1.pth"; exit 1; }
$MIM test mmrep "$DEMO" --checkpoint "$WORK/mim_work/iter_1.pth" \
  --work-dir "$WORK/mim_work" "${OPTS[@]}" > "$WORK/mim_test.log" 2>&1 \
  || { tail -20 "$WORK/mim_test.log"; echo "packaging: FAILED: mim test mmrep"; exit 1; }
grep -q 'mIoU' "$WORK/mim_test.log" || { tail -20 "$WORK/mim_test.log"; echo "packaging: FAILED: mim test printed no mIoU"; exit 1; }
echo "packaging: mim train and mim test mmrep $DEMO ran from the installed package"
