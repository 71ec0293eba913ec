"""Pseudo-spectral ETDRK4 for 1-D semilinear equations with a quadratic nonlinearity.

    u_t = L u + c (u^2)_x    on the periodic interval [0, L_x), N nodes x_j = j L_x / N,

with ``L`` a constant-coefficient linear operator, diagonal in Fourier space (its symbol
``L(k)``, ``k = 2 pi m / L_x``), and ``c`` a number. Kuramoto-Sivashinsky is
``L(k) = nu k^2 - k^4``, ``c = -1/2``; Korteweg-de Vries ``L(k) = i b k^3 - eps k^4``,
``c = -a/2``. States are real FFT
coefficients (B, N // 2 + 1); the product ``u^2`` is formed on the grid and truncated by the 2/3
rule (modes ``m > (N - 1) // 3`` are zero, so it is alias-free and the system is a Galerkin
truncation that conserves what the equation conserves). Time stepping: ETDRK4
(:mod:`datagen.linalg.etdrk4`), batched over trajectories, each with its own domain length and
step when they are drawn at random. The functions are small and pure; :func:`simulate` is the
thin driver.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from datagen.core.errors import SolverFailure
from datagen.linalg.etdrk4 import ETDRK4, etdrk4_step

BLOWUP = 1e4  # |u| above BLOWUP (1 + max |u0|) is a blow-up


@dataclass(frozen=True)
class Equation:
    """``u_t = L u + quadratic (u^2)_x``: the symbol ``L(k)`` and the number ``quadratic``."""

    symbol: Callable[[torch.Tensor], torch.Tensor]
    quadratic: float


def wavenumbers(n: int, length: torch.Tensor) -> torch.Tensor:
    """``k = 2 pi m / L`` of the real FFT modes ``m = 0 .. n // 2``: (B, n // 2 + 1) float64 for
    lengths (B,)."""
    m = torch.arange(n // 2 + 1, dtype=torch.float64, device=length.device)
    return 2 * math.pi * m / length.to(torch.float64)[:, None]


def dealiasing(n: int, device: torch.device | str = "cpu", kept: int | None = None) -> torch.Tensor:
    """The 2/3 rule: (n // 2 + 1,) 1 for the kept modes ``m <= kept``, else 0; by default
    ``kept = (n - 1) // 3``, the largest for which quadratic products are alias-free."""
    kept = (n - 1) // 3 if kept is None else kept
    return (torch.arange(n // 2 + 1, device=device) <= kept).double()


def quadratic_term(v: torch.Tensor, ik_c: torch.Tensor, n: int) -> torch.Tensor:
    """``c (u^2)_x`` in Fourier space for states ``v`` (B, n // 2 + 1): ``ik_c`` (B, K) is
    ``i k c`` times the 2/3-rule mask, so the product is dealiased in the same multiply."""
    u = torch.fft.irfft(v, n=n)
    return ik_c * torch.fft.rfft(u * u)


def simulate(
    u0: torch.Tensor,
    equation: Equation,
    length: torch.Tensor,
    dt: torch.Tensor,
    warmup_steps: int,
    steps_per_record: int,
    records: int,
    labels: list[str] | None = None,
    on_record: Callable[[int], None] | None = None,
    kept: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Integrate a batch and return the records.

    Args:
        u0: initial values (B, N) on the grid, in the arithmetic to use (float32 / float64).
        equation: the symbol and the quadratic coefficient.
        length: (B,) domain lengths; dt: (B,) steps (each trajectory its own).
        warmup_steps: steps before the first record; steps_per_record: steps between records.
        labels: names of the trajectories for the error message (default ``sample i``).
        kept: the highest Fourier mode kept (default: the 2/3 rule, :func:`dealiasing`).

    Returns:
        frames (B, records, N) in the arithmetic of ``u0`` and the largest advective Courant
        number ``dt |c| 2 max|u| / dx`` of each trajectory (B,) float64.

    Raises:
        SolverFailure: NaN or inf, or ``|u|`` beyond :data:`BLOWUP` times the initial one; names
            the trajectory and the time.
    """
    n, batch = u0.shape[-1], u0.shape[0]
    real = u0.dtype
    complex_dtype = torch.complex64 if real == torch.float32 else torch.complex128
    shared = bool((length == length[0]).all() and (dt == dt[0]).all())
    rows = slice(0, 1) if shared else slice(None)  # one set of coefficients when all agree
    k = wavenumbers(n, length[rows].to(u0.device))
    coefficients = ETDRK4.of(equation.symbol(k), dt[rows].to(u0.device, torch.float64)[:, None])
    coefficients = coefficients.to(complex_dtype)  # complex throughout: no mixed-type products
    mask = dealiasing(n, u0.device, kept)
    ik_c = (1j * equation.quadratic * k * mask).to(complex_dtype)
    bound = BLOWUP * (1 + u0.abs().amax(dim=-1))
    v = torch.fft.rfft(u0) * mask.to(real)

    def nonlinear(state: torch.Tensor) -> torch.Tensor:
        return quadratic_term(state, ik_c, n)

    frames, courant = [], torch.zeros(batch, dtype=torch.float64)
    dx = (length.to(torch.float64) / n).cpu()
    for record in range(records):
        steps = warmup_steps if record == 0 else steps_per_record
        for _ in range(steps):
            v = etdrk4_step(v, coefficients, nonlinear)
        u = torch.fft.irfft(v, n=n)
        peak = u.abs().amax(dim=-1)
        broken = ~torch.isfinite(peak) | (peak > bound)
        if bool(broken.any()):
            first = int(torch.nonzero(broken)[0])
            name = labels[first] if labels else f"sample {first}"
            time = float(dt[first]) * (warmup_steps + record * steps_per_record)
            raise SolverFailure(
                f"{name} blew up at t = {time:.4g} (|u| = {float(peak[first]):.3g}): lower time.dt"
            )
        courant = torch.maximum(
            courant, 2 * abs(equation.quadratic) * peak.double().cpu() * dt.double().cpu() / dx
        )
        frames.append(u)
        if on_record is not None:
            on_record(record)
    return torch.stack(frames, dim=1), courant


def invariants(
    u: np.ndarray, length: np.ndarray, a: float = 6.0, b: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Mass, momentum and energy of states ``u`` (..., N) on domains ``length`` (broadcast),
    and the scale of each.

    ``int u``, ``int u^2`` and ``int (a/6 u^3 - b/2 u_x^2)`` (KdV's; the first is also the
    Kuramoto-Sivashinsky invariant), by the trapezoidal rule (spectral for periodic data) and a
    spectral derivative, (..., 3) float64; the scales are the same integrals of the absolute
    values of the integrands (``int |u|``, ...), against which a drift is measured.
    """
    u = np.asarray(u, dtype=np.float64)
    n = u.shape[-1]
    length = np.asarray(length, dtype=np.float64)[..., None]
    dx = length / n
    m = np.fft.rfftfreq(n, d=1.0 / n)
    u_hat = np.fft.rfft(u)
    if n % 2 == 0:
        u_hat[..., -1] = 0  # the Nyquist mode has no derivative
    u_x = np.fft.irfft(1j * 2 * np.pi * m / length * u_hat, n=n)
    cubic, gradient = a / 6 * u**3, b / 2 * u_x**2
    values = [(u * dx).sum(-1), (u**2 * dx).sum(-1), ((cubic - gradient) * dx).sum(-1)]
    scales = [
        (np.abs(u) * dx).sum(-1),
        (u**2 * dx).sum(-1),
        ((np.abs(cubic) + np.abs(gradient)) * dx).sum(-1),
    ]
    return np.stack(values, axis=-1), np.stack(scales, axis=-1)
