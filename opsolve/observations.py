"""Sparse, noisy observations of trajectories, drawn on the fly for data assimilation.

Observations sit on grid nodes. A mask ``(batch, steps, *grid)`` (bool) says which nodes are
observed at each step; the measured values are the true field there plus Gaussian noise,
``y = u + sigma * eps`` (zero elsewhere). Masks of one batch may hold different numbers of
points, and a step may have none (then no correction is made).

Kinds of masks (``kind``), with ``n = round(density * N)`` points of the ``N`` grid nodes:

- ``random``: ``n`` distinct nodes drawn anew at every step (irregular places and times);
- ``sensors``: ``n`` distinct nodes drawn once per trajectory and kept at every step;
- ``stripes``: a band of ``round(density * n_1)`` consecutive indices of the first spatial axis
  (periodic, all of the other axes), at a random offset per step: a satellite swath.

``availability`` is the probability that a step has observations at all (the measurement
availability of Singh et al., ICLR 2024); ``density`` may be a pair ``(low, high)``: each
trajectory draws its density uniformly from it.

Every draw takes an explicit :class:`torch.Generator` on the CPU, so observations are a pure
function of their seed (training draws them from ``(seed, step)``, evaluation from ``seed``),
identical on every device and across a resumed run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

MASK_KINDS = ("random", "sensors", "stripes")


def _check_density(density: float | Sequence[float]) -> tuple[float, float]:
    low, high = (density, density) if isinstance(density, int | float) else tuple(density)
    if not (0.0 <= low <= high <= 1.0) or any(math.isnan(v) for v in (low, high)):
        raise ValueError(
            f"observation density must be in [0, 1] (or a pair low <= high in it), got {density!r}"
        )
    return float(low), float(high)


def observation_masks(
    batch: int,
    steps: int,
    grid: Sequence[int],
    density: float | Sequence[float],
    kind: str = "random",
    availability: float = 1.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Which nodes are observed: ``(batch, steps, *grid)`` bool, on the CPU."""
    low, high = _check_density(density)
    if kind not in MASK_KINDS:
        raise ValueError(f"unknown mask kind {kind!r}; allowed: {', '.join(MASK_KINDS)}")
    if not 0.0 <= availability <= 1.0:
        raise ValueError(f"observation availability must be in [0, 1], got {availability!r}")
    grid = tuple(int(n) for n in grid)
    nodes = math.prod(grid)
    g = generator
    fraction = low + (high - low) * torch.rand(batch, 1, generator=g, dtype=torch.float64)
    if kind == "stripes":
        width = torch.round(fraction * grid[0]).long()  # (batch, 1)
        offset = torch.randint(0, grid[0], (batch, steps), generator=g)
        index = (torch.arange(grid[0])[None, None] - offset[..., None]) % grid[0]
        rows = index < width[..., None]  # (batch, steps, n_1)
        mask = rows.reshape(batch, steps, grid[0], *([1] * (len(grid) - 1))).expand(
            batch, steps, *grid
        )
    else:
        count = torch.round(fraction * nodes).long()  # (batch, 1)
        draws = 1 if kind == "sensors" else steps
        rank = torch.rand(batch, draws, nodes, generator=g).argsort(dim=-1).argsort(dim=-1)
        mask = (rank < count[..., None]).expand(batch, steps, nodes).reshape(batch, steps, *grid)
    available = torch.rand(batch, steps, generator=g) < availability
    return (mask & available.reshape(batch, steps, *([1] * len(grid)))).contiguous()


def observe(
    truth: torch.Tensor,
    mask: torch.Tensor,
    noise_std: float,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Noisy measurements ``truth + noise_std * eps`` on ``mask``, 0 elsewhere.

    ``truth`` ``(batch, steps, *grid)`` on any device; ``mask`` of the same shape (bool);
    the noise is drawn on the CPU from ``generator`` and moved to ``truth``'s device.
    """
    if tuple(mask.shape) != tuple(truth.shape):
        raise ValueError(
            f"the observation mask {tuple(mask.shape)} does not match the trajectories "
            f"{tuple(truth.shape)} (batch, steps, *grid)"
        )
    if not noise_std >= 0.0 or math.isinf(noise_std):
        raise ValueError(f"observation noise must be a finite number >= 0, got {noise_std!r}")
    eps = torch.randn(tuple(truth.shape), generator=generator, dtype=torch.float32)
    noisy = truth + noise_std * eps.to(truth.device, truth.dtype)
    mask = mask.to(truth.device)
    return torch.where(mask, noisy, torch.zeros_like(truth))


def seeded(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``."""
    g = torch.Generator()
    g.manual_seed(int(seed) % 2**63)
    return g
