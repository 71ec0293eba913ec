"""Sobolev and Bochner norms of periodic fields on the unit torus, through Parseval.

The Spectral-Refiner paper (Cao, Brarda, Li, Xi, "Spectral-Refiner: Accurate Fine-Tuning of
Spatiotemporal Fourier Neural Operator for Turbulent Flows", ICLR 2025) measures errors of
trajectories in Bochner spaces ``L^2(0, T; H^s)`` and uses the negative Sobolev norm ``H^-1`` of
the PDE residual as an a posteriori error estimator. Here, for a field ``v`` on ``[0, 1)^2``
sampled on an ``n_x x n_y`` grid with Fourier coefficients ``v_k = mean(v e^{-2 pi i k . x})``,

    ||v||_{H^s}^2 = sum_k (alpha + 4 pi^2 |k|^2)^s |v_k|^2,

with the exponent exactly as written: ``s = 0`` is the L2 norm, ``s = 1`` the H1 norm
``||v||^2 + ||grad v||^2`` (for ``alpha = 1``) and ``s = -1`` its dual. (The public code of the
paper raises the multiplier to ``order / 4``, so its "order -1" is ``H^-1/2``; not here.)
``alpha = 0`` gives the homogeneous (semi-)norm; for ``s < 0`` its mean mode is left out.

Shapes: a field is ``(..., x, y)`` (the last two axes are space, periodic, without the end
node), e.g. ``(batch, channel, x, y)`` or ``(batch, time, x, y)``. A trajectory is
``(batch, time, x, y)`` with evenly spaced frames; its Bochner norm is
``(dt sum_j ||v(t_j)||_{H^s}^2)^(1/2)``, the rectangle rule for ``int_0^T ||v||_{H^s}^2 dt``.
Relative Bochner errors do not depend on ``dt`` (the paper's public code divides its
time-averaged relative metric by ``sqrt(n_t)``; we do not).
"""

from __future__ import annotations

import math

import torch


def wavenumbers_squared(
    nx: int, ny: int, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """``|k|^2`` with integer wavenumbers on the ``rfft2`` layout: ``(nx, ny // 2 + 1)``."""
    kx = torch.fft.fftfreq(nx, d=1.0 / nx, dtype=dtype, device=device)
    ky = torch.fft.rfftfreq(ny, d=1.0 / ny, dtype=dtype, device=device)
    return kx[:, None] ** 2 + ky[None, :] ** 2


def rfft_multiplicity(ny: int, dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    """How many full-spectrum modes each ``rfft`` column stands for: ``(ny // 2 + 1,)``.

    Column 0 (and the Nyquist column of an even ``ny``) once, every other column twice (the
    column and its complex conjugate).
    """
    weight = torch.full((ny // 2 + 1,), 2.0, dtype=dtype, device=device)
    weight[0] = 1.0
    if ny % 2 == 0:
        weight[-1] = 1.0
    return weight


def sobolev_multiplier(
    nx: int,
    ny: int,
    s: float,
    alpha: float = 1.0,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """``(alpha + 4 pi^2 |k|^2)^s`` times the rfft multiplicity: ``(nx, ny // 2 + 1)``.

    With ``alpha = 0`` and ``s < 0`` the mean mode gets weight 0 (a norm on mean-free fields).
    """
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    symbol = alpha + 4 * math.pi**2 * wavenumbers_squared(nx, ny, dtype, device)
    if s < 0:
        safe = torch.where(symbol > 0, symbol, torch.ones_like(symbol))
        weight = torch.where(symbol > 0, safe**s, torch.zeros_like(symbol))
    else:
        weight = symbol**s
    return weight * rfft_multiplicity(ny, dtype, device)[None, :]


def sobolev_norm_squared(v: torch.Tensor, s: float = 0.0, alpha: float = 1.0) -> torch.Tensor:
    """``||v||_{H^s}^2`` over the last two axes: ``(..., x, y) -> (...)`` (module docstring)."""
    if v.dim() < 2:
        raise ValueError(f"expected a field (..., x, y), got shape {tuple(v.shape)}")
    nx, ny = v.shape[-2:]
    real = v.dtype if v.dtype in (torch.float32, torch.float64) else torch.float32
    coeff = torch.fft.rfft2(v.to(real), norm="forward")
    weight = sobolev_multiplier(nx, ny, s, alpha, real, v.device)
    return (coeff.abs() ** 2 * weight).sum(dim=(-2, -1))


def sobolev_norm(v: torch.Tensor, s: float = 0.0, alpha: float = 1.0) -> torch.Tensor:
    """``||v||_{H^s}`` over the last two axes: ``(..., x, y) -> (...)``."""
    return sobolev_norm_squared(v, s, alpha).clamp(min=0).sqrt()


def bochner_norm(
    v: torch.Tensor, s: float = 0.0, alpha: float = 1.0, dt: float = 1.0
) -> torch.Tensor:
    """``||v||_{L^2(0,T; H^s)}`` of trajectories: ``(batch, time, x, y) -> (batch,)``."""
    if v.dim() != 4:
        raise ValueError(f"expected trajectories (batch, time, x, y), got shape {tuple(v.shape)}")
    return (dt * sobolev_norm_squared(v, s, alpha).sum(dim=1)).clamp(min=0).sqrt()


def relative_bochner(
    pred: torch.Tensor, target: torch.Tensor, s: float = 0.0, alpha: float = 1.0
) -> torch.Tensor:
    """``||pred - target|| / ||target||`` in ``L^2(0,T; H^s)``: ``(B, T, X, Y) x2 -> (B,)``."""
    if pred.shape != target.shape:
        raise ValueError(
            f"prediction {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape"
        )
    error = bochner_norm(pred - target, s, alpha)
    return error / bochner_norm(target, s, alpha).clamp(min=1e-30)


def relative_bochner_l2(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Relative space-time L2 error per trajectory: ``(B, T, X, Y) x2 -> (B,)``."""
    return relative_bochner(pred, target, 0.0)


def relative_l2_per_step(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Relative L2 error of every frame: ``(B, T, X, Y) x2 -> (B, T)`` (the error curve)."""
    diff = (pred - target).flatten(2).norm(dim=-1)
    return diff / target.flatten(2).norm(dim=-1).clamp(min=1e-30)
