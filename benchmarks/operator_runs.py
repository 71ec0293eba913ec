"""Shared by the operator benchmarks: train a config in its own process, print tables."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

_TRAIN_AND_MEASURE = (
    "import json, resource, sys, torch\n"
    "from datagen.core.errors import UserError\n"
    "from opsolve.train.config import load_train_config\n"
    "from opsolve.train.trainer import train\n"
    "try:\n"
    "    cfg = load_train_config(sys.argv[1], sys.argv[2:])\n"
    "    train(cfg, overwrite=True, progress=False)\n"
    "except UserError as error:\n"
    "    sys.exit(f'error: {error}')\n"
    "rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024\n"
    "gpu = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else 0\n"
    "print('PEAK', json.dumps({'rss': rss, 'cuda': gpu}))\n"
)


def machine_line(device: str) -> str:
    """Processor, torch version, threads, device and date: the header of a report."""
    return (
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, device {device}; {time.strftime('%Y-%m-%d')}"
    )


def train_in_child(config: Path, overrides: list[str]) -> dict:
    """``opsolve train CONFIG OVERRIDES`` in a child process, so its peak memory is its own.

    Returns ``{"seconds": wall seconds, "peak_mib": peak CUDA memory on a GPU, else the peak
    resident set}``; a failed training ends the benchmark with the child's error.
    """
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _TRAIN_AND_MEASURE, str(config), *overrides],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["(no message)"]
        if lines[-1].startswith("error: "):  # bad input: the child's one line
            raise SystemExit(f"training {config.name}: {lines[-1]}")
        raise SystemExit(f"training {config.name} failed:\n{done.stderr[-2000:]}")
    peak = json.loads(done.stdout.rsplit("PEAK", 1)[1])
    return {
        "seconds": time.perf_counter() - start,
        "peak_mib": (peak["cuda"] or peak["rss"]) / 2**20,
    }


def run(main) -> None:
    """Run a benchmark's ``main``; bad input (a :class:`UserError`) ends it with one line."""
    from datagen.core.errors import UserError

    try:
        main()
    except UserError as error:
        raise SystemExit(f"error: {error}") from None


def table(name: str, rows: dict[str, dict], reference: str) -> str:
    """Markdown table of comparison rows (``opsolve.eval.compare``) with peak memory and each
    model's test L2 over the ``reference`` model's."""
    ref = rows.get(reference, {}).get("relative_l2")
    lines = [
        f"### {name}",
        "",
        "| model | parameters | epochs | s/epoch | peak memory (MiB) | test rel. L2 | test rel. H1 "
        f"| L2 / {reference}'s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for model, r in rows.items():
        ratio = f"{r['relative_l2'] / ref:.2f}" if ref else "-"
        lines.append(
            f"| {model} | {r['parameters']:,} | {r['epochs']} | {r['seconds_per_epoch']:.1f} "
            f"| {r['peak_memory_mib']:.0f} | {r['relative_l2']:.4e} | {r['relative_h1']:.4e} "
            f"| {ratio} |"
        )
    return "\n".join(lines) + "\n"
