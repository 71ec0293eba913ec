"""Heat equation ``u_t = div(a grad u)`` on (0,1)^2, ``u = 0`` on the boundary, implicit steps.

Space: the Darcy flux discretization (:mod:`datagen.darcy`), ``du/dt = -A u`` on the
``n x n`` interior nodes (finite differences: the mass matrix is the identity). Time: the
theta scheme ``(I/dt + theta A) u_new = (I/dt - (1 - theta) A) u``, backward Euler
(``theta = 1``, first order, L-stable) or Crank-Nicolson (``theta = 1/2``, second order). Each
trajectory is a sequence of SPD systems with one matrix ``I/dt + theta A``; a batch of
trajectories advances together through batched preconditioned CG (:func:`datagen.krylov.pcg`)
with one multigrid hierarchy (or Jacobi) built per batch and every step warm-started from the
previous solution. Both schemes never increase ``||u||``: the amplification factor of an
eigenvalue ``lambda > 0`` of ``A`` is ``(1 - (1 - theta) dt lambda) / (1 + theta dt lambda)``,
within ``[-1, 1]``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from datagen.darcy import DarcyOperator, FaceAverage
from datagen.errors import SolverFailure
from datagen.krylov import Jacobi, pcg
from datagen.multigrid import Multigrid

THETA = {"backward_euler": 1.0, "crank_nicolson": 0.5}


@dataclass
class ShiftedOperator:
    """``shift * u + scale * A u`` on (B, n, n) for a :class:`DarcyOperator` ``A``.

    Has what :func:`datagen.krylov.pcg` and :class:`datagen.multigrid.Multigrid` need:
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


def diffusion_number(a: torch.Tensor, dt: float) -> torch.Tensor:
    """``dt max(a) / h^2`` (B,), the parabolic analogue of a CFL number; ``a`` (B, s, s)."""
    h = 1.0 / (a.shape[-1] - 1)
    return dt * a.flatten(1).max(dim=1).values / h**2


@dataclass
class HeatResult:
    """Records (B, R, s, s) with zero boundary, CG iterations (B,) summed over the steps,
    steps (B,) taken, seconds (B,) (the batch time shared equally)."""

    frames: torch.Tensor
    iterations: torch.Tensor
    steps: torch.Tensor
    seconds: torch.Tensor


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

    Raises:
        SolverFailure: a step missed ``tol`` (names the trajectory and the time).
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
            if not bool(result.converged.all()):
                k = int(torch.nonzero(~result.converged)[0])
                name = labels[k] if labels else f"trajectory {k}"
                t = (record * steps_per_record + step + 1) * dt
                raise SolverFailure(
                    f"{name}: CG missed tol {tol:.0e} at t = {t:.4g} (residual "
                    f"{float(result.residual[k]):.1e} after {maxiter} iterations); raise "
                    "solver.maxiter or use the multigrid preconditioner"
                )
            iterations += result.iterations.cpu()
            u = result.x
        frames.append(u)
    out = torch.nn.functional.pad(torch.stack(frames, 1), (1, 1, 1, 1))
    seconds = (time.perf_counter() - start) / batch
    steps = torch.full((batch,), records * steps_per_record, dtype=torch.int64)
    return HeatResult(out, iterations, steps, torch.full((batch,), seconds, dtype=torch.float64))
