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

# One interpreter start checks everything and prints what is missing, so an
# installed environment is confirmed in a few seconds.
missing() {
  "$PY" - "$ROOT" "$TORCH_VERSION" "$TORCHVISION_VERSION" "$MMCV_VERSION" <<'PYEOF' 2>/dev/null || echo setuptools torch mmcv openmmlab tools mmrep
import importlib.util, os, sys
from importlib.metadata import PackageNotFoundError, version
root, torch_v, tv_v, mmcv_v = sys.argv[1:5]

def ver(name):
    try:
        return version(name).split('+')[0]
    except PackageNotFoundError:
        return None

out = []
st = ver('setuptools')
if st is None or not 77 <= int(st.split('.')[0]) < 81 or \
        importlib.util.find_spec('pkg_resources') is None:
    out.append('setuptools')
if ver('torch') != torch_v or ver('torchvision') != tv_v:
    out.append('torch')
if ver('mmcv') != mmcv_v:
    out.append('mmcv')
else:
    try:  # compiled ops must load against the installed torch
        from mmcv import _ext  # noqa: F401
    except Exception:
        out.append('mmcv')
pins = {'mmengine': '0.10.7', 'mmsegmentation': '1.2.2', 'mmdet': '3.3.0',
        'mmpretrain': '1.2.0'}
if any(ver(k) != v for k, v in pins.items()):
    out.append('openmmlab')
if any(ver(k) is None for k in ('pytest', 'hypothesis', 'onnx',
                                  'onnxruntime')):
    out.append('tools')
spec = importlib.util.find_spec('mmrep')
if ver('mmrep') is None or spec is None or os.path.realpath(
        os.path.dirname(spec.origin)) != os.path.realpath(
            os.path.join(root, 'mmrep')):
    out.append('mmrep')
print(' '.join(out))
PYEOF
}

TODO=" $(missing) "
needs() { [[ "$TODO" == *" $1 "* ]]; }

# 1. setuptools that still ships pkg_resources (mmcv's setup.py needs it) and
#    is new enough for torch 2.14.
if needs setuptools; then
  log "installing setuptools>=77,<81"
  $PIP install -q 'setuptools>=77,<81' wheel
fi

# 2. torch + torchvision.
if needs torch; then
  log "installing torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION"
  $PIP install -q "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
fi

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
if needs mmcv; then
  TORCH_KEY=$("$PY" -c "import torch; print(torch.__version__.replace('+', '_'))")
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
      $PIP wheel --no-cache-dir --no-build-isolation --no-deps -w "$WHEEL_DIR" .)
    WHEEL=$(ls "$WHEEL_DIR"/mmcv-"$MMCV_VERSION"-*.whl | head -n 1)
  else
    log "reusing $WHEEL (built against torch $TORCH_KEY)"
  fi
  $PIP install -q --no-deps --force-reinstall "$WHEEL"
  # mmcv's own runtime requirements (its package imports mmengine).
  $PIP install -q "mmengine==0.10.7" addict numpy packaging Pillow pyyaml yapf opencv-python-headless
  mmcv_ok || { log "mmcv $MMCV_VERSION installed but its compiled ops do not import"; exit 1; }
fi

# 4. The OpenMMLab libraries, pinned.
if needs openmmlab; then
  log "installing mmengine 0.10.7, mmsegmentation 1.2.2, mmdet 3.3.0, mmpretrain 1.2.0"
  $PIP install -q "mmengine==0.10.7" "mmsegmentation==1.2.2" "mmdet==3.3.0" "mmpretrain==1.2.0" \
    ftfy regex
fi

# 5. Test and export tools (pytest, hypothesis; onnx and onnxruntime for
#    tools/export_onnx.py) and mmrep itself (editable).
if needs tools; then
  log "installing pytest, hypothesis, onnx, onnxruntime"
  $PIP install -q pytest hypothesis onnx onnxruntime
fi
if needs mmrep; then
  log "installing mmrep (editable) from $ROOT"
  $PIP install -q --no-deps --no-build-isolation -e "$ROOT"
fi
TODO=" $(missing) "
if [ "$TODO" != "  " ]; then
  log "still missing after installing:$TODO"
  exit 1
fi
log "ready: torch $TORCH_VERSION, mmcv $MMCV_VERSION, mmengine 0.10.7, mmseg 1.2.2, mmdet 3.3.0, mmpretrain 1.2.0, mmrep (editable, $ROOT)"
