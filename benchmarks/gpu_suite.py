"""The GPU acceptance run: every GPU target measured by one prepared command, on one GPU.

    python benchmarks/gpu_suite.py --out DIR [--device cuda|cpu] [--tiny] [--only ITEM ...]
        [--skip ITEM ...] [--peer-python PATH] [--rough-seconds S]

Items, in order, each with its sizes and a time budget (:data:`FULL`; the whole run is sized
for 8 minutes on an H200):

- ``darcy``: Darcy generation (``pcg`` + multigrid, batch 128) at 257^2 and 513^2, both
  coefficient families, against a CuPy user's CG + Jacobi and a JAX user's vmapped matrix-free
  CG on the same GPU (``benchmarks/gpu_peers.py``), every result checked at 1e-8;
- ``helmholtz``: ``helmholtz_k60`` (257^2, k0 = 60) with SKR and GMRES, per system against
  SuperLU on the 2-core CPU;
- ``navier_stokes``: the torch-cfd setting (256^2, dt 1e-3) at batch 256 against torch-cfd in the
  same process, and the projected time of 1,000 trajectories;
- ``semilinear``: 1-D KS / KdV against exponax on the same device;
- ``training``: throughput and peak memory of each model of ``suite_training.MODELS``, fp32 and
  bf16 autocast, 50 steps each;
- ``rough``: MgNO vs FNO for about 2 minutes each on the rough 256^2 Darcy data;
- ``pytest``: ``pytest -m gpu`` (the CUDA tests, CPU agreement of generators and models).

Writes ``DIR/gpu_suite.json`` and ``DIR/gpu_suite.md`` (device name, date, versions, a table per
item, its checks and notes) after every item, and ``DIR/pytest_gpu.txt``. Exit status 1 when a
correctness check fails (a residual above its tolerance, a disagreement with the CPU or a peer)
or an item fails; speed targets are recorded as met or not met and never fail the run. CuPy,
JAX, exponax and torch-cfd are used where importable (JAX and exponax in ``--peer-python``,
default this Python) and skipped with a message otherwise. ``--tiny`` shrinks every item to a
check of the script itself (about a minute on a CPU); its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import suite_solvers
import suite_training
import torch
from suite_report import Context, Section, header, write_report

ROOT = Path(__file__).resolve().parents[1]
FAULT_ENV = "OPSOLVE_SUITE_FAULT"  # test hook: the item whose result is perturbed
TOTAL_BUDGET_S = 480.0  # 8 minutes on an H200, start-up excluded

FULL: dict[str, dict] = {
    "darcy": dict(
        seconds=60, sizes=[257, 513], batch=128, peer_samples=8, repeats=2, agreement_samples=1
    ),
    "helmholtz": dict(seconds=25, overrides=[], samples=48, agreement_samples=1),
    "navier_stokes": dict(
        seconds=20,
        grid=256,
        batch=256,
        steps=200,
        repeats=3,
        estimate_steps=500,
        agreement_batch=2,
        agreement_steps=20,
    ),
    "semilinear": dict(seconds=25, batch=256, steps=500, repeats=5, rounds=1, agreement_steps=100),
    "training": dict(seconds=40, steps=50, warmup=5, batch=None),
    "rough": dict(
        seconds=270,
        resolution=512,
        samples={"train": 512, "valid": 32, "test": 32},
        train_seconds=120,
        data_batch=64,
        workers=4,
    ),
    "pytest": dict(seconds=40, timeout=300),
}
TINY: dict[str, dict] = {
    "darcy": dict(seconds=5, sizes=[33], batch=4, peer_samples=2, repeats=1, agreement_samples=1),
    "helmholtz": dict(
        seconds=5,
        overrides=["resolution=33", "wavenumber.k0=10.0", "solver.chains=2"],
        samples=4,
        agreement_samples=1,
    ),
    "navier_stokes": dict(
        seconds=5,
        grid=32,
        batch=2,
        steps=5,
        repeats=1,
        estimate_steps=5,
        agreement_batch=1,
        agreement_steps=3,
    ),
    "semilinear": dict(seconds=5, batch=4, steps=10, repeats=1, rounds=1, agreement_steps=5),
    "training": dict(seconds=15, steps=1, warmup=1, batch=2),
    "rough": dict(
        seconds=30,
        resolution=66,
        samples={"train": 4, "valid": 2, "test": 2},
        train_seconds=0.5,
        max_epochs=1,
        data_batch=4,
        workers=0,
    ),
    "pytest": dict(seconds=20, timeout=300),
}


def pytest_gpu(ctx: Context) -> Section:
    """``pytest -m gpu`` in a child process; its output goes to ``pytest_gpu.txt``."""
    b = ctx.budget
    sec = ctx.begin(
        Section(
            "pytest",
            "pytest -m gpu (the CUDA tests)",
            ["exit status", "passed", "skipped", "failed", "errors"],
            b["seconds"],
        )
    )
    command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider", "tests"]
    env = {k: v for k, v in os.environ.items() if k != FAULT_ENV}
    done = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=b["timeout"],
        check=False,
    )
    (ctx.out / "pytest_gpu.txt").write_text(done.stdout[-200_000:] + done.stderr[-20_000:])
    last = (done.stdout.strip().splitlines() or [""])[-1]
    counts = {kind: int(n) for n, kind in re.findall(r"(\d+) (passed|skipped|failed|error)", last)}
    sec.row(done.returncode, *(counts.get(k, 0) for k in ("passed", "skipped", "failed", "error")))
    sec.note(f"summary: {last or '(none)'}; full output in pytest_gpu.txt")
    sec.check("pytest -m gpu exit status", done.returncode, 0)
    if ctx.device == "cuda":
        sec.check("CUDA tests that ran", counts.get("passed", 0), 1, relation=">=")
    return sec


ITEMS: dict[str, Callable[[Context], Section]] = {
    "darcy": suite_solvers.darcy,
    "helmholtz": suite_solvers.helmholtz,
    "navier_stokes": suite_solvers.navier_stokes,
    "semilinear": suite_solvers.semilinear,
    "training": suite_training.training,
    "rough": suite_training.rough,
    "pytest": pytest_gpu,
}


class OneLineParser(argparse.ArgumentParser):
    """Bad arguments are one line on stderr and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = OneLineParser(prog="gpu_suite", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="directory of the report")
    parser.add_argument(
        "--device", choices=["cuda", "cpu"], default="cuda" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: a check of the script")
    parser.add_argument("--only", nargs="+", choices=list(ITEMS), default=None, metavar="ITEM")
    parser.add_argument("--skip", nargs="+", choices=list(ITEMS), default=[], metavar="ITEM")
    parser.add_argument(
        "--peer-python",
        default=sys.executable,
        help="a Python with JAX (and exponax) for the peers",
    )
    parser.add_argument(
        "--rough-seconds",
        type=float,
        default=None,
        help="training seconds per model of the rough item",
    )
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is visible (use --device cpu --tiny)")
    if args.rough_seconds is not None and not args.rough_seconds > 0:
        parser.error(f"--rough-seconds must be > 0, got {args.rough_seconds}")
    if args.out.exists() and not args.out.is_dir():
        parser.error(f"--out {args.out}: is a file, not a directory")
    try:
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        parser.error(f"--out {args.out}: cannot create it ({error.strerror})")
    return args


def run_item(name: str, ctx: Context) -> Section:
    """One item, timed; an exception becomes the section's error (its last line)."""
    print(f"== {name}", flush=True)
    start = time.perf_counter()
    try:
        sec = ITEMS[name](ctx)
    except Exception as error:  # recorded, and the run goes on to the next item
        traceback.print_exc()
        lines = str(error).strip().splitlines() or [""]
        sec = ctx.section or Section(name, "(failed)", [], ctx.budget["seconds"])
        sec.error = f"{type(error).__name__}: {lines[-1]}"
    if ctx.device == "cuda":
        torch.cuda.empty_cache()  # what this item cached is free for the next one
    sec.seconds = time.perf_counter() - start
    for c in sec.checks:
        print(f"  [{c.label()}] {c.name}: {c.value:.4g}", flush=True)
    return sec


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # JAX beside torch
    if args.tiny:  # a check of the script: one thread loses least on a busy machine
        torch.set_num_threads(1)
        os.environ["OMP_NUM_THREADS"] = "1"  # and the child processes
    budgets = TINY if args.tiny else FULL
    names = [n for n in (args.only or ITEMS) if n not in args.skip]
    command = "python benchmarks/gpu_suite.py " + shlex.join(argv or sys.argv[1:])
    total_budget = TOTAL_BUDGET_S if not args.tiny else sum(b["seconds"] for b in TINY.values())
    head = header(args.device, args.tiny, command, total_budget)
    sections: list[Section] = []
    shared: dict = {}
    with tempfile.TemporaryDirectory(prefix="gpu_suite_") as work:
        for name in names:
            budget = dict(budgets[name])
            if name == "rough" and args.rough_seconds:
                budget["train_seconds"] = args.rough_seconds
            ctx = Context(args.device, args.tiny, budget, args.out, Path(work), args.peer_python)
            ctx.fault, ctx.shared = os.environ.get(FAULT_ENV), shared
            sections.append(run_item(name, ctx))
            write_report(args.out, head, sections)
    total = sum(s.seconds for s in sections)
    print(f"{total:.0f} s in all; report: {args.out / 'gpu_suite.md'}", flush=True)
    failed = [s.item for s in sections if s.failed]
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
