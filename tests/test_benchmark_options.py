"""The operator benchmarks' options: a bad plan is refused in one line before any work."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

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


def test_observer_step_bad_input_is_one_line(tmp_path):
    for args, message in (
        (["--runs", str(tmp_path), "--steps", "0"], "must be >= 1"),
        (["--runs", str(tmp_path / "nope")], "does not exist"),
    ):
        result = subprocess.run(
            [sys.executable, "benchmarks/observer_step.py", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode != 0 and "Traceback" not in result.stderr
        assert result.stderr.strip().splitlines() == [result.stderr.strip()], result.stderr
        assert message in result.stderr


@pytest.mark.parametrize("ndim", [1, 2])
def test_observer_step_puts_the_old_layers_back_with_the_same_results(monkeypatch, ndim):
    """The benchmark's "before" variant (1x1 convolutions, modes gathered by index) computes
    what the observer computes now, so its timings compare like with like."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import observer_step

    from opsolve.models.observer import SemilinearObserver

    torch.manual_seed(0)
    model = SemilinearObserver(modes=(4,) * ndim, width=8, layers=2, gain_layers=1, memory=2)
    for p in model.parameters():
        p.data.normal_(0, 0.3)  # the zero-started output maps too
    grid = (3, 5, *(16,) * ndim)
    mask = torch.rand(grid) < 0.3
    measured = torch.randn(grid) * mask
    with torch.no_grad():
        now = model(measured, mask)[0]
        observer_step.as_convolutions(model)
        assert not any(type(m).__name__ == "Pointwise" for m in model.modules())
        with observer_step.index_gathers():
            before = model(measured, mask)[0]
    torch.testing.assert_close(before, now, rtol=1e-5, atol=1e-5)
