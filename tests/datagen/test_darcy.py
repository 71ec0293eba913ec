import math

import numpy as np
import pytest
import scipy.sparse.linalg as spla
import torch

from datagen.darcy import DarcyOperator, assemble, residuals, solve_direct
from datagen.fields import gaussian_random_field


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
        abs_dense = abs(matrix) @ np.abs(u[k].numpy().ravel())
        np.testing.assert_allclose(op.abs_apply(u)[k].numpy().ravel(), abs_dense, rtol=1e-12)


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


def test_residuals_of_exact_solve_and_floor():
    a, f, _ = manufactured(33)
    u, _ = solve_direct(a, f)
    rel, floor = residuals(*(torch.from_numpy(t)[None] for t in (a, f, u)))
    assert float(rel[0]) < 1e-13
    u32 = torch.from_numpy(u.astype(np.float32))[None]
    rel32, floor32 = residuals(torch.from_numpy(a)[None], torch.from_numpy(f)[None], u32)
    assert 0 < float(rel32[0]) <= float(floor32[0])  # rounding alone stays under its bound
    rel_bad, _ = residuals(torch.from_numpy(a)[None], torch.from_numpy(f)[None], 1.01 * u32)
    assert float(rel_bad[0]) > 100 * float(floor32[0])


def test_operator_runs_in_float32_and_batched():
    a = torch.stack([lognormal(i, 17) for i in range(4)]).float()
    op = DarcyOperator.from_coefficient(a)
    out = op(torch.ones(4, 15, 15))
    assert out.dtype == torch.float32 and out.shape == (4, 15, 15)
