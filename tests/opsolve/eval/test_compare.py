"""``opsolve compare``: one table and figures for several runs on the same split."""

import json

import pytest

from opsolve.cli import main
from tests.opsolve.train.test_train import write_config

MGNO = {
    "name": "mgno",
    "params": {"width": 4, "num_layers": 1, "levels": 3, "smoothing": [1, 1, 1]},
}


@pytest.fixture(scope="module")
def two_runs(small_dataset, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compare")
    runs = []
    for name, extra in (("fno_run", {}), ("mgno_run", {"model": MGNO})):
        run = tmp / name
        config = write_config(tmp, small_dataset, run, epochs=2, **extra)
        assert main(["train", str(config), "--no-progress"]) == 0
        runs.append(run)
    return runs


def test_compare_table_matches_each_evaluation(two_runs, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", *map(str, two_runs), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| fno_run | fno |" in printed and "| mgno_run | mgno |" in printed
    result = json.loads((out / "comparison.json").read_text())
    assert (out / "comparison.md").read_text() in printed
    for run in two_runs:
        row = result["rows"][run.name]
        # the same numbers as evaluating the run on its own (written by the same call)
        own = json.loads((run / "eval_test_33.json").read_text())
        assert row["relative_l2"] == own["relative_l2"]["mean"]
        assert row["relative_h1"] == own["relative_h1"]["mean"]
        assert row["epochs"] == 2 and row["samples"] == 4 and row["parameters"] > 0
    best = min(r["relative_l2"] for r in result["rows"].values())
    ratios = [r["relative_l2"] / best for r in result["rows"].values()]
    assert min(ratios) == 1.0 and f"{max(ratios):.2f}x" in printed
    for name in ("comparison_samples.png", "comparison_curves.png"):
        assert (out / name).stat().st_size > 10_000


def test_compare_refuses_mismatched_or_missing_runs(two_runs, small_dataset, tmp_path, capsys):
    assert main(["compare", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("opsolve: error:") and "not a training run" in err
    # a run trained at another resolution cannot share a table with the others
    coarse = tmp_path / "coarse"
    config = write_config(tmp_path, small_dataset, coarse, epochs=1, data={"subsample": 2})
    assert main(["train", str(config), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["compare", str(two_runs[0]), str(coarse), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "different resolutions" in err and err.count("\n") == 0
