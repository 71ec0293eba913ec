"""The run directory: ``config.yaml``, ``log.txt``, ``metrics.csv``, ``checkpoints/``,
``figures/``; refusing to clobber another run."""

from __future__ import annotations

import csv
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datagen.core.errors import UserError
from datagen.core.files import atomic_write, check_writable_dir

METRICS_HEADER = ["epoch", "train_loss", "valid_l2", "valid_h1", "lr", "seconds"]


@dataclass(frozen=True)
class RunPaths:
    """The files of a run directory."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def log(self) -> Path:
        return self.root / "log.txt"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.csv"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def figures(self) -> Path:
        return self.root / "figures"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best.pt"


def check_run_dir(paths: RunPaths, resume: bool, overwrite: bool) -> bool:
    """Decide how to use the output directory; True when a run is to be resumed.

    A directory holding anything is refused unless ``resume`` (continue from ``last.pt``; start
    afresh when there is none yet) or ``overwrite`` (delete it first).
    """
    if resume and overwrite:
        raise UserError("--resume and --overwrite exclude each other")
    root = paths.root
    check_writable_dir(root, "output.dir")
    occupied = root.is_dir() and any(root.iterdir())
    if resume and not occupied:
        raise UserError(
            f"--resume: output.dir {root} holds no run to resume; drop --resume to start one"
        )
    if occupied and not (resume or overwrite):
        raise UserError(
            f"output.dir {root} holds another run; pass --resume to continue it or "
            "--overwrite to replace it"
        )
    if occupied and not is_run_dir(paths):
        raise UserError(
            f"output.dir {root} is not empty and holds no training run (no metrics.csv, "
            "log.txt or checkpoints/); choose another directory"
        )
    return resume and paths.last.is_file()


def is_run_dir(paths: RunPaths) -> bool:
    """Whether a directory was written by a training run (so --overwrite may clear it)."""
    return any(p.exists() for p in (paths.metrics, paths.log, paths.checkpoints))


def clear_run_dir(paths: RunPaths) -> None:
    """Delete what a run writes (and nothing else) for ``--overwrite``."""
    for path in (paths.config, paths.log, paths.metrics, *paths.root.glob("eval_*.json")):
        path.unlink(missing_ok=True)
    for folder in (paths.checkpoints, paths.figures):
        if folder.is_dir():
            shutil.rmtree(folder)


def prepare_run_dir(paths: RunPaths, resumed_epoch: int | None, overwrite: bool) -> None:
    """Create the run's folders and metrics.csv (kept up to ``resumed_epoch`` on resume)."""
    if overwrite and paths.root.exists():
        clear_run_dir(paths)
    paths.checkpoints.mkdir(parents=True, exist_ok=True)
    paths.figures.mkdir(parents=True, exist_ok=True)
    rows = read_metrics(paths.metrics) if resumed_epoch is not None else []
    rows = [r for r in rows if int(r["epoch"]) <= (resumed_epoch or 0)]  # drop a lost epoch
    write_metrics(paths.metrics, rows)


def read_metrics(path: Path) -> list[dict[str, str]]:
    """Rows of a metrics.csv (empty if absent)."""
    if not path.is_file():
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    """Replace metrics.csv by ``rows`` (atomically)."""
    with atomic_write(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=METRICS_HEADER)
        writer.writeheader()
        writer.writerows(rows)


def append_metrics(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a", newline="") as handle:
        csv.DictWriter(handle, fieldnames=METRICS_HEADER).writerow(row)


class RunLog:
    """Lines to ``log.txt`` (rank 0) and to stdout."""

    def __init__(self, path: Path | None, echo: bool = True) -> None:
        self.path = path
        self.echo = echo

    def __call__(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        if self.path is not None:
            with open(self.path, "a") as handle:
                handle.write(f"{stamp}  {message}\n")
        if self.echo:
            from tqdm import tqdm

            tqdm.write(message, file=sys.stdout)
