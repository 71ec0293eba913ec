"""2-D incompressible Navier-Stokes on the periodic unit torus, vorticity form, pseudo-spectral.

    w_t + u . grad w = nu Laplace w - mu w + f,    u = (psi_y, -psi_x),    -Laplace psi = w,

on ``[0, 1)^2`` with ``n x n`` nodes ``x_i = i / n`` (the FNO benchmark's grid). Fields are
``(batch, n, n)`` tensors, axis -2 is x and axis -1 is y; spectral coefficients are the real FFT
``(batch, n, n // 2 + 1)``. The nonlinear term is evaluated on the grid and truncated by the
2/3 rule (Orszag 1971: modes with ``|k_x|, |k_y| <= (n - 1) // 3`` are kept, so quadratic
products are alias-free), which makes the semi-discrete system a Galerkin truncation: advection
conserves energy and enstrophy exactly, and the budgets below hold to time-stepping error.

Time stepping (``scheme``):
- ``heun_cn``: Crank-Nicolson for the linear terms, Heun (RK2) for advection and forcing; second
  order; the scheme of the FNO data generator (Li et al., ICLR 2021) and torch-cfd's default.
- ``ifrk4``: integrating-factor RK4: the linear terms exactly (``exp(L dt)``), classical RK4 for
  the rest; fourth order, a higher-order IMEX option for accurate reference runs.

Budgets (``E = 1/2 <|u|^2>``, ``Z = 1/2 <w^2>``, ``<.>`` the domain mean):
``dE/dt = <psi f> - 2 nu Z - 2 mu E`` and ``dZ/dt = <w f> - nu <|grad w|^2> - 2 mu Z``.

Time stepping works on the pruned spectrum (:class:`Pruned`): after the 2/3 rule only the real-FFT
columns ``k_y <= K = (n - 1) // 3`` and the rows ``|k_x| <= K`` are nonzero, so the state is kept
as the ``(batch, K + 1, n)`` block of columns ``k_y <= K`` (transposed, ``k_x`` last), the
transforms skip the columns that are zero (:func:`pruned_irfft2`, :func:`pruned_rfft2`), and the
advection comes from two fields and two products (Basdevant 1983):
``u . grad w = (d_xx - d_yy)(u v) + d_x d_y (v^2 - u^2)`` (two inverse and two forward transforms
per evaluation instead of four and one). On the kept modes this equals the advective form
``u w_x + v w_y`` to round-off: the 2/3 rule makes both products alias-free.

The functions are small and pure; :class:`Spectral` and :class:`Pruned` hold the precomputed
wavenumber arrays of one grid (device, dtype). :func:`simulate` is the thin driver that steps a
batch and records.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from datagen.core.errors import SolverFailure, UserError

SCHEMES = ("heun_cn", "ifrk4")


@dataclass(frozen=True)
class Spectral:
    """Wavenumber arrays of the ``n x n`` periodic grid for real FFTs.

    Attributes (all ``(n, n // 2 + 1)``, on the grid's device):
        kx, ky: integer wavenumbers (float, the fields' real dtype).
        laplacian: the symbol of Laplace, ``-4 pi^2 |k|^2``.
        inverse_laplacian: ``1 / laplacian`` with the mean mode set to 0.
        keep: the 2/3-rule mask (float 0/1).
        to_fields: ``(4, n, n // 2 + 1)`` complex multipliers taking ``w_hat`` to the spectra of
            ``u, v, w_x, w_y``.
    """

    n: int
    kx: torch.Tensor
    ky: torch.Tensor
    laplacian: torch.Tensor
    inverse_laplacian: torch.Tensor
    keep: torch.Tensor
    to_fields: torch.Tensor

    @property
    def real_dtype(self) -> torch.dtype:
        return self.kx.dtype


def spectral_grid(
    n: int, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"
) -> Spectral:
    """Precompute the wavenumber arrays of the ``n x n`` torus (``n`` even, >= 8)."""
    if n < 8 or n % 2:
        raise UserError(f"grid size must be an even number >= 8, got {n}")
    kx = torch.fft.fftfreq(n, d=1.0 / n, dtype=dtype, device=device)[:, None].expand(-1, n // 2 + 1)
    ky = torch.fft.rfftfreq(n, d=1.0 / n, dtype=dtype, device=device)[None, :].expand(n, -1)
    laplacian = -4 * math.pi**2 * (kx**2 + ky**2)
    inverse = torch.where(laplacian == 0, torch.zeros_like(laplacian), 1 / laplacian)
    cutoff = (n - 1) // 3
    keep = ((kx.abs() <= cutoff) & (ky.abs() <= cutoff)).to(dtype)
    two_pi_i = 2j * math.pi
    psi = -inverse  # psi_hat = w_hat / (4 pi^2 |k|^2)
    to_fields = torch.stack(
        [two_pi_i * ky * psi, -two_pi_i * kx * psi, two_pi_i * kx, two_pi_i * ky]
    )
    return Spectral(n, kx.contiguous(), ky.contiguous(), laplacian, inverse, keep, to_fields)


def to_spectral(w: torch.Tensor) -> torch.Tensor:
    """Real FFT of grid values: (..., n, n) -> (..., n, n // 2 + 1)."""
    return torch.fft.rfft2(w)


def to_grid(w_hat: torch.Tensor, n: int) -> torch.Tensor:
    """Inverse of :func:`to_spectral`: (..., n, n // 2 + 1) -> (..., n, n)."""
    return torch.fft.irfft2(w_hat, s=(n, n))


def velocity(w_hat: torch.Tensor, grid: Spectral) -> tuple[torch.Tensor, torch.Tensor]:
    """Velocity ``(u, v) = (psi_y, -psi_x)`` on the grid from ``w_hat``: two (B, n, n)."""
    uv = to_grid(w_hat[..., None, :, :] * grid.to_fields[:2], grid.n)
    return uv[..., 0, :, :], uv[..., 1, :, :]


def nonlinear_term(w_hat: torch.Tensor, f_hat: torch.Tensor, grid: Spectral) -> torch.Tensor:
    """Spectrum of ``-u . grad w + f``, the advection truncated by the 2/3 rule: (B, n, m).

    One batched inverse transform gives ``u, v, w_x, w_y``; one forward transform the product.
    """
    u, v, wx, wy = to_grid(w_hat[..., None, :, :] * grid.to_fields, grid.n).unbind(-3)
    return f_hat - grid.keep * to_spectral(u * wx + v * wy)


def cutoff(n: int) -> int:
    """Largest wavenumber ``K = (n - 1) // 3`` kept by the 2/3 rule on the ``n x n`` grid."""
    return (n - 1) // 3


@dataclass(frozen=True)
class Pruned:
    """Multipliers of the pruned spectral layout of the ``n x n`` grid.

    A pruned spectrum is ``(..., K + 1, n)`` with ``K = cutoff(n)``: axis -2 is ``k_y = 0..K``
    (the first ``K + 1`` columns of the real FFT), axis -1 is ``k_x`` in FFT order
    (``0, 1, ..., -1``); modes with ``|k_x| > K`` are kept at zero by the multipliers below.

    Attributes (all ``(K + 1, n)`` unless noted, on the grid's device):
        n: grid size.
        kx, ky: integer wavenumbers (float, the fields' real dtype).
        keep: the 2/3-rule mask ``|k_x| <= K`` (float 0/1; ``k_y <= K`` holds by layout).
        laplacian: the symbol of Laplace, ``-4 pi^2 |k|^2``.
        to_velocity: ``(2, K + 1, n)`` complex multipliers taking ``w_hat`` to the spectra of
            ``u, v`` (zero where ``keep`` is 0).
        advection: ``(2, K + 1, n)`` real multipliers taking the spectra of ``u v`` and
            ``v^2 - u^2`` to that of ``u . grad w``: the symbols of ``d_xx - d_yy`` and
            ``d_x d_y`` (zero where ``keep`` is 0, which truncates the product).
    """

    n: int
    kx: torch.Tensor
    ky: torch.Tensor
    keep: torch.Tensor
    laplacian: torch.Tensor
    to_velocity: torch.Tensor
    advection: torch.Tensor


def pruned_grid(
    n: int, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"
) -> Pruned:
    """Precompute the multipliers of the pruned layout of the ``n x n`` torus (``n`` even, >= 8)."""
    if n < 8 or n % 2:
        raise UserError(f"grid size must be an even number >= 8, got {n}")
    k = cutoff(n)
    kx = torch.fft.fftfreq(n, d=1.0 / n, dtype=dtype, device=device)[None, :].expand(k + 1, n)
    ky = torch.arange(k + 1, dtype=dtype, device=device)[:, None].expand(k + 1, n)
    keep = (kx.abs() <= k).to(dtype)
    four_pi2 = 4 * math.pi**2
    laplacian = -four_pi2 * (kx**2 + ky**2)
    psi = torch.where(laplacian == 0, torch.zeros_like(laplacian), -keep / laplacian)
    two_pi_i = 2j * math.pi
    to_velocity = torch.stack([two_pi_i * ky * psi, -two_pi_i * kx * psi])
    advection = torch.stack([-four_pi2 * (kx**2 - ky**2), -four_pi2 * kx * ky]) * keep
    return Pruned(n, kx.contiguous(), ky.contiguous(), keep, laplacian, to_velocity, advection)


def to_pruned(w_hat: torch.Tensor) -> torch.Tensor:
    """Pruned spectrum of a real-FFT spectrum: (..., n, n // 2 + 1) -> (..., K + 1, n).

    Takes the columns ``k_y <= K`` (transposed) and zeroes ``|k_x| > K``: the 2/3-rule
    truncation, as ``keep * w_hat`` of :class:`Spectral`.
    """
    n = w_hat.shape[-2]
    k = cutoff(n)
    out = w_hat[..., : k + 1].transpose(-1, -2).contiguous()
    out[..., k + 1 : n - k] = 0
    return out


def from_pruned(w_pruned: torch.Tensor) -> torch.Tensor:
    """Real-FFT spectrum of a pruned spectrum: (..., K + 1, n) -> (..., n, n // 2 + 1)."""
    n = w_pruned.shape[-1]
    out = w_pruned.new_zeros((*w_pruned.shape[:-2], n, n // 2 + 1))
    out[..., : w_pruned.shape[-2]] = w_pruned.transpose(-1, -2)
    return out


def pruned_irfft2(w_pruned: torch.Tensor) -> torch.Tensor:
    """Grid values of a pruned spectrum: (..., K + 1, n) -> (..., n, n).

    Equals ``to_grid(from_pruned(w_pruned), n)``: the inverse FFT along ``x`` runs on the
    ``K + 1`` columns that can be nonzero only, then the real inverse FFT along ``y``.
    """
    n = w_pruned.shape[-1]
    rows = torch.fft.ifft(w_pruned, dim=-1)  # (..., K + 1, n): k_y, x
    return torch.fft.irfft(rows.transpose(-1, -2), n=n, dim=-1)


def pruned_rfft2(w: torch.Tensor) -> torch.Tensor:
    """The columns ``k_y <= K`` of the real FFT, transposed: (..., n, n) -> (..., K + 1, n).

    Equals ``to_spectral(w)[..., :K + 1].transpose(-1, -2)`` (no truncation in ``k_x``): the
    FFT along ``x`` runs on the ``K + 1`` columns that are kept only.
    """
    k = cutoff(w.shape[-1])
    columns = torch.fft.rfft(w, dim=-1)[..., : k + 1]  # (..., n, K + 1): x, k_y
    return torch.fft.fft(columns.transpose(-1, -2), dim=-1)


def quadratic_products(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """The products ``(u v, v^2 - u^2)`` of the advection's Basdevant form: two (..., n, n) ->
    (..., 2, n, n)."""
    out = u.new_empty((*u.shape[:-2], 2, *u.shape[-2:]))
    torch.mul(u, v, out=out[..., 0, :, :])
    torch.mul(v, v, out=out[..., 1, :, :])
    out[..., 1, :, :].addcmul_(u, u, value=-1)
    return out


def pruned_nonlinear_term(
    w_pruned: torch.Tensor, f_pruned: torch.Tensor, grid: Pruned
) -> torch.Tensor:
    """Pruned spectrum of ``-u . grad w + f``, truncated by the 2/3 rule: (B, K + 1, n).

    ``w_pruned`` must be truncated (zero for ``|k_x| > K``). Two inverse transforms give
    ``u, v``; two forward transforms the products ``u v`` and ``v^2 - u^2``, whose derivatives
    ``(d_xx - d_yy)(u v) + d_x d_y (v^2 - u^2)`` are ``u . grad w`` (``div u = 0``).
    Equals ``to_pruned(nonlinear_term(...))`` of the full spectra to round-off.
    """
    u, v = pruned_irfft2(w_pruned[..., None, :, :] * grid.to_velocity).unbind(-3)
    products = pruned_rfft2(quadratic_products(u, v))
    out = torch.addcmul(f_pruned, grid.advection[0], products[..., 0, :, :], value=-1)
    return out.addcmul_(grid.advection[1], products[..., 1, :, :], value=-1)


def linear_symbol(grid: Spectral | Pruned, nu: float, drag: float = 0.0) -> torch.Tensor:
    """Symbol of the linear terms ``nu Laplace - mu``: the shape of ``grid.laplacian``, real."""
    return nu * grid.laplacian - drag


def step_heun_cn(
    w_hat: torch.Tensor, dt: float | torch.Tensor, lin: torch.Tensor, explicit: Callable
) -> torch.Tensor:
    """One Crank-Nicolson / Heun step (second order).

    ``g = (1 + dt L / 2) w``; predictor ``w1 = (g + dt N(w)) / (1 - dt L / 2)``; corrector
    ``(g + dt (N(w) + N(w1)) / 2) / (1 - dt L / 2)``. ``dt`` may be a (B, 1, 1) tensor.
    """
    half = 0.5 * dt * lin
    g = (1 + half) * w_hat
    inv = 1 / (1 - half)
    n0 = explicit(w_hat)
    w1 = (g + dt * n0) * inv
    return (g + 0.5 * dt * (n0 + explicit(w1))) * inv


def step_ifrk4(
    w_hat: torch.Tensor, dt: float | torch.Tensor, lin: torch.Tensor, explicit: Callable
) -> torch.Tensor:
    """One integrating-factor RK4 step (fourth order, linear terms exact)."""
    e_half = torch.exp(0.5 * dt * lin)
    e_full = e_half * e_half
    k1 = explicit(w_hat)
    k2 = explicit(e_half * (w_hat + 0.5 * dt * k1))
    k3 = explicit(e_half * w_hat + 0.5 * dt * k2)
    k4 = explicit(e_full * w_hat + dt * e_half * k3)
    return e_full * w_hat + dt / 6 * (e_full * k1 + 2 * e_half * (k2 + k3) + k4)


STEPPERS = {"heun_cn": step_heun_cn, "ifrk4": step_ifrk4}


def energy(w_hat: torch.Tensor, grid: Spectral) -> torch.Tensor:
    """Kinetic energy ``1/2 <|u|^2> = 1/2 <psi w>`` per sample (Parseval): (B,)."""
    return 0.5 * mean_product(w_hat, -grid.inverse_laplacian * w_hat, grid.n)


def enstrophy(w_hat: torch.Tensor, grid: Spectral) -> torch.Tensor:
    """Enstrophy ``1/2 <w^2>`` per sample (Parseval): (B,)."""
    return 0.5 * mean_product(w_hat, w_hat, grid.n)


def mean_product(a_hat: torch.Tensor, b_hat: torch.Tensor, n: int) -> torch.Tensor:
    """Domain mean ``<a b>`` of two real fields from their real-FFT spectra: (B,).

    The columns ``0 < k_y < n/2`` stand for two conjugate modes each.
    """
    weight = torch.full((n // 2 + 1,), 2.0, dtype=a_hat.real.dtype, device=a_hat.device)
    weight[0] = 1.0
    weight[-1] = 1.0
    prod = (a_hat * b_hat.conj()).real * weight
    return prod.sum(dim=(-2, -1)) / n**4


def budgets(
    w_hat: torch.Tensor, f_hat: torch.Tensor, grid: Spectral, nu: float, drag: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-hand sides of the budgets ``(dE/dt, dZ/dt)`` at state ``w_hat``: two (B,)."""
    psi = -grid.inverse_laplacian * w_hat
    z = enstrophy(w_hat, grid)
    e = energy(w_hat, grid)
    d_energy = mean_product(psi, f_hat, grid.n) - 2 * nu * z - 2 * drag * e
    palinstrophy = mean_product(w_hat, -grid.laplacian * w_hat, grid.n)
    d_enstrophy = mean_product(w_hat, f_hat, grid.n) - nu * palinstrophy - 2 * drag * z
    return d_energy, d_enstrophy


def cfl_number(w_hat: torch.Tensor, grid: Spectral, dt: float | torch.Tensor) -> torch.Tensor:
    """Advective CFL number ``dt n max(|u| + |v|)`` per sample: (B,)."""
    u, v = velocity(w_hat, grid)
    speed = (u.abs() + v.abs()).flatten(-2).amax(-1)
    dt = torch.as_tensor(dt, dtype=speed.dtype, device=speed.device).reshape(-1)
    return dt * grid.n * speed


def truncate(w: torch.Tensor, size: int) -> torch.Tensor:
    """Spectral truncation of grid values (B, n, n) to (B, size, size), ``size <= n`` even.

    Keeps the modes ``|k| < size / 2`` (the Nyquist mode of the coarse grid is dropped, so the
    result is the L2 projection onto trigonometric polynomials of the coarse grid).
    """
    n = w.shape[-1]
    if size > n or size % 2:
        raise UserError(f"store size {size} must be even and at most the solve size {n}")
    if size == n:
        return w
    w_hat = to_spectral(w)
    half = size // 2
    coarse = w_hat.new_zeros((*w_hat.shape[:-2], size, half + 1))
    coarse[..., :half, :half] = w_hat[..., :half, :half]
    coarse[..., half + 1 :, :half] = w_hat[..., n - half + 1 :, :half]
    return to_grid(coarse, size) * (size / n) ** 2


def interpolate(w: torch.Tensor, size: int) -> torch.Tensor:
    """Spectral (zero-padding) interpolation of (B, n, n) grid values to (B, size, size)."""
    n = w.shape[-1]
    if size == n:
        return w
    w_hat = to_spectral(w)
    half = n // 2
    fine = w_hat.new_zeros((*w_hat.shape[:-2], size, size // 2 + 1))
    fine[..., :half, :half] = w_hat[..., :half, :half]
    fine[..., size - half + 1 :, :half] = w_hat[..., half + 1 :, :half]
    return to_grid(fine, size) * (size / n) ** 2


def fno_forcing(n: int, amplitude: float = 0.1, wavenumber: int = 1, **like) -> torch.Tensor:
    """The FNO benchmark forcing ``A (sin(2 pi k (x + y)) + cos(2 pi k (x + y)))``: (n, n).

    (torch-cfd's current generator defaults to ``k = 4``; the FNO data use ``k = 1``.)
    """
    x = torch.arange(n, **like) / n
    phase = 2 * math.pi * wavenumber * (x[:, None] + x[None, :])
    return amplitude * (torch.sin(phase) + torch.cos(phase))


def kolmogorov_forcing(n: int, amplitude: float = 1.0, wavenumber: int = 4, **like) -> torch.Tensor:
    """A Kolmogorov-type vorticity source ``A sin(2 pi k y)``: (n, n), constant along x."""
    y = torch.arange(n, **like) / n
    return amplitude * torch.sin(2 * math.pi * wavenumber * y)[None, :].expand(n, n).contiguous()


@dataclass
class Trajectories:
    """What :func:`simulate` returns.

    Attributes:
        frames: (B, R, n_store, n_store) vorticity at the record times (stored precision).
        times: (R,) record times.
        fine: (B, R, n, n) frames at the solve grid when asked for, else None.
        steps: (B,) time steps taken per sample.
        max_cfl: (B,) largest CFL number seen at the records.
    """

    frames: torch.Tensor
    times: torch.Tensor
    fine: torch.Tensor | None
    steps: torch.Tensor
    max_cfl: torch.Tensor


def simulate(
    w0: torch.Tensor,
    forcing: torch.Tensor,
    *,
    nu: float,
    dt: float,
    record_times: list[float],
    start: float = 0.0,
    drag: float = 0.0,
    scheme: str = "heun_cn",
    adaptive: bool = False,
    cfl_max: float = 0.8,
    store_size: int | None = None,
    keep_fine: bool = False,
    labels: list[str] | None = None,
    on_record: Callable[[int], None] | None = None,
) -> Trajectories:
    """Advance a batch of initial vorticities and record snapshots.

    Args:
        w0: (B, n, n) initial vorticity at time ``start`` (its mean is removed, its spectrum
            truncated by the 2/3 rule).
        forcing: (n, n) or (B, n, n) vorticity source ``f``.
        nu, drag: viscosity (> 0) and linear drag (>= 0).
        dt: time step; with ``adaptive`` the largest allowed step.
        record_times: increasing times ``>= start`` to record (``start`` itself records ``w0``).
        scheme: ``heun_cn`` or ``ifrk4``.
        adaptive: pick per sample and per record interval the largest step ``<= dt`` with CFL
            number ``<= cfl_max`` that lands on the record times; otherwise a CFL number above
            ``cfl_max`` (checked at every record) stops the run.
        store_size: grid of the returned ``frames`` (spectral truncation), default ``n``.
        keep_fine: also return the frames at the solve grid.
        labels: names of the samples for error messages (default ``sample i``).
        on_record: called with the record index after each record (progress bars).

    Raises:
        SolverFailure: NaN/inf, enstrophy growth beyond the forcing's budget, or a CFL
            violation without adaptivity; the message names the sample and the time.
    """
    if scheme not in STEPPERS:
        raise UserError(f"scheme {scheme!r} is not one of {', '.join(SCHEMES)}")
    batch, n = w0.shape[0], w0.shape[-1]
    labels = labels or [f"sample {i}" for i in range(batch)]
    grid = spectral_grid(n, w0.dtype, w0.device)
    pruned = pruned_grid(n, w0.dtype, w0.device)
    lin = linear_symbol(pruned, nu, drag)
    f_hat = grid.keep * to_spectral(forcing.to(w0))
    f_pruned = to_pruned(f_hat)
    w_hat = grid.keep * to_spectral(w0)
    w_hat[..., 0, 0] = 0
    state = to_pruned(w_hat)  # what the steps advance; w_hat is the full spectrum at records
    stepper = STEPPERS[scheme]

    def explicit(state: torch.Tensor) -> torch.Tensor:
        return pruned_nonlinear_term(state, f_pruned, pruned)

    store_size = store_size or n
    norm0 = enstrophy(w_hat, grid).sqrt()
    force_norm = (0.5 * mean_product(f_hat, f_hat, n)).sqrt().expand(batch)
    frames, fine, cfl_seen = [], [], torch.zeros(batch, dtype=w0.dtype, device=w0.device)
    steps = torch.zeros(batch, dtype=torch.int64, device=w0.device)
    t = start
    for index, target in enumerate(record_times):
        span = target - t
        if span < -1e-12:
            raise UserError(f"record times must be increasing and >= start ({start})")
        if span > 1e-12:
            state, taken = advance(state, span, dt, lin, explicit, stepper, grid, adaptive, cfl_max)
            w_hat = from_pruned(state)
            steps += taken
            t = target
        if span > 1e-12:
            cfl = cfl_number(w_hat, grid, span / taken)
        else:  # the step about to be taken (adaptive runs choose theirs per interval)
            cfl = cfl_number(w_hat, grid, 0.0 if adaptive else dt)
        cfl_seen = torch.maximum(cfl_seen, cfl)
        check_state(w_hat, grid, t - start, norm0, force_norm, cfl, cfl_max, adaptive, labels, t)
        w = to_grid(w_hat, n)
        frames.append(truncate(w, store_size))
        if keep_fine:
            fine.append(w)
        if on_record is not None:
            on_record(index)
    return Trajectories(
        frames=torch.stack(frames, dim=1),
        times=torch.tensor(record_times, dtype=torch.float64),
        fine=torch.stack(fine, dim=1) if keep_fine else None,
        steps=steps.cpu(),
        max_cfl=cfl_seen.cpu(),
    )


def advance(
    w_hat: torch.Tensor,
    span: float,
    dt: float,
    lin: torch.Tensor,
    explicit: Callable,
    stepper: Callable,
    grid: Spectral,
    adaptive: bool,
    cfl_max: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advance every sample by ``span`` in equal steps of at most ``dt``: (state, steps (B,)).

    ``w_hat`` is a pruned spectrum (B, K + 1, n) (:func:`to_pruned`), ``lin`` and ``explicit``
    act on that layout. With ``adaptive`` each sample takes the fewest equal steps whose CFL
    number, at the current velocity, is at most ``cfl_max``; samples that finish early are held.
    """
    batch = w_hat.shape[0]
    count = math.ceil(span / dt - 1e-9)
    counts = torch.full((batch,), count, dtype=torch.int64, device=w_hat.device)
    if adaptive:
        unit = cfl_number(from_pruned(w_hat), grid, 1.0)  # CFL number per unit time step
        needed = torch.ceil(span * unit / cfl_max - 1e-9).to(torch.int64)
        counts = torch.maximum(counts, needed.clamp(min=1))
    if bool((counts == counts[0]).all()):
        step = span / int(counts[0])
        for _ in range(int(counts[0])):
            w_hat = stepper(w_hat, step, lin, explicit)
        return w_hat, counts
    steps = (span / counts.to(lin.dtype)).reshape(-1, 1, 1)
    for k in range(int(counts.max())):
        active = (k < counts).reshape(-1, 1, 1)
        w_hat = torch.where(active, stepper(w_hat, steps, lin, explicit), w_hat)
    return w_hat, counts


def check_state(
    w_hat: torch.Tensor,
    grid: Spectral,
    elapsed: float,
    norm0: torch.Tensor,
    force_norm: torch.Tensor,
    cfl: torch.Tensor,
    cfl_max: float,
    adaptive: bool,
    labels: list[str],
    t: float,
) -> None:
    """Stop with a message naming the sample and time on NaN/inf, blow-up or a CFL violation.

    Blow-up: advection conserves enstrophy, so ``||w(t)|| <= ||w(0)|| + t ||f||`` (L2 norms);
    a norm above twice that bound is reported as divergence.
    """
    norm = enstrophy(w_hat, grid).sqrt()
    finite = torch.isfinite(w_hat).flatten(1).all(1) & torch.isfinite(norm)
    bound = 2 * (norm0 + elapsed * force_norm) + 1e-12
    for problem, flags in (
        ("the vorticity became NaN or inf", ~finite),
        ("the enstrophy grew beyond the forcing's budget (blow-up)", finite & (norm > bound)),
    ):
        if bool(flags.any()):
            first = int(torch.nonzero(flags)[0])
            raise SolverFailure(
                f"{labels[first]} at t = {t:.4g}: {problem}; lower time.dt or set time.adaptive"
            )
    if not adaptive and bool((cfl > cfl_max).any()):
        first = int(torch.argmax(cfl))
        raise SolverFailure(
            f"{labels[first]} at t = {t:.4g}: CFL number {float(cfl[first]):.3g} exceeds "
            f"time.cfl_max = {cfl_max}; lower time.dt or set time.adaptive=true"
        )


def midpoint_stencils(count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Matrices giving value and time derivative at the midpoints of ``count`` even records.

    Row ``j`` (the midpoint between records ``j`` and ``j + 1``) uses records ``j - 1 .. j + 2``
    where they exist: the classical staggered weights, derivative ``(1, -27, 27, -1) / 24`` and
    value ``(-1, 9, 9, -1) / 16``, fourth order by symmetry. At the two ends the
    ``min(5, count)`` records nearest the midpoint are used, exact for polynomials of one
    degree less (fourth order with five records).

    Returns ``value`` and ``slope``, both ``(count - 1, count)`` float64 (the slope per unit
    record spacing): ``w(t_{j+1/2}) ~ sum_i value[j, i] w_i``.
    """
    width = min(5, count)
    value = torch.zeros(count - 1, count, dtype=torch.float64)
    slope = torch.zeros(count - 1, count, dtype=torch.float64)
    for j in range(count - 1):
        centred = 1 <= j <= count - 3
        size = 4 if centred else width
        start = j - 1 if centred else min(max(j - 2, 0), count - size)
        records = torch.arange(start, start + size)
        powers = torch.arange(size, dtype=torch.float64)
        vander = (records.double() - (j + 0.5))[None, :] ** powers[:, None]  # (power, record)
        unit = torch.eye(size, dtype=torch.float64)
        value[j, records] = torch.linalg.solve(vander, unit[0])
        slope[j, records] = torch.linalg.solve(vander, unit[1])
    return value, slope


def residual(
    frames: torch.Tensor,
    times: torch.Tensor,
    forcing: torch.Tensor,
    nu: float,
    drag: float = 0.0,
) -> torch.Tensor:
    """PDE residual of a trajectory at the midpoints of its records, ``D_t`` from the frames.

    ``r_{j+1/2} = D_t w_{j+1/2} - I F(w)_{j+1/2}``, ``F(w) = -u . grad w + nu Laplace w - mu w
    + f`` evaluated spectrally (2/3 rule) on every frame, ``D_t`` and the interpolation ``I``
    the staggered stencils of :func:`midpoint_stencils` (fourth order with five or more
    records, lower with fewer). Staggered rather than centred differences: the centred
    ``(w_{j-2} - 8 w_{j-1} + 8 w_{j+1} - w_{j+2}) / 12`` never sees ``w_j``, so a trajectory
    with an error alternating in sign from record to record has almost no residual, and a
    fit to the residual (the Spectral-Refiner) drifts into that mode; the staggered derivative
    of an alternating sequence is ``56 / 24`` times its amplitude over ``dt``.
    frames (B, R, n, n), times (R,) evenly spaced, forcing (n, n) -> (B, R - 1, n, n).
    """
    n, count = frames.shape[-1], frames.shape[1]
    if count < 2:
        raise UserError(f"a residual needs at least 2 frames, got {count}")
    spacing = torch.diff(times.double())
    if float((spacing - spacing.mean()).abs().max()) > 1e-6 * float(spacing.mean()):
        raise UserError("the residual needs evenly spaced record times")
    dt = float(spacing.mean())
    value, slope = (m.to(frames.device, frames.dtype) for m in midpoint_stencils(count))
    grid = spectral_grid(n, frames.dtype, frames.device)
    w_hat = to_spectral(frames)
    f_hat = grid.keep * to_spectral(forcing.to(frames))
    rhs = to_grid(nonlinear_term(w_hat, f_hat, grid) + linear_symbol(grid, nu, drag) * w_hat, n)
    rate = torch.einsum("mr,brxy->bmxy", slope / dt, frames)
    return rate - torch.einsum("mr,brxy->bmxy", value, rhs)


def relative_residual(
    frames: torch.Tensor,
    times: torch.Tensor,
    forcing: torch.Tensor,
    nu: float,
    drag: float = 0.0,
    band: float = 0.25,
    skip: int = 2,
) -> torch.Tensor:
    """``||P r|| / ||w_t||`` per trajectory (L2 over space and time): (B,).

    ``P`` keeps the modes ``|k_x|, |k_y| <= band * n``. Stored frames are a spectral truncation
    of a finer solve; the advection of the truncated field misses the transfer from the
    discarded modes, which lands near the stored grid's cutoff. On the lower half of the band
    that closure error is small, while a wrong viscosity or forcing still shows in full.
    The first ``skip`` intervals between records (those whose stencil reaches the first
    record; at least one interval is kept) are left out: from a rough initial field the flow
    changes faster at first than records 0.5 apart resolve (worst on our 256^2 test data: 0.15
    with them, 1.2e-3 without; ``benchmarks/RESULTS.md``).
    """
    r = residual(frames, times, forcing, nu, drag)
    first = min(skip, r.shape[1] - 1)
    r, frames = r[:, first:], frames[:, first:]
    n = frames.shape[-1]
    grid = spectral_grid(n, frames.dtype, frames.device)
    low = (grid.kx.abs() <= band * n) & (grid.ky.abs() <= band * n)
    r = to_grid(to_spectral(r) * low, n)
    rate = torch.diff(frames, dim=1) / float(times[1] - times[0])  # at the same midpoints
    return r.flatten(1).norm(dim=1) / rate.flatten(1).norm(dim=1).clamp(min=1e-30)
