"""Shared by the operator benchmarks: train a config in its own process, print tables."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, NamedTuple

import torch

ROOT = Path(__file__).resolve().parents[1]

_TRAIN_AND_MEASURE = (
    "import json, resource, sys, torch\n"
    "from datagen.core.errors import UserError\n"
    "from opsolve.train.config import load_train_config\n"
    "from opsolve.train.trainer import train\n"
    "import time\n"
    "start = time.perf_counter()\n"
    "try:\n"
    "    cfg = load_train_config(sys.argv[1], sys.argv[2:])\n"
    "    train(cfg, overwrite=True, progress=False)\n"
    "except UserError as error:\n"
    "    sys.exit(f'error: {error}')\n"
    "seconds = time.perf_counter() - start\n"
    "rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024\n"
    "gpu = torch.cuda.max_memory_allocated() if torch.cuda.is_available() else 0\n"
    "print('PEAK', json.dumps({'rss': rss, 'cuda': gpu, 'seconds': seconds}))\n"
)


def machine_line(device: str) -> str:
    """Processor, torch version, threads, device and date: the header of a report."""
    return (
        f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, device {device}; {time.strftime('%Y-%m-%d')}"
    )


class Training(NamedTuple):
    """A training child of :func:`start_training` and the files holding its output."""

    child: subprocess.Popen
    stdout: IO[str]
    stderr: IO[str]


def start_training(config: Path, overrides: list[str], core: int | None = None) -> Training:
    """Start ``opsolve train CONFIG OVERRIDES`` in a child process, so its peak memory is its
    own; with ``core``, the child runs one thread pinned to that CPU core (Linux), so that
    trainings started side by side do not compete for cores. Its output goes to temporary
    files, not pipes: a child running beside the one being waited for never stalls on a full
    pipe."""
    env, pin = None, None
    if core is not None:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        pin = lambda: os.sched_setaffinity(0, {core})  # noqa: E731
    out, err = tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")
    child = subprocess.Popen(
        [sys.executable, "-c", _TRAIN_AND_MEASURE, str(config), *overrides],
        cwd=ROOT,
        stdout=out,
        stderr=err,
        text=True,
        env=env,
        preexec_fn=pin,
    )
    return Training(child, out, err)


def finish_training(training: Training, config: Path) -> dict:
    """Wait for a child of :func:`start_training`. Returns ``{"seconds": the child's wall
    seconds of loading and training, "peak_mib": peak CUDA memory on a GPU, else the peak
    resident set}``; a failed training ends the benchmark with the child's error."""
    training.child.wait()
    stdout, stderr = (_read_and_close(f) for f in (training.stdout, training.stderr))
    if training.child.returncode != 0:
        lines = stderr.strip().splitlines() or ["(no message)"]
        if lines[-1].startswith("error: "):  # bad input: the child's one line
            raise SystemExit(f"training {config.name}: {lines[-1]}")
        raise SystemExit(f"training {config.name} failed:\n{stderr[-2000:]}")
    peak = json.loads(stdout.rsplit("PEAK", 1)[1])
    return {"seconds": peak["seconds"], "peak_mib": (peak["cuda"] or peak["rss"]) / 2**20}


def _read_and_close(stream: IO[str]) -> str:
    stream.seek(0)
    text = stream.read()
    stream.close()
    return text


def train_in_child(config: Path, overrides: list[str]) -> dict:
    """Train in a child process and wait for it (:func:`start_training`,
    :func:`finish_training`)."""
    return finish_training(start_training(config, overrides), config)


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
