"""The pseudo-spectral Navier-Stokes solver against exact physics."""

import math

import pytest
import torch

from datagen.core.errors import SolverFailure, UserError
from datagen.core.fields import gaussian_random_field
from datagen.problems.navier_stokes import physics as ns

F64 = {"dtype": torch.float64}


def smooth_vorticity(n: int, seeds=(1, 2), modes: int = 4) -> torch.Tensor:
    """A random band-limited vorticity (|k| <= modes) on the n x n grid: (B, n, n)."""
    w = gaussian_random_field(list(seeds), 33, 2.5, 7.0, "periodic")[:, :-1, :-1]
    w_hat = torch.fft.rfft2(w)
    k = torch.fft.fftfreq(32, 1 / 32, **F64)[:, None].abs()
    ky = torch.fft.rfftfreq(32, 1 / 32, **F64)[None, :]
    w_hat = w_hat * ((k <= modes) & (ky <= modes))
    return (
        ns.interpolate(torch.fft.irfft2(w_hat, s=(32, 32)), n)
        if n >= 32
        else ns.truncate(torch.fft.irfft2(w_hat, s=(32, 32)), n)
    )


def run(w0, n, scheme="heun_cn", dt=1e-2, times=(0.0, 0.5), nu=1e-2, forcing=True, **kw):
    f = ns.fno_forcing(n, **F64) if forcing else torch.zeros(n, n, **F64)
    return ns.simulate(w0, f, nu=nu, dt=dt, record_times=list(times), scheme=scheme, **kw)


@pytest.mark.parametrize("scheme", ns.SCHEMES)
def test_taylor_green_decays_exactly(scheme):
    """Unforced w = cos(2 pi x) cos(2 pi y) decays as exp(-2 nu |k|^2 t), |k|^2 = 2 (2 pi)^2."""
    n, nu, t_end = 32, 1e-2, 2.0
    x = torch.arange(n, **F64) / n
    w0 = (torch.cos(2 * math.pi * x[:, None]) * torch.cos(2 * math.pi * x[None, :]))[None]
    out = run(w0, n, scheme, dt=1e-3, times=(0.0, 1.0, t_end), nu=nu, forcing=False)
    assert int(out.steps[0]) == 2000
    for j, t in enumerate(out.times.tolist()):
        exact = w0[0] * math.exp(-2 * nu * (2 * math.pi) ** 2 * t)
        error = (out.frames[0, j] - exact).norm() / exact.norm()
        assert error < 1e-6, (scheme, t, float(error))


@pytest.mark.parametrize(("scheme", "order"), [("heun_cn", 2), ("ifrk4", 4)])
def test_order_of_convergence_in_time(scheme, order):
    """Error ratio ~2^order when dt halves, on a smooth forced nonlinear problem."""
    n = 32
    w0 = 3 * smooth_vorticity(n)
    ref = run(w0, n, "ifrk4", dt=0.05 / 64, nu=1e-3).frames[:, -1]
    errors = [
        float((run(w0, n, scheme, dt=dt, nu=1e-3).frames[:, -1] - ref).norm() / ref.norm())
        for dt in (0.05, 0.025, 0.0125)
    ]
    ratios = [errors[i] / errors[i + 1] for i in range(2)]
    for ratio in ratios:
        assert 2**order * 0.8 < ratio < 2**order * 1.25, (errors, ratios)


def test_spectral_accuracy_in_space():
    """Errors against a 128^2 run fall faster than any power of h (spectral accuracy)."""
    w0 = 3 * smooth_vorticity(128)
    ref = run(w0, 128, "ifrk4", dt=0.01, nu=1e-2).frames[:, -1]
    errors = []
    for n in (16, 32, 64):
        coarse = run(ns.truncate(w0, n), n, "ifrk4", dt=0.01, nu=1e-2).frames[:, -1]
        errors.append(float((ns.interpolate(coarse, 128) - ref).norm() / ref.norm()))
    assert errors[0] > 1e3 * errors[1], errors  # a power law would give 2^p, p ~ 2..4
    assert errors[2] < 1e-10, errors


def test_mean_vorticity_stays_zero_and_budgets_hold():
    """Mean zero; E(t) and Z(t) match the integrals of forcing work minus dissipation."""
    n, nu, drag = 32, 2e-3, 0.05
    w0 = 3 * smooth_vorticity(n)
    times = [0.01 * j for j in range(101)]
    out = run(w0, n, "ifrk4", dt=2.5e-3, times=times, nu=nu, drag=drag)
    assert float(out.frames.mean(dim=(-2, -1)).abs().max()) < 1e-12
    grid = ns.spectral_grid(n)
    f_hat = grid.keep * ns.to_spectral(ns.fno_forcing(n, **F64))
    w_hat = ns.to_spectral(out.frames)
    energy = torch.stack([ns.energy(w_hat[:, j], grid) for j in range(len(times))], 1)
    enstrophy = torch.stack([ns.enstrophy(w_hat[:, j], grid) for j in range(len(times))], 1)
    rates = [ns.budgets(w_hat[:, j], f_hat, grid, nu, drag) for j in range(len(times))]
    d_energy = torch.stack([r[0] for r in rates], 1)
    d_enstrophy = torch.stack([r[1] for r in rates], 1)
    for value, rate in ((energy, d_energy), (enstrophy, d_enstrophy)):
        change = value[:, -1] - value[:, 0]
        simpson = (
            0.01
            / 3
            * (rate[:, 0] + rate[:, -1] + 4 * rate[:, 1:-1:2].sum(1) + 2 * rate[:, 2:-1:2].sum(1))
        )
        assert torch.allclose(change, simpson, rtol=1e-6, atol=1e-9 * float(value.abs().max()))
        assert float(change.abs().min()) > 1e-3 * float(value.abs().max())  # a real change


def test_unforced_inviscid_flow_conserves_energy_and_enstrophy():
    """The 2/3-rule Galerkin truncation conserves both invariants (to time-stepping error)."""
    n = 32
    w0 = 3 * smooth_vorticity(n, modes=8)
    out = run(w0, n, "ifrk4", dt=2e-3, times=(0.0, 1.0), nu=0.0, forcing=False)
    grid = ns.spectral_grid(n)
    w_hat = ns.to_spectral(out.frames)
    for invariant in (ns.energy, ns.enstrophy):
        start, end = invariant(w_hat[:, 0], grid), invariant(w_hat[:, 1], grid)
        assert torch.allclose(start, end, rtol=1e-9)
    assert float((out.frames[:, 1] - out.frames[:, 0]).norm() / out.frames[:, 0].norm()) > 0.05


def test_batched_and_single_runs_agree():
    n = 32
    w0 = 3 * smooth_vorticity(n, seeds=(1, 2, 3))
    batch = run(w0, n, dt=0.01, times=(0.0, 0.3)).frames
    for i in range(3):
        single = run(w0[i : i + 1], n, dt=0.01, times=(0.0, 0.3)).frames
        assert torch.allclose(single[0], batch[i], rtol=0, atol=1e-13)


def test_float32_tracks_float64():
    n = 32
    w0 = 3 * smooth_vorticity(n)
    ref = run(w0, n, dt=0.01).frames[:, -1]
    single = ns.simulate(
        w0.float(), ns.fno_forcing(n), nu=1e-2, dt=0.01, record_times=[0.0, 0.5]
    ).frames[:, -1]
    assert single.dtype == torch.float32
    assert float((single.double() - ref).norm() / ref.norm()) < 1e-5


def test_adaptive_steps_respect_cfl_and_land_on_records():
    n = 32
    w0 = 40 * smooth_vorticity(n)
    out = run(w0, n, dt=0.05, times=(0.0, 0.25, 0.5), adaptive=True, cfl_max=0.5)
    assert float(out.max_cfl.max()) <= 0.5 + 1e-9
    assert int(out.steps.min()) > 10  # dt = 0.05 alone would take 10 steps
    fixed = run(w0, n, dt=0.5 / int(out.steps[0]), times=(0.0, 0.5), cfl_max=10.0)
    assert float(fixed.steps[0]) == float(out.steps[0])


def test_cfl_violation_names_sample_and_time():
    n = 32
    w0 = 40 * smooth_vorticity(n)
    message = r"traj-1 at t = 0: CFL number 6\.26 exceeds time\.cfl_max = 0\.1"
    with pytest.raises(SolverFailure, match=message):
        run(w0, n, dt=0.05, times=(0.0, 0.5), cfl_max=0.1, labels=["traj-0", "traj-1"])


def test_nan_is_reported():
    n = 16
    w0 = smooth_vorticity(n)
    w0[1, 3, 3] = float("nan")
    with pytest.raises(SolverFailure, match="sample 1 at t = 0: the vorticity became NaN"):
        run(w0, n, times=(0.0,))


def test_truncation_and_interpolation_are_exact_on_band_limited_fields():
    w = smooth_vorticity(64, modes=6)
    coarse = ns.truncate(w, 16)
    assert torch.allclose(ns.interpolate(coarse, 64), w, atol=1e-12)
    assert torch.allclose(coarse, w[:, ::4, ::4], atol=1e-12)


PRUNED_SIZES = [16, 18, 24, 32, 48, 64, 96, 100, 128, 192, 256]
BATCH_SHAPES = [(), (3,), (2, 3)]


def truncated_spectrum(n: int, batch: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """A random real-FFT spectrum of a real field, truncated by the 2/3 rule: (*batch, n, m)."""
    w = torch.randn(*batch, n, n, generator=torch.Generator().manual_seed(seed), **F64)
    return ns.spectral_grid(n).keep * ns.to_spectral(w)


@pytest.mark.parametrize("n", PRUNED_SIZES)
@pytest.mark.parametrize("batch", BATCH_SHAPES)
def test_pruned_forward_transform_is_the_kept_columns_of_the_full_one(n, batch):
    w = torch.randn(*batch, n, n, generator=torch.Generator().manual_seed(n), **F64)
    k = ns.cutoff(n)
    full = ns.to_spectral(w)
    pruned = ns.pruned_rfft2(w)
    assert pruned.shape == (*batch, k + 1, n)
    error = (pruned - full[..., : k + 1].transpose(-1, -2)).abs().max()
    assert float(error) < 1e-12 * float(full.abs().max())
    truncated = ns.to_pruned(full)
    assert torch.equal(ns.from_pruned(truncated), ns.spectral_grid(n).keep * full)


@pytest.mark.parametrize("n", PRUNED_SIZES)
@pytest.mark.parametrize("batch", BATCH_SHAPES)
def test_pruned_inverse_transform_equals_the_full_one(n, batch):
    w_hat = truncated_spectrum(n, batch, seed=n)
    pruned = ns.to_pruned(w_hat)
    assert pruned.shape == (*batch, ns.cutoff(n) + 1, n)
    assert torch.equal(ns.from_pruned(pruned), w_hat)
    grid = ns.pruned_irfft2(pruned)
    assert grid.shape == (*batch, n, n)
    reference = ns.to_grid(w_hat, n)
    assert float((grid - reference).abs().max()) < 1e-12 * float(reference.abs().max())


@pytest.mark.parametrize("n", [16, 32, 64, 128])
def test_pruned_nonlinear_term_equals_the_advective_form(n):
    """Basdevant form on the pruned spectrum == u w_x + v w_y on the full one (2/3 rule)."""
    w_hat = 50 * truncated_spectrum(n, (2,), seed=1)
    w_hat[..., 0, 0] = 0
    grid, pruned = ns.spectral_grid(n), ns.pruned_grid(n)
    f_hat = grid.keep * ns.to_spectral(ns.fno_forcing(n, **F64))
    full = ns.nonlinear_term(w_hat, f_hat, grid)
    mine = ns.pruned_nonlinear_term(ns.to_pruned(w_hat), ns.to_pruned(f_hat), pruned)
    assert float((ns.from_pruned(mine) - full).abs().max()) < 1e-12 * float(full.abs().max())


def test_pruned_multipliers_match_the_full_grid():
    n = 48
    grid, pruned = ns.spectral_grid(n), ns.pruned_grid(n)
    for name in ("kx", "ky", "laplacian"):
        full = getattr(grid, name)[..., : ns.cutoff(n) + 1].transpose(-1, -2)
        assert torch.equal(getattr(pruned, name), full), name
    assert torch.equal(pruned.keep, ns.to_pruned(grid.keep.to(torch.complex128)).real)
    velocity = ns.to_pruned(grid.to_fields[:2])
    assert torch.allclose(pruned.to_velocity, velocity, rtol=1e-15, atol=0)


def test_bad_sizes_are_user_errors():
    with pytest.raises(UserError, match="even number >= 8"):
        ns.spectral_grid(30 + 1)
    with pytest.raises(UserError, match="even number >= 8"):
        ns.pruned_grid(6)
    with pytest.raises(UserError, match="at most the solve size"):
        ns.truncate(torch.zeros(1, 32, 32), 64)


@pytest.mark.parametrize("count", [2, 3, 4, 5, 9])
def test_midpoint_stencils_are_exact_for_polynomials(count):
    value, slope = ns.midpoint_stencils(count)
    records = torch.arange(count, dtype=torch.float64)
    mid = records[:-1] + 0.5
    for degree in range(min(count, 4)):  # cubics everywhere (with four or more records)
        torch.testing.assert_close(value @ records**degree, mid**degree)
        derivative = degree * mid ** max(degree - 1, 0)
        torch.testing.assert_close(slope @ records**degree, derivative)
    sign = (-1.0) ** records  # the alternating sequence has a derivative (a centred one: none)
    if count >= 4:
        assert float((slope @ sign).abs().min()) > 0.9  # 56 / 24 inside, 1 at the ends


def test_residual_small_on_solution_and_large_when_perturbed():
    n = 32
    w0 = 3 * smooth_vorticity(n)
    times = [0.02 * j for j in range(11)]
    out = run(w0, n, "ifrk4", dt=0.005, times=times, nu=1e-2)
    forcing = ns.fno_forcing(n, **F64)
    clean = ns.relative_residual(out.frames, out.times, forcing, 1e-2)
    noisy = out.frames + 0.01 * out.frames.std() * torch.randn_like(out.frames)
    perturbed = ns.relative_residual(noisy, out.times, forcing, 1e-2)
    wrong_nu = ns.relative_residual(out.frames, out.times, forcing, 5e-2)
    assert float(clean.max()) < 1e-4, clean  # fourth-order differences over 0.02: 2e-5
    assert float(perturbed.min()) > 100 * float(clean.max()), (clean, perturbed)
    assert float(wrong_nu.min()) > 100 * float(clean.max()), (clean, wrong_nu)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_cuda_matches_cpu(dtype):
    n = 64
    w0 = (3 * smooth_vorticity(n)).to(dtype)
    kwargs = dict(nu=1e-3, dt=0.01, record_times=[0.0, 1.0])
    cpu = ns.simulate(w0, ns.fno_forcing(n, dtype=dtype), **kwargs).frames
    gpu = ns.simulate(w0.cuda(), ns.fno_forcing(n, dtype=dtype, device="cuda"), **kwargs).frames
    tol = 1e-5 if dtype == torch.float32 else 1e-12
    assert float((gpu.cpu() - cpu).norm() / cpu.norm()) < tol
