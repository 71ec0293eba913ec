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

from dataclasses import dataclass, field

import numpy as np
import torch

from datagen.linalg import fused
from datagen.linalg.krylov import Jacobi, KrylovResult


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

    def __len__(self) -> int:
        """Batch members."""
        return self.u.shape[0]

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
    # u <- R^{-T} u as u^T <- u^T R^{-1}: the solve on column-major N x k views, no transposes.
    u = torch.linalg.solve_triangular(r, u.mT, upper=True, left=False).mT.contiguous()
    w = torch.linalg.solve_triangular(r, w.mT, upper=True, left=False).mT.contiguous()
    return u, w, c


def _givens(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Givens rotation zeroing ``b`` in ``[a, b]``: returns ``(c, s, rho)``.

    ``[[c, s], [-conj(s), c]] [a; b] = [rho; 0]``; for complex ``a`` the cosine ``c`` is real
    (stored in a's dtype). Real inputs take the short form ``c = a / r``, ``s = b / r``.
    """
    if not a.is_complex():
        radius = torch.hypot(a, b)
        safe = torch.where(radius > 0, radius, torch.ones_like(radius))
        return torch.where(radius > 0, a / safe, torch.ones_like(a)), b / safe, radius
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
    host = values.detach().cpu().numpy()  # one transfer; the choice is scalar logic
    order = np.argsort(-np.abs(host), kind="stable")
    scale = float(np.abs(host).max()) if host.size else 0.0
    columns: list[torch.Tensor] = []
    for i in order.tolist():
        if len(columns) >= count:
            break
        imag = float(host[i].imag)
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
    """Working arrays of one restart cycle for the members still iterating in it.

    The recycle images ``C`` and the Arnoldi basis ``V`` share one buffer, ``basis`` =
    ``[C; V]``, so that one product orthogonalizes a new vector against both, and the
    Givens rotations applied so far are kept as one orthogonal matrix ``q``, so that rotating
    a new Hessenberg column is one product: a step costs a fixed number of tensor operations,
    not one per earlier step.
    """

    members: torch.Tensor  # (Bc,) positions in the active arrays
    k: int  # recycle vectors in use (rows of C in ``basis``)
    basis: torch.Tensor  # (Bc, k + m + 1, N): C (k rows), then the Arnoldi basis V
    z: torch.Tensor | None  # (Bc, m, N) preconditioned basis M^{-1} V; None: no M (Z = V)
    hbar: torch.Tensor  # (Bc, m + 1, m) Hessenberg, unrotated
    q: torch.Tensor  # (Bc, m + 1, m + 1) product of the Givens rotations so far
    beta: torch.Tensor  # (Bc,) real ||(I - C C^H) r||: the cycle's right-hand side is beta e_1
    bmat: torch.Tensor | None  # (Bc, k, m) C^H A Z
    c0: torch.Tensor | None  # (Bc, k) C^H r at the cycle start
    u: torch.Tensor | None  # (Bc, k, N)
    w: torch.Tensor | None  # (Bc, k, N)
    target: torch.Tensor  # (Bc,) float64: tol * ||b||, the estimate that ends the cycle
    floor: torch.Tensor  # (Bc,) float64: 1e-14 ||b||, a breakdown (invariant subspace)
    budget: torch.Tensor  # (Bc,) steps each member may still take
    operator: object
    preconditioner: object
    fused_step: fused.ArnoldiStep | None = field(init=False)

    def __post_init__(self) -> None:
        self.fused_step = fused.ArnoldiStep.plan(
            self.basis, self.hbar, self.q, self.bmat, self.beta, self.target, self.floor,
            self.budget, self.k, self._darcy(),
        )  # fmt: skip

    def _darcy(self) -> dict | None:
        """The operands of the fused steps (:meth:`fused.ArnoldiStep.plan`) when the operator
        is a 5-point one (``five_point()``) and the preconditioner Jacobi or none."""
        five_point = getattr(self.operator, "five_point", None)
        pre = self.preconditioner
        if five_point is None or not (pre is None or isinstance(pre, Jacobi)):
            return None
        diagonal, wx, wy = five_point()
        inverse = pre.inverse if pre is not None else None
        return dict(diagonal=diagonal, wx=wx, wy=wy, inverse=inverse, z=self.z)

    @property
    def c(self) -> torch.Tensor | None:
        return self.basis[:, : self.k] if self.k else None

    def v(self, count: int) -> torch.Tensor:
        """The first ``count`` Arnoldi vectors (Bc, count, N)."""
        return self.basis[:, self.k : self.k + count]

    def zs(self, count: int) -> torch.Tensor:
        """The first ``count`` preconditioned vectors (Bc, count, N)."""
        return self.z[:, :count] if self.z is not None else self.v(count)

    def keep(self, mask: torch.Tensor) -> _Cycle:
        """The cycle restricted to the members where ``mask`` is True."""
        index = torch.nonzero(mask).flatten()
        fields: dict = {"k": self.k}
        for name in ("members", "basis", "hbar", "q", "beta", "target", "floor", "budget"):
            fields[name] = getattr(self, name)[mask]
        for name in ("z", "bmat", "c0", "u", "w"):
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
    orthogonalization: str = "cgs2",
    cycle_dtype: torch.dtype | None = None,
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
        orthogonalization: of each new Arnoldi vector against ``[C, V]``: ``"cgs2"``
            classical Gram-Schmidt with a second pass when it is needed (robust; on slowly
            converging systems it is needed at almost every step), or ``"cgs"`` one pass
            (PETSc's GMRES default; half the memory traffic of a step's orthogonalization).
            The stopping test is on the true residual either way.
        cycle_dtype: the precision of the cycles (Arnoldi basis, recycle space, and copies of
            the operator and preconditioner made by their ``.to(dtype)``); None: ``rhs``'s.
            ``torch.float32`` for float64 systems: each cycle computes a correction in float32,
            the residual, the solution and the stopping test stay in float64 (iterative
            refinement at every restart), so the tolerance holds on the true residual. Each
            cycle then starts from ``C = A U`` recomputed (k applications and a thin QR): in
            float32 the relation drifts by about the unit roundoff times the condition number
            per cycle, which stalled GCRO-DR on the SKR paper's systems.

    Returns:
        :class:`~datagen.linalg.krylov.KrylovResult`; ``iterations`` counts Arnoldi steps;
        ``recycle`` is a :class:`RecycleSpace` (B, k', *grid), ``k' <= recycle``, or None.
    """
    if tol <= 0:
        raise ValueError(f"tol must be positive, got {tol}")
    if restart < 1 or recycle < 0:
        raise ValueError(f"need restart >= 1 and recycle >= 0, got {restart}, {recycle}")
    if orthogonalization not in ORTHOGONALIZATIONS:
        raise ValueError(
            f"orthogonalization must be one of {ORTHOGONALIZATIONS}, got {orthogonalization!r}"
        )
    batch, grid = rhs.shape[0], rhs.shape[1:]
    device, dtype = rhs.device, rhs.dtype
    low = dtype if cycle_dtype is None else cycle_dtype
    if (
        not isinstance(low, torch.dtype)
        or low.is_complex != dtype.is_complex
        or not (low.is_floating_point or low.is_complex)
    ):
        kind = "complex" if dtype.is_complex else "real floating"
        raise ValueError(f"cycle_dtype must be a {kind} dtype like rhs's {dtype}, got {low!r}")

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
    A_low, M_low = (
        _in_dtype(A, low, dtype, "an operator"),
        _in_dtype(M, low, dtype, "a preconditioner"),
    )
    u = w = c = None
    if space is not None and recycle > 0 and space.k > 0:
        k0 = min(space.k, recycle)
        u, w, c = pair_with(
            lambda v: apply(A_low, v),
            tuple(t[:, :k0].reshape(batch, k0, -1).to(low) for t in (space.u, space.w)),
        )
    if c is not None:
        x = x + _combine(_inner(c, (b - apply(A, x)).to(low)), u).to(dtype)
    its = torch.zeros(batch, dtype=torch.int64, device=device)
    stale = False  # whether C = A U must be recomputed before the next cycle (low precision)

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
            A, A_low = _subset_both(A, A_low, index)
            M, M_low = _subset_both(M, M_low, index)
            b, x, r, its = b[keep], x[keep], r[keep], its[keep]
            if u is not None:
                u, w, c = u[keep], w[keep], c[keep]
        if stale and u is not None:  # C = A U again, for the members that go on
            u, w, c = pair_with(lambda v, op=A_low: apply(op, v), (u, w))
        stale = False
        local_norm = norm_b[active]
        cycle = _start_cycle(
            A_low, M_low, r.to(low), u, w, c, restart, tol * local_norm, 1e-14 * local_norm,
            maxiter - its,
        )  # fmt: skip
        results = _run_cycle(cycle, apply, restart, recycle, orthogonalization == "cgs2")
        # Gather the cycle's updates and new recycle spaces back into the active arrays.
        groups = []
        for members, dx, steps, space in results:
            x[members] = x[members] + dx.to(dtype)
            its[members] = its[members] + steps
            if space is not None:
                groups.append((members, space))
        if recycle > 0:
            u, w, c = _gather_spaces(groups, active.numel())
            stale = low != dtype

    recycled = None
    if recycle > 0 and all(sp is not None for sp in spaces_out):
        count = min(sp[0].shape[0] for sp in spaces_out)
        recycled = RecycleSpace(
            torch.stack([sp[0][:count] for sp in spaces_out]).reshape(batch, count, *grid),
            torch.stack([sp[1][:count] for sp in spaces_out]).reshape(batch, count, *grid),
        )
    return KrylovResult(x_out.reshape(rhs.shape), iterations, residual, converged, recycled)


def _in_dtype(obj, dtype: torch.dtype, native: torch.dtype, role: str):
    """``obj`` (an operator or preconditioner in ``native``, or None) in ``dtype``: itself
    when the two are the same, else ``obj.to(dtype)``."""
    if obj is None or dtype == native:
        return obj
    convert = getattr(obj, "to", None)
    if convert is None:
        raise ValueError(f"cycle_dtype {dtype} needs {role} with .to(dtype)")
    return convert(dtype)


def _subset_both(obj, low, index: torch.Tensor) -> tuple:
    """``obj`` and its copy in the cycles' precision ``low`` restricted to members ``index``
    (one subset when they are the same object)."""
    if obj is None:
        return None, None
    kept = obj.subset(index)
    return kept, (kept if low is obj else low.subset(index))


def gmres(
    operator,
    rhs: torch.Tensor,
    x0: torch.Tensor | None = None,
    preconditioner=None,
    tol: float = 1e-8,
    restart: int = 40,
    maxiter: int = 1000,
    orthogonalization: str = "cgs2",
    cycle_dtype: torch.dtype | None = None,
) -> KrylovResult:
    """Right-preconditioned, restarted GMRES(m) for a batch: :func:`gcrodr` with ``k = 0``."""
    return gcrodr(
        operator, rhs, x0, preconditioner, tol, restart, 0, maxiter, None, orthogonalization,
        cycle_dtype,
    )  # fmt: skip


def _room_of(c: torch.Tensor, width: int) -> torch.Tensor | None:
    """The buffer (Bc, width, N) whose first rows ``c`` (Bc, k, N) is, as :func:`_new_space`
    makes it, so that the next cycle's basis needs no copy of ``c``; else None."""
    base = c._base
    if base is None or base.shape != (c.shape[0], width, c.shape[2]):
        return None
    return base if c.data_ptr() == base.data_ptr() and c.stride() == base.stride() else None


def _start_cycle(A, M, r, u, w, c, m: int, target, floor, budget) -> _Cycle:
    """Allocate a cycle: ``v_1 = (I - C C^H) r / ||.||``, ``g = beta e_1``."""
    bc, n = r.shape
    dtype = r.dtype
    k = c.shape[1] if c is not None else 0
    c0 = _inner(c, r) if c is not None else None
    r_perp = r - _combine(c0, c) if c is not None else r
    beta = _norm(r_perp)
    basis = _room_of(c, k + m + 1) if k else None
    if basis is None:
        basis = r.new_empty((bc, k + m + 1, n))
        if k:
            basis[:, :k] = c
    basis[:, k] = r_perp / torch.where(beta > 0, beta, 1.0).to(dtype)[:, None]
    q = torch.eye(m + 1, dtype=dtype, device=r.device).expand(bc, m + 1, m + 1).clone()
    return _Cycle(
        members=torch.arange(bc, device=r.device),
        k=k,
        basis=basis,
        z=r.new_empty((bc, m, n)) if M is not None else None,
        hbar=r.new_zeros((bc, m + 1, m)),
        q=q,
        beta=beta,
        bmat=r.new_zeros((bc, k, m)) if k else None,
        c0=c0,
        u=u,
        w=w,
        target=target,
        floor=floor,
        budget=budget,
        operator=A,
        preconditioner=M,
    )


ORTHOGONALIZATIONS = ("cgs2", "cgs")


def _orthogonalize(rows: torch.Tensor, v: torch.Tensor, twice: bool = True):
    """Classical Gram-Schmidt of ``v`` (Bc, N) against orthonormal ``rows`` (Bc, r, N).

    ``twice``: a second pass when it is needed (Daniel, Gragg, Kaufman and Stewart 1976: when
    the norm drops below ``1/sqrt(2)`` of what it was, for any member), which keeps the basis
    orthogonal to working precision as two passes always do; otherwise one pass (PETSc's
    default for GMRES, ``refine_never``). Each pass reads ``rows`` twice.

    Returns ``(v', h, ||v'||)``: ``v' = v - rows^T h`` with ``h = rows^H v`` (Bc, r).
    """
    before = _norm(v) if twice else None
    h = _inner(rows, v)
    v = _subtract_combination(v, h, rows)
    after = _norm(v)
    if twice and bool((after < 0.7071067811865476 * before).any()):
        h2 = _inner(rows, v)
        v = _subtract_combination(v, h2, rows)
        h = h + h2
        after = _norm(v)
    return v, h, after


def _subtract_combination(v: torch.Tensor, h: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``v - sum_i h_i rows_i``: (B, N), (B, r), (B, r, N) -> (B, N) in one product."""
    return torch.baddbmm(v[:, None, :], h[:, None, :], rows, alpha=-1)[:, 0]


def _run_cycle(cyc: _Cycle, apply, m: int, k_max: int, twice: bool) -> list:
    """Arnoldi steps until every member's cycle ends; returns finished groups.

    Each group is ``(members, dx, steps, space)``: positions in the active arrays, the
    solution updates (G, N), the steps taken, and the new ``(u, w, c)`` (G, k', N) each, or
    None when nothing is recycled.
    On a CPU the steps of a Darcy operator with Jacobi or no preconditioner run in C until a
    member's cycle ends (:meth:`fused.ArnoldiStep.run`); other operators take one step at a
    time (:func:`_step`). Both give the same result up to rounding.
    """
    out = []
    j = 0
    while j < m:
        fused_step = cyc.fused_step
        if fused_step is not None and fused_step.runs:
            finish, count, j = fused_step.run(j, twice)
        else:
            finish, count = _step(cyc, apply, j, twice)
        steps = j + 1
        j += 1
        if steps == m:
            finish = torch.ones_like(finish)
        elif count == 0:
            continue
        everyone = bool(finish.all())
        out.append(_finish(cyc if everyone else cyc.keep(finish), steps, k_max))
        if everyone:
            break
        cyc = cyc.keep(~finish)
    return out


def _step(cyc: _Cycle, apply, j: int, twice: bool) -> tuple[torch.Tensor, int]:
    """Arnoldi step ``j``: ``z_j = M^{-1} v_j`` (in place for a preconditioner with
    ``into(r, out)``, :class:`~datagen.linalg.krylov.Jacobi`), ``w = A z_j``, then one fused
    call (:class:`fused.ArnoldiStep`) or :func:`_eager_step`. Returns ``(finish (Bc,) bool,
    how many)``."""
    M = cyc.preconditioner
    vj = cyc.basis[:, cyc.k + j]
    if M is None:
        zj = vj
    else:
        zj = cyc.z[:, j]
        into = getattr(M, "into", None)
        if into is not None:
            into(vj, zj)
        else:
            zj.copy_(apply(M, vj))
    w = apply(cyc.operator, zj)
    if cyc.fused_step is not None:
        return cyc.fused_step(w, j, twice)
    finish = _eager_step(cyc, j, w, twice)
    return finish, int(finish.sum())


def _eager_step(cyc: _Cycle, j: int, w: torch.Tensor, twice: bool) -> torch.Tensor:
    """Step ``j`` after the operator in torch operations: orthogonalize ``w`` (Bc, N) =
    ``A M^{-1} v_j`` against ``[C, V_{j+1}]``, store the new basis row and the Hessenberg and
    ``B`` columns, rotate; returns which members' cycles end here (Bc,) bool."""
    k = cyc.k
    wv, h, hn = _orthogonalize(cyc.basis[:, : k + j + 1], w, twice)
    if k:
        cyc.bmat[:, :, j] = h[:, :k]
    torch.div(wv, torch.where(hn > 0, hn, 1.0).to(wv.dtype)[:, None], out=cyc.basis[:, k + j + 1])
    cyc.hbar[:, : j + 1, j] = h[:, k:]
    cyc.hbar[:, j + 1, j] = hn.to(h.dtype)
    # Rotate the new column by the rotations so far (one product), then fold the rotation
    # that zeroes its last entry into q: rows j, j + 1 of q mix (one 2 x 2 product).
    col = cyc.q[:, j : j + 2, : j + 2] @ cyc.hbar[:, : j + 2, j, None]
    cj, sj, _ = _givens(col[:, 0, 0], col[:, 1, 0])
    rotation = torch.stack([cj, sj, -sj.conj(), cj], -1).reshape(-1, 2, 2)
    cyc.q[:, j : j + 2, : j + 2] = rotation @ cyc.q[:, j : j + 2, : j + 2]
    # |g_{j+1}| = beta |q_{j+1, 0}|: the least-squares residual of the cycle.
    estimate = (cyc.q[:, j + 1, 0].abs() * cyc.beta).to(torch.float64)
    return (estimate <= cyc.target) | (hn <= cyc.floor) | (j + 1 >= cyc.budget)


def _finish(cyc: _Cycle, steps: int, k_max: int):
    """Solution update and new recycle space of members whose cycle ended after ``steps``."""
    j = steps
    # The rotated Hessenberg R = Q Hbar (upper triangular) and right-hand side g = beta Q e_1.
    rot = (cyc.q[:, :j, : j + 1] @ cyc.hbar[:, : j + 1, :j]).triu()
    g = cyc.q[:, :j, 0] * cyc.beta.to(cyc.q.dtype)[:, None]
    diagonal = rot.diagonal(dim1=1, dim2=2)
    # An exact zero pivot only follows a zero residual (beta = 0): its g entries are zero too.
    diagonal.copy_(torch.where(diagonal == 0, torch.ones_like(diagonal), diagonal))
    y = torch.linalg.solve_triangular(rot, g[..., None], upper=True)[..., 0]
    dx = _combine(y, cyc.zs(j))
    if cyc.k:
        dx = dx + _combine(cyc.c0 - (cyc.bmat[:, :, :j] @ y[..., None])[..., 0], cyc.u)
    space = _new_space(cyc, j, k_max) if k_max > 0 else None
    return cyc.members, dx, j, space


def _gather_spaces(groups: list, active: int) -> tuple:
    """The recycle spaces ``(u, w, c)`` (active, k', N) of the groups' members, in the active
    order, ``k'`` the smallest count; ``(None, None, None)`` when it is 0. One group holding
    every member in order (one chain, or members that ended their cycle together) passes
    through uncopied."""
    count = min(space[0].shape[1] for _, space in groups)
    if count == 0:
        return None, None, None
    members, space = groups[0]
    if len(groups) == 1 and members.numel() == active:  # then members = 0, 1, ..., active - 1
        return tuple(t[:, :count] for t in space)
    out = []
    for part in range(3):
        first = space[part]
        gathered = first.new_empty((active, count, first.shape[2]))
        for members, group_space in groups:
            gathered[members] = group_space[part][:, :count]
        out.append(gathered)
    return tuple(out)


def _new_space(cyc: _Cycle, j: int, k_max: int) -> tuple:
    """Harmonic Ritz recycle space from ``range([U D, Z_j])``: Parks et al., Alg. 1, 2.14.

    Returns ``(u, w, c)`` (Bc, k', N) each, ``k' <= k_max`` (0 after a breakdown).

    ``What = [C, V_{j+1}]`` is the first ``k + j + 1`` rows of ``basis``; the other row sets
    (``[U D, Z_j]``, ``[W D, V_j]``) are combined in two products each, never copied.
    """
    bc = cyc.basis.shape[0]
    dtype = cyc.basis.dtype
    k = cyc.k
    hbar = cyc.hbar[:, : j + 1, :j]
    w_rows = cyc.basis[:, : k + j + 1]
    if not k:
        gbar = hbar
        wv = torch.eye(j + 1, j, dtype=dtype, device=hbar.device).expand(bc, j + 1, j)
    else:
        scale = (1.0 / torch.linalg.vector_norm(cyc.w, dim=2)).to(dtype)  # D: unit columns of W
        gbar = hbar.new_zeros((bc, k + j + 1, k + j))
        gbar[:, :k, :k] = torch.diag_embed(scale)
        gbar[:, :k, k:] = cyc.bmat[:, :, :j]
        gbar[:, k:, k:] = hbar
        wv = hbar.new_zeros((bc, k + j + 1, k + j))
        wv[:, :, :k] = (w_rows.conj() @ cyc.w.mT) * scale[:, None, :]
        wv[:, k:, k:] = torch.eye(j + 1, j, dtype=dtype, device=hbar.device)
    try:
        choices = harmonic_ritz(gbar, wv, k_max, not dtype.is_complex)
    except RuntimeError:  # singular small problem (breakdown): recycle nothing this time
        empty = cyc.basis[:, :0]
        return empty, empty, empty
    count = min(p.shape[1] for p in choices)
    p = torch.stack([q[:, :count] for q in choices])  # (Bc, p, count)
    q, rr = torch.linalg.qr(gbar @ p)
    # C lands in the first rows of the next cycle's basis (see _room_of).
    room = w_rows.new_empty((bc, count + cyc.hbar.shape[2] + 1, w_rows.shape[2]))
    c_new = torch.matmul(q.mT, w_rows, out=room[:, :count])
    # Vhat P R^{-1}, the solve done on the small coefficients (P R^{-1})^T, not on the N columns.
    coefficients = torch.linalg.solve_triangular(rr.mT, p.mT, upper=False)  # (Bc, count, p)
    pz = coefficients[:, :, k:]
    u_new, w_new = pz @ cyc.zs(j), pz @ cyc.v(j)
    if k:
        pu = coefficients[:, :, :k] * scale[:, None, :]
        u_new.baddbmm_(pu, cyc.u)
        w_new.baddbmm_(pu, cyc.w)
    return u_new, w_new, c_new
