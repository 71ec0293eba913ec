"""Generation throughput: one process with N threads against N ranks under torchrun.

The same dataset is generated, side by side in one run, by

- ``alone``: ``python -m datagen generate CONFIG ... --threads N`` (one process, N threads);
- ``one``: the same with ``--threads 1`` (one process, one thread: the scaling reference);
- ``ranks``: ``python -m torch.distributed.run --standalone --nproc-per-node N -m datagen
  generate CONFIG ... --threads 1`` (N gloo ranks of one thread each, parts and a split file of
  virtual datasets),

alternately (alone, one, ranks, alone, one, ranks, ...) so that a change in the machine's load
hits all three.
Each time is the wall clock of the whole command (start-up, solves, assembly, statistics), the
median of ``--repeats``. Reports samples per second, the speed-ups ``alone / ranks`` and
``one / ranks``, and
whether the two datasets hold the same arrays bit for bit (``scripts/compare_datasets.py``; the
Navier-Stokes CPU solver's inverse real FFT rounds differently with another number of threads,
so there it is expected to differ at round-off).

    python benchmarks/distributed_generation.py [--ranks 2] [--repeats 3] [--cases NAME ...]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs" / "datagen"

# name -> (config, overrides): each a run of tens of seconds on two cores.
CASES = {
    "darcy-pcg-257": ("darcy_small", ["resolution=257", "samples.train=128", "samples.valid=0",
                                      "samples.test=0", "batch_size=16"]),
    "darcy-superlu-193": ("darcy_small", ["resolution=193", "solver.method=direct",
                                          "samples.train=128", "samples.valid=0",
                                          "samples.test=0", "batch_size=16"]),
    "ns-64": ("ns_small", ["samples.train=16", "samples.valid=0", "samples.test=0",
                           "batch_size=4"]),
    "ks-128": ("ks_small", ["samples.train=256", "samples.valid=0", "samples.test=0",
                            "batch_size=32", "time.records=101"]),
}  # fmt: skip


def _compare():
    spec = importlib.util.spec_from_file_location(
        "compare_datasets", ROOT / "scripts" / "compare_datasets.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def command(mode: str, ranks: int, config: str, overrides: list[str], out: Path) -> list[str]:
    """The command line of one run."""
    args = ["generate", str(CONFIGS / f"{config}.yaml"), *overrides, f"output.dir={out}",
            "--no-progress"]  # fmt: skip
    if mode in ("alone", "one"):
        threads = ranks if mode == "alone" else 1
        return [sys.executable, "-m", "datagen", *args, "--threads", str(threads)]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={ranks}", "-m", "datagen", *args, "--threads", "1"]  # fmt: skip


def timed(argv: list[str]) -> float:
    """Wall-clock seconds of a command that must succeed."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    start = time.perf_counter()
    result = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode:
        raise SystemExit(f"distributed_generation.py: {' '.join(argv)} failed:\n{result.stderr}")
    return seconds


def samples_of(overrides: list[str]) -> int:
    counts = [o.split("=", 1) for o in overrides if o.startswith("samples.")]
    return sum(int(value) for _, value in counts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2, help="ranks, and threads of one process")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", nargs="+", default=list(CASES), metavar="NAME")
    args = parser.parse_args(argv)
    unknown = [c for c in args.cases if c not in CASES]
    if unknown or args.ranks < 1 or args.repeats < 1:
        problem = f"unknown case {unknown[0]} (one of {', '.join(CASES)})" if unknown else (
            "--ranks and --repeats must be at least 1")  # fmt: skip
        print(f"distributed_generation.py: {problem}", file=sys.stderr)
        return 2
    compare = _compare()
    machine = platform.processor() or platform.machine()
    print(f"# {machine}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the "
          f"start; python {platform.python_version()}")  # fmt: skip
    print(f"| case | samples | 1 process, {args.ranks} threads: s | 1 process, 1 thread: s | "
          f"{args.ranks} ranks: s | ranks samples/s | vs {args.ranks} threads | vs 1 thread | "
          "same arrays |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|")
    for case in args.cases:
        config, overrides = CASES[case]
        times: dict[str, list[float]] = {"alone": [], "one": [], "ranks": []}
        with tempfile.TemporaryDirectory() as tmp:
            for _ in range(args.repeats):
                for mode in times:
                    out = Path(tmp) / mode
                    shutil.rmtree(out, ignore_errors=True)
                    times[mode].append(timed(command(mode, args.ranks, config, overrides, out)))
            lines = compare.compare_dirs(Path(tmp) / "alone", Path(tmp) / "ranks")
            same = all(line.startswith("SAME") for line in lines)
        n = samples_of(overrides)
        alone, one, ranks = (statistics.median(times[m]) for m in times)
        print(f"| {case} | {n} | {alone:.1f} | {one:.1f} | {ranks:.1f} | {n / ranks:.2f} | "
              f"{alone / ranks:.2f}x | {one / ranks:.2f}x | {'yes' if same else 'no'} |",
              flush=True)  # fmt: skip
    print(f"# load average {os.getloadavg()[0]:.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
