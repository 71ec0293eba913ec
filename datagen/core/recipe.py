"""The recipe contract: how a problem plugs into the resumable driver (:mod:`datagen.generate`).

A problem describes its dataset as a :class:`Recipe`: what one work unit of samples is (a pure
function ``solve_unit(split, start, stop)`` of the config) and which files the units' arrays
are assembled into (:class:`OutputDataset`). The driver does the rest (ordering, shards,
resume, assembly, statistics, summaries), the same for every problem.

Also here, what recipes share: the random stream of each kind of input (:func:`stream`), the
provenance written into every file (:func:`provenance`), and for linear solves the per-sample
diagnostics (:func:`diagnostic_arrays`) and the check that every solve succeeded
(:func:`check_solves`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import datagen
from datagen.core.config import GenerationConfig, dump_config
from datagen.core.errors import SolverFailure
from datagen.core.schema import SPLITS, FileLayout
from datagen.linalg.krylov import SolveInfo

# Random streams of a split: each kind of random input draws from its own.
STREAM_COEFFICIENT, STREAM_FORCING = 0, 1


@dataclass
class OutputDataset:
    """One dataset a recipe writes: its directory, its file layout and where its fields come
    from in the unit arrays.

    Attributes:
        root: the dataset directory.
        layout: the problem's fields, grid and attributes of every split file.
        fields: stored field name -> key of the unit arrays holding it (default: the same
            name, for every field of the layout).
        stats_fields: fields whose train statistics go into ``stats.yaml`` (default: all).
    """

    root: Path
    layout: FileLayout
    fields: dict[str, str] = field(default_factory=dict)
    stats_fields: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.fields = self.fields or {spec.name: spec.name for spec in self.layout.fields}
        self.stats_fields = self.stats_fields or list(self.fields)


@dataclass
class Recipe:
    """A problem's dataset as the driver sees it.

    Attributes:
        config: the validated config (name, samples per split and ``batch_size`` come from it).
        solve_unit: ``(split, start, stop) -> arrays`` of one work unit: the fields and the
            per-sample diagnostics of the file format. Sample ``i`` of a split must depend
            only on the config, the split and ``i`` (so a resumed run gives the same arrays).
        outputs: the datasets written from the units (the first is ``output.dir``).
        unit_memory: ``batch -> bytes``: the peak memory of a work unit of ``batch``
            samples (a model calibrated on measured peaks; :mod:`datagen.core.resources`
            refuses a run whose unit does not fit).
        provenance: problem-specific attributes of every file's ``provenance/`` group
            (``solver_tol``, ...), beyond :func:`provenance`.
        notes: ``diagnostics of a whole split -> str`` for the summary table.
    """

    config: GenerationConfig
    solve_unit: Callable[[str, int, int], dict[str, np.ndarray]]
    outputs: list[OutputDataset]
    unit_memory: Callable[[int], float]
    provenance: dict[str, Any] = field(default_factory=dict)
    notes: Callable[[dict[str, np.ndarray]], str] = lambda diagnostics: ""

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def sizes(self) -> dict[str, int]:
        return self.config.samples.model_dump()

    @property
    def batch_size(self) -> int:
        return self.config.batch_size


def stream(split: str, kind: int) -> int:
    """Random stream id of (split, kind): splits draw independent samples."""
    return 2 * SPLITS.index(split) + kind


def provenance(cfg: GenerationConfig, **extra: Any) -> dict[str, Any]:
    """Attributes of a file's ``provenance/`` group: the resolved config, the package version,
    the seed, the creation time and ``extra``."""
    return {
        "config": dump_config(cfg),
        "package_version": datagen.__version__,
        "seed": cfg.seed,
        "created_unix": time.time(),
        **extra,
    }


def diagnostic_arrays(
    info: Sequence[SolveInfo], indices: np.ndarray, positions: np.ndarray, seeds: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-sample provenance of one unit (every steady problem stores the same ones).

    Args:
        info: one :class:`SolveInfo` per sample, in sample order.
        indices: (B,) sample indices; positions: (B,) each sample's place in the solve order
            (the sorted order of SKR; the indices themselves when nothing is sorted).
        seeds: (B,) the seeds the samples were drawn from.
    """
    return {
        "iterations": np.array([r.iterations for r in info], dtype=np.int32),
        "residual": np.array([r.residual for r in info]),
        "seconds": np.array([r.seconds for r in info]),
        "method": np.array([r.method for r in info]),
        "sort_position": np.asarray(positions, dtype=np.int64),
        "sample_index": np.asarray(indices, dtype=np.int64),
        "seed": np.asarray(seeds, dtype=np.uint64),
    }


def superlu_bytes(unknowns: int, complex_values: bool = False) -> float:
    """Peak memory of one SuperLU factorization of a 5-point matrix with ``unknowns`` rows.

    Fill grows like ``n log2 n`` for the minimum-degree ordering; 80 bytes per ``n log2 n``
    (real) is the measured peak at 257^2 and 513^2 (benchmarks/unit_memory.py), twice that for
    complex values.
    """
    n = max(unknowns, 2)
    return 80.0 * n * math.log2(n) * (2 if complex_values else 1)


def check_solves(
    info: Sequence[SolveInfo], u: np.ndarray, tol: float, split: str, start: int
) -> None:
    """Raise :class:`SolverFailure` for a non-finite solution or a residual above ``tol``."""
    for k, record in enumerate(info):
        if not np.isfinite(record.residual) or not np.all(np.isfinite(u[k])):
            raise SolverFailure(f"{split} sample {start + k}: the solve produced NaN or inf")
        if record.residual > tol:
            raise SolverFailure(
                f"{split} sample {start + k}: residual {record.residual:.2e} above tol "
                f"{tol:.0e} after a direct solve (ill-conditioned system?)"
            )
