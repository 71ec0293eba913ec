"""Check a Helmholtz file from its stored fields (``datagen verify``)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from datagen.core.report import VerifyReport, flag, sample_blocks, storage_eps
from datagen.problems.helmholtz.physics import error_estimates, stored_residuals

CHUNK = 32  # samples read at a time


def verify(f: h5py.File, path: Path) -> VerifyReport:
    """Fields ``k``, ``f``, ``u_re``, ``u_im`` finite, ``k > 0``, residuals small.

    Each sample's error estimate ``||M^{-1}(b - A u)|| / ||M^{-1} b||`` is recomputed from the
    stored ``k``, ``f`` and ``u = u_re + i u_im`` in complex128 (:func:`error_estimates`;
    ``M`` the Laplacian with natural boundary rows plus ``mean(k^2)``). Unlike the plain
    residual it is not amplified by ``1/h^2``: a scaling of ``u`` by ``1 + d`` gives exactly
    ``d``, and white errors of relative size ``d`` give about ``d * rho`` with
    ``rho = ||u|| / ||M^{-1} b||`` (measured 2.7 to 5.7). A sample passes when the estimate is
    at most ``rho (solver_tol + 16 eps)``, ``eps`` the unit roundoff of the storage dtype.
    Measured on float32 data (resolution 33 / 65 / 129 at ``k0`` 15 / 20 / 40): correct
    samples 0.37 to 0.41 ``eps rho`` (6e-8 to 1.4e-7) against a threshold of 2.6e-6 to
    5.5e-6; ``u`` scaled by 1.0001 gives 1e-4, by 1.001 gives 1e-3, ``k`` off by 1% gives 3e-2
    to 6e-2. Float64 files solved to ``solver_tol = 1e-8`` give up to 1.1 times their plain
    residual (<= 1e-8) against about ``5e-8``. The plain relative residual
    ``||b - A u|| / ||b||`` (:func:`stored_residuals`) is reported as well.
    """
    n = int(f.attrs["n_trajectories"])
    report = VerifyReport(path, n, [])
    fields = f["t0_fields"]
    tol = float(f["provenance"].attrs.get("solver_tol", 1e-8))
    eps = storage_eps(fields, "u_re")
    nonpositive: list[int] = []
    for start, block in sample_blocks(fields, ("k", "f", "u_re", "u_im"), n, CHUNK, report):
        k = block["k"]
        source = np.broadcast_to(block["f"], k.shape).copy()
        u = block["u_re"][:, 0] + 1j * block["u_im"][:, 0]
        nonpositive.extend((start + np.flatnonzero((k <= 0).any(axis=(-2, -1)))).tolist())
        estimate, rho = error_estimates(k, source, u)
        report.tally(start, estimate, rho * (tol + 16 * eps), stored_residuals(k, source, u))
    if report.problems:
        return report
    flag(report, nonpositive, "a wave number k <= 0")
    return report.conclude()
