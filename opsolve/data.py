"""Torch datasets over ``datagen`` dataset files (format: :mod:`datagen.core.schema`).

:class:`SteadyDataset` gives samples (``x`` inputs, ``y`` outputs, channels first),
:class:`TrajectoryDataset` windows of trajectories; :func:`open_split` and
:func:`open_windows` open a split in physical units for training and evaluation.
"""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from datagen.core.errors import UserError
from datagen.core.files import existing_dir
from datagen.core.schema import (
    FORMAT,
    SPLITS,
    TRAJECTORY_FORMAT,
    check_schema,
    field_statistics,
    open_dataset_file,
    read_stats,
    split_file,
    write_stats,
)
from opsolve.residual import Physics, read_physics


class SteadyDataset(Dataset):
    """Samples of a steady problem as channels-first tensors, read lazily from HDF5.

    ``ds[i]`` is ``{"x": (C_in, s', s'), "y": (C_out, s', s')}`` (float32), the neuraloperator
    convention, with ``s' = (s - 1) // subsample + 1`` (nodes ``0, r, 2r, ...``; the boundary is
    kept when ``r`` divides ``s - 1``: 421 -> 85 with r = 5, 421 -> 211 with r = 2).

    Args:
        root: dataset directory (``DIR/data/<split>/*.hdf5``).
        split: "train", "valid" or "test".
        subsample: stride ``r`` >= 1 applied to both axes.
        inputs: input fields (default: ``a``, plus ``f`` when the forcing varies per sample).
        outputs: output fields (default ``u``).
        normalize_inputs / normalize_outputs: z-score each channel with the statistics of the
            train split (``DIR/stats.yaml``; computed once and stored if missing).
        limit: use only the first ``limit`` samples.

    Only one sample is read per ``__getitem__``; the file handle is opened per process.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        subsample: int = 1,
        inputs: list[str] | None = None,
        outputs: list[str] | None = None,
        normalize_inputs: bool = True,
        normalize_outputs: bool = False,
        limit: int | None = None,
    ) -> None:
        if split not in SPLITS:
            raise UserError(f"split {split!r} is not one of {', '.join(SPLITS)}")
        if not isinstance(subsample, int) or subsample < 1:
            raise UserError(f"subsample must be an integer >= 1, got {subsample!r}")
        self.root = Path(root)
        files = sorted((self.root / "data" / split).glob("*.hdf5"))
        if not files:
            raise UserError(f"{self.root}: no {split} file under {self.root / 'data' / split}")
        self.path = files[0]
        self.subsample = subsample
        with open_dataset_file(self.path) as f:
            _check_format(f, self.path, FORMAT)
            fields = f["t0_fields"]
            names = [str(k) for k in fields.attrs["field_names"]]
            self.steady = {k: bool(fields[k].attrs["sample_varying"]) for k in names}
            self.size = int(f["dimensions"]["x"].shape[0])
            self.ndim = int(f.attrs["n_spatial_dims"])
            self.n = int(f.attrs["n_trajectories"])
            self.dataset_name = str(f.attrs["dataset_name"])
        _check_subsample(subsample, self.size, self.resolution)
        varying = [k for k, v in self.steady.items() if v and k != "u"]
        self.inputs = inputs if inputs is not None else varying
        self.outputs = outputs if outputs is not None else ["u"]
        for name in [*self.inputs, *self.outputs]:
            if name not in self.steady:
                raise UserError(
                    f"field {name!r} is not in {self.path} (has {', '.join(self.steady)})"
                )
        if limit is not None:
            self.n = min(self.n, int(limit))
        normalized = [*self.inputs, *self.outputs]
        self.stats = (
            load_statistics(self.root, normalized)
            if (normalize_inputs or normalize_outputs)
            else None
        )
        self.normalize_inputs = normalize_inputs
        self.normalize_outputs = normalize_outputs
        self._file: h5py.File | None = None
        self._pid = -1

    @property
    def resolution(self) -> int:
        """Nodes per side after subsampling."""
        return (self.size - 1) // self.subsample + 1

    def __len__(self) -> int:
        return self.n

    def _handle(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():  # reopen in DataLoader workers
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file

    def _read(self, name: str, index: int, normalize: bool) -> np.ndarray:
        ds = self._handle()["t0_fields"][name]
        r = self.subsample
        if ds.attrs["sample_varying"]:
            data = ds[
                (index,)
                + (0,) * int(ds.attrs["time_varying"])
                + (slice(None, None, r),) * self.ndim
            ]
        else:
            data = ds[(slice(None, None, r),) * self.ndim]
        data = np.asarray(data, dtype=np.float32)
        if normalize and self.stats is not None:
            std = self.stats["std"][name]
            data = (data - self.stats["mean"][name]) / (std if std > 0 else 1.0)
        return data

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.n:
            raise IndexError(f"sample {index} out of range for {self.n} samples")
        x = [self._read(k, index, self.normalize_inputs) for k in self.inputs]
        y = [self._read(k, index, self.normalize_outputs) for k in self.outputs]
        return {"x": torch.from_numpy(np.stack(x)), "y": torch.from_numpy(np.stack(y))}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_file"] = None
        return state


class TrajectoryDataset(Dataset):
    """Windows of stored trajectories: ``input_steps`` frames in, ``output_steps`` frames out.

    ``ds[i]`` is ``{"x": (input_steps, s', s'), "y": (output_steps, s', s')}`` (float32,
    frames as channels: the FNO-2D-in-time convention; a space-time model adds its own axis),
    from a :data:`datagen.core.schema.TRAJECTORY_FORMAT` file (e.g. Navier-Stokes vorticity);
    for 1-D data (Kuramoto-Sivashinsky, KdV) ``{"x": (input_steps, s'), "y": (output_steps,
    s')}``, channels first all the same.
    Window ``i`` of trajectory ``k`` starts at record ``i * stride``; a trajectory of ``R``
    records gives ``(R - input_steps - output_steps) // stride + 1`` windows. The FNO protocol
    is ``input_steps=10, output_steps=T - 10`` with one window per trajectory (``stride`` large).

    Args:
        root: dataset directory; split: "train", "valid" or "test".
        input_steps, output_steps: frames per window (>= 1 each).
        stride: records between window starts (>= 1).
        subsample: spatial stride (periodic grid: ``s' = s // subsample``).
        field: the time-varying field (default: the file's first one, ``vorticity`` for
            Navier-Stokes, ``u`` for the 1-D problems).
        normalize: z-score with the train split's mean and std of the field (``stats.yaml``).
        limit: use only the first ``limit`` trajectories.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        input_steps: int = 10,
        output_steps: int = 10,
        stride: int = 1,
        subsample: int = 1,
        field: str | None = None,
        normalize: bool = False,
        limit: int | None = None,
    ) -> None:
        for key, value in (
            ("input_steps", input_steps),
            ("output_steps", output_steps),
            ("stride", stride),
            ("subsample", subsample),
        ):
            if not isinstance(value, int) or value < 1:
                raise UserError(f"{key} must be an integer >= 1, got {value!r}")
        if split not in SPLITS:
            raise UserError(f"split {split!r} is not one of {', '.join(SPLITS)}")
        self.root = Path(root)
        files = sorted((self.root / "data" / split).glob("*.hdf5"))
        if not files:
            raise UserError(f"{self.root}: no {split} file under {self.root / 'data' / split}")
        self.path = files[0]
        with open_dataset_file(self.path) as f:
            _check_format(f, self.path, TRAJECTORY_FORMAT)
            fields = f["t0_fields"]
            if field is None:
                varying = [
                    str(k) for k in fields.attrs["field_names"] if fields[k].attrs["time_varying"]
                ]
                field = varying[0] if varying else ""
            if field not in f["t0_fields"]:
                names = ", ".join(str(k) for k in f["t0_fields"].attrs["field_names"])
                raise UserError(f"field {field!r} is not in {self.path} (has {names})")
            shape = f["t0_fields"][field].shape
            self.times = np.asarray(f["dimensions"]["time"][...], dtype=np.float64)
        self.trajectories = shape[0] if limit is None else min(shape[0], int(limit))
        self.records, self.size, self.ndim = shape[1], shape[-1], len(shape) - 2
        _check_subsample(subsample, self.size, len(range(0, self.size, subsample)))
        span = input_steps + output_steps
        if span > self.records:
            raise UserError(
                f"input_steps + output_steps = {span} exceeds the {self.records} records "
                f"per trajectory of {self.path}"
            )
        self.per_trajectory = (self.records - span) // stride + 1
        self.input_steps, self.output_steps, self.stride = input_steps, output_steps, stride
        self.subsample, self.field = subsample, field
        self.shift, self.scale = 0.0, 1.0
        if normalize:
            stats = load_statistics(self.root, [field])
            self.shift = float(stats["mean"][field])
            self.scale = float(stats["std"][field]) or 1.0
        self._file: h5py.File | None = None
        self._pid = -1

    def __len__(self) -> int:
        return self.trajectories * self.per_trajectory

    @property
    def resolution(self) -> int:
        """Nodes per side after subsampling."""
        return len(range(0, self.size, self.subsample))

    @property
    def inputs(self) -> list[str]:
        """The field read (one, its frames are the channels)."""
        return [self.field]

    @property
    def outputs(self) -> list[str]:
        return [self.field]

    @property
    def dt(self) -> float:
        """Time between consecutive frames of a window."""
        return float(self.times[1] - self.times[0]) if self.times.size > 1 else 1.0

    def window(self, index: int) -> tuple[int, int]:
        """(trajectory, first record) of window ``index``."""
        return index // self.per_trajectory, (index % self.per_trajectory) * self.stride

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self):
            raise IndexError(f"window {index} out of range for {len(self)} windows")
        if self._file is None or self._pid != os.getpid():  # reopen in DataLoader workers
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        traj, first = self.window(index)
        r = self.subsample
        stop = first + self.input_steps + self.output_steps
        space = (slice(None, None, r),) * self.ndim
        data = self._file["t0_fields"][self.field][(traj, slice(first, stop), *space)]
        data = (np.asarray(data, dtype=np.float32) - self.shift) / self.scale
        frames = torch.from_numpy(data)
        return {"x": frames[: self.input_steps], "y": frames[self.input_steps :]}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_file"] = None
        return state


MIN_NODES = 4  # nodes per side a subsampled grid keeps at least


def _check_subsample(subsample: int, size: int, kept: int) -> None:
    if kept < MIN_NODES:
        most = max(1, (size - 1) // (MIN_NODES - 1))
        raise UserError(
            f"subsample: {subsample} leaves {kept} x {kept} of the {size} x {size} grid; at "
            f"least {MIN_NODES} nodes per side are needed (subsample <= {most})"
        )


def _check_format(f: h5py.File, path: Path, expected: str) -> None:
    """A UserError unless ``f`` is a dataset file of format ``expected``; a file of the other
    format is named as such, with the class that reads it."""
    problems = check_schema(f)
    if problems:
        raise UserError(f"{path}: not a dataset file of this package ({problems[0]})")
    found = f.attrs.get("opsolve_format")
    if found != expected:
        reader = (
            "TrajectoryDataset (data.window)" if found == TRAJECTORY_FORMAT else "SteadyDataset"
        )
        raise UserError(f"{path} holds {found} data, not {expected}: read it with {reader}")


def dataset_kind(root: str | Path) -> str:
    """``"trajectory"`` for a :data:`TRAJECTORY_FORMAT` dataset, ``"steady"`` otherwise
    (decided by the train split's file, else by any split's)."""
    root = Path(root)
    files = [f for split in SPLITS for f in sorted((root / "data" / split).glob("*.hdf5"))]
    if not files:
        raise UserError(f"{root}: no dataset file under {root / 'data'}/<split>/")
    with open_dataset_file(files[0]) as f:
        return "trajectory" if f.attrs.get("opsolve_format") == TRAJECTORY_FORMAT else "steady"


def load_statistics(root: str | Path, fields: list[str] | None = None) -> dict:
    """Normalization statistics of a dataset (``root/stats.yaml``), computed once if missing.

    ``fields``: those the caller normalizes; a stored file that lacks one is a UserError.
    """
    root = Path(root)
    train = sorted((root / "data" / "train").glob("*.hdf5"))
    if not train:
        raise UserError(f"{root}: no train split to compute normalization statistics from")
    stats = read_stats(root, fields)
    if stats is None:
        with open_dataset_file(train[0]) as f:
            names = [str(k) for k in f["t0_fields"].attrs["field_names"]]
        stats = field_statistics(train[0], names)
        write_stats(root, stats)
    return stats


def grid_spacing(ds: SteadyDataset) -> float:
    """Grid step of the subsampled nodes, from the file's ``dimensions/x``."""
    with open_dataset_file(ds.path) as f:
        x = np.asarray(f["dimensions"]["x"][:], dtype=np.float64)
    if x.size < 2:
        return 1.0
    return float(x[min(ds.subsample, x.size - 1)] - x[0])


def _dataset_dir(root: str | Path) -> Path:
    return existing_dir(root, "data.root")


def _nonempty(ds: SteadyDataset | TrajectoryDataset, split: str, items: str):
    if len(ds) == 0:
        raise UserError(f"{ds.path}: the {split} split has no {items}")
    return ds


def open_split(
    root: str | Path,
    split: str,
    subsample: int,
    inputs: list[str] | None,
    outputs: list[str] | None,
    limit: int | None,
) -> SteadyDataset:
    """A split as raw (physical) samples; normalization is the model wrapper's business."""
    ds = SteadyDataset(
        _dataset_dir(root),
        split,
        subsample=subsample,
        inputs=inputs,
        outputs=outputs,
        normalize_inputs=False,
        normalize_outputs=False,
        limit=limit,
    )
    return _nonempty(ds, split, "samples")


def open_windows(
    root: str | Path,
    split: str,
    *,
    input_steps: int,
    output_steps: int,
    stride: int,
    field: str,
    subsample: int,
    limit: int | None = None,
) -> TrajectoryDataset:
    """A split of a trajectory dataset as windows in physical units."""
    ds = TrajectoryDataset(
        _dataset_dir(root),
        split,
        input_steps=input_steps,
        output_steps=output_steps,
        stride=stride,
        subsample=subsample,
        field=field,
        normalize=False,
        limit=limit,
    )
    return _nonempty(ds, split, "windows")


def split_physics(ds: TrajectoryDataset) -> Physics | None:
    """The Navier-Stokes physics of a trajectory split on its (subsampled) grid, else None."""
    with open_dataset_file(ds.path) as f:
        if f.attrs.get("problem") != "navier_stokes":
            return None
    return read_physics(ds.path).on_grid(ds.resolution)


__all__ = [
    "SteadyDataset",
    "TrajectoryDataset",
    "dataset_kind",
    "grid_spacing",
    "load_statistics",
    "open_split",
    "open_windows",
    "split_file",
    "split_physics",
]
