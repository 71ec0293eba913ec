"""What a problem's file check (``verify.py`` of each problem) reports, and helpers to build it.

A check reads a file's fields in blocks (:func:`sample_blocks`), recomputes a measure of each
sample's correctness in float64 from the stored fields alone, adds each block to a
:class:`VerifyReport` (:meth:`VerifyReport.tally`) and concludes it
(:meth:`VerifyReport.conclude`): an empty ``problems`` list means the file passed.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np


@dataclass
class VerifyReport:
    """Outcome of verifying one file. ``ok`` is False if any problem was found."""

    path: Path
    samples: int
    problems: list[str]
    worst_estimate: float = float("nan")
    threshold: float = float("nan")
    worst_residual: float = float("nan")
    measure: str = "relative PDE residual"  # what worst_estimate is, when no residual is
    failing: list[int] = field(default_factory=list)  # samples above their threshold
    note: str = ""  # a further measured fact for the summary line

    @property
    def ok(self) -> bool:
        return not self.problems

    def tally(
        self,
        start: int,
        estimate: np.ndarray,
        threshold: np.ndarray | float,
        residual: np.ndarray | None = None,
    ) -> None:
        """Add the samples ``start, start + 1, ...`` with their measure ``estimate`` (B,), each
        passing at ``estimate <= threshold`` (NaN fails), and their plain ``residual`` (B,)
        when the check reports one. Keeps the worst of each."""
        estimate = np.asarray(estimate, dtype=np.float64)
        limit = np.broadcast_to(np.asarray(threshold, dtype=np.float64), estimate.shape)
        self.failing.extend((start + np.flatnonzero(~(estimate <= limit))).tolist())
        self.worst_estimate = _worst(self.worst_estimate, estimate)
        self.threshold = _worst(self.threshold, limit)
        if residual is not None:
            self.worst_residual = _worst(self.worst_residual, residual)

    def conclude(self, check: str = "residual", measure: str = "error estimate") -> VerifyReport:
        """Record ``N samples fail the CHECK check (first: sample i; worst MEASURE x > t)``
        when samples failed; returns the report."""
        if self.failing:
            self.problems.append(
                f"{len(self.failing)} samples fail the {check} check (first: sample "
                f"{self.failing[0]}; worst {measure} {self.worst_estimate:.2e} > "
                f"{self.threshold:.1e})"
            )
        return self

    @property
    def summary(self) -> str:
        """One line on what was checked (for a file that passed)."""
        if math.isnan(self.worst_residual):
            line = f"{self.measure} {self.worst_estimate:.1e} <= {self.threshold:.2g}"
        else:
            line = (
                f"error estimate {self.worst_estimate:.1e} <= {self.threshold:.1e}; plain "
                f"residual {self.worst_residual:.1e} (at stored precision)"
            )
        return f"{line}; {self.note}" if self.note else line


def sample_blocks(
    fields: h5py.Group, names: tuple[str, ...], n: int, chunk: int, report: VerifyReport
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Read ``names`` from ``fields`` in blocks of at most ``chunk`` samples, as float64.

    Yields ``(start, {name: array})``: a sample-varying field as (B, ...) for samples
    ``start .. start + B - 1``, one shared by all samples as it is stored (no sample axis).
    A missing field or one with NaN or inf in a block is recorded in ``report.problems``
    (all fields of that block checked) and ends the iteration.
    """
    missing = [name for name in names if name not in fields]
    for name in missing:
        report.problems.append(f"field {name!r} missing")
    if missing:
        return
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        block = {}
        for name in names:
            ds = fields[name]
            varying = bool(ds.attrs["sample_varying"])
            block[name] = np.asarray(ds[start:stop] if varying else ds[...], dtype=np.float64)
            finite = np.isfinite(block[name])
            if finite.all():
                continue
            if varying:
                bad = start + np.flatnonzero(~finite.reshape(len(finite), -1).all(axis=1))
                more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
                report.problems.append(f"field {name!r} has NaN or inf in sample {bad[0]}{more}")
            else:
                report.problems.append(f"field {name!r} (shared by all samples) has NaN or inf")
        if report.problems:
            return
        yield start, block


def flag(report: VerifyReport, samples: list[int], what: str) -> None:
    """Record ``N samples have WHAT (first: sample i)`` when ``samples`` is not empty."""
    if samples:
        report.problems.append(f"{len(samples)} samples have {what} (first: sample {samples[0]})")


def storage_eps(fields: h5py.Group, name: str) -> float:
    """The unit roundoff of field ``name``'s storage dtype (0 when the field is missing)."""
    return float(np.finfo(fields[name].dtype).eps) / 2 if name in fields else 0.0


def _worst(current: float, values: np.ndarray) -> float:
    """The largest of ``current`` (NaN: none yet) and ``values``."""
    top = float(np.max(values)) if np.size(values) else -math.inf
    return top if math.isnan(current) else max(current, top)
