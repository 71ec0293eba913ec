"""``scripts/compare_datasets.py``: identical datasets compare equal, one changed bit does not."""

from __future__ import annotations

import importlib.util
import shutil

import h5py
import numpy as np

from tests.conftest import ROOT

spec = importlib.util.spec_from_file_location(
    "compare_datasets", ROOT / "scripts" / "compare_datasets.py"
)
compare = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare)


def test_a_copy_is_the_same_and_one_ulp_is_not(small_dataset, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(small_dataset, copy)
    assert compare.main([str(small_dataset), str(copy)]) == 0
    assert "0 different" in capsys.readouterr().out
    path = next((copy / "data" / "valid").glob("*.hdf5"))
    with h5py.File(path, "r+") as f:
        u = f["t0_fields/u"]
        sample = u[1]
        sample.flat[100] = np.nextafter(sample.flat[100], np.float32(np.inf))
        u[1] = sample
        f["provenance/seconds"][0] = 123.0  # wall-clock time is not compared
    assert compare.main([str(small_dataset), str(copy)]) == 1
    out = capsys.readouterr().out
    assert "t0_fields/u: values differ" in out and "seconds" not in out
