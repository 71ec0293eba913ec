"""Torch datasets over ``datagen`` dataset files (format: :mod:`datagen.schema`)."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from datagen.errors import UserError
from datagen.schema import (
    FORMAT,
    SPLITS,
    check_schema,
    field_statistics,
    open_dataset_file,
    read_stats,
    split_file,
    write_stats,
)


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
            if f.attrs.get("opsolve_format") != FORMAT or check_schema(f):
                problem = (check_schema(f) or ["not written by datagen"])[0]
                raise UserError(f"{self.path}: not an {FORMAT} dataset file ({problem})")
            fields = f["t0_fields"]
            names = [str(k) for k in fields.attrs["field_names"]]
            self.steady = {k: bool(fields[k].attrs["sample_varying"]) for k in names}
            self.size = int(f["dimensions"]["x"].shape[0])
            self.n = int(f.attrs["n_trajectories"])
            self.dataset_name = str(f.attrs["dataset_name"])
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
        self.stats = load_statistics(self.root) if (normalize_inputs or normalize_outputs) else None
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
            data = ds[(index,) + (0,) * int(ds.attrs["time_varying"]) + (slice(None, None, r),) * 2]
        else:
            data = ds[::r, ::r]
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


def load_statistics(root: str | Path) -> dict:
    """Normalization statistics of a dataset (``root/stats.yaml``), computed once if missing."""
    root = Path(root)
    stats = read_stats(root)
    if stats is None:
        train = sorted((root / "data" / "train").glob("*.hdf5"))
        if not train:
            raise UserError(f"{root}: no train split to compute normalization statistics from")
        with open_dataset_file(train[0]) as f:
            names = [str(k) for k in f["t0_fields"].attrs["field_names"]]
        stats = field_statistics(train[0], names)
        write_stats(root, stats)
    return stats


__all__ = ["SteadyDataset", "load_statistics", "split_file"]
