"""Batched GMRES(m) and GCRO-DR(m, k): agreement with dense solves, masking, recycling."""

import numpy as np
import pytest
import torch

from datagen.linalg.gcrodr import gcrodr, gmres


class Dense:
    """A batch of dense matrices (B, n, n) acting on (B, n) vectors."""

    def __init__(self, matrices: torch.Tensor) -> None:
        self.m = matrices

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        return (self.m @ v.reshape(v.shape[0], -1, 1)).reshape(v.shape)

    def subset(self, index: torch.Tensor) -> "Dense":
        return Dense(self.m[index])


def indefinite(batch: int, n: int, dtype: torch.dtype, seed: int = 0) -> torch.Tensor:
    """Nonsymmetric, indefinite matrices (B, n, n): :func:`clustered` with member-dependent
    shifts, plus an imaginary diagonal for complex dtypes."""
    gen = torch.Generator().manual_seed(seed + 100)
    out = []
    for i in range(batch):
        m = clustered(n, 0.005 * i, seed).to(dtype)
        if dtype.is_complex:
            m = m + 0.02j * torch.diag(torch.rand(n, generator=gen, dtype=torch.float64))
        out.append(m)
    return torch.stack(out)


def clustered(n: int, shift: float, seed: int = 0) -> torch.Tensor:
    """Eight small eigenvalues of both signs, the rest in [1, 3], a nonnormal perturbation."""
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    small = torch.tensor([-0.05, -0.03, 0.01, 0.02, 0.03, 0.04, -0.02, 0.015])
    values = torch.cat([small.double(), torch.linspace(1, 3, n - 8, dtype=torch.float64)])
    upper = torch.triu(torch.randn(n, n, generator=gen, dtype=torch.float64), 1)
    return q @ torch.diag(values + shift) @ q.T + 0.05 * upper / n**0.5


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
@pytest.mark.parametrize("recycle", [0, 8])
def test_solutions_match_dense_solves(dtype, recycle):
    matrices = indefinite(3, 150, dtype)
    rhs = torch.randn(3, 150, dtype=torch.float64).to(dtype)
    result = gcrodr(Dense(matrices), rhs, tol=1e-8, restart=30, recycle=recycle, maxiter=3000)
    assert bool(result.converged.all())
    for i in range(3):
        true = torch.linalg.vector_norm(rhs[i] - matrices[i] @ result.x[i])
        rel = float(true / torch.linalg.vector_norm(rhs[i]))
        assert rel <= 1e-8 and abs(rel - float(result.residual[i])) < 1e-12
        exact = np.linalg.solve(matrices[i].numpy(), rhs[i].numpy())
        err = np.abs(result.x[i].numpy() - exact).max() / np.abs(exact).max()
        assert err < 1e-5
    if recycle:
        assert result.recycle.u.shape[:2] == (3, 8) and result.recycle.u.dtype == dtype


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
@pytest.mark.parametrize("orthogonalization", ["cgs2", "cgs"])
def test_one_gmres_cycle_is_the_krylov_least_squares_minimiser(dtype, orthogonalization):
    """After m steps (one cycle) the iterate minimises ||b - A x|| over x in M^{-1} K_m(A M^{-1},
    b): the dense reference (QR of the explicit Krylov matrix, least squares) to 1e-10."""
    m, n = 8, 60
    matrices = indefinite(2, n, dtype)
    diag = torch.linspace(0.5, 2.0, n, dtype=torch.float64).to(dtype)
    precond = Dense(torch.diag(diag).expand(2, n, n).clone())
    rhs = torch.randn(2, n, dtype=torch.float64).to(dtype)
    result = gmres(
        Dense(matrices), rhs, None, precond, 1e-14, m, m, orthogonalization=orthogonalization
    )
    assert (result.iterations == m).all()
    for i in range(2):
        am = matrices[i] @ torch.diag(diag)
        columns = [rhs[i] / torch.linalg.vector_norm(rhs[i])]
        for _ in range(m - 1):
            v = am @ columns[-1]
            columns.append(v / torch.linalg.vector_norm(v))
        q, _ = torch.linalg.qr(torch.stack(columns, 1))
        y = torch.linalg.lstsq(am @ q, rhs[i][:, None]).solution[:, 0]
        reference = torch.diag(diag) @ q @ y
        norm = torch.linalg.vector_norm
        assert float(norm(result.x[i] - reference) / norm(reference)) < 1e-10


def test_orthogonalizations_agree_and_bad_names_are_refused():
    matrices = indefinite(2, 120, torch.float64)
    rhs = torch.randn(2, 120, dtype=torch.float64)
    runs = [
        gcrodr(Dense(matrices), rhs, tol=1e-10, restart=20, recycle=6, orthogonalization=o)
        for o in ("cgs2", "cgs")
    ]
    assert all(bool(r.converged.all()) for r in runs)
    assert torch.allclose(runs[0].x, runs[1].x, rtol=0, atol=1e-7 * float(runs[0].x.abs().max()))
    with pytest.raises(ValueError, match="orthogonalization"):
        gmres(Dense(matrices), rhs, orthogonalization="mgs")


def test_members_are_independent_of_their_batch():
    matrices = indefinite(4, 120, torch.complex128, seed=1)
    rhs = torch.randn(4, 120, dtype=torch.complex128)
    rhs[1] *= 1e-4  # another scale
    batched = gcrodr(Dense(matrices), rhs, tol=1e-9, restart=20, recycle=5, maxiter=2000)
    assert len(set(batched.iterations.tolist())) > 1
    for i in range(4):
        alone = gcrodr(
            Dense(matrices[i : i + 1]),
            rhs[i : i + 1],
            tol=1e-9,
            restart=20,
            recycle=5,
            maxiter=2000,
        )
        assert int(alone.iterations[0]) == int(batched.iterations[i])
        torch.testing.assert_close(alone.x[0], batched.x[i], rtol=1e-10, atol=1e-12)


def test_recycling_cuts_iterations_along_a_slowly_varying_sequence():
    """Measured (n = 400, tol 1e-10): GMRES(20) 298, 316, 1620, 2959 iterations; GCRO-DR(20,
    10) 52 for the first system, 18 for each following one with the recycled space."""
    rhs = torch.randn(1, 400, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    space, plain, recycled = None, [], []
    for step in range(4):
        op = Dense(clustered(400, 0.01 * step)[None])
        plain.append(int(gmres(op, rhs, tol=1e-10, restart=20, maxiter=3000).iterations[0]))
        result = gcrodr(op, rhs, tol=1e-10, restart=20, recycle=10, maxiter=3000, space=space)
        assert bool(result.converged.all())
        space = result.recycle
        recycled.append(int(result.iterations[0]))
    assert min(plain) > 250 and recycled[0] < 80
    assert max(recycled[1:]) <= 25


def test_identical_systems_with_warm_start_need_no_iterations():
    matrices = indefinite(2, 100, torch.complex128)
    rhs = torch.randn(2, 100, dtype=torch.complex128)
    first = gcrodr(Dense(matrices), rhs, tol=1e-9, restart=20, recycle=6, maxiter=2000)
    again = gcrodr(
        Dense(matrices), rhs, x0=first.x, tol=1e-9, restart=20, recycle=6, space=first.recycle
    )
    assert again.iterations.tolist() == [0, 0] and bool(again.converged.all())
    zero = gmres(Dense(matrices), torch.zeros_like(rhs))
    assert zero.iterations.tolist() == [0, 0] and float(zero.x.abs().max()) == 0.0


def test_iteration_cap_reports_unconverged_members():
    matrices = indefinite(2, 150, torch.float64)
    rhs = torch.randn(2, 150, dtype=torch.float64)
    capped = gcrodr(Dense(matrices), rhs, tol=1e-12, restart=10, recycle=4, maxiter=15)
    assert capped.iterations.tolist() == [15, 15] and not bool(capped.converged.any())
    assert float(capped.residual.min()) > 1e-12
    with pytest.raises(ValueError, match="tol must be positive"):
        gmres(Dense(matrices), rhs, tol=0.0)


def darcy_sequence(count: int, n: int = 14, seed: int = 5):
    """``count`` Jacobi-preconditioned float64 Darcy systems of one slowly varying family."""
    from datagen.linalg.krylov import Jacobi
    from datagen.problems.darcy.physics import DarcyOperator

    gen = torch.Generator().manual_seed(seed)
    base = torch.randn(1, n + 2, n + 2, generator=gen, dtype=torch.float64)
    out = []
    for i in range(count):
        a = torch.exp(base + 0.05 * i * torch.randn(base.shape, generator=gen).double())
        op = DarcyOperator.from_coefficient(a)
        out.append((op, Jacobi(op.diagonal()), torch.ones(1, n, n, dtype=torch.float64)))
    return out


@pytest.mark.parametrize("recycle", [0, 6])
def test_float32_cycles_reach_the_float64_tolerance(recycle):
    """``cycle_dtype=float32`` on float64 Darcy systems along a sequence: every solve reaches
    the tolerance on its float64 true residual (recomputed here), with iterations within 15%
    of the float64 cycles', and the recycle space comes back in float32. ``cycle_dtype`` equal
    to the systems' dtype is the default path, bit for bit."""
    tol = 1e-9
    outcomes = {}
    for cycles in (None, torch.float32, torch.float64):
        space, rows = None, []
        for op, pre, rhs in darcy_sequence(4):
            result = gcrodr(op, rhs, None, pre, tol, 12, recycle, 5000, space, "cgs", cycles)
            true = float((rhs - op(result.x)).norm() / rhs.norm())
            assert bool(result.converged.all()) and true <= tol * 1.01, (cycles, true)
            space = result.recycle
            rows.append(result)
        if recycle:
            assert space.u.dtype == (torch.float32 if cycles == torch.float32 else torch.float64)
        outcomes[cycles] = rows
    for low, full in zip(outcomes[torch.float32], outcomes[None], strict=True):
        steps, reference = int(low.iterations[0]), int(full.iterations[0])
        assert abs(steps - reference) <= 0.15 * reference
        assert low.x.dtype == torch.float64
    for same, full in zip(outcomes[torch.float64], outcomes[None], strict=True):
        assert torch.equal(same.x, full.x) and torch.equal(same.iterations, full.iterations)


def test_bad_cycle_dtypes_are_refused():
    """A complex or integer ``cycle_dtype`` for real systems, or an operator that cannot be
    converted, is one ValueError naming what is wrong."""
    op, pre, rhs = darcy_sequence(1)[0]
    for bad in (torch.complex64, torch.int32):
        with pytest.raises(ValueError, match="cycle_dtype must be a real floating dtype"):
            gcrodr(op, rhs, None, pre, 1e-8, 10, 0, 100, None, "cgs", bad)
    dense = Dense(torch.eye(4, dtype=torch.float64)[None])
    with pytest.raises(ValueError, match=r"needs an operator with \.to\(dtype\)"):
        gcrodr(dense, torch.ones(1, 4, dtype=torch.float64), cycle_dtype=torch.float32)
