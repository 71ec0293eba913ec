"""Darcy datasets: random coefficients (and forcings) in, solutions out.

Sample ``i`` of a split draws its coefficient (and a random forcing) from its own seeds
``(seed, split, i)``, so it is the same alone, in any batch and after a resume. A work unit of
``batch_size`` samples is solved by the configured method (:func:`solve_darcy`). Stored: ``a``
(N, s, s), ``f`` ((N, s, s), or (s, s) when constant) and ``u`` (N, 1, s, s), plus the
diagnostics of :func:`datagen.core.recipe.diagnostic_arrays` (``seed``: the coefficient's).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

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
from datagen.linalg.krylov import SolveInfo
from datagen.linalg.sorting import solve_positions
from datagen.problems.darcy.config import Coefficient, DarcyConfig
from datagen.problems.darcy.physics import solve_batched, solve_direct, solve_skr

AUTO_PCG_FROM = 129  # CPU: SuperLU is faster below this size (benchmarks/RESULTS.md)


def coefficient_fields(
    seed: int,
    c: Coefficient,
    s: int,
    split: str,
    indices: np.ndarray,
    device: torch.device,
) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients ``a`` (B, s, s) float64 of the family ``c`` for samples ``indices`` of
    ``split`` (random stream of the coefficient), and their seeds (B,) uint64."""
    seeds = [sample_seed(seed, stream(split, STREAM_COEFFICIENT), int(i)) for i in indices]
    field = gaussian_random_field(seeds, s, c.alpha, c.tau, c.boundary, device)
    if c.family == "piecewise_constant":
        a = torch.where(field >= 0, field.new_tensor(c.high), field.new_tensor(c.low))
    else:
        a = torch.exp(field)
    return a.cpu().numpy(), np.asarray(seeds, dtype=np.uint64)


def darcy_fields(
    cfg: DarcyConfig, split: str, indices: np.ndarray, device: torch.device
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coefficients and forcings of samples ``indices`` of ``split``.

    Returns ``a`` (B, s, s) and ``f`` (B, s, s) in float64, already rounded to the storage dtype
    (so the stored fields are exactly the ones solved), and the coefficient seeds (B,) uint64.
    """
    s, store = cfg.resolution, np.dtype(cfg.storage_dtype)
    a, seeds = coefficient_fields(cfg.seed, cfg.coefficient, s, split, indices, device)
    a = a.astype(store).astype(np.float64)
    g = cfg.forcing
    if g.kind == "constant":
        f = np.full((len(indices), s, s), g.value)
    else:
        fseeds = [sample_seed(cfg.seed, stream(split, STREAM_FORCING), int(i)) for i in indices]
        f = g.value * gaussian_random_field(fseeds, s, g.alpha, g.tau, g.boundary, device)
        f = f.cpu().numpy()
    return a, f.astype(store).astype(np.float64), seeds


def choose_method(cfg: DarcyConfig, device: torch.device) -> str:
    """Resolve ``solver.method: auto``: batched PCG on a GPU or from 129 x 129 nodes up."""
    if cfg.solver.method != "auto":
        return cfg.solver.method
    return "pcg" if device.type == "cuda" or cfg.resolution >= AUTO_PCG_FROM else "direct"


def unit_memory(cfg: DarcyConfig, device: torch.device, batch: int) -> float:
    """Peak bytes of a work unit of ``batch`` samples (measured, benchmarks/unit_memory.py).

    Per sample and node: about 300 bytes for batched CG with the float32 V-cycle (CG's vectors
    in float64, the hierarchy, the stored fields; 400 with a float64 cycle, 400 more for PyAMG's
    hierarchies); SKR keeps per chain its recycled vectors and 40 search directions with their
    images; SuperLU factors one sample at a time.
    """
    sol, nodes = cfg.solver, cfg.resolution**2
    method = choose_method(cfg, device)
    if method == "direct":
        return superlu_bytes((cfg.resolution - 2) ** 2) + 64.0 * nodes * batch
    per_sample = (300.0 if sol.cycle_precision == "float32" else 400.0) + 400.0 * (
        sol.preconditioner == "pyamg"
    )
    if method == "pcg":
        return per_sample * nodes * batch
    chains = min(sol.chains, batch)
    return chains * (2 * sol.recycle + 92) * 8.0 * nodes + 200.0 * nodes * batch


def solve_darcy(
    cfg: DarcyConfig, a: np.ndarray, f: np.ndarray, device: torch.device
) -> tuple[np.ndarray, list[SolveInfo], np.ndarray]:
    """Solve the systems of one unit with the configured method.

    Returns ``u`` (B, s, s) float64, one :class:`SolveInfo` per sample and the solve order
    (B,) (sorted for ``skr``, else the identity).
    """
    method, sol = choose_method(cfg, device), cfg.solver
    order = np.arange(len(a))
    if method == "direct":
        solved = [solve_direct(a[k], f[k], cfg.face_average) for k in range(len(a))]
        return np.stack([u for u, _ in solved]), [info for _, info in solved], order
    cycle = getattr(torch, sol.cycle_precision)
    if method == "skr":
        return solve_skr(
            a, f, cfg.face_average, sol.preconditioner, sol.tol, sol.maxiter, cycle,
            sol.chains, sol.recycle, sol.warm_start, sol.sort, device,
        )  # fmt: skip
    at, ft = (torch.from_numpy(v).to(device) for v in (a, f))
    u, info = solve_batched(
        at, ft, cfg.face_average, sol.preconditioner, sol.tol, sol.maxiter, cycle
    )
    return u, info, order


def solve_unit(
    cfg: DarcyConfig, split: str, start: int, stop: int, device: torch.device
) -> dict[str, np.ndarray]:
    """Generate and solve samples ``start:stop`` of ``split``; arrays ready to store."""
    indices = np.arange(start, stop)
    a, f, seeds = darcy_fields(cfg, split, indices, device)
    u, info, order = solve_darcy(cfg, a, f, device)
    check_solves(info, u, cfg.solver.tol, split, start)
    store = cfg.storage_dtype
    unit = {
        "a": a.astype(store),
        "f": f.astype(store),
        "u": u[:, None].astype(store),
        **diagnostic_arrays(info, indices, start + solve_positions(order), seeds),
    }
    if cfg.forcing.kind == "constant":
        unit["f"] = unit["f"][0]
    return unit


def recipe(cfg: DarcyConfig, device: torch.device, progress: bool = True) -> Recipe:
    """The Darcy problem as a :class:`~datagen.core.recipe.Recipe`."""
    c, g, s = cfg.coefficient, cfg.forcing, cfg.resolution
    layout = FileLayout(
        fields=[
            FieldSpec("a"),
            FieldSpec("f", sample_varying=g.kind == "random"),
            FieldSpec("u", time_varying=True),
        ],
        size=(s, s),
        attrs={"face_average": cfg.face_average},
        parameters={
            "coefficient_alpha": c.alpha,
            "coefficient_tau": c.tau,
            "forcing_value": g.value,
        },
    )
    return Recipe(
        config=cfg,
        solve_unit=lambda split, start, stop: solve_unit(cfg, split, start, stop, device),
        outputs=[OutputDataset(Path(cfg.output.dir), layout)],
        unit_memory=lambda batch: unit_memory(cfg, device, batch),
        provenance={"solver_tol": cfg.solver.tol},
    )
