"""Any sequence of sparse linear systems: a batched sparse operator and the SKR engine for it.

For problems without a structured-grid stencil (unstructured meshes, assembled matrices from
elsewhere), :class:`SparseBatch` holds ``B`` sparse ``n x n`` matrices on one sparsity pattern
(the union of theirs) as a batched, device-agnostic operator on ``(B, n)`` tensors, and
:func:`solve_sparse_systems` solves ``A_i x_i = b_i``, ``i = 1..N``, with the methods of the
structured problems:

- ``skr``: Sorting Krylov Recycling (Wang et al., ICLR 2024): the systems are sorted by their
  matrix entries (greedy nearest neighbour, :func:`datagen.linalg.sorting.greedy_order`), cut into
  ``chains`` chains advanced as one batch (:mod:`datagen.linalg.chains`), each solved with the
  previous system's recycle space and, with ``warm_start``, its solution as initial guess:
  GCRO-DR(m, k) (Parks et al. 2006, :func:`datagen.linalg.gcrodr.gcrodr`) in general, recycled CG
  (:func:`datagen.linalg.krylov.pcg`) for symmetric positive definite matrices;
- ``gmres`` / ``cg``: the same Krylov method on all systems as one batch, from zero, without
  sorting or recycling (the SKR paper's baseline);
- ``direct``: SciPy SuperLU, one factorization per distinct matrix. A sequence whose matrices
  are all equal is a multiple-right-hand-side problem: it is detected, factored once and
  solved as one block whatever the method;
- ``auto``: ``direct`` on the CPU (SuperLU is the faster sound choice at the sizes where a
  CPU is used, ``benchmarks/RESULTS.md``), ``skr`` on a GPU.

All Krylov methods are Jacobi-preconditioned (no structure is known) and stop on the true
relative residual ``||b - A x|| / ||b||``; a system that misses ``tol`` in ``maxiter``
iterations is solved by SuperLU and marked ``direct-fallback``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from datagen.linalg.chains import solve_chains
from datagen.linalg.gcrodr import gcrodr
from datagen.linalg.krylov import SolveInfo, pcg
from datagen.linalg.sorting import greedy_order, pca_reduce

METHODS = ("auto", "skr", "gmres", "cg", "direct")


@dataclass
class SparseBatch:
    """``B`` sparse ``n x n`` matrices on one pattern, applied to ``(B, n)`` tensors.

    Attributes:
        rows, cols: (nnz,) int64 coordinates of the shared pattern.
        values: (B, nnz) the entries of every matrix on that pattern (zeros where a matrix has
            no entry).
        n: the order of the matrices.
    """

    rows: torch.Tensor
    cols: torch.Tensor
    values: torch.Tensor
    n: int

    @classmethod
    def from_scipy(
        cls,
        matrices: Sequence[sp.spmatrix | sp.sparray],
        dtype: torch.dtype | None = None,
        device: torch.device | str = "cpu",
    ) -> SparseBatch:
        """The batch of SciPy sparse matrices (any format) on the union of their patterns.

        ``dtype``: default float64, complex128 when any matrix is complex.
        """
        coo = [sp.coo_matrix(m) for m in matrices]
        n = coo[0].shape[0]
        keys = [m.row.astype(np.int64) * n + m.col for m in coo]
        union = np.unique(np.concatenate(keys))
        complex_ = any(np.iscomplexobj(m.data) for m in coo)
        values = np.zeros((len(coo), union.size), dtype=np.complex128 if complex_ else np.float64)
        for i, (m, key) in enumerate(zip(coo, keys, strict=True)):
            np.add.at(values[i], np.searchsorted(union, key), m.data)  # duplicates are summed
        if dtype is None:
            dtype = torch.complex128 if complex_ else torch.float64
        return cls(
            torch.from_numpy(union // n).to(device),
            torch.from_numpy(union % n).to(device),
            torch.from_numpy(values).to(device=device, dtype=dtype),
            n,
        )

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``A_b x_b`` for ``x`` (B, n)."""
        products = self.values * x[:, self.cols]
        out = torch.zeros(x.shape, dtype=products.dtype, device=x.device)
        return out.index_add_(1, self.rows, products)

    def diagonal(self) -> torch.Tensor:
        """(B, n): the diagonal of every matrix."""
        on_diagonal = self.rows == self.cols
        out = self.values.new_zeros(self.values.shape[0], self.n)
        return out.index_add_(1, self.rows[on_diagonal], self.values[:, on_diagonal])

    def subset(self, index: torch.Tensor) -> SparseBatch:
        """The matrices of batch members ``index``."""
        return SparseBatch(self.rows, self.cols, self.values[index], self.n)


class _Jacobi:
    """``M^{-1} = D^{-1}`` for (B, n) tensors; zero diagonal entries are left alone."""

    def __init__(self, diagonal: torch.Tensor) -> None:
        safe = torch.where(diagonal == 0, torch.ones_like(diagonal), diagonal)
        self.inverse = 1.0 / safe

    def __call__(self, r: torch.Tensor) -> torch.Tensor:
        return self.inverse * r

    def subset(self, index: torch.Tensor) -> _Jacobi:
        new = object.__new__(_Jacobi)
        new.inverse = self.inverse[index]
        return new


@dataclass
class SparseSolution:
    """``x`` (N, n) in the input order, one :class:`SolveInfo` per system, the solve order."""

    x: np.ndarray
    info: list[SolveInfo]
    order: np.ndarray


def _check(matrices: Sequence, rhs: np.ndarray, method: str, tol: float) -> np.ndarray:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; allowed: {', '.join(METHODS)}")
    if not tol > 0:
        raise ValueError(f"tol must be positive, got {tol}")
    if len(matrices) == 0:
        raise ValueError("matrices: give at least one matrix")
    n = matrices[0].shape[0]
    for i, m in enumerate(matrices):
        if m.shape != (n, n):
            raise ValueError(f"matrix {i} has shape {m.shape}; all must be square of order {n}")
        if not np.all(np.isfinite(sp.coo_matrix(m).data)):
            raise ValueError(f"matrix {i} has NaN or inf entries")
    rhs = np.asarray(rhs)
    if rhs.shape != (len(matrices), n):
        raise ValueError(f"rhs has shape {rhs.shape}; expected ({len(matrices)}, {n})")
    if not np.all(np.isfinite(rhs)):
        raise ValueError("rhs has NaN or inf entries")
    return rhs


def _all_equal(matrices: Sequence) -> bool:
    first = sp.csr_matrix(matrices[0])
    return all((sp.csr_matrix(m) != first).nnz == 0 for m in matrices[1:])


def _is_spd_like(matrices: Sequence) -> bool:
    """Symmetric (Hermitian) with a positive real diagonal: CG is worth trying."""
    for m in matrices:
        m = sp.csr_matrix(m)
        if abs(m - m.conj().T).max() > 0 or not np.all(m.diagonal().real > 0):
            return False
    return True


def _superlu(matrix, rhs: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Solve by SuperLU: solutions (k, n), worst relative residual, seconds."""
    start = time.perf_counter()
    a = sp.csc_matrix(matrix)
    x = spla.splu(a).solve(np.ascontiguousarray(rhs.T)).T
    residual = np.linalg.norm(rhs - (a @ x.T).T, axis=1) / np.linalg.norm(rhs, axis=1)
    return x, float(residual.max()), time.perf_counter() - start


def solve_sparse_systems(
    matrices: Sequence[sp.spmatrix | sp.sparray],
    rhs: np.ndarray,
    method: str = "auto",
    tol: float = 1e-8,
    chains: int = 4,
    restart: int = 40,
    recycle: int = 10,
    maxiter: int = 2000,
    warm_start: bool = True,
    spd: bool | None = None,
    device: torch.device | str = "cpu",
) -> SparseSolution:
    """Solve ``matrices[i] x_i = rhs[i]`` for every ``i`` (module docstring for the methods).

    Args:
        matrices: N SciPy sparse matrices of one order ``n`` (real or complex).
        rhs: (N, n) right-hand sides.
        spd: ``skr`` only: whether the matrices are symmetric positive definite (recycled CG
            instead of GCRO-DR); None: assumed when every matrix is symmetric (Hermitian) with
            a positive diagonal (CG on an indefinite one would end in the direct fallback).

    Returns:
        :class:`SparseSolution`; ``info[i].method`` is ``skr``, ``gmres``, ``cg``,
        ``direct-superlu``, ``direct-shared`` (one factorization for all) or
        ``direct-fallback``.

    Raises:
        ValueError: unknown method, ``tol <= 0``, non-square or mismatched matrices, a wrong
            ``rhs`` shape, NaN or inf entries.
    """
    rhs = _check(matrices, rhs, method, tol)
    count = len(matrices)
    order = np.arange(count)
    if _all_equal(matrices):
        x, residual, seconds = _superlu(matrices[0], rhs)
        info = [SolveInfo("direct-shared", 0, residual, seconds / count)] * count
        return SparseSolution(x, info, order)
    device = torch.device(device)
    if method == "auto":
        method = "skr" if device.type == "cuda" else "direct"
    if method == "direct":
        solved = [_superlu(m, b[None]) for m, b in zip(matrices, rhs, strict=True)]
        info = [SolveInfo("direct-superlu", 0, r, s) for _, r, s in solved]
        return SparseSolution(np.concatenate([x for x, _, _ in solved]), info, order)

    batch = SparseBatch.from_scipy(matrices, device=device)
    if method == "skr":
        cg = _is_spd_like(matrices) if spd is None else spd
    else:
        cg = method == "cg"
    b_all = torch.from_numpy(rhs).to(device=device, dtype=batch.values.dtype)
    sort_seconds = 0.0
    if method == "skr":
        start = time.perf_counter()
        entries = batch.values.cpu().numpy()
        features = (
            np.concatenate([entries.real, entries.imag], 1)
            if entries.dtype.kind == "c"
            else entries
        )
        if features.shape[1] > 64 and count > 64:
            features = pca_reduce(features, 32)
        order = greedy_order(features)
        sort_seconds = (time.perf_counter() - start) / count
    k_max = recycle if method == "skr" else 0

    def system(step: np.ndarray):
        index = torch.from_numpy(step).to(device)
        op = batch.subset(index)
        return op, _Jacobi(op.diagonal()), b_all[index]

    def krylov(op, b, x0, precond, carried):
        if cg:
            return pcg(op, b, x0, precond, tol, maxiter, recycle=carried, ritz=k_max)
        return gcrodr(op, b, x0, precond, tol, restart, k_max, maxiter, carried)

    name = method
    lanes = chains if method == "skr" else count
    x, info = solve_chains(order, lanes, system, krylov, name, warm_start and method == "skr")
    info = [SolveInfo(r.method, r.iterations, r.residual, r.seconds + sort_seconds) for r in info]
    for i, record in enumerate(info):
        if not record.residual <= tol:
            xi, residual, seconds = _superlu(matrices[i], rhs[i][None])
            x[i] = xi[0]
            info[i] = SolveInfo(
                "direct-fallback", record.iterations, residual, record.seconds + seconds
            )
    return SparseSolution(x, info, order)
