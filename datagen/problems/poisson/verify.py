"""Check a Poisson file from its stored fields (``datagen verify``)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from datagen.core.report import VerifyReport, flag, sample_blocks, storage_eps
from datagen.problems.poisson.physics import stored_residuals

CHUNK = 32  # samples read at a time


def verify(f: h5py.File, path: Path) -> VerifyReport:
    """Fields ``f``, ``g``, ``u`` finite, ``u = g`` on the boundary, and each sample's error
    estimate small.

    The estimate ``||L^{-1}(b - L u)|| / ||L^{-1} b||`` (:func:`stored_residuals`, ``b`` the
    load lifted from the stored ``f`` and ``g``) is recomputed in float64; with the Laplacian
    itself as ``L`` it is the relative error of the stored interior against the exact discrete
    solution, so a sample passes at ``solver_tol + 64 eps`` (the Darcy rule with contrast 1;
    ``eps`` the unit roundoff of the storage dtype): float32 rounding passes, an error of 1e-5
    does not. The plain relative residual is reported as well.
    """
    n = int(f.attrs["n_trajectories"])
    report = VerifyReport(path, n, [])
    fields = f["t0_fields"]
    tol = float(f["provenance"].attrs.get("solver_tol", 1e-10))
    threshold = tol + 64 * storage_eps(fields, "u")
    mismatched: list[int] = []
    for start, block in sample_blocks(fields, ("f", "g", "u"), n, CHUNK, report):
        u = block["u"][:, 0]
        g = np.broadcast_to(block["g"], u.shape)
        relative, estimate, gap = stored_residuals(block["f"], g, u)
        report.tally(start, estimate, threshold, relative)
        mismatched.extend((start + np.flatnonzero(gap > 0)).tolist())
    if report.problems:
        return report
    flag(report, mismatched, "u != g on the boundary")
    return report.conclude()
