"""Check a Darcy file from its stored fields (``datagen verify``)."""

from __future__ import annotations

from pathlib import Path

import h5py
import torch

from datagen.core.report import VerifyReport, sample_blocks, storage_eps
from datagen.problems.darcy.physics import residuals

CHUNK = 32  # samples read at a time


def verify(f: h5py.File, path: Path) -> VerifyReport:
    """The Laplace-preconditioned residual of every sample, recomputed in float64.

    The check is ``||L^{-1}(f - A u)|| / ||L^{-1} f||`` (:func:`residuals`), which measures
    the relative error of the stored ``u`` within a factor ``a_max / a_min``. A sample passes
    when it is at most ``solver_tol + 64 eps (a_max / a_min)``, ``eps`` the unit roundoff of
    the storage dtype (float32: 6e-8): rounding to the storage dtype passes, a 0.01% error
    does not. The plain relative residual is reported as well.
    """
    n = int(f.attrs["n_trajectories"])
    report = VerifyReport(path, n, [])
    fields = f["t0_fields"]
    tol = float(f["provenance"].attrs.get("solver_tol", 1e-8))
    average = str(f.attrs.get("face_average", "arithmetic"))
    eps = storage_eps(fields, "u")
    for start, block in sample_blocks(fields, ("a", "f", "u"), n, CHUNK, report):
        a, f_field, u = (torch.from_numpy(block[name]) for name in ("a", "f", "u"))
        u = u[:, 0]
        relative, estimate = residuals(a, f_field.expand_as(u), u, average)
        a = a.flatten(1)
        contrast = (a.max(dim=1).values / a.min(dim=1).values).numpy()
        report.tally(start, estimate, tol + 64 * eps * contrast, relative)
    if report.problems:
        return report
    return report.conclude("residual", "preconditioned residual")
