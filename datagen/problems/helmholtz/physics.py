"""Helmholtz ``-Laplace u - k(x)^2 u = f`` on (0,1)^2 with a first-order absorbing boundary.

Boundary condition: the first-order Sommerfeld (impedance) condition ``du/dn - i k u = g``
(outward normal ``n``; ``g = 0`` for a radiating field, time convention ``e^{-i omega t}``).

Discretization on the ``s x s`` node grid including the boundary, ``h = 1/(s-1)``; every node is
an unknown. The 5-point Laplacian with ghost points eliminated through the centred boundary
condition (second order), each row scaled by its control-volume area (1 inside, 1/2 on an edge,
1/4 at a corner), which makes the matrix complex symmetric (``A = A^T``):

    (A u)_p = sum_faces w_pq (u_p - u_q) / h^2 - m_p k_p^2 u_p - (i / h) l_p k_p u_p,

with face weight ``w_pq`` 1 inside and 1/2 along the boundary, area ``m_p`` and boundary length
``l_p`` (1 on every boundary node, corners included, 0 inside). The load is
``m_p f_p + sum_sides (length fraction) g_p / h``.

The wave number is ``k(x) = k0 (1 + eps tanh(G(x)))`` for a Gaussian random field ``G``: positive,
within ``k0 (1 -+ eps)``; ``k0 = 20 .. 80`` puts 3 .. 13 wavelengths across the domain, and
``2 pi / (k_max h) >= 10`` points per wavelength keeps the discretization meaningful. The matrix
is indefinite: plain multigrid fails on it.

Preconditioner: the complex-shifted Laplacian (Erlangga, Oosterlee, Vuik, SIAM J. Sci. Comput.
27, 2006) ``M = -Laplace - (1 + i beta) k^2`` with the same absorbing boundary, inverted
approximately by one Galerkin multigrid V-cycle (:class:`datagen.linalg.multigrid.Multigrid`, vertex
coarsening, damped Jacobi). The sign of the damping ``beta`` matches the sign of the boundary
absorption (both give the matrix a negative imaginary part), which keeps the spectrum of
``A M^{-1}`` in one half plane. ``beta = 0.5`` is the usual choice; with our V-cycle (damped
Jacobi, Galerkin coarse grids down to 9 x 9) we use ``beta = 1``. Measured at 10.5 points per
wavelength, one sample: as a solver for the shifted Laplacian itself the V-cycle diverges with
``beta = 0.5`` once ``k h`` is large (error factor per cycle 2.9 at 65^2, k0 = 32; 6.5 at
129^2, k0 = 64) and converges with ``beta = 1`` (0.41, 0.45); as a preconditioner, GMRES(60)
needs 1103 iterations and does not converge in 1500 with 0.5, 70 and 104 with 1. At low k
(k0 = 15) ``beta = 0.5`` is better (21 against 30 iterations at every grid).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import scipy.fft
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from datagen.linalg.krylov import SolveInfo
from datagen.linalg.multigrid import Multigrid

MIN_POINTS_PER_WAVELENGTH = 10.0


def mass_weights(s: int, like: torch.Tensor) -> torch.Tensor:
    """Control-volume areas / h^2 of the ``s x s`` nodes: 1, 1/2 on edges, 1/4 at corners."""
    edge = torch.ones(s, dtype=like.dtype, device=like.device)
    edge[[0, -1]] = 0.5
    return edge[:, None] * edge[None, :]


def boundary_lengths(s: int, like: torch.Tensor) -> torch.Tensor:
    """Boundary length / h of each node: 1 on the boundary (corners too), 0 inside."""
    out = torch.zeros(s, s, dtype=like.dtype, device=like.device)
    out[[0, -1], :] = 1.0
    out[:, [0, -1]] = 1.0
    return out


def shift_field(k: torch.Tensor, beta: float = 0.0) -> torch.Tensor:
    """The diagonal part ``m k^2 (1 + i beta) + (i / h) l k`` (B, s, s) complex128.

    ``A = L / h^2 - shift``; ``beta = 0`` gives the Helmholtz matrix, ``beta > 0`` the
    complex-shifted Laplacian.
    """
    s = k.shape[-1]
    h = 1.0 / (s - 1)
    k = k.to(torch.float64)
    mass = mass_weights(s, k)
    length = boundary_lengths(s, k)
    return torch.complex(mass * k**2, beta * mass * k**2 + length * k / h)


@dataclass
class HelmholtzOperator:
    """Batched matrix-free ``A u = L u / h^2 - shift * u`` on all nodes (B, s, s).

    ``L`` is the area-weighted 5-point Laplacian with natural (ghost-eliminated) boundary rows;
    ``shift`` (B, s, s) comes from :func:`shift_field`. Any device; complex dtypes.
    """

    shift: torch.Tensor
    h: float

    @classmethod
    def from_wavenumber(cls, k: torch.Tensor, beta: float = 0.0) -> HelmholtzOperator:
        """The Helmholtz (``beta = 0``) or shifted-Laplacian operator for ``k`` (B, s, s)."""
        return cls(shift_field(k, beta), 1.0 / (k.shape[-1] - 1))

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        """``A u`` for nodal values ``u`` (B, s, s)."""
        dx = u[..., 1:, :] - u[..., :-1, :]  # (B, s-1, s): faces along x
        dy = u[..., :, 1:] - u[..., :, :-1]  # (B, s, s-1)
        dx = torch.cat([dx[..., :1] * 0.5, dx[..., 1:-1], dx[..., -1:] * 0.5], dim=-1)
        dy = torch.cat([dy[..., :1, :] * 0.5, dy[..., 1:-1, :], dy[..., -1:, :] * 0.5], dim=-2)
        out = torch.zeros_like(u)
        out[..., :-1, :] -= dx
        out[..., 1:, :] += dx
        out[..., :, :-1] -= dy
        out[..., :, 1:] += dy
        return out / self.h**2 - self.shift.to(u.dtype) * u

    def diagonal(self) -> torch.Tensor:
        """The diagonal of ``A``: (B, s, s)."""
        s = self.shift.shape[-1]
        edge = torch.ones(s, dtype=torch.float64, device=self.shift.device)
        edge[[0, -1]] = 0.5
        faces = torch.full((s,), 2.0, dtype=torch.float64, device=self.shift.device)
        faces[[0, -1]] = 1.0
        laplace = faces[:, None] * edge[None, :] + edge[:, None] * faces[None, :]
        return laplace.to(self.shift.dtype) / self.h**2 - self.shift

    def subset(self, index: torch.Tensor) -> HelmholtzOperator:
        return HelmholtzOperator(self.shift[index], self.h)

    def to(self, dtype: torch.dtype) -> HelmholtzOperator:
        return HelmholtzOperator(self.shift.to(dtype), self.h)


def assemble(k: np.ndarray, beta: float = 0.0) -> sp.csr_matrix:
    """The matrix of :class:`HelmholtzOperator` for one ``k`` (s, s): complex CSR (s^2, s^2).

    Unknown ``p = i s + j`` is node ``(x_i, y_j)``. Built from the formula, independently of the
    matrix-free code.
    """
    s = k.shape[-1]
    h = 1.0 / (s - 1)
    index = np.arange(s * s).reshape(s, s)
    shift = shift_field(torch.as_tensor(np.asarray(k, dtype=np.float64))[None], beta)[0].numpy()
    rows, cols, vals = [], [], []
    diagonal = -shift.astype(np.complex128).copy()
    for axis in (0, 1):
        lo = index[:-1, :] if axis == 0 else index[:, :-1]
        hi = index[1:, :] if axis == 0 else index[:, 1:]
        weight = np.ones(lo.shape)
        if axis == 0:
            weight[:, [0, -1]] = 0.5
        else:
            weight[[0, -1], :] = 0.5
        weight = weight / h**2
        rows += [lo.ravel(), hi.ravel()]
        cols += [hi.ravel(), lo.ravel()]
        vals += [-weight.ravel(), -weight.ravel()]
        np.add.at(diagonal.reshape(-1), lo.ravel(), weight.ravel())
        np.add.at(diagonal.reshape(-1), hi.ravel(), weight.ravel())
    rows.append(index.ravel())
    cols.append(index.ravel())
    vals.append(diagonal.ravel())
    matrix = sp.coo_matrix(
        (np.concatenate(vals).astype(np.complex128), (np.concatenate(rows), np.concatenate(cols))),
        shape=(s * s, s * s),
    )
    return matrix.tocsr()


def load(f: torch.Tensor, g: torch.Tensor | None = None) -> torch.Tensor:
    """Right-hand side ``m f + boundary terms`` (B, s, s) complex128.

    Args:
        f: source at the nodes (B, s, s).
        g: boundary data of ``du/dn - i k u = g`` (B, 4, s) for the sides x = 0, x = 1, y = 0,
            y = 1 (each along the other coordinate); None: zero (a radiating field).
    """
    s = f.shape[-1]
    h = 1.0 / (s - 1)
    out = mass_weights(s, f.real if f.is_complex() else f) * f
    out = out.to(torch.complex128)
    if g is not None:
        g = g.to(torch.complex128)
        fraction = torch.ones(s, dtype=torch.float64, device=f.device)
        fraction[[0, -1]] = 0.5  # a corner carries half a face of each of its two sides
        out[..., 0, :] += fraction * g[:, 0] / h
        out[..., -1, :] += fraction * g[:, 1] / h
        out[..., :, 0] += fraction * g[:, 2] / h
        out[..., :, -1] += fraction * g[:, 3] / h
    return out


def points_per_wavelength(k_max: float, s: int) -> float:
    """Grid points per shortest wavelength ``2 pi / (k_max h)``."""
    return 2 * math.pi * (s - 1) / k_max


def wavenumber(field: torch.Tensor, k0: float, eps: float) -> torch.Tensor:
    """``k0 (1 + eps tanh(field))``: a positive wave number (B, s, s) from a GRF (B, s, s)."""
    return k0 * (1.0 + eps * torch.tanh(field))


def gaussian_source(s: int, center: tuple[float, float], width: float) -> torch.Tensor:
    """A normalised Gaussian bump ``exp(-|x - c|^2 / (2 w^2)) / (2 pi w^2)`` on the nodes (s, s)."""
    x = torch.linspace(0.0, 1.0, s, dtype=torch.float64)
    r2 = (x[:, None] - center[0]) ** 2 + (x[None, :] - center[1]) ** 2
    return torch.exp(-r2 / (2 * width**2)) / (2 * math.pi * width**2)


def shifted_laplace_multigrid(
    k: torch.Tensor, beta: float = 1.0, cycle_dtype: torch.dtype = torch.complex64
):
    """One V-cycle of the complex-shifted Laplacian as a preconditioner for ``k`` (B, s, s).

    ``s`` odd (vertex coarsening down to at most 9 x 9, then a dense LU); damped Jacobi
    (weight 0.8, two sweeps each way).
    """
    op = HelmholtzOperator.from_wavenumber(k, beta)
    s = k.shape[-1]
    like = op.shift
    return Multigrid(
        op, (s, s), k.shape[0], like, coarsest=9, dtype=cycle_dtype, coarsening="vertex"
    )


def solve_direct(k: np.ndarray, rhs: np.ndarray) -> tuple[np.ndarray, SolveInfo]:
    """One system by SciPy's SuperLU: ``u`` (s, s) complex128 and its :class:`SolveInfo`.

    Args:
        k: wave number (s, s); rhs: the load (s, s) from :func:`load`.
    """
    start = time.perf_counter()
    matrix = assemble(k)
    b = np.ascontiguousarray(rhs, dtype=np.complex128).ravel()
    x = spla.splu(matrix.tocsc(), permc_spec="MMD_AT_PLUS_A").solve(b)
    seconds = time.perf_counter() - start
    residual = float(np.linalg.norm(b - matrix @ x) / np.linalg.norm(b))
    return x.reshape(k.shape), SolveInfo("direct-superlu", 0, residual, seconds)


def relative_residuals(k: torch.Tensor, rhs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``||rhs - A u|| / ||rhs||`` per sample (B,), float64, computed in complex128."""
    op = HelmholtzOperator.from_wavenumber(k.to(torch.float64))
    r = rhs.to(torch.complex128) - op(u.to(torch.complex128))
    return torch.linalg.vector_norm(r.flatten(1), dim=1) / torch.linalg.vector_norm(
        rhs.to(torch.complex128).flatten(1), dim=1
    )


def stored_residuals(k: np.ndarray, f: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Relative residuals (B,) of stored samples (``u`` complex (B, s, s)), in float64."""
    rhs = load(torch.from_numpy(np.asarray(f, dtype=np.float64)))
    kt = torch.from_numpy(np.asarray(k, dtype=np.float64))
    return relative_residuals(kt, rhs, torch.from_numpy(u)).numpy()


def positive_shift_solve(r: np.ndarray, h: float, shift: np.ndarray) -> np.ndarray:
    """Apply ``(-Laplace_N + c)^{-1}`` to nodal arrays ``r`` (B, s, s), real or complex.

    ``-Laplace_N`` is the 5-point Laplacian on all ``s x s`` nodes with ghost points eliminated by
    ``du/dn = 0`` (the natural boundary rows of
    :class:`datagen.problems.helmholtz.physics.HelmholtzOperator` divided by the control-volume
    areas); ``c`` = ``shift`` (B,) > 0. Diagonal in the type-I cosine basis: eigenvalues
    ``(4/h^2)(sin^2(pi m / 2(s-1)) + sin^2(pi n / 2(s-1))) + c``.
    """
    s = r.shape[-1]
    lam1 = 4 / h**2 * np.sin(np.pi * np.arange(s) / (2 * (s - 1))) ** 2
    lam = lam1[:, None] + lam1[None, :] + np.asarray(shift, dtype=np.float64)[:, None, None]
    axes = (-2, -1)
    return scipy.fft.idctn(scipy.fft.dctn(r, type=1, axes=axes) / lam, type=1, axes=axes)


def error_estimates(k: np.ndarray, f: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Error estimates of stored samples, in float64 (complex128 arithmetic).

    Args:
        k: wave numbers (B, s, s); f: sources (B, s, s) or (s, s); u: solutions (B, s, s)
            complex.

    Returns:
        ``estimate`` (B,): ``||M^{-1}(b - A u)|| / ||M^{-1} b||`` with ``b`` the load, ``A`` the
        Helmholtz matrix and ``M = W (-Laplace_N + c)`` (``W`` the control-volume areas) the
        Laplacian with natural boundary rows and the positive shift ``c = mean(k^2)``
        (:func:`positive_shift_solve`). ``M^{-1} A`` is bounded independently of ``h``, so
        rounding ``u`` is not amplified by ``1/h^2`` as in the plain residual; scaling ``u`` by
        ``1 + d`` gives exactly ``d``.
        ``amplification`` (B,): ``||u|| / ||M^{-1} b||``. An error of ``u`` shaped like ``u``
        gives an estimate of its relative size, a white (rounding-like) one of relative size
        ``d`` gives about ``d * amplification``.
    """
    kt = torch.from_numpy(np.asarray(k, dtype=np.float64))
    ft = torch.from_numpy(np.asarray(f, dtype=np.float64)).expand_as(kt)
    ut = torch.from_numpy(u).to(torch.complex128)
    r = load(ft) - HelmholtzOperator.from_wavenumber(kt)(ut)
    s = kt.shape[-1]
    h = 1.0 / (s - 1)
    shift = kt.square().mean(dim=(-2, -1)).numpy()
    error = positive_shift_solve((r / mass_weights(s, kt)).numpy(), h, shift)
    reference = np.linalg.norm(positive_shift_solve(ft.numpy(), h, shift), axis=(-2, -1))
    estimate = np.linalg.norm(error, axis=(-2, -1)) / reference  # W^{-1} b = f
    return estimate, np.linalg.norm(u, axis=(-2, -1)) / reference
