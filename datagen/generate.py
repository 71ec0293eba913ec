"""Generate a dataset from a validated config: sample, solve, store; resumable; one process or
many under ``torchrun``.

The problem's recipe (:mod:`datagen.core.recipe`, found through :mod:`datagen.problems.registry`)
cuts the work into units of ``batch_size`` consecutive samples of one split (a sorted solve,
SKR, orders and chains the samples inside its unit). Each finished unit is saved atomically as a
shard in ``DIR/.partial/``; a re-run with the same config skips finished units, so a killed run
resumes and gives the same arrays (every sample is a pure function of the config, the split and
its index, whichever process solved it). When all units are done, each split file is written
under a temporary name and renamed into place, then ``stats.yaml`` and ``config.yaml``, and the
shards are removed.

Under ``torchrun`` (``WORLD_SIZE`` > 1) every rank solves a contiguous share of the units still
to do (in their order, so that neighbours stay together), on its own device; the shards are
shared through ``output.dir``, which every rank must see (checked first). Then each rank writes
its contiguous share of every split as a part file, ``data/SPLIT/parts/NAME_SPLIT_A-B.hdf5``,
and rank 0 writes the split file itself, whose fields are HDF5 virtual datasets over the parts
(nothing copied); ``consolidate`` copies them into one plain file. Rank 0 alone shows one
progress bar for the whole job (the ranks' counts summed) and writes the summary.
"""

from __future__ import annotations

import collections
import datetime
import os
import shutil
import socket
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
import torch.distributed as dist
import yaml

from datagen.core.config import GenerationConfig, dump_config, first_difference
from datagen.core.device import resolve_device
from datagen.core.distributed import (
    DistInfo,
    agree,
    all_gather,
    barrier,
    broadcast,
    dist_info_from_env,
    init_distributed,
    shutdown_distributed,
    weighted_shares,
)
from datagen.core.errors import RankLost, SolverFailure, UserError
from datagen.core.files import atomic_write, check_writable_dir, write_text_atomic
from datagen.core.progress import progress_bar
from datagen.core.recipe import OutputDataset, Recipe, provenance
from datagen.core.resources import check_resources
from datagen.core.schema import (
    PARTIAL,
    PARTS,
    SPLITS,
    SplitWriter,
    consolidate_file,
    field_statistics,
    open_dataset_file,
    split_file,
    write_stats,
)
from datagen.problems.registry import get_problem

Unit = tuple[str, int, int]  # (split, start, stop)

#: How long a rank waits in a collective for the slowest one (the end of the solves, the
#: parts): long enough for any imbalance of work; a rank that dies stops the job through
#: torchrun at once.
RANK_TIMEOUT = datetime.timedelta(hours=24)


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
    work = root / PARTIAL
    stamp = work / "config.yaml"
    # Split files beside the shards of this very config: a run stopped while it assembled them.
    assembling = stamp.is_file() and stamp.read_text() == _comparable(cfg)
    if not cfg.output.overwrite and not assembling and any(p.exists() for p in existing):
        raise UserError(
            f"{root} already holds a dataset; "
            "pass --overwrite (or output.overwrite=true) to replace it"
        )
    try:
        work.mkdir(parents=True, exist_ok=True)
        probe = work / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise UserError(f"output.dir: cannot write to {root} ({err.strerror or err})") from None
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


def generate(
    cfg: GenerationConfig,
    progress: bool = True,
    *,
    consolidate: bool = False,
    threads: int | None = None,
) -> list[SplitSummary]:
    """Run a generation end to end (or resume one); returns a summary per non-empty split
    (on rank 0; other ranks of a ``torchrun`` job return an empty list).

    Args:
        consolidate: under ``torchrun``, copy each split's virtual datasets into one plain
            file at the end (and remove the parts).
        threads: CPU threads of this process; default: torch's for one process, the host's
            cores split evenly between its ranks under ``torchrun``.
    """
    info = dist_info_from_env()
    # gloo whatever the device: the ranks exchange a few numbers, never arrays.
    init_distributed(info, torch.device("cpu"), backend="gloo", timeout=RANK_TIMEOUT)
    try:
        error, recipe, device = None, None, torch.device("cpu")
        try:
            device = resolve_device(
                cfg.device, local_rank=info.local_rank if info.enabled else None
            )
            set_threads(threads, info, device)
            check_writable_dir(cfg.output.dir, "output.dir")
            recipe = get_problem(cfg.problem).recipe(cfg, device, progress and info.is_main)
            sharing = info.local_world if device.type == "cpu" else 1
            check_resources(recipe, device, Path(cfg.output.dir) / PARTIAL, sharing)
        except UserError as err:
            error = err
        agree(info, error)
        assert recipe is not None
        return run_recipe(recipe, progress, info=info, device=device, consolidate=consolidate)
    except dist.DistError as err:  # a peer gone while this rank waited for it
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RankLost(f"another rank of the job stopped ({reason})") from None
    finally:
        shutdown_distributed()


def set_threads(threads: int | None, info: DistInfo, device: torch.device) -> None:
    """CPU threads of this process: ``threads``, or under ``torchrun`` on the CPU the host's
    cores split evenly between its ranks (torchrun itself would leave one each)."""
    if threads is not None:
        torch.set_num_threads(threads)
    elif info.enabled and device.type == "cpu":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        torch.set_num_threads(max(1, (cores or 1) // info.local_world))


def work_units(recipe: Recipe) -> list[Unit]:
    """Every work unit of a recipe, split by split (train, valid, test), in sample order."""
    return [
        (split, start, min(start + recipe.batch_size, n))
        for split, n in recipe.sizes.items()
        for start in range(0, n, recipe.batch_size)
    ]


def my_share(units: list[Unit], info: DistInfo) -> list[Unit]:
    """This rank's contiguous share of ``units``, balanced by samples."""
    lo, hi = weighted_shares([u[2] - u[1] for u in units], info.world)[info.rank]
    return units[lo:hi]


def run_recipe(
    recipe: Recipe,
    progress: bool = True,
    *,
    info: DistInfo | None = None,
    device: torch.device | None = None,
    consolidate: bool = False,
) -> list[SplitSummary]:
    """The resumable driver: solve unit by unit into shards, then assemble the split files.

    ``info``: this process's place in a ``torchrun`` job (default: alone); ``device``: where
    it solves (recorded in the provenance).
    """
    info = info or DistInfo()
    cfg = recipe.config
    work = Path(cfg.output.dir) / PARTIAL
    error = None
    if info.is_main:
        try:
            prepare_output(cfg, [out.root for out in recipe.outputs])
        except UserError as err:
            error = err
    agree(info, error)
    check_shared_dir(work, info)
    units = work_units(recipe)
    shard = {u: work / u[0] / f"{u[1]:08d}-{u[2]:08d}.npz" for u in units}
    damaged = _drop_damaged([shard[u] for u in my_share(units, info)], info)
    todo = [u for u in units if not shard[u].exists()]
    where = placement(info, device or torch.device("cpu"))
    _solve_share(recipe, units, todo, shard, where, info, progress, damaged)
    if info.enabled:
        return _assemble_parts(recipe, units, shard, info, consolidate)
    summaries = []
    for number, out in enumerate(recipe.outputs):
        for split, n in recipe.sizes.items():
            if n > 0:
                path = split_file(out.root, recipe.name, split)
                split_units = [u for u in units if u[0] == split]
                diagnostics = _write_units(recipe, out, path, n, 0, split_units, shard)
                shutil.rmtree(path.parent / PARTS, ignore_errors=True)  # of an earlier run
                if number == 0:
                    summaries.append(_summary(recipe, split, n, path, diagnostics))
        _finish_output(recipe, out)
    shutil.rmtree(work)
    return summaries


def _drop_damaged(paths: list[Path], info: DistInfo) -> list[Path]:
    """Delete the unreadable shards among ``paths`` (this rank's share of the check); returns
    those of every rank, once every rank is done (then all see the same finished units)."""
    damaged = [path for path in paths if path.exists() and not _readable(path)]
    for path in damaged:  # written atomically, so only damaged from outside: solve it again
        path.unlink()
    damaged = [path for paths in all_gather(damaged, info) for path in paths]
    barrier(info)
    return damaged


def _solve_share(
    recipe: Recipe,
    units: list[Unit],
    todo: list[Unit],
    shard: dict[Unit, Path],
    where: dict[str, np.ndarray],
    info: DistInfo,
    progress: bool,
    damaged: list[Path],
) -> None:
    """Solve this rank's share of the units ``todo`` into their shards, with the job's bar on
    rank 0; returns when every rank has finished its share."""
    mine = my_share(todo, info)
    rounds = max(all_gather(len(mine), info))
    total = sum(u[2] - u[1] for u in units)
    done = total - sum(u[2] - u[1] for u in todo)
    bar = progress_bar(
        total, initial=done, desc=recipe.name, unit="sample", enabled=progress and info.is_main
    )
    with bar:
        for path in damaged:
            bar.write(f"{path}: unreadable (truncated or damaged); its unit is solved again")
        job = JobProgress(bar, info)
        for k in range(rounds):
            if k >= len(mine):  # this rank is done: keep the others' counts coming
                job.add(0, -1.0)
                continue
            unit = mine[k]
            arrays = _solve(recipe, unit, info)
            size = unit[2] - unit[1]
            arrays.update({key: np.repeat(value, size) for key, value in where.items()})
            shard[unit].parent.mkdir(parents=True, exist_ok=True)
            with atomic_write(shard[unit], "wb") as handle:
                np.savez(handle, **arrays)
            job.add(size, float(arrays["residual"].max()) if "residual" in arrays else -1.0)
        job.finish()


def placement(info: DistInfo, device: torch.device) -> dict[str, np.ndarray]:
    """Where this process solves, as the per-sample provenance arrays of one sample."""
    return {
        "rank": np.array([info.rank], dtype=np.int32),
        "device": np.array([str(device)]),
        "host": np.array([socket.gethostname()]),
    }


def _solve(recipe: Recipe, unit: Unit, info: DistInfo) -> dict[str, np.ndarray]:
    """One unit's arrays; a failed solve names the rank when there are several."""
    try:
        return recipe.solve_unit(*unit)
    except SolverFailure as err:
        if info.enabled:
            raise SolverFailure(f"rank {info.rank}: {err}") from None
        raise


class JobProgress:
    """The progress of the whole job on rank 0's bar.

    Every rank adds what it finished in each round (one unit, or nothing once it is done);
    the rounds' counts are summed over the ranks (and their worst residuals maximized) by
    asynchronous all-reduces, so no rank waits for another, and the bar moves as the sums
    arrive. Alone, the bar moves at once.
    """

    def __init__(self, bar: Any, info: DistInfo) -> None:
        self.bar, self.info = bar, info
        self.pending: collections.deque = collections.deque()

    def add(self, samples: int, residual: float) -> None:
        """Count ``samples`` finished by this rank (``residual``: their worst, or -1)."""
        if not self.info.enabled:
            self._show(samples, residual)
            return
        counts = torch.tensor([float(samples)], dtype=torch.float64)
        worst = torch.tensor([residual], dtype=torch.float64)
        ops = (
            dist.all_reduce(counts, op=dist.ReduceOp.SUM, async_op=True),
            dist.all_reduce(worst, op=dist.ReduceOp.MAX, async_op=True),
        )
        self.pending.append((ops, counts, worst))
        self._drain(wait=False)

    def finish(self) -> None:
        """Wait for every round's sums (all ranks have finished their units after this)."""
        self._drain(wait=True)

    def _drain(self, wait: bool) -> None:
        while self.pending and (wait or all(op.is_completed() for op in self.pending[0][0])):
            ops, counts, worst = self.pending.popleft()
            for op in ops:
                op.wait()
            self._show(int(counts.item()), float(worst.item()))

    def _show(self, samples: int, residual: float) -> None:
        if samples:
            self.bar.update(samples)
        if residual >= 0:
            self.bar.set_postfix(worst_residual=f"{residual:.1e}")


def check_shared_dir(work: Path, info: DistInfo) -> None:
    """Refuse a ``torchrun`` job whose ranks do not all see the same ``output.dir``.

    Each rank writes a marker file named by a token of this job into ``work``; after a
    barrier every rank must see every marker. A directory that is local to each node (a
    node's ``/tmp``, a relative path from different working directories) fails here, before
    any work.
    """
    if not info.enabled:
        return
    token = broadcast(uuid.uuid4().hex if info.is_main else None, info)
    hosts = all_gather(socket.gethostname(), info)
    marks = work / "ranks"
    mine = marks / f"{token}.{info.rank}"
    error = None
    try:
        marks.mkdir(parents=True, exist_ok=True)
        mine.write_text(hosts[info.rank])
    except OSError as err:
        error = UserError(f"output.dir: cannot write to {work.parent} ({err.strerror or err})")
    agree(info, error)
    barrier(info)
    seen = {p.suffix[1:] for p in marks.glob(f"{token}.*")}
    missing = [r for r in range(info.world) if str(r) not in seen]
    barrier(info)  # every rank has looked before the markers go
    mine.unlink(missing_ok=True)
    error = None
    if missing:
        others = ", ".join(f"{r} ({hosts[r]})" for r in missing)
        error = UserError(
            f"output.dir: {work.parent.absolute()} is not shared by all ranks: rank "
            f"{info.rank} ({hosts[info.rank]}) does not see what rank(s) {others} wrote there; "
            "put output.dir on a file system that every node mounts at the same path"
        )
    agree(info, error)


def _readable(path: Path) -> bool:
    """Whether a shard's archive is whole (every member's checksum holds)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None and bool(archive.namelist())
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return False


def _write_units(
    recipe: Recipe,
    out: OutputDataset,
    path: Path,
    n: int,
    first: int,
    units: list[Unit],
    shard: dict[Unit, Path],
) -> dict[str, np.ndarray]:
    """Write samples ``first : first + n`` of one split of ``out`` from the shards of
    ``units`` into the file ``path`` (temporary name, then rename); returns their
    per-sample diagnostics."""
    cfg = recipe.config
    split = units[0][0]
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
                diagnostics = {key: _storable(data[key]) for key in diagnostic_keys}
            writer.write(unit[1] - first, {**arrays, **diagnostics})
            for key, value in diagnostics.items():
                collected[key].extend(value)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return {k: np.asarray(v) for k, v in collected.items()}


def _storable(values: np.ndarray) -> np.ndarray:
    """Per-sample values as HDF5 takes them (numpy's fixed-width strings as objects)."""
    return values.astype(object) if values.dtype.kind == "U" else values


def _summary(
    recipe: Recipe, split: str, n: int, path: Path, diagnostics: dict[str, np.ndarray]
) -> SplitSummary:
    """The summary row of one split from its per-sample diagnostics."""
    methods: dict[str, int] = {}
    for m in diagnostics["method"]:
        methods[str(m)] = methods.get(str(m), 0) + 1
    worst = float(np.max(diagnostics["residual"])) if "residual" in diagnostics else float("nan")
    seconds = float(np.mean(diagnostics["seconds"]))
    return SplitSummary(split, n, seconds, worst, methods, path, recipe.notes(diagnostics))


def _finish_output(recipe: Recipe, out: OutputDataset) -> None:
    """``stats.yaml`` (from the train split) and ``config.yaml`` of one finished dataset."""
    if recipe.sizes.get("train", 0) > 0:
        train = split_file(out.root, recipe.name, "train")
        write_stats(out.root, field_statistics(train, out.stats_fields))
    write_text_atomic(out.root / "config.yaml", dump_config(recipe.config))


def part_file(root: Path, name: str, split: str, start: int, stop: int) -> Path:
    """Path of the part file that holds samples ``start:stop`` of a split."""
    folder = split_file(root, name, split).parent / PARTS
    return folder / f"{name}_{split}_{start:08d}-{stop:08d}.hdf5"


def part_plan(recipe: Recipe, units: list[Unit], world: int) -> dict[str, list[list[Unit]]]:
    """Per non-empty split, the units of each part, in order: contiguous blocks balanced by
    samples, one per rank or one per unit when there are fewer units than ranks."""
    plan = {}
    for split, n in recipe.sizes.items():
        if n > 0:
            split_units = [u for u in units if u[0] == split]
            bounds = weighted_shares([u[2] - u[1] for u in split_units], world)
            plan[split] = [split_units[lo:hi] for lo, hi in bounds if hi > lo]
    return plan


def _assemble_parts(
    recipe: Recipe,
    units: list[Unit],
    shard: dict[Unit, Path],
    info: DistInfo,
    consolidate: bool,
) -> list[SplitSummary]:
    """Under ``torchrun``: every rank writes its parts, then rank 0 the split files over them
    (and, with ``consolidate``, plain copies), the statistics and the config."""
    plan = part_plan(recipe, units, info.world)
    for out in recipe.outputs:
        for parts in plan.values():
            if info.rank < len(parts):  # part r is written by rank r (fewer parts: idle ranks)
                part = parts[info.rank]
                split, start, stop = part[0][0], part[0][1], part[-1][2]
                path = part_file(out.root, recipe.name, split, start, stop)
                _write_units(recipe, out, path, stop - start, start, part, shard)
    barrier(info)
    if not info.is_main:
        return []
    summaries = []
    for number, out in enumerate(recipe.outputs):
        for split, parts in plan.items():
            n = recipe.sizes[split]
            bounds = [(p[0][1], p[-1][2]) for p in parts]
            paths = [part_file(out.root, recipe.name, split, a, b) for a, b in bounds]
            path = split_file(out.root, recipe.name, split)
            diagnostics = _write_virtual(recipe, out, path, n, bounds, paths)
            for stale in set((path.parent / PARTS).iterdir()) - set(paths):
                stale.unlink()  # parts of an earlier run with another number of ranks
            if number == 0:
                summaries.append(_summary(recipe, split, n, path, diagnostics))
        _finish_output(recipe, out)
    shutil.rmtree(Path(recipe.config.output.dir) / PARTIAL)
    if consolidate:
        for out in recipe.outputs:
            consolidate_dataset(out.root)
    return summaries


def _write_virtual(
    recipe: Recipe,
    out: OutputDataset,
    path: Path,
    n: int,
    bounds: list[tuple[int, int]],
    parts: list[Path],
) -> dict[str, np.ndarray]:
    """Write a split file whose sample-varying fields are virtual datasets over ``parts``
    (samples ``bounds[i]`` in ``parts[i]``); the fields that do not vary per sample and the
    per-sample provenance are copied (they are small). Returns the diagnostics."""
    cfg = recipe.config
    writer = SplitWriter(
        path,
        out.layout,
        n=n,
        dataset_name=cfg.name,
        attrs={"problem": cfg.problem, "split": path.parent.name},
        provenance=provenance(cfg, **recipe.provenance),
        dtype=cfg.storage_dtype,
        sources=[(a, b, f"{PARTS}/{p.name}") for (a, b), p in zip(bounds, parts, strict=True)],
    )
    constant = [spec.name for spec in out.layout.fields if not spec.sample_varying]
    collected: dict[str, list] = {key: [] for key in out.layout.diagnostics}
    try:
        for (start, _), part in zip(bounds, parts, strict=True):
            with open_dataset_file(part) as f:
                arrays = {key: f["t0_fields"][key][...] for key in constant}
                diagnostics = {key: _read_provenance(f, key) for key in collected}
            writer.write(start, {**arrays, **diagnostics})
            for key, value in diagnostics.items():
                collected[key].extend(value)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    return {k: np.asarray(v) for k, v in collected.items()}


def _read_provenance(f: h5py.File, key: str) -> np.ndarray:
    """One per-sample provenance array of a file (strings as Python strings)."""
    ds = f["provenance"][key]
    return ds.asstr()[...].astype(object) if h5py.check_string_dtype(ds.dtype) else ds[...]


def consolidate_dataset(root: str | Path) -> list[Path]:
    """Copy the virtual datasets of every split file of a dataset directory into plain files
    and remove the parts; returns the files that were consolidated."""
    root = Path(root)
    done = []
    for split in SPLITS:
        folder = root / "data" / split
        for path in sorted(folder.glob("*.hdf5")) if folder.is_dir() else []:
            if consolidate_file(path):
                done.append(path)
        shutil.rmtree(folder / PARTS, ignore_errors=True)
    return done
