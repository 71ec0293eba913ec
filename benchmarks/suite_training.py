"""The training items of the acceptance run (``benchmarks/gpu_suite.py``).

- ``training``: samples per second and peak device memory of each model of :data:`MODELS` at
  its published setting (its training config: model, loss, optimizer, batch size), with and
  without mixed precision, on inputs of the shape its data has. Each step is the trainer's own
  (:meth:`opsolve.train.trainer._Loop.train_step`: autocast, loss, finite check, backward,
  optimizer step); the inputs are random, since the speed does not depend on the values.
- ``rough``: MgNO and FNO trained for about the same wall-clock time on the rough 256^2 Darcy
  data (``configs/datagen/darcy_rough.yaml``, generated here), as ``benchmarks/darcy_operators.py``
  trains them (``opsolve train`` in a child process, schedules compressed to the epochs), each
  for the epochs its measured throughput fits into the budget; the test error reached.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from darcy_operators import compressed_schedule, generate_data
from operator_runs import train_in_child
from suite_report import Context, Section

from datagen.core.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "train"

# name, training config, grid of one sample of the data it names. One line adds a model.
MODELS: list[tuple[str, str, tuple[int, ...]]] = [
    ("mgno", "darcy_mgno.yaml", (85, 85)),  # FNO Darcy 421^2 subsampled by 5
    ("fno", "darcy_fno.yaml", (85, 85)),
    ("mgno_rough", "darcy_mgno_rough.yaml", (256, 256)),  # rough Darcy 512^2 subsampled by 2
    ("fno_rough", "darcy_fno.yaml", (256, 256)),
    ("sfno", "ns_sfno.yaml", (64, 64)),  # ns_fno_1e-3, 10 frames in, 40 out
    ("observer_ns", "ns_observer.yaml", (64, 64)),  # ns_da
    ("observer_ks", "ks_observer.yaml", (64,)),  # ks_l22
    ("lsm", "darcy_lsm.yaml", (85, 85)),  # the Latent Spectral Model
]
TINY_GRID = {1: (64,), 2: (33, 33)}
TINY_PARAMS = {"width": 4, "hidden_channels": 4, "gain_width": 4, "expansion": 8}  # where present
# LSM on the tiny grid: 8 wide over 4 heads, padding and patch chosen for the grid
TINY_LSM = {"width": 8, "heads": 4, "padding": None, "patch": None}
ROUGH = {"mgno": ("darcy_mgno_rough.yaml", "mgno_rough"), "fno": ("darcy_fno.yaml", "fno_rough")}
FINITE = 1e6  # a relative loss or error above this is as wrong as a NaN
LOADER_SHARE = 0.8  # of a budget left to the steps; the rest goes to loading and validation


def data_kind(name: str) -> str:
    """ "steady" or "trajectory": the data the registered model ``name`` trains on."""
    from opsolve.models.registry import check_model_fits_data

    try:
        check_model_fits_data(name, "steady", "-")
    except UserError:
        return "trajectory"
    return "steady"


def operator_for(cfg: Any, kind: str) -> tuple[torch.nn.Module, int, int]:
    """The registry's operator of ``cfg`` without normalization, and its in / out channels
    (frames for trajectory models), as :func:`opsolve.train.assemble.resolve_params` sets."""
    from opsolve.models.registry import build_operator

    params = dict(cfg.model.params)
    if kind == "trajectory":
        c_in, c_out = cfg.data.window.input_steps, cfg.data.window.output_steps
        params.update(input_steps=c_in, output_steps=c_out)
        names = [cfg.data.window.field]
        info = {"kind": kind, "inputs": names, "outputs": names}
    else:
        c_in, c_out = 1, 1
        params.update(in_channels=1, out_channels=1)
        info = {"kind": kind, "inputs": ["a"], "outputs": ["u"]}
    op = build_operator(cfg.model.name, params, None, info, (False, False))
    return op, c_in, c_out


def trainer_loop(cfg: Any, grid: tuple[int, ...], device: str, steps: int) -> tuple[Any, int, int]:
    """The trainer's loop object around the config's operator, optimizer and objective (or
    the observer's task), built as :func:`opsolve.train.trainer.train` builds them for an
    epoch of ``steps`` steps; and the model's in / out channels."""
    from opsolve.train.assimilation import AssimilationTask
    from opsolve.train.checkpoint import seed_everything
    from opsolve.train.distributed import DistInfo
    from opsolve.train.optim import (
        build_optimizer,
        build_scheduler,
        check_amp_model,
        spectral_layers_in_fp32,
    )
    from opsolve.train.trainer import _Loop

    seed_everything(cfg.seed)
    kind = data_kind(cfg.model.name)
    op, c_in, c_out = operator_for(cfg, kind)
    check_amp_model(cfg, op)
    op.to(device)
    if cfg.precision == "amp":
        spectral_layers_in_fp32(op)
    optimizer = build_optimizer(cfg, op.parameters())
    scheduler = build_scheduler(cfg, optimizer, steps)
    fp16 = cfg.precision == "amp" and cfg.amp_dtype == "fp16"
    scaler = torch.amp.GradScaler("cuda", enabled=fp16)
    data = SimpleNamespace(kind=kind, spacing=1.0 / max(grid[0] - 1, 1), physics=None)
    where = torch.device(device)
    loop = _Loop(cfg, DistInfo(), where, op, op, optimizer, scheduler, scaler, data, None, None)
    if getattr(op.model, "assimilates", False):
        loop.task = AssimilationTask(cfg.observer, 1.0, cfg.seed)
    return loop, c_in, c_out


def throughput(
    cfg: Any, grid: tuple[int, ...], device: str, steps: int, warmup: int, batch: int
) -> dict[str, float]:
    """Samples per second over ``steps`` trainer steps (after ``warmup``), peak memory (MiB,
    CUDA only) and the last loss (mean per sample), at ``cfg.precision``."""
    from opsolve.train.distributed import DistInfo, train_plan
    from opsolve.train.trainer import State

    loop, c_in, c_out = trainer_loop(cfg, grid, device, warmup + steps)
    batch_data = {
        "x": torch.randn(batch, c_in, *grid, device=device),
        "y": torch.randn(batch, c_out, *grid, device=device),
    }
    step, state = train_plan(batch, batch, 0, 0, DistInfo())[0], State()
    cuda = device == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    for _ in range(warmup):
        loop.train_step(step, batch_data, 1, state)
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        loss = loop.train_step(step, batch_data, 1, state)
    if cuda:
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else math.nan
    return {"samples_s": steps * batch / seconds, "peak_mib": peak, "loss": loss / batch}


def tiny_model(cfg: Any) -> Any:
    """``cfg`` with its model narrowed (:data:`TINY_PARAMS`, where its params have the key)."""
    params = dict(cfg.model.params)
    params.update({k: v for k, v in TINY_PARAMS.items() if k in params})
    if cfg.model.name.startswith("lsm"):
        params.update(TINY_LSM)
    return cfg.model_copy(update={"model": cfg.model.model_copy(update={"params": params})})


def skip_reason(name: str, config: Path) -> str | None:
    """Why a model of :data:`MODELS` cannot be measured here, or None."""
    from opsolve.models.registry import registered_models
    from opsolve.train.config import load_train_config

    if not config.is_file():
        return f"{name}: no config {config.relative_to(ROOT)} yet"
    model = load_train_config(config).model.name
    if model not in registered_models():
        return f"{name}: model {model!r} is not in the registry yet"
    return None


def training(ctx: Context) -> Section:
    """Throughput of every model of :data:`MODELS`, fp32 and (on CUDA) bf16 autocast."""
    from opsolve.train.config import load_train_config

    b = ctx.budget
    sec = ctx.begin(
        Section(
            "training",
            f"Training throughput, {b['steps']} steps per row",
            [
                "model",
                "config",
                "input (batch, channels, grid)",
                "precision",
                "samples/s",
                "peak memory (MiB)",
                "loss",
            ],
            b["seconds"],
        )
    )
    precisions = ["fp32", "amp"] if ctx.device == "cuda" else ["fp32"]
    if ctx.device != "cuda":
        sec.note("mixed precision (amp, bf16) runs on CUDA only: fp32 rows only")
    rates = ctx.shared.setdefault("training_rates", {})
    for name, config, grid in MODELS:
        reason = skip_reason(name, CONFIGS / config)
        if reason:
            sec.note(f"skipped {reason}")
            continue
        if ctx.tiny:
            grid = TINY_GRID[len(grid)]
        for precision in precisions:
            cfg = load_train_config(CONFIGS / config, [f"precision={precision}"])
            if ctx.tiny:
                cfg = tiny_model(cfg)
            batch = b.get("batch") or cfg.batch_size
            try:
                got = throughput(cfg, grid, ctx.device, b["steps"], b["warmup"], batch)
            except Exception as error:  # a model that cannot train here: a failed check
                sec.note(f"{name} {precision} failed: {type(error).__name__}: {error}")
                sec.check(f"{name} {precision} trains", math.nan, FINITE)
                continue
            channels = cfg.data.window.input_steps if data_kind(cfg.model.name) != "steady" else 1
            shape = str((batch, channels, *grid))
            sec.row(name, config, shape, precision, got["samples_s"], got["peak_mib"], got["loss"])
            sec.check(f"{name} {precision} loss is finite", abs(got["loss"]), FINITE)
            if precision == "fp32":
                rates[name] = got["samples_s"]
    return sec


def rough(ctx: Context) -> Section:
    """MgNO vs FNO on the rough Darcy data, about ``train_seconds`` of training each."""
    from opsolve.eval.compare import compare_runs

    b = ctx.budget
    counts = b["samples"]
    sec = ctx.begin(
        Section(
            "rough",
            f"MgNO vs FNO on the rough Darcy data ({b['resolution'] // 2}^2), "
            f"about {b['train_seconds']:.0f} s of training each",
            [
                "model",
                "epochs",
                "train samples",
                "wall s (process)",
                "peak memory (MiB)",
                "test rel. L2",
                "test rel. H1",
            ],
            b["seconds"],
        )
    )
    data = generate_data(
        ctx.work / "rough_data",
        b["resolution"],
        counts,
        ROOT / "configs/datagen/darcy_rough.yaml",
        "darcy_rough_512",
        (f"batch_size={b['data_batch']}", f"device={ctx.device}"),
    )
    rates = ctx.shared.get("training_rates", {})
    runs, costs, epochs = {}, {}, {}
    for model, (config, entry) in ROUGH.items():
        rate = rates.get(entry)
        if rate is None:  # the training item did not run: a short measurement here
            from opsolve.train.config import load_train_config

            cfg = load_train_config(CONFIGS / config)
            grid = TINY_GRID[2] if ctx.tiny else (b["resolution"] // 2,) * 2
            rate = throughput(cfg, grid, ctx.device, 3, 1, cfg.batch_size)["samples_s"]
        fit = math.floor(b["train_seconds"] * rate * LOADER_SHARE / counts["train"])
        epochs[model] = max(1, min(fit, b.get("max_epochs") or fit))
        runs[model] = ctx.work / "rough_runs" / model
        overrides = [
            f"data.root={data}",
            "data.subsample=2",
            f"epochs={epochs[model]}",
            f"output.dir={runs[model]}",
            f"device={ctx.device}",
            f"data.num_workers={b['workers']}",
            *[f"data.limit.{split}={n}" for split, n in counts.items()],
            *compressed_schedule(CONFIGS / config, epochs[model]),
        ]
        try:
            costs[model] = train_in_child(CONFIGS / config, overrides)
        except SystemExit as error:  # the child's failure, as an error of this item
            raise RuntimeError(str(error)) from None
    rows = compare_runs(list(runs.values()), ctx.work / "rough_runs" / "compare", samples=1)["rows"]
    for model, row in zip(ROUGH, rows.values(), strict=True):
        sec.row(
            model,
            epochs[model],
            counts["train"],
            costs[model]["seconds"],
            costs[model]["peak_mib"],
            row["relative_l2"],
            row["relative_h1"],
        )
        sec.check(f"{model} test error is finite", row["relative_l2"], FINITE)
    mgno, fno = (r["relative_l2"] for r in rows.values())
    sec.note(
        f"MgNO's test rel. L2 is {mgno / fno:.2f}x FNO's at about the same training time "
        "(published, 500 epochs: MgNO 0.339e-2)"
    )
    return sec
