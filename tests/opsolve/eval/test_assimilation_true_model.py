"""The classical filters' true model (``benchmarks/assimilation.py``): one record interval of
the generator's own solver reproduces the stored trajectory, for a Navier-Stokes file whose
forcing is one field shared by all samples."""

from __future__ import annotations

import sys

import h5py
import numpy as np
import torch

from tests.conftest import ROOT, run_cli


def test_the_navier_stokes_true_model_steps_to_the_next_stored_record(tmp_path):
    out = tmp_path / "ns_tiny"
    result = run_cli(
        "generate",
        str(ROOT / "configs" / "datagen" / "ns_small.yaml"),
        "resolution=16",
        "store_resolution=16",
        "samples.train=2",
        "samples.valid=2",
        "samples.test=2",
        "time.end=1.0",
        "time.records=2",
        "time.dt=0.02",
        f"output.dir={out}",
        "--no-progress",
    )
    assert result.returncode == 0, result.stderr
    path = next((out / "data" / "test").glob("*.hdf5"))
    with h5py.File(path, "r") as f:
        assert not f["t0_fields"]["forcing"].attrs["sample_varying"]
        frames = torch.from_numpy(np.asarray(f["t0_fields"]["vorticity"][()], np.float64))
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        from assimilation import true_model
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    step = true_model(path, 0.5)
    # the records are stored in float32
    torch.testing.assert_close(step(frames[:, 0]), frames[:, 1], rtol=1e-5, atol=1e-6)
