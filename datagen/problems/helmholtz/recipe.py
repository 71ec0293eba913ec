"""Helmholtz datasets: wave number fields in, complex wave fields out (Sorting Krylov Recycling).

Each work unit of ``batch_size`` samples is solved in one of three ways (``solver.method``):

- ``skr``: sort the unit's wave number fields (:func:`datagen.linalg.sorting.sort_fields`), cut the
  order into ``chains`` chains (:func:`datagen.linalg.sorting.chain_schedule`) and advance them as
  one batch: every system is solved by GCRO-DR (:func:`datagen.linalg.gcrodr.gcrodr`) preconditioned
  by a shifted-Laplacian V-cycle, starting from the previous solution of its chain and recycling its
  subspace;
- ``gmres``: batched GMRES(m) with the same preconditioner from a zero start, in index order;
- ``direct``: SciPy SuperLU per sample.

A sample that misses the tolerance is solved directly (method ``direct-fallback``). Stored per
sample: ``k`` (the wave number), ``u_re`` and ``u_im`` (the solution), and ``f`` (the source;
one field when it is the same for every sample), plus the diagnostics of
:func:`datagen.core.recipe.diagnostic_arrays` with ``sort_position`` the place of each sample in
its unit's solve order (offset by the unit's start).
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
from datagen.linalg.chains import solve_chains as run_chains
from datagen.linalg.gcrodr import gcrodr
from datagen.linalg.krylov import SolveInfo
from datagen.linalg.sorting import solve_positions, sort_fields
from datagen.problems.helmholtz.config import HelmholtzConfig
from datagen.problems.helmholtz.physics import (
    HelmholtzOperator,
    gaussian_source,
    load,
    shifted_laplace_multigrid,
    solve_direct,
    wavenumber,
)


def choose_method(cfg: HelmholtzConfig, device: torch.device) -> str:
    """Resolve ``solver.method: auto``: ``skr`` on a GPU, ``direct`` (SuperLU) on the CPU."""
    if cfg.solver.method != "auto":
        return cfg.solver.method
    return "skr" if device.type == "cuda" else "direct"


KRYLOV_WORKSPACE = 4e8  # bytes GMRES / SKR hold at any size (measured at 129^2)


def unit_memory(cfg: HelmholtzConfig, device: torch.device, batch: int) -> float:
    """Peak bytes of a work unit of ``batch`` samples (complex128; measured,
    benchmarks/unit_memory.py): GMRES holds for every system its Krylov basis and the
    preconditioned one (``2 restart`` vectors); SKR does so per chain, with the recycled
    vectors, and keeps about 2.7 kB per sample and node; both hold about 0.4 GB more at any size
    (measured at 129^2); SuperLU factors one sample at a time."""
    sol, nodes = cfg.solver, cfg.resolution**2
    method = choose_method(cfg, device)
    if method == "direct":
        return superlu_bytes(nodes, complex_values=True) + 100.0 * nodes * batch
    vectors = 2 * sol.restart + 20
    if method == "gmres":
        return KRYLOV_WORKSPACE + 2.25 * vectors * 16.0 * nodes * batch
    chains = min(sol.chains, batch)
    krylov = 1.2 * (vectors + 3 * sol.recycle) * 16.0 * nodes * chains
    return KRYLOV_WORKSPACE + krylov + 2700.0 * nodes * batch


def helmholtz_fields(
    cfg: HelmholtzConfig, split: str, indices: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Wave numbers ``k`` (B, s, s) and sources ``f`` (B, s, s), float64 rounded to the storage
    dtype (the stored fields are the ones solved), and the seeds (B,) uint64."""
    s, store = cfg.resolution, np.dtype(cfg.storage_dtype)
    w = cfg.wavenumber
    seeds = [sample_seed(cfg.seed, stream(split, STREAM_COEFFICIENT), int(i)) for i in indices]
    field = gaussian_random_field(seeds, s, w.alpha, w.tau, w.boundary)
    k = wavenumber(field, w.k0, w.eps).numpy().astype(store).astype(np.float64)
    src = cfg.source
    if src.kind == "gaussian":
        bump = gaussian_source(s, tuple(src.center), src.width).numpy()
        f = np.broadcast_to(src.value * bump, (len(indices), s, s)).copy()
    else:
        fseeds = [sample_seed(cfg.seed, stream(split, STREAM_FORCING), int(i)) for i in indices]
        grf = gaussian_random_field(fseeds, s, src.alpha, src.tau, "periodic")
        f = src.value * grf.numpy()
    return k, f.astype(store).astype(np.float64), np.asarray(seeds, dtype=np.uint64)


def solve_chains(
    k: np.ndarray,
    rhs: np.ndarray,
    order: np.ndarray,
    chains: int,
    cfg: HelmholtzConfig,
    device: torch.device,
    recycle: bool,
    warm: bool,
) -> tuple[np.ndarray, list[SolveInfo]]:
    """Solve the systems along chains of ``order``: one batched GCRO-DR per step.

    Args:
        k, rhs: (N, s, s) wave numbers and loads (complex); order: (N,) the solve order.
        chains: chains advanced together; recycle / warm: carry the recycle space / the
            solution from each system to the next of its chain.

    Returns:
        ``u`` (N, s, s) complex128 and one :class:`SolveInfo` per sample (method
        ``"skr"`` or ``"gmres"``; unconverged samples are returned as they are, with their
        residual, for the caller's fallback).
    """
    sol = cfg.solver

    def system(step: np.ndarray):
        kt = torch.from_numpy(k[step]).to(device)
        pre = shifted_laplace_multigrid(kt, sol.shift, getattr(torch, sol.cycle_precision))
        return HelmholtzOperator.from_wavenumber(kt), pre, torch.from_numpy(rhs[step]).to(device)

    def krylov(op, b, x0, pre, space):
        k_max = sol.recycle if recycle else 0
        return gcrodr(op, b, x0, pre, sol.tol, sol.restart, k_max, sol.maxiter, space)

    name = "skr" if recycle else "gmres"
    u, info = run_chains(order, chains, system, krylov, name, warm)
    return u.astype(np.complex128), info


def solve_unit(
    cfg: HelmholtzConfig, split: str, start: int, stop: int, device: torch.device
) -> dict[str, np.ndarray]:
    """Generate and solve samples ``start:stop`` of ``split``; arrays ready to store."""
    indices = np.arange(start, stop)
    k, f, seeds = helmholtz_fields(cfg, split, indices)
    rhs = load(torch.from_numpy(f)).numpy()
    method = choose_method(cfg, device)
    order = np.arange(len(indices))
    if method == "direct":
        solved = [solve_direct(k[i], rhs[i]) for i in range(len(k))]
        u = np.stack([x for x, _ in solved])
        info = [i for _, i in solved]
    else:
        skr = method == "skr"
        if skr:
            order = sort_fields(k, method=cfg.solver.sort)
        chains = cfg.solver.chains if skr else len(indices)
        u, info = solve_chains(
            k, rhs, order, chains, cfg, device, skr, skr and cfg.solver.warm_start
        )
        for i, record in enumerate(info):
            if record.residual > cfg.solver.tol or not np.isfinite(record.residual):
                exact, direct = solve_direct(k[i], rhs[i])
                u[i] = exact
                info[i] = SolveInfo(
                    "direct-fallback",
                    record.iterations,
                    direct.residual,
                    record.seconds + direct.seconds,
                )
    check_solves(info, u, cfg.solver.tol, split, start)
    store = cfg.storage_dtype
    unit = {
        "k": k.astype(store),
        "f": f.astype(store) if cfg.source.kind == "random" else f[0].astype(store),
        "u_re": u.real[:, None].astype(store),
        "u_im": u.imag[:, None].astype(store),
        **diagnostic_arrays(info, indices, start + solve_positions(order), seeds),
    }
    return unit


def recipe(cfg: HelmholtzConfig, device: torch.device, progress: bool = True) -> Recipe:
    """The Helmholtz problem as a :class:`~datagen.core.recipe.Recipe`."""
    s, w, src = cfg.resolution, cfg.wavenumber, cfg.source
    layout = FileLayout(
        fields=[
            FieldSpec("k"),
            FieldSpec("f", sample_varying=src.kind == "random"),
            FieldSpec("u_re", time_varying=True),
            FieldSpec("u_im", time_varying=True),
        ],
        size=(s, s),
        attrs={"boundary": "impedance"},
        parameters={"k0": w.k0, "eps": w.eps, "source_value": src.value},
        bc_type="OPEN",
    )
    return Recipe(
        config=cfg,
        solve_unit=lambda split, start, stop: solve_unit(cfg, split, start, stop, device),
        outputs=[OutputDataset(Path(cfg.output.dir), layout)],
        unit_memory=lambda batch: unit_memory(cfg, device, batch),
        provenance={"solver_tol": cfg.solver.tol},
    )
