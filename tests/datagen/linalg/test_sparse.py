"""Batched sparse operators and SKR for arbitrary sequences of sparse systems."""

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

import datagen.linalg.sparse
from datagen.core.fields import gaussian_random_field, sample_seed
from datagen.linalg.sparse import SparseBatch, solve_sparse_systems
from datagen.problems.darcy.physics import assemble


def convection_diffusion(m: int, vx: float, vy: float) -> sp.csr_matrix:
    """-Laplace u + v . grad u on an m x m interior grid, central differences (nonsymmetric)."""
    h, e, eye = 1.0 / (m + 1), np.ones(m), sp.identity(m)
    d2 = sp.diags([-e[:-1], 2 * e, -e[:-1]], [-1, 0, 1]) / h**2
    d1 = sp.diags([-e[:-1], e[:-1]], [-1, 1]) / (2 * h)
    return (
        sp.kron(d2, eye) + sp.kron(eye, d2) + vx * sp.kron(d1, eye) + vy * sp.kron(eye, d1)
    ).tocsr()


@pytest.fixture(scope="module")
def nonsymmetric():
    rng = np.random.default_rng(0)
    matrices = [convection_diffusion(12, *v) for v in rng.uniform(5, 15, (12, 2))]
    return matrices, rng.standard_normal((12, 144))


@pytest.fixture(scope="module")
def darcy_spd():
    """Darcy matrices of lognormal coefficients that vary a little around a common field."""
    seeds = [sample_seed(1, 0, i) for i in range(13)]
    g = gaussian_random_field(seeds, 17, 2.5, 7.0, "periodic").numpy()
    matrices = [assemble(np.exp(g[0] + 0.2 * gi)) for gi in g[1:]]
    return matrices, np.ones((12, 225))


def reference(matrices, rhs):
    return np.stack([spla.spsolve(m.tocsc(), b) for m, b in zip(matrices, rhs, strict=True)])


def relative_residuals(matrices, rhs, x):
    return np.array(
        [
            np.linalg.norm(b - m @ xi) / np.linalg.norm(b)
            for m, b, xi in zip(matrices, rhs, x, strict=True)
        ]
    )


def test_sparse_batch_applies_the_matrices_on_the_union_pattern():
    rng = np.random.default_rng(1)
    real = [sp.random(30, 30, density=0.1, random_state=i, format="csr") for i in range(4)]
    complex_ = [
        m + 1j * sp.random(30, 30, density=0.05, random_state=9 + i) for i, m in enumerate(real)
    ]
    for matrices in (real, complex_):
        batch = SparseBatch.from_scipy(matrices)
        x = rng.standard_normal((4, 30)) + (
            1j * rng.standard_normal((4, 30)) if matrices is complex_ else 0
        )
        y = batch(torch.from_numpy(x).to(batch.values.dtype)).numpy()
        expected = np.stack([m @ xi for m, xi in zip(matrices, x, strict=True)])
        np.testing.assert_allclose(y, expected, rtol=1e-13, atol=1e-13)
        diagonal = np.stack([m.diagonal() for m in matrices])
        np.testing.assert_allclose(batch.diagonal().numpy(), diagonal, atol=0)
        assert batch.subset(torch.tensor([2])).values.shape[0] == 1


@pytest.mark.parametrize("method", ["skr", "gmres", "direct"])
def test_nonsymmetric_sequence_agrees_with_superlu(method, nonsymmetric):
    matrices, rhs = nonsymmetric
    result = solve_sparse_systems(matrices, rhs, method=method, chains=3, restart=30)
    assert relative_residuals(matrices, rhs, result.x).max() <= 1e-8
    exact = reference(matrices, rhs)
    assert np.abs(result.x - exact).max() <= 1e-6 * np.abs(exact).max()
    names = {"skr": "skr", "gmres": "gmres", "direct": "direct-superlu"}
    assert {r.method for r in result.info} == {names[method]}
    assert sorted(result.order.tolist()) == list(range(12))


@pytest.mark.parametrize("method", ["skr", "cg"])
def test_spd_sequence_agrees_with_superlu(method, darcy_spd):
    matrices, rhs = darcy_spd
    result = solve_sparse_systems(matrices, rhs, method=method, chains=2)
    assert relative_residuals(matrices, rhs, result.x).max() <= 1e-8
    exact = reference(matrices, rhs)
    assert np.abs(result.x - exact).max() <= 1e-6 * np.abs(exact).max()


def test_recycling_cuts_iterations(nonsymmetric, darcy_spd):
    """After each chain's first system, SKR needs well under the iterations of the
    non-recycled method from zero (measured, means: GCRO-DR(30, 10) 30 vs GMRES(30) 46 on the
    convection-diffusion chain; recycled CG 27 vs CG 54 on the Darcy chain)."""
    for (matrices, rhs), plain_method in ((nonsymmetric, "gmres"), (darcy_spd, "cg")):
        plain = solve_sparse_systems(matrices, rhs, method=plain_method, restart=30)
        skr = solve_sparse_systems(matrices, rhs, method="skr", chains=2, restart=30)
        heads = {int(skr.order[0]), int(skr.order[6])}
        later = [r.iterations for i, r in enumerate(skr.info) if i not in heads]
        assert np.mean(later) < 0.75 * np.mean([r.iterations for r in plain.info])


def test_identical_matrices_are_factored_once(nonsymmetric, monkeypatch):
    matrices, rhs = nonsymmetric
    calls = []
    real_splu = spla.splu
    monkeypatch.setattr(
        datagen.linalg.sparse.spla, "splu", lambda a: calls.append(1) or real_splu(a)
    )
    same = [matrices[0].copy() for _ in range(12)]
    result = solve_sparse_systems(same, rhs, method="skr")
    assert len(calls) == 1 and {r.method for r in result.info} == {"direct-shared"}
    np.testing.assert_allclose(result.x, reference(same, rhs), rtol=1e-10, atol=1e-12)


def test_unconverged_systems_fall_back_to_superlu(nonsymmetric):
    matrices, rhs = nonsymmetric
    result = solve_sparse_systems(matrices[:3], rhs[:3], method="gmres", maxiter=3, restart=3)
    assert {r.method for r in result.info} == {"direct-fallback"}
    assert all(r.iterations == 3 and r.residual < 1e-12 for r in result.info)


BAD = [
    (dict(method="lu"), "unknown method 'lu'; allowed: auto, skr, gmres, cg, direct"),
    (dict(tol=0.0), "tol must be positive"),
    (dict(rhs=np.ones((12, 5))), "rhs has shape (12, 5); expected (12, 144)"),
    (dict(rhs=np.full((12, 144), np.nan)), "rhs has NaN or inf"),
    (dict(matrices=[sp.identity(144)] * 11 + [sp.identity(3)]), "matrix 11 has shape (3, 3)"),
    (dict(matrices=[sp.csr_matrix(np.full((144, 144), np.inf))] * 12), "NaN or inf entries"),
]


@pytest.mark.parametrize("change,message", BAD)
def test_bad_input_is_named(change, message, nonsymmetric):
    matrices, rhs = nonsymmetric
    args = {"matrices": matrices, "rhs": rhs, **change}
    with pytest.raises(ValueError, match=None) as error:
        solve_sparse_systems(**args)
    assert message in str(error.value) and "\n" not in str(error.value)
