"""The operator benchmarks' options: a bad plan is refused in one line before any work."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT


@pytest.mark.parametrize(
    "args, message",
    [
        (["--plan", "lsm=x"], "--plan 'lsm=x': expected MODEL=EPOCHS"),
        (["--plan", "tfno=3"], "--plan 'tfno=3': expected MODEL=EPOCHS with MODEL one of"),
        (["--plan", "lsm=0"], "EPOCHS a positive integer"),
        (["--side-by-side", "--device", "cuda"], "--side-by-side needs --device cpu"),
    ],
)
def test_bad_plans_are_one_line(tmp_path, args, message):
    result = subprocess.run(
        [sys.executable, "benchmarks/darcy_operators.py", "--models", "lsm", "fno", *args]
        + ["--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "data").exists()  # refused before generating anything
