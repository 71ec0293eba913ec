"""Assembling a training run's inputs: the train and valid splits, their statistics, and the
model parameters the data decide.

Two kinds of data: steady samples (:class:`SteadyDataset`, e.g. Darcy) and trajectory windows
(:class:`TrajectoryDataset`, e.g. Navier-Stokes vorticity; the model then maps
``(batch, T_in, x, y)`` to ``(batch, T_out, x, y)`` and gets ``input_steps`` / ``output_steps``
from the data instead of channel counts). The kind is read from the dataset file. Opening a
split and building an operator are shared with evaluation (:mod:`opsolve.data`,
:mod:`opsolve.models.registry`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from datagen.core.errors import UserError
from datagen.core.files import existing_dir
from opsolve.data import (
    SteadyDataset,
    TrajectoryDataset,
    dataset_kind,
    grid_spacing,
    load_statistics,
    open_split,
    open_windows,
    split_physics,
)
from opsolve.models.registry import check_model_fits_data
from opsolve.residual import Physics
from opsolve.train import distributed as D
from opsolve.train.config import TrainConfig


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


def load_data(cfg: TrainConfig, info: D.DistInfo) -> Data:
    """Open train and valid splits and the normalization statistics (rank 0 computes them)."""
    d = cfg.data
    existing_dir(d.root, "data.root")
    physics = None
    kind = dataset_kind(d.root)
    check_model_fits_data(cfg.model.name, kind, d.root)
    if kind == "trajectory":
        if d.inputs is not None or d.outputs is not None:
            raise UserError(
                "data.inputs / data.outputs do not apply to trajectories: use data.window"
            )
        window = d.window.model_dump()
        train = open_windows(d.root, "train", **window, subsample=d.subsample, limit=d.limit.train)
        valid = open_windows(d.root, "valid", **window, subsample=d.subsample, limit=d.limit.valid)
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
        fields = sorted({*train.inputs, *train.outputs})
        if info.is_main:
            stats = load_statistics(d.root, fields)  # computed and stored once if missing
        D.barrier(info)
        if not info.is_main:
            stats = load_statistics(d.root, fields)
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
