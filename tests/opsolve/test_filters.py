"""The classical filters against closed-form references: the Kalman update, the BLUE."""

import numpy as np
import torch

from opsolve.filters import (
    enkf_analysis,
    gaspari_cohn,
    grid_coordinates,
    oi_analysis,
    periodic_distance,
    run_enkf,
)


def test_gaspari_cohn_is_a_compact_continuous_correlation():
    r = torch.linspace(0, 3, 3001, dtype=torch.float64)
    rho = gaspari_cohn(r, 1.0)
    assert rho[0] == 1.0 and (rho[r >= 2] == 0).all()
    assert (rho.diff() <= 1e-15).all()  # decreasing
    assert float(rho.diff().abs().max()) < 2e-3  # continuous (steps of 1e-3)
    one = torch.tensor([1.0 - 1e-12, 1.0 + 1e-12], dtype=torch.float64)
    left, right = gaspari_cohn(one, 1.0)
    assert abs(float(left - right)) < 1e-10 and abs(float(left) - 5 / 24) < 1e-10


def test_periodic_distance_wraps_around():
    coords = grid_coordinates((10, 6))
    d = periodic_distance(coords, torch.tensor([0]), (10, 6))[:, 0].reshape(10, 6)
    assert d[9, 0] == 1.0 and d[0, 5] == 1.0 and d[5, 3] == np.hypot(5, 3)


def test_optimal_interpolation_is_the_blue():
    g = torch.Generator().manual_seed(0)
    n, nodes = 12, torch.tensor([1, 4, 9])
    a = torch.randn(n, n, generator=g, dtype=torch.float64)
    b = a @ a.T + n * torch.eye(n, dtype=torch.float64)  # a covariance
    x = torch.randn(n, generator=g, dtype=torch.float64)
    y = torch.randn(3, generator=g, dtype=torch.float64)
    h = np.eye(n)[nodes.numpy()]
    bn, xn, r = b.numpy(), x.numpy(), 0.3**2 * np.eye(3)
    blue = xn + bn @ h.T @ np.linalg.solve(h @ bn @ h.T + r, y.numpy() - h @ xn)
    ours = oi_analysis(x, y, nodes, 0.3, b[:, nodes])
    np.testing.assert_allclose(ours.numpy(), blue, rtol=0, atol=1e-12)


def test_a_large_ensemble_reproduces_the_kalman_update():
    g = torch.Generator().manual_seed(1)
    n, members, nodes, sigma = 8, 40_000, torch.tensor([0, 3, 6]), 0.5
    a = torch.randn(n, n, generator=g, dtype=torch.float64) / 2
    prior_cov = a @ a.T + 0.5 * torch.eye(n, dtype=torch.float64)
    prior_mean = torch.randn(n, generator=g, dtype=torch.float64)
    chol = torch.linalg.cholesky(prior_cov)
    ensemble = prior_mean + torch.randn(members, n, generator=g, dtype=torch.float64) @ chol.T
    y = torch.randn(3, generator=g, dtype=torch.float64)
    ones = torch.ones(n, 3, dtype=torch.float64)  # no localization
    post = enkf_analysis(ensemble, y, nodes, sigma, ones, 1.0, g)
    h = torch.eye(n, dtype=torch.float64)[nodes]
    prior_cov = torch.cov(ensemble.T)  # the update of the ensemble's own covariance
    prior_mean = ensemble.mean(0)
    gain = prior_cov @ h.T @ torch.linalg.inv(h @ prior_cov @ h.T + sigma**2 * torch.eye(3))
    mean = prior_mean + gain @ (y - h @ prior_mean)
    cov = (torch.eye(n, dtype=torch.float64) - gain @ h) @ prior_cov
    torch.testing.assert_close(post.mean(0), mean, rtol=0, atol=0.02)
    torch.testing.assert_close(torch.cov(post.T), cov, rtol=0, atol=0.03)


def test_the_enkf_averages_the_noise_of_a_steady_state_away():
    g = torch.Generator().manual_seed(2)
    steps, n, sigma = 40, 16, 0.2
    truth = torch.randn(1, 1, n, generator=g, dtype=torch.float64).expand(1, steps, n)
    mask = torch.ones(1, steps, n, dtype=torch.bool)
    measured = truth + sigma * torch.randn(truth.shape, generator=g, dtype=torch.float64)
    initial = torch.randn(1, 64, n, generator=g, dtype=torch.float64)  # far from the truth
    means = run_enkf(lambda u: u, initial, measured, mask, sigma, radius=2.0, inflation=1.0)
    error = float((means - truth)[0, -1].norm() / truth[0, -1].norm())
    noise = float((measured - truth)[0, -1].norm() / truth[0, -1].norm())
    assert error < 0.35 * noise  # about noise / sqrt(steps) with a perfect model
