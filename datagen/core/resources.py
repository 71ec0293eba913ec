"""Guards before any work: the memory one work unit needs, the disk the dataset needs.

A recipe states the memory of one work unit of ``B`` samples (:attr:`Recipe.unit_memory`, a
model calibrated on the peak resident memory of real runs: ``benchmarks/unit_memory.py``
prints the measured peaks beside the models). The disk a dataset needs follows from its file
layouts: every stored array, once in the shards and once in the split files while the shards
are assembled. A run that cannot fit is refused in one line naming what it needs, what is
available, and which key to change, before anything is written.
"""

from __future__ import annotations

import math
import os
import resource
import shutil
from pathlib import Path

import numpy as np
import torch

from datagen.core.errors import UserError
from datagen.core.recipe import OutputDataset, Recipe
from datagen.core.schema import DIAGNOSTICS, field_shape

PER_SAMPLE_PROVENANCE = sum(np.dtype(kind).itemsize for kind in DIAGNOSTICS.values()) + 48


def human(size: float) -> str:
    """``1.5 GB``-style sizes (powers of 1000)."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(size) < 1000 or unit == "PB":
            return f"{size:.3g} {unit}" if unit != "B" else f"{int(size)} B"
        size /= 1000
    return f"{size:.3g} EB"  # pragma: no cover


def available_memory(device: torch.device) -> int:
    """Bytes a run can still allocate: free GPU memory on CUDA, ``MemAvailable`` on Linux."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def free_disk(path: Path) -> int:
    """Free bytes on the file system that holds ``path`` (or its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def file_size_limit() -> float:
    """The process's largest file (``ulimit -f``), in bytes; ``inf`` when unlimited."""
    soft, _ = resource.getrlimit(resource.RLIMIT_FSIZE)
    return math.inf if soft == resource.RLIM_INFINITY else float(soft)


def split_bytes(out: OutputDataset, n: int, itemsize: int) -> int:
    """The size of one split file of ``n`` samples (fields and provenance)."""
    layout = out.layout
    arrays = sum(
        math.prod(field_shape(spec, n, layout.steps, tuple(layout.size))) for spec in layout.fields
    )
    return arrays * itemsize + n * PER_SAMPLE_PROVENANCE


def dataset_bytes(recipe: Recipe) -> tuple[int, int]:
    """(all split files of every output, the largest single file), in bytes."""
    itemsize = np.dtype(recipe.config.storage_dtype).itemsize
    sizes = [
        split_bytes(out, n, itemsize)
        for out in recipe.outputs
        for n in recipe.sizes.values()
        if n > 0
    ]
    return sum(sizes), max(sizes)


def largest_batch(recipe: Recipe, budget: float) -> int:
    """The largest work unit (samples) whose memory model fits ``budget`` (0: none)."""
    low, high = 0, recipe.batch_size
    while low < high:  # the model grows with the batch
        mid = (low + high + 1) // 2
        if recipe.unit_memory(mid) <= budget:
            low = mid
        else:
            high = mid - 1
    return low


def check_resources(recipe: Recipe, device: torch.device, work: Path, sharing: int = 1) -> None:
    """Refuse, before any work, a run whose work unit does not fit in memory or whose dataset
    does not fit on the disk of ``output.dir`` (or under this process's file-size limit).

    ``work`` is the shard directory: finished shards already hold their share of the disk.
    ``sharing``: the processes that share this device's memory (the ranks of a generation on
    one host's CPU), each of which holds a work unit.
    """
    cfg = recipe.config
    need = recipe.unit_memory(recipe.batch_size)
    have = available_memory(device) // max(sharing, 1)
    if need > have:
        fit = largest_batch(recipe, have)
        where = "GPU memory" if device.type == "cuda" else "memory"
        fix = (
            f"lower batch_size (at most {fit} fit)"
            if fit
            else "one sample does not fit: lower resolution"
        )
        raise UserError(
            f"batch_size: a work unit of {recipe.batch_size} samples at resolution "
            f"{cfg.resolution} needs about {human(need)} of {where}; {human(have)} are "
            f"available{f' to each of the {sharing} processes on this host' if sharing > 1 else ''}"
            f": {fix}"
        )
    total, largest = dataset_bytes(recipe)
    done = sum(p.stat().st_size for p in work.rglob("*.npz")) if work.is_dir() else 0
    disk = 2 * total - done  # the shards, then the split files beside them
    free = free_disk(Path(cfg.output.dir))
    if disk > free:
        raise UserError(
            f"samples: the dataset needs about {human(total)} on disk, {human(disk)} while its "
            f"shards are assembled; {human(free)} are free at {cfg.output.dir}: lower "
            "samples.* or resolution, or choose another output.dir"
        )
    limit = file_size_limit()
    if largest > limit:
        raise UserError(
            f"samples: the largest split file would hold {human(largest)}, above this "
            f"process's file-size limit of {human(limit)} (ulimit -f): raise the limit or "
            "lower samples.*"
        )
