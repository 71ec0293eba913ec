"""Heat-equation datasets: random coefficient and initial condition in, trajectories out.

Sample ``i`` of a split draws its coefficient ``a`` (a Darcy family,
:func:`datagen.problems.darcy.recipe.coefficient_fields`) and its initial condition (a GRF, zero on
the boundary) from its own seeds ``(seed, split, i)``, so it is the same alone, in any batch and
after a resume. A work unit of ``batch_size`` trajectories is integrated together
(:func:`datagen.problems.heat.physics.simulate`). Stored in the trajectory format (as
Navier-Stokes): ``u`` (N, R + 1, s, s) with the record times in ``dimensions/time``, ``a`` (N, s,
s), WALL boundaries, and per trajectory ``steps``, ``max_cfl`` (here the diffusion number ``dt
max(a) / h^2``), ``seconds``, ``method`` (``scheme/preconditioner``), ``sample_index`` and ``seed``
(the coefficient's).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from datagen.core.fields import gaussian_random_field, sample_seed
from datagen.core.recipe import STREAM_FORCING, OutputDataset, Recipe, stream, superlu_bytes
from datagen.core.schema import TRAJECTORY_FORMAT, FieldSpec, FileLayout
from datagen.problems.darcy.recipe import coefficient_fields
from datagen.problems.heat.config import HeatConfig
from datagen.problems.heat.physics import diffusion_number, simulate, simulate_direct

STREAM_INITIAL = STREAM_FORCING  # the initial condition takes the forcing's stream


def heat_fields(
    cfg: HeatConfig, split: str, indices: np.ndarray, device: torch.device
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coefficients ``a`` and initial values ``u0`` (B, s, s) in float64 rounded to the storage
    dtype (``u0`` zero on the boundary), and the coefficient seeds (B,) uint64."""
    s, store = cfg.resolution, np.dtype(cfg.storage_dtype)
    a, seeds = coefficient_fields(cfg.seed, cfg.coefficient, s, split, indices, device)
    ic = cfg.initial
    useeds = [sample_seed(cfg.seed, stream(split, STREAM_INITIAL), int(i)) for i in indices]
    u0 = ic.scale * gaussian_random_field(useeds, s, ic.alpha, ic.tau, ic.boundary, device)
    u0 = u0.cpu().numpy()
    u0[..., [0, -1], :] = 0.0
    u0[..., :, [0, -1]] = 0.0
    return a.astype(store).astype(np.float64), u0.astype(store).astype(np.float64), seeds


def choose_method(cfg: HeatConfig, device: torch.device) -> str:
    """Resolve ``solver.method: auto``: SuperLU on the CPU, batched CG on a GPU."""
    if cfg.solver.method != "auto":
        return cfg.solver.method
    return "pcg" if device.type == "cuda" else "direct"


def unit_memory(cfg: HeatConfig, device: torch.device, batch: int) -> float:
    """Peak bytes of a work unit of ``batch`` trajectories (measured, benchmarks/unit_memory.py):
    per trajectory and node the records in float64 (kept three times over) and the solver's
    vectors (about 300 bytes for batched CG); SuperLU factors one trajectory at a time."""
    nodes, records = cfg.resolution**2, cfg.time.records + 1
    if choose_method(cfg, device) == "direct":
        return superlu_bytes((cfg.resolution - 2) ** 2) + (24.0 * records + 60) * nodes * batch
    return (300.0 + 32.0 * records) * nodes * batch


def solve_unit(
    cfg: HeatConfig, split: str, start: int, stop: int, device: torch.device
) -> dict[str, np.ndarray]:
    """Integrate trajectories ``start:stop`` of ``split``; fields and diagnostics to store."""
    indices = np.arange(start, stop)
    a, u0, seeds = heat_fields(cfg, split, indices, device)
    t, sol = cfg.time, cfg.solver
    at = torch.from_numpy(a).to(device)
    method = choose_method(cfg, device)
    if method == "direct":
        out = simulate_direct(
            at, torch.from_numpy(u0), t.step(), t.steps_per_record(), t.records, t.scheme,
            cfg.face_average,
        )  # fmt: skip
        solver_name = "direct-superlu"
    else:
        solver_name = sol.preconditioner
        out = simulate(
            at,
            torch.from_numpy(u0).to(device),
            t.step(),
            t.steps_per_record(),
            t.records,
            t.scheme,
            cfg.face_average,
            sol.preconditioner,
            sol.tol,
            sol.maxiter,
            getattr(torch, sol.cycle_precision),
            sol.warm_start,
            labels=[f"{split} sample {i}" for i in indices],
        )
    store = cfg.storage_dtype
    return {
        "u": out.frames.cpu().numpy().astype(store),
        "a": a.astype(store),
        "steps": out.steps.numpy(),
        "max_cfl": diffusion_number(at, t.step()).cpu().numpy(),
        "seconds": out.seconds.numpy(),
        "method": np.array(
            [
                f"{t.scheme}/{solver_name}" + (f"+direct-fallback:{n}" if n else "")
                for n in out.fallbacks.tolist()
            ]
        ),
        "sample_index": indices.astype(np.int64),
        "seed": seeds,
    }


def recipe(cfg: HeatConfig, device: torch.device, progress: bool = True) -> Recipe:
    """The heat equation as a :class:`~datagen.core.recipe.Recipe` (trajectory files)."""
    s, t = cfg.resolution, cfg.time
    times = np.asarray(t.record_times())
    layout = FileLayout(
        fields=[FieldSpec("u", time_varying=True), FieldSpec("a")],
        size=(s, s),
        steps=len(times),
        attrs={"scheme": t.scheme, "dt": t.step(), "face_average": cfg.face_average},
        parameters={"coefficient_alpha": cfg.coefficient.alpha, "end_time": t.end},
        time=times,
        file_format=TRAJECTORY_FORMAT,
    )

    def notes(diagnostics: dict[str, np.ndarray]) -> str:
        return (
            f"{int(diagnostics['steps'].max())} steps/trajectory, "
            f"diffusion number dt a/h^2 <= {diagnostics['max_cfl'].max():.3g}"
        )

    return Recipe(
        config=cfg,
        solve_unit=lambda split, start, stop: solve_unit(cfg, split, start, stop, device),
        outputs=[OutputDataset(Path(cfg.output.dir), layout)],
        unit_memory=lambda batch: unit_memory(cfg, device, batch),
        provenance={"solver_tol": cfg.solver.tol},
        notes=notes,
    )
