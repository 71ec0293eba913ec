"""Training and evaluation inputs that used to end in a traceback, a wrong OK or a blocked run."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

from opsolve.cli import main
from tests.conftest import ROOT
from tests.opsolve.train.test_train import write_config


@pytest.fixture(scope="module")
def fno_run(tmp_path_factory, small_dataset):
    tmp = tmp_path_factory.mktemp("robust")
    run = tmp / "fno"
    assert (
        main(["train", str(write_config(tmp, small_dataset, run, epochs=2)), "--no-progress"]) == 0
    )
    return run


def test_a_copied_run_resumes(fno_run, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(fno_run, copy)
    root = yaml.safe_load((copy / "config.yaml").read_text())["data"]["root"]
    config = write_config(tmp_path, root, copy, epochs=2)  # the same run, in another place
    assert main(["train", str(config), "--resume", "--no-progress"]) == 0, capsys.readouterr().err
    assert "resumed after epoch 2" in (copy / "log.txt").read_text()


def test_a_checkpoint_of_another_model_is_refused(fno_run, tmp_path, capsys, small_dataset):
    mgno = tmp_path / "mgno"
    config = write_config(
        tmp_path, small_dataset, mgno, epochs=1,
        model={"name": "mgno", "params": {"num_layers": 1, "width": 4, "levels": 3}},
    )  # fmt: skip
    assert main(["train", str(config), "--no-progress"]) == 0, capsys.readouterr().err
    mixed = tmp_path / "mixed"
    shutil.copytree(fno_run, mixed)
    shutil.copy(mgno / "checkpoints" / "best.pt", mixed / "checkpoints" / "best.pt")
    assert main(["evaluate", str(mixed)]) == 2
    err = capsys.readouterr().err
    assert "holds a 'mgno' model, but" in err and "trained 'fno'" in err and err.count("\n") == 1


def test_train_and_compare_count_the_same_parameters(fno_run, tmp_path, capsys):
    logged = re.search(r"\(([\d,]+) parameters\)", (fno_run / "log.txt").read_text()).group(1)
    assert main(["compare", str(fno_run), "--out", str(tmp_path / "cmp"), "--samples", "0"]) == 0
    assert f"| {logged} |" in capsys.readouterr().out


def test_a_broken_stats_file_is_one_line(small_dataset, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(small_dataset, data)
    (data / "stats.yaml").write_text("mean: [1\n")
    out = tmp_path / "run"
    assert main(["train", str(write_config(tmp_path, data, out)), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "stats.yaml is not valid YAML; delete" in err and "computed again" in err
    assert not out.exists()


@pytest.mark.parametrize(
    "override, message",
    [
        ("data.subsample=100", "subsample: 100 leaves 1 x 1 of the 33 x 33 grid"),
        ("model.params.n_modes=[40,40]", "n_modes [40, 40] does not fit the 33 x 33 grid"),
        ("model.params.hidden_channels=-3", "model.params: cannot build 'fno'"),
    ],
)
def test_model_and_grid_mismatches_are_one_line(override, message, small_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(
        ["train", str(write_config(tmp_path, small_dataset, out)), override, "--no-progress"]
    )
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not out.exists()


def test_evaluate_at_a_grid_too_coarse_is_one_line(fno_run, capsys):
    assert main(["evaluate", str(fno_run), "--subsample", "100"]) == 2
    assert "subsample: 100 leaves 1 x 1" in capsys.readouterr().err


def test_sigterm_stops_training_with_the_resume_line(small_dataset, tmp_path):
    run = tmp_path / "term"
    config = write_config(tmp_path, small_dataset, run, epochs=100_000)  # never finishes first
    args = [sys.executable, "-m", "opsolve.cli", "train", str(config), "--no-progress"]
    process = subprocess.Popen(args, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run / "checkpoints" / "last.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143
    assert err.strip().endswith("interrupted; run the same command with --resume to continue")
