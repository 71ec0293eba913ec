"""Generation under ``torchrun``: ranks, parts, split files of virtual datasets.

Every multi-process run here is a real one: ``python -m torch.distributed.run`` starts gloo
ranks on the CPU in a subprocess (``OMP_NUM_THREADS=1``, ``--threads 1``, so that every
process computes with the same number of threads as the single process it is compared with).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from datagen.cli import main
from datagen.core.distributed import DistInfo, agree, shares, weighted_shares
from datagen.core.errors import UserError
from datagen.core.schema import PARTS, consolidate_file, missing_parts, split_file
from tests.conftest import ROOT

CONFIGS = ROOT / "configs" / "datagen"
spec = importlib.util.spec_from_file_location(
    "compare_datasets", ROOT / "scripts" / "compare_datasets.py"
)
compare = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compare)

# Tiny versions of a steady, a 2-D trajectory and a 1-D trajectory problem; uneven units
# (7 = 2 + 2 + 2 + 1) so that the shares of the ranks differ.
CASES = {
    "darcy_small": [
        "resolution=33", "samples.train=7", "samples.valid=3", "samples.test=0", "batch_size=2",
    ],
    "ns_small": [
        "resolution=32", "store_resolution=16", "store_fine=true", "samples.train=3",
        "samples.valid=1", "samples.test=0", "batch_size=2", "time.end=1.0", "time.records=4",
    ],
    "ks_small": [
        "samples.train=3", "samples.valid=1", "samples.test=0", "batch_size=2",
        "time.records=6", "time.warmup=1.0",
    ],
}  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}


def launch(ranks: int, *args: str, launcher: tuple[str, ...] = ()) -> list[str]:
    """The command line of ``datagen ARGS`` on ``ranks`` processes (one host)."""
    options = launcher or ("--standalone",)
    return [
        sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={ranks}", *options,
        "-m", "datagen", *args,
    ]  # fmt: skip


def run(command: list[str], cwd: Path = ROOT, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=_env()
    )


def generate_args(name: str, out: Path, *extra: str) -> list[str]:
    return ["generate", str(CONFIGS / f"{name}.yaml"), *CASES[name], f"output.dir={out}",
            "--threads", "1", *extra]  # fmt: skip


def outputs(name: str, out: Path) -> list[Path]:
    """The dataset directories of a run (Navier-Stokes also writes the solve-grid copy)."""
    return [out, Path(f"{out}_32")] if name == "ns_small" else [out]


def assert_same(a: Path, b: Path) -> None:
    lines = compare.compare_dirs(a, b)
    assert lines and all(line.startswith("SAME") for line in lines), "\n".join(lines)


# Darcy runs by default; the trajectory problems (about 25 s more) with OPSOLVE_SLOW=1.
PARAMS = [name if name == "darcy_small" else pytest.param(name, marks=pytest.mark.slow)
          for name in CASES]  # fmt: skip


@pytest.fixture(scope="module", params=PARAMS)
def runs(request, tmp_path_factory):
    """(name, one process, two ranks, the ranks' run) of one case."""
    name = request.param
    base = tmp_path_factory.mktemp(name)
    single, ranked = base / "single", base / "ranked"
    alone = run([sys.executable, "-m", "datagen", *generate_args(name, single, "--no-progress")])
    assert alone.returncode == 0, alone.stderr
    result = run(launch(2, *generate_args(name, ranked)))
    assert result.returncode == 0, result.stderr[-3000:]
    return name, single, ranked, result


def test_two_ranks_give_the_arrays_of_one_process(runs):
    name, single, ranked, result = runs
    for a, b in zip(outputs(name, single), outputs(name, ranked), strict=True):
        assert_same(a, b)  # every array bit for bit, stats.yaml too
        assert not (b / ".partial").exists()
        path = next((b / "data" / "train").glob("*.hdf5"))
        with h5py.File(path) as f:
            fields = [f["t0_fields"][k] for k in f["t0_fields"].attrs["field_names"]]
            assert any(ds.is_virtual for ds in fields)
            assert all(ds.is_virtual == ds.attrs["sample_varying"] for ds in fields)
            assert sorted(set(f["provenance/rank"][...])) == [0, 1]
            assert set(f["provenance/device"].asstr()[...]) == {"cpu"}
        assert len(list((path.parent / PARTS).glob("*.hdf5"))) == 2
    # One bar and one summary for the whole job (off a terminal the bar writes to stdout).
    assert result.stdout.count("100%") == 1, result.stdout
    assert result.stdout.count("dataset written to") == 1


def well_items(path: Path, steady: bool, split: str | None = "train") -> list[dict]:
    """The first and last items of The Well's reader over ``path``."""
    from the_well.data import WellDataset

    window = {"n_steps_input": 0, "n_steps_output": 1} if steady else {
        "n_steps_input": 2, "n_steps_output": 1}  # fmt: skip
    well = WellDataset(path=str(path), well_split_name=split, use_normalization=False, **window)
    assert len(well) > 0
    keys = ("output_fields", "constant_fields" if steady else "input_fields")
    return [{k: well[i][k].numpy() for k in keys} for i in (0, len(well) - 1)] + [len(well)]


def assert_same_items(a: list, b: list) -> None:
    assert a[-1] == b[-1]  # as many items
    for x, y in zip(a[:-1], b[:-1], strict=True):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])


def test_the_virtual_files_read_with_h5py_our_loader_and_the_well(runs, tmp_path):
    """h5py and our loader read the split file of virtual datasets; The Well's reader, which
    opens every file through an fsspec file object (with which HDF5 cannot follow virtual
    datasets), reads the parts themselves: the same samples in the same order."""
    from opsolve.data import SteadyDataset, TrajectoryDataset

    name, single, ranked, _ = runs
    moved = tmp_path / "moved"
    shutil.copytree(ranked, moved)  # relative links to the parts: the directory can move
    steady = name == "darcy_small"
    for root in (single, moved):
        assert main(["verify", str(root)]) == 0
    for split in ("train", "valid"):
        with (
            h5py.File(split_file(single, name, split)) as f,
            h5py.File(split_file(moved, name, split)) as g,
        ):
            for key in f["t0_fields"].attrs["field_names"]:
                np.testing.assert_array_equal(f["t0_fields"][key][...], g["t0_fields"][key][...])
    reference = well_items(single, steady)
    assert_same_items(reference, well_items(moved / "data" / "train" / PARTS, steady, None))
    if steady:
        ours = [SteadyDataset(root, "valid") for root in (single, moved)]
    else:
        ours = [TrajectoryDataset(root, "train", 2, 1, stride=1) for root in (single, moved)]
    assert len(ours[0]) == len(ours[1])
    for index in range(len(ours[0])):
        for key in ("x", "y"):
            np.testing.assert_array_equal(ours[0][index][key].numpy(), ours[1][index][key].numpy())


def test_the_consolidated_files_equal_them(runs, tmp_path, capsys):
    name, single, ranked, _ = runs
    for a, b in zip(outputs(name, single), outputs(name, ranked), strict=True):
        copy = tmp_path / b.name
        shutil.copytree(b, copy)
        assert main(["consolidate", str(copy)]) == 0
        assert "consolidated" in capsys.readouterr().out
        assert_same(a, copy)
        for split in ("train", "valid"):
            path = next((copy / "data" / split).glob("*.hdf5"))
            reference = next((a / "data" / split).glob("*.hdf5"))
            assert not (path.parent / PARTS).exists()
            with h5py.File(path) as f, h5py.File(reference) as g:
                for key in f["t0_fields"].attrs["field_names"]:
                    assert not f["t0_fields"][key].is_virtual
                    assert f["t0_fields"][key].chunks == g["t0_fields"][key].chunks
        if b == ranked:
            assert_same_items(well_items(a, name == "darcy_small"),
                              well_items(copy, name == "darcy_small"))  # fmt: skip
        assert main(["consolidate", str(copy)]) == 0  # nothing left to do: says so
        assert "already a plain file" in capsys.readouterr().out


# ----------------------------------------------------------------------------- resume


def rank_pid(launcher: int, rank: int) -> int | None:
    """The process id of ``rank`` among the children of the torchrun process ``launcher``."""
    for task in Path(f"/proc/{launcher}/task").glob("*"):
        for child in (task / "children").read_text().split():
            try:
                environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if f"RANK={rank}".encode() in environ:
                return int(child)
    return None


def test_a_killed_rank_resumes_with_another_world_size(tmp_path):
    """SIGKILL of rank 1 mid-run stops the job; three ranks then finish it (with
    --consolidate) and the arrays equal those of one uninterrupted process."""
    overrides = ["resolution=129", "samples.train=24", "samples.valid=3", "samples.test=0",
                 "batch_size=1", "--threads", "1"]  # fmt: skip
    config = str(CONFIGS / "darcy_small.yaml")
    reference, out = tmp_path / "reference", tmp_path / "killed"
    alone = [sys.executable, "-m", "datagen", "generate", config, *overrides, "--no-progress"]
    assert run([*alone, f"output.dir={reference}"]).returncode == 0
    args = ["generate", config, *overrides, f"output.dir={out}", "--no-progress"]
    proc = subprocess.Popen(
        launch(2, *args), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    shards = out / ".partial" / "train"
    second_half = [shards / f"{i:08d}-{i + 1:08d}.npz" for i in range(14, 24)]
    deadline = time.time() + 120
    while (
        time.time() < deadline and proc.poll() is None and not any(p.exists() for p in second_half)
    ):
        time.sleep(0.01)
    victim = rank_pid(proc.pid, 1)
    assert victim is not None and proc.poll() is None, "the job ended before the kill"
    os.kill(victim, signal.SIGKILL)
    assert proc.wait(timeout=120) != 0
    done = len(list(shards.glob("*.npz")))
    assert 1 <= done < 24, "the kill should land in the middle of the train split"
    assert not (out / "data").exists() and not (out / "config.yaml").exists()
    result = run(launch(3, *args, "--consolidate"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same(reference, out)
    assert not list(out.rglob(PARTS)) and not (out / ".partial").exists()
    with h5py.File(split_file(out, "darcy_small", "train")) as f:
        assert not f["t0_fields/u"].is_virtual
        assert 2 in set(f["provenance/rank"][...])  # the third rank solved some of them


# ----------------------------------------------------------------------------- bad input


def test_more_ranks_than_work_units_the_idle_ranks_exit_cleanly(tmp_path):
    out, single = tmp_path / "three", tmp_path / "one"
    overrides = ["resolution=17", "samples.train=2", "samples.valid=1", "samples.test=0",
                 "batch_size=2", "--threads", "1"]  # fmt: skip
    args = ["generate", str(CONFIGS / "darcy_small.yaml"), *overrides, "--no-progress"]
    assert run([sys.executable, "-m", "datagen", *args, f"output.dir={single}"]).returncode == 0
    result = run(launch(3, *args, f"output.dir={out}"))
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same(single, out)
    for split in ("train", "valid"):  # one unit each: one part
        assert len(list((out / "data" / split / PARTS).glob("*.hdf5"))) == 1


def test_an_output_dir_not_shared_by_the_ranks_is_refused(tmp_path):
    """Two nodes (two launchers, as on two machines) whose working directories differ: the
    relative output.dir names a different directory on each; one line, no work."""
    nodes = [tmp_path / "node0", tmp_path / "node1"]
    with socket.socket() as probe:  # a free port for the rendezvous
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    procs = []
    for node in nodes:
        node.mkdir()
        launcher = ("--nnodes=2", "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}",
                    "--rdzv-id=shared-check")  # fmt: skip
        command = launch(1, "generate", str(CONFIGS / "darcy_small.yaml"), "resolution=17",
                         "output.dir=data/darcy", "--no-progress", launcher=launcher)  # fmt: skip
        procs.append(
            subprocess.Popen(
                command,
                cwd=node,
                env=_env(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
        )
    results = [p.communicate(timeout=180) for p in procs]
    assert all(p.returncode != 0 for p in procs)
    ours = [line for _, err in results for line in err.splitlines() if line.startswith("datagen:")]
    assert len(ours) == 1, ours  # rank 0 speaks for the job
    assert "is not shared by all ranks" in ours[0] and "every node mounts" in ours[0]
    assert all("datagen/" not in err for _, err in results)  # no traceback of ours
    for node in nodes:
        assert not (node / "data" / "darcy" / "data").exists()


@pytest.mark.slow
def test_a_rank_error_stops_every_rank_with_one_line(tmp_path):
    """A user error found on the ranks (here: an existing dataset) is one line from rank 0."""
    out = tmp_path / "exists"
    (out / "data" / "train").mkdir(parents=True)
    split_file(out, "darcy_small", "train").write_bytes(b"")
    args = ["generate", str(CONFIGS / "darcy_small.yaml"), "resolution=17",
            f"output.dir={out}", "--no-progress"]  # fmt: skip
    result = run(launch(2, *args))
    assert result.returncode != 0
    ours = [line for line in result.stderr.splitlines() if line.startswith("datagen:")]
    assert ours == [f"datagen: error: {out} already holds a dataset; pass --overwrite "
                    "(or output.overwrite=true) to replace it"], result.stderr  # fmt: skip
    assert "datagen/" not in result.stderr


# ----------------------------------------------------------------------------- pieces


@pytest.mark.parametrize("world", [1, 2, 3, 5, 8])
def test_weighted_shares_are_contiguous_balanced_and_cover_everything(world):
    weights = [16, 16, 16, 5, 16, 16, 4, 1]
    bounds = weighted_shares(weights, world)
    assert len(bounds) == world and bounds[0][0] == 0 and bounds[-1][1] == len(weights)
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
    loads = [sum(weights[lo:hi]) for lo, hi in bounds]
    assert max(loads) - min(loads) <= 2 * max(weights)
    assert weighted_shares([1] * 6, 3) == shares(6, 3)  # equal units: equal counts
    assert weighted_shares([3, 1], 4) == [(0, 0), (0, 1), (1, 1), (1, 2)]  # idle ranks: empty


def test_agree_alone_raises_the_error_itself():
    agree(DistInfo(), None)
    error = UserError("output.dir: nope")
    with pytest.raises(UserError) as caught:
        agree(DistInfo(), error)
    assert caught.value is error


def test_a_missing_part_is_named_and_consolidation_refuses(tmp_path):
    parts = tmp_path / PARTS
    parts.mkdir()
    for start in (0, 2):
        with h5py.File(parts / f"p{start}.hdf5", "w") as f:
            f.create_dataset("t0_fields/u", data=np.full((2, 3), start, np.float32))
    layout = h5py.VirtualLayout((4, 3), "float32")
    for start in (0, 2):
        layout[start : start + 2] = h5py.VirtualSource(f"{PARTS}/p{start}.hdf5", "t0_fields/u",
                                                       shape=(2, 3))  # fmt: skip
    path = tmp_path / "split.hdf5"
    with h5py.File(path, "w") as f:
        f.create_group("t0_fields").create_virtual_dataset("u", layout, fillvalue=np.nan)
    (parts / "p2.hdf5").unlink()
    with h5py.File(path) as f:
        assert missing_parts(path, f) == [f"{PARTS}/p2.hdf5"]
        assert np.isnan(f["t0_fields/u"][2:]).all()  # what a reader would silently get
    with pytest.raises(UserError, match="part file parts/p2.hdf5 is missing"):
        consolidate_file(path)


@pytest.mark.parametrize("world", [1, 2, 3, 8])
def test_the_ranks_shares_and_parts_hold_every_unit_once_in_order(world):
    from types import SimpleNamespace

    from datagen.generate import my_share, part_plan, work_units

    recipe = SimpleNamespace(sizes={"train": 7, "valid": 3, "test": 0}, batch_size=2)
    units = work_units(recipe)
    assert units[:4] == [("train", 0, 2), ("train", 2, 4), ("train", 4, 6), ("train", 6, 7)]
    solved = [u for r in range(world) for u in my_share(units, DistInfo(world=world, rank=r))]
    assert solved == units  # contiguous shares, in order, nothing twice
    plan = part_plan(recipe, units, world)
    assert set(plan) == {"train", "valid"}
    for split, parts in plan.items():
        assert [u for part in parts for u in part] == [u for u in units if u[0] == split]
        assert 1 <= len(parts) <= world and all(parts)


def test_a_rank_lost_while_this_one_waits_is_one_line(tmp_path, monkeypatch, capsys):
    """What gloo raises on a survivor when a peer dies mid-collective: one line, status 3."""
    import torch.distributed as dist

    import datagen.generate as generate_module

    def lost(*_args, **_kwargs):
        raise dist.DistBackendError("[pair.cc:534] Connection closed by peer [127.0.0.1]:4242")

    monkeypatch.setattr(generate_module, "run_recipe", lost)
    args = ["generate", str(CONFIGS / "darcy_small.yaml"), "resolution=17",
            f"output.dir={tmp_path / 'out'}", "--no-progress"]  # fmt: skip
    assert main(args) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("datagen: job stopped: another rank of the job stopped ([pair.cc:534]")
    assert err.rstrip().endswith("finished samples are kept: run the same command again")


def test_more_ranks_on_a_node_than_gpus_is_refused(monkeypatch):
    import torch

    from datagen.core.device import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(UserError, match=r"LOCAL_RANK=3, but this host has 2 CUDA device\(s\)"):
        resolve_device("cuda", local_rank=3)
