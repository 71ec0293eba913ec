#!/usr/bin/env bash
# Create .venv (if needed) and install opsolve with its dev extra.
# CPU-only machines get the CPU build of torch, never the multi-GB CUDA wheels:
# first a locally available CPU wheel (pip's configured find-links), else the PyTorch CPU index
# (TORCH_CPU_INDEX overrides it). Machines with an NVIDIA driver get the default CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
torch_version=2.13.0
[ -x .venv/bin/python ] || "$python" -m venv .venv
venv=.venv/bin/python
pip() { "$venv" -m pip --disable-pip-version-check -q "$@"; }
if ! "$venv" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    pip install "torch==$torch_version"
  elif pip install --no-deps --no-index "torch==$torch_version" 2>/dev/null; then
    pip install "torch==$torch_version"  # torch is in place: this adds its dependencies only
  else
    pip install --retries 2 --timeout 30 "torch==$torch_version" \
      --index-url "${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
  fi
fi
stamp=.venv/.opsolve-installed
want=$(cat pyproject.toml | sha1sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  pip install -e ".[dev]"
  echo "$want" > "$stamp"
fi
