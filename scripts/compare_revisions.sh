#!/usr/bin/env bash
# Generate the small datasets with another revision and with this checkout, and compare every
# array bit for bit (scripts/compare_datasets.py). Usage:
#   bash scripts/compare_revisions.sh REV [OUT]      # e.g. REV = main~3; OUT default /tmp/...
# The other revision runs from a temporary git worktree with this checkout's .venv (its own
# module paths: `python -m datagen.cli` from its root). Exit status 1 if any array differs.
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:?usage: compare_revisions.sh REV [OUT]}
out=${2:-$(mktemp -d)}
python=$PWD/.venv/bin/python
tree=$out/tree
git worktree add --detach "$tree" "$rev" >/dev/null
trap 'git worktree remove --force "$tree"' EXIT
generate() {  # generate ROOT DEST: every case with the code at ROOT
  local root=$1 dest=$2
  mkdir -p "$dest"
  while read -r name config overrides; do
    # shellcheck disable=SC2086
    (cd "$root" && "$python" -m datagen.cli generate "configs/datagen/$config.yaml" $overrides \
      "output.dir=$dest/$name" --overwrite --no-progress >"$dest/$name.log")
  done <<'CASES'
darcy_small darcy_small
darcy_pcg darcy_small solver.method=pcg samples.train=32
darcy_skr darcy_small solver.method=skr samples.train=32 coefficient.family=lognormal forcing.kind=random
poisson_small poisson_small
poisson_direct poisson_small solver.method=direct samples.train=16 dirichlet.kind=zero
heat_small heat_small
heat_pcg heat_small solver.method=pcg samples.train=8 samples.valid=2 samples.test=2
helmholtz_small helmholtz_small
helmholtz_gmres helmholtz_small solver.method=gmres samples.train=8 source.kind=random
ns_small ns_small
ns_fine ns_small store_fine=true samples.train=4 samples.valid=2 samples.test=2 time.scheme=ifrk4
CASES
}
generate "$tree" "$out/before"
generate "$PWD" "$out/after"
pairs=()
for dir in "$out"/before/*/; do
  name=$(basename "$dir")
  pairs+=("$out/before/$name" "$out/after/$name")
done
"$python" scripts/compare_datasets.py "${pairs[@]}"
