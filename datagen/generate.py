"""Generate a dataset from a validated config: sample, solve, store; resumable.

The problem's recipe (:mod:`datagen.core.recipe`, found through :mod:`datagen.problems.registry`)
cuts the work into units of ``batch_size`` consecutive samples of one split. Each finished unit
is saved atomically as a shard in ``DIR/.partial/``; a re-run with the same config skips
finished units, so a killed run resumes and gives the same arrays (every sample is a pure
function of the config, the split and its index). When all units are done, each split file is
written under a temporary name and renamed into place, then ``stats.yaml`` and
``config.yaml``, and the shards are removed.
"""

from __future__ import annotations

import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from datagen.core.config import GenerationConfig, dump_config, first_difference
from datagen.core.device import resolve_device
from datagen.core.errors import UserError
from datagen.core.files import atomic_write, check_writable_dir, write_text_atomic
from datagen.core.progress import progress_bar
from datagen.core.recipe import OutputDataset, Recipe, provenance
from datagen.core.resources import check_resources
from datagen.core.schema import (
    PARTIAL,
    SPLITS,
    SplitWriter,
    field_statistics,
    split_file,
    write_stats,
)
from datagen.problems.registry import get_problem

Unit = tuple[str, int, int]  # (split, start, stop)


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
        finished = len(list(work.rglob("*.npz")))
        if finished and not cfg.output.overwrite:
            key, there, now = first_difference(
                _read_stamp(stamp), yaml.safe_load(_comparable(cfg))
            ) or ("?", None, None)
            raise UserError(
                f"{work} holds {finished} finished work units of an interrupted run of another "
                f"config (it differs at {key}: {there!r} there, {now!r} now); re-run that config "
                "to resume it, or pass --overwrite to discard them"
            )
        shutil.rmtree(work)  # nothing finished to keep, or --overwrite
        work.mkdir(parents=True)
    write_text_atomic(stamp, _comparable(cfg))
    return work


def _read_stamp(stamp: Path) -> dict:
    try:
        data = yaml.safe_load(stamp.read_text())
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def generate(cfg: GenerationConfig, progress: bool = True) -> list[SplitSummary]:
    """Run a generation end to end (or resume one); returns a summary per non-empty split."""
    check_writable_dir(cfg.output.dir, "output.dir")
    device = resolve_device(cfg.device)
    recipe = get_problem(cfg.problem).recipe(cfg, device, progress)
    check_resources(recipe, device, Path(cfg.output.dir) / PARTIAL)
    return run_recipe(recipe, progress)


def run_recipe(recipe: Recipe, progress: bool = True) -> list[SplitSummary]:
    """The resumable driver: solve unit by unit into shards, then assemble the split files."""
    cfg = recipe.config
    work = prepare_output(cfg, [out.root for out in recipe.outputs])
    units = [
        (split, start, min(start + recipe.batch_size, n))
        for split, n in recipe.sizes.items()
        for start in range(0, n, recipe.batch_size)
    ]
    shard = {u: work / u[0] / f"{u[1]:08d}-{u[2]:08d}.npz" for u in units}
    damaged = [shard[u] for u in units if shard[u].exists() and not _readable(shard[u])]
    for path in damaged:  # written atomically, so only damaged from outside: solve it again
        path.unlink()
    done = sum(u[2] - u[1] for u in units if shard[u].exists())
    total = sum(u[2] - u[1] for u in units)
    bar = progress_bar(total, initial=done, desc=recipe.name, unit="sample", enabled=progress)
    with bar:
        for path in damaged:
            bar.write(f"{path}: unreadable (truncated or damaged); its unit is solved again")
        for unit in units:
            if shard[unit].exists():
                continue
            arrays = recipe.solve_unit(*unit)
            shard[unit].parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(shard[unit], "wb") as handle:
                np.savez(handle, **arrays)
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


def _readable(path: Path) -> bool:
    """Whether a shard's archive is whole (every member's checksum holds)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None and bool(archive.namelist())
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return False


def _assemble_split(
    recipe: Recipe,
    out: OutputDataset,
    split: str,
    n: int,
    units: list[Unit],
    shard: dict[Unit, Path],
) -> SplitSummary:
    """Write one split file of ``out`` from its shards (temporary name, then rename)."""
    cfg = recipe.config
    path = split_file(out.root, recipe.name, split)
    writer = SplitWriter(
        path,
        out.layout,
        n=n,
        dataset_name=cfg.name,
        attrs={"problem": cfg.problem, "split": split},
        provenance=provenance(cfg, **recipe.provenance),
        dtype=cfg.storage_dtype,
    )
    diagnostic_keys = out.layout.diagnostics
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
