"""What goes wrong during or around a generation: nothing is lost, one line says what to do."""

from __future__ import annotations

import errno
import resource
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

import datagen.core.resources as resources
import datagen.generate as generate_module
from datagen.cli import main
from tests.conftest import ROOT, SMALL_CONFIG

TINY = [str(SMALL_CONFIG), "resolution=17", "samples.valid=2", "samples.test=2", "batch_size=4"]


def arrays(root):
    out = {}
    for path in sorted(root.rglob("*.hdf5")):
        with h5py.File(path, "r") as f:
            out[path.name] = f["t0_fields/u"][...]
    return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "d"
    assert main(["generate", *TINY, f"output.dir={out}", "--no-progress"]) == 0
    return arrays(out)


def test_memory_and_disk_guards_refuse_before_any_work(tmp_path, capsys, monkeypatch):
    out = tmp_path / "big"
    huge = ["resolution=4097", "samples.train=4096", "batch_size=4096", "solver.method=pcg"]
    assert main(["generate", str(SMALL_CONFIG), *huge, f"output.dir={out}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "batch_size: a work unit of 4096 samples" in err
    assert "of memory" in err and "lower batch_size (at most" in err and not out.exists()
    monkeypatch.setattr(resources, "free_disk", lambda path: 10**5)  # 100 kB free
    assert main(["generate", *TINY, f"output.dir={out}"]) == 2
    err = capsys.readouterr().err
    assert "samples: the dataset needs about" in err and "100 kB are free" in err
    assert not out.exists()


def test_the_memory_models_follow_the_batch():
    from datagen.problems.registry import load_generation_config

    cfg = load_generation_config(SMALL_CONFIG, ["resolution=257", "solver.method=pcg"])
    cpu = generate_module.resolve_device("cpu")
    recipe = generate_module.get_problem("darcy").recipe(cfg, cpu, False)
    one, sixteen = recipe.unit_memory(1), recipe.unit_memory(16)
    assert 10e6 < one < 40e6 and sixteen == pytest.approx(16 * one)  # 300 B per node
    assert resources.largest_batch(recipe, 5.5 * one) == 5


def test_a_file_size_limit_is_refused_up_front(tmp_path):
    out = tmp_path / "limited"

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, resource.RLIM_INFINITY))

    args = [sys.executable, "-m", "datagen.cli", "generate", *TINY, f"output.dir={out}"]
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, preexec_fn=limit)
    assert result.returncode == 2, result.stderr
    assert "file-size limit" in result.stderr and result.stderr.count("\n") == 1
    assert not out.exists()


def test_a_full_disk_mid_run_is_one_line_and_resumes(tmp_path, capsys, monkeypatch, reference):
    out = tmp_path / "full"
    real, calls = np.savez, {"n": 0}

    def savez(handle, **arrays):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(errno.ENOSPC, "No space left on device", str(handle.name))
        return real(handle, **arrays)

    monkeypatch.setattr(generate_module.np, "savez", savez)
    assert main(["generate", *TINY, f"output.dir={out}", "--no-progress"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no space left on the device" in err
    assert "free space and run the same command again to resume" in err
    assert len(list((out / ".partial").rglob("*.npz"))) == 2  # the finished units, kept
    assert not list((out / ".partial").rglob("*.tmp"))  # no torn shard
    monkeypatch.setattr(generate_module.np, "savez", real)
    assert main(["generate", *TINY, f"output.dir={out}", "--no-progress"]) == 0
    for name, u in arrays(out).items():
        np.testing.assert_array_equal(u, reference[name])


def test_sigterm_is_an_interruption_that_resumes(tmp_path, reference):
    out = tmp_path / "term"
    args = [sys.executable, "-m", "datagen.cli", "generate", *TINY, "samples.train=400",
            "solver.method=pcg", f"output.dir={out}", "--no-progress"]  # fmt: skip
    process = subprocess.Popen(args, cwd=ROOT, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not list((out / ".partial").rglob("*.npz")) and time.time() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert err.strip() == "datagen: interrupted; run the same command again to resume"
    assert main(["generate", *TINY, "samples.train=400", "solver.method=pcg",
                 f"output.dir={out}", "--no-progress"]) == 0  # fmt: skip


def test_a_damaged_shard_is_solved_again(tmp_path, capsys, monkeypatch, reference):
    out = tmp_path / "damaged"
    args = ["generate", *TINY, f"output.dir={out}", "--no-progress"]
    real, calls = np.savez, {"n": 0}

    def savez(handle, **arrays):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt  # an interruption after three finished units
        return real(handle, **arrays)

    monkeypatch.setattr(generate_module.np, "savez", savez)
    assert main(args) == 130
    monkeypatch.setattr(generate_module.np, "savez", real)
    shard = sorted((out / ".partial").rglob("*.npz"))[1]
    shard.write_bytes(shard.read_bytes()[:500])  # truncated from outside
    capsys.readouterr()
    assert main(args) == 0
    assert f"{shard}: unreadable (truncated or damaged); its unit is solved again" in (
        capsys.readouterr().out
    )
    for name, u in arrays(out).items():
        np.testing.assert_array_equal(u, reference[name])


def test_verify_names_the_sample_with_a_nan(tmp_path, capsys):
    out = tmp_path / "nan"
    assert main(["generate", *TINY, f"output.dir={out}", "--no-progress"]) == 0
    path = next((out / "data" / "valid").glob("*.hdf5"))
    with h5py.File(path, "r+") as f:
        u = f["t0_fields/u"]
        sample = u[1]
        sample[0, 5, 5] = np.nan
        u[1] = sample
    assert main(["verify", str(path)]) == 1
    assert "field 'u' has NaN or inf in sample 1" in capsys.readouterr().out


def test_verify_checks_the_promised_splits_and_unfinished_runs(tmp_path, capsys):
    out = tmp_path / "promised"
    assert main(["generate", *TINY, f"output.dir={out}", "--no-progress"]) == 0
    next((out / "data" / "test").glob("*.hdf5")).unlink()
    assert main(["verify", str(out)]) == 1
    assert "the test split is missing" in capsys.readouterr().out
    (out / ".partial").mkdir()
    assert main(["verify", str(out)]) == 1
    assert "is still being written, or its generation was interrupted" in capsys.readouterr().out


def test_progress_lines_go_to_stdout_when_not_a_terminal(tmp_path):
    out = tmp_path / "progress"
    args = [sys.executable, "-m", "datagen.cli", "generate", *TINY, f"output.dir={out}"]
    result = subprocess.run(args, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0 and result.stderr == ""
    assert "\r" not in result.stdout and "darcy_small: 100%" in result.stdout


def test_an_empty_config_is_refused(tmp_path, capsys):
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert main(["generate", str(empty), f"output.dir={tmp_path / 'x'}"]) == 2
    assert "is empty" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_a_file_another_process_writes_is_named_so(tmp_path):
    out = tmp_path / "locked"
    assert main(["generate", *TINY, f"output.dir={out}", "--no-progress"]) == 0
    path = next((out / "data" / "train").glob("*.hdf5"))
    with h5py.File(path, "r+"):  # held open for writing, as by a running generation
        result = subprocess.run(
            [sys.executable, "-m", "datagen.cli", "verify", str(path)],
            cwd=ROOT, capture_output=True, text=True,
        )  # fmt: skip
    assert result.returncode == 2
    assert "is being written by another process" in result.stderr
