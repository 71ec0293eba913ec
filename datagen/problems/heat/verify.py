"""Check a heat-equation trajectory file from its stored fields (``datagen verify``)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from datagen.core.report import VerifyReport, flag, sample_blocks, storage_eps
from datagen.problems.heat.physics import resolve_records

CHUNK = 8  # trajectories read at a time


def verify(f: h5py.File, path: Path) -> VerifyReport:
    """``u`` and ``a`` finite, ``a > 0``, ``u = 0`` on the boundary, and every record
    re-integrated from the previous one.

    :func:`resolve_records` takes the steps between stored records again, in float64 with
    SuperLU (the scheme, ``dt`` and face average of the file's attributes), from the stored
    previous record; ``worst_estimate`` is the largest ``||u_{r+1} - step(u_r)|| / ||u_r||``.
    The schemes do not amplify perturbations, so a correct file shows the storage rounding
    plus the solver tolerance per step; a record passes at ``64 eps + steps * solver_tol``
    (``eps`` the storage unit roundoff). Measured on a float32 file (17 x 17, 12
    Crank-Nicolson steps between records): 1.9e-8 against 3.8e-6; a record scaled by 1.0001
    gives 7e-5, a coefficient off by 1% 3e-3.
    """
    n = int(f.attrs["n_trajectories"])
    fields = f["t0_fields"]
    eps = storage_eps(fields, "u")
    times = np.asarray(f["dimensions"]["time"][...], dtype=np.float64)
    dt, scheme = float(f.attrs["dt"]), str(f.attrs["scheme"])
    average = str(f.attrs.get("face_average", "arithmetic"))
    steps = int(round((times[1] - times[0]) / dt)) if len(times) > 1 else 0
    tol = float(f["provenance"].attrs.get("solver_tol", 1e-8))
    threshold = 64 * eps + steps * tol
    report = VerifyReport(
        path, n, [], worst_estimate=0.0, threshold=threshold, measure="record re-solve error"
    )
    bad_a: list[int] = []
    bad_edge: list[int] = []
    for start, block in sample_blocks(fields, ("u", "a"), n, CHUNK, report):
        u, a = block["u"], block["a"]
        bad_a.extend((start + np.flatnonzero((a <= 0).any(axis=(-2, -1)))).tolist())
        edge = np.abs(u[..., [0, -1], :]).max(axis=(1, 2, 3)) + np.abs(u[..., [0, -1]]).max(
            axis=(1, 2, 3)
        )
        bad_edge.extend((start + np.flatnonzero(edge > 0)).tolist())
        for i in range(len(u)):
            if start + i in bad_a or steps == 0:
                continue
            error = resolve_records(a[i], u[i], dt, steps, scheme, average)
            report.tally(start + i, error.max(keepdims=True), threshold)
    if report.problems:
        return report
    flag(report, bad_a, "a coefficient a <= 0")
    flag(report, bad_edge, "nonzero boundary values")
    flag(report, report.failing, "records that the re-solved steps do not reproduce")
    return report
