import math

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch

from datagen.core.fields import gaussian_random_field
from datagen.problems.darcy.physics import (
    DarcyOperator,
    assemble,
    laplace_solve,
    residuals,
    solve_direct,
)


def lognormal(seed: int, s: int) -> torch.Tensor:
    return torch.exp(gaussian_random_field([seed], s, 2.5, 7.0, "periodic"))[0]


@pytest.mark.parametrize("average", ["arithmetic", "harmonic"])
@pytest.mark.parametrize("s", [6, 33])
def test_matrix_free_equals_assembled(average, s):
    a = torch.stack([lognormal(i, s) for i in range(3)])
    a[1] = torch.where(a[1] > 1, 12.0, 3.0)  # a piecewise-constant member too
    op = DarcyOperator.from_coefficient(a, average)
    u = torch.randn(3, s - 2, s - 2, dtype=torch.float64)
    for k in range(3):
        matrix = assemble(a[k].numpy(), average)
        dense = matrix @ u[k].numpy().ravel()
        free = op(u)[k].numpy().ravel()
        assert np.linalg.norm(free - dense) <= 1e-12 * np.linalg.norm(dense)
        assert np.allclose(op.diagonal()[k].numpy().ravel(), matrix.diagonal(), rtol=1e-14)


def test_matrix_is_symmetric_positive_definite():
    a = lognormal(3, 24).numpy()
    matrix = assemble(a)
    assert abs(matrix - matrix.T).max() == 0.0
    smallest = spla.eigsh(matrix, k=1, sigma=0, which="LM", return_eigenvectors=False)[0]
    # lower bound: a_min * (2 pi^2) (the continuous Dirichlet eigenvalue scaled), roughly
    assert smallest > 0.5 * a.min() * 2 * math.pi**2
    np.linalg.cholesky(matrix.toarray())


def manufactured(s: int):
    """u = sin(pi x) sin(pi y), a = 1 + 0.5 sin(2 pi x) cos(3 pi y), f = -div(a grad u)."""
    x = np.linspace(0, 1, s)[:, None]
    y = np.linspace(0, 1, s)[None, :]
    pi = math.pi
    u = np.sin(pi * x) * np.sin(pi * y)
    a = 1 + 0.5 * np.sin(2 * pi * x) * np.cos(3 * pi * y)
    a_x = pi * np.cos(2 * pi * x) * np.cos(3 * pi * y)
    a_y = -1.5 * pi * np.sin(2 * pi * x) * np.sin(3 * pi * y)
    u_x = pi * np.cos(pi * x) * np.sin(pi * y)
    u_y = pi * np.sin(pi * x) * np.cos(pi * y)
    f = -(a_x * u_x + a_y * u_y) + 2 * pi**2 * a * u
    return a, f, u


@pytest.mark.parametrize("average", ["arithmetic", "harmonic"])
def test_second_order_convergence(average):
    errors = []
    for s in (17, 33, 65, 129):
        a, f, exact = manufactured(s)
        u, info = solve_direct(a, f, average)
        assert info.residual < 1e-12
        errors.append(np.abs(u - exact).max())
    ratios = [errors[i] / errors[i + 1] for i in range(3)]
    assert all(3.6 < r < 4.4 for r in ratios), ratios


def test_laplace_solve_inverts_the_dirichlet_laplacian():
    s = 20
    laplacian = assemble(np.ones((s, s)))
    r = np.random.default_rng(0).standard_normal((s - 2, s - 2))
    expected = spla.spsolve(laplacian.tocsc(), r.ravel()).reshape(r.shape)
    np.testing.assert_allclose(laplace_solve(r, 1 / (s - 1)), expected, rtol=1e-10, atol=1e-14)


def test_error_estimate_separates_rounding_from_real_errors():
    s = 129
    a = torch.where(gaussian_random_field([5], s, 2.0, 3.0, "neumann")[0] >= 0, 12.0, 3.0)
    f = np.ones((s, s))
    u, _ = solve_direct(a.numpy(), f)
    a_t, f_t = a[None], torch.from_numpy(f)[None]
    rel, est = residuals(a_t, f_t, torch.from_numpy(u)[None])
    assert rel[0] < 1e-12 and est[0] < 1e-12
    rel32, est32 = residuals(a_t, f_t, torch.from_numpy(u.astype(np.float32))[None])
    assert rel32[0] > 1e-5  # the plain residual is blind below this at float32 ...
    assert est32[0] < 2e-7  # ... the estimate is not
    x = np.linspace(0, 1, s)
    bump = np.outer(np.sin(np.pi * x), np.sin(3 * np.pi * x))
    for size in (1e-3, 1e-5):
        wrong = u + size * np.abs(u).max() * bump
        true_error = np.linalg.norm(wrong - u) / np.linalg.norm(u)
        _, est_wrong = residuals(a_t, f_t, torch.from_numpy(wrong)[None])
        assert true_error / 4 <= est_wrong[0] <= 4 * true_error  # contrast a_max / a_min = 4


def flux_form(op: DarcyOperator, u: torch.Tensor) -> torch.Tensor:
    """The reference: face fluxes on the zero-padded field, their divergence / h^2."""
    padded = torch.nn.functional.pad(u, (1, 1, 1, 1))
    flux_x = op.ax * (padded[..., 1:, 1:-1] - padded[..., :-1, 1:-1])
    flux_y = op.ay * (padded[..., 1:-1, 1:] - padded[..., 1:-1, :-1])
    out = flux_x[..., :-1, :] - flux_x[..., 1:, :] + flux_y[..., :-1] - flux_y[..., 1:]
    return out / op.h**2


def test_stencil_application_equals_the_flux_form():
    a = torch.stack([lognormal(i, 21) for i in range(3)])
    op = DarcyOperator.from_coefficient(a, "harmonic")
    u = torch.randn(3, 19, 19, dtype=torch.float64)
    ref = flux_form(op, u)
    assert float((op(u) - ref).norm() / ref.norm()) < 1e-12
    index = torch.tensor([2, 0])
    assert float((op.subset(index)(u[index]) - ref[index]).norm() / ref.norm()) < 1e-12
    one = op.subset(torch.tensor([1]))  # one operator applied to a batch of fields
    assert float((one(u) - flux_form(one, u)).norm() / ref.norm()) < 1e-12
    low = op.to(torch.float32)
    assert float((low(u.float()) - ref).norm() / ref.norm()) < 1e-5


def test_operator_runs_in_float32_and_batched():
    a = torch.stack([lognormal(i, 17) for i in range(4)]).float()
    op = DarcyOperator.from_coefficient(a)
    out = op(torch.ones(4, 15, 15))
    assert out.dtype == torch.float32 and out.shape == (4, 15, 15)
