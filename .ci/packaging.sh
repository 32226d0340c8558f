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
