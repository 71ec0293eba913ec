"""Execute the example notebooks top to bottom on tiny settings."""

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "darcy_dataset.ipynb": {
        "RESOLUTION": 33,
        "SAMPLES": {"train": 8, "valid": 2, "test": 2},
        "SUBSAMPLE": 2,
    },
}


@pytest.mark.parametrize("name", sorted(TINY))
def test_notebook_runs(name, tmp_path):
    nb = nbformat.read(ROOT / "examples" / name, as_version=4)
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, "each example has one cell tagged 'parameters'"
    values = {**TINY[name], "OUTPUT": str(tmp_path / "data")}
    params[0].source = "\n".join(f"{k} = {v!r}" for k, v in values.items())
    NotebookClient(nb, timeout=300, resources={"metadata": {"path": str(ROOT)}}).execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    assert (tmp_path / "data" / "data" / "train" / "darcy_small_train.hdf5").is_file()
