"""Gaussian random fields on the unit square, reproducible per sample.

Covariance ``sigma^2 (-Laplace + tau^2 I)^(-alpha)`` with the FNO scaling
``sigma = tau^(alpha - d/2)`` (Li et al., "Fourier Neural Operator for Parametric PDEs",
ICLR 2021) and a zero mean mode. The field is the Karhunen-Loeve sum
``u(x) = sum_k sqrt(lambda_k) xi_k phi_k(x)`` with ``xi_k ~ N(0, 1)`` i.i.d. and

- ``boundary="periodic"``: Fourier modes on the unit torus, ``lambda_k = sigma^2 (4 pi^2 |k|^2
  + tau^2)^(-alpha)``, evaluated by FFT on the ``(s-1)^2`` periodic nodes and wrapped so that the
  last row/column repeats the first;
- ``boundary="neumann"``: cosine modes ``phi_k = c_k1 c_k2 cos(pi k1 x) cos(pi k2 y)`` (``c_0 = 1``,
  ``c_k = sqrt 2``), ``lambda_k = sigma^2 (pi^2 |k|^2 + tau^2)^(-alpha)``, evaluated by a type-I
  cosine transform at the ``s x s`` grid nodes ``x_j = j/(s-1)``. (The FNO Darcy script evaluates
  the same sum at cell centres with a type-II transform; we use the nodes where the PDE lives.)

Reproducibility: the white noise of sample ``i`` comes from its own generator seeded by
``(seed, stream, i)`` and is drawn on the CPU in float64, so sample ``i`` is the same whether it is
drawn alone or in any batch, and (to round-off) on any device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

Boundary = Literal["periodic", "neumann"]


def sample_seed(seed: int, stream: int, index: int) -> int:
    """A 63-bit seed for sample ``index`` of random stream ``stream`` under base ``seed``."""
    words = np.random.SeedSequence([seed, stream, index]).generate_state(2, dtype=np.uint32)
    return int((int(words[0]) << 31) ^ int(words[1]))


def white_noise(seeds: Sequence[int], shape: tuple[int, ...]) -> torch.Tensor:
    """Standard normal noise, one generator per seed: float64 CPU tensor (len(seeds), *shape)."""
    out = torch.empty((len(seeds), *shape), dtype=torch.float64)
    for row, seed in enumerate(seeds):
        gen = torch.Generator().manual_seed(seed)
        out[row] = torch.randn(shape, generator=gen, dtype=torch.float64)
    return out


def sqrt_eigenvalues(
    wavenumbers_sq: torch.Tensor, alpha: float, tau: float, dim: int = 2
) -> torch.Tensor:
    """``sqrt(lambda_k)`` for ``lambda_k = sigma^2 (m_k + tau^2)^(-alpha)``, zero at ``m_k = 0``.

    ``wavenumbers_sq`` holds the eigenvalues ``m_k`` of ``-Laplace`` for each mode.
    """
    sigma = tau ** (alpha - dim / 2)
    root = sigma * (wavenumbers_sq + tau**2) ** (-alpha / 2)
    return torch.where(wavenumbers_sq == 0, torch.zeros_like(root), root)


def periodic_field(noise: torch.Tensor, alpha: float, tau: float) -> torch.Tensor:
    """Periodic GRF from white noise (B, n, n) -> field on the (n+1)^2 nodes incl. the wrap."""
    n = noise.shape[-1]
    k = torch.fft.fftfreq(n, d=1.0 / n, dtype=noise.dtype, device=noise.device)
    m = 4 * math.pi**2 * (k[:, None] ** 2 + k[None, :] ** 2)
    # u_j = sum_k sqrt(lambda_k) c_k e^{2 pi i k x_j} with c_k = fft(noise)_k / n (unit variance,
    # Hermitian); ifft carries 1/n^2, hence the factor n.
    field = n * torch.fft.ifft2(sqrt_eigenvalues(m, alpha, tau) * torch.fft.fft2(noise)).real
    field = torch.cat([field, field[..., :1, :]], dim=-2)
    return torch.cat([field, field[..., :, :1]], dim=-1)


def neumann_field(noise: torch.Tensor, alpha: float, tau: float) -> torch.Tensor:
    """Neumann GRF from white noise (B, s, s) -> field at the s x s nodes ``j/(s-1)``."""
    s = noise.shape[-1]
    k = torch.arange(s, dtype=noise.dtype, device=noise.device)
    m = math.pi**2 * (k[:, None] ** 2 + k[None, :] ** 2)
    c = torch.full((s,), math.sqrt(2.0), dtype=noise.dtype, device=noise.device)
    c[0] = 1.0
    coeff = sqrt_eigenvalues(m, alpha, tau) * c[:, None] * c[None, :] * noise
    return cosine_sum(cosine_sum(coeff, dim=-1), dim=-2)


def cosine_sum(coeff: torch.Tensor, dim: int) -> torch.Tensor:
    """Type-I cosine synthesis ``y_j = sum_{k=0}^{s-1} x_k cos(pi k j / (s-1))`` along ``dim``.

    Computed with a real FFT of the even extension (length 2(s-1)).
    """
    x = coeff.movedim(dim, -1)
    s = x.shape[-1]
    ext = torch.cat([x, x[..., 1:-1].flip(-1)], dim=-1)
    y = torch.fft.rfft(ext, dim=-1).real
    sign = torch.ones(s, dtype=x.dtype, device=x.device)
    sign[1::2] = -1.0
    y = (y + x[..., :1] + sign * x[..., -1:]) / 2
    return y.movedim(-1, dim)


def gaussian_random_field(
    seeds: Sequence[int],
    size: int,
    alpha: float,
    tau: float,
    boundary: Boundary,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Zero-mean GRF samples on the ``size x size`` node grid: float64 (len(seeds), size, size).

    Args:
        seeds: one seed per sample (see :func:`sample_seed`).
        size: nodes per side including the boundary, ``>= 3``.
        alpha, tau: covariance parameters (``alpha > d/2 = 1`` for a well-defined field).
        boundary: ``"periodic"`` or ``"neumann"``.
        device: where the transforms run; the noise is always drawn on the CPU.
    """
    if boundary == "periodic":
        noise = white_noise(seeds, (size - 1, size - 1)).to(device)
        return periodic_field(noise, alpha, tau)
    if boundary == "neumann":
        noise = white_noise(seeds, (size, size)).to(device)
        return neumann_field(noise, alpha, tau)
    raise ValueError(f"boundary must be 'periodic' or 'neumann', got {boundary!r}")


def periodic_field_1d(
    seeds: Sequence[int], n: int, alpha: float, tau: float, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Zero-mean periodic GRF samples in one dimension: float64 (len(seeds), n).

    The field of covariance ``sigma^2 (-d^2/dx^2 + tau^2)^(-alpha)`` on the unit interval,
    ``sigma = tau^(alpha - 1/2)`` (the FNO scaling in 1-D; ``alpha > 1/2`` for a finite
    variance), at the ``n`` periodic nodes ``x_j = j / n``, eigenvalues ``4 pi^2 k^2``. On a
    domain of length ``L`` it is the same field at ``x / L``. The noise of each sample comes from
    its own seed, as in 2-D.
    """
    noise = white_noise(seeds, (n,)).to(device)
    k = torch.fft.fftfreq(n, d=1.0 / n, dtype=noise.dtype, device=noise.device)
    root = sqrt_eigenvalues(4 * math.pi**2 * k**2, alpha, tau, dim=1)
    return math.sqrt(n) * torch.fft.ifft(root * torch.fft.fft(noise)).real
