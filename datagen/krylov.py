"""Batched Krylov solvers for many systems at once: ``A_b x_b = rhs_b`` for b = 1..B.

Operators and preconditioners are callables on (B, *grid) tensors with a ``subset(index)``
method. Each member keeps its own scalars; when members converge they are removed from the
working batch (compaction), so finished systems cost nothing more. The stopping test is the
true relative residual ``||rhs - A x|| / ||rhs|| <= tol``, checked explicitly whenever the
recursive residual says so (CG's recursive residual drifts from the true one).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class KrylovResult:
    """Solutions (B, *grid), iterations (B,), true relative residuals (B,), converged (B,)."""

    x: torch.Tensor
    iterations: torch.Tensor
    residual: torch.Tensor
    converged: torch.Tensor


def _dot(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return (u * v).flatten(1).sum(dim=1)


def _expand(scalar: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return scalar.reshape(-1, *([1] * (like.ndim - 1)))


def pcg(
    operator,
    rhs: torch.Tensor,
    x0: torch.Tensor | None = None,
    preconditioner=None,
    tol: float = 1e-8,
    maxiter: int = 1000,
) -> KrylovResult:
    """Preconditioned conjugate gradients for a batch of SPD systems.

    Args:
        operator: ``A`` on (B, *grid); SPD per member; ``subset(index)`` for compaction.
        rhs: (B, *grid).
        x0: initial guesses (warm starts), default zero.
        preconditioner: SPD ``M^{-1}`` on (B, *grid) with ``subset(index)``; None: identity.
        tol: required true relative residual.
        maxiter: iterations per member before it is reported as not converged.
    """
    batch = rhs.shape[0]
    x_all = torch.zeros_like(rhs) if x0 is None else x0.clone()
    iterations = torch.zeros(batch, dtype=torch.int64, device=rhs.device)
    residual = torch.full((batch,), float("inf"), dtype=torch.float64, device=rhs.device)
    converged = torch.zeros(batch, dtype=torch.bool, device=rhs.device)
    norm_b = torch.linalg.vector_norm(rhs.flatten(1), dim=1).to(torch.float64)
    norm_b = torch.where(norm_b > 0, norm_b, torch.ones_like(norm_b))

    active = torch.arange(batch, device=rhs.device)
    A, M = operator, preconditioner
    b, x = rhs, x_all
    r = b - A(x)
    z = M(r) if M is not None else r
    p = z
    rz = _dot(r, z)
    its = torch.zeros(batch, dtype=torch.int64, device=rhs.device)
    while active.numel() > 0:
        # Which members claim convergence (recursive residual) or ran out of iterations?
        rel = torch.linalg.vector_norm(r.flatten(1), dim=1).to(torch.float64) / norm_b[active]
        claim = (rel <= tol) | (its >= maxiter)
        if bool(claim.any()):
            true_r = b - A(x)
            true_rel = torch.linalg.vector_norm(true_r.flatten(1), dim=1).to(torch.float64)
            true_rel = true_rel / norm_b[active]
            done = claim & ((true_rel <= tol) | (its >= maxiter))
            # Members whose recursive residual drifted: restart from the true residual.
            drift = claim & ~done
            if bool(drift.any()):
                r = torch.where(_expand(drift, r), true_r, r)
                z_new = M(r) if M is not None else r
                z = torch.where(_expand(drift, z), z_new, z)
                p = torch.where(_expand(drift, p), z, p)
                rz = torch.where(drift, _dot(r, z), rz)
            if bool(done.any()):
                finished = active[done]
                x_all[finished] = x[done]
                iterations[finished] = its[done]
                residual[finished] = true_rel[done]
                converged[finished] = true_rel[done] <= tol
                keep = ~done
                active = active[keep]
                if active.numel() == 0:
                    break
                index = torch.nonzero(keep).flatten()
                A = A.subset(index)
                M = M.subset(index) if M is not None else None
                b, x, r, z, p, rz, its = (t[keep] for t in (b, x, r, z, p, rz, its))
        Ap = A(p)
        alpha = rz / _dot(p, Ap)
        x = x + _expand(alpha, x) * p
        r = r - _expand(alpha, r) * Ap
        z = M(r) if M is not None else r
        rz_new = _dot(r, z)
        p = z + _expand(rz_new / rz, p) * p
        rz = rz_new
        its = its + 1
    return KrylovResult(x_all, iterations, residual, converged)


class Jacobi:
    """Diagonal preconditioner ``M^{-1} = D^{-1}``; ``diagonal`` is (B, *grid)."""

    def __init__(self, diagonal: torch.Tensor) -> None:
        self.inverse = 1.0 / diagonal

    def __call__(self, r: torch.Tensor) -> torch.Tensor:
        return self.inverse * r

    def subset(self, index: torch.Tensor) -> Jacobi:
        new = object.__new__(Jacobi)
        new.inverse = self.inverse[index]
        return new
