"""Sobolev / Bochner norms (closed forms on Fourier modes) and the vorticity residual."""

import math

import pytest
import torch

from datagen.problems.navier_stokes.physics import fno_forcing, simulate
from opsolve.norms import (
    bochner_norm,
    relative_bochner,
    relative_bochner_l2,
    relative_l2_per_step,
    sobolev_norm,
)
from opsolve.residual import Physics, residual_norm, vorticity_residual, with_context


def _grid(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.arange(n, dtype=torch.float64) / n
    return torch.meshgrid(x, x, indexing="ij")


@pytest.mark.parametrize("s", [-1.0, 0.0, 1.0, 0.5])
@pytest.mark.parametrize("alpha", [1.0, 0.0, 2.5])
@pytest.mark.parametrize("k", [(1, 0), (3, 2), (0, 5)])
def test_sobolev_norm_of_a_fourier_mode_is_the_closed_form(s, alpha, k):
    x, y = _grid(16)
    v = torch.sin(2 * math.pi * (k[0] * x + k[1] * y))
    # ||sin||^2 = 1/2 on the unit torus; the multiplier is (alpha + 4 pi^2 |k|^2)^s
    expected = math.sqrt((alpha + 4 * math.pi**2 * (k[0] ** 2 + k[1] ** 2)) ** s / 2)
    assert float(sobolev_norm(v, s, alpha)) == pytest.approx(expected, rel=1e-12)


def test_sobolev_norm_matches_l2_and_h1_integrals():
    torch.manual_seed(0)
    v = torch.randn(2, 3, 12, 10, dtype=torch.float64)  # odd rfft layout too (10 -> 6 bins)
    l2 = v.pow(2).mean(dim=(-2, -1)).sqrt()
    torch.testing.assert_close(sobolev_norm(v, 0.0), l2)
    x, y = _grid(16)
    v = torch.cos(2 * math.pi * x) + 0.5 * torch.sin(2 * math.pi * (2 * x - 3 * y)) + 0.25
    # H^1 = ||v||^2 + ||grad v||^2: 1/2 + 4 pi^2 / 2 + 1/8 (1 + 4 pi^2 13) + 1/16
    h1 = 0.5 * (1 + 4 * math.pi**2) + 0.125 * (1 + 4 * math.pi**2 * 13) + 0.0625
    assert float(sobolev_norm(v, 1.0) ** 2) == pytest.approx(h1, rel=1e-12)
    # homogeneous H^-1: the mean mode is left out
    hm1 = 0.5 / (4 * math.pi**2) + 0.125 / (4 * math.pi**2 * 13)
    assert float(sobolev_norm(v, -1.0, alpha=0.0) ** 2) == pytest.approx(hm1, rel=1e-12)


def test_bochner_norms_and_relative_errors():
    torch.manual_seed(1)
    y = torch.randn(3, 5, 8, 8, dtype=torch.float64)
    e = torch.randn(3, 5, 8, 8, dtype=torch.float64)
    expected = (e.pow(2).mean(dim=(-2, -1)).sum(1) * 0.1).sqrt()
    torch.testing.assert_close(bochner_norm(e, dt=0.1), expected)
    rel = (e.flatten(1).norm(dim=1)) / y.flatten(1).norm(dim=1)
    torch.testing.assert_close(relative_bochner_l2(y + e, y), rel)
    assert relative_bochner(y + e, y, 1.0).shape == (3,)
    per_step = relative_l2_per_step(y + e, y)
    assert per_step.shape == (3, 5)
    torch.testing.assert_close(
        per_step[:, 2], e[:, 2].flatten(1).norm(dim=1) / y[:, 2].flatten(1).norm(dim=1)
    )
    with pytest.raises(ValueError, match="differ in shape"):
        relative_bochner(y, y[:, :4])


@pytest.fixture(scope="module")
def trajectory():
    """An FNO-type flow (nu = 1e-3) solved and stored on 32 x 32, 13 frames 0.25 apart."""
    torch.manual_seed(0)
    n = 32
    x, y = _grid(n)
    w0 = torch.sin(2 * math.pi * x) * torch.cos(4 * math.pi * y) + 0.5 * torch.cos(
        2 * math.pi * (x + 2 * y)
    )
    forcing = fno_forcing(n, dtype=torch.float64)
    times = [0.25 * j for j in range(13)]
    out = simulate(w0[None], forcing, nu=1e-3, dt=2.5e-2, record_times=times, scheme="ifrk4")
    return out.frames, Physics(1e-3, 0.0, 0.25, forcing)


def test_residual_of_a_generated_trajectory_is_small_and_grows_when_perturbed(trajectory):
    frames, physics = trajectory
    r = vorticity_residual(frames, physics)
    assert r.shape == (1, 12, 32, 32)  # one residual per interval between records
    clean = float(residual_norm(frames, physics))
    rate = torch.diff(frames, dim=1) / physics.dt
    scale = float(bochner_norm(rate, -1.0, dt=physics.dt))
    assert clean < 1e-4 * scale  # measured 4.0e-6 relative to ||w_t||_{H^-1}
    noisy = frames + 1e-3 * frames.std() * torch.randn_like(frames)
    assert float(residual_norm(noisy, physics)) > 20 * clean
    wrong = Physics(2e-3, 0.0, 0.25, physics.forcing)  # the wrong viscosity shows too
    assert float(residual_norm(frames, wrong)) > 20 * clean


def _flow(record_dt: float, span: float = 3.0) -> tuple[torch.Tensor, Physics]:
    n = 32
    x, y = _grid(n)
    w0 = torch.sin(2 * math.pi * x) * torch.cos(4 * math.pi * y)
    forcing = fno_forcing(n, dtype=torch.float64)
    times = [record_dt * j for j in range(round(span / record_dt) + 1)]
    out = simulate(
        w0[None], forcing, nu=1e-3, dt=record_dt / 20, record_times=times, scheme="ifrk4"
    )
    return out.frames, Physics(1e-3, 0.0, record_dt, forcing)


def test_residual_of_exact_flow_falls_at_fourth_order_in_the_record_spacing():
    relative = []
    for record_dt in (0.5, 0.25, 0.125):
        frames, physics = _flow(record_dt)
        scale = bochner_norm(torch.diff(frames, dim=1) / record_dt, -1.0, dt=record_dt)
        relative.append(float(residual_norm(frames, physics) / scale))
    rates = [math.log2(a / b) for a, b in zip(relative[:-1], relative[1:], strict=True)]
    assert min(rates) > 3.5, (relative, rates)  # measured 3.9 and 4.0 (ends included)


def test_residual_sees_an_error_that_alternates_from_record_to_record():
    # A centred difference never sees w_j at record j: (-1)^j e has no D_t at all, and a
    # refinement on such a residual drifted into that mode. The staggered one sees it.
    frames, physics = _flow(0.5)
    x, y = _grid(32)
    error = 1e-3 * frames.std() * torch.cos(2 * math.pi * (x + y))
    sign = (-1.0) ** torch.arange(frames.shape[1], dtype=torch.float64)
    clean = float(residual_norm(frames, physics))
    alternating = float(residual_norm(frames + sign[:, None, None] * error, physics)) - clean
    constant = float(residual_norm(frames + error, physics)) - clean
    assert alternating > 5 * constant, (alternating, constant)  # measured 24x


def test_residual_with_context_and_other_grids(trajectory):
    frames, physics = trajectory
    whole = residual_norm(frames, physics)
    glued = with_context(frames[:, :5], frames[:, 5:])
    torch.testing.assert_close(glued, frames[:, 3:])
    coarse = Physics(physics.viscosity, 0.0, physics.dt, physics.forcing[::2, ::2])
    torch.testing.assert_close(residual_norm(frames, coarse.on_grid(32)), whole)
