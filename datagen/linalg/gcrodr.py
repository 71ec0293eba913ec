"""Batched GMRES(m) and GCRO-DR(m, k) with a recycle space carried along a chain of systems.

GCRO-DR (Parks, de Sturler, Mackey, Johnson, Maiti, "Recycling Krylov subspaces for sequences
of linear systems", SIAM J. Sci. Comput. 28, 2006) keeps ``k`` vectors ``U`` with
``A U = C``, ``C^H C = I``. Each restart cycle first removes the ``C`` component of the
residual, then runs ``m`` Arnoldi steps on ``(I - C C^H) A M^{-1}``:

    A Z_j = C B_j + V_{j+1} Hbar_j,      Z_j = M^{-1} V_j,

so with ``Vhat = [U D, Z_j]`` and ``What = [C, V_{j+1}]`` (orthonormal),
``A Vhat = What Gbar`` with ``Gbar = [[D, B_j], [0, Hbar_j]]`` and the correction minimising the
residual over ``range(Vhat)`` is a small least-squares problem. After every cycle the new
recycle space is spanned by the ``k`` harmonic Ritz vectors of smallest magnitude
(``Gbar^H Gbar g = theta Gbar^H What^H Vhat g``, Parks et al., eq. 2.14). GMRES(m) is the case
``k = 0``.

Right preconditioning: the recycle directions are stored in the solution space (``u``, with
``A u = c``), so a new system with a different matrix *and* a different preconditioner starts
from ``C = A_new u`` re-orthonormalised (``u <- u R^{-1}``), exactly as Parks et al. do for a
new matrix. The harmonic Ritz extraction is done for ``A M^{-1}`` and needs the recycle vectors
in the preconditioned space too (``w`` with ``u = M^{-1} w``); along a chain ``w`` is carried
as the previous system's, an approximation used only to *choose* the next space (the
minimisation and the stopping test use exact relations).

Stopping: the least-squares residual estimate ends a member's cycle; the member is done when
its *true* relative residual ``||b - A x|| / ||b||`` (computed at the end of the cycle) is at
most ``tol``, otherwise it restarts. Members whose cycle ended are removed from the working
batch (compaction), so they cost nothing more.

Shapes: systems ``(B, *grid)``, flattened internally to ``(B, N)``; bases are stored row-wise
``(B, count, N)``. Real and complex dtypes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from datagen.linalg.krylov import KrylovResult


@dataclass
class RecycleSpace:
    """A recycle space per batch member.

    Attributes:
        u: (B, k, *grid) solution-space directions (``A u_l = c_l`` for the matrix they were
            built with; re-paired for a new matrix by :func:`pair_with`).
        w: (B, k, *grid) the same directions in the right-preconditioned space
            (``u = M^{-1} w``), used by the harmonic Ritz extraction.
    """

    u: torch.Tensor
    w: torch.Tensor

    @property
    def k(self) -> int:
        return self.u.shape[1]

    def subset(self, index: torch.Tensor) -> RecycleSpace:
        """The spaces of batch members ``index``."""
        return RecycleSpace(self.u[index], self.w[index])


def _inner(rows: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``rows^H v``: (B, r, N) x (B, N) -> (B, r) (conjugates v, not the big rows)."""
    if not rows.is_complex():
        return (rows @ v[..., None])[..., 0]
    return (v.conj()[:, None, :] @ rows.mT)[:, 0].conj()


def _combine(coefficients: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``sum_i coefficients_i rows_i``: (B, r) x (B, r, N) -> (B, N)."""
    return (coefficients[:, None, :] @ rows)[:, 0]


def _norm(v: torch.Tensor) -> torch.Tensor:
    """Euclidean norms of the rows of (B, N), real (B,)."""
    return torch.linalg.vector_norm(v, dim=1)


def pair_with(apply, space: tuple[torch.Tensor, torch.Tensor]):
    """Re-pair flattened recycle directions with a new matrix: Parks et al., Alg. 1, step 2.

    Args:
        apply: the operator on flattened (B, N) vectors.
        space: ``(u, w)`` (B, k, N) each.

    Returns:
        ``(u, w, c)`` with ``c = A u`` orthonormal (thin QR ``A u^T = c^T R``, then
        ``u <- R^{-T} u`` and ``w <- R^{-T} w``), each (B, k, N).
    """
    u, w = space
    au = torch.stack([apply(u[:, i]) for i in range(u.shape[1])], dim=1)
    q, r = torch.linalg.qr(au.mT)
    c = q.mT
    u = torch.linalg.solve_triangular(r.mT, u, upper=False)
    w = torch.linalg.solve_triangular(r.mT, w, upper=False)
    return u, w, c


def _givens(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Complex Givens rotation zeroing ``b`` in ``[a, b]``: returns ``(c, s, rho)``.

    ``[[c, s], [-conj(s), c]] [a; b] = [rho; 0]`` with ``c`` real (stored in a's dtype).
    """
    abs_a, abs_b = a.abs(), b.abs()
    radius = torch.sqrt(abs_a**2 + abs_b**2)
    safe_r = torch.where(radius > 0, radius, torch.ones_like(radius))
    phase_a = torch.where(abs_a > 0, a / torch.where(abs_a > 0, abs_a, 1.0), torch.ones_like(a))
    zero_a = abs_a == 0
    c = torch.where(zero_a, torch.zeros_like(abs_a), abs_a / safe_r)
    s_b = torch.where(abs_b > 0, b.conj() / torch.where(abs_b > 0, abs_b, 1.0), torch.ones_like(b))
    s = torch.where(zero_a, s_b, phase_a * b.conj() / safe_r)
    rho = torch.where(zero_a, abs_b.to(a.dtype), phase_a * radius.to(a.dtype))
    return c.to(a.dtype), s, rho


def _select_real_basis(vectors: torch.Tensor, values: torch.Tensor, count: int) -> torch.Tensor:
    """Real basis of the span of the ``count`` eigenvectors of largest ``|values|``.

    A complex-conjugate pair contributes its real and imaginary parts (both, or neither if
    only one slot is left). Args: vectors (n, n) complex columns; values (n,). Returns (n, c),
    c <= count.
    """
    order = torch.argsort(values.abs(), descending=True).tolist()
    scale = float(values.abs().max()) if values.numel() else 0.0
    columns: list[torch.Tensor] = []
    for i in order:
        if len(columns) >= count:
            break
        imag = float(values[i].imag)
        if abs(imag) <= 1e-10 * scale:
            columns.append(vectors[:, i].real)
        elif imag > 0 and len(columns) + 2 <= count:
            columns += [vectors[:, i].real, vectors[:, i].imag]
    return torch.stack(columns, dim=1)


def harmonic_ritz(
    gbar: torch.Tensor, wv: torch.Tensor, count: int, real: bool
) -> list[torch.Tensor]:
    """Coefficients of the harmonic Ritz vectors of smallest magnitude (Parks et al., eq. 2.14).

    Solves ``Gbar^H Gbar g = theta Gbar^H (What^H Vhat) g`` as the ordinary eigenproblem
    ``(Gbar^H Gbar)^{-1} Gbar^H (What^H Vhat) g = (1/theta) g`` and keeps the ``count`` largest
    ``|1/theta|``.

    Args:
        gbar: (B, p + 1, p) the augmented Hessenberg matrix.
        wv: (B, p + 1, p) ``What^H Vhat``.
        count: how many vectors (at most p).
        real: real arithmetic: conjugate pairs become real and imaginary parts.

    Returns:
        per member a (p, c) matrix ``P`` (``c <= count``), columns in ``gbar``'s dtype.
    """
    normal = gbar.mH @ gbar
    rhs = gbar.mH @ wv
    matrix = torch.linalg.solve(normal, rhs)
    values, vectors = torch.linalg.eig(matrix)
    count = min(count, gbar.shape[-1])
    out = []
    for b in range(gbar.shape[0]):
        if real:
            out.append(_select_real_basis(vectors[b], values[b], count).to(gbar.dtype))
        else:
            order = torch.argsort(values[b].abs(), descending=True)[:count]
            out.append(vectors[b][:, order].to(gbar.dtype))
    return out


@dataclass
class _Cycle:
    """Working arrays of one restart cycle for the members still iterating in it."""

    members: torch.Tensor  # (Bc,) positions in the active arrays
    v: torch.Tensor  # (Bc, m + 1, N) Arnoldi basis
    z: torch.Tensor  # (Bc, m, N) preconditioned basis M^{-1} V
    hbar: torch.Tensor  # (Bc, m + 1, m) Hessenberg, unrotated
    rot: torch.Tensor  # (Bc, m, m) rotated (upper triangular) Hessenberg
    g: torch.Tensor  # (Bc, m + 1) rotated right-hand side
    cos: torch.Tensor  # (Bc, m)
    sin: torch.Tensor  # (Bc, m)
    bmat: torch.Tensor | None  # (Bc, k, m) C^H A Z
    c0: torch.Tensor | None  # (Bc, k) C^H r at the cycle start
    c: torch.Tensor | None  # (Bc, k, N)
    u: torch.Tensor | None  # (Bc, k, N)
    w: torch.Tensor | None  # (Bc, k, N)
    operator: object
    preconditioner: object

    def keep(self, mask: torch.Tensor) -> _Cycle:
        """The cycle restricted to the members where ``mask`` is True."""
        index = torch.nonzero(mask).flatten()
        fields = {}
        for name in ("members", "v", "z", "hbar", "rot", "g", "cos", "sin"):
            fields[name] = getattr(self, name)[mask]
        for name in ("bmat", "c0", "c", "u", "w"):
            value = getattr(self, name)
            fields[name] = value[mask] if value is not None else None
        fields["operator"] = self.operator.subset(index)
        pre = self.preconditioner
        fields["preconditioner"] = pre.subset(index) if pre is not None else None
        return _Cycle(**fields)


def gcrodr(
    operator,
    rhs: torch.Tensor,
    x0: torch.Tensor | None = None,
    preconditioner=None,
    tol: float = 1e-8,
    restart: int = 40,
    recycle: int = 20,
    maxiter: int = 1000,
    space: RecycleSpace | None = None,
) -> KrylovResult:
    """GCRO-DR(m, k) for a batch of (nonsymmetric, indefinite, complex) systems.

    Args:
        operator: ``A`` on (B, *grid) with ``subset(index)``.
        rhs: (B, *grid), real or complex.
        x0: initial guesses (warm starts), default zero.
        preconditioner: right preconditioner ``M^{-1}`` on (B, *grid) with ``subset``; None:
            identity. The solver solves ``A M^{-1} y = b``, ``x = M^{-1} y``.
        tol: required true relative residual.
        restart: m, Arnoldi steps per cycle.
        recycle: k, harmonic Ritz vectors kept (0: plain GMRES(m), no space returned).
        maxiter: Arnoldi steps per member before it is reported as not converged.
        space: a recycle space per member (the previous system's ``result.recycle``); its
            pairing with this ``A`` costs k operator applications, not counted as iterations.

    Returns:
        :class:`~datagen.linalg.krylov.KrylovResult`; ``iterations`` counts Arnoldi steps;
        ``recycle`` is a :class:`RecycleSpace` (B, k', *grid), ``k' <= recycle``, or None.
    """
    if tol <= 0:
        raise ValueError(f"tol must be positive, got {tol}")
    if restart < 1 or recycle < 0:
        raise ValueError(f"need restart >= 1 and recycle >= 0, got {restart}, {recycle}")
    batch, grid = rhs.shape[0], rhs.shape[1:]
    device, dtype = rhs.device, rhs.dtype
    real = not dtype.is_complex

    def apply(op, v: torch.Tensor) -> torch.Tensor:
        return op(v.reshape(v.shape[0], *grid)).reshape(v.shape[0], -1)

    b = rhs.reshape(batch, -1)
    x = torch.zeros_like(b) if x0 is None else x0.reshape(batch, -1).to(dtype).clone()
    norm_b = _norm(b).to(torch.float64)
    norm_b = torch.where(norm_b > 0, norm_b, torch.ones_like(norm_b))
    x_out = x.clone()
    iterations = torch.zeros(batch, dtype=torch.int64, device=device)
    residual = torch.full((batch,), float("inf"), dtype=torch.float64, device=device)
    converged = torch.zeros(batch, dtype=torch.bool, device=device)
    spaces_out: list = [None] * batch

    active = torch.arange(batch, device=device)
    A, M = operator, preconditioner
    u = w = c = None
    if space is not None and recycle > 0 and space.k > 0:
        k0 = min(space.k, recycle)
        u, w, c = pair_with(
            lambda v: apply(A, v),
            (space.u[:, :k0].reshape(batch, k0, -1), space.w[:, :k0].reshape(batch, k0, -1)),
        )
    r = b - apply(A, x)
    if c is not None:
        coef = _inner(c, r)
        x = x + _combine(coef, u)
        r = r - _combine(coef, c)
    its = torch.zeros(batch, dtype=torch.int64, device=device)
    per_member: list = [None] * batch  # current (u, w, c) per active member, when split

    while active.numel() > 0:
        # True residual: who is done (converged or out of iterations)?
        r = b - apply(A, x)
        rel = _norm(r).to(torch.float64) / norm_b[active]
        done = (rel <= tol) | (its >= maxiter)
        if bool(done.any()):
            for local in torch.nonzero(done).flatten().tolist():
                glob = int(active[local])
                x_out[glob] = x[local]
                iterations[glob] = its[local]
                residual[glob] = rel[local]
                converged[glob] = bool(rel[local] <= tol)
                if u is not None:
                    spaces_out[glob] = (u[local], w[local])
            keep = ~done
            index = torch.nonzero(keep).flatten()
            active = active[keep]
            if active.numel() == 0:
                break
            A = A.subset(index)
            M = M.subset(index) if M is not None else None
            b, x, r, its = b[keep], x[keep], r[keep], its[keep]
            if u is not None:
                u, w, c = u[keep], w[keep], c[keep]
        cycle = _start_cycle(A, M, r, u, w, c, restart, real)
        results = _run_cycle(cycle, apply, its, maxiter, tol, norm_b[active], restart, recycle)
        # Gather the cycle's updates and new recycle spaces back into the active arrays.
        new_spaces = []
        for members, dx, steps, spaces in results:
            x[members] = x[members] + dx
            its[members] = its[members] + steps
            if spaces is not None:
                for pos, sp in zip(members.tolist(), spaces, strict=True):
                    per_member[pos] = sp
                new_spaces += spaces
        if recycle > 0 and len(new_spaces) == active.numel():
            count = min(sp[0].shape[0] for sp in new_spaces)
            if count > 0:
                u = torch.stack([per_member[i][0][:count] for i in range(active.numel())])
                w = torch.stack([per_member[i][1][:count] for i in range(active.numel())])
                c = torch.stack([per_member[i][2][:count] for i in range(active.numel())])
            else:
                u = w = c = None
        per_member = [None] * batch

    recycled = None
    if recycle > 0 and all(sp is not None for sp in spaces_out):
        count = min(sp[0].shape[0] for sp in spaces_out)
        recycled = RecycleSpace(
            torch.stack([sp[0][:count] for sp in spaces_out]).reshape(batch, count, *grid),
            torch.stack([sp[1][:count] for sp in spaces_out]).reshape(batch, count, *grid),
        )
    return KrylovResult(x_out.reshape(rhs.shape), iterations, residual, converged, recycled)


def gmres(
    operator,
    rhs: torch.Tensor,
    x0: torch.Tensor | None = None,
    preconditioner=None,
    tol: float = 1e-8,
    restart: int = 40,
    maxiter: int = 1000,
) -> KrylovResult:
    """Right-preconditioned, restarted GMRES(m) for a batch: :func:`gcrodr` with ``k = 0``."""
    return gcrodr(operator, rhs, x0, preconditioner, tol, restart, 0, maxiter)


def _start_cycle(A, M, r, u, w, c, m: int, real: bool) -> _Cycle:
    """Allocate a cycle: ``v_1 = (I - C C^H) r / ||.||``, ``g = beta e_1``."""
    bc, n = r.shape
    dtype = r.dtype
    c0 = _inner(c, r) if c is not None else None
    r_perp = r - _combine(c0, c) if c is not None else r
    beta = _norm(r_perp)
    v = r.new_zeros((bc, m + 1, n))
    v[:, 0] = r_perp / torch.where(beta > 0, beta, 1.0).to(dtype)[:, None]
    z = v if M is None else r.new_zeros((bc, m, n))
    g = r.new_zeros((bc, m + 1))
    g[:, 0] = beta.to(dtype)
    k = c.shape[1] if c is not None else 0
    return _Cycle(
        members=torch.arange(bc, device=r.device),
        v=v,
        z=z,
        hbar=r.new_zeros((bc, m + 1, m)),
        rot=r.new_zeros((bc, m, m)),
        g=g,
        cos=r.new_zeros((bc, m)),
        sin=r.new_zeros((bc, m)),
        bmat=r.new_zeros((bc, k, m)) if k else None,
        c0=c0,
        c=c,
        u=u,
        w=w,
        operator=A,
        preconditioner=M,
    )


def _run_cycle(cyc: _Cycle, apply, its, maxiter, tol, norm_b, m: int, k_max: int) -> list:
    """Arnoldi steps until every member's cycle ends; returns finished groups.

    Each group is ``(members, dx, steps, spaces)``: positions in the active arrays, the
    solution updates (G, N), the steps taken, and per member the new ``(u, w, c)`` or None.
    """
    out = []
    budget = maxiter - its  # steps each active member may still take (>= 1 here)
    for j in range(m):
        M = cyc.preconditioner
        vj = cyc.v[:, j]
        zj = apply(M, vj) if M is not None else vj
        if M is not None:
            cyc.z[:, j] = zj
        wv = apply(cyc.operator, zj)
        if cyc.c is not None:
            bj = _inner(cyc.c, wv)
            wv = wv - _combine(bj, cyc.c)
            cyc.bmat[:, :, j] = bj
        basis = cyc.v[:, : j + 1]
        h = _inner(basis, wv)
        wv = wv - _combine(h, basis)
        h2 = _inner(basis, wv)  # classical Gram-Schmidt, twice
        wv = wv - _combine(h2, basis)
        h = h + h2
        hn = _norm(wv)
        cyc.v[:, j + 1] = wv / torch.where(hn > 0, hn, 1.0).to(wv.dtype)[:, None]
        col = torch.cat([h, hn.to(h.dtype)[:, None]], dim=1)
        cyc.hbar[:, : j + 2, j] = col
        col = col.clone()
        for i in range(j):
            ci, si = cyc.cos[:, i], cyc.sin[:, i]
            top = ci * col[:, i] + si * col[:, i + 1]
            col[:, i + 1] = -si.conj() * col[:, i] + ci * col[:, i + 1]
            col[:, i] = top
        cj, sj, rho = _givens(col[:, j], col[:, j + 1])
        cyc.cos[:, j], cyc.sin[:, j] = cj, sj
        col[:, j] = rho
        cyc.rot[:, : j + 1, j] = col[:, : j + 1]
        gj = cyc.g[:, j].clone()
        cyc.g[:, j + 1] = -sj.conj() * gj
        cyc.g[:, j] = cj * gj
        steps = j + 1
        estimate = cyc.g[:, j + 1].abs().to(torch.float64)
        local_norm = norm_b[cyc.members]
        finish = (
            (estimate <= tol * local_norm)
            | (steps >= budget[cyc.members])
            | (hn <= 1e-14 * local_norm)
            | torch.tensor(steps == m, device=hn.device)
        )
        if bool(finish.any()):
            out.append(_finish(cyc.keep(finish), steps, k_max))
            if bool(finish.all()):
                break
            cyc = cyc.keep(~finish)
    return out


def _finish(cyc: _Cycle, steps: int, k_max: int):
    """Solution update and new recycle space of members whose cycle ended after ``steps``."""
    j = steps
    rot = cyc.rot[:, :j, :j].clone()
    diagonal = rot.diagonal(dim1=1, dim2=2)
    # An exact zero pivot only follows a zero residual (beta = 0): its g entries are zero too.
    diagonal.copy_(torch.where(diagonal == 0, torch.ones_like(diagonal), diagonal))
    y = torch.linalg.solve_triangular(rot, cyc.g[:, :j, None], upper=True)[..., 0]
    dx = _combine(y, cyc.z[:, :j])
    if cyc.c is not None:
        dx = dx + _combine(cyc.c0 - (cyc.bmat[:, :, :j] @ y[..., None])[..., 0], cyc.u)
    spaces = None
    if k_max > 0:
        spaces = _new_space(cyc, j, k_max)
    return cyc.members, dx, j, spaces


def _new_space(cyc: _Cycle, j: int, k_max: int) -> list:
    """Harmonic Ritz recycle space from ``range([U D, Z_j])``: Parks et al., Alg. 1, 2.14."""
    bc = cyc.v.shape[0]
    dtype = cyc.v.dtype
    hbar = cyc.hbar[:, : j + 1, :j]
    vj1 = cyc.v[:, : j + 1]
    if cyc.c is None:
        gbar = hbar
        wv = torch.eye(j + 1, j, dtype=dtype, device=hbar.device).expand(bc, j + 1, j)
        w_rows, x_rows, v_rows = vj1, cyc.z[:, :j], cyc.v[:, :j]
    else:
        k = cyc.c.shape[1]
        scale = 1.0 / torch.linalg.vector_norm(cyc.w, dim=2)  # D: unit columns of W
        d = torch.diag_embed(scale.to(dtype))
        gbar = hbar.new_zeros((bc, k + j + 1, k + j))
        gbar[:, :k, :k] = d
        gbar[:, :k, k:] = cyc.bmat[:, :, :j]
        gbar[:, k:, k:] = hbar
        wd = cyc.w * scale.to(dtype)[..., None]
        wv = hbar.new_zeros((bc, k + j + 1, k + j))
        wv[:, :k, :k] = cyc.c.conj() @ wd.mT
        wv[:, k:, :k] = vj1.conj() @ wd.mT
        wv[:, k:, k:] = torch.eye(j + 1, j, dtype=dtype, device=hbar.device)
        w_rows = torch.cat([cyc.c, vj1], dim=1)
        x_rows = torch.cat([cyc.u * scale.to(dtype)[..., None], cyc.z[:, :j]], dim=1)
        v_rows = torch.cat([wd, cyc.v[:, :j]], dim=1)
    try:
        choices = harmonic_ritz(gbar, wv, k_max, not dtype.is_complex)
    except RuntimeError:  # singular small problem (breakdown): recycle nothing this time
        return [(x_rows[i, :0], v_rows[i, :0], w_rows[i, :0]) for i in range(bc)]
    count = min(p.shape[1] for p in choices)
    p = torch.stack([q[:, :count] for q in choices])  # (Bc, p, count)
    q, rr = torch.linalg.qr(gbar @ p)
    c_new = q.mT @ w_rows
    u_new = torch.linalg.solve_triangular(rr.mT, p.mT @ x_rows, upper=False)
    w_new = torch.linalg.solve_triangular(rr.mT, p.mT @ v_rows, upper=False)
    return [(u_new[i], w_new[i], c_new[i]) for i in range(bc)]
