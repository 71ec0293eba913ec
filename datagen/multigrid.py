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

A second coarsening, ``"vertex"``, serves grids whose boundary nodes are unknowns (Robin or
impedance boundaries, e.g. :mod:`datagen.helmholtz`): an odd number ``n`` of nodes per side,
coarse node ``J`` on fine node ``2J`` (``n_c = (n + 1) / 2``, both ends kept), the same bilinear
weights, nothing outside the grid. Complex operators (e.g. a complex-shifted Laplacian) use an LU
factorisation on the coarsest grid instead of Cholesky.
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


def _along(transfer, x: torch.Tensor, axis: int, *args) -> torch.Tensor:
    """Apply a 1-D transfer acting on the last axis to ``axis`` of ``x``."""
    return transfer(x.movedim(axis, -1), *args).movedim(-1, axis)


def _interleave(even: torch.Tensor, odd: torch.Tensor) -> torch.Tensor:
    """``out[2i] = even[i]``, ``out[2i + 1] = odd[i]`` along the last axis (equal lengths)."""
    return torch.stack([even, odd], dim=-1).flatten(-2)


def _prolong_1d(c: torch.Tensor, n: int) -> torch.Tensor:
    """Interior coarsening, 1-D: fine ``2J + 1`` = c_J, fine ``2J`` = (c_{J-1} + c_J) / 2."""
    padded = torch.nn.functional.pad(c, (1, 1))
    mid = 0.5 * (padded[..., :-1] + padded[..., 1:])  # fine 0, 2, ..., 2 n_c
    odd = torch.nn.functional.pad(c, (0, 1))  # fine 1, 3, ..., 2 n_c + 1 (last is outside)
    return _interleave(mid, odd)[..., :n]


def _restrict_1d(f: torch.Tensor) -> torch.Tensor:
    """Transpose of :func:`_prolong_1d`: ``c_J = f_{2J+1} + (f_{2J} + f_{2J+2}) / 2``."""
    nc = f.shape[-1] // 2
    padded = torch.nn.functional.pad(f, (0, 2 * nc + 1 - f.shape[-1]))
    return padded[..., 1::2] + 0.5 * (padded[..., 0:-1:2] + padded[..., 2::2])


def _prolong_vertex_1d(c: torch.Tensor, n: int) -> torch.Tensor:
    """Vertex coarsening, 1-D: fine ``2J`` = c_J, fine ``2J + 1`` = (c_J + c_{J+1}) / 2."""
    odd = torch.nn.functional.pad(0.5 * (c[..., :-1] + c[..., 1:]), (0, 1))
    return _interleave(c, odd)[..., :n]


def _restrict_vertex_1d(f: torch.Tensor) -> torch.Tensor:
    """Transpose of :func:`_prolong_vertex_1d`: ``c_J = f_{2J} + (f_{2J-1} + f_{2J+1}) / 2``."""
    padded = torch.nn.functional.pad(f, (1, 1))
    return padded[..., 1:-1:2] + 0.5 * (padded[..., 0:-2:2] + padded[..., 2::2])


def prolong(coarse: torch.Tensor, fine_shape: tuple[int, int]) -> torch.Tensor:
    """Bilinear interpolation (B, n_c0, n_c1) -> (B, n0, n1), coarse J at fine 2J + 1.

    Zero values outside the grid (Dirichlet); for even ``n`` the node that would lie on the
    boundary is cut. Separable: the 1-D rule along each axis (strided slicing, no convolution).
    """
    out = _along(_prolong_1d, coarse, -2, fine_shape[0])
    return _along(_prolong_1d, out, -1, fine_shape[1])


def restrict(fine: torch.Tensor) -> torch.Tensor:
    """The transpose of :func:`prolong`: (B, n0, n1) -> (B, n0 // 2, n1 // 2)."""
    return _along(_restrict_1d, _along(_restrict_1d, fine, -2), -1)


def prolong_vertex(coarse: torch.Tensor, fine_shape: tuple[int, int]) -> torch.Tensor:
    """Bilinear interpolation (B, n_c0, n_c1) -> (B, 2 n_c0 - 1, 2 n_c1 - 1), coarse J at 2J."""
    out = _along(_prolong_vertex_1d, coarse, -2, fine_shape[0])
    return _along(_prolong_vertex_1d, out, -1, fine_shape[1])


def restrict_vertex(fine: torch.Tensor) -> torch.Tensor:
    """The transpose of :func:`prolong_vertex`: (B, n0, n1) -> (B, (n0 + 1) / 2, (n1 + 1) / 2)."""
    return _along(_restrict_vertex_1d, _along(_restrict_vertex_1d, fine, -2), -1)


def coarse_shape(shape: tuple[int, int], coarsening: str) -> tuple[int, int]:
    """The coarse grid of ``shape`` under ``coarsening`` ("interior" or "vertex")."""
    if coarsening == "interior":
        return shape[0] // 2, shape[1] // 2
    if coarsening == "vertex":
        return (shape[0] + 1) // 2, (shape[1] + 1) // 2
    raise ValueError(f"coarsening must be 'interior' or 'vertex', got {coarsening!r}")


TRANSFERS = {"interior": (prolong, restrict), "vertex": (prolong_vertex, restrict_vertex)}


def galerkin(
    apply: Operator,
    batch: int,
    fine_shape: tuple[int, int],
    like: torch.Tensor,
    coarsening: str = "interior",
):
    """The 9-point stencil of ``R A P`` on the coarse grid, by probing: StencilOperator."""
    nc0, nc1 = coarse_shape(fine_shape, coarsening)
    prolong_, restrict_ = TRANSFERS[coarsening]
    rows = torch.arange(nc0, device=like.device)[:, None]
    cols = torch.arange(nc1, device=like.device)[None, :]
    stencil = like.new_zeros((batch, 3, 3, nc0, nc1))
    for c0 in range(3):
        for c1 in range(3):
            probe = ((rows % 3 == c0) & (cols % 3 == c1)).to(like.dtype)
            response = restrict_(apply(prolong_(probe.expand(batch, nc0, nc1), fine_shape)))
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
    """Galerkin V-cycle preconditioner for a batch of operators on (B, n0, n1).

    SPD operators (Darcy) give an SPD cycle (Cholesky on the coarsest grid); complex ones
    (a complex-shifted Laplacian) an LU solve there.

    Args:
        operator: the fine operator (callable on (B, n0, n1), with ``diagonal()``).
        batch: B; like: a tensor giving dtype and device.
        coarsest: stop coarsening when a side is at most this (then a dense Cholesky solve).
        smoothing: damped-Jacobi sweeps before and after the coarse correction.
        damping: the Jacobi weight.
        dtype: precision of the cycle (the hierarchy is built in the operator's precision,
            then stored in this one). float32 halves the memory traffic; as a preconditioner
            of float64 CG it costs at most an extra iteration (tests/datagen). Complex
            operators take complex64 or complex128.
        coarsening: "interior" (Dirichlet grids) or "vertex" (all nodes unknowns, odd sides).
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
        coarsening: str = "interior",
    ) -> None:
        self.smoothing, self.damping = smoothing, damping
        self.dtype = dtype or like.dtype
        self.coarsening = coarsening
        self.levels: list[Level] = []
        while True:
            low = operator.to(self.dtype)
            self.levels.append(Level(low, 1.0 / low.diagonal(), shape))
            odd = shape[0] % 2 == 1 and shape[1] % 2 == 1
            if min(shape) <= coarsest or (coarsening == "vertex" and not odd):
                break
            operator = galerkin(operator, batch, shape, like, coarsening)
            shape = coarse_shape(shape, coarsening)
        dense = dense_matrix(operator, batch, shape, like)
        if like.dtype.is_complex:
            lu, pivots = torch.linalg.lu_factor(dense)
            self.cholesky, self.lu = None, (lu.to(self.dtype), pivots)
        else:
            self.cholesky = torch.linalg.cholesky((dense + dense.mT) / 2).to(self.dtype)
            self.lu = None

    def subset(self, index: torch.Tensor) -> Multigrid:
        """The same hierarchy restricted to batch members ``index``."""
        new = object.__new__(Multigrid)
        new.smoothing, new.damping, new.dtype = self.smoothing, self.damping, self.dtype
        new.coarsening = self.coarsening
        new.levels = [
            Level(lv.operator.subset(index), lv.inverse_diagonal[index], lv.shape)
            for lv in self.levels
        ]
        new.cholesky = self.cholesky[index] if self.cholesky is not None else None
        new.lu = (self.lu[0][index], self.lu[1][index]) if self.lu is not None else None
        return new

    def __call__(self, residual: torch.Tensor) -> torch.Tensor:
        """One V-cycle applied to ``residual`` (B, n0, n1) from a zero initial guess."""
        return self._cycle(0, residual.to(self.dtype)).to(residual.dtype)

    def _cycle(self, depth: int, f: torch.Tensor) -> torch.Tensor:
        level = self.levels[depth]
        if depth == len(self.levels) - 1:
            rhs = f.reshape(f.shape[0], -1, 1)
            if self.lu is not None:
                return torch.linalg.lu_solve(*self.lu, rhs).reshape(f.shape)
            return torch.cholesky_solve(rhs, self.cholesky).reshape(f.shape)
        weight = self.damping * level.inverse_diagonal
        x = weight * f
        for _ in range(self.smoothing - 1):
            x = x + weight * (f - level.operator(x))
        prolong_, restrict_ = TRANSFERS[self.coarsening]
        coarse = self._cycle(depth + 1, restrict_(f - level.operator(x)))
        x = x + prolong_(coarse, level.shape)
        for _ in range(self.smoothing):
            x = x + weight * (f - level.operator(x))
        return x
