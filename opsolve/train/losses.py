"""Per-sample relative L2 and H1 errors, on neuraloperator's ``LpLoss`` and ``H1Loss``.

neuraloperator 2.0's losses compute one relative error per (sample, channel) and then reduce
over batch *and* channel (``reduction="sum"`` by default, or ``"mean"``) to a scalar. We need the
per-sample values (for metrics, for evaluation reports and for exact averaging across DDP
ranks), so the subclasses below keep neuraloperator's norms and only replace the final
reduction by a mean over channels: the result has shape ``(batch,)``. The reported metric is
the mean of these values over samples.

- relative L2: ``||pred - y||_2 / ||y||_2`` over the grid (``LpLoss(d=2, p=2).rel``); the
  quadrature weight cancels in the ratio.
- relative H1: ``sqrt(sum |e|^2 + |d_x e|^2 + |d_y e|^2) / sqrt(same for y)`` with derivatives
  by ``FiniteDiff`` (second-order central inside, third-order one-sided at the edges: our
  Darcy grids are not periodic, so ``periodic_in_x/y=False``) and the true grid spacing ``h``
  (nodes ``0, h, ..., 1``; after subsampling by ``r``, ``h = r / (s - 1)``). neuraloperator's
  default spacing is ``1 / s`` (a periodic grid without its end node); passing ``h`` keeps the
  balance between the L2 and gradient terms the same at every resolution. A gradient weight
  ``w`` (``||e||^2 + w ||grad e||^2``) is the same formula on a step ``h / sqrt(w)``.

Both are computed on decoded (physical) outputs: normalization is undone before any loss, so
the training loss and the reported metrics are the same quantity the papers report.

Trajectories ``(batch, T, x, y)`` (periodic grids) use relative Bochner norms over space-time
instead (:mod:`opsolve.norms`): L2 is ``||e||_{L^2(0,T;L^2)} / ||y||``, H1 the same in
``L^2(0,T;H^1)`` through Parseval (a gradient weight ``w`` is the multiplier
``1 + w 4 pi^2 |k|^2``, i.e. ``alpha = 1 / w`` up to a factor that cancels in the ratio), and
an optional multiple of the ``H^s`` Bochner norm of the vorticity residual of the prediction
(:mod:`opsolve.residual`; the Spectral-Refiner's estimator, Cao et al., ICLR 2025).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from neuralop.losses import H1Loss, LpLoss

from opsolve.norms import relative_bochner
from opsolve.residual import Physics, residual_norm, with_context

PerSample = Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]


class _PerSampleL2(LpLoss):
    def reduce_all(self, x: torch.Tensor) -> torch.Tensor:  # (batch, channels) -> (batch,)
        return x.mean(dim=-1)


class _PerSampleH1(H1Loss):
    def reduce_all(self, x: torch.Tensor) -> torch.Tensor:  # (batch, channels) -> (batch,)
        return x.mean(dim=-1)


_L2 = _PerSampleL2(d=2, p=2)
_H1 = _PerSampleH1(d=2, periodic_in_x=False, periodic_in_y=False)


def _check(pred: torch.Tensor, y: torch.Tensor) -> None:
    if pred.shape != y.shape or pred.dim() != 4:
        raise ValueError(
            f"expected prediction and target of one shape (batch, channels, x, y), "
            f"got {tuple(pred.shape)} and {tuple(y.shape)}"
        )


def relative_l2(pred: torch.Tensor, y: torch.Tensor, spacing: float = 1.0) -> torch.Tensor:
    """Relative L2 error per sample: ``(B, C, X, Y) x2 -> (B,)`` (``spacing`` is unused)."""
    _check(pred, y)
    return _L2.rel(pred, y).reshape(-1)


def relative_h1(pred: torch.Tensor, y: torch.Tensor, spacing: float) -> torch.Tensor:
    """Relative H1 error per sample: ``(B, C, X, Y) x2 -> (B,)``; ``spacing``: grid step h."""
    _check(pred, y)
    return _H1.rel(pred, y, quadrature=[float(spacing), float(spacing)]).reshape(-1)


LOSSES: dict[str, PerSample] = {"relative_l2": relative_l2, "relative_h1": relative_h1}


def trajectory_relative_l2(
    pred: torch.Tensor, y: torch.Tensor, gradient_weight: float = 1.0
) -> torch.Tensor:
    """Relative ``L^2(0,T;L^2)`` error per trajectory: ``(B, T, X, Y) x2 -> (B,)``."""
    return relative_bochner(pred, y, 0.0)


def trajectory_relative_h1(
    pred: torch.Tensor, y: torch.Tensor, gradient_weight: float = 1.0
) -> torch.Tensor:
    """Relative ``L^2(0,T;H^1)`` error per trajectory with gradient weight ``w``: ``(B,)``."""
    return relative_bochner(pred, y, 1.0, alpha=1.0 / gradient_weight)


TRAJECTORY_LOSSES: dict[str, PerSample] = {
    "relative_l2": trajectory_relative_l2,
    "relative_h1": trajectory_relative_h1,
}

Objective = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def make_objective(
    kind: str,
    name: str,
    gradient_weight: float = 1.0,
    spacing: float = 1.0,
    physics: Physics | None = None,
    residual_weight: float = 0.0,
    residual_order: float = -1.0,
) -> Objective:
    """The training loss ``(pred, x, y) -> (batch,)`` for ``kind`` "steady" or "trajectory".

    Steady: :data:`LOSSES` ``[name]`` with the grid step ``spacing / sqrt(gradient_weight)``.
    Trajectory: :data:`TRAJECTORY_LOSSES` ``[name]`` plus ``residual_weight`` times the
    ``H^residual_order`` Bochner norm of the residual of ``[last two input frames, pred]``.
    """
    if kind != "trajectory":
        loss_fn, step = LOSSES[name], spacing / math.sqrt(gradient_weight)
        return lambda pred, x, y: loss_fn(pred, y, step)
    base = TRAJECTORY_LOSSES[name]
    if residual_weight > 0 and physics is None:
        raise ValueError("a residual term needs the physics of the data")

    def objective(pred: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        loss = base(pred, y, gradient_weight)
        if residual_weight > 0:
            assert physics is not None
            loss = loss + residual_weight * residual_norm(
                with_context(x, pred), physics, residual_order
            )
        return loss

    return objective


def validation_metrics(kind: str, spacing: float) -> Callable[..., tuple]:
    """``(pred, y) -> (relative L2, relative H1)`` per sample, the reported valid metrics."""
    if kind == "trajectory":
        return lambda pred, y: (trajectory_relative_l2(pred, y), trajectory_relative_h1(pred, y))
    return lambda pred, y: (relative_l2(pred, y), relative_h1(pred, y, spacing))
