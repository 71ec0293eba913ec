"""Generate a dataset from a validated config: sample, solve, store; resumable.

Work is cut into units of ``batch_size`` consecutive samples of one split. Each finished unit is
saved atomically as a shard in ``DIR/.partial/``; a re-run with the same config skips finished
units, so a killed run resumes and gives the same arrays (every sample is a pure function of the
config, the split and its index). When all units are done, each split file is written under a
temporary name and renamed into place, then ``stats.yaml`` and ``config.yaml``, and the shards are
removed.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from tqdm import tqdm

import datagen
from datagen.config import dump_config
from datagen.darcy import SolveInfo, solve_batched, solve_direct, solve_skr
from datagen.errors import SolverFailure, UserError
from datagen.fields import gaussian_random_field, sample_seed
from datagen.schema import (
    FORMAT,
    FORMATS,
    SPLITS,
    FieldSpec,
    SplitWriter,
    field_statistics,
    split_file,
    write_stats,
    write_text_atomic,
)
from datagen.sorting import solve_positions
from datagen.spec import Coefficient, DatagenConfig, GenerationConfig

PARTIAL = ".partial"
AUTO_PCG_FROM = 129  # CPU: SuperLU is faster below this size (benchmarks/RESULTS.md)
STREAM_COEFFICIENT, STREAM_FORCING = 0, 1


@dataclass
class SplitSummary:
    """What one split of a finished generation holds (``notes``: problem-specific facts)."""

    split: str
    samples: int
    seconds_per_sample: float
    worst_residual: float
    methods: dict[str, int]
    path: Path
    notes: str = ""


@dataclass
class Output:
    """One dataset a recipe writes: its directory, file layout, and where its fields come from.

    Attributes:
        root: the dataset directory.
        writer_args: ``split -> SplitWriter`` keyword arguments (all but path and n).
        fields: stored field name -> key of the unit arrays holding it.
        stats_fields: fields whose train statistics go into ``stats.yaml``.
    """

    root: Path
    writer_args: Callable[[str], dict[str, Any]]
    fields: dict[str, str]
    stats_fields: list[str]


@dataclass
class Recipe:
    """How one problem family plugs into the generic, resumable driver :func:`run_recipe`.

    Attributes:
        name: dataset name (files ``NAME_SPLIT.hdf5``).
        sizes: samples per split; batch_size: samples per work unit (one shard file).
        solve_unit: ``(split, start, stop) -> arrays`` of that unit: the fields and the
            per-sample diagnostics of the file format.
        outputs: the datasets written from the shards (the first is ``output.dir``).
        notes: ``diagnostics of a whole split -> str`` for the summary table.
    """

    name: str
    sizes: dict[str, int]
    batch_size: int
    solve_unit: Callable[[str, int, int], dict[str, np.ndarray]]
    outputs: list[Output]
    notes: Callable[[dict[str, np.ndarray]], str] = lambda diagnostics: ""


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when available, else CPU; asking for CUDA without one is a UserError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError(
            "device: 'cuda' was asked for but no CUDA device is available; use cpu or auto"
        )
    return torch.device(name)


def stream(split: str, kind: int) -> int:
    """Random stream id of (split, kind): splits draw independent samples."""
    return 2 * SPLITS.index(split) + kind


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
    cfg: DatagenConfig, split: str, indices: np.ndarray, device: torch.device
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


def solve_darcy(
    cfg: DatagenConfig, a: np.ndarray, f: np.ndarray, device: torch.device
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


def choose_method(cfg: DatagenConfig, device: torch.device) -> str:
    """Resolve ``solver.method: auto``: batched PCG on a GPU or from 129 x 129 nodes up."""
    if cfg.solver.method != "auto":
        return cfg.solver.method
    return "pcg" if device.type == "cuda" or cfg.resolution >= AUTO_PCG_FROM else "direct"


def solve_unit(cfg: DatagenConfig, split: str, start: int, stop: int, device: torch.device) -> dict:
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


def diagnostic_arrays(
    info: list[SolveInfo], indices: np.ndarray, positions: np.ndarray, seeds: np.ndarray
) -> dict[str, np.ndarray]:
    """Per-sample provenance of one unit (every steady problem stores the same ones).

    Args:
        info: one :class:`SolveInfo` per sample, in sample order.
        indices: (B,) sample indices; positions: (B,) each sample's place in the solve order
            (the sorted order of SKR; the indices themselves when nothing is sorted).
        seeds: (B,) the seeds the samples were drawn from.
    """
    return {
        "iterations": np.array([r.iterations for r in info], dtype=np.int32),
        "residual": np.array([r.residual for r in info]),
        "seconds": np.array([r.seconds for r in info]),
        "method": np.array([r.method for r in info]),
        "sort_position": np.asarray(positions, dtype=np.int64),
        "sample_index": np.asarray(indices, dtype=np.int64),
        "seed": np.asarray(seeds, dtype=np.uint64),
    }


def check_solves(info: list[SolveInfo], u: np.ndarray, tol: float, split: str, start: int):
    """Raise :class:`SolverFailure` for a non-finite solution or a residual above ``tol``."""
    for k, record in enumerate(info):
        if not np.isfinite(record.residual) or not np.all(np.isfinite(u[k])):
            raise SolverFailure(f"{split} sample {start + k}: the solve produced NaN or inf")
        if record.residual > tol:
            raise SolverFailure(
                f"{split} sample {start + k}: residual {record.residual:.2e} above tol "
                f"{tol:.0e} after a direct solve (ill-conditioned system?)"
            )


def darcy_recipe(cfg: DatagenConfig, device: torch.device) -> Recipe:
    """The Darcy problem as a :class:`Recipe`."""
    c, g = cfg.coefficient, cfg.forcing
    s = cfg.resolution

    def writer_args(split: str) -> dict[str, Any]:
        return dict(
            fields=[
                FieldSpec("a"),
                FieldSpec("f", sample_varying=g.kind == "random"),
                FieldSpec("u", time_varying=True),
            ],
            steps=1,
            size=(s, s),
            dataset_name=cfg.name,
            attrs={"problem": cfg.problem, "split": split, "face_average": cfg.face_average},
            parameters={
                "coefficient_alpha": c.alpha,
                "coefficient_tau": c.tau,
                "forcing_value": g.value,
            },
            provenance=provenance(cfg, solver_tol=cfg.solver.tol),
            dtype=cfg.storage_dtype,
        )

    fields = {"a": "a", "f": "f", "u": "u"}
    return Recipe(
        name=cfg.name,
        sizes=cfg.samples.model_dump(),
        batch_size=cfg.batch_size,
        solve_unit=lambda split, start, stop: solve_unit(cfg, split, start, stop, device),
        outputs=[Output(Path(cfg.output.dir), writer_args, fields, list(fields))],
    )


def provenance(cfg: GenerationConfig, **extra: Any) -> dict[str, Any]:
    """Attributes of a file's ``provenance/`` group."""
    return {
        "config": dump_config(cfg),
        "package_version": datagen.__version__,
        "seed": cfg.seed,
        "created_unix": time.time(),
        **extra,
    }


def _comparable(cfg: GenerationConfig) -> str:
    """The config as it decides the data (the overwrite flag does not)."""
    data = cfg.model_dump(mode="json")
    data["output"].pop("overwrite")
    return yaml.safe_dump(data, sort_keys=True)


def prepare_output(cfg: GenerationConfig, roots: list[Path] | None = None) -> Path:
    """Check the output directory before any work; returns the shard directory.

    ``roots``: every dataset directory the run writes (default: ``output.dir``).
    """
    root = Path(cfg.output.dir)
    existing = [
        path
        for target in roots or [root]
        for path in [*(split_file(target, cfg.name, s) for s in SPLITS), target / "config.yaml"]
    ]
    if not cfg.output.overwrite and any(p.exists() for p in existing):
        raise UserError(
            f"{root} already holds a dataset; "
            "pass --overwrite (or output.overwrite=true) to replace it"
        )
    work = root / PARTIAL
    try:
        work.mkdir(parents=True, exist_ok=True)
        probe = work / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise UserError(f"output.dir: cannot write to {root} ({err.strerror or err})") from None
    stamp = work / "config.yaml"
    if stamp.exists() and stamp.read_text() != _comparable(cfg):
        if not cfg.output.overwrite:
            raise UserError(
                f"{work} holds an interrupted run of a different config; re-run that config to "
                "resume it, or pass --overwrite to discard it"
            )
        shutil.rmtree(work)
        work.mkdir(parents=True)
    write_text_atomic(stamp, _comparable(cfg))
    return work


def generate(cfg: GenerationConfig, progress: bool = True) -> list[SplitSummary]:
    """Run a generation end to end (or resume one); returns a summary per non-empty split."""
    device = resolve_device(cfg.device)
    if cfg.problem == "navier_stokes":
        from datagen.navier_stokes_data import navier_stokes_recipe

        recipe = navier_stokes_recipe(cfg, device, progress)
    elif cfg.problem == "helmholtz":
        from datagen.helmholtz_data import helmholtz_recipe

        recipe = helmholtz_recipe(cfg, device)
    elif cfg.problem == "poisson":
        from datagen.poisson_data import poisson_recipe

        recipe = poisson_recipe(cfg, device)
    elif cfg.problem == "heat":
        from datagen.heat_data import heat_recipe

        recipe = heat_recipe(cfg, device)
    else:
        recipe = darcy_recipe(cfg, device)
    return run_recipe(cfg, recipe, progress)


def run_recipe(cfg: GenerationConfig, recipe: Recipe, progress: bool = True) -> list[SplitSummary]:
    """The resumable driver: solve unit by unit into shards, then assemble the split files."""
    work = prepare_output(cfg, [out.root for out in recipe.outputs])
    units = [
        (split, start, min(start + recipe.batch_size, n))
        for split, n in recipe.sizes.items()
        for start in range(0, n, recipe.batch_size)
    ]
    shard = {u: work / u[0] / f"{u[1]:08d}-{u[2]:08d}.npz" for u in units}
    done = sum(u[2] - u[1] for u in units if shard[u].exists())
    total = sum(u[2] - u[1] for u in units)
    bar = tqdm(total=total, initial=done, desc=recipe.name, unit="sample", disable=not progress)
    with bar:
        for unit in units:
            if shard[unit].exists():
                continue
            arrays = recipe.solve_unit(*unit)
            shard[unit].parent.mkdir(parents=True, exist_ok=True)
            tmp = shard[unit].with_name(shard[unit].name + ".tmp.npz")
            np.savez(tmp, **arrays)
            tmp.replace(shard[unit])
            bar.update(unit[2] - unit[1])
            if "residual" in arrays:
                bar.set_postfix(worst_residual=f"{arrays['residual'].max():.1e}")
    summaries = []
    for number, out in enumerate(recipe.outputs):
        for split, n in recipe.sizes.items():
            if n > 0:
                split_units = [u for u in units if u[0] == split]
                summary = _assemble_split(recipe, out, split, n, split_units, shard)
                if number == 0:
                    summaries.append(summary)
        if recipe.sizes.get("train", 0) > 0:
            train = split_file(out.root, recipe.name, "train")
            write_stats(out.root, field_statistics(train, out.stats_fields))
        write_text_atomic(out.root / "config.yaml", dump_config(cfg))
    shutil.rmtree(work)
    return summaries


def _assemble_split(
    recipe: Recipe, out: Output, split: str, n: int, units: list, shard: dict
) -> SplitSummary:
    """Write one split file of ``out`` from its shards (temporary name, then rename)."""
    path = split_file(out.root, recipe.name, split)
    args = out.writer_args(split)
    writer = SplitWriter(path, n=n, **args)
    diagnostic_keys = [*FORMATS[args.get("file_format", FORMAT)], "method"]
    collected: dict[str, list] = {key: [] for key in diagnostic_keys}
    try:
        for unit in units:
            with np.load(shard[unit]) as data:
                arrays = {name: data[key] for name, key in out.fields.items()}
                diagnostics = {key: data[key] for key in diagnostic_keys}
            diagnostics["method"] = diagnostics["method"].astype(object)
            writer.write(unit[1], {**arrays, **diagnostics})
            for key, value in diagnostics.items():
                collected[key].extend(value)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    methods: dict[str, int] = {}
    for m in collected["method"]:
        methods[m] = methods.get(m, 0) + 1
    merged = {k: np.asarray(v) for k, v in collected.items()}
    worst = float(np.max(merged["residual"])) if "residual" in merged else float("nan")
    seconds = float(np.mean(merged["seconds"]))
    return SplitSummary(split, n, seconds, worst, methods, path, recipe.notes(merged))
