#!/usr/bin/env bash
# MTC Explorer from a fresh clone, in one command each:
#   ./mtc.sh app [ARGS]    install what the app needs into .venv and serve it on the shipped zoo: http://localhost:8501
#   ./mtc.sh test [ARGS]   install what the tests need into .venv and run them (python -m pytest ARGS)
# Both create the virtual environment .venv (MTC_VENV: another folder) or reuse it; a second run skips what is already
# installed. torch: the default PyPI build (CUDA) where nvidia-smi finds a GPU, else the CPU build (a torch wheel this
# machine's pip already holds, or PyTorch's CPU index): the default Linux wheel would bring gigabytes of CUDA
# libraries to a machine without a GPU. An environment of your own: README.md, "Install".
set -euo pipefail
cd "$(dirname "$0")"

VENV="${MTC_VENV:-.venv}"
PY="$VENV/bin/python"
CPU_INDEX="https://download.pytorch.org/whl/cpu"

usage() {
  cat <<'EOF'
usage: ./mtc.sh app [ARGS]    install the app into .venv and serve it on the shipped zoo (http://localhost:8501);
                              ARGS go to `mtc app`: --server.port 8502, --expose (another machine's browser), ...
       ./mtc.sh test [ARGS]   install the tests' dependencies into .venv and run them (python -m pytest ARGS)
EOF
}

say() { echo "mtc.sh: $*" >&2; }

has_gpu() { command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; }

make_venv() {
  [ -x "$PY" ] && return
  local python="${PYTHON:-python3}"
  if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    say "needs Python 3.10 or newer as '$python' (set PYTHON=/path/to/python3.X)"
    exit 1
  fi
  say "creating the virtual environment $VENV"
  if ! "$python" -m venv "$VENV"; then
    rm -rf "$VENV"
    say "could not create $VENV: on Debian/Ubuntu install python3-venv (apt-get install python3-venv)"
    exit 1
  fi
  "$PY" -m pip install -q --upgrade pip
}

install_torch() {
  "$PY" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("torch") is None)' && return
  if has_gpu; then
    say "installing torch (nvidia-smi finds a GPU: the default build, with CUDA)"
    "$PY" -m pip install torch
  elif "$PY" -m pip install -q --no-index --no-deps torch >/dev/null 2>&1; then
    say "installed the torch wheel this machine holds (its pip's find-links); its dependencies follow"
  else
    say "installing torch's CPU build (no GPU found)"
    "$PY" -m pip install torch --index-url "$CPU_INDEX"
  fi
}

# Installs the checkout with an extra (app or dev) once per version of pyproject.toml; dev holds app.
install() {
  local extra="$1" stamp version
  version="$("$PY" -c 'import hashlib; print(hashlib.sha256(open("pyproject.toml", "rb").read()).hexdigest())')"
  for stamp in "$extra" dev; do
    if [ "$(cat "$VENV/.mtc-installed-$stamp" 2>/dev/null)" = "$version" ]; then return; fi
  done
  install_torch
  say "installing the checkout with its '$extra' dependencies (pip install -e '.[$extra]')"
  "$PY" -m pip install -q -e ".[$extra]"
  echo "$version" >"$VENV/.mtc-installed-$extra"
}

case "${1:-}" in
  app)
    shift
    make_venv
    install app
    exec "$VENV/bin/mtc" app "$@"
    ;;
  test)
    shift
    make_venv
    install dev
    exec "$PY" -m pytest "$@"
    ;;
  -h | --help)
    usage
    ;;
  *)
    [ $# -gt 0 ] && say "unknown command '$1'"
    usage >&2
    exit 2
    ;;
esac
