import pickle

import h5py
import numpy as np
import pytest
import torch
import yaml

from datagen.core.errors import UserError
from datagen.core.schema import split_file
from opsolve.data import SteadyDataset, load_statistics


def test_samples_are_channels_first_and_subsampled(small_dataset):
    ds = SteadyDataset(small_dataset, "train", normalize_inputs=False)
    assert len(ds) == 12 and ds.inputs == ["a"] and ds.outputs == ["u"]
    with h5py.File(split_file(small_dataset, "darcy_small", "train"), "r") as f:
        a, u = f["t0_fields/a"][7], f["t0_fields/u"][7, 0]
    sample = ds[7]
    assert sample["x"].shape == (1, 33, 33) and sample["y"].shape == (1, 33, 33)
    assert sample["x"].dtype == torch.float32
    np.testing.assert_array_equal(sample["x"][0].numpy(), a)
    for r, size in ((2, 17), (4, 9), (8, 5)):  # as 421 -> 211 (r = 2) and 421 -> 85 (r = 5)
        coarse = SteadyDataset(small_dataset, "train", subsample=r, normalize_inputs=False)
        assert coarse.resolution == size
        np.testing.assert_array_equal(coarse[7]["y"][0].numpy(), u[::r, ::r])
        assert float(coarse[7]["y"][0, -1].abs().max()) == 0.0  # boundary kept


def test_normalization_uses_stored_train_statistics(dataset_copy):
    (dataset_copy / "stats.yaml").unlink()
    ds = SteadyDataset(dataset_copy, "valid")  # computes train stats once and stores them
    stats = yaml.safe_load((dataset_copy / "stats.yaml").read_text())
    with h5py.File(split_file(dataset_copy, "darcy_small", "train"), "r") as f:
        a = f["t0_fields/a"][...].astype(np.float64)
    assert stats["mean"]["a"] == pytest.approx(a.mean(), rel=1e-12)
    assert stats["std"]["a"] == pytest.approx(a.std(), rel=1e-10)
    x = ds[0]["x"][0].numpy()
    with h5py.File(split_file(dataset_copy, "darcy_small", "valid"), "r") as f:
        raw = f["t0_fields/a"][0]
    np.testing.assert_allclose(x, (raw - stats["mean"]["a"]) / stats["std"]["a"], rtol=1e-6)
    assert load_statistics(dataset_copy) == stats  # read back, not recomputed


def test_reads_lazily_and_pickles_for_workers(small_dataset):
    ds = SteadyDataset(small_dataset, "test")
    assert ds._file is None
    ds[0]
    assert ds._file is not None
    clone = pickle.loads(pickle.dumps(ds))
    assert clone._file is None
    torch.testing.assert_close(clone[3]["y"], ds[3]["y"])
    loader = torch.utils.data.DataLoader(ds, batch_size=4)
    batch = next(iter(loader))
    assert batch["x"].shape == (4, 1, 33, 33)


def test_bad_requests_are_user_errors(small_dataset, tmp_path):
    with pytest.raises(UserError, match="split 'training'"):
        SteadyDataset(small_dataset, "training")
    with pytest.raises(UserError, match="subsample must be an integer >= 1"):
        SteadyDataset(small_dataset, subsample=0)
    with pytest.raises(UserError, match="field 'p' is not in"):
        SteadyDataset(small_dataset, outputs=["p"])
    with pytest.raises(IndexError):
        SteadyDataset(small_dataset)[12]


def test_a_file_of_another_schema_is_refused(tmp_path):
    from the_well.utils.dummy_data import write_dummy_data

    root = tmp_path / "well"
    (root / "data" / "train").mkdir(parents=True)
    write_dummy_data(str(root / "data" / "train" / "dummy.hdf5"))
    with pytest.raises(UserError, match="not a dataset file of this package"):
        SteadyDataset(root, "train")
    (root / "data" / "train" / "dummy.hdf5").write_bytes(b"not hdf5 at all")
    with pytest.raises(UserError, match="not a readable HDF5 file"):
        SteadyDataset(root, "train")


def test_fno_benchmark_config_at_full_size(tmp_path):
    """The real 421 x 421 config (3 samples): generates, verifies, subsamples to 85 and 211."""
    from datagen.cli import main
    from datagen.verify import verify_file
    from tests.conftest import ROOT

    out = tmp_path / "fno"
    config = ROOT / "configs" / "datagen" / "darcy_fno.yaml"
    args = ["generate", str(config), "samples.train=2", "samples.valid=0", "samples.test=1"]
    assert main([*args, f"output.dir={out}", "--no-progress"]) == 0
    report = verify_file(split_file(out, "darcy_fno_421", "train"))
    assert report.ok and report.worst_estimate < 1e-6
    for r, size in ((5, 85), (2, 211)):
        sample = SteadyDataset(out, "test", subsample=r)[0]
        assert sample["x"].shape == (1, size, size) and sample["y"].shape == (1, size, size)
