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
    """Solutions (B, *grid), iterations (B,), true relative residuals (B,), converged (B,).

    ``recycle`` (B, k, *grid): Ritz vectors of each ``A`` for the next system of a chain, when
    :func:`pcg` was asked for them (``ritz > 0``).
    """

    x: torch.Tensor
    iterations: torch.Tensor
    residual: torch.Tensor
    converged: torch.Tensor
    recycle: torch.Tensor | None = None


@dataclass
class SolveInfo:
    """The record of one solved system: ``residual`` is the true relative residual
    ``||b - A x|| / ||b||`` in float64; ``seconds`` its share of the wall-clock time."""

    method: str
    iterations: int
    residual: float
    seconds: float


def _dot(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return (u * v).flatten(1).sum(dim=1)


def _expand(scalar: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return scalar.reshape(-1, *([1] * (like.ndim - 1)))


class Deflation:
    """Deflation by a recycle space ``W`` (B, k, *grid): CG runs A-orthogonally to span(W).

    Keeps ``AW`` and the Cholesky factor of ``E = W^T A W`` (B, k, k), so projecting a vector
    costs 2k dot products and k updates and no extra operator application (Saad, Yeung,
    Erhel, Guyomarc'h, SIAM J. Sci. Comput. 21, 2000).
    """

    def __init__(self, operator, recycle: torch.Tensor) -> None:
        self.w = recycle.flatten(2)
        self.aw = torch.stack([operator(recycle[:, j]) for j in range(recycle.shape[1])], 1)
        self.aw = self.aw.flatten(2)
        e = self.w @ self.aw.mT
        self.chol = torch.linalg.cholesky((e + e.mT) / 2)

    def _coefficients(self, basis: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return torch.cholesky_solve(basis @ v.flatten(1)[..., None], self.chol)

    def start(self, x: torch.Tensor, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Move ``x`` so that the residual is orthogonal to ``W``; returns (x, r)."""
        c = self._coefficients(self.w, r)
        dx = (self.w.mT @ c).reshape(x.shape)
        dr = (self.aw.mT @ c).reshape(r.shape)
        return x + dx, r - dr

    def project(self, z: torch.Tensor) -> torch.Tensor:
        """``z - W E^{-1} (AW)^T z``: the A-orthogonal projection off span(W)."""
        return z - (self.w.mT @ self._coefficients(self.aw, z)).reshape(z.shape)

    def subset(self, index: torch.Tensor) -> Deflation:
        new = object.__new__(Deflation)
        new.w, new.aw, new.chol = self.w[index], self.aw[index], self.chol[index]
        return new


def ritz_vectors(
    basis: torch.Tensor, applied: torch.Tensor, count: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``count`` Ritz vectors of ``A`` with smallest Ritz values in span(basis).

    Args:
        basis: (m, N) spanning vectors (recycle space and stored search directions);
        applied: (m, N), ``A`` applied to each;
        count: how many to return (at most the numerical rank).

    Returns:
        ``U`` (count', N) orthonormal Ritz vectors (Rayleigh-Ritz on an orthonormalized basis)
        and ``A U`` (count', N), with count' <= count the numerical rank if smaller.
    """
    # Orthonormalize through the Gram matrix: Q = basis^T V L^{-1/2} on its numerical range.
    gram_values, gram_vectors = torch.linalg.eigh(basis @ basis.mT)
    keep = gram_values > 1e-12 * gram_values.max()
    scale = gram_vectors[:, keep] / gram_values[keep].sqrt()
    q, aq = basis.mT @ scale, applied.mT @ scale  # (N, r): Q and A Q
    g = q.mT @ aq
    values, vectors = torch.linalg.eigh((g + g.mT) / 2)
    chosen = vectors[:, : min(count, vectors.shape[1])]
    return (q @ chosen).mT, (aq @ chosen).mT


def _refresh(current, basis: torch.Tensor, applied: torch.Tensor, count: int):
    """Rayleigh-Ritz on span(current Ritz vectors, new directions): the new (U, AU)."""
    if current is not None:
        basis = torch.cat([current[0], basis])
        applied = torch.cat([current[1], applied])
    if basis.shape[0] == 0:
        return current
    return ritz_vectors(basis, applied, count)


def pcg(
    operator,
    rhs: torch.Tensor,
    x0: torch.Tensor | None = None,
    preconditioner=None,
    tol: float = 1e-8,
    maxiter: int = 1000,
    recycle: torch.Tensor | None = None,
    ritz: int = 0,
    directions: int = 40,
) -> KrylovResult:
    """Preconditioned conjugate gradients for a batch of SPD systems, optionally recycled.

    Args:
        operator: ``A`` on (B, *grid); SPD per member; ``subset(index)`` for compaction.
        rhs: (B, *grid).
        x0: initial guesses (warm starts), default zero.
        preconditioner: SPD ``M^{-1}`` on (B, *grid) with ``subset(index)``; None: identity.
        tol: required true relative residual.
        maxiter: iterations per member before it is reported as not converged.
        recycle: (B, k, *grid) a recycle space per member (e.g. the previous system's
            ``result.recycle``): deflated CG (:class:`Deflation`).
        ritz: if > 0, return this many Ritz vectors of each ``A`` (smallest Ritz values) from
            the recycle space and the first ``directions`` search directions, for the next
            system (recycled CG in the manner of Saad et al. 2000 and Parks et al. 2006).
    """
    batch = rhs.shape[0]
    x_all = torch.zeros_like(rhs) if x0 is None else x0.clone()
    iterations = torch.zeros(batch, dtype=torch.int64, device=rhs.device)
    residual = torch.full((batch,), float("inf"), dtype=torch.float64, device=rhs.device)
    converged = torch.zeros(batch, dtype=torch.bool, device=rhs.device)
    norm_b = torch.linalg.vector_norm(rhs.flatten(1), dim=1).to(torch.float64)
    norm_b = torch.where(norm_b > 0, norm_b, torch.ones_like(norm_b))
    ritz_out = [None] * batch

    active = torch.arange(batch, device=rhs.device)
    A, M = operator, preconditioner
    D = Deflation(A, recycle) if recycle is not None else None
    b, x = rhs, x_all
    r = b - A(x)
    if D is not None:
        x, r = D.start(x, r)
    z = M(r) if M is not None else r
    # ``p`` gets its own storage: the updates below work in place on ``x`` and ``r``.
    p = D.project(z) if D is not None else z.clone()
    rz = _dot(r, z)
    its = torch.zeros(batch, dtype=torch.int64, device=rhs.device)
    store = ritz > 0 and directions > 0
    saved_p = rhs.new_zeros((batch, directions, rhs[0].numel())) if store else None
    saved_ap = torch.zeros_like(saved_p) if store else None
    # Per member: the current Ritz pair (U, AU), refreshed after every `directions` iterations
    # from span(U, last directions) (Parks et al. 2006); it starts from the recycle space.
    running: list = [((D.w[i], D.aw[i]) if D is not None else None) for i in range(batch)]
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
                p_new = D.project(z) if D is not None else z
                p = torch.where(_expand(drift, p), p_new, p)
                rz = torch.where(drift, _dot(r, z), rz)
            if bool(done.any()):
                finished = active[done]
                x_all[finished] = x[done]
                iterations[finished] = its[done]
                residual[finished] = true_rel[done]
                converged[finished] = true_rel[done] <= tol
                if store:
                    for local in torch.nonzero(done).flatten().tolist():
                        used = int(its[local]) % directions
                        vectors = _refresh(
                            running[local], saved_p[local, :used], saved_ap[local, :used], ritz
                        )
                        ritz_out[int(active[local])] = vectors[0] if vectors else None
                keep = ~done
                active = active[keep]
                if active.numel() == 0:
                    break
                index = torch.nonzero(keep).flatten()
                A = A.subset(index)
                M = M.subset(index) if M is not None else None
                D = D.subset(index) if D is not None else None
                b, x, r, z, p, rz, its = (t[keep] for t in (b, x, r, z, p, rz, its))
                if store:
                    saved_p, saved_ap = saved_p[keep], saved_ap[keep]
                    running = [running[i] for i in index.tolist()]
        Ap = A(p)
        if store:
            slot = its % directions
            rows = torch.arange(len(its), device=its.device)
            saved_p[rows, slot] = p.flatten(1)
            saved_ap[rows, slot] = Ap.flatten(1)
            for local in torch.nonzero(slot == directions - 1).flatten().tolist():
                running[local] = _refresh(running[local], saved_p[local], saved_ap[local], ritz)
        alpha = _expand(rz / _dot(p, Ap), x)
        x.addcmul_(alpha, p)  # in place: one pass, no temporaries (x, r are this loop's own)
        r.addcmul_(alpha, Ap, value=-1)
        z = M(r) if M is not None else r
        rz_new = _dot(r, z)
        p = torch.addcmul(D.project(z) if D is not None else z, _expand(rz_new / rz, p), p)
        rz = rz_new
        its = its + 1
    recycled = None
    if ritz > 0 and all(v is not None for v in ritz_out):
        count = min(v.shape[0] for v in ritz_out)
        recycled = torch.stack([v[:count] for v in ritz_out]).reshape(batch, count, *rhs.shape[1:])
    return KrylovResult(x_all, iterations, residual, converged, recycled)


class Jacobi:
    """Diagonal preconditioner ``M^{-1} = D^{-1}``; ``diagonal`` is (B, *grid)."""

    def __init__(self, diagonal: torch.Tensor) -> None:
        self.inverse = 1.0 / diagonal

    def __call__(self, r: torch.Tensor) -> torch.Tensor:
        return self.inverse * r

    def into(self, r: torch.Tensor, out: torch.Tensor) -> None:
        """``out = M^{-1} r`` with no new tensor; ``r`` and ``out`` (B, N) or (B, *grid)."""
        torch.mul(self.inverse.reshape(r.shape), r, out=out)

    def to(self, dtype: torch.dtype) -> Jacobi:
        """The preconditioner in ``dtype`` (itself if already)."""
        if dtype == self.inverse.dtype:
            return self
        new = object.__new__(Jacobi)
        new.inverse = self.inverse.to(dtype)
        return new

    def subset(self, index: torch.Tensor) -> Jacobi:
        new = object.__new__(Jacobi)
        new.inverse = self.inverse[index]
        return new
