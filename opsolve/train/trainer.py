"""Training driver: config -> data -> model -> epochs -> checkpoints and metrics.

:func:`train` runs one training job, single-process or under ``torchrun`` (DDP, see
:mod:`opsolve.train.distributed`). Everything that can be wrong with the inputs (config, data,
model parameters, run directory) is checked before the first file is written and raised as a
one-line :class:`UserError`. A non-finite loss or validation metric raises
:class:`TrainingDiverged` before anything is stepped or saved, so the last good checkpoint stays.

Resume is per epoch: ``last.pt`` is written at the end of every epoch with the model,
optimizer, scheduler and RNG states; the order of epoch ``e`` is a function of ``(seed, e)``.
A run killed mid-epoch restarts that epoch from ``last.pt`` and reproduces the uninterrupted
run bit for bit on the same machine and thread count.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from datagen.core.config import dump_config, first_difference
from datagen.core.device import resolve_device
from datagen.core.errors import UserError
from datagen.core.files import write_text_atomic
from datagen.core.progress import progress_bar
from opsolve.data import SteadyDataset, TrajectoryDataset, load_statistics
from opsolve.models.registry import (
    build_operator,
    check_fits,
    check_model_name,
    count_parameters,
    load_state,
    model_config,
)
from opsolve.models.wrapper import NormalizedOperator, ObserverOperator
from opsolve.train import distributed as D
from opsolve.train.assemble import Data, load_data, resolve_params
from opsolve.train.assimilation import AssimilationTask
from opsolve.train.checkpoint import (
    load_checkpoint,
    rng_state,
    run_checkpoint,
    save_checkpoint,
    seed_everything,
    set_rng_state,
)
from opsolve.train.config import TrainConfig
from opsolve.train.errors import TrainingDiverged
from opsolve.train.losses import make_objective, validation_metrics
from opsolve.train.optim import (
    autocast,
    build_optimizer,
    build_scheduler,
    check_amp_model,
    check_precision,
    spectral_layers_in_fp32,
    steps_per_batch,
)
from opsolve.train.rundir import (
    RunLog,
    RunPaths,
    append_metrics,
    check_run_dir,
    prepare_run_dir,
    read_metrics,
)

RESUMABLE_CHANGES = ("data.num_workers", "output.dir")  # keys that do not change a run
FAULT_ENV = "OPSOLVE_FAULT"  # test hook: "kill_after_steps=N" or "nan_at_step=N"


def _fault() -> tuple[str, int] | None:
    raw = os.environ.get(FAULT_ENV, "").strip()
    if not raw:
        return None
    kind, _, value = raw.partition("=")
    if kind not in ("kill_after_steps", "nan_at_step") or not value.isdigit():
        raise UserError(f"{FAULT_ENV}={raw!r}: expected kill_after_steps=N or nan_at_step=N")
    return kind, int(value)


# ----------------------------------------------------------------------------- the loop


@dataclass
class State:
    """Counters carried across epochs (and through checkpoints)."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimizer steps taken
    best_metric: float = math.inf
    best_epoch: int = 0


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    non_blocking = device.type == "cuda"
    return batch["x"].to(device, non_blocking=non_blocking), batch["y"].to(
        device, non_blocking=non_blocking
    )


def _loader(
    ds: SteadyDataset | TrajectoryDataset, steps: list[D.Step], cfg: TrainConfig, seed: int
) -> DataLoader:
    generator = torch.Generator()
    generator.manual_seed(seed)  # worker seeds without touching the global torch generator
    return DataLoader(
        ds,
        batch_sampler=[s.indices for s in steps],
        num_workers=cfg.data.num_workers,
        pin_memory=torch.cuda.is_available() and cfg.device != "cpu",
        generator=generator,
        persistent_workers=False,
    )


def evaluate_split(
    model: torch.nn.Module,
    ds: SteadyDataset | TrajectoryDataset,
    batch_size: int,
    spacing: float,
    cfg: TrainConfig,
    device: torch.device,
    info: D.DistInfo,
    task: AssimilationTask | None = None,
) -> tuple[float, float]:
    """Mean relative L2 and H1 over a split (ranks share it; sums are all-reduced).

    Trajectories: relative Bochner errors over space-time (:mod:`opsolve.norms`); an observer
    (``task``): the errors of its analyses over the scored steps of each window.
    """
    kind = "trajectory" if isinstance(ds, TrajectoryDataset) else "steady"
    metrics = validation_metrics(kind, spacing)
    steps = D.eval_plan(len(ds), batch_size, info)
    sums = torch.zeros(3, dtype=torch.float64, device=device)
    model.eval()
    with torch.no_grad():
        for step, batch in zip(steps, _loader(ds, steps, cfg, 0), strict=True):
            x, y = _to(batch, device)
            with autocast(cfg, device):
                if task is not None:
                    l2, h1 = task.metrics(model, x, y, step.indices[0])
                else:
                    l2, h1 = metrics(model(x).float(), y)
            sums[0] += l2.double().sum()
            sums[1] += h1.double().sum()
            sums[2] += y.shape[0]
    model.train()
    D.all_reduce_sum(sums, info)
    n = max(float(sums[2]), 1.0)
    return float(sums[0]) / n, float(sums[1]) / n


def assimilation_task(cfg: TrainConfig, data: Data, info: D.DistInfo) -> AssimilationTask:
    """The observations, loss and metrics of an observer run (its noise is relative to the
    train split's std of the field, read from ``stats.yaml``)."""
    field = data.train.inputs[0]
    stats = data.stats
    if stats is None:  # normalization is off: the statistics are still needed for the noise
        if info.is_main:
            stats = load_statistics(cfg.data.root, [field])
        D.barrier(info)
        stats = stats or load_statistics(cfg.data.root, [field])
    std = float(stats["std"][field]) or 1.0
    return AssimilationTask(cfg.observer, std, cfg.seed, info.rank)


def train(
    cfg: TrainConfig, *, resume: bool = False, overwrite: bool = False, progress: bool = True
) -> dict[str, Any]:
    """Train from a validated config; returns the last epoch's metrics and the best epoch.

    Raises:
        UserError: bad config, data, model parameters or run directory (nothing written).
        TrainingDiverged: NaN/inf loss or validation metric (last good checkpoint kept).
    """
    info = D.dist_info_from_env()
    if info.enabled and cfg.batch_size % info.world:
        raise UserError(
            f"batch_size: {cfg.batch_size} is the global batch and must be divisible by the "
            f"{info.world} processes"
        )
    check_model_name(cfg.model.name)
    device = resolve_device(cfg.device, "device", info.local_rank if info.enabled else None)
    check_precision(cfg, device)
    D.init_distributed(info, device)
    try:
        return _train(cfg, info, device, resume=resume, overwrite=overwrite, progress=progress)
    finally:
        D.shutdown_distributed()


def _restore(
    checkpoint: dict[str, Any],
    path: Path,
    op: NormalizedOperator,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    scaler: torch.amp.GradScaler,
) -> State:
    """Load every state a checkpoint holds (after the objects were built and seeded)."""
    load_state(op, checkpoint["state"], path)
    optimizer.load_state_dict(checkpoint["optimizer"])
    planned = getattr(scheduler, "total_steps", None)
    scheduler.load_state_dict(checkpoint["scheduler"])
    if getattr(scheduler, "total_steps", None) != planned:
        raise UserError(
            f"{path}: its one-cycle schedule spans {scheduler.total_steps} steps (stepped once "
            f"per epoch, as before one-cycle stepped per batch), this run needs {planned}; "
            "pass --overwrite to train it again"
        )
    scaler.load_state_dict(checkpoint["scaler"])
    set_rng_state(checkpoint["rng"])
    return State(
        epoch=int(checkpoint["epoch"]),
        step=int(checkpoint["step"]),
        best_metric=float(checkpoint["best"]["metric"]),
        best_epoch=int(checkpoint["best"]["epoch"]),
    )


def start_from(op: NormalizedOperator, run: str, which: str, name: str) -> None:
    """Load the network weights of ``run``'s ``which`` checkpoint into ``op.model`` (``init``:
    fine-tuning); its normalization stays that of the current data. A missing run or
    checkpoint, another model or another architecture is a UserError."""
    path = run_checkpoint(run, which, "init.run")
    checkpoint = load_checkpoint(path)
    there = checkpoint["model"]["name"]
    if there != name:
        raise UserError(f"init.run {run} trained a {there!r} model, this config a {name!r} one")
    prefix = "model."
    state = {k[len(prefix) :]: v for k, v in checkpoint["state"].items() if k.startswith(prefix)}
    load_state(op.model, state, path)


def _read_as_now(stored: dict[str, Any]) -> dict[str, Any]:
    """A run's stored config as the current schema reads it: options added since the run was
    made take their defaults, which keep the old behaviour, so they do not block a resume.
    A config the schema no longer accepts is compared as stored."""
    try:
        return TrainConfig.model_validate(stored).model_dump(mode="json")
    except pydantic.ValidationError:
        return stored


def _train(
    cfg: TrainConfig,
    info: D.DistInfo,
    device: torch.device,
    *,
    resume: bool,
    overwrite: bool,
    progress: bool,
) -> dict[str, Any]:
    paths = RunPaths(Path(cfg.output.dir))
    resuming = check_run_dir(paths, resume, overwrite)
    data = load_data(cfg, info)
    params = resolve_params(cfg, data)
    resolved = cfg.model_copy(deep=True)
    resolved.model.params = params
    checkpoint = load_checkpoint(paths.last) if resuming else None
    if checkpoint is not None:
        changed = first_difference(
            _read_as_now(checkpoint["config"]), resolved.model_dump(mode="json"), RESUMABLE_CHANGES
        )
        if changed:
            key, there, now = changed
            raise UserError(
                f"the config differs from the run in {paths.root} at {key} ({there!r} in the "
                f"run, {now!r} now); "
                "resume with the same config or pass --overwrite"
            )

    seed_everything(cfg.seed)
    normalize = (cfg.data.normalize.inputs, cfg.data.normalize.outputs)
    op = build_operator(cfg.model.name, params, data.stats, data.describe(), normalize)
    if cfg.init.run is not None and checkpoint is None:
        start_from(op, cfg.init.run, cfg.init.checkpoint, cfg.model.name)
    check_amp_model(cfg, op)
    op.to(device)
    if cfg.precision == "amp":
        spectral_layers_in_fp32(op)
    check_fits(op, data.valid[0], cfg.model.name, device)
    model_spec = {"name": cfg.model.name, "params": model_config(cfg.model.name, op.model, params)}
    task = assimilation_task(cfg, data, info) if isinstance(op, ObserverOperator) else None
    optimizer = build_optimizer(cfg, op.parameters())
    steps_per_epoch = len(D.train_plan(len(data.train), cfg.batch_size, 0, 0, info))
    scheduler = build_scheduler(cfg, optimizer, steps_per_epoch)
    scaler = torch.amp.GradScaler(
        "cuda", enabled=cfg.precision == "amp" and cfg.amp_dtype == "fp16"
    )
    state = State()
    if checkpoint is not None:
        state = _restore(checkpoint, paths.last, op, optimizer, scheduler, scaler)

    D.barrier(info)  # every rank passed every check: now write
    log = RunLog(paths.log if info.is_main else None, echo=info.is_main)
    if info.is_main:
        prepare_run_dir(paths, state.epoch if checkpoint is not None else None, overwrite)
        write_text_atomic(paths.config, dump_config(resolved))
        where = f"resumed after epoch {state.epoch}" if checkpoint is not None else "started"
        if checkpoint is None and cfg.init.run is not None:
            where += f" from the weights of {cfg.init.run} ({cfg.init.checkpoint})"
        grid = "x".join([str(data.train.resolution)] * data.train.ndim)  # 64, 64x64, ...
        log(
            f"run {where}: model {cfg.model.name} ({count_parameters(op.model):,} parameters), "
            f"data {data.train.root} ({len(data.train)} train / {len(data.valid)} valid at "
            f"{grid}), {info.world} process(es) on {device.type}, {cfg.precision}"
        )
    D.barrier(info)

    net: torch.nn.Module = op
    if info.enabled:
        net = torch.nn.parallel.DistributedDataParallel(
            op, device_ids=[device.index] if device.type == "cuda" else None
        )
    loop = _Loop(cfg, info, device, net, op, optimizer, scheduler, scaler, data, paths, log)
    loop.task = task
    loop.context = {"model": model_spec, "config": resolved.model_dump(mode="json")}
    return loop.run(state, progress)


class _Loop:
    """The epoch loop; holds the objects that one epoch touches."""

    def __init__(
        self,
        cfg: TrainConfig,
        info: D.DistInfo,
        device: torch.device,
        net: torch.nn.Module,
        op: NormalizedOperator,
        optimizer: torch.optim.Optimizer,
        scheduler: Any,
        scaler: torch.amp.GradScaler,
        data: Data,
        paths: RunPaths,
        log: RunLog,
    ) -> None:
        self.cfg, self.info, self.device = cfg, info, device
        self.net, self.op = net, op
        self.optimizer, self.scheduler, self.scaler = optimizer, scheduler, scaler
        self.data, self.paths, self.log = data, paths, log
        # relative_h1 with gradient weight w == relative_h1 on a grid step h / sqrt(w)
        self.objective = make_objective(
            data.kind,
            cfg.loss.name,
            cfg.loss.gradient_weight,
            data.spacing,
            data.physics,
            cfg.loss.residual_weight,
            cfg.loss.residual_order,
        )
        self.fault = _fault()
        self.context: dict[str, Any] = {}
        self.task: AssimilationTask | None = None

    def run(self, state: State, progress: bool) -> dict[str, Any]:
        cfg = self.cfg
        steps_per_epoch = len(D.train_plan(len(self.data.train), cfg.batch_size, 0, 0, self.info))
        bar = progress_bar(
            cfg.epochs * steps_per_epoch,
            initial=state.epoch * steps_per_epoch,
            unit="step",
            enabled=progress and self.info.is_main,
            dynamic_ncols=True,
        )
        row: dict[str, Any] = {}
        try:
            for epoch in range(state.epoch + 1, cfg.epochs + 1):
                row = self.epoch(epoch, state, bar)
        except TrainingDiverged as err:
            kept = (
                f"last good checkpoint {self.paths.last} (epoch {state.epoch}) left untouched"
                if state.epoch
                else "no checkpoint was written yet"
            )
            if self.info.is_main:
                self.log(f"diverged: {err}; {kept}")
            raise TrainingDiverged(f"{err}; {kept}") from None
        finally:
            bar.close()
        if self.info.is_main:
            self.finish(state)
        return {**row, "best_epoch": state.best_epoch, "best_" + cfg.selection: state.best_metric}

    def epoch(self, epoch: int, state: State, bar: tqdm) -> dict[str, Any]:
        """Train one epoch (1-based), validate, write metrics and checkpoints."""
        cfg, info = self.cfg, self.info
        start = time.perf_counter()
        lr = self.optimizer.param_groups[0]["lr"]
        plan = D.train_plan(len(self.data.train), cfg.batch_size, cfg.seed, epoch, info)
        loader = _loader(self.data.train, plan, cfg, cfg.seed + epoch)
        total, seen = 0.0, 0
        bar.set_description(f"epoch {epoch}/{cfg.epochs}")
        self.net.train()
        tick = time.perf_counter()
        for step, batch in zip(plan, loader, strict=True):
            total += self.train_step(step, batch, epoch, state)
            seen += step.n_global
            now = time.perf_counter()  # samples/s over loading and stepping
            rate = step.n_global / max(now - tick, 1e-9)
            tick = now
            bar.set_postfix(loss=f"{total / seen:.3e}", samples_s=f"{rate:.1f}")
            bar.update()
        if not steps_per_batch(cfg):
            self.scheduler.step()
        valid_l2, valid_h1 = evaluate_split(
            self.net,
            self.data.valid,
            cfg.eval_batch_size or cfg.batch_size,
            self.data.spacing,
            cfg,
            self.device,
            info,
            self.task,
        )
        if not (math.isfinite(valid_l2) and math.isfinite(valid_h1)):
            raise TrainingDiverged(
                f"validation error is {valid_l2} (L2) / {valid_h1} (H1) after epoch {epoch} "
                f"(step {state.step})"
            )
        row = {
            "epoch": epoch,
            "train_loss": total / len(self.data.train),
            "valid_l2": valid_l2,
            "valid_h1": valid_h1,
            "lr": lr,
            "seconds": time.perf_counter() - start,
        }
        state.epoch = epoch
        metric = row[cfg.selection]
        improved = metric < state.best_metric
        if improved:
            state.best_metric, state.best_epoch = metric, epoch
        if info.is_main:
            append_metrics(self.paths.metrics, row)
            self.save(state, row, improved)
            self.log(
                f"epoch {epoch}/{cfg.epochs}  train {row['train_loss']:.4e}  valid_l2 "
                f"{valid_l2:.4e}  valid_h1 {valid_h1:.4e}  lr {lr:.3e}  {row['seconds']:.1f}s"
                + ("  *best*" if improved else "")
            )
        return row

    def train_step(
        self, step: D.Step, batch: dict[str, torch.Tensor], epoch: int, state: State
    ) -> float:
        """One optimizer step; returns the global batch's summed per-sample loss."""
        x, y = _to(batch, self.device)
        with autocast(self.cfg, self.device):
            if self.task is not None:
                per_sample = self.task.loss(self.net, x, y, state.step)
            else:
                per_sample = self.objective(self.net(x).float(), x, y)
        loss = per_sample.sum() * step.weight
        summed = torch.stack([per_sample.detach().sum() * (1.0 if step.weight else 0.0)])
        summed = D.all_reduce_sum(summed.double(), self.info)
        value = float(summed[0])
        if self.fault == ("nan_at_step", state.step + 1):
            value = math.nan
        if not math.isfinite(value):
            raise TrainingDiverged(
                f"loss is {value} at epoch {epoch}, step {state.step + 1} (global batch of "
                f"{step.n_global}); lower optimizer.lr or check the data"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if steps_per_batch(self.cfg):
            self.scheduler.step()
        state.step += 1
        if self.fault == ("kill_after_steps", state.step):
            os._exit(137)  # simulate a hard kill (no cleanup, no checkpoint)
        return value

    def save(self, state: State, row: dict[str, Any], improved: bool) -> None:
        checkpoint = {
            **self.context,
            "state": self.op.state_dict(),
            "normalization": self.data.stats,
            "data": self.data.describe(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": state.epoch,
            "step": state.step,
            "best": {"metric": state.best_metric, "epoch": state.best_epoch},
            "selection": self.cfg.selection,
            "rng": rng_state(),
            "sampler": {"seed": self.cfg.seed, "next_epoch": state.epoch + 1},
            "metrics": row,
        }
        save_checkpoint(checkpoint, self.paths.last)
        if improved:
            save_checkpoint(checkpoint, self.paths.best)

    def finish(self, state: State) -> None:
        from opsolve.plots import plot_curves

        figure = plot_curves(read_metrics(self.paths.metrics), self.paths.figures / "curves.png")
        self.log(
            f"done: best {self.cfg.selection} {state.best_metric:.4e} at epoch "
            f"{state.best_epoch}; checkpoints in {self.paths.checkpoints}; curves {figure}"
        )
