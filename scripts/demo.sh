#!/usr/bin/env bash
# The main job on a small default: set up, generate a small Darcy dataset, verify it,
# print its summary and save a figure of a few samples. Extra arguments are config overrides.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
out=runs/data/darcy_small
.venv/bin/datagen generate configs/datagen/darcy_small.yaml "output.dir=$out" --overwrite "$@"
.venv/bin/datagen verify "$out"
.venv/bin/datagen info "$out/data/train/darcy_small_train.hdf5" --figure "$out/samples.png"
