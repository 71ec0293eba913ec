"""Execute the example notebooks top to bottom on tiny settings."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
# notebook -> "params": the values that replace its "parameters" cell (OUTPUT is added: a
# temporary directory), "writes": a file the notebook must have written, relative to OUTPUT.
TINY = {
    "assimilation.ipynb": {
        "params": {
            "SAMPLES": {"train": 4, "valid": 2, "test": 2},
            "RECORDS": 60,
            "EPOCHS": 1,
            "WINDOW": 24,
            "WIDTH": 8,
            "WARMUP": 10,
            "HORIZON": 40,
            "DENSITIES": [0.1, 0.25],
        },
        "writes": "observer/assimilate_test_64_random_d0.25_n0.05.json",
    },
    "darcy.ipynb": {
        "params": {
            "RESOLUTION": 33,
            "SAMPLES": {"train": 8, "valid": 2, "test": 2},
            "EPOCHS": 1,
        },
        "writes": "compare/comparison.md",
    },
    "darcy_dataset.ipynb": {
        "params": {
            "RESOLUTION": 33,
            "SAMPLES": {"train": 8, "valid": 2, "test": 2},
            "SUBSAMPLE": 2,
        },
        "writes": "data/train/darcy_small_train.hdf5",
    },
    "navier_stokes_rollout.ipynb": {
        "params": {
            "RESOLUTION": 32,
            "STORE_RESOLUTION": 16,
            "SAMPLES": {"train": 4, "valid": 2, "test": 2},
            "MODES": [4, 4, 3],
            "WIDTH": 8,
            "EPOCHS": 2,
            "REFINE_STEPS": 10,
            "REFINE_TRAJECTORIES": 1,
        },
        "writes": "sfno/refine_test_16.json",
    },
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_notebook_runs(name, tmp_path):
    nb = nbformat.read(ROOT / "examples" / name, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, "each example has one cell tagged 'parameters'"
    output = tmp_path / "out"
    values = {**TINY[name]["params"], "OUTPUT": str(output)}
    params[0].source = "\n".join(f"{k} = {v!r}" for k, v in values.items())
    NotebookClient(nb, timeout=300, resources={"metadata": {"path": str(ROOT)}}).execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    assert (output / TINY[name]["writes"]).is_file()
