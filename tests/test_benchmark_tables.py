"""The solver benchmarks' tables: a ratio whose base row was not run is a dash, never "nanx"."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT


def test_ratios_against_rows_not_run_are_dashes():
    result = subprocess.run(
        [sys.executable, "benchmarks/darcy_solvers.py", "--sizes", "17", "--samples", "2"]
        + ["--families", "lognormal", "--only", "pcg-mg"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if "| pcg-mg |" in line)
    assert row.endswith("| - | - |") and "nan" not in result.stdout, row
