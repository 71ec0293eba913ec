"""Navier-Stokes dataset generation: files, resume, readers, verification, bad input."""

import re

import h5py
import numpy as np
import pytest
import torch

from datagen.cli import main
from datagen.core.schema import check_schema, split_file
from datagen.problems.navier_stokes import physics as ns
from datagen.verify import verify_file
from opsolve.data import TrajectoryDataset
from tests.conftest import ROOT

NS_CONFIG = ROOT / "configs" / "datagen" / "ns_small.yaml"
TINY = [
    "resolution=32",
    "store_resolution=16",
    "samples.train=5",
    "samples.valid=2",
    "samples.test=2",
    "time.end=2.0",
    "time.records=8",
    "time.dt=0.02",
    "batch_size=3",
    "--no-progress",
]


def generate(out, *extra):
    return main(["generate", str(NS_CONFIG), *TINY, f"output.dir={out}", *extra])


@pytest.fixture(scope="module")
def ns_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("ns") / "ns"
    assert generate(out, "store_fine=true") == 0
    return out


def read(root, split="train", name="ns_small"):
    with h5py.File(split_file(root, name, split), "r") as f:
        return f["t0_fields/vorticity"][...], f["dimensions/time"][...], dict(f.attrs)


def test_files_have_the_schema_times_and_parameters(ns_dataset):
    w, times, attrs = read(ns_dataset)
    assert w.shape == (5, 9, 16, 16) and w.dtype == np.float32
    np.testing.assert_allclose(times, np.linspace(0, 2, 9), atol=1e-6)
    assert attrs["viscosity"] == 1e-3 and attrs["opsolve_format"] == "opsolve-trajectory-1"
    with h5py.File(split_file(ns_dataset, "ns_small", "train"), "r") as f:
        assert check_schema(f) == []
        assert f["boundary_conditions/x_periodic"].attrs["bc_type"] == "PERIODIC"
        np.testing.assert_allclose(f["dimensions/x"][...], np.arange(16) / 16)
        assert (f["provenance/steps"][...] == 8 * 13).all()  # ceil(0.25 / 0.02) per record
    for split in ("train", "valid", "test"):
        assert verify_file(split_file(ns_dataset, "ns_small", split)).ok


def test_stored_frames_are_the_truncated_solve_and_fine_copy_exists(ns_dataset):
    """The 16^2 file equals the spectral truncation of the 32^2 copy (store_fine)."""
    coarse, _, _ = read(ns_dataset)
    fine_root = ns_dataset.parent / "ns_32"
    fine, _, attrs = read(fine_root)
    assert fine.shape == (5, 9, 32, 32)
    truncated = ns.truncate(torch.from_numpy(fine).double().flatten(0, 1), 16)
    np.testing.assert_allclose(coarse.reshape(-1, 16, 16), truncated.numpy(), atol=1e-5)
    assert verify_file(split_file(fine_root, "ns_small", "train")).ok


def test_trajectory_equals_a_direct_simulation(ns_dataset):
    """Sample 4 of train, re-simulated alone, matches the file (batch of 3 + resume order)."""
    from datagen.problems.navier_stokes.recipe import forcing_field, initial_vorticity
    from datagen.problems.registry import load_generation_config

    cfg = load_generation_config(str(NS_CONFIG), [t for t in TINY if "=" in t])
    w0, _ = initial_vorticity(cfg, "train", np.array([4]), torch.device("cpu"))
    out = ns.simulate(
        w0,
        forcing_field(cfg, 32, dtype=w0.dtype),
        nu=1e-3,
        dt=0.02,
        record_times=cfg.time.record_times(),
        store_size=16,
    )
    stored, _, _ = read(ns_dataset)
    np.testing.assert_allclose(stored[4], out.frames[0].numpy(), atol=1e-5)


def test_the_well_reader_and_our_loader_open_the_file(ns_dataset):
    from the_well.data import WellDataset

    well = WellDataset(
        path=str(ns_dataset),
        well_split_name="train",
        n_steps_input=3,
        n_steps_output=2,
        use_normalization=False,
    )
    sample = well[0]
    assert tuple(sample["input_fields"].shape) == (3, 16, 16, 1)
    assert tuple(sample["output_fields"].shape) == (2, 16, 16, 1)
    stored, _, _ = read(ns_dataset)
    np.testing.assert_allclose(sample["input_fields"][..., 0].numpy(), stored[0, :3])
    ours = TrajectoryDataset(ns_dataset, "train", input_steps=3, output_steps=2, stride=2)
    assert len(ours) == 5 * 3  # (9 - 5) // 2 + 1 windows per trajectory
    item = ours[4]  # trajectory 1, records 2..6
    np.testing.assert_array_equal(item["x"].numpy(), stored[1, 2:5])
    np.testing.assert_array_equal(item["y"].numpy(), stored[1, 5:7])


def test_verify_catches_a_wrong_viscosity_and_a_corrupted_frame(ns_dataset, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(ns_dataset, copy)
    path = split_file(copy, "ns_small", "train")
    with h5py.File(path, "r+") as f:
        f.attrs["viscosity"] = 0.05
    report = verify_file(path)
    assert not report.ok and "PDE residual" in report.problems[0]
    with h5py.File(path, "r+") as f:
        f.attrs["viscosity"] = 1e-3
        f["t0_fields/vorticity"][2, 4] *= 1.1
    report = verify_file(path)
    assert not report.ok and "first: sample 2" in report.problems[0]


def test_killed_generation_resumes_to_identical_arrays(tmp_path, monkeypatch):
    reference = tmp_path / "reference"
    assert generate(reference) == 0
    import datagen.problems.navier_stokes.recipe as nsd

    real, calls = nsd.solve_unit, []

    def dies_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    out = tmp_path / "killed"
    monkeypatch.setattr(nsd, "solve_unit", dies_on_third)
    assert generate(out) == 130
    assert len(list((out / ".partial" / "train").glob("*.npz"))) == 2
    monkeypatch.setattr(nsd, "solve_unit", real)
    assert generate(out) == 0
    for split in ("train", "valid", "test"):
        np.testing.assert_array_equal(read(out, split)[0], read(reference, split)[0])


def test_cfl_violation_is_reported_with_sample_and_time(tmp_path, capsys):
    code = generate(tmp_path / "x", "time.dt=0.5", "time.cfl_max=0.05")
    err = capsys.readouterr().err
    assert code == 3 and re.search(r"train sample \d at t = 0: CFL number [\d.]+ exceeds", err)
    assert "time.adaptive=true" in err and err.count("\n") == 1


def test_adaptive_run_stays_below_cfl(tmp_path):
    out = tmp_path / "adaptive"
    assert generate(out, "time.dt=0.5", "time.cfl_max=0.05", "time.adaptive=true") == 0
    with h5py.File(split_file(out, "ns_small", "train"), "r") as f:
        # steps are chosen from the velocity at the start of each record interval
        assert f["provenance/max_cfl"][...].max() <= 0.05 * 1.1
        assert f["provenance/steps"][...].min() > 4


BAD = [
    (["viscosity=-1e-3"], "viscosity: Input should be greater than 0"),
    (["store_resolution=64"], "store_resolution (64) must not exceed the solve resolution (32)"),
    (["resolution=33"], "resolution must be even"),
    (["time.end=0.0"], "time.end: Input should be greater than 0"),
    (["time.scheme=euler"], "time.scheme: 'euler' is not allowed"),
    (["problem=burgers"], "problem: 'burgers' is not allowed; expected one of 'darcy'"),
    (["forcing.kind=random"], "forcing.kind: 'random' is not allowed"),
]


@pytest.mark.parametrize("overrides,message", BAD)
def test_bad_config_is_one_line(overrides, message, tmp_path, capsys):
    out = tmp_path / "never"
    code = generate(out, *overrides)
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_info_draws_snapshots_and_budgets(ns_dataset, tmp_path, capsys):
    figure = tmp_path / "ns.png"
    assert main(["info", str(ns_dataset), "--figure", str(figure), "--count", "2"]) == 0
    assert figure.stat().st_size > 20_000
    assert "navier_stokes" in capsys.readouterr().out
