"""``opsolve evaluate``: metrics JSON and figures, at the training and at another resolution."""

import json

import numpy as np
import pytest
import torch

from opsolve.cli import main
from opsolve.data import SteadyDataset
from opsolve.eval.report import load_trained
from tests.opsolve.train.test_train import write_config


@pytest.fixture(scope="module")
def trained_run(small_dataset, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("evaluate")
    run = tmp / "run"
    config = write_config(tmp, small_dataset, run, epochs=2)
    assert main(["train", str(config), "--no-progress"]) == 0
    return run


def _direct_relative_l2(run, data, split, subsample):
    """Per-sample relative L2 recomputed without opsolve's loss code."""
    op, _ = load_trained(run, "best")
    ds = SteadyDataset(data, split, subsample=subsample, normalize_inputs=False)
    errors = []
    with torch.no_grad():
        for i in range(len(ds)):
            x, y = ds[i]["x"][None], ds[i]["y"][None]
            pred = op(x)
            errors.append(float(torch.linalg.norm(pred - y) / torch.linalg.norm(y)))
    return np.array(errors)


@pytest.mark.parametrize("subsample, resolution", [(None, 33), (2, 17)])
def test_evaluate_writes_metrics_and_figures(
    trained_run, small_dataset, subsample, resolution, capsys
):
    args = ["evaluate", str(trained_run), "--data", str(small_dataset), "--figures", "2"]
    if subsample:
        args += ["--subsample", str(subsample)]  # zero-shot at another resolution
    assert main(args) == 0
    out = capsys.readouterr().out
    assert f"test at {resolution}x{resolution} (4 samples" in out
    report = json.loads((trained_run / f"eval_test_{resolution}.json").read_text())
    assert report["resolution"] == resolution and report["trained_resolution"] == 33
    assert report["samples"] == 4 and report["checkpoint"]["which"] == "best"
    for key in ("relative_l2", "relative_h1"):
        values = np.array(report["per_sample"][key])
        assert values.shape == (4,) and np.all(np.isfinite(values)) and np.all(values > 0)
        assert report[key]["mean"] == pytest.approx(values.mean(), rel=1e-12)
        assert report[key]["max"] == pytest.approx(values.max(), rel=1e-12)
    expected = _direct_relative_l2(trained_run, small_dataset, "test", subsample or 1)
    np.testing.assert_allclose(report["per_sample"]["relative_l2"], expected, rtol=1e-5)
    for suffix in ("samples", "hist"):
        figure = trained_run / "figures" / f"eval_test_{resolution}_{suffix}.png"
        assert figure.is_file() and figure.stat().st_size > 10_000


def test_evaluate_other_split_and_last_checkpoint(trained_run, capsys):
    assert main(["evaluate", str(trained_run), "--split", "valid", "--checkpoint", "last"]) == 0
    report = json.loads((trained_run / "eval_valid_33.json").read_text())
    assert report["checkpoint"] == {"which": "last", "epoch": 2, "step": 6}
    # the valid split's mean relative L2 is the last epoch's valid_l2 of training
    rows = (trained_run / "metrics.csv").read_text().splitlines()
    assert report["relative_l2"]["mean"] == pytest.approx(float(rows[-1].split(",")[2]), rel=1e-6)


@pytest.mark.parametrize(
    "args, message",
    [
        (["evaluate", "{tmp}/nothing"], "run directory"),
        (["evaluate", "{run}", "--data", "{tmp}/nothing"], "data.root: directory"),
        (["evaluate", "{run}", "--subsample", "0"], "subsample must be an integer >= 1"),
    ],
)
def test_evaluate_user_errors(trained_run, tmp_path, args, message, capsys):
    args = [a.format(tmp=tmp_path, run=trained_run) for a in args]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("opsolve: error:") and err.count("\n") == 0 and message in err
