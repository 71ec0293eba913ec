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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml
from tqdm import tqdm

import datagen
from datagen.config import dump_config
from datagen.darcy import SolveInfo, solve_batched, solve_direct
from datagen.errors import SolverFailure, UserError
from datagen.fields import gaussian_random_field, sample_seed
from datagen.schema import (
    SPLITS,
    FieldSpec,
    SplitWriter,
    field_statistics,
    split_file,
    write_stats,
    write_text_atomic,
)
from datagen.spec import DatagenConfig

PARTIAL = ".partial"
AUTO_PCG_FROM = 129  # CPU: SuperLU is faster below this size (benchmarks/RESULTS.md)
STREAM_COEFFICIENT, STREAM_FORCING = 0, 1


@dataclass
class SplitSummary:
    """What one split of a finished generation holds."""

    split: str
    samples: int
    seconds_per_sample: float
    worst_residual: float
    methods: dict[str, int]
    path: Path


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


def darcy_fields(
    cfg: DatagenConfig, split: str, indices: np.ndarray, device: torch.device
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coefficients and forcings of samples ``indices`` of ``split``.

    Returns ``a`` (B, s, s) and ``f`` (B, s, s) in float64, already rounded to the storage dtype
    (so the stored fields are exactly the ones solved), and the coefficient seeds (B,) uint64.
    """
    s, store = cfg.resolution, np.dtype(cfg.storage_dtype)
    seeds = [sample_seed(cfg.seed, stream(split, STREAM_COEFFICIENT), int(i)) for i in indices]
    c = cfg.coefficient
    field = gaussian_random_field(seeds, s, c.alpha, c.tau, c.boundary, device)
    if c.family == "piecewise_constant":
        a = torch.where(field >= 0, field.new_tensor(c.high), field.new_tensor(c.low))
    else:
        a = torch.exp(field)
    a = a.cpu().numpy().astype(store).astype(np.float64)
    g = cfg.forcing
    if g.kind == "constant":
        f = np.full((len(indices), s, s), g.value)
    else:
        fseeds = [sample_seed(cfg.seed, stream(split, STREAM_FORCING), int(i)) for i in indices]
        f = g.value * gaussian_random_field(fseeds, s, g.alpha, g.tau, g.boundary, device)
        f = f.cpu().numpy()
    return a, f.astype(store).astype(np.float64), np.asarray(seeds, dtype=np.uint64)


def solve_darcy(
    cfg: DatagenConfig, a: np.ndarray, f: np.ndarray, device: torch.device
) -> tuple[np.ndarray, list[SolveInfo]]:
    """Solve the systems of one unit with the configured method: u (B, s, s) float64."""
    if choose_method(cfg, device) == "direct":
        solved = [solve_direct(a[k], f[k], cfg.face_average) for k in range(len(a))]
        return np.stack([u for u, _ in solved]), [info for _, info in solved]
    u, info = solve_batched(
        torch.from_numpy(a).to(device),
        torch.from_numpy(f).to(device),
        cfg.face_average,
        cfg.solver.preconditioner,
        cfg.solver.tol,
        cfg.solver.maxiter,
        getattr(torch, cfg.solver.cycle_precision),
    )
    return u.cpu().numpy(), info


def choose_method(cfg: DatagenConfig, device: torch.device) -> str:
    """Resolve ``solver.method: auto``: batched PCG on a GPU or from 129 x 129 nodes up."""
    if cfg.solver.method != "auto":
        return cfg.solver.method
    return "pcg" if device.type == "cuda" or cfg.resolution >= AUTO_PCG_FROM else "direct"


def solve_unit(cfg: DatagenConfig, split: str, start: int, stop: int, device: torch.device) -> dict:
    """Generate and solve samples ``start:stop`` of ``split``; arrays ready to store."""
    indices = np.arange(start, stop)
    a, f, seeds = darcy_fields(cfg, split, indices, device)
    u, info = solve_darcy(cfg, a, f, device)
    for k, record in enumerate(info):
        if not np.isfinite(record.residual) or not np.all(np.isfinite(u[k])):
            raise SolverFailure(f"{split} sample {start + k}: the solve produced NaN or inf")
        if record.residual > cfg.solver.tol:
            raise SolverFailure(
                f"{split} sample {start + k}: residual {record.residual:.2e} above tol "
                f"{cfg.solver.tol:.0e} after a direct solve (ill-conditioned system?)"
            )
    store = cfg.storage_dtype
    unit = {
        "a": a.astype(store),
        "f": f.astype(store),
        "u": u[:, None].astype(store),
        "iterations": np.array([r.iterations for r in info], dtype=np.int32),
        "residual": np.array([r.residual for r in info]),
        "seconds": np.array([r.seconds for r in info]),
        "method": np.array([r.method for r in info]),
        "sort_position": indices.astype(np.int64),
        "sample_index": indices.astype(np.int64),
        "seed": seeds,
    }
    if cfg.forcing.kind == "constant":
        unit["f"] = unit["f"][0]
    return unit


def _comparable(cfg: DatagenConfig) -> str:
    """The config as it decides the data (the overwrite flag does not)."""
    data = cfg.model_dump(mode="json")
    data["output"].pop("overwrite")
    return yaml.safe_dump(data, sort_keys=True)


def prepare_output(cfg: DatagenConfig) -> Path:
    """Check the output directory before any work; returns the shard directory."""
    root = Path(cfg.output.dir)
    existing = [split_file(root, cfg.name, s) for s in SPLITS] + [root / "config.yaml"]
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


def generate(cfg: DatagenConfig, progress: bool = True) -> list[SplitSummary]:
    """Run a generation end to end (or resume one); returns a summary per non-empty split."""
    device = resolve_device(cfg.device)
    work = prepare_output(cfg)
    root = Path(cfg.output.dir)
    units = [
        (split, start, min(start + cfg.batch_size, getattr(cfg.samples, split)))
        for split in SPLITS
        for start in range(0, getattr(cfg.samples, split), cfg.batch_size)
    ]
    shard = {u: work / u[0] / f"{u[1]:08d}-{u[2]:08d}.npz" for u in units}
    done = sum(u[2] - u[1] for u in units if shard[u].exists())
    total = sum(u[2] - u[1] for u in units)
    desc = f"{cfg.name} s={cfg.resolution}"
    with tqdm(total=total, initial=done, desc=desc, unit="sample", disable=not progress) as bar:
        for unit in units:
            if shard[unit].exists():
                continue
            arrays = solve_unit(cfg, *unit, device)
            shard[unit].parent.mkdir(parents=True, exist_ok=True)
            tmp = shard[unit].with_name(shard[unit].name + ".tmp.npz")
            np.savez(tmp, **arrays)
            tmp.replace(shard[unit])
            bar.update(unit[2] - unit[1])
            bar.set_postfix(worst_residual=f"{arrays['residual'].max():.1e}")
    summaries = [
        _assemble_split(cfg, split, [u for u in units if u[0] == split], shard)
        for split in SPLITS
        if getattr(cfg.samples, split) > 0
    ]
    if cfg.samples.train > 0:
        fields = ["a", "f", "u"]
        write_stats(root, field_statistics(split_file(root, cfg.name, "train"), fields))
    write_text_atomic(root / "config.yaml", dump_config(cfg))
    shutil.rmtree(work)
    return summaries


def _assemble_split(cfg: DatagenConfig, split: str, units: list, shard: dict) -> SplitSummary:
    """Write one split file from its shards (temporary name, then rename)."""
    n = getattr(cfg.samples, split)
    s = cfg.resolution
    path = split_file(cfg.output.dir, cfg.name, split)
    c, g = cfg.coefficient, cfg.forcing
    writer = SplitWriter(
        path,
        fields=[
            FieldSpec("a"),
            FieldSpec("f", sample_varying=g.kind == "random"),
            FieldSpec("u", time_varying=True),
        ],
        n=n,
        steps=1,
        size=(s, s),
        dataset_name=cfg.name,
        attrs={"problem": cfg.problem, "split": split, "face_average": cfg.face_average},
        parameters={
            "coefficient_alpha": c.alpha,
            "coefficient_tau": c.tau,
            "forcing_value": g.value,
        },
        provenance={
            "config": dump_config(cfg),
            "package_version": datagen.__version__,
            "seed": cfg.seed,
            "solver_tol": cfg.solver.tol,
            "created_unix": time.time(),
        },
        dtype=cfg.storage_dtype,
    )
    seconds, residual, methods = [], [], {}
    try:
        for unit in units:
            with np.load(shard[unit]) as data:
                arrays = {k: data[k] for k in data.files}
            arrays["method"] = arrays["method"].astype(object)
            writer.write(unit[1], arrays)
            seconds.extend(arrays["seconds"])
            residual.extend(arrays["residual"])
            for m in arrays["method"]:
                methods[m] = methods.get(m, 0) + 1
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return SplitSummary(split, n, float(np.mean(seconds)), float(np.max(residual)), methods, path)
