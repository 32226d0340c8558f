#!/usr/bin/env bash
# Idempotent installer for mmrep and its OpenMMLab stack.
#
# From scratch it installs torch/torchvision, builds mmcv 2.1.0 with compiled ops
# from source against the installed torch (about 17 minutes on 2 cores), installs
# mmengine, mmsegmentation, mmdet, mmpretrain and mmrep itself (editable).
# When everything is already present it only checks and returns in seconds.
#
# Environment:
#   PYTHON            interpreter to install into (default: python3)
#   MMREP_CACHE       where built mmcv wheels are kept, keyed by torch version
#                     (default: ~/.cache/mmrep)
set -euo pipefail

PY=${PYTHON:-python3}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${MMREP_CACHE:-$HOME/.cache/mmrep}
TORCH_VERSION=2.14.1
TORCHVISION_VERSION=0.29.1
MMCV_VERSION=2.1.0
PIP="$PY -m pip --disable-pip-version-check"

log() { printf '[install] %s\n' "$*"; }

have() {  # have MODULE [ATTR==VALUE python expression]
  "$PY" - "$@" <<'PYEOF' >/dev/null 2>&1
import importlib, sys
mod = importlib.import_module(sys.argv[1])
if len(sys.argv) > 2:
    assert getattr(mod, '__version__', '').split('+')[0] == sys.argv[2]
PYEOF
}

# 1. setuptools that still ships pkg_resources (mmcv's setup.py needs it) and
#    is new enough for torch 2.14.
if ! "$PY" -c "import pkg_resources, setuptools, sys; v=tuple(int(x) for x in setuptools.__version__.split('.')[:1]); sys.exit(not (77,) <= v < (81,))" >/dev/null 2>&1; then
  log "installing setuptools>=77,<81"
  $PIP install -q 'setuptools>=77,<81' wheel
fi

# 2. torch + torchvision.
if ! have torch "$TORCH_VERSION" || ! have torchvision "$TORCHVISION_VERSION"; then
  log "installing torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION"
  $PIP install -q "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
fi
TORCH_KEY=$("$PY" -c "import torch; print(torch.__version__.replace('+', '_'))")

# 3. mmcv with compiled ops, built from source against this torch.
mmcv_ok() {
  "$PY" - "$MMCV_VERSION" <<'PYEOF' >/dev/null 2>&1
import sys
import mmcv
assert mmcv.__version__ == sys.argv[1]
from mmcv import _ext  # noqa: F401  compiled ops load against this torch
from mmcv.ops import nms  # noqa: F401
PYEOF
}
if ! mmcv_ok; then
  WHEEL_DIR="$CACHE/wheels/torch-$TORCH_KEY"
  mkdir -p "$WHEEL_DIR"
  WHEEL=$(ls "$WHEEL_DIR"/mmcv-"$MMCV_VERSION"-*.whl 2>/dev/null | head -n 1 || true)
  if [ -z "$WHEEL" ]; then
    log "building mmcv $MMCV_VERSION with ops against torch $TORCH_KEY (about 17 minutes on 2 cores)"
    BUILD=$(mktemp -d)
    trap 'rm -rf "$BUILD"' EXIT
    # The source distribution, unpacked without running its setup.py.
    $PIP download -q --no-deps --no-binary mmcv --no-build-isolation -d "$BUILD" "mmcv==$MMCV_VERSION" \
      || $PIP download -q --no-deps --no-binary :all: --no-build-isolation -d "$BUILD" "mmcv==$MMCV_VERSION"
    tar -xzf "$BUILD"/mmcv-"$MMCV_VERSION".tar.gz -C "$BUILD"
    SRC="$BUILD/mmcv-$MMCV_VERSION"
    # torch >= 2.10 headers need C++20; mmcv 2.1.0 hard-codes C++17 for CPU builds.
    sed -i "s/-std=c++17/-std=c++20/g" "$SRC/setup.py"
    grep -q -- '-std=c++20' "$SRC/setup.py" || { log "could not patch the C++ standard in mmcv's setup.py"; exit 1; }
    (cd "$SRC" && MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
      $PIP wheel --no-build-isolation --no-deps -w "$WHEEL_DIR" .)
    WHEEL=$(ls "$WHEEL_DIR"/mmcv-"$MMCV_VERSION"-*.whl | head -n 1)
  else
    log "reusing $WHEEL (built against torch $TORCH_KEY)"
  fi
  $PIP install -q --no-deps --force-reinstall "$WHEEL"
  # mmcv's own runtime requirements.
  $PIP install -q addict numpy packaging Pillow pyyaml yapf opencv-python-headless
  mmcv_ok || { log "mmcv $MMCV_VERSION installed but its compiled ops do not import"; exit 1; }
fi

# 4. The OpenMMLab libraries, pinned.
if ! have mmengine 0.10.7 || ! have mmseg 1.2.2 || ! have mmdet 3.3.0 || ! have mmpretrain 1.2.0; then
  log "installing mmengine 0.10.7, mmsegmentation 1.2.2, mmdet 3.3.0, mmpretrain 1.2.0"
  $PIP install -q "mmengine==0.10.7" "mmsegmentation==1.2.2" "mmdet==3.3.0" "mmpretrain==1.2.0" \
    ftfy regex
fi

# 5. Test tools and mmrep itself (editable).
if ! "$PY" -c "import pytest, hypothesis" >/dev/null 2>&1; then
  $PIP install -q pytest hypothesis
fi
if ! "$PY" - "$ROOT" <<'PYEOF' >/dev/null 2>&1
import os, sys
import mmrep
assert os.path.realpath(os.path.dirname(mmrep.__file__)) == os.path.realpath(os.path.join(sys.argv[1], 'mmrep'))
PYEOF
then
  log "installing mmrep (editable) from $ROOT"
  $PIP install -q --no-deps --no-build-isolation -e "$ROOT"
fi
log "ready: $("$PY" -c "import torch, mmcv, mmengine, mmseg, mmdet, mmpretrain, mmrep; print(f'torch {torch.__version__}, mmcv {mmcv.__version__}, mmengine {mmengine.__version__}, mmseg {mmseg.__version__}, mmdet {mmdet.__version__}, mmpretrain {mmpretrain.__version__}, mmrep {mmrep.__version__}')")"
