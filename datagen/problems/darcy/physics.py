"""Darcy flow ``-div(a grad u) = f`` on (0,1)^2 with ``u = 0`` on the boundary.

Discretization: the 5-point flux (finite-volume) form on an ``s x s`` node grid including the
boundary, ``h = 1/(s-1)``, unknowns at the ``(s-2)^2`` interior nodes, array index ``[i, j]`` =
node ``(x_i, y_j)``:

    (A u)_ij = [ a_{i+1/2,j} (u_ij - u_{i+1,j}) + a_{i-1/2,j} (u_ij - u_{i-1,j})
               + a_{i,j+1/2} (u_ij - u_{i,j+1}) + a_{i,j-1/2} (u_ij - u_{i,j-1}) ] / h^2

with face coefficients the arithmetic (default, as the FNO generator) or harmonic mean of the two
nodal values. ``A`` is symmetric positive definite and the scheme is second-order accurate for
smooth ``a``. (The SKR reference code discretizes ``-Laplace(a u)`` instead, which is neither the
Darcy operator nor symmetric.)

Two forms with the same action: :class:`DarcyOperator` (batched, matrix-free, any torch device)
and :func:`assemble` (a SciPy CSR matrix for one sample).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import scipy.fft
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from datagen.core.errors import UserError
from datagen.linalg import fused
from datagen.linalg.chains import solve_chains
from datagen.linalg.krylov import Jacobi, SolveInfo, pcg
from datagen.linalg.multigrid import Multigrid
from datagen.linalg.sorting import sort_fields
from datagen.problems.darcy.config import FaceAverage


def face_coefficients(
    a: torch.Tensor, average: FaceAverage = "arithmetic"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Face coefficients for the interior stencil.

    Args:
        a: nodal coefficient, (B, s, s), positive.
        average: "arithmetic" or "harmonic".

    Returns:
        ``ax`` (B, s-1, s-2): faces between nodes (i, j) and (i+1, j) for interior j;
        ``ay`` (B, s-2, s-1): faces between nodes (i, j) and (i, j+1) for interior i.
    """
    left, right = a[..., :-1, 1:-1], a[..., 1:, 1:-1]
    low, high = a[..., 1:-1, :-1], a[..., 1:-1, 1:]
    if average == "arithmetic":  # one temporary each: 1.3-2.5x faster than (l + r) / 2
        return torch.add(left, right).mul_(0.5), torch.add(low, high).mul_(0.5)
    if average == "harmonic":
        return 2 * left * right / (left + right), 2 * low * high / (low + high)
    raise ValueError(f"face average must be 'arithmetic' or 'harmonic', got {average!r}")


@dataclass
class DarcyOperator:
    """Batched matrix-free Darcy operator on interior values (B, s-2, s-2).

    Build with :meth:`from_coefficient`; apply with ``op(u)``. Works on any device and dtype of
    the coefficient it was built from. The face coefficients ``ax``, ``ay`` define it; the
    application uses the 5-point stencil they give (the diagonal and the couplings scaled by
    ``1/h^2``, kept at construction): one product and four in-place multiply-adds on shifted
    views, no padded copy and no temporaries of the flux form (3-4x faster on a CPU).
    """

    ax: torch.Tensor
    ay: torch.Tensor
    h: float
    _diag: torch.Tensor = field(init=False, repr=False)
    _wx: torch.Tensor = field(init=False, repr=False)  # (B, s-3, s-2): node i with i + 1
    _wy: torch.Tensor = field(init=False, repr=False)  # (B, s-2, s-3): node j with j + 1

    def __post_init__(self) -> None:
        scale = 1.0 / self.h**2
        # Row-major copies whatever the coefficient's layout (a transposed input would make
        # every application a strided one).
        # In place on fresh contiguous arrays: torch's passes over the sliced views are the
        # slow part (1.7x faster than the expressions with temporaries at 513^2).
        ax, ay = self.ax.contiguous(), self.ay.contiguous()
        diag = ax[..., :-1, :] + ax[..., 1:, :]
        self._diag = diag.add_(ay[..., :-1]).add_(ay[..., 1:]).mul_(scale)
        self._wx = ax[..., 1:-1, :].clone(memory_format=torch.contiguous_format).mul_(scale)
        self._wy = ay[..., 1:-1].clone(memory_format=torch.contiguous_format).mul_(scale)

    @classmethod
    def from_coefficient(
        cls, a: torch.Tensor, average: FaceAverage = "arithmetic"
    ) -> DarcyOperator:
        """Operator for nodal coefficients ``a`` of shape (B, s, s)."""
        ax, ay = face_coefficients(a, average)
        return cls(ax, ay, 1.0 / (a.shape[-1] - 1))

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        """``A u`` for interior values ``u`` (B, s-2, s-2): the flux form
        ``sum_faces a_f (u_i - u_neighbour) / h^2`` (zero Dirichlet values outside). One fused
        pass on a CPU (:mod:`datagen.linalg.fused`), else the eager passes."""
        out = fused.darcy5(fused.APPLY, u, None, None, self._diag, self._wx, self._wy)
        return out if out is not None else self._add_neighbours(self._diag * u, u, -1)

    def residual(self, f: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """``f - A u`` (B, s-2, s-2) in the passes of one application."""
        out = fused.darcy5(fused.RESIDUAL, u, f, None, self._diag, self._wx, self._wy)
        if out is not None:
            return out
        return self._add_neighbours(torch.addcmul(f, self._diag, u, value=-1), u, 1)

    def sweep(self, f: torch.Tensor, u: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """One damped-Jacobi sweep ``u + weight (f - A u)``: a new (B, s-2, s-2) tensor."""
        out = fused.darcy5(fused.SWEEP, u, f, weight, self._diag, self._wx, self._wy)
        return out if out is not None else torch.addcmul(u, weight, self.residual(f, u))

    def five_point(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The stencil scaled by ``1/h^2``: diagonal (B, s-2, s-2), couplings of node ``i``
        with ``i + 1`` (B, s-3, s-2) and of ``j`` with ``j + 1`` (B, s-2, s-3), for kernels
        that apply the operator themselves (:class:`datagen.linalg.fused.ArnoldiStep`)."""
        return self._diag, self._wx, self._wy

    def _add_neighbours(self, out: torch.Tensor, u: torch.Tensor, sign: int) -> torch.Tensor:
        """``out += sign * (sum of the four face couplings a_f u_neighbour / h^2)`` in place."""
        out[..., :-1, :].addcmul_(self._wx, u[..., 1:, :], value=sign)
        out[..., 1:, :].addcmul_(self._wx, u[..., :-1, :], value=sign)
        out[..., :, :-1].addcmul_(self._wy, u[..., :, 1:], value=sign)
        out[..., :, 1:].addcmul_(self._wy, u[..., :, :-1], value=sign)
        return out

    def subset(self, index: torch.Tensor) -> DarcyOperator:
        """The operators of batch members ``index``."""
        return DarcyOperator(self.ax[index], self.ay[index], self.h)

    def to(self, dtype: torch.dtype) -> DarcyOperator:
        """The same operator with coefficients in ``dtype`` (itself if already): the kept
        diagonal and couplings are converted, not recomputed."""
        if dtype == self._diag.dtype:
            return self
        new = object.__new__(DarcyOperator)
        new.ax, new.ay, new.h = self.ax.to(dtype), self.ay.to(dtype), self.h
        new._diag, new._wx, new._wy = (t.to(dtype) for t in (self._diag, self._wx, self._wy))
        return new

    def diagonal(self) -> torch.Tensor:
        """The diagonal of ``A``: (B, s-2, s-2)."""
        return self._diag

    def stencil_entries(self) -> dict[tuple[int, int], torch.Tensor]:
        """``A``'s five non-zero offsets ``{(di, dj): (B, s-2, s-2)}`` (the layout of
        :func:`datagen.linalg.multigrid.stencil_entries`; zero where the neighbour is a boundary
        node): what the multigrid set-up reads, without the four zero corners of :meth:`stencil`."""
        entries = {(0, 0): self._diag}
        for axis, coupling in ((-2, self._wx), (-1, self._wy)):
            for side in (-1, 1):
                entry = self._diag.new_empty(self._diag.shape)
                inside = slice(1, None) if side == -1 else slice(None, -1)  # neighbour inside
                edge = 0 if side == -1 else -1
                index = (..., inside, slice(None)) if axis == -2 else (..., inside)
                torch.neg(coupling, out=entry[index])
                entry.select(axis, edge).zero_()
                entries[(side, 0) if axis == -2 else (0, side)] = entry
        return entries

    def stencil(self) -> torch.Tensor:
        """``A`` as a 5-point stencil (B, 3, 3, s-2, s-2) in the layout of
        :class:`datagen.linalg.multigrid.StencilOperator` (no coupling to the boundary nodes)."""
        out = self._diag.new_zeros(self._diag.shape[:1] + (3, 3) + self._diag.shape[1:])
        for (di, dj), entry in self.stencil_entries().items():
            out[:, 1 + di, 1 + dj] = entry
        return out


def assemble(a: np.ndarray, average: FaceAverage = "arithmetic") -> sp.csr_matrix:
    """The Darcy matrix for one nodal coefficient ``a`` (s, s): CSR, ((s-2)^2, (s-2)^2).

    Unknown ``p = i (s-2) + j`` is interior node ``(i+1, j+1)`` (C order).
    """
    at = torch.as_tensor(np.asarray(a, dtype=np.float64))[None]
    op = DarcyOperator.from_coefficient(at, average)
    ax, ay = op.ax[0].numpy(), op.ay[0].numpy()
    n = a.shape[-1] - 2
    scale = 1.0 / op.h**2
    index = np.arange(n * n).reshape(n, n)
    rows = [index.ravel()]
    cols = [index.ravel()]
    vals = [op.diagonal()[0].numpy().ravel()]
    # x-neighbours: interior faces ax[1:-1] couple (i, j) with (i+1, j).
    ix = ax[1:-1, :].ravel() * scale
    rows += [index[:-1, :].ravel(), index[1:, :].ravel()]
    cols += [index[1:, :].ravel(), index[:-1, :].ravel()]
    vals += [-ix, -ix]
    iy = ay[:, 1:-1].ravel() * scale
    rows += [index[:, :-1].ravel(), index[:, 1:].ravel()]
    cols += [index[:, 1:].ravel(), index[:, :-1].ravel()]
    vals += [-iy, -iy]
    matrix = sp.coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n * n,) * 2
    )
    return matrix.tocsr()


def solve_direct(
    a: np.ndarray, f: np.ndarray, average: FaceAverage = "arithmetic"
) -> tuple[np.ndarray, SolveInfo]:
    """Solve one Darcy system with SciPy's sparse LU (SuperLU).

    Args:
        a: nodal coefficient (s, s); f: nodal forcing (s, s) (boundary values unused).

    Returns:
        ``u`` (s, s) float64 with zero boundary values, and its :class:`SolveInfo`.
        The symmetric minimum-degree ordering (``MMD_AT_PLUS_A``) suits the symmetric pattern.
    """
    start = time.perf_counter()
    matrix = assemble(a, average)
    b = np.ascontiguousarray(f[1:-1, 1:-1], dtype=np.float64).ravel()
    lu = spla.splu(matrix.tocsc(), permc_spec="MMD_AT_PLUS_A")
    x = lu.solve(b)
    seconds = time.perf_counter() - start
    residual = float(np.linalg.norm(b - matrix @ x) / np.linalg.norm(b))
    u = np.zeros_like(a, dtype=np.float64)
    u[1:-1, 1:-1] = x.reshape(a.shape[0] - 2, a.shape[1] - 2)
    return u, SolveInfo("direct-superlu", 0, residual, seconds)


def darcy_system(
    a: torch.Tensor, f: torch.Tensor, average: FaceAverage = "arithmetic"
) -> tuple[DarcyOperator, torch.Tensor]:
    """The operator and right-hand sides (B, s-2, s-2) of nodal ``a``, ``f`` (B, s, s), float64."""
    a, f = a.to(torch.float64), f.to(torch.float64)
    n = a.shape[-1] - 2
    rhs = f[..., 1:-1, 1:-1].expand(a.shape[0], n, n).contiguous()
    return DarcyOperator.from_coefficient(a, average), rhs


class PyAMGCycle:
    """One V-cycle of a PyAMG smoothed-aggregation hierarchy per member, as a preconditioner
    on (B, s-2, s-2) tensors (CPU; the setup, one hierarchy per coefficient, is done here)."""

    def __init__(self, a: np.ndarray, average: FaceAverage = "arithmetic") -> None:
        try:
            import pyamg
        except ImportError as error:  # pragma: no cover - pyamg comes with the dev extra
            raise UserError("preconditioner 'pyamg' needs PyAMG: pip install pyamg") from error
        self.cycles = [
            pyamg.smoothed_aggregation_solver(assemble(member, average)).aspreconditioner()
            for member in np.asarray(a, dtype=np.float64)
        ]

    def __call__(self, r: torch.Tensor) -> torch.Tensor:
        flat = r.detach().cpu().numpy().reshape(r.shape[0], -1)
        z = np.stack([cycle(v) for cycle, v in zip(self.cycles, flat, strict=True)])
        return torch.from_numpy(z.reshape(r.shape)).to(r)

    def subset(self, index: torch.Tensor) -> PyAMGCycle:
        new = object.__new__(PyAMGCycle)
        new.cycles = [self.cycles[i] for i in index.tolist()]
        return new


def darcy_preconditioner(
    op: DarcyOperator,
    rhs: torch.Tensor,
    kind: str,
    cycle_dtype: torch.dtype = torch.float32,
    a: torch.Tensor | None = None,
    average: FaceAverage = "arithmetic",
):
    """``"multigrid"``: the Galerkin V-cycle (:mod:`datagen.linalg.multigrid`); ``"jacobi"``;
    ``"pyamg"``: PyAMG smoothed aggregation (:class:`PyAMGCycle`, CPU, needs the nodal
    coefficients ``a`` (B, s, s))."""
    if kind == "multigrid":
        # The hierarchy is built in the cycle's precision (half the set-up's memory traffic);
        # CG stays in float64 and stops on the true residual.
        shape, batch = tuple(rhs.shape[1:]), rhs.shape[0]
        return Multigrid(op, shape, batch, rhs, dtype=cycle_dtype, setup_dtype=cycle_dtype)
    if kind == "jacobi":
        return Jacobi(op.diagonal())
    if kind == "pyamg" and a is not None:
        return PyAMGCycle(a.cpu().numpy(), average)
    raise ValueError(
        f"preconditioner must be 'multigrid', 'jacobi' or 'pyamg' (with a), got {kind!r}"
    )


def direct_fallback(
    a: np.ndarray, f: np.ndarray, u: np.ndarray, info: list[SolveInfo], tol: float, average
) -> tuple[np.ndarray, list[SolveInfo]]:
    """Re-solve with :func:`solve_direct` every sample whose residual misses ``tol`` (or is not
    finite), in place in ``u`` (B, s, s); its record becomes ``"direct-fallback"`` with the
    iterations spent and both times."""
    info = list(info)
    for k, record in enumerate(info):
        if record.residual <= tol:
            continue
        u[k], direct = solve_direct(a[k], f[k], average)
        info[k] = SolveInfo(
            "direct-fallback", record.iterations, direct.residual, record.seconds + direct.seconds
        )
    return u, info


def solve_batched(
    a: torch.Tensor,
    f: torch.Tensor,
    average: FaceAverage = "arithmetic",
    preconditioner: str = "multigrid",
    tol: float = 1e-8,
    maxiter: int = 500,
    cycle_dtype: torch.dtype = torch.float32,
) -> tuple[np.ndarray, list[SolveInfo]]:
    """Solve a batch of Darcy systems with preconditioned CG on their device, in float64.

    Args:
        a, f: nodal coefficients and forcings, (B, s, s).
        preconditioner: "multigrid" (Galerkin V-cycle, :mod:`datagen.linalg.multigrid`) or "jacobi".
        tol: true relative residual to reach; maxiter: CG iteration cap.
        cycle_dtype: precision of the multigrid V-cycle (CG itself runs in float64).

    Returns:
        ``u`` (B, s, s) float64 with zero boundary values and one :class:`SolveInfo` per
        sample. Samples that miss ``tol`` are solved again with :func:`solve_direct` (method
        ``"direct-fallback"``). ``seconds`` is the batch time shared equally (setup included).
    """
    start = time.perf_counter()
    op, rhs = darcy_system(a, f, average)
    precond = darcy_preconditioner(op, rhs, preconditioner, cycle_dtype, a, average)
    result = pcg(op, rhs, preconditioner=precond, tol=tol, maxiter=maxiter)
    u = torch.nn.functional.pad(result.x, (1, 1, 1, 1)).cpu().numpy()
    share = (time.perf_counter() - start) / a.shape[0]
    info = [
        SolveInfo(f"pcg-{preconditioner}", int(i), float(r), share)
        for i, r in zip(result.iterations, result.residual, strict=True)
    ]
    a_np, f_np = (t.to(torch.float64).cpu().numpy() for t in (a, f))
    return direct_fallback(a_np, np.broadcast_to(f_np, a_np.shape), u, info, tol, average)


def solve_skr(
    a: np.ndarray,
    f: np.ndarray,
    average: FaceAverage = "arithmetic",
    preconditioner: str = "multigrid",
    tol: float = 1e-8,
    maxiter: int = 500,
    cycle_dtype: torch.dtype = torch.float32,
    chains: int = 4,
    recycle: int = 10,
    warm_start: bool = True,
    sort: str = "auto",
    device: torch.device | str = "cpu",
) -> tuple[np.ndarray, list[SolveInfo], np.ndarray]:
    """Sorting Krylov Recycling for Darcy: sorted chains, warm starts, recycled CG.

    The samples are sorted by their coefficients (:func:`datagen.linalg.sorting.sort_fields`), the
    order is cut into ``chains`` chains advanced as one batch (:mod:`datagen.linalg.chains`), and
    each system is solved by preconditioned CG deflated by ``recycle`` Ritz vectors of the previous
    system of its chain (Saad et al. 2000; the SPD analogue of GCRO-DR, Parks et al. 2006), starting
    from that system's solution when ``warm_start``.

    Args:
        a, f: nodal coefficients and forcings (N, s, s) float64.

    Returns:
        ``u`` (N, s, s) float64, one :class:`SolveInfo` per sample (method
        ``"skr-<preconditioner>"`` or ``"direct-fallback"``; the sort's time is shared into
        every sample's seconds), and the solve order (N,).
    """
    start = time.perf_counter()
    order = sort_fields(a, method=sort)
    sort_share = (time.perf_counter() - start) / len(a)

    def system(step: np.ndarray):
        at, ft = (torch.from_numpy(v[step]).to(device) for v in (a, f))
        op, rhs = darcy_system(at, ft, average)
        return op, darcy_preconditioner(op, rhs, preconditioner, cycle_dtype, at, average), rhs

    def krylov(op, rhs, x0, precond, recycled):
        return pcg(op, rhs, x0, precond, tol, maxiter, recycle=recycled, ritz=recycle)

    x, info = solve_chains(order, chains, system, krylov, f"skr-{preconditioner}", warm_start)
    info = [SolveInfo(r.method, r.iterations, r.residual, r.seconds + sort_share) for r in info]
    u = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    u, info = direct_fallback(a, f, u, info, tol, average)
    return u, info, order


def laplace_solve(r: np.ndarray, h: float) -> np.ndarray:
    """Apply ``L^{-1}``, the inverse of the 5-point Dirichlet Laplacian, to (..., n, n) arrays.

    Diagonal in the type-I sine basis: eigenvalues ``(4/h^2)(sin^2(pi k / 2(n+1)) + ...)``.
    """
    n = r.shape[-1]
    k = np.arange(1, n + 1)
    lam1 = 4 / h**2 * np.sin(np.pi * k / (2 * (n + 1))) ** 2
    axes = (-2, -1)
    coeff = scipy.fft.dstn(r, type=1, axes=axes, norm="ortho") / (lam1[:, None] + lam1[None, :])
    return scipy.fft.idstn(coeff, type=1, axes=axes, norm="ortho")


def residuals(
    a: torch.Tensor, f: torch.Tensor, u: torch.Tensor, average: FaceAverage = "arithmetic"
) -> tuple[np.ndarray, np.ndarray]:
    """Residual measures of stored samples, computed in float64.

    Args:
        a, f, u: nodal coefficient, forcing and solution, (B, s, s).

    Returns:
        ``relative`` (B,): ``||f - A u|| / ||f||`` on the interior, the solver's stopping
        measure. Rounding ``u`` to float32 alone raises it to about ``eps32 ||A|| ||u|| / ||f||``
        (~1e-3 at 421 x 421), so it cannot tell a stored solution from a slightly wrong one.
        ``estimate`` (B,): ``||L^{-1}(f - A u)|| / ||L^{-1} f||`` with ``L`` the Dirichlet
        Laplacian. ``L^{-1} A`` is spectrally equivalent to the identity within
        ``[a_min, a_max]``, so this is the relative error of ``u`` up to a factor
        ``a_max / a_min``, free of the ``1/h^2`` amplification: ~3e-8 for float32 storage at
        421 x 421, 1e-3 for a 0.1% error.
    """
    a, f, u = (t.to(torch.float64) for t in (a, f, u))
    op = DarcyOperator.from_coefficient(a, average)
    b = f[..., 1:-1, 1:-1]
    r = (b - op(u[..., 1:-1, 1:-1])).cpu().numpy()
    b = b.expand_as(u[..., 1:-1, 1:-1]).cpu().numpy()
    relative = np.linalg.norm(r, axis=(-2, -1)) / np.linalg.norm(b, axis=(-2, -1))
    estimate = np.linalg.norm(laplace_solve(r, op.h), axis=(-2, -1)) / np.linalg.norm(
        laplace_solve(b, op.h), axis=(-2, -1)
    )
    return relative, estimate
