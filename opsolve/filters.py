"""Classical data assimilation with the true numerical model: the references a learned
observer is measured against.

- **Stochastic ensemble Kalman filter** (Evensen 1994; Burgers, van Leeuwen and Evensen 1998:
  perturbed observations), with multiplicative inflation of the anomalies and covariance
  localization by the Gaspari-Cohn function (Gaspari and Cohn 1999; Houtekamer and Mitchell
  2001) on the periodic grid: ``P = rho o (A^T A / (M - 1))``, ``K = P H^T (H P H^T + R)^-1``,
  each member updated with its own perturbed measurements.
- **Optimal interpolation** (3D-Var with a static background covariance, Gandin 1963):
  ``B = sigma_b^2 exp(-d^2 / (2 l^2))`` on the periodic grid, ``x^a = x^f + B H^T (H B H^T +
  R)^-1 (y - H x^f)``; nudging toward the observations with a Gaussian spread.

Observations are grid nodes (``H`` picks them), ``R = sigma_o^2 I``. States are flattened
grids ``(N,)``; ensembles ``(M, N)``; only the columns of ``P`` and ``B`` at the observed nodes
are ever formed (``N x p``), so 2-D grids of a few thousand nodes are cheap. The forecast is the
caller's (a batched step of the numerical model, e.g. :func:`datagen.problems.semilinear.
physics.simulate`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

Forecast = Callable[[torch.Tensor], torch.Tensor]  # (S, *grid) -> (S, *grid), one interval


def grid_coordinates(grid: Sequence[int]) -> torch.Tensor:
    """Node indices ``(N, d)`` float64 of a grid, row-major like ``reshape(N)``."""
    axes = [torch.arange(n, dtype=torch.float64) for n in grid]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, len(grid))


def periodic_distance(
    coords: torch.Tensor, nodes: torch.Tensor, grid: Sequence[int]
) -> torch.Tensor:
    """Distances in grid spacings from every node to ``nodes`` on the torus: ``(N, p)``."""
    period = torch.tensor(list(grid), dtype=torch.float64)
    delta = (coords[:, None, :] - coords[nodes][None, :, :]).abs()
    delta = torch.minimum(delta, period - delta)
    return delta.square().sum(dim=-1).sqrt()


def gaspari_cohn(distance: torch.Tensor, radius: float) -> torch.Tensor:
    """The compactly supported fifth-order correlation of Gaspari and Cohn (1999, eq. 4.10):
    1 at 0, 0 beyond ``2 radius``."""
    r = distance / radius
    near = -0.25 * r**5 + 0.5 * r**4 + 0.625 * r**3 - 5.0 / 3.0 * r**2 + 1.0
    far = r**5 / 12 - 0.5 * r**4 + 0.625 * r**3 + 5.0 / 3.0 * r**2 - 5.0 * r + 4.0 - 2.0 / (3 * r)
    far = torch.where(r > 0, far, torch.zeros_like(r))
    return torch.where(r <= 1, near, torch.where(r < 2, far, torch.zeros_like(r)))


def enkf_analysis(
    ensemble: torch.Tensor,
    measured: torch.Tensor,
    nodes: torch.Tensor,
    noise_std: float,
    localization: torch.Tensor,
    inflation: float,
    generator: torch.Generator,
) -> torch.Tensor:
    """One stochastic EnKF analysis of one trajectory's ensemble.

    Args:
        ensemble: ``(M, N)`` forecasts; measured: ``(p,)`` values at ``nodes`` ``(p,)`` long.
        noise_std: ``sigma_o``; localization: ``(N, p)`` weights of the columns of ``P`` at
            the observed nodes (:func:`gaspari_cohn` of :func:`periodic_distance`).
        inflation: factor on the anomalies (1: none); generator: the perturbations' source.

    Returns:
        the analysis ensemble ``(M, N)``.
    """
    members = ensemble.shape[0]
    if nodes.numel() == 0:
        return ensemble
    mean = ensemble.mean(dim=0)
    anomalies = (ensemble - mean) * inflation
    ensemble = mean + anomalies
    observed = anomalies[:, nodes]  # (M, p)
    ph = anomalies.T @ observed / (members - 1) * localization  # (N, p)
    hph = ph[nodes]  # (p, p): the localized H P H^T
    r = noise_std**2 * torch.eye(nodes.numel(), dtype=ensemble.dtype)
    gain = torch.linalg.solve(hph + r, ph.T).T  # (N, p)
    perturbed = measured[None] + noise_std * torch.randn(
        members, nodes.numel(), generator=generator, dtype=ensemble.dtype
    )
    return ensemble + (perturbed - ensemble[:, nodes]) @ gain.T


def oi_analysis(
    forecast: torch.Tensor,
    measured: torch.Tensor,
    nodes: torch.Tensor,
    noise_std: float,
    background: torch.Tensor,
) -> torch.Tensor:
    """One optimal-interpolation analysis ``(N,)`` of a forecast ``(N,)``; ``background`` is
    ``B H^T`` ``(N, p)`` (e.g. ``sigma_b^2 exp(-d^2 / 2 l^2)`` of :func:`periodic_distance`)."""
    if nodes.numel() == 0:
        return forecast
    r = noise_std**2 * torch.eye(nodes.numel(), dtype=forecast.dtype)
    weights = torch.linalg.solve(background[nodes] + r, measured - forecast[nodes])
    return forecast + background @ weights


def run_enkf(
    forecast: Forecast,
    initial: torch.Tensor,
    measured: torch.Tensor,
    mask: torch.Tensor,
    noise_std: float,
    radius: float,
    inflation: float,
    seed: int = 0,
) -> torch.Tensor:
    """The EnKF over ``T`` steps for ``B`` trajectories: the ensemble means ``(B, T, *grid)``.

    Args:
        forecast: advances states ``(S, *grid)`` by one record interval (the true model).
        initial: ``(B, M, *grid)`` initial ensembles (e.g. climatological states).
        measured, mask: ``(B, T, *grid)`` measurements and bool masks (step 0 included: the
            first analysis is of the initial ensemble).
        noise_std: ``sigma_o``; radius: Gaspari-Cohn half-width in grid spacings;
        inflation: anomaly factor; seed: of the perturbed observations.
    """
    batch, members, *grid = initial.shape
    coords = grid_coordinates(grid)
    generator = torch.Generator().manual_seed(seed)
    state = initial.double().reshape(batch, members, -1)
    flat_y = measured.double().reshape(batch, measured.shape[1], -1)
    flat_m = mask.reshape(batch, mask.shape[1], -1)
    means = []
    for k in range(measured.shape[1]):
        if k:
            state = forecast(state.reshape(batch * members, *grid)).reshape(batch, members, -1)
        for b in range(batch):
            nodes = torch.nonzero(flat_m[b, k]).flatten()
            local = gaspari_cohn(periodic_distance(coords, nodes, grid), radius)
            state[b] = enkf_analysis(
                state[b], flat_y[b, k, nodes], nodes, noise_std, local, inflation, generator
            )
        means.append(state.mean(dim=1))
    return torch.stack(means, dim=1).reshape(batch, measured.shape[1], *grid)


def run_oi(
    forecast: Forecast,
    initial: torch.Tensor,
    measured: torch.Tensor,
    mask: torch.Tensor,
    noise_std: float,
    background_std: float,
    length: float,
) -> torch.Tensor:
    """Optimal interpolation over ``T`` steps: the analyses ``(B, T, *grid)`` from ``initial``
    ``(B, *grid)``; ``background_std`` ``sigma_b`` and correlation ``length`` (grid spacings)."""
    batch, *grid = initial.shape
    coords = grid_coordinates(grid)
    state = initial.double().reshape(batch, -1)
    flat_y = measured.double().reshape(batch, measured.shape[1], -1)
    flat_m = mask.reshape(batch, mask.shape[1], -1)
    out = []
    for k in range(measured.shape[1]):
        if k:
            state = forecast(state.reshape(batch, *grid)).reshape(batch, -1)
        rows = []
        for b in range(batch):
            nodes = torch.nonzero(flat_m[b, k]).flatten()
            d = periodic_distance(coords, nodes, grid)
            background = background_std**2 * torch.exp(-0.5 * (d / length) ** 2)
            rows.append(oi_analysis(state[b], flat_y[b, k, nodes], nodes, noise_std, background))
        state = torch.stack(rows)
        out.append(state)
    return torch.stack(out, dim=1).reshape(batch, measured.shape[1], *grid)
