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
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from neuralop.losses import H1Loss, LpLoss

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
