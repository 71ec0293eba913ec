"""1-D semilinear datasets: random initial data in, trajectories out (``ks`` and ``kdv``).

Trajectory ``i`` of a split draws its initial data, and its domain length and record interval
when they are jittered, from its own seeds ``(seed, split, i)``, so it is the same alone, in
any batch and after a resume. A work unit of ``batch_size`` trajectories is integrated together
(:func:`datagen.problems.semilinear.physics.simulate`). Stored in the trajectory format: ``u``
(N, R, n) with the nominal record times in ``dimensions/time`` and the nodes of the nominal
domain in ``dimensions/x``; per trajectory, beyond the format's diagnostics, its
``domain_length`` and ``record_interval``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch

from datagen.core.fields import periodic_field_1d, sample_seed
from datagen.core.progress import progress_bar
from datagen.core.recipe import STREAM_COEFFICIENT, STREAM_FORCING, OutputDataset, Recipe, stream
from datagen.core.schema import TRAJECTORY_FORMAT, FieldSpec, FileLayout
from datagen.problems.semilinear.config import SemilinearConfig
from datagen.problems.semilinear.physics import Equation, simulate

STREAM_INITIAL, STREAM_JITTER = STREAM_COEFFICIENT, STREAM_FORCING
PER_SAMPLE = {"domain_length": np.float64, "record_interval": np.float64}


def initial_data(
    cfg: SemilinearConfig, split: str, indices: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Initial values (B, n) float64 of trajectories ``indices`` and their seeds (B,) uint64."""
    n, init = cfg.resolution, cfg.initial
    seeds = [sample_seed(cfg.seed, stream(split, STREAM_INITIAL), int(i)) for i in indices]
    j = np.arange(n) / n  # x / L: the sines do not depend on the length
    if init.kind == "grf":
        u0 = init.scale * periodic_field_1d(seeds, n, init.alpha, init.tau).numpy()
    elif init.kind == "kassam_trefethen":
        x = 2 * math.pi * 16 * j  # L = 32 pi
        u0 = np.broadcast_to(np.cos(x / 16) * (1 + np.sin(x / 16)), (len(indices), n)).copy()
    else:
        u0 = np.empty((len(indices), n))
        for row, seed in enumerate(seeds):
            rng = np.random.default_rng(seed)
            amplitude = rng.uniform(-init.amplitude, init.amplitude, init.modes)
            phase = rng.uniform(0.0, 2 * math.pi, init.modes)
            wavenumber = rng.choice(np.asarray(init.wavenumbers), init.modes)
            waves = amplitude[:, None] * np.sin(
                2 * math.pi * wavenumber[:, None] * j + phase[:, None]
            )
            u0[row] = waves.sum(axis=0)
    return u0, np.asarray(seeds, dtype=np.uint64)


def jittered(
    cfg: SemilinearConfig, split: str, indices: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Each trajectory's domain length and record interval (B,) float64."""
    d, t = cfg.domain, cfg.time
    lengths, intervals = np.full(len(indices), d.length), np.full(len(indices), t.interval)
    if d.length_jitter or t.span_jitter:
        for row, i in enumerate(indices):
            rng = np.random.default_rng(sample_seed(cfg.seed, stream(split, STREAM_JITTER), int(i)))
            lengths[row] *= 1 + rng.uniform(-d.length_jitter, d.length_jitter)
            intervals[row] *= 1 + rng.uniform(-t.span_jitter, t.span_jitter)
    return lengths, intervals


def solve_unit(
    cfg: SemilinearConfig,
    equation: Equation,
    split: str,
    start: int,
    stop: int,
    device: torch.device,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """Integrate trajectories ``start:stop`` of ``split``; fields and diagnostics to store."""
    indices = np.arange(start, stop)
    u0, seeds = initial_data(cfg, split, indices)
    lengths, intervals = jittered(cfg, split, indices)
    t = cfg.time
    dt = torch.from_numpy(intervals / t.steps_per_record)
    precision = getattr(torch, cfg.precision)
    bar = progress_bar(t.records, desc=f"  {split} {start}..{stop - 1}", unit="record",
                       enabled=progress, nested=True)  # fmt: skip
    began = time.perf_counter()
    with bar:
        frames, courant = simulate(
            torch.from_numpy(u0).to(device, precision),
            equation,
            torch.from_numpy(lengths),
            dt,
            t.warmup_steps,
            t.steps_per_record,
            t.records,
            labels=[f"{split} sample {i}" for i in indices],
            on_record=lambda _: bar.update(),
        )
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = (time.perf_counter() - began) / len(indices)
    steps = t.warmup_steps + (t.records - 1) * t.steps_per_record
    return {
        "u": frames.cpu().numpy().astype(cfg.storage_dtype),
        "steps": np.full(len(indices), steps, dtype=np.int64),
        "max_cfl": courant.numpy(),
        "seconds": np.full(len(indices), seconds),
        "method": np.array([f"etdrk4/{cfg.precision}"] * len(indices)),
        "sample_index": indices.astype(np.int64),
        "seed": seeds,
        "domain_length": lengths,
        "record_interval": intervals,
    }


def unit_memory(cfg: SemilinearConfig, batch: int) -> float:
    """Peak bytes of a work unit of ``batch`` trajectories (measured, benchmarks/unit_memory.py):
    the records about six times over in the wider of the solver's and the storage's dtype
    (recorded, stacked, converted, written, read back) and the solver's spectral arrays."""
    n = cfg.resolution
    itemsize = 8 if "float64" in (cfg.precision, cfg.storage_dtype) else 4
    return (6.0 * itemsize * cfg.time.records * n + 64.0 * 16 * n) * batch


def build_recipe(
    cfg: SemilinearConfig,
    device: torch.device,
    progress: bool,
    equation: Equation,
    parameters: dict[str, float],
) -> Recipe:
    """The recipe of a 1-D semilinear problem with its ``equation`` and its ``parameters``
    (stored as the files' simulation parameters, from which ``verify`` rebuilds the equation)."""
    t, n, d = cfg.time, cfg.resolution, cfg.domain
    layout = FileLayout(
        fields=[FieldSpec("u", time_varying=True)],
        size=(n,),
        steps=t.records,
        attrs={
            "scheme": "etdrk4",
            "dt": t.dt,
            "steps_per_record": t.steps_per_record,
            "warmup_steps": t.warmup_steps,
        },
        parameters={
            **parameters,
            "domain_length": d.length,
            "length_jitter": d.length_jitter,
            "span_jitter": t.span_jitter,
        },
        bc_type="PERIODIC",
        time=np.asarray(t.record_times()),
        coords=np.arange(n) * d.length / n,
        file_format=TRAJECTORY_FORMAT,
        per_sample=PER_SAMPLE,
    )

    def notes(diagnostics: dict[str, np.ndarray]) -> str:
        return (
            f"{int(diagnostics['steps'].max())} steps/trajectory, "
            f"Courant number <= {diagnostics['max_cfl'].max():.2g}"
        )

    return Recipe(
        config=cfg,
        solve_unit=lambda split, a, b: solve_unit(cfg, equation, split, a, b, device, progress),
        outputs=[OutputDataset(Path(cfg.output.dir), layout)],
        unit_memory=lambda batch: unit_memory(cfg, batch),
        provenance={"initial_kind": cfg.initial.kind},
        notes=notes,
    )
