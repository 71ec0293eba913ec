"""The vorticity-equation residual of a predicted trajectory and its negative Sobolev norm.

For ``w_t + u . grad w = nu Laplace w - mu w + f`` on the unit torus (the equation of
:mod:`datagen.problems.navier_stokes.physics`), the residual of a trajectory ``w(t_j)`` is

    r_{j+1/2} = D_t w_{j+1/2} - I (-u . grad w + nu Laplace w - mu w + f)_{j+1/2},

at the midpoints between records, with the time derivative ``D_t`` taken from the trajectory itself:
fourth-order staggered differences of the frames and fourth-order interpolation ``I`` of the spatial
terms, which are spectral with the 2/3 rule on the frames' grid
(:func:`datagen.problems.navier_stokes.physics.residual`, reused here). Centred differences would
leave a record-to-record alternating error nearly invisible, and refinement on such a residual
drifts into it (measured: see ``benchmarks/RESULTS.md``); the staggered stencil sees it. Its
``L^2(0, T; H^-1)`` norm is the functional a posteriori error estimator of the Spectral-Refiner
(Cao, Brarda, Li, Xi, ICLR 2025). The paper's public code takes ``D_t`` from a tiny solver step
started at the prediction instead, which does not test whether the predicted trajectory itself
satisfies the equation; we difference the predicted frames.

Everything is differentiable (a loss for training and for refinement).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import h5py
import numpy as np
import torch

from datagen.core.errors import UserError
from datagen.problems.navier_stokes.physics import interpolate, residual, truncate
from opsolve.norms import bochner_norm

# Input frames put before a prediction: the first predicted interval then has a centred stencil.
CONTEXT_FRAMES = 2


@dataclass(frozen=True)
class Physics:
    """What the residual needs to know about the flow.

    Attributes:
        viscosity, drag: ``nu`` and ``mu``.
        dt: time between consecutive frames.
        forcing: ``(n, n)`` vorticity source on the grid it was stored on.
    """

    viscosity: float
    drag: float
    dt: float
    forcing: torch.Tensor

    def on_grid(self, n: int) -> Physics:
        """The same physics with the forcing resampled spectrally to ``n x n``."""
        return replace(self, forcing=resample_field(self.forcing, n))


def resample_field(field: torch.Tensor, n: int) -> torch.Tensor:
    """Spectral resampling of periodic fields ``(..., m, m) -> (..., n, n)`` (``n`` even)."""
    m = field.shape[-1]
    if n == m:
        return field
    flat = field.double().reshape(-1, m, m)
    out = interpolate(flat, n) if n > m else truncate(flat, n)
    return out.reshape(*field.shape[:-2], n, n).to(field.dtype)


def read_physics(path: str | Path, field: str = "forcing") -> Physics:
    """The physics of a ``datagen`` Navier-Stokes trajectory file (attributes + forcing)."""
    with h5py.File(path, "r") as f:
        if f.attrs.get("problem") != "navier_stokes":
            raise UserError(f"{path}: not a Navier-Stokes dataset (no vorticity residual)")
        times = np.asarray(f["dimensions"]["time"][...], dtype=np.float64)
        forcing = torch.from_numpy(np.asarray(f["t0_fields"][field][...], dtype=np.float64))
        viscosity = float(f.attrs["viscosity"])
        drag = float(f.attrs.get("drag", 0.0))
    if times.size < 2:
        raise UserError(f"{path}: a residual needs at least two record times")
    return Physics(viscosity, drag, float(times[1] - times[0]), forcing)


def vorticity_residual(frames: torch.Tensor, physics: Physics) -> torch.Tensor:
    """Pointwise residual ``r``: ``(batch, time, n, n) -> (batch, time - 1, n, n)``.

    Frame ``j`` of the output is the residual halfway between input frames ``j`` and ``j + 1``
    (fourth order with at least five frames). The forcing is resampled to the frames' grid.
    """
    if frames.dim() != 4 or frames.shape[-1] != frames.shape[-2]:
        raise UserError(f"expected trajectories (batch, time, n, n), got {tuple(frames.shape)}")
    n, count = frames.shape[-1], frames.shape[1]
    times = torch.arange(count, dtype=torch.float64) * physics.dt
    forcing = resample_field(physics.forcing, n).to(frames.dtype).to(frames.device)
    return residual(frames, times, forcing, physics.viscosity, physics.drag)


def residual_norm(
    frames: torch.Tensor, physics: Physics, s: float = -1.0, alpha: float = 1.0
) -> torch.Tensor:
    """``||r||_{L^2(0,T; H^s)}`` of the residual (default ``H^-1``): ``(B, T, n, n) -> (B,)``."""
    return bochner_norm(vorticity_residual(frames, physics), s, alpha, physics.dt)


def with_context(inputs: torch.Tensor, prediction: torch.Tensor) -> torch.Tensor:
    """The last two input frames followed by the prediction: ``(B, T_out + 2, n, n)``.

    The residual then covers every interval from the last input frame to the last predicted
    one, and the first predicted frames are tied to the known input by a centred stencil (the
    prediction's grid wins: the input frames are resampled spectrally when their grid differs).
    """
    context = inputs[:, -CONTEXT_FRAMES:]
    n = prediction.shape[-1]
    context = resample_field(context, n)
    return torch.cat([context.to(prediction.dtype), prediction], dim=1)
