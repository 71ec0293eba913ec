"""Assembling a run: the data splits, the model (registry + normalization), shape checks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datagen.errors import UserError
from datagen.schema import open_dataset_file
from opsolve.data import SteadyDataset, load_statistics
from opsolve.train import distributed as D
from opsolve.train.config import TrainConfig
from opsolve.train.registry import build_model
from opsolve.train.wrapper import NormalizedOperator, channel_stats


@dataclass
class Data:
    """The training and validation splits with what the model and losses need to know."""

    train: SteadyDataset
    valid: SteadyDataset
    stats: dict[str, Any] | None
    spacing: float

    @property
    def in_channels(self) -> int:
        return len(self.train.inputs)

    @property
    def out_channels(self) -> int:
        return len(self.train.outputs)

    def describe(self) -> dict[str, Any]:
        return {
            "root": str(self.train.root),
            "inputs": list(self.train.inputs),
            "outputs": list(self.train.outputs),
            "subsample": self.train.subsample,
            "resolution": self.train.resolution,
            "spacing": self.spacing,
        }


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


def load_data(cfg: TrainConfig, info: D.DistInfo) -> Data:
    """Open train and valid splits and the normalization statistics (rank 0 computes them)."""
    d = cfg.data
    train = open_split(d.root, "train", d.subsample, d.inputs, d.outputs, d.limit.train)
    valid = open_split(d.root, "valid", d.subsample, d.inputs, d.outputs, d.limit.valid)
    stats = None
    if d.normalize.inputs or d.normalize.outputs:
        if info.is_main:
            stats = load_statistics(d.root)  # computed and stored once if missing
        D.barrier(info)
        if not info.is_main:
            stats = load_statistics(d.root)
    return Data(train=train, valid=valid, stats=stats, spacing=grid_spacing(train))


def resolve_params(cfg: TrainConfig, data: Data) -> dict[str, Any]:
    """``model.params`` with the data's channel counts; a conflicting count is a UserError."""
    params = dict(cfg.model.params)
    for key, have, names in (
        ("in_channels", data.in_channels, data.train.inputs),
        ("out_channels", data.out_channels, data.train.outputs),
    ):
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
    return NormalizedOperator(
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
