"""Heat equation ``u_t = div(a grad u)`` on (0,1)^2, ``u = 0`` on the boundary, implicit steps.

Space: the Darcy flux discretization (:mod:`datagen.problems.darcy.physics`), ``du/dt = -A u`` on
the ``n x n`` interior nodes (finite differences: the mass matrix is the identity). Time: the theta
scheme ``(I/dt + theta A) u_new = (I/dt - (1 - theta) A) u``, backward Euler (``theta = 1``, first
order, L-stable) or Crank-Nicolson (``theta = 1/2``, second order). Each trajectory is a sequence of
SPD systems with one matrix ``I/dt + theta A``; a batch of trajectories advances together through
batched preconditioned CG (:func:`datagen.linalg.krylov.pcg`) with one multigrid hierarchy (or
Jacobi) built per batch and every step warm-started from the previous solution. Both schemes never
increase ``||u||``: the amplification factor of an eigenvalue ``lambda > 0`` of ``A`` is ``(1 - (1 -
theta) dt lambda) / (1 + theta dt lambda)``, within ``[-1, 1]``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from datagen.core.errors import SolverFailure
from datagen.linalg.krylov import Jacobi, pcg
from datagen.linalg.multigrid import Multigrid
from datagen.problems.darcy.physics import DarcyOperator, FaceAverage, assemble

THETA = {"backward_euler": 1.0, "crank_nicolson": 0.5}


@dataclass
class ShiftedOperator:
    """``shift * u + scale * A u`` on (B, n, n) for a :class:`DarcyOperator` ``A``.

    Has what :func:`datagen.linalg.krylov.pcg` and :class:`datagen.linalg.multigrid.Multigrid` need:
    ``diagonal``, ``subset`` and ``to``.
    """

    base: DarcyOperator
    shift: float
    scale: float

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        return self.shift * u + self.scale * self.base(u)

    def diagonal(self) -> torch.Tensor:
        return self.shift + self.scale * self.base.diagonal()

    def subset(self, index: torch.Tensor) -> ShiftedOperator:
        return ShiftedOperator(self.base.subset(index), self.shift, self.scale)

    def to(self, dtype: torch.dtype) -> ShiftedOperator:
        return ShiftedOperator(self.base.to(dtype), self.shift, self.scale)


def step_operator(op: DarcyOperator, dt: float, scheme: str) -> ShiftedOperator:
    """The matrix ``I/dt + theta A`` of one implicit step of ``scheme``."""
    return ShiftedOperator(op, 1.0 / dt, THETA[scheme])


def step_load(op: DarcyOperator, u: torch.Tensor, dt: float, scheme: str) -> torch.Tensor:
    """The right-hand side ``u/dt - (1 - theta) A u`` of one step from ``u`` (B, n, n)."""
    explicit = 1.0 - THETA[scheme]
    return u / dt - explicit * op(u) if explicit else u / dt


def step_matrix(a: np.ndarray, dt: float, scheme: str, average: FaceAverage = "arithmetic"):
    """The assembled ``I/dt + theta A`` (CSC) and ``A`` (CSR) of nodal ``a`` (s, s), float64."""
    matrix = assemble(np.asarray(a, dtype=np.float64), average)
    eye = sp.identity(matrix.shape[0], format="csr")
    return (eye / dt + THETA[scheme] * matrix).tocsc(), matrix


def direct_step(
    a: torch.Tensor,
    u: torch.Tensor,
    dt: float,
    scheme: str,
    average: FaceAverage,
    name: str,
    t: float,
    tol: float = 1e-8,
) -> torch.Tensor:
    """The step to time ``t`` from interior ``u`` (n, n) by SuperLU (the CG fallback) for the
    trajectory ``name`` of coefficient ``a`` (s, s)."""
    system, matrix = step_matrix(a.cpu().numpy(), dt, scheme, average)
    x = u.cpu().numpy().ravel()
    load = x / dt - (1.0 - THETA[scheme]) * (matrix @ x)
    new = spla.spsolve(system, load)
    residual = np.linalg.norm(load - system @ new) / max(np.linalg.norm(load), 1e-300)
    if not residual <= tol:
        raise SolverFailure(
            f"{name}: the step to t = {t:.4g} failed even with a direct solve (residual "
            f"{residual:.1e})"
        )
    return torch.from_numpy(new.reshape(u.shape)).to(u)


def resolve_records(
    a: np.ndarray,
    frames: np.ndarray,
    dt: float,
    steps_per_record: int,
    scheme: str,
    average: FaceAverage = "arithmetic",
) -> np.ndarray:
    """Re-integrate a stored trajectory record to record, independently, in float64.

    From every stored record ``u_r`` (frames (R + 1, s, s)), ``steps_per_record`` steps of
    ``scheme`` are taken with one SuperLU factorization of ``I/dt + theta A`` (a, (s, s));
    returns ``||u_{r+1} - step(u_r)|| / ||u_r||`` (R,). The schemes never amplify a
    perturbation, so rounding of the stored records shows up at the storage unit roundoff
    while a wrong step, scheme, coefficient or record shows up at its own size.
    """
    system, matrix = step_matrix(a, dt, scheme, average)
    solve = spla.splu(system).solve
    interior = np.asarray(frames, dtype=np.float64)[:, 1:-1, 1:-1].reshape(len(frames), -1)
    explicit = 1.0 - THETA[scheme]
    x = interior[:-1].T.copy()  # (n^2, R): every record advanced at once
    for _ in range(steps_per_record):
        x = solve(x / dt - explicit * (matrix @ x))
    difference = np.linalg.norm(interior[1:].T - x, axis=0)
    return difference / np.maximum(np.linalg.norm(interior[:-1], axis=1), 1e-300)


def diffusion_number(a: torch.Tensor, dt: float) -> torch.Tensor:
    """``dt max(a) / h^2`` (B,), the parabolic analogue of a CFL number; ``a`` (B, s, s)."""
    h = 1.0 / (a.shape[-1] - 1)
    return dt * a.flatten(1).max(dim=1).values / h**2


@dataclass
class HeatResult:
    """Records (B, R, s, s) with zero boundary, CG iterations (B,) summed over the steps,
    steps (B,) taken, seconds (B,) (the batch time shared equally), and the steps (B,) that
    CG missed and SuperLU solved (:func:`direct_step`)."""

    frames: torch.Tensor
    iterations: torch.Tensor
    steps: torch.Tensor
    seconds: torch.Tensor
    fallbacks: torch.Tensor


def simulate(
    a: torch.Tensor,
    u0: torch.Tensor,
    dt: float,
    steps_per_record: int,
    records: int,
    scheme: str = "crank_nicolson",
    average: FaceAverage = "arithmetic",
    preconditioner: str = "multigrid",
    tol: float = 1e-8,
    maxiter: int = 500,
    cycle_dtype: torch.dtype = torch.float32,
    warm_start: bool = True,
    labels: list[str] | None = None,
) -> HeatResult:
    """Integrate a batch of heat trajectories in float64.

    Args:
        a: nodal coefficients (B, s, s); u0: initial values (B, s, s) (boundary ignored).
        dt: the step; ``steps_per_record`` steps between records, ``records`` records after
            the initial one.
        scheme: ``"backward_euler"`` or ``"crank_nicolson"``.
        preconditioner: ``"multigrid"`` (built once for the batch) or ``"jacobi"``.
        tol, maxiter: per-step CG stopping rule (true relative residual).
        warm_start: start each step's CG from the previous solution (else from zero).
        labels: names of the trajectories for error messages.

    Returns:
        :class:`HeatResult` with ``records + 1`` frames (the first is ``u0`` on the interior).
        A step whose CG misses ``tol`` in ``maxiter`` iterations is solved by SuperLU instead
        and counted in ``fallbacks``.

    Raises:
        SolverFailure: even the direct solve of a step missed ``tol`` (names the trajectory
            and the time).
    """
    start = time.perf_counter()
    a = a.to(torch.float64)
    batch, n = a.shape[0], a.shape[-1] - 2
    op = DarcyOperator.from_coefficient(a, average)
    system = step_operator(op, dt, scheme)
    u = u0.to(a)[..., 1:-1, 1:-1].contiguous()
    if preconditioner == "multigrid":
        precond = Multigrid(system, (n, n), batch, u, dtype=cycle_dtype)
    else:
        precond = Jacobi(system.diagonal())
    frames = [u]
    iterations = torch.zeros(batch, dtype=torch.int64)
    fallbacks = torch.zeros(batch, dtype=torch.int64)
    for record in range(records):
        for step in range(steps_per_record):
            rhs = step_load(op, u, dt, scheme)
            result = pcg(
                system,
                rhs,
                x0=u if warm_start else None,
                preconditioner=precond,
                tol=tol,
                maxiter=maxiter,
            )
            x = result.x
            for k in torch.nonzero(~result.converged).flatten().tolist():
                name = labels[k] if labels else f"trajectory {k}"
                t = (record * steps_per_record + step + 1) * dt
                x[k] = direct_step(a[k], u[k], dt, scheme, average, name, t, tol)
                fallbacks[k] += 1
            iterations += result.iterations.cpu()
            u = x
        frames.append(u)
    out = torch.nn.functional.pad(torch.stack(frames, 1), (1, 1, 1, 1))
    seconds = (time.perf_counter() - start) / batch
    steps = torch.full((batch,), records * steps_per_record, dtype=torch.int64)
    seconds = torch.full((batch,), seconds, dtype=torch.float64)
    return HeatResult(out, iterations, steps, seconds, fallbacks)


def simulate_direct(
    a: torch.Tensor,
    u0: torch.Tensor,
    dt: float,
    steps_per_record: int,
    records: int,
    scheme: str = "crank_nicolson",
    average: FaceAverage = "arithmetic",
) -> HeatResult:
    """:func:`simulate` with one SuperLU factorization of ``I/dt + theta A`` per trajectory
    (CPU, float64): the same records to the solver tolerance, 0 iterations, no fallbacks."""
    start = time.perf_counter()
    a_np = a.detach().cpu().numpy().astype(np.float64)
    batch, s = a_np.shape[0], a_np.shape[-1]
    interior = u0.detach().cpu().numpy().astype(np.float64)[:, 1:-1, 1:-1].reshape(batch, -1)
    explicit = 1.0 - THETA[scheme]
    frames = np.zeros((batch, records + 1, s, s))
    for k in range(batch):
        system, matrix = step_matrix(a_np[k], dt, scheme, average)
        solve, x = spla.splu(system, permc_spec="MMD_AT_PLUS_A").solve, interior[k]
        frames[k, 0, 1:-1, 1:-1] = x.reshape(s - 2, s - 2)
        for record in range(records):
            for _ in range(steps_per_record):
                x = solve(x / dt - explicit * (matrix @ x))
            frames[k, record + 1, 1:-1, 1:-1] = x.reshape(s - 2, s - 2)
    seconds = (time.perf_counter() - start) / batch
    zeros = torch.zeros(batch, dtype=torch.int64)
    steps = torch.full((batch,), records * steps_per_record, dtype=torch.int64)
    per = torch.full((batch,), seconds, dtype=torch.float64)
    return HeatResult(torch.from_numpy(frames), zeros, steps, per, zeros.clone())
