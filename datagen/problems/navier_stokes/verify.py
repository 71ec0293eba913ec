"""Check a Navier-Stokes trajectory file from its stored fields (``datagen verify``)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import torch

from datagen.core.report import VerifyReport, flag
from datagen.problems.navier_stokes.physics import relative_residual

CHUNK = 8  # trajectories read at a time
RESIDUAL_LIMIT = 0.05  # relative PDE residual of a stored trajectory


def verify(f: h5py.File, path: Path) -> VerifyReport:
    """Finite values, zero mean, and the PDE residual of every trajectory.

    The residual (:func:`relative_residual`) takes the time derivative from the stored frames
    by fourth-order staggered differences and the spatial terms spectrally on the stored grid,
    in float64, measured on the lower half of the stored band and from the third interval
    between records on; a trajectory passes when ``||P r|| / ||w_t||`` is at most
    :data:`RESIDUAL_LIMIT`. Measured on our data (32^2 to 256^2): 3e-4 to 2e-3; a viscosity
    off by 2x gives 0.6 to 0.7, a forcing off by 2x 1.5. The mean vorticity must vanish (to
    ``1e-4`` of the rms, float32 storage).
    """
    n = int(f.attrs["n_trajectories"])
    report = VerifyReport(path, n, [])
    missing = [k for k in ("vorticity", "forcing") if k not in f["t0_fields"]]
    missing += [k for k in ("viscosity", "drag") if k not in f.attrs]
    if missing:
        report.problems.append(f"{', '.join(missing)} missing (not a Navier-Stokes file?)")
        return report
    frames_ds = f["t0_fields"]["vorticity"]
    times = torch.from_numpy(np.asarray(f["dimensions"]["time"][...], dtype=np.float64))
    forcing = torch.from_numpy(np.asarray(f["t0_fields"]["forcing"][...], dtype=np.float64))
    nu, drag = float(f.attrs["viscosity"]), float(f.attrs["drag"])
    mean_bad: list[int] = []
    for start in range(0, n, CHUNK):
        frames = np.asarray(frames_ds[start : start + CHUNK], dtype=np.float64)
        if not np.all(np.isfinite(frames)):
            report.problems.append(f"vorticity has NaN or inf in samples {start}..")
            return report
        frames_t = torch.from_numpy(frames)
        rms = frames_t.square().mean(dim=(-2, -1)).sqrt().clamp(min=1e-30)
        mean = frames_t.mean(dim=(-2, -1)).abs() / rms
        mean_bad.extend((start + np.flatnonzero((mean > 1e-4).any(1).numpy())).tolist())
        if len(times) >= 3:
            rho = relative_residual(frames_t, times, forcing, nu, drag).numpy()
            report.tally(start, rho, RESIDUAL_LIMIT)
    flag(report, mean_bad, "nonzero mean vorticity")
    return report.conclude("PDE residual", "relative residual")
