import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from datagen.cli import main
from datagen.core.schema import check_schema, split_file
from datagen.verify import verify_file
from tests.conftest import ROOT, SMALL_CONFIG, assert_refused, run_cli

FIELDS = ("a", "f", "u")


def read_split(root, split="train", name="darcy_small"):
    with h5py.File(split_file(root, name, split), "r") as f:
        out = {k: f["t0_fields"][k][...] for k in FIELDS}
        out["seed"] = f["provenance/seed"][...]
        return out


def test_generated_dataset_verifies_and_has_the_schema(small_dataset):
    for split, n in (("train", 12), ("valid", 4), ("test", 4)):
        path = split_file(small_dataset, "darcy_small", split)
        with h5py.File(path, "r") as f:
            assert check_schema(f) == []
            assert f["t0_fields/u"].shape == (n, 1, 33, 33)
            assert f["t0_fields/a"].chunks == (1, 33, 33)
            assert f["t0_fields/u"].dtype == np.float32
            assert set(np.unique(f["t0_fields/a"][...])) == {3.0, 12.0}
            assert np.all(f["t0_fields/u"][:, 0, [0, -1], :] == 0)
            assert f["provenance/residual"][...].max() < 1e-8
            assert "resolution: 33" in f["provenance"].attrs["config"]
        report = verify_file(path)
        assert report.ok, report.problems
        assert report.worst_estimate < 1e-6 and report.threshold < 2e-5
    assert (small_dataset / "stats.yaml").is_file()
    assert (small_dataset / "config.yaml").is_file()
    assert not (small_dataset / ".partial").exists()
    # splits are independent draws
    assert not np.array_equal(
        read_split(small_dataset)["a"][0], read_split(small_dataset, "test")["a"][0]
    )


@pytest.mark.parametrize(
    "overrides",
    [
        ["coefficient.family=lognormal", "face_average=harmonic"],
        ["forcing.kind=random", "forcing.value=10.0", "storage_dtype=float64"],
    ],
)
def test_other_families_generate_and_verify(overrides, tmp_path):
    out = tmp_path / "other"
    args = [
        "generate",
        str(SMALL_CONFIG),
        "resolution=33",
        "samples.train=4",
        "samples.valid=0",
        "samples.test=2",
        f"output.dir={out}",
        "--no-progress",
        *overrides,
    ]
    assert main(args) == 0
    for split in ("train", "test"):
        report = verify_file(split_file(out, "darcy_small", split))
        assert report.ok, report.problems
    data = read_split(out)
    if "forcing.kind=random" in overrides:
        assert data["f"].shape == (4, 33, 33) and data["u"].dtype == np.float64
        assert report.worst_estimate < 1e-8  # float64 storage keeps the solver tolerance
    else:
        assert data["a"].min() > 0 and len(np.unique(data["a"])) > 100  # lognormal


def test_the_well_reader_opens_the_dataset(small_dataset):
    from the_well.data import WellDataset

    well = WellDataset(
        path=str(small_dataset),
        well_split_name="train",
        n_steps_input=0,
        n_steps_output=1,
        use_normalization=False,
    )
    assert len(well) == 12
    sample = well[5]
    ours = read_split(small_dataset)
    np.testing.assert_array_equal(sample["output_fields"][0, ..., 0].numpy(), ours["u"][5, 0])
    np.testing.assert_array_equal(sample["constant_fields"][..., 0].numpy(), ours["a"][5])
    assert sample["space_grid"].shape == (33, 33, 2)
    assert sample["boundary_conditions"].tolist() == [[0, 0], [0, 0]]  # WALL on all sides


def test_sample_alone_equals_sample_in_a_batch(small_dataset, tmp_path):
    out = tmp_path / "alone"
    code = main(
        [
            "generate",
            str(SMALL_CONFIG),
            "resolution=33",
            "samples.train=3",
            "samples.valid=0",
            "samples.test=0",
            "batch_size=1",
            f"output.dir={out}",
            "--no-progress",
        ]
    )
    assert code == 0
    alone, batched = read_split(out), read_split(small_dataset)
    for key in (*FIELDS, "seed"):
        np.testing.assert_array_equal(alone[key], batched[key][:3] if key != "f" else batched[key])


def test_killed_generation_resumes_to_identical_arrays(tmp_path):
    """A real SIGKILL mid-run; the re-run resumes and matches an uninterrupted run."""
    overrides = [
        "resolution=161",
        "samples.train=14",
        "samples.valid=2",
        "samples.test=2",
        "batch_size=1",
        "--no-progress",
    ]
    reference = tmp_path / "reference"
    assert main(["generate", str(SMALL_CONFIG), *overrides, f"output.dir={reference}"]) == 0
    out = tmp_path / "killed"
    args = [
        sys.executable,
        "-m",
        "datagen.cli",
        "generate",
        str(SMALL_CONFIG),
        *overrides,
        f"output.dir={out}",
    ]
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    shards = out / ".partial" / "train"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(shards.glob("*.npz"))) < 3:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(list(shards.glob("*.npz")))
    assert 3 <= done < 14, "the kill should land in the middle of the train split"
    assert not (out / "data").exists() and not (out / "config.yaml").exists()
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    for split in ("train", "valid", "test"):
        resumed, uninterrupted = read_split(out, split), read_split(reference, split)
        for key in (*FIELDS, "seed"):
            np.testing.assert_array_equal(resumed[key], uninterrupted[key])
    assert not (out / ".partial").exists()


def test_resume_with_a_different_config_is_refused_and_names_the_key(tmp_path, capsys):
    from datagen.generate import _comparable
    from datagen.problems.registry import load_generation_config

    out = tmp_path / "other"
    base = [str(SMALL_CONFIG), "resolution=17", f"output.dir={out}"]
    (out / ".partial" / "train").mkdir(parents=True)
    other = load_generation_config(base[0], [*base[1:], "seed=7"])
    (out / ".partial" / "config.yaml").write_text(_comparable(other))
    (out / ".partial" / "train" / "00000000-00000016.npz").write_bytes(b"finished unit")
    assert main(["generate", *base, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds 1 finished work units of an interrupted run" in err
    assert "differs at seed: 7 there, 0 now" in err and "--overwrite to discard them" in err


def test_a_failed_run_without_finished_units_does_not_block_the_next(tmp_path, capsys):
    out = tmp_path / "failed"
    (out / ".partial").mkdir(parents=True)
    (out / ".partial" / "config.yaml").write_text("problem: darcy\nseed: 7\n")  # no shard
    args = ["generate", str(SMALL_CONFIG), "resolution=17", f"output.dir={out}", "--no-progress"]
    assert main(args) == 0, capsys.readouterr().err


BAD_OVERRIDES = [
    (["resolutoin=64"], "did you mean 'resolution'"),
    (["seed=abc"], "seed: 'abc' has the wrong type"),
    (["resolution=3"], "resolution: Input should be greater than or equal to 5"),
    (["resolution=64.5"], "resolution: 64.5 has the wrong type"),
    (["samples.train=-4"], "samples.train: Input should be greater than or equal to 0"),
    (["coefficient.family=gaussian"], "coefficient.family: 'gaussian' is not allowed"),
    (["samples.tran=4"], "did you mean 'samples.train'"),
    (["nokey"], "must look like key=value"),
]


@pytest.mark.parametrize("overrides,message", BAD_OVERRIDES)
def test_bad_config_is_one_line_and_writes_nothing(overrides, message, tmp_path, capsys):
    assert_refused(SMALL_CONFIG, overrides, message, tmp_path / "never", capsys)


def test_cli_user_error_exits_nonzero_without_traceback(tmp_path):
    result = run_cli("generate", str(SMALL_CONFIG), "resolution=two", f"output.dir={tmp_path}/x")
    assert result.returncode == 2
    assert result.stderr.startswith("datagen: error:") and "Traceback" not in result.stderr
    assert not (tmp_path / "x").exists()


def test_unwritable_output_and_missing_config(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert main(["generate", str(SMALL_CONFIG), f"output.dir={blocker}/sub"]) == 2
    assert "cannot write to" in capsys.readouterr().err
    assert main(["generate", str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("resolution: [1, 2\n")
    assert main(["generate", str(bad_yaml)]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_existing_output_needs_overwrite(dataset_copy, capsys):
    before = read_split(dataset_copy)
    stamp = (dataset_copy / "config.yaml").stat().st_mtime_ns
    args = [
        "generate",
        str(SMALL_CONFIG),
        "resolution=33",
        "samples.train=2",
        "samples.valid=0",
        "samples.test=0",
        f"output.dir={dataset_copy}",
        "--no-progress",
    ]
    assert main(args) == 2
    assert "already holds a dataset; pass --overwrite" in capsys.readouterr().err
    assert (dataset_copy / "config.yaml").stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(read_split(dataset_copy)["u"], before["u"])
    assert main([*args, "--overwrite"]) == 0
    assert read_split(dataset_copy)["u"].shape[0] == 2


def test_verify_rejects_truncated_and_corrupted_files(dataset_copy, capsys):
    path = split_file(dataset_copy, "darcy_small", "train")
    assert main(["verify", str(path)]) == 0
    # silent corruption of the data: a 0.05% change of one solution is caught
    with h5py.File(path, "r+") as f:
        f["t0_fields/u"][3] *= 1.0005
    assert main(["verify", str(path)]) == 1
    assert "FAIL" in capsys.readouterr().out
    # NaN in a field
    with h5py.File(path, "r+") as f:
        f["t0_fields/a"][1, 5, 5] = np.nan
    assert main(["verify", str(path)]) == 1
    assert "NaN or inf" in capsys.readouterr().out
    # truncated file: one line, exit 2
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    assert main(["verify", str(path)]) == 2
    err = capsys.readouterr().err
    assert "not a readable HDF5 file" in err and err.count("\n") == 1
    # clobbered header
    path.write_bytes(b"\0" * 64 + data[64:])
    assert main(["verify", str(path)]) == 2


def test_verify_reports_schema_problems(dataset_copy, capsys):
    path = split_file(dataset_copy, "darcy_small", "valid")
    with h5py.File(path, "r+") as f:
        del f["provenance/residual"]
    assert main(["verify", str(path)]) == 1
    assert "provenance/residual missing" in capsys.readouterr().out


def test_info_prints_a_summary_and_saves_a_figure(small_dataset, tmp_path, capsys):
    figure = tmp_path / "fig.png"
    assert main(["info", str(small_dataset), "--figure", str(figure), "--count", "2"]) == 0
    out = capsys.readouterr().out
    assert "field u: (12, 1, 33, 33) float32" in out and "direct-superlu x12" in out
    assert figure.stat().st_size > 10_000 and figure.read_bytes()[:4] == b"\x89PNG"


def test_a_failed_solve_is_reported_and_finished_work_kept(tmp_path, monkeypatch, capsys):
    import datagen.problems.darcy.recipe as gen
    from datagen.linalg.krylov import SolveInfo

    calls = {"n": 0}
    real = gen.solve_direct

    def flaky(a, f, average):
        calls["n"] += 1
        if calls["n"] == 4:
            return np.full_like(a, np.nan), SolveInfo("direct-superlu", 0, float("nan"), 0.0)
        return real(a, f, average)

    monkeypatch.setattr(gen, "solve_direct", flaky)
    out = tmp_path / "nan"
    args = [
        "generate",
        str(SMALL_CONFIG),
        "resolution=17",
        "samples.train=6",
        "samples.valid=0",
        "samples.test=0",
        "batch_size=1",
        f"output.dir={out}",
        "--no-progress",
        "solver.method=direct",
    ]
    assert main(args) == 3
    err = capsys.readouterr().err
    assert "train sample 3: the solve produced NaN or inf" in err and err.count("\n") == 1
    assert len(list((out / ".partial" / "train").glob("*.npz"))) == 3
    assert main(args) == 0  # re-run resumes from sample 3
    assert read_split(out)["u"].shape == (6, 1, 17, 17)


def test_info_on_a_foreign_file(tmp_path, capsys):
    from the_well.utils.dummy_data import write_dummy_data

    path = tmp_path / "dummy.hdf5"
    write_dummy_data(str(path))
    assert main(["info", str(path), "--figure", str(tmp_path / "x.png")]) == 2
    assert "cannot plot a file of another schema" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["direct", "pcg", "skr"])
def test_solver_methods_agree(method, small_dataset, tmp_path):
    out = tmp_path / method
    args = [
        "generate",
        str(SMALL_CONFIG),
        "resolution=33",
        "samples.train=5",
        "samples.valid=0",
        "samples.test=0",
        f"solver.method={method}",
        f"output.dir={out}",
        "--no-progress",
    ]
    assert main(args) == 0
    ours, reference = read_split(out), read_split(small_dataset)
    np.testing.assert_array_equal(ours["a"], reference["a"][:5])
    np.testing.assert_allclose(
        ours["u"], reference["u"][:5], rtol=1e-6, atol=1e-6 * ours["u"].max()
    )
    with h5py.File(split_file(out, "darcy_small", "train"), "r") as f:
        methods = set(f["provenance/method"].asstr()[...])
        iterations = f["provenance/iterations"][...]
    names = {"direct": "direct-superlu", "pcg": "pcg-multigrid", "skr": "skr-multigrid"}
    assert methods == {names[method]}
    if method != "direct":
        assert 5 <= iterations.min() and iterations.max() <= 15


def test_skr_sorts_recycles_and_records_the_order(tmp_path):
    """SKR with Jacobi-CG on 16 samples in 2 chains: after each chain's first system, the
    recycled, warm-started solves need well under the iterations of plain Jacobi-CG (measured
    66-81 against 113-120 at 33 x 33), and each sample's sort position is stored."""
    results = {}
    for method in ("pcg", "skr"):
        out = tmp_path / method
        args = [
            "generate",
            str(SMALL_CONFIG),
            "resolution=33",
            "samples.train=16",
            "samples.valid=0",
            "samples.test=0",
            "batch_size=16",
            f"solver.method={method}",
            "solver.preconditioner=jacobi",
            "solver.chains=2",
            f"output.dir={out}",
            "--no-progress",
        ]
        assert main(args) == 0
        with h5py.File(split_file(out, "darcy_small", "train"), "r") as f:
            results[method] = {
                k: f[f"provenance/{k}"][...] for k in ("iterations", "sort_position")
            }
            assert set(f["provenance/method"].asstr()[...]) == {f"{method}-jacobi"}
        assert verify_file(split_file(out, "darcy_small", "train")).ok
    position = results["skr"]["sort_position"]
    assert sorted(position.tolist()) == list(range(16)) and position[0] == 0
    plain, skr = results["pcg"]["iterations"], results["skr"]["iterations"]
    later = skr[(position != 0) & (position != 8)]  # not the first system of a chain
    assert later.max() < 0.8 * plain.min()
    np.testing.assert_allclose(
        read_split(tmp_path / "skr")["u"], read_split(tmp_path / "pcg")["u"], rtol=0, atol=1e-6
    )


def test_pyamg_preconditioner_option(small_dataset, tmp_path, capsys):
    out = tmp_path / "pyamg"
    args = [
        "generate",
        str(SMALL_CONFIG),
        "resolution=33",
        "samples.train=3",
        "samples.valid=0",
        "samples.test=0",
        "solver.method=pcg",
        "solver.preconditioner=pyamg",
        f"output.dir={out}",
        "--no-progress",
    ]
    assert main(args) == 0
    ours, reference = read_split(out), read_split(small_dataset)
    np.testing.assert_allclose(ours["u"], reference["u"][:3], rtol=0, atol=1e-6 * ours["u"].max())
    with h5py.File(split_file(out, "darcy_small", "train"), "r") as f:
        assert set(f["provenance/method"].asstr()[...]) == {"pcg-pyamg"}
        assert f["provenance/iterations"][...].max() <= 15
    capsys.readouterr()
    assert main([*args[:-2], "device=cuda", f"output.dir={tmp_path / 'gpu'}", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "'pyamg' runs on the CPU only" in err and err.count("\n") == 1


def test_unconverged_samples_fall_back_to_direct(tmp_path):
    out = tmp_path / "fallback"
    args = [
        "generate",
        str(SMALL_CONFIG),
        "resolution=33",
        "samples.train=3",
        "samples.valid=0",
        "samples.test=0",
        "solver.method=pcg",
        "solver.preconditioner=jacobi",
        "solver.maxiter=3",
        f"output.dir={out}",
        "--no-progress",
    ]
    assert main(args) == 0
    with h5py.File(split_file(out, "darcy_small", "train"), "r") as f:
        assert set(f["provenance/method"].asstr()[...]) == {"direct-fallback"}
        assert f["provenance/iterations"][...].tolist() == [3, 3, 3]
        assert f["provenance/residual"][...].max() < 1e-12
    assert verify_file(split_file(out, "darcy_small", "train")).ok


def test_auto_method_follows_the_benchmark():
    import torch

    from datagen.core.config import validate
    from datagen.problems.darcy.config import DarcyConfig
    from datagen.problems.darcy.recipe import choose_method

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert choose_method(validate(DarcyConfig, {"resolution": 64}), cpu) == "direct"
    assert choose_method(validate(DarcyConfig, {"resolution": 129}), cpu) == "pcg"
    assert choose_method(validate(DarcyConfig, {"resolution": 64}), gpu) == "pcg"
    fixed = validate(DarcyConfig, {"resolution": 421, "solver": {"method": "direct"}})
    assert choose_method(fixed, cpu) == "direct"


def test_a_run_stopped_while_it_assembles_the_splits_resumes(tmp_path, monkeypatch):
    """Ctrl-C after the split files are written but before the shards are removed: the same
    command finishes the dataset (the split files are not taken for a finished dataset)."""
    import datagen.generate as generate_module

    out = tmp_path / "out"
    args = ["generate", str(SMALL_CONFIG), "resolution=17", "samples.train=3", "samples.valid=0",
            "samples.test=2", "batch_size=2", f"output.dir={out}", "--no-progress"]  # fmt: skip

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(generate_module, "write_stats", interrupted)
    assert main(args) == 130
    assert split_file(out, "darcy_small", "train").is_file() and (out / ".partial").is_dir()
    monkeypatch.undo()
    assert main(args) == 0
    assert not (out / ".partial").exists() and (out / "stats.yaml").is_file()
    assert main(args) == 2  # now finished: refused without --overwrite
