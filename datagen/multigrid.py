"""Batched, matrix-free geometric multigrid for 2-D stencil operators (CPU or GPU).

Vertex-centred coarsening of the ``n x n`` interior grid: coarse node ``J`` sits on fine node
``2J + 1`` (``n_c = n // 2``), bilinear prolongation ``P`` with zero Dirichlet values outside,
restriction ``R = P^T``, and Galerkin coarse operators ``A_c = R A P``. The Galerkin operator of
a 5- or 9-point operator under bilinear ``P`` is a 9-point stencil; it is computed exactly by
probing ``R A P`` with the nine 3 x 3-periodic indicator vectors (nine batched applications per
level, no matrix assembly). Galerkin coarsening keeps the V-cycle robust for the jumping
coefficients of the piecewise-constant Darcy data, where averaged coarse coefficients fail.

The V-cycle (damped-Jacobi pre- and post-smoothing, a dense Cholesky solve on the coarsest grid)
is symmetric positive definite for SPD ``A``, so it can precondition CG.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

Operator = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class StencilOperator:
    """``(A u)_ij = sum_{d} S[d, i, j] u_{(i, j) + d}`` over the 3 x 3 offsets ``d``.

    ``stencil`` is (B, 3, 3, n, n): entry ``[b, 1 + di, 1 + dj, i, j]`` couples node (i, j) to
    (i + di, j + dj); values outside the grid are zero (Dirichlet).
    """

    stencil: torch.Tensor

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        n0, n1 = u.shape[-2:]
        padded = torch.nn.functional.pad(u, (1, 1, 1, 1))
        out = self.stencil[:, 1, 1] * u
        for di in range(3):
            for dj in range(3):
                if di != 1 or dj != 1:
                    out.addcmul_(self.stencil[:, di, dj], padded[..., di : di + n0, dj : dj + n1])
        return out

    def diagonal(self) -> torch.Tensor:
        return self.stencil[:, 1, 1]

    def subset(self, index: torch.Tensor) -> StencilOperator:
        return StencilOperator(self.stencil[index])

    def to(self, dtype: torch.dtype) -> StencilOperator:
        return StencilOperator(self.stencil.to(dtype))


def _bilinear_kernel(like: torch.Tensor) -> torch.Tensor:
    w = torch.tensor([0.5, 1.0, 0.5], dtype=like.dtype, device=like.device)
    return (w[:, None] * w[None, :])[None, None]


def prolong(coarse: torch.Tensor, fine_shape: tuple[int, int]) -> torch.Tensor:
    """Bilinear interpolation (B, n_c0, n_c1) -> (B, n0, n1), coarse J at fine 2J + 1.

    A stride-2 transposed convolution with the 3 x 3 bilinear stencil gives fine nodes
    ``0 .. 2 n_c``; for even ``n`` the last row/column (which would lie on the boundary) is cut.
    """
    fine = torch.nn.functional.conv_transpose2d(
        coarse[:, None], _bilinear_kernel(coarse), stride=2
    )[:, 0]
    return fine[:, : fine_shape[0], : fine_shape[1]]


def restrict(fine: torch.Tensor) -> torch.Tensor:
    """The transpose of :func:`prolong`: (B, n0, n1) -> (B, n0 // 2, n1 // 2)."""
    n0, n1 = fine.shape[-2:]
    padded = torch.nn.functional.pad(fine, (0, (n1 + 1) % 2, 0, (n0 + 1) % 2))
    return torch.nn.functional.conv2d(padded[:, None], _bilinear_kernel(fine), stride=2)[:, 0]


def galerkin(apply: Operator, batch: int, fine_shape: tuple[int, int], like: torch.Tensor):
    """The 9-point stencil of ``R A P`` on the coarse grid, by probing: StencilOperator."""
    nc0, nc1 = fine_shape[0] // 2, fine_shape[1] // 2
    rows = torch.arange(nc0, device=like.device)[:, None]
    cols = torch.arange(nc1, device=like.device)[None, :]
    stencil = like.new_zeros((batch, 3, 3, nc0, nc1))
    for c0 in range(3):
        for c1 in range(3):
            probe = ((rows % 3 == c0) & (cols % 3 == c1)).to(like.dtype)
            response = restrict(apply(prolong(probe.expand(batch, nc0, nc1), fine_shape)))
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    hit = ((rows + di) % 3 == c0) & ((cols + dj) % 3 == c1)
                    stencil[:, di + 1, dj + 1] += torch.where(hit, response, 0.0)
    return StencilOperator(stencil)


def dense_matrix(apply: Operator, batch: int, shape: tuple[int, int], like: torch.Tensor):
    """(B, m, m) dense matrices of a small operator on (B, *shape), m = shape[0] * shape[1]."""
    m = shape[0] * shape[1]
    eye = torch.eye(m, dtype=like.dtype, device=like.device)
    columns = [
        apply(eye[k].reshape(shape).expand(batch, *shape)).reshape(batch, m) for k in range(m)
    ]
    return torch.stack(columns, dim=-1)


@dataclass
class Level:
    operator: Operator
    inverse_diagonal: torch.Tensor
    shape: tuple[int, int]


class Multigrid:
    """Galerkin V-cycle preconditioner for a batch of SPD operators on (B, n0, n1).

    Args:
        operator: the fine operator (callable on (B, n0, n1), with ``diagonal()``).
        batch: B; like: a tensor giving dtype and device.
        coarsest: stop coarsening when a side is at most this (then a dense Cholesky solve).
        smoothing: damped-Jacobi sweeps before and after the coarse correction.
        damping: the Jacobi weight.
        dtype: precision of the cycle (the hierarchy is built in the operator's precision,
            then stored in this one). float32 halves the memory traffic; as a preconditioner
            of float64 CG it costs at most an extra iteration (tests/datagen).
    """

    def __init__(
        self,
        operator,
        shape: tuple[int, int],
        batch: int,
        like: torch.Tensor,
        coarsest: int = 7,
        smoothing: int = 2,
        damping: float = 0.8,
        dtype: torch.dtype | None = None,
    ) -> None:
        self.smoothing, self.damping = smoothing, damping
        self.dtype = dtype or like.dtype
        self.levels: list[Level] = []
        while True:
            low = operator.to(self.dtype)
            self.levels.append(Level(low, 1.0 / low.diagonal(), shape))
            if min(shape) <= coarsest:
                break
            operator = galerkin(operator, batch, shape, like)
            shape = (shape[0] // 2, shape[1] // 2)
        dense = dense_matrix(operator, batch, shape, like)
        self.cholesky = torch.linalg.cholesky((dense + dense.mT) / 2).to(self.dtype)

    def subset(self, index: torch.Tensor) -> Multigrid:
        """The same hierarchy restricted to batch members ``index``."""
        new = object.__new__(Multigrid)
        new.smoothing, new.damping, new.dtype = self.smoothing, self.damping, self.dtype
        new.levels = [
            Level(lv.operator.subset(index), lv.inverse_diagonal[index], lv.shape)
            for lv in self.levels
        ]
        new.cholesky = self.cholesky[index]
        return new

    def __call__(self, residual: torch.Tensor) -> torch.Tensor:
        """One V-cycle applied to ``residual`` (B, n0, n1) from a zero initial guess."""
        return self._cycle(0, residual.to(self.dtype)).to(residual.dtype)

    def _cycle(self, depth: int, f: torch.Tensor) -> torch.Tensor:
        level = self.levels[depth]
        if depth == len(self.levels) - 1:
            rhs = f.reshape(f.shape[0], -1, 1)
            return torch.cholesky_solve(rhs, self.cholesky).reshape(f.shape)
        weight = self.damping * level.inverse_diagonal
        x = weight * f
        for _ in range(self.smoothing - 1):
            x = x + weight * (f - level.operator(x))
        coarse = self._cycle(depth + 1, restrict(f - level.operator(x)))
        x = x + prolong(coarse, level.shape)
        for _ in range(self.smoothing):
            x = x + weight * (f - level.operator(x))
        return x
