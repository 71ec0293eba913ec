"""Poisson ``-Laplace u = f`` on (0,1)^2 with Dirichlet data ``u = g``: one matrix, many loads.

Grid as in :mod:`datagen.problems.darcy.physics`: ``s x s`` nodes including the boundary, ``h =
1/(s-1)``, unknowns at the ``n x n = (s-2)^2`` interior nodes. The matrix is the 5-point Laplacian
``L`` (the Darcy operator with ``a = 1``), the same for every sample; the boundary values enter the
right-hand side by lifting (:func:`lifted_load`): ``L u_int = f_int + (boundary neighbours of g) /
h^2``. So a dataset is one matrix with many right-hand sides, solved by

- ``dst`` (:func:`dst_solve`): ``L`` is diagonal in the type-I sine basis, so ``L^{-1} b`` is
  two 2-D type-I sine transforms (SciPy) and a division, ``O(n^2 log n)`` per sample, exact to
  round-off and without setup;
- ``direct`` (:class:`SharedFactor`): SciPy SuperLU factors ``L`` once per run and reuses the
  factor for every right-hand side (a block of loads per call).

Measured on an idle 2-core CPU (``benchmarks/poisson_heat.py``, 16 loads, float64): per sample
``dst`` 0.66 / 2.0 / 25 ms at s = 129 / 257 / 513, SuperLU factored once and shared 3.3 / 28 /
132 ms (factorization included), SuperLU per sample 57 / 318 / 1800 ms.
The sine transform wins at every size: it touches each value
``O(log n)`` times, whereas the factor has ``O(n^2 log n)`` fill (3.4 million entries at
s = 257, 17 million at 513) read from memory for every load. Torch's FFT of the odd extension
is slower still on the CPU (6-10x SciPy's ``dstn``), so ``dst`` uses SciPy.
"""

from __future__ import annotations

import time

import numpy as np
import scipy.sparse.linalg as spla
import torch

from datagen.linalg.krylov import SolveInfo
from datagen.problems.darcy.physics import DarcyOperator, assemble, laplace_solve, residuals


def spacing(s: int) -> float:
    """Grid spacing ``h = 1/(s-1)`` of ``s`` nodes per side including the boundary."""
    return 1.0 / (s - 1)


def boundary_trace(field: np.ndarray) -> np.ndarray:
    """The boundary values of nodal fields (..., s, s), interior set to zero (a copy)."""
    out = np.array(field, copy=True)
    out[..., 1:-1, 1:-1] = 0.0
    return out


def lifted_load(f: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Right-hand side of the interior system ``L u_int = b`` for ``-Laplace u = f``, ``u = g``.

    Args:
        f: nodal forcing (B, s, s) or (s, s) (boundary values unused).
        g: nodal Dirichlet data (B, s, s) (interior values unused; corners enter nothing).

    Returns:
        ``b`` (B, n, n) float64: ``f`` at the interior nodes plus ``g / h^2`` at each boundary
        neighbour, i.e. ``f_int - (L_full G)_int`` for ``G`` = ``g`` with zero interior.
    """
    g = np.asarray(g, dtype=np.float64)
    h2 = spacing(g.shape[-1]) ** 2
    edge = np.zeros(g[..., 1:-1, 1:-1].shape)
    edge[..., 0, :] += g[..., 0, 1:-1]
    edge[..., -1, :] += g[..., -1, 1:-1]
    edge[..., :, 0] += g[..., 1:-1, 0]
    edge[..., :, -1] += g[..., 1:-1, -1]
    return np.asarray(f, dtype=np.float64)[..., 1:-1, 1:-1] + edge / h2


def laplacian(s: int) -> DarcyOperator:
    """The 5-point Dirichlet Laplacian ``L`` on (B, s-2, s-2) interiors (float64, batch 1)."""
    return DarcyOperator.from_coefficient(torch.ones(1, s, s, dtype=torch.float64))


def relative_residuals(b: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``||b - L x|| / ||b||`` (B,) in float64 for loads and interior solutions (B, n, n)."""
    op = laplacian(b.shape[-1] + 2)
    r = b - op(torch.from_numpy(np.asarray(x, dtype=np.float64))).numpy()
    return np.linalg.norm(r, axis=(-2, -1)) / np.linalg.norm(b, axis=(-2, -1))


def dst_solve(b: np.ndarray) -> np.ndarray:
    """``L^{-1} b`` for loads (B, n, n) by type-I sine transforms (exact, no setup)."""
    return laplace_solve(b, spacing(b.shape[-1] + 2))


class SharedFactor:
    """SuperLU factor of the one matrix ``L`` of an ``s x s`` grid, computed at first use.

    ``factorizations`` counts the factorizations done (one per instance at most).
    """

    def __init__(self, s: int) -> None:
        self.s = s
        self.lu: spla.SuperLU | None = None
        self.factorizations = 0

    def __call__(self, b: np.ndarray) -> np.ndarray:
        """``L^{-1} b`` for loads (B, n, n): one block of right-hand sides, one triangular pair."""
        if self.lu is None:
            matrix = assemble(np.ones((self.s, self.s))).tocsc()
            self.lu = spla.splu(matrix, permc_spec="MMD_AT_PLUS_A")
            self.factorizations += 1
        batch, n = b.shape[0], b.shape[-1]
        x = self.lu.solve(np.ascontiguousarray(b.reshape(batch, n * n).T))
        return x.T.reshape(batch, n, n)


def solve_poisson(
    f: np.ndarray, g: np.ndarray, method: str, factor: SharedFactor | None = None
) -> tuple[np.ndarray, list[SolveInfo]]:
    """Solve ``-Laplace u = f``, ``u = g`` on the boundary for a batch, all with the one matrix.

    Args:
        f: forcings (B, s, s) or (s, s); g: Dirichlet data (B, s, s) (boundary values used).
        method: ``"dst"`` (:func:`dst_solve`) or ``"direct"`` (``factor``, a
            :class:`SharedFactor` kept across calls, so the matrix is factored once per run).

    Returns:
        ``u`` (B, s, s) float64 equal to ``g`` on the boundary, and one :class:`SolveInfo` per
        sample: method ``"dst"`` or ``"direct-superlu"``, 0 iterations, the true relative
        residual ``||b - L u_int|| / ||b||`` in float64, and the batch time (a factorization
        done in this call included) shared equally.
    """
    start = time.perf_counter()
    b = lifted_load(f, g)
    if method == "dst":
        x, name = dst_solve(b), "dst"
    elif method == "direct":
        if factor is None:
            factor = SharedFactor(g.shape[-1])
        x, name = factor(b), "direct-superlu"
    else:
        raise ValueError(f"method must be 'dst' or 'direct', got {method!r}")
    share = (time.perf_counter() - start) / len(b)
    u = np.array(g, dtype=np.float64, copy=True)
    u[..., 1:-1, 1:-1] = x
    info = [SolveInfo(name, 0, float(r), share) for r in relative_residuals(b, x)]
    return u, info


def stored_residuals(
    f: np.ndarray, g: np.ndarray, u: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Residual measures of stored samples, in float64.

    Args:
        f: forcings (B, s, s) or (s, s); g: Dirichlet data (B, s, s); u: solutions (B, s, s).

    Returns:
        ``relative`` (B,): ``||b - L u_int|| / ||b||`` (``b`` the lifted load of the stored ``f``
        and ``g``); ``estimate`` (B,): ``||L^{-1}(b - L u_int)|| / ||L^{-1} b||``, here exactly the
        relative error of the stored interior against the exact discrete solution of the stored data
        (``L`` is the matrix itself), so float32 rounding gives ~eps32, free of the ``1/h^2``
        amplification of the plain residual (:func:`datagen.problems.darcy.physics.residuals` with
        ``a = 1``); ``boundary_gap`` (B,): the largest ``|u - g|`` on the boundary (0 for a
        consistent file).
    """
    u = np.asarray(u, dtype=np.float64)
    b = lifted_load(f, g)
    load = np.zeros(u.shape)
    load[..., 1:-1, 1:-1] = b
    relative, estimate = residuals(
        torch.ones(u.shape, dtype=torch.float64),
        torch.from_numpy(load),
        torch.from_numpy(u - boundary_trace(u)),
    )
    gap = np.abs(boundary_trace(u) - boundary_trace(np.broadcast_to(g, u.shape)))
    return relative, estimate, gap.max(axis=(-2, -1))
