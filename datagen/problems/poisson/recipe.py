"""Poisson datasets: random forcings and boundary data in, solutions out, one shared matrix.

Sample ``i`` of a split draws its forcing ``f`` (a GRF times ``forcing.value``, or a constant) and
its Dirichlet data ``g`` (the boundary trace of a GRF times ``dirichlet.value``, or zero) from its
own seeds ``(seed, split, i)``, so it is the same alone, in any batch and after a resume. Every
sample has the same matrix, so nothing is sorted or recycled: each work unit is one block of
right-hand sides for the run's one solver (:func:`datagen.problems.poisson.physics.solve_poisson`;
SuperLU is factored once per run). Stored: ``f`` ((N, s, s), or (s, s) when constant), ``g`` ((N, s,
s), the boundary values with a zero interior; (s, s) zeros when ``zero``) and ``u`` ((N, 1, s, s),
equal to ``g`` on the boundary), plus the diagnostics of
:func:`datagen.core.recipe.diagnostic_arrays` (``seed``: the forcing's seed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from datagen.core.config import RandomField
from datagen.core.fields import gaussian_random_field, sample_seed
from datagen.core.recipe import (
    STREAM_COEFFICIENT,
    STREAM_FORCING,
    OutputDataset,
    Recipe,
    check_solves,
    diagnostic_arrays,
    stream,
    superlu_bytes,
)
from datagen.core.schema import FieldSpec, FileLayout
from datagen.problems.poisson.config import PoissonConfig
from datagen.problems.poisson.physics import SharedFactor, boundary_trace, solve_poisson

STREAM_DIRICHLET = STREAM_COEFFICIENT  # the boundary data take the coefficient's stream


def choose_method(cfg: PoissonConfig) -> str:
    """Resolve ``solver.method: auto``: the sine-transform solver (fastest at every size)."""
    return "dst" if cfg.solver.method == "auto" else cfg.solver.method


def random_fields(
    cfg: PoissonConfig,
    split: str,
    kind: int,
    field: RandomField,
    indices: np.ndarray,
    device: torch.device,
) -> tuple[np.ndarray, np.ndarray]:
    """GRFs (B, s, s) float64 of samples ``indices`` from random stream ``kind``, and the
    seeds (B,) uint64."""
    seeds = [sample_seed(cfg.seed, stream(split, kind), int(i)) for i in indices]
    grf = gaussian_random_field(
        seeds, cfg.resolution, field.alpha, field.tau, field.boundary, device
    )
    return grf.cpu().numpy(), np.asarray(seeds, dtype=np.uint64)


def poisson_fields(
    cfg: PoissonConfig, split: str, indices: np.ndarray, device: torch.device
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Forcings ``f`` and Dirichlet data ``g`` of samples ``indices`` of ``split``.

    Returns ``f`` (B, s, s) and ``g`` (B, s, s, zero interior) in float64, already rounded to
    the storage dtype (the stored fields are exactly the ones solved), and the forcing seeds
    (B,) uint64 (those of the boundary data when the forcing is constant).
    """
    s, batch, store = cfg.resolution, len(indices), np.dtype(cfg.storage_dtype)
    fc, dc = cfg.forcing, cfg.dirichlet
    seeds = np.zeros(batch, dtype=np.uint64)
    if dc.kind == "random":
        field = RandomField(alpha=dc.alpha, tau=dc.tau, boundary=dc.boundary)
        grf, seeds = random_fields(cfg, split, STREAM_DIRICHLET, field, indices, device)
        g = boundary_trace(dc.value * grf)
    else:
        g = np.zeros((batch, s, s))
    if fc.kind == "random":
        grf, seeds = random_fields(cfg, split, STREAM_FORCING, fc.field(), indices, device)
        f = fc.value * grf
    else:
        f = np.full((batch, s, s), fc.value)
    rounded = (x.astype(store).astype(np.float64) for x in (f, g))
    return *rounded, seeds


def unit_memory(cfg: PoissonConfig, batch: int) -> float:
    """Peak bytes of a work unit of ``batch`` samples: about 100 bytes per sample and node
    (loads, solutions, transforms; measured, benchmarks/unit_memory.py), plus the one SuperLU
    factor for ``direct``."""
    s = cfg.resolution
    factor = superlu_bytes((s - 2) ** 2) if choose_method(cfg) == "direct" else 0.0
    return factor + 100.0 * s * s * batch


def solve_unit(
    cfg: PoissonConfig,
    split: str,
    start: int,
    stop: int,
    device: torch.device,
    factor: SharedFactor,
) -> dict[str, np.ndarray]:
    """Generate and solve samples ``start:stop`` of ``split``; arrays ready to store."""
    indices = np.arange(start, stop)
    f, g, seeds = poisson_fields(cfg, split, indices, device)
    u, info = solve_poisson(f, g, choose_method(cfg), factor)
    check_solves(info, u, cfg.solver.tol, split, start)
    store = cfg.storage_dtype
    return {
        "f": f.astype(store) if cfg.forcing.kind == "random" else f[0].astype(store),
        "g": g.astype(store) if cfg.dirichlet.kind == "random" else g[0].astype(store),
        "u": u[:, None].astype(store),
        **diagnostic_arrays(info, indices, indices, seeds),
    }


def recipe(cfg: PoissonConfig, device: torch.device, progress: bool = True) -> Recipe:
    """The Poisson problem as a :class:`~datagen.core.recipe.Recipe` (one SuperLU factor per
    run)."""
    s = cfg.resolution
    factor = SharedFactor(s)
    layout = FileLayout(
        fields=[
            FieldSpec("f", sample_varying=cfg.forcing.kind == "random"),
            FieldSpec("g", sample_varying=cfg.dirichlet.kind == "random"),
            FieldSpec("u", time_varying=True),
        ],
        size=(s, s),
        parameters={
            "forcing_value": cfg.forcing.value,
            "dirichlet_value": cfg.dirichlet.value if cfg.dirichlet.kind == "random" else 0.0,
        },
    )
    return Recipe(
        config=cfg,
        solve_unit=lambda split, start, stop: solve_unit(cfg, split, start, stop, device, factor),
        outputs=[OutputDataset(Path(cfg.output.dir), layout)],
        unit_memory=lambda batch: unit_memory(cfg, batch),
        provenance={"solver_tol": cfg.solver.tol},
    )
