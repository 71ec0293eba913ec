"""Navier-Stokes datasets: random initial vorticities, batched solves, trajectory files.

Sample ``i`` of a split starts from the periodic GRF drawn from its own seed ``(seed, split, i)``
(:mod:`datagen.core.fields`), so it is the same alone, in any batch, after a resume, and (to
round-off) on any device. Trajectories are solved on the ``resolution`` grid and stored at
``store_resolution`` by spectral truncation
(:func:`datagen.problems.navier_stokes.physics.truncate`).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datagen.core.fields import gaussian_random_field, sample_seed
from datagen.core.progress import progress_bar
from datagen.core.recipe import OutputDataset, Recipe, stream
from datagen.core.schema import TRAJECTORY_FORMAT, FieldSpec, FileLayout
from datagen.problems.navier_stokes import physics as ns
from datagen.problems.navier_stokes.config import NavierStokesConfig

STREAM_INITIAL = 0


def initial_vorticity(
    cfg: NavierStokesConfig, split: str, indices: np.ndarray, device: torch.device
) -> tuple[torch.Tensor, np.ndarray]:
    """Initial vorticities (B, n, n) in the solver precision, and their seeds (B,) uint64."""
    n = cfg.resolution
    seeds = [sample_seed(cfg.seed, stream(split, STREAM_INITIAL), int(i)) for i in indices]
    c = cfg.initial
    field = gaussian_random_field(seeds, n + 1, c.alpha, c.tau, "periodic", device)
    w0 = c.scale * field[..., :-1, :-1]
    return w0.to(getattr(torch, cfg.precision)), np.asarray(seeds, dtype=np.uint64)


def forcing_field(cfg: NavierStokesConfig, n: int, **like: Any) -> torch.Tensor:
    """The configured vorticity source on the ``n x n`` grid: (n, n)."""
    g = cfg.forcing
    if g.kind == "fno":
        return ns.fno_forcing(n, g.amplitude, g.wavenumber, **like)
    if g.kind == "kolmogorov":
        return ns.kolmogorov_forcing(n, g.amplitude, g.wavenumber, **like)
    return torch.zeros(n, n, **like)


def solve_unit(
    cfg: NavierStokesConfig,
    split: str,
    start: int,
    stop: int,
    device: torch.device,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Solve trajectories ``start:stop`` of ``split``; fields and diagnostics ready to store."""
    indices = np.arange(start, stop)
    w0, seeds = initial_vorticity(cfg, split, indices, device)
    forcing = forcing_field(cfg, cfg.resolution, dtype=w0.dtype, device=device)
    records = cfg.time.record_times()
    bar = progress_bar(
        len(records),
        desc=f"  {split} {start}..{stop - 1}",
        unit="record",
        enabled=progress,
        nested=True,
    )
    began = time.perf_counter()
    with bar:
        out = ns.simulate(
            w0,
            forcing,
            nu=cfg.viscosity,
            dt=cfg.time.dt,
            record_times=records,
            drag=cfg.drag,
            scheme=cfg.time.scheme,
            adaptive=cfg.time.adaptive,
            cfl_max=cfg.time.cfl_max,
            store_size=cfg.store_resolution,
            keep_fine=cfg.store_fine,
            labels=[f"{split} sample {i}" for i in indices],
            on_record=lambda _: bar.update(),
        )
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - began) / len(indices)
    store = cfg.storage_dtype
    unit = {
        "vorticity": out.frames.cpu().numpy().astype(store),
        "forcing": ns.truncate(forcing[None], cfg.store_resolution)[0].cpu().numpy().astype(store),
        "steps": out.steps.numpy().astype(np.int64),
        "max_cfl": out.max_cfl.numpy().astype(np.float64),
        "seconds": np.full(len(indices), seconds),
        "method": np.array([cfg.time.scheme] * len(indices)),
        "sample_index": indices.astype(np.int64),
        "seed": seeds,
    }
    if out.fine is not None:
        unit["vorticity_fine"] = out.fine.cpu().numpy().astype(store)
        unit["forcing_fine"] = forcing.cpu().numpy().astype(store)
    return unit


def unit_memory(cfg: NavierStokesConfig, batch: int) -> float:
    """Peak bytes of a work unit of ``batch`` trajectories (measured,
    benchmarks/unit_memory.py): about 150 bytes per node of the solve grid in float32 (twice in
    float64) for the spectral state and stages, and the stored records about seven times over
    (recorded, stacked, converted, written and read back)."""
    solve = 150.0 * (2 if cfg.precision == "float64" else 1) * cfg.resolution**2
    itemsize = 8 if cfg.storage_dtype == "float64" else 4
    stored = cfg.store_resolution**2 + cfg.store_fine * cfg.resolution**2
    records = len(cfg.time.record_times())
    return (solve + 7.0 * records * stored * itemsize) * batch


def fine_root(cfg: NavierStokesConfig) -> Path:
    """Directory of the solve-grid copy (``store_fine``): ``<output.dir>_<resolution>``."""
    return Path(f"{cfg.output.dir.rstrip('/')}_{cfg.resolution}")


def recipe(cfg: NavierStokesConfig, device: torch.device, progress: bool = True) -> Recipe:
    """The Navier-Stokes problem as a :class:`~datagen.core.recipe.Recipe`."""
    records = np.asarray(cfg.time.record_times())

    def layout(size: int) -> FileLayout:
        g = cfg.forcing
        return FileLayout(
            fields=[
                FieldSpec("vorticity", time_varying=True),
                FieldSpec("forcing", sample_varying=False),
            ],
            size=(size, size),
            steps=len(records),
            attrs={
                "scheme": cfg.time.scheme,
                "solve_resolution": cfg.resolution,
                "dt": cfg.time.dt,
            },
            parameters={
                "viscosity": cfg.viscosity,
                "drag": cfg.drag,
                "forcing_amplitude": g.amplitude if g.kind != "none" else 0.0,
                "forcing_wavenumber": float(g.wavenumber),
            },
            bc_type="PERIODIC",
            time=records,
            coords=np.arange(size) / size,
            file_format=TRAJECTORY_FORMAT,
        )

    outputs = [
        OutputDataset(
            Path(cfg.output.dir),
            layout(cfg.store_resolution),
            {"vorticity": "vorticity", "forcing": "forcing"},
            ["vorticity"],
        )
    ]
    if cfg.store_fine:
        outputs.append(
            OutputDataset(
                fine_root(cfg),
                layout(cfg.resolution),
                {"vorticity": "vorticity_fine", "forcing": "forcing_fine"},
                ["vorticity"],
            )
        )

    def notes(diagnostics: dict[str, np.ndarray]) -> str:
        return (
            f"max CFL {diagnostics['max_cfl'].max():.2f}, "
            f"{int(diagnostics['steps'].max())} steps/trajectory"
        )

    return Recipe(
        config=cfg,
        solve_unit=lambda split, a, b: solve_unit(cfg, split, a, b, device, progress),
        outputs=outputs,
        unit_memory=lambda batch: unit_memory(cfg, batch),
        provenance={"forcing_kind": cfg.forcing.kind},
        notes=notes,
    )
