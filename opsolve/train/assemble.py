"""Assembling a run: the data splits, the model (registry + normalization), shape checks.

Two kinds of data: steady samples (:class:`SteadyDataset`, e.g. Darcy) and trajectory windows
(:class:`TrajectoryDataset`, e.g. Navier-Stokes vorticity; the model then maps
``(batch, T_in, x, y)`` to ``(batch, T_out, x, y)`` and gets ``input_steps`` / ``output_steps``
from the data instead of channel counts). The kind is read from the dataset file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datagen.errors import UserError
from datagen.schema import open_dataset_file
from opsolve.data import SteadyDataset, TrajectoryDataset, dataset_kind, load_statistics
from opsolve.residual import Physics, read_physics
from opsolve.train import distributed as D
from opsolve.train.config import TrainConfig, Window
from opsolve.train.registry import build_model
from opsolve.train.wrapper import NormalizedOperator, TrajectoryOperator, channel_stats


@dataclass
class Data:
    """The training and validation splits with what the model and losses need to know."""

    train: SteadyDataset | TrajectoryDataset
    valid: SteadyDataset | TrajectoryDataset
    stats: dict[str, Any] | None
    spacing: float
    physics: Physics | None = None  # Navier-Stokes trajectories: what the residual needs

    @property
    def kind(self) -> str:
        return "trajectory" if isinstance(self.train, TrajectoryDataset) else "steady"

    @property
    def in_channels(self) -> int:
        return len(self.train.inputs)

    @property
    def out_channels(self) -> int:
        return len(self.train.outputs)

    def describe(self) -> dict[str, Any]:
        info = {
            "root": str(self.train.root),
            "inputs": list(self.train.inputs),
            "outputs": list(self.train.outputs),
            "subsample": self.train.subsample,
            "resolution": self.train.resolution,
            "spacing": self.spacing,
        }
        if isinstance(self.train, TrajectoryDataset):
            info.update(
                kind="trajectory",
                input_steps=self.train.input_steps,
                output_steps=self.train.output_steps,
                stride=self.train.stride,
                field=self.train.field,
                dt=self.train.dt,
            )
            if self.physics is not None:
                info.update(viscosity=self.physics.viscosity, drag=self.physics.drag)
        return info


def grid_spacing(ds: SteadyDataset) -> float:
    """Grid step of the subsampled nodes, from the file's ``dimensions/x``."""
    with open_dataset_file(ds.path) as f:
        x = np.asarray(f["dimensions"]["x"][:], dtype=np.float64)
    if x.size < 2:
        return 1.0
    return float(x[min(ds.subsample, x.size - 1)] - x[0])


def open_split(
    root: str | Path,
    split: str,
    subsample: int,
    inputs: list[str] | None,
    outputs: list[str] | None,
    limit: int | None,
) -> SteadyDataset:
    """A split as raw (physical) samples; normalization is the model wrapper's business."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"data.root: dataset directory {root} does not exist")
    ds = SteadyDataset(
        root,
        split,
        subsample=subsample,
        inputs=inputs,
        outputs=outputs,
        normalize_inputs=False,
        normalize_outputs=False,
        limit=limit,
    )
    if len(ds) == 0:
        raise UserError(f"{ds.path}: the {split} split has no samples")
    return ds


def open_windows(
    root: str | Path, split: str, window: Window | dict[str, Any], subsample: int, limit: int | None
) -> TrajectoryDataset:
    """A split of a trajectory dataset as windows in physical units."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"data.root: dataset directory {root} does not exist")
    w = window if isinstance(window, Window) else Window(**window)
    ds = TrajectoryDataset(
        root,
        split,
        input_steps=w.input_steps,
        output_steps=w.output_steps,
        stride=w.stride,
        subsample=subsample,
        field=w.field,
        normalize=False,
        limit=limit,
    )
    if len(ds) == 0:
        raise UserError(f"{ds.path}: the {split} split has no windows")
    return ds


def split_physics(ds: TrajectoryDataset) -> Physics | None:
    """The Navier-Stokes physics of a trajectory split on its (subsampled) grid, else None."""
    with open_dataset_file(ds.path) as f:
        if f.attrs.get("problem") != "navier_stokes":
            return None
    return read_physics(ds.path).on_grid(ds.resolution)


def load_data(cfg: TrainConfig, info: D.DistInfo) -> Data:
    """Open train and valid splits and the normalization statistics (rank 0 computes them)."""
    d = cfg.data
    if not Path(d.root).is_dir():
        raise UserError(f"data.root: dataset directory {d.root} does not exist")
    physics = None
    if dataset_kind(d.root) == "trajectory":
        if d.inputs is not None or d.outputs is not None:
            raise UserError(
                "data.inputs / data.outputs do not apply to trajectories: use data.window"
            )
        train = open_windows(d.root, "train", d.window, d.subsample, d.limit.train)
        valid = open_windows(d.root, "valid", d.window, d.subsample, d.limit.valid)
        physics = split_physics(train)
        spacing = 1.0 / train.resolution
    else:
        train = open_split(d.root, "train", d.subsample, d.inputs, d.outputs, d.limit.train)
        valid = open_split(d.root, "valid", d.subsample, d.inputs, d.outputs, d.limit.valid)
        spacing = grid_spacing(train)
    if cfg.loss.residual_weight > 0 and physics is None:
        raise UserError(
            "loss.residual_weight needs Navier-Stokes trajectory data (the vorticity residual); "
            f"{d.root} has none"
        )
    stats = None
    if d.normalize.inputs or d.normalize.outputs:
        if info.is_main:
            stats = load_statistics(d.root)  # computed and stored once if missing
        D.barrier(info)
        if not info.is_main:
            stats = load_statistics(d.root)
    return Data(train=train, valid=valid, stats=stats, spacing=spacing, physics=physics)


def resolve_params(cfg: TrainConfig, data: Data) -> dict[str, Any]:
    """``model.params`` with the data's channel counts (trajectories: ``input_steps`` and
    ``output_steps``); a conflicting count is a UserError."""
    params = dict(cfg.model.params)
    if isinstance(data.train, TrajectoryDataset):
        sizes = (
            ("input_steps", data.train.input_steps, ["data.window.input_steps"]),
            ("output_steps", data.train.output_steps, ["data.window.output_steps"]),
        )
    else:
        sizes = (
            ("in_channels", data.in_channels, data.train.inputs),
            ("out_channels", data.out_channels, data.train.outputs),
        )
    for key, have, names in sizes:
        if key in params and params[key] != have:
            raise UserError(
                f"model.params.{key}: {params[key]!r} does not match the data, which has "
                f"{have} ({', '.join(names)}); remove the key or set it to {have}"
            )
        params[key] = have
    return params


def build_operator(
    name: str,
    params: dict[str, Any],
    stats: dict[str, Any] | None,
    data_info: dict[str, Any],
    normalize: tuple[bool, bool],
) -> NormalizedOperator:
    """Registry model wrapped between input normalization and output decoding."""
    model = build_model(name, params)
    wrapper = TrajectoryOperator if data_info.get("kind") == "trajectory" else NormalizedOperator
    return wrapper(
        model,
        channel_stats(stats, data_info["inputs"], normalize[0]),
        channel_stats(stats, data_info["outputs"], normalize[1]),
    )


def check_fits(
    op: NormalizedOperator, sample: dict[str, torch.Tensor], name: str, device: torch.device
) -> None:
    """One forward pass on one sample: the output must have the target's shape.

    Run it on the device the model will train on (after ``op.to(device)``): neuraloperator's
    grid embedding caches its grid on the device of its first call.
    """
    x, y = sample["x"][None].to(device), sample["y"][None]
    was = op.training
    try:
        op.eval()
        with torch.no_grad():
            out = op(x)
    except (RuntimeError, ValueError, IndexError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"model {name!r} does not fit the data (input {tuple(x.shape[1:])}): {first}"
        ) from None
    finally:
        op.train(was)
    if tuple(out.shape) != tuple(y.shape):
        raise UserError(
            f"model {name!r} maps input {tuple(x.shape[1:])} to {tuple(out.shape[1:])}, "
            f"but the target is {tuple(y.shape[1:])}"
        )


def load_state(module: torch.nn.Module, state: dict[str, Any], source: Path) -> None:
    """Strict ``load_state_dict``; a mismatch (another model version) is a UserError."""
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0] if lines else "mismatch"
        raise UserError(f"{source}: the stored weights do not fit the model ({detail})") from None


def count_parameters(model: torch.nn.Module) -> int:
    """Real parameters (a complex one counts twice)."""
    return sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters())
