#!/usr/bin/env bash
# The main job on a small default, end to end: set up; generate a small Darcy dataset, verify it
# and draw a few samples; train MgNO and FNO briefly on it; evaluate both on the test split and
# print a comparison table; save the figures. Extra arguments are overrides of the dataset config;
# EPOCHS (default 20) sets the training length of both models.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
data=runs/data/darcy_small
epochs=${EPOCHS:-20}
.venv/bin/datagen generate configs/datagen/darcy_small.yaml "output.dir=$data" --overwrite "$@"
.venv/bin/datagen verify "$data"
.venv/bin/datagen info "$data/data/train/darcy_small_train.hdf5" --figure "$data/samples.png"
for model in mgno fno; do
  .venv/bin/opsolve train "configs/train/darcy_${model}_small.yaml" "data.root=$data" \
    "epochs=$epochs" "output.dir=runs/train/darcy_${model}_small" --overwrite
done
.venv/bin/opsolve compare runs/train/darcy_mgno_small runs/train/darcy_fno_small \
  --out runs/compare/darcy_small
