"""Training from configs: losses, loss reduction, exact resume, DDP equality, NaN, user errors.

All runs use the session's tiny Darcy dataset (33 x 33, 12 / 4 / 4 samples) and an FNO with
8 modes and width 8, on CPU.
"""

import hashlib
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from opsolve.cli import main
from opsolve.train.checkpoint import load_checkpoint
from opsolve.train.distributed import DistInfo, shares, train_plan
from opsolve.train.losses import relative_h1, relative_l2
from opsolve.train.rundir import read_metrics
from tests.conftest import ROOT

TINY_MODEL = {"name": "fno", "params": {"n_modes": [8, 8], "hidden_channels": 8, "n_layers": 2}}
METRICS = ("train_loss", "valid_l2", "valid_h1", "lr")


def write_config(tmp_path: Path, root: Path, out: Path, **extra) -> Path:
    """A tiny-FNO config on ``root`` writing to ``out``; ``extra`` replaces top-level keys
    (``data`` is merged)."""
    data = {"root": str(root), **extra.pop("data", {})}
    config = {
        "model": TINY_MODEL,
        "data": data,
        "loss": {"name": "relative_l2"},
        "optimizer": {"name": "adam", "lr": 5e-3},
        "scheduler": {"name": "step", "step_size": 2, "gamma": 0.5},
        "epochs": 4,
        "batch_size": 4,
        "seed": 0,
        "device": "cpu",
        "output": {"dir": str(out)},
        **extra,
    }
    path = tmp_path / f"train_{out.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_cli(*args: str, env: dict | None = None, timeout: float = 300):
    return subprocess.run(
        [sys.executable, "-m", "opsolve.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def metric_rows(run: Path) -> list[dict[str, float]]:
    return [
        {k: float(r[k]) for k in ("epoch", *METRICS)} for r in read_metrics(run / "metrics.csv")
    ]


# ----------------------------------------------------------------------------- losses


def test_losses_are_per_sample_relative_norms():
    torch.manual_seed(0)
    pred, y = torch.randn(3, 2, 17, 17), torch.randn(3, 2, 17, 17)
    expected = ((pred - y).flatten(2).norm(dim=-1) / y.flatten(2).norm(dim=-1)).mean(dim=1)
    torch.testing.assert_close(relative_l2(pred, y), expected)
    assert relative_l2(pred[:1], y[:1]).shape == (1,)
    assert float(relative_h1(y, y, 1 / 16).abs().max()) == 0.0
    # u = sin(pi x) sin(pi y), e = 0.1 sin(2 pi x) sin(pi y) on [0, 1]^2: the exact relative H1
    # error is 0.1 sqrt((1 + 5 pi^2) / (1 + 2 pi^2)); finite differences converge to it.
    exact = 0.1 * math.sqrt((1 + 5 * math.pi**2) / (1 + 2 * math.pi**2))
    for s, tol in ((33, 5e-3), (129, 5e-4)):
        x = torch.linspace(0, 1, s, dtype=torch.float64)
        gx, gy = torch.meshgrid(x, x, indexing="ij")
        u = (torch.sin(math.pi * gx) * torch.sin(math.pi * gy))[None, None]
        e = 0.1 * (torch.sin(2 * math.pi * gx) * torch.sin(math.pi * gy))[None, None]
        assert float(relative_h1(u + e, u, 1 / (s - 1))) == pytest.approx(exact, rel=tol)
        assert float(relative_l2(u + e, u)) == pytest.approx(0.1, rel=1e-9)


def test_batch_plans_split_each_global_batch_contiguously():
    assert shares(5, 2) == [(0, 3), (3, 5)] and shares(1, 2) == [(0, 1), (1, 1)]
    single = train_plan(9, 4, seed=3, epoch=2, info=DistInfo())
    ranks = [train_plan(9, 4, seed=3, epoch=2, info=DistInfo(2, r, r)) for r in range(2)]
    for step, (a, b) in enumerate(zip(*ranks, strict=True)):
        if b.weight == 0:  # rank 1's share of the last batch (1 sample) is empty
            assert a.indices == single[step].indices and a.weight == 2 / 1
        else:
            assert a.indices + b.indices == single[step].indices
            assert a.weight == b.weight == 2 / single[step].n_global
    assert (
        train_plan(9, 4, 3, 2, DistInfo())[0].indices
        != train_plan(9, 4, 3, 3, DistInfo())[0].indices
    )  # a new order every epoch


# ----------------------------------------------------------------------------- training


def test_training_reduces_the_loss_and_writes_the_run(small_dataset, tmp_path, capsys):
    run = tmp_path / "run"
    config = write_config(tmp_path, small_dataset, run)
    assert main(["train", str(config), "--no-progress"]) == 0
    rows = metric_rows(run)
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert rows[-1]["train_loss"] < 0.97 * rows[0]["train_loss"]
    assert rows[-1]["valid_l2"] < rows[0]["valid_l2"]
    assert [r["lr"] for r in rows] == [5e-3, 5e-3, 2.5e-3, 2.5e-3]  # StepLR per epoch
    for name in ("config.yaml", "log.txt", "figures/curves.png"):
        assert (run / name).is_file(), name
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["model"]["params"]["in_channels"] == 1  # filled in from the data
    last = load_checkpoint(run / "checkpoints" / "last.pt")
    best = load_checkpoint(run / "checkpoints" / "best.pt")
    assert last["epoch"] == 4 and last["step"] == 12
    assert best["epoch"] == last["best"]["epoch"]
    assert best["metrics"]["valid_l2"] == min(r["valid_l2"] for r in rows)
    assert {"torch", "numpy", "python"} <= set(last["rng"])
    assert "epoch 4/4" in capsys.readouterr().out


def test_a_custom_registered_model_trains(small_dataset, tmp_path):
    from opsolve.models.registry import register_model, registered_models

    def pointwise(in_channels: int, out_channels: int, hidden: int = 4) -> torch.nn.Module:
        return torch.nn.Sequential(
            torch.nn.Conv2d(in_channels, hidden, 1),
            torch.nn.GELU(),
            torch.nn.Conv2d(hidden, out_channels, 1),
        )

    register_model("pointwise_test", pointwise, replace=True)
    assert {"fno", "tfno", "mgno", "pointwise_test"} <= set(registered_models())
    run = tmp_path / "custom"
    config = write_config(
        tmp_path, small_dataset, run, model={"name": "pointwise_test", "params": {"hidden": 3}}
    )
    assert main(["train", str(config), "epochs=1", "--no-progress"]) == 0
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["model"] == {
        "name": "pointwise_test",
        "params": {"hidden": 3, "in_channels": 1, "out_channels": 1},
    }


@pytest.mark.parametrize("schedule", ["step", "onecycle"])
def test_a_killed_run_resumes_to_the_uninterrupted_result(small_dataset, tmp_path, schedule):
    """Killed after step 7 (mid epoch 3 of 4, 3 steps per epoch), resumed from last.pt; with
    an epoch-wise schedule and with one stepped per batch."""
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    extra = {} if schedule == "step" else {"scheduler": {"name": schedule}}
    straight_config = write_config(tmp_path, small_dataset, straight, **extra)
    assert main(["train", str(straight_config), "--no-progress"]) == 0
    config = write_config(tmp_path, small_dataset, killed, **extra)
    result = run_cli(
        "train", str(config), "--no-progress", env={"OPSOLVE_FAULT": "kill_after_steps=7"}
    )
    assert result.returncode == 137, result.stderr
    assert [r["epoch"] for r in metric_rows(killed)] == [1, 2]
    assert load_checkpoint(killed / "checkpoints" / "last.pt")["step"] == 6
    assert main(["train", str(config), "--resume", "--no-progress"]) == 0
    a, b = metric_rows(straight), metric_rows(killed)
    assert [r["epoch"] for r in b] == [1, 2, 3, 4]
    for ra, rb in zip(a, b, strict=True):
        for key in METRICS:  # identical in practice; 1e-6 allows another BLAS thread split
            assert rb[key] == pytest.approx(ra[key], rel=1e-6, abs=0), key
    sa = load_checkpoint(straight / "checkpoints" / "last.pt")["state"]
    sb = load_checkpoint(killed / "checkpoints" / "last.pt")["state"]
    for key in sa:
        torch.testing.assert_close(sb[key], sa[key], rtol=1e-5, atol=1e-7)
    log = (killed / "log.txt").read_text()
    assert "resumed after epoch 2" in log


def test_two_processes_under_torchrun_match_one_process(small_dataset, tmp_path):
    """Global batch 4 over 2 gloo ranks == batch 4 in one process (9 samples: the last batch
    of 1 leaves rank 1 empty). Tolerance 1e-5 relative: only summation order differs."""
    single, ddp = tmp_path / "single", tmp_path / "ddp"
    extra = {"data": {"limit": {"train": 9}}, "epochs": 3}
    assert (
        main(
            ["train", str(write_config(tmp_path, small_dataset, single, **extra)), "--no-progress"]
        )
        == 0
    )
    torchrun = Path(sys.executable).with_name("torchrun")
    launcher = (
        [str(torchrun)] if torchrun.exists() else [sys.executable, "-m", "torch.distributed.run"]
    )
    result = subprocess.run(
        [
            *launcher,
            "--nproc_per_node=2",
            "--standalone",
            "-m",
            "opsolve.cli",
            "train",
            str(write_config(tmp_path, small_dataset, ddp, **extra)),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 process(es) on cpu" in (ddp / "log.txt").read_text()
    a, b = metric_rows(single), metric_rows(ddp)
    assert len(a) == len(b) == 3
    for ra, rb in zip(a, b, strict=True):
        for key in METRICS:
            assert rb[key] == pytest.approx(ra[key], rel=1e-5), key
    assert result.stdout.count("run written to") == 1  # rank 0 alone reports


# ----------------------------------------------------------------------------- divergence


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_nan_loss_stops_with_one_line_and_keeps_the_last_checkpoint(
    small_dataset, tmp_path, capsys, monkeypatch
):
    run = tmp_path / "nan"
    config = write_config(tmp_path, small_dataset, run)
    monkeypatch.setenv("OPSOLVE_FAULT", "nan_at_step=5")  # epoch 2, step 5
    assert main(["train", str(config), "--no-progress"]) == 3
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert "training diverged: loss is nan at epoch 2, step 5" in err
    assert "(epoch 1) left untouched" in err
    last = run / "checkpoints" / "last.pt"
    assert load_checkpoint(last)["epoch"] == 1 and len(metric_rows(run)) == 1
    before = _digest(last)
    assert main(["train", str(config), "--resume", "--no-progress"]) == 3  # diverges again
    assert _digest(last) == before


def test_a_nan_in_the_first_epoch_says_no_checkpoint_exists(
    small_dataset, tmp_path, capsys, monkeypatch
):
    config = write_config(tmp_path, small_dataset, tmp_path / "first")
    monkeypatch.setenv("OPSOLVE_FAULT", "nan_at_step=2")  # epoch 1
    assert main(["train", str(config), "--no-progress"]) == 3
    err = capsys.readouterr().err.strip()
    assert err.startswith("opsolve: training diverged: loss is nan") and err.count("\n") == 0
    assert "epoch 1" in err and "no checkpoint was written yet" in err


# ----------------------------------------------------------------------------- user errors


def _other_schema(tmp_path: Path) -> Path:
    from the_well.utils.dummy_data import write_dummy_data

    root = tmp_path / "well"
    for split in ("train", "valid"):
        (root / "data" / split).mkdir(parents=True)
        write_dummy_data(str(root / "data" / split / "dummy.hdf5"))
    return root


@pytest.mark.parametrize(
    "case, message",
    [
        (
            "unknown_model",
            "model.name: unknown model 'unet'; registered: fno, fno3d, fno_trajectory, lsm, ",
        ),
        ("missing_data", "data.root: directory"),
        ("other_schema", "not a dataset file of this package"),
        ("channels", "model.params.in_channels: 3 does not match the data, which has 1 (a)"),
        ("unknown_key", "unknown key 'optimiser'"),
        ("foreign_scheduler_key", "'step_size' does not apply to scheduler 'onecycle'"),
        ("amp_on_cpu", "precision: 'amp' needs a CUDA device"),
        ("indivisible_batch", "batch_size: 5 is the global batch and must be divisible"),
        ("occupied_output", "holds another run; pass --resume"),
        ("weight_without_h1", "loss: gradient_weight applies to relative_h1 only"),
        ("overwrite_foreign_dir", "is not empty and holds no training run"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    case, message, small_dataset, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "out"
    config = write_config(tmp_path, small_dataset, out)
    args = {
        "unknown_model": ["model.name=unet"],
        "missing_data": [f"data.root={tmp_path / 'nowhere'}"],
        "other_schema": [f"data.root={_other_schema(tmp_path)}"] if case == "other_schema" else [],
        "channels": ["model.params.in_channels=3"],
        "unknown_key": ["optimiser.lr=1"],
        "foreign_scheduler_key": ["scheduler.name=onecycle"],
        "amp_on_cpu": ["precision=amp"],
        "indivisible_batch": ["batch_size=5"],
        "occupied_output": [],
        "weight_without_h1": ["loss.gradient_weight=0.5"],
        "overwrite_foreign_dir": ["--overwrite"],
    }[case]
    if case == "indivisible_batch":
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", "0")
    if case in ("occupied_output", "overwrite_foreign_dir"):
        out.mkdir()
        (out / "config.yaml").write_text("from another run\n")
    assert main(["train", str(config), *args, "--no-progress"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("opsolve: error: ") and err.count("\n") == 0, err
    assert message in err
    assert "Traceback" not in err
    if case in ("occupied_output", "overwrite_foreign_dir"):
        assert (out / "config.yaml").read_text() == "from another run\n"  # untouched
    else:
        assert not out.exists()  # nothing written before every check passed


def test_the_command_line_prints_no_traceback(small_dataset, tmp_path):
    out = tmp_path / "out"
    result = run_cli(
        "train", str(write_config(tmp_path, small_dataset, out)), "model.name=unet", "--no-progress"
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    registered = "fno, fno3d, fno_trajectory, lsm, lsm_trajectory, mgno, observer, spacetime_fno"
    assert f"registered: {registered}" in result.stderr


# ----------------------------------------------------------------------------- precision


def test_amp_keeps_spectral_layers_in_float32_and_refuses_fp16_with_complex_weights():
    from datagen.core.errors import UserError
    from opsolve.models.registry import build_model
    from opsolve.train.config import TrainConfig
    from opsolve.train.optim import check_amp_model, spectral_layers_in_fp32

    params = {**TINY_MODEL["params"], "in_channels": 1, "out_channels": 1}
    model = build_model("fno", dict(params))
    assert spectral_layers_in_fp32(model) == 2
    seen = []
    for module in model.modules():
        if type(module).__name__ == "SpectralConv":
            module.register_forward_hook(lambda _m, args, _out: seen.append(args[0].dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        model(torch.randn(2, 1, 17, 17))
    assert seen == [torch.float32, torch.float32]
    cfg = TrainConfig(data={"root": "x"}, precision="amp", amp_dtype="fp16")
    with pytest.raises(UserError, match="use amp_dtype=bf16"):
        check_amp_model(cfg, model)
    check_amp_model(cfg, torch.nn.Conv2d(1, 1, 1))  # real weights: fp16 + GradScaler is fine
    check_amp_model(TrainConfig(data={"root": "x"}, precision="amp"), model)  # bf16


def test_relative_h1_gradient_weight_is_a_rescaled_grid_step():
    """||e||^2 + w ||grad e||^2 through the step h / sqrt(w): exact on the sine example, and
    w -> 0 gives the relative L2 error."""
    s, w = 129, 1 / (4 * math.pi**2)
    x = torch.linspace(0, 1, s, dtype=torch.float64)
    gx, gy = torch.meshgrid(x, x, indexing="ij")
    u = (torch.sin(math.pi * gx) * torch.sin(math.pi * gy))[None, None]
    e = 0.1 * (torch.sin(2 * math.pi * gx) * torch.sin(math.pi * gy))[None, None]
    exact = 0.1 * math.sqrt((1 + 5 * math.pi**2 * w) / (1 + 2 * math.pi**2 * w))  # 0.1 sqrt(1.5)
    h = 1 / (s - 1)
    # node sums put full weight on the boundary nodes, where grad e != 0: O(h) quadrature error
    assert float(relative_h1(u + e, u, h / math.sqrt(w))) == pytest.approx(exact, rel=3e-3)
    tiny = float(relative_h1(u + e, u, h / math.sqrt(1e-12)))
    assert tiny == pytest.approx(float(relative_l2(u + e, u)), rel=1e-9)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_bf16_autocast_training_on_cuda(small_dataset, tmp_path):
    run = tmp_path / "cuda"
    config = write_config(tmp_path, small_dataset, run, device="cuda", precision="amp")
    assert main(["train", str(config), "--no-progress"]) == 0
    rows = metric_rows(run)
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]


# ----------------------------------------------------------------------------- shipped configs


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "train").glob("*.yaml")), ids=str)
def test_shipped_configs_validate_and_build(path):
    from opsolve.models.registry import build_model, count_parameters
    from opsolve.train.config import load_train_config

    cfg = load_train_config(path)
    if cfg.model.name == "mgno":
        pytest.importorskip("opsolve.models.mgno")
    params = {**cfg.model.params, "in_channels": 1, "out_channels": 1}
    trajectory_models = (
        "spacetime_fno",
        "fno3d",
        "observer",
        "lsm_trajectory",
        "fno_trajectory",
    )
    if cfg.model.name in trajectory_models:  # steps from the window
        window = cfg.data.window
        params = {**cfg.model.params, "input_steps": window.input_steps}
        params["output_steps"] = window.output_steps
    model = build_model(cfg.model.name, params)
    count = count_parameters(model)
    if path.name == "darcy_mgno_rough.yaml":
        assert count == 572_661  # the MgNO paper's "0.57 M" for the rough setting
    if path.name == "darcy_lsm.yaml":
        assert count == 19_187_457  # the public LSM Darcy model (tests/opsolve/models/test_lsm.py)
    assert count > 0
    assert cfg.data.subsample in (1, 2, 5)


def test_the_rough_data_config_validates():
    from datagen.core.config import load_config
    from datagen.problems.darcy.config import DarcyConfig

    cfg = load_config(DarcyConfig, ROOT / "configs" / "datagen" / "darcy_rough.yaml")
    assert cfg.resolution == 512 and (cfg.coefficient.alpha, cfg.coefficient.tau) == (2.0, 5.0)
    assert (cfg.resolution - 1) // 2 + 1 == 256  # subsample 2 -> 256 x 256


def test_resume_with_another_config_is_refused(small_dataset, tmp_path, capsys):
    run = tmp_path / "changed"
    config = write_config(tmp_path, small_dataset, run, epochs=1)
    assert main(["train", str(config), "--no-progress"]) == 0
    assert main(["train", str(config), "optimizer.lr=0.1", "--resume", "--no-progress"]) == 2
    assert "differs from the run" in capsys.readouterr().err
    assert main(["train", str(config), "--overwrite", "--no-progress"]) == 0
    shutil.rmtree(run)


def test_resume_reads_a_run_made_before_an_option_existed(small_dataset, tmp_path):
    """An option added after a run was made takes its default, which keeps the old behaviour,
    so it does not block the resume; a changed value still does (test above)."""
    run = tmp_path / "older"
    config = write_config(tmp_path, small_dataset, run, epochs=1)
    assert main(["train", str(config), "--no-progress"]) == 0
    last = run / "checkpoints" / "last.pt"
    checkpoint = torch.load(last, weights_only=True)
    del checkpoint["config"]["amp_dtype"]  # as if written before amp_dtype existed
    del checkpoint["config"]["optimizer"]["galore"]
    torch.save(checkpoint, last)
    assert main(["train", str(config), "--resume", "--no-progress"]) == 0
    shutil.rmtree(run)


def test_one_cycle_steps_per_batch_so_the_last_epoch_still_learns(small_dataset, tmp_path, capsys):
    """One-cycle spans every optimizer step (2 epochs of 3 steps): the last epoch starts at
    the schedule's middle rate, not at its final lr / 25 / 1e4 (stepping it per epoch put the
    whole last epoch there); a run made with the per-epoch schedule is refused on resume."""
    run = tmp_path / "cycle"
    schedule = {"name": "onecycle", "pct_start": 0.3}
    config = write_config(tmp_path, small_dataset, run, epochs=2, scheduler=schedule)
    assert main(["train", str(config), "--no-progress"]) == 0
    last = run / "checkpoints" / "last.pt"
    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint["step"] == 6
    assert checkpoint["scheduler"]["total_steps"] == 6
    assert checkpoint["scheduler"]["last_epoch"] == 6
    rows = metric_rows(run)
    assert rows[0]["lr"] == pytest.approx(5e-3 / 25)
    mid = 5e-3 / 25e4 + (5e-3 - 5e-3 / 25e4) * (1 + math.cos(math.pi * (3 - 0.8) / 4.2)) / 2
    assert rows[1]["lr"] == pytest.approx(mid)  # step 3 of 6: annealing since step 0.8
    assert rows[1]["lr"] > 100 * 5e-3 / 25e4

    checkpoint["scheduler"]["total_steps"] = 2  # as the per-epoch schedule saved it
    torch.save(checkpoint, last)
    capsys.readouterr()
    assert main(["train", str(config), "--resume", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "spans 2 steps" in err and "needs 6" in err and "--overwrite" in err
    assert "Traceback" not in err
    shutil.rmtree(run)


def test_init_starts_from_another_runs_weights(small_dataset, tmp_path, capsys):
    base = tmp_path / "base"
    assert main(["train", str(write_config(tmp_path, small_dataset, base)), "--no-progress"]) == 0
    tuned = tmp_path / "tuned"
    config = write_config(
        tmp_path, small_dataset, tuned, epochs=1, scheduler={"name": "none"},
        optimizer={"name": "adam", "lr": 1e-30}, init={"run": str(base)},
    )  # fmt: skip
    assert main(["train", str(config), "--no-progress"]) == 0
    assert f"started from the weights of {base} (best)" in capsys.readouterr().out
    start = load_checkpoint(base / "checkpoints" / "best.pt")
    after = load_checkpoint(tuned / "checkpoints" / "last.pt")
    assert after["state"].keys() == start["state"].keys()
    for key, value in start["state"].items():  # a step of 1e-30 leaves float32 weights as they are
        assert torch.equal(after["state"][key], value), key
    assert metric_rows(tuned)[0]["valid_l2"] == pytest.approx(start["metrics"]["valid_l2"], 1e-6)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("init.run={missing}", "init.run: directory"),
        ("init.run={empty}", "no best checkpoint"),
        ("init.run={base} model.params.hidden_channels=4", "do not fit the model"),
        ("init.checkpoint=refined", "init.checkpoint"),
    ],
)
def test_init_bad_input_is_one_line(override, message, small_dataset, tmp_path, capsys):
    base = tmp_path / "base"
    if "{base}" in override:
        config = write_config(tmp_path, small_dataset, base, epochs=1)
        assert main(["train", str(config), "--no-progress"]) == 0
        capsys.readouterr()
    (tmp_path / "empty").mkdir()
    out = tmp_path / "out"
    config = write_config(tmp_path, small_dataset, out)
    args = override.format(missing=tmp_path / "nowhere", empty=tmp_path / "empty", base=base)
    assert main(["train", str(config), *args.split(), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("opsolve: error: ") and err.count("\n") == 0, err
    assert message in err
    assert not out.exists()
