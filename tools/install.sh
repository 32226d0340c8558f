#!/usr/bin/env bash
# Idempotent installer for mmrep and its OpenMMLab stack.
#
# It keeps what is installed and compatible and installs only what is
# missing, printing one line for each thing it keeps or installs:
#   - torch: a supported torch is kept, whatever its build (CPU, CUDA);
#     torch and torchvision are installed only where no torch is present. An
#     unsupported torch is refused unless --replace-torch is given.
#   - torchvision: kept when it imports with the torch; installed (the
#     release made with that torch) when missing or made for another torch.
#   - mmcv: kept when its version is in requirements/mminstall.txt and its
#     compiled ops load (with CUDA ops where a GPU is visible or FORCE_CUDA=1);
#     otherwise a cached wheel is installed or mmcv is built from source
#     against the installed torch (about 17 minutes on 2 cores) and cached,
#     keyed by torch release, torch build and the wheel's ops:
#       $MMREP_CACHE/wheels/torch-2.14.1-cu130/        CUDA ops
#       $MMREP_CACHE/wheels/torch-2.14.1-cu130-cpuops/ CUDA torch, CPU-only ops
#       $MMREP_CACHE/wheels/torch-2.13.0-cpu/          CPU torch
#   - the OpenMMLab libraries and the test/export tools: the ranges of
#     requirements/*.txt; those outside them are installed, pip held to the
#     kept torch, torchvision and mmcv by a constraints file.
#   - mmrep itself, editable from this checkout.
# When everything is present it only checks and returns in seconds. The
# decisions are made by tools/install_plan.py (tests/project/test_install.py).
#
# Usage: tools/install.sh [--dry-run] [--replace-torch] [--no-torchvision]
#   --dry-run         print the keep/install lines and change nothing
#   --replace-torch   replace an unsupported torch (or one that does not
#                     import) with torch $TORCH_DEFAULT
#   --no-torchvision  where no torchvision is installed, go on without one
#                     (mmpretrain and the torchvision-based tests need it);
#                     one that is installed must still import
#
# Environment:
#   PYTHON                 interpreter to install into (default: python3)
#   MMREP_CACHE            where built mmcv wheels are kept
#                          (default: ~/.cache/mmrep)
#   MMREP_REPLACE_TORCH=1  same as --replace-torch
#   MMREP_NO_TORCHVISION=1 same as --no-torchvision
#   MMREP_DRY_RUN=1        same as --dry-run
#   MMREP_TORCH_INDEX_URL  an extra package index for torch/torchvision
#                          (e.g. https://download.pytorch.org/whl/cpu)
#   FORCE_CUDA=1           build mmcv's CUDA ops without a visible GPU
#   MAX_JOBS               parallel compile jobs of the mmcv build
set -euo pipefail

# The version policy, in one place.
TORCH_SUPPORTED='>=2.5'          # mmrep needs torch.serialization.safe_globals
TORCH_TESTED='2.13.0 2.14.1'     # releases the test suite has passed on
TORCH_DEFAULT=2.14.1             # installed only where no torch is present
TORCHVISION_DEFAULT=0.29.1       # the torchvision of TORCH_DEFAULT
MMCV_BUILD=2.1.0                 # built from source; within requirements/mminstall.txt
SETUPTOOLS_MAX=81                # setuptools 81 drops pkg_resources (mmcv's setup.py)

PY=${PYTHON:-python3}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${MMREP_CACHE:-$HOME/.cache/mmrep}
DRY_RUN=${MMREP_DRY_RUN:-0}
REPLACE_TORCH=${MMREP_REPLACE_TORCH:-0}
NO_TORCHVISION=${MMREP_NO_TORCHVISION:-0}
for arg in "$@"; do
  case "$arg" in
    --dry-run) DRY_RUN=1 ;;
    --replace-torch) REPLACE_TORCH=1 ;;
    --no-torchvision) NO_TORCHVISION=1 ;;
    -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "[install] unknown argument: $arg (see --help)" >&2; exit 2 ;;
  esac
done

PIP="$PY -m pip --disable-pip-version-check"
TORCH_INDEX=()
if [ -n "${MMREP_TORCH_INDEX_URL:-}" ]; then
  TORCH_INDEX=(--extra-index-url "$MMREP_TORCH_INDEX_URL")
fi
log() { printf '[install] %s\n' "$*"; }

STATE=$(mktemp -d)
trap 'rm -rf "$STATE"' EXIT
PLAN_ARGS=(--root "$ROOT" --cache "$CACHE" --torch-supported "$TORCH_SUPPORTED"
  --torch-tested "$TORCH_TESTED" --torch-default "$TORCH_DEFAULT"
  --torchvision-default "$TORCHVISION_DEFAULT" --mmcv-build "$MMCV_BUILD"
  --setuptools-max "$SETUPTOOLS_MAX"
  --vars-out "$STATE/plan.sh" --constraints-out "$STATE/constraints.txt")
[ "$REPLACE_TORCH" = 1 ] && PLAN_ARGS+=(--replace-torch)
[ "$NO_TORCHVISION" = 1 ] && PLAN_ARGS+=(--no-torchvision)

# Probe the environment and decide (one interpreter start, plus one child
# for the imports); the plan's variables are PLAN_*.
plan() {
  if ! command -v "$PY" >/dev/null 2>&1 && [ ! -x "$PY" ]; then
    log "no interpreter $PY (set PYTHON)"; exit 1
  fi
  "$PY" "$ROOT/tools/install_plan.py" plan "${PLAN_ARGS[@]}" "$@"
  # shellcheck source=/dev/null
  . "$STATE/plan.sh"
}

plan
if [ "$PLAN_REFUSED" = 1 ]; then
  exit 1
fi
if [ "$DRY_RUN" = 1 ]; then
  log "dry run: nothing changed"
  exit 0
fi
if [ "$PLAN_DONE" = 1 ]; then
  log "ready: nothing to install"
  exit 0
fi

# 1. torch + torchvision: only where no torch is present, or behind
#    --replace-torch; torchvision alone where it is missing or mismatched.
if [ "$PLAN_TORCH" = install ] || [ "$PLAN_TORCH" = replace ]; then
  $PIP install -q "${TORCH_INDEX[@]}" "${PLAN_TORCH_SPECS[@]}"
  plan --changes-only
  if [ "$PLAN_REFUSED" = 1 ]; then exit 1; fi
fi
if [ "$PLAN_TORCHVISION" = install ]; then
  # The kept torch is pinned; a torchvision made for another torch goes.
  $PIP install -q --force-reinstall --no-deps -c "$STATE/constraints.txt" \
    "${TORCH_INDEX[@]}" "$PLAN_TORCHVISION_SPEC"
  $PIP install -q -c "$STATE/constraints.txt" "${TORCH_INDEX[@]}" "$PLAN_TORCHVISION_SPEC"
  plan --changes-only
  if [ "$PLAN_REFUSED" = 1 ]; then exit 1; fi
  if [ "$PLAN_TORCHVISION" != keep ] && [ "$PLAN_TORCHVISION" != skip ]; then
    log "torchvision still does not suit torch; see the line above"; exit 1
  fi
fi

# 2. mmcv with compiled ops: a cached wheel, else built from source against
#    the installed torch.
if [ "$PLAN_MMCV" = build ]; then
  if [ -n "$PLAN_SETUPTOOLS_SPEC" ]; then
    # mmcv's setup.py imports pkg_resources; torch declares a minimum.
    $PIP install -q "$PLAN_SETUPTOOLS_SPEC" -c "$STATE/constraints.txt"
  fi
  "$PY" -c 'import wheel' 2>/dev/null || $PIP install -q wheel
  BUILD="$STATE/build"
  mkdir -p "$BUILD"
  # The source distribution, unpacked without running its setup.py.
  $PIP download -q --no-deps --no-binary mmcv --no-build-isolation -d "$BUILD" "mmcv==$MMCV_BUILD" \
    || $PIP download -q --no-deps --no-binary :all: --no-build-isolation -d "$BUILD" "mmcv==$MMCV_BUILD"
  tar -xzf "$BUILD"/mmcv-"$MMCV_BUILD".tar.gz -C "$BUILD"
  SRC="$BUILD/mmcv-$MMCV_BUILD"
  # torch >= 2.10 headers need C++20; mmcv 2.1.0 hard-codes C++17 for CPU builds.
  sed -i "s/-std=c++17/-std=c++20/g" "$SRC/setup.py"
  grep -q -- '-std=c++20' "$SRC/setup.py" || { log "could not patch the C++ standard in mmcv's setup.py"; exit 1; }
  if [ "$PLAN_MMCV_CUDA_OPS" = 1 ]; then
    log "building mmcv $MMCV_BUILD with CUDA ops (about 17 minutes on 2 cores without CUDA; longer with)"
    FORCE=1
  else
    log "building mmcv $MMCV_BUILD with CPU ops (about 17 minutes on 2 cores)"
    FORCE=${FORCE_CUDA:-0}
  fi
  (cd "$SRC" && FORCE_CUDA=$FORCE MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
    $PIP wheel -q --no-cache-dir --no-build-isolation --no-deps -w "$BUILD/wheel" .)
  BUILT=$(ls "$BUILD"/wheel/mmcv-"$MMCV_BUILD"-*.whl | head -n 1)
  # Cached under the key of what the wheel contains (CUDA ops or not).
  PLAN_MMCV_WHEEL=$("$PY" "$ROOT/tools/install_plan.py" place-wheel --cache "$CACHE" "$BUILT")
  log "cached $PLAN_MMCV_WHEEL"
  PLAN_MMCV=reuse
elif [ "$PLAN_MMCV" = reuse ]; then
  # A wheel of the old torch-version-only cache moves under its new key.
  PLAN_MMCV_WHEEL=$("$PY" "$ROOT/tools/install_plan.py" place-wheel --cache "$CACHE" "$PLAN_MMCV_WHEEL")
fi
if [ "$PLAN_MMCV" = reuse ]; then
  $PIP install -q --no-deps --force-reinstall "$PLAN_MMCV_WHEEL"
  PLAN_MMCV=deps
fi
if [ "$PLAN_MMCV" = deps ]; then
  # mmcv's own requirements (it imports mmengine and cv2), within the ranges
  # of requirements/*.txt; the installed mmcv satisfies the pin.
  $PIP install -q -c "$STATE/constraints.txt" "$PLAN_MMCV_PIN"
  # opencv-python needs libGL to import; the headless build does not.
  "$PY" -c 'import cv2' 2>/dev/null || $PIP install -q -c "$STATE/constraints.txt" opencv-python-headless
  plan --changes-only
  if [ "$PLAN_REFUSED" = 1 ]; then exit 1; fi
  if [ "$PLAN_MMCV" != keep ]; then
    log "mmcv $PLAN_MMCV_PIN is installed but its compiled ops do not load with this torch; see the line above"; exit 1
  fi
fi

# 3. The OpenMMLab libraries, mmcv's own requirements and the tools, within
#    the ranges of requirements/*.txt; torch, torchvision and mmcv held.
if [ "${#PLAN_PIP_SPECS[@]}" -gt 0 ]; then
  $PIP install -q -c "$STATE/constraints.txt" "${PLAN_PIP_SPECS[@]}"
  # opencv-python (a requirement of mmengine) needs libGL to import.
  "$PY" -c 'import cv2' 2>/dev/null || $PIP install -q -c "$STATE/constraints.txt" opencv-python-headless
fi

# 3b. What requirements/mmdeploy.txt lists, without its own pins (mmdeploy
#     would downgrade protobuf and onnx); its needs are in deploy.txt.
if [ "${#PLAN_NO_DEPS_SPECS[@]}" -gt 0 ]; then
  $PIP install -q --no-deps "${PLAN_NO_DEPS_SPECS[@]}"
fi

# 4. mmrep itself, editable.
if [ "$PLAN_MMREP" = install ]; then
  $PIP install -q --no-deps --no-build-isolation -e "$ROOT"
fi

plan --changes-only
if [ "$PLAN_DONE" != 1 ]; then
  log "not complete after installing; see the lines above"
  exit 1
fi
log "ready"
