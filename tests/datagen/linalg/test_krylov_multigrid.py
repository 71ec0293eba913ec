import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from datagen.core.fields import gaussian_random_field, sample_seed
from datagen.linalg.krylov import Jacobi, pcg
from datagen.linalg.multigrid import (
    Multigrid,
    OperatorInterpolation,
    StencilOperator,
    convergence_factor,
    dense_matrix,
    footprint_planes,
    galerkin,
    galerkin_stencil,
    probe_stencil,
    prolong,
    restrict,
    stencil_entries,
)
from datagen.problems.darcy.physics import DarcyOperator, assemble


def coefficients(count: int, s: int, family: str = "piecewise") -> torch.Tensor:
    seeds = [sample_seed(9, 0, i) for i in range(count)]
    if family == "piecewise":
        field = gaussian_random_field(seeds, s, 2.0, 3.0, "neumann")
        return torch.where(field >= 0, 12.0, 3.0).double()
    return torch.exp(gaussian_random_field(seeds, s, 2.5, 7.0, "periodic"))


def prolongation_matrix(n: int) -> sp.csr_matrix:
    """P (n*n, nc*nc) built column by column from `prolong`: an independent assembly."""
    nc = n // 2
    cols = []
    for k in range(nc * nc):
        e = torch.zeros(1, nc, nc, dtype=torch.float64)
        e.view(-1)[k] = 1
        cols.append(prolong(e, (n, n)).reshape(-1).numpy())
    return sp.csr_matrix(np.stack(cols, axis=1))


@pytest.mark.parametrize("n", [7, 8, 15, 16])
def test_restriction_is_the_transpose_of_prolongation(n):
    c = torch.randn(3, n // 2, n // 2, dtype=torch.float64)
    f = torch.randn(3, n, n, dtype=torch.float64)
    lhs = (prolong(c, (n, n)) * f).sum()
    rhs = (c * restrict(f)).sum()
    assert abs(float(lhs - rhs)) < 1e-12 * float(f.abs().sum())
    # interpolation reproduces constants except next to the (zero) boundary
    fine = prolong(torch.ones(1, n // 2, n // 2, dtype=torch.float64), (n, n))[0]
    assert torch.equal(fine[1:-1, 1:-1], torch.ones(n - 2, n - 2, dtype=torch.float64))
    assert float(fine[0, 0]) == 0.25


@pytest.mark.parametrize("s", [11, 12, 19])
def test_galerkin_by_probing_equals_assembled_triple_product(s):
    a = coefficients(2, s)
    n = s - 2
    op = DarcyOperator.from_coefficient(a)
    coarse = galerkin(op, 2, (n, n), a)
    P = prolongation_matrix(n)
    for k in range(2):
        expected = (P.T @ assemble(a[k].numpy()) @ P).toarray()
        got = dense_matrix(coarse.subset(torch.tensor([k])), 1, (n // 2, n // 2), a)[0].numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-9 * np.abs(expected).max())
    # and one more level down (9-point input)
    coarser = galerkin(coarse, 2, (n // 2, n // 2), a)
    P2 = prolongation_matrix(n // 2)
    expected = (P2.T @ (P.T @ assemble(a[1].numpy()) @ P) @ P2).toarray()
    got = dense_matrix(coarser.subset(torch.tensor([1])), 1, (n // 4, n // 4), a)[0].numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-9 * np.abs(expected).max())


def interpolation_matrix(interp: OperatorInterpolation, k: int, n: int) -> sp.csr_matrix:
    """P (n*n, nc*nc) of member k, column by column from ``interp.prolong``."""
    nc = n // 2
    one = interp.subset(torch.tensor([k]))
    cols = []
    for c in range(nc * nc):
        e = torch.zeros(1, nc, nc, dtype=torch.float64)
        e.view(-1)[c] = 1
        cols.append(one.prolong(e, (n, n)).reshape(-1).numpy())
    return sp.csr_matrix(np.stack(cols, axis=1))


@pytest.mark.parametrize("s", [11, 12, 19, 20])
def test_direct_galerkin_equals_the_assembled_product_and_probing(s):
    """The term-by-term P^T A P (the set-up's path) against P^T A P assembled with SciPy and
    against probing, with operator-dependent P, on odd and even grids, 5- and 9-point A."""
    family = "piecewise" if s % 2 else "lognormal"
    a = coefficients(2, s, family)
    n = s - 2
    op = DarcyOperator.from_coefficient(a)
    planes = footprint_planes(op.stencil_entries(), (n // 2, n // 2))
    interp = OperatorInterpolation.from_planes(planes, (n, n))
    torch.testing.assert_close(
        interp.weights, OperatorInterpolation.from_stencil(op.stencil()).weights
    )
    coarse = galerkin_stencil(planes, interp.weights)
    probed = galerkin(op, 2, (n, n), a, transfers=(interp.prolong, interp.restrict)).stencil
    torch.testing.assert_close(coarse, probed, rtol=1e-12, atol=1e-12 * float(probed.abs().max()))
    for k in range(2):
        P = interpolation_matrix(interp, k, n)
        expected = (P.T @ assemble(a[k].numpy()) @ P).toarray()
        got = StencilOperator(coarse).subset(torch.tensor([k]))
        got = dense_matrix(got, 1, (n // 2, n // 2), a)[0].numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())
    # one level down: a 9-point A
    nc = n // 2
    interp2 = OperatorInterpolation.from_stencil(coarse)
    planes2 = footprint_planes(stencil_entries(coarse), (nc // 2, nc // 2))
    coarser = galerkin_stencil(planes2, interp2.weights)
    probed2 = galerkin(
        StencilOperator(coarse), 2, (nc, nc), a, transfers=(interp2.prolong, interp2.restrict)
    ).stencil
    torch.testing.assert_close(
        coarser, probed2, rtol=1e-12, atol=1e-12 * float(probed2.abs().max())
    )


def test_stencil_operator_equals_the_padded_sum():
    """The in-place application against the reference sum over a zero-padded field, 1e-12."""
    gen = torch.Generator().manual_seed(3)
    stencil = torch.randn(2, 3, 3, 9, 12, generator=gen, dtype=torch.float64)
    u = torch.randn(2, 9, 12, generator=gen, dtype=torch.float64)
    padded = torch.nn.functional.pad(u, (1, 1, 1, 1))
    ref = sum(
        stencil[:, a, b] * padded[:, a : a + 9, b : b + 12] for a in range(3) for b in range(3)
    )
    out = StencilOperator(stencil)(u)
    assert float((out - ref).norm() / ref.norm()) < 1e-12


@pytest.mark.parametrize("n", [15, 16])
def test_fused_residuals_and_in_place_prolongation_equal_the_plain_ones(n):
    """The cycle's fused ``f - A u`` (Darcy 5-point, 9-point stencil) and ``x += P c``
    against the unfused expressions, 1e-12 in float64, odd and even grids."""
    gen = torch.Generator().manual_seed(5)
    a = coefficients(2, n + 2, "lognormal")
    darcy = DarcyOperator.from_coefficient(a)
    nine = StencilOperator(torch.randn(2, 3, 3, n, n, generator=gen, dtype=torch.float64))
    u, f = (torch.randn(2, n, n, generator=gen, dtype=torch.float64) for _ in range(2))
    for op in (darcy, nine):
        expected = f - op(u)
        assert float((op.residual(f, u) - expected).norm() / expected.norm()) < 1e-12
    interp = OperatorInterpolation.from_stencil(darcy.stencil())
    coarse = torch.randn(2, n // 2, n // 2, generator=gen, dtype=torch.float64)
    expected = u + interp.prolong(coarse, (n, n))
    got = interp.add_prolonged(u.clone(), coarse)
    assert float((got - expected).norm() / expected.norm()) < 1e-12


def test_vcycle_is_symmetric_positive_definite():
    a = coefficients(2, 33)
    n = 31
    mg = Multigrid(DarcyOperator.from_coefficient(a), (n, n), 2, a, coarsest=3)
    assert len(mg.levels) >= 3
    matrix = dense_matrix(mg, 2, (n, n), a)
    assert torch.allclose(matrix, matrix.mT, atol=1e-12 * float(matrix.abs().max()))
    assert float(torch.linalg.eigvalsh(matrix).min()) > 0


@pytest.mark.parametrize("n", [15, 16])
def test_operator_interpolation_is_bilinear_for_a_constant_coefficient_and_transposes(n):
    op = DarcyOperator.from_coefficient(torch.ones(2, n + 2, n + 2, dtype=torch.float64))
    like = torch.zeros(2, n, n, dtype=torch.float64)
    interp = OperatorInterpolation.from_stencil(probe_stencil(op, 2, (n, n), like))
    coarse = torch.randn(2, n // 2, n // 2, dtype=torch.float64)
    if n % 2:  # even n: where the last coarse row meets a boundary, 1/3 instead of 1/2
        torch.testing.assert_close(interp.prolong(coarse, (n, n)), prolong(coarse, (n, n)))
    # R = P^T for coefficient-dependent weights as well
    a = coefficients(2, n + 2)
    op = DarcyOperator.from_coefficient(a)
    interp = OperatorInterpolation.from_stencil(probe_stencil(op, 2, (n, n), like))
    fine = torch.randn(2, n, n, dtype=torch.float64)
    lhs = (interp.prolong(coarse, (n, n)) * fine).sum((1, 2))
    rhs = (coarse * interp.restrict(fine)).sum((1, 2))
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12)
    assert float(interp.weights.min()) >= 0 and float(interp.weights.max()) <= 1


def test_darcy_stencil_equals_probing():
    a = coefficients(2, 18)
    op = DarcyOperator.from_coefficient(a)
    probed = probe_stencil(op, 2, (16, 16), a)
    torch.testing.assert_close(op.stencil(), probed, rtol=1e-13, atol=1e-9)
    # its five offsets, the set-up's input, are the probed stencil's non-zero ones
    entries = op.stencil_entries()
    assert (
        sorted(entries)
        == sorted(stencil_entries(probed))
        == [(-1, 0), (0, -1), (0, 0), (0, 1), (1, 0)]
    )
    for (di, dj), entry in entries.items():
        torch.testing.assert_close(entry, probed[:, 1 + di, 1 + dj], rtol=1e-13, atol=1e-9)


def vcycle_factor(s: int, interpolation: str, family: str = "piecewise") -> torch.Tensor:
    """Energy-norm error reduction per V-cycle (B,) on 8 samples: the cycle as a solver."""
    a = coefficients(8, s, family)
    n = s - 2
    op = DarcyOperator.from_coefficient(a)
    mg = Multigrid(op, (n, n), 8, a, interpolation=interpolation)
    start = torch.randn(8, n, n, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    return convergence_factor(mg, op, start)


def test_vcycle_convergence_factor_is_small_and_resolution_independent():
    """Piecewise-constant Darcy (jumps 12 : 3): measured 0.13-0.19 from 33^2 to 129^2 with
    operator-dependent interpolation; bilinear interpolation gives 0.16-0.27."""
    factors = {s: vcycle_factor(s, "operator") for s in (33, 65, 129)}
    assert all(float(f.max()) < 0.2 for f in factors.values()), factors
    assert float(factors[129].mean()) < 1.25 * float(factors[33].mean())
    assert float(vcycle_factor(129, "bilinear").max()) > 0.2  # what the operator weights fix
    assert float(vcycle_factor(65, "operator", "lognormal").max()) < 0.15


@pytest.mark.parametrize("family", ["piecewise", "lognormal"])
@pytest.mark.parametrize("s", [33, 64, 129])
def test_multigrid_pcg_matches_direct_solves_in_few_iterations(family, s):
    a = coefficients(4, s, family)
    n = s - 2
    op = DarcyOperator.from_coefficient(a)
    b = torch.ones(4, n, n, dtype=torch.float64)
    result = pcg(op, b, preconditioner=Multigrid(op, (n, n), 4, b), tol=1e-10)
    assert bool(result.converged.all()) and float(result.residual.max()) <= 1e-10
    assert int(result.iterations.max()) <= 14  # h-independent: 8-12 from 33^2 to 129^2
    for k in (0, 3):
        matrix = assemble(a[k].numpy())
        exact = spla.spsolve(matrix.tocsc(), np.ones(n * n))
        true_res = np.linalg.norm(1 - matrix @ result.x[k].numpy().ravel()) / n
        assert abs(true_res - float(result.residual[k])) < 1e-12
        err = np.abs(result.x[k].numpy().ravel() - exact).max() / np.abs(exact).max()
        assert err < 1e-7


def test_members_converge_independently_and_match_single_solves():
    a = coefficients(5, 33)
    op = DarcyOperator.from_coefficient(a)
    b = torch.randn(5, 31, 31, dtype=torch.float64)
    b[2] *= 1e-3  # different scales and difficulties
    batched = pcg(op, b, preconditioner=Jacobi(op.diagonal()), tol=1e-9)
    assert len(set(batched.iterations.tolist())) > 1
    for k in range(5):
        idx = torch.tensor([k])
        alone = pcg(
            op.subset(idx), b[idx], preconditioner=Jacobi(op.subset(idx).diagonal()), tol=1e-9
        )
        assert int(alone.iterations[0]) == int(batched.iterations[k])
        torch.testing.assert_close(alone.x[0], batched.x[k], rtol=1e-12, atol=1e-14)


def test_warm_start_and_iteration_cap():
    a = coefficients(2, 33)
    op = DarcyOperator.from_coefficient(a)
    b = torch.ones(2, 31, 31, dtype=torch.float64)
    solved = pcg(op, b, tol=1e-10)
    again = pcg(op, b, x0=solved.x, tol=1e-9)
    assert again.iterations.tolist() == [0, 0] and bool(again.converged.all())
    capped = pcg(op, b, tol=1e-12, maxiter=5)
    assert capped.iterations.tolist() == [5, 5] and not bool(capped.converged.any())
    assert float(capped.residual.min()) > 1e-12
    zero = pcg(op, torch.zeros_like(b), tol=1e-8)  # zero right-hand side: x = 0 at once
    assert zero.iterations.tolist() == [0, 0] and float(zero.x.abs().max()) == 0.0


def test_in_place_updates_leave_the_callers_tensors_alone_and_match_scipy():
    """CG updates ``x`` and ``r`` in place: unpreconditioned (where ``z`` is ``r``) and from a
    warm start it still equals SciPy's direct solve, and the start and right-hand side are
    untouched."""
    a = coefficients(2, 19)
    op = DarcyOperator.from_coefficient(a)
    b = torch.rand(2, 17, 17, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    start = 0.5 * torch.ones_like(b)
    kept_b, kept_start = b.clone(), start.clone()
    for x0 in (None, start):
        got = pcg(op, b, x0=x0, tol=1e-12, maxiter=2000)
        # the same iterations as with an identity preconditioner that returns a new tensor
        identity = pcg(op, b, x0=x0, preconditioner=Jacobi(torch.ones_like(b)), tol=1e-12)
        assert bool(got.converged.all()) and torch.equal(got.iterations, identity.iterations)
        for k in range(2):
            expected = spla.spsolve(assemble(a[k].numpy()).tocsc(), b[k].numpy().ravel())
            np.testing.assert_allclose(got.x[k].numpy().ravel(), expected, rtol=1e-9)
    assert torch.equal(b, kept_b) and torch.equal(start, kept_start)


def test_float32_vcycle_preconditions_float64_cg():
    a = coefficients(4, 129)
    op = DarcyOperator.from_coefficient(a)
    b = torch.ones(4, 127, 127, dtype=torch.float64)
    full = pcg(op, b, preconditioner=Multigrid(op, (127, 127), 4, b), tol=1e-10)
    mixed = pcg(
        op, b, preconditioner=Multigrid(op, (127, 127), 4, b, dtype=torch.float32), tol=1e-10
    )
    assert bool(mixed.converged.all()) and float(mixed.residual.max()) <= 1e-10
    assert int(mixed.iterations.max()) <= int(full.iterations.max()) + 1
    assert mixed.x.dtype == torch.float64
    # Built in float32 too: the same cycle to float32 rounding, the same iterations.
    light = Multigrid(op, (127, 127), 4, b, dtype=torch.float32, setup_dtype=torch.float32)
    heavy = Multigrid(op, (127, 127), 4, b, dtype=torch.float32)
    assert light.levels[1].operator.stencil.dtype == torch.float32
    z_light, z_heavy = light(b), heavy(b)
    assert float((z_light - z_heavy).norm() / z_heavy.norm()) < 1e-5
    built = pcg(op, b, preconditioner=light, tol=1e-10)
    assert bool(built.converged.all()) and float(built.residual.max()) <= 1e-10
    assert built.iterations.tolist() == mixed.iterations.tolist()


def smallest_eigenvectors(a: torch.Tensor, k: int):
    matrix = assemble(a.numpy())
    values, vectors = spla.eigsh(matrix, k=k, sigma=0, which="LM")
    n = a.shape[-1] - 2
    return values, torch.from_numpy(vectors.T.copy()).reshape(1, k, n, n)


def test_ritz_vectors_recover_an_invariant_subspace():
    from datagen.linalg.krylov import ritz_vectors

    a = coefficients(1, 24, "lognormal")[0]
    values, vectors = smallest_eigenvectors(a, 6)
    op = DarcyOperator.from_coefficient(a[None])
    mixing = torch.randn(6, 6, dtype=torch.float64)
    basis = mixing @ vectors[0].flatten(1)  # the same span, scrambled
    applied = mixing @ torch.stack([op(v[None])[0] for v in vectors[0]]).flatten(1)
    u, au = ritz_vectors(basis, applied, 3)
    rayleigh = (u * au).sum(dim=1)
    np.testing.assert_allclose(rayleigh.numpy(), np.sort(values)[:3], rtol=1e-10)
    torch.testing.assert_close(u @ u.T, torch.eye(3, dtype=torch.float64), atol=1e-10, rtol=0)


def test_deflation_with_exact_eigenvectors_cuts_iterations():
    a = coefficients(1, 65, "lognormal")
    op = DarcyOperator.from_coefficient(a)
    b = torch.ones(1, 63, 63, dtype=torch.float64)
    plain = pcg(op, b, tol=1e-9, maxiter=5000)
    _, w = smallest_eigenvectors(a[0], 10)
    deflated = pcg(op, b, tol=1e-9, maxiter=5000, recycle=w)
    assert bool(deflated.converged.all()) and float(deflated.residual[0]) <= 1e-9
    assert int(deflated.iterations[0]) < 0.6 * int(plain.iterations[0])
    torch.testing.assert_close(deflated.x, plain.x, rtol=1e-7, atol=1e-7 * float(plain.x.max()))


def test_recycled_cg_along_a_chain_of_similar_systems():
    """Ritz vectors of one system deflate the next: SKR's recycling, for SPD systems."""
    a = coefficients(4, 65, "piecewise")
    b = torch.ones(1, 63, 63, dtype=torch.float64)
    recycle, plain_its, recycled_its = None, [], []
    for k in range(4):
        op = DarcyOperator.from_coefficient(a[k : k + 1])
        jacobi = Jacobi(op.diagonal())
        plain_its.append(int(pcg(op, b, preconditioner=jacobi, tol=1e-8).iterations[0]))
        result = pcg(op, b, preconditioner=jacobi, tol=1e-8, recycle=recycle, ritz=10)
        assert bool(result.converged.all())
        assert result.recycle.shape == (1, 10, 63, 63)
        gram = result.recycle.flatten(2) @ result.recycle.flatten(2).mT
        torch.testing.assert_close(gram[0], torch.eye(10, dtype=torch.float64), atol=1e-8, rtol=0)
        recycle = result.recycle
        recycled_its.append(int(result.iterations[0]))
    assert recycled_its[0] == plain_its[0]  # nothing to recycle for the first system
    assert sum(recycled_its[1:]) < 0.75 * sum(plain_its[1:])


@pytest.mark.parametrize("residue", [0.0, 1.0, -3.0])
def test_a_collapsed_coupling_that_cancels_to_rounding_counts_as_zero(residue):
    """A fine node whose couplings on one side cancel (as on coarse Galerkin levels, where such
    sums are rounding residues) gets the weight of an exact zero there, whatever the residue's
    sign and size in units of the last place; before, the ratio of two residues was taken."""
    n = 7
    stencil = torch.zeros(1, 3, 3, n, n, dtype=torch.float64)
    stencil[:, 1, 1] = 10.0
    for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        stencil[:, 1 + di, 1 + dj] = -1.0
    c = 1.0 / 3.0
    # fine node (2, 3) = footprint position (0, 1) of coarse node (1, 1): its minus-side line
    stencil[0, 0, 0, 2, 3], stencil[0, 0, 1, 2, 3] = -c, c * (1 + residue * 2.0**-52)
    weights = OperatorInterpolation.from_stencil(stencil).weights
    toward, across = (float(stencil[0, k, :, 2, 3].sum()) for k in (2, 1))
    assert float(weights[0, 0, 1, 1, 1]) == pytest.approx(-toward / across, rel=1e-12)
