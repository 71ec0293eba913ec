#!/usr/bin/env bash
# Set up, lint, and run the test suite (slow tests only with OPSOLVE_SLOW=1).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check opsolve datagen tests benchmarks scripts
.venv/bin/python -m pytest -q "$@"
