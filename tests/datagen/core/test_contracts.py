"""The shared pieces: atomic files, progress output, command failures, devices, the config base."""

from __future__ import annotations

import io
import os
import signal

import numpy as np
import pytest
import torch

from datagen.core import progress
from datagen.core.commands import Failure, Terminated, _terminate, run_command
from datagen.core.config import GenerationConfig, validate
from datagen.core.device import resolve_device
from datagen.core.errors import SolverFailure, UserError
from datagen.core.files import atomic_write, write_text_atomic
from datagen.problems.darcy.config import DarcyConfig
from datagen.problems.navier_stokes.config import NavierStokesConfig


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "x.npz"
    with atomic_write(target, "wb") as handle:
        np.savez(handle, a=np.arange(3))
    assert np.load(target)["a"].tolist() == [0, 1, 2]
    with pytest.raises(RuntimeError), atomic_write(target, "wb") as handle:
        np.savez(handle, a=np.arange(5))
        raise RuntimeError("killed mid-write")
    assert np.load(target)["a"].tolist() == [0, 1, 2]  # the old file, untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npz"]  # no temporary left
    assert write_text_atomic(tmp_path / "t.txt", "hello").read_text() == "hello"


@pytest.mark.parametrize("kind", ["SIGTERM", "SIGINT"])
def test_a_signal_during_a_write_waits_for_the_write(tmp_path, kind):
    """SIGTERM or Ctrl-C arriving inside ``torch.save`` used to turn into a RuntimeError from
    its zip writer (a traceback, exit status 1); now the write ends first, whole."""
    signum = getattr(signal, kind)
    previous = signal.signal(signal.SIGTERM, _terminate)  # as run_command installs it
    state = {f"w{i}": torch.randn(32, 32) for i in range(8)}
    target = tmp_path / "last.pt"
    try:
        with pytest.raises(Terminated if kind == "SIGTERM" else KeyboardInterrupt):
            with atomic_write(target, "wb") as handle:
                os.kill(os.getpid(), signum)  # delivered at once, held until the block ends
                torch.save(state, handle)
        assert signal.getsignal(signal.SIGTERM) is _terminate  # the handlers are back
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGTERM, previous)
    loaded = torch.load(target, weights_only=True)
    assert all(torch.equal(loaded[k], v) for k, v in state.items())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


def test_a_log_bar_writes_few_whole_lines(monkeypatch):
    """Off a terminal: no carriage returns, one line per interval plus the last state."""
    clock = iter(np.arange(0.0, 1000.0, 0.5))  # each display call advances half a second
    monkeypatch.setattr(progress.time, "monotonic", lambda: float(next(clock)))
    out = io.StringIO()
    bar = progress.progress_bar(200, desc="gen", unit="sample", file=out)
    assert isinstance(bar, progress.LogBar)
    for _ in range(200):
        bar.update()
        bar.set_postfix(residual="1e-9")
    bar.close()
    text = out.getvalue()
    lines = text.splitlines()
    assert "\r" not in text
    assert len(lines) <= 200 * 0.5 / progress.LOG_INTERVAL + 2  # rate-limited, not 400 redraws
    assert lines[0].startswith("gen:   0%") and "200/200" in lines[-1]
    nested = progress.progress_bar(10, file=io.StringIO(), nested=True)
    assert nested.disable  # inner bars stay silent in logs


def test_a_terminal_gets_tqdm(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    bar = progress.progress_bar(3, file=Terminal())
    assert not isinstance(bar, progress.LogBar) and not bar.disable
    bar.close()


def test_failures_become_one_line_and_a_status(capsys):
    def fail(kind):
        def call():
            raise kind("sample 3 went wrong")

        return call

    solve = Failure(SolverFailure, 3, "solve failed", "; finished samples are kept")
    assert run_command("prog", fail(UserError), failures=[solve]) == 2
    assert capsys.readouterr().err == "prog: error: sample 3 went wrong\n"
    assert run_command("prog", fail(SolverFailure), failures=[solve]) == 3
    err = capsys.readouterr().err
    assert err == "prog: solve failed: sample 3 went wrong; finished samples are kept\n"
    assert run_command("prog", fail(KeyboardInterrupt), interrupted="resume it") == 130
    assert capsys.readouterr().err == "prog: interrupted; resume it\n"
    assert run_command("prog", fail(UserError), speak=False) == 2
    assert capsys.readouterr().err == ""
    with pytest.raises(ZeroDivisionError):  # a bug keeps its traceback
        run_command("prog", lambda: 1 // 0)


def test_device_resolution():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(UserError, match="device: 'gpu' is not one of cpu, cuda, auto"):
        resolve_device("gpu")
    if not torch.cuda.is_available():
        assert resolve_device("auto") == torch.device("cpu")
        with pytest.raises(UserError, match="--device: 'cuda' was asked for but no CUDA"):
            resolve_device("cuda", "--device")


def test_every_problem_config_shares_the_common_keys():
    common = set(GenerationConfig.model_fields)
    for schema in (DarcyConfig, NavierStokesConfig):
        assert common <= set(schema.model_fields)
    ns = validate(NavierStokesConfig, {"resolution": 64, "store_resolution": 32})
    dumped = list(ns.model_dump())
    assert dumped[:5] == ["problem", "name", "resolution", "samples", "seed"]
    assert dumped[-4:] == ["batch_size", "device", "storage_dtype", "output"]
    assert ns.output.dir == "runs/data/ns" and DarcyConfig().output.dir == "runs/data/darcy"
    with pytest.raises(UserError, match="batch_size: Input should be less than or equal"):
        validate(DarcyConfig, {"batch_size": 70000})
