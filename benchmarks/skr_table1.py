"""The SKR paper's Darcy setting (ICLR 2024, Table 1): GMRES(40), SKR and PETSc in one run.

Systems: Darcy on 82 x 82 nodes (n = 6400 unknowns), lognormal coefficients (``darcy_skr``:
exp of a periodic GRF, alpha 2.5, tau 7), f = 1; Jacobi preconditioner; zero start; tol 1e-8 on
the true relative residual ``||b - A x|| / ||b||`` (recomputed here for every result).

Rows:
- ``petsc-gmres40``: PETSc GMRES(40), Jacobi on the right, so that it stops on the true
  residual norm as ours does (the same method as ``gmres40``); one process on one core;
  ``-2``: two independent processes, one per core, each solving half the systems;
- ``petsc-gmres40-left``: PETSc's defaults, as the paper's stack runs it: Jacobi on the left,
  stopping on the preconditioned residual (its true residual is reported, not required);
- ``gmres40``: our GMRES(40) (``datagen.linalg.gcrodr.gmres``), one system at a time;
- ``gmres40-batch``: the same with all systems in one batch (our batched engine);
- ``skr-1``: SKR as the paper: the systems sorted (greedy nearest-neighbour tour of the
  coefficients, inside the timer), then solved in that order along one chain with GCRO-DR(40, 20),
  each system recycling the previous one's harmonic Ritz vectors, zero start;
- ``skr-C`` (``--chains``): the same along C contiguous chains of the sorted order, advanced as
  one batch of C;
- ``gmres40-C``: GMRES(40) along the same C chains (the non-recycled baseline with that batching);
- ``skr-1-cgs2``: ``skr-1`` with the solver's default orthogonalization (classical Gram-Schmidt
  with a second pass when needed) instead of PETSc's one pass, which every other row of ours
  uses so that the method is PETSc's;
- ``gmres40-f32``, ``skr-1-f32``: ``gmres40`` and ``skr-1`` with float32 cycles
  (``cycle_dtype``: each restart corrects the float64 solution from its float64 residual; the
  same tolerance on the true residual);
- ``skr-1-m40``: ``skr-1`` with GCRO-DR(40, 20) counted as Parks et al. (2006) and HPDDM
  (PETSc's ``KSPHPDDM``) count it: m = 40 is the whole space, so a cycle takes 40 - 20 = 20
  Arnoldi steps after the 20 recycled vectors (our ``restart`` counts the Arnoldi steps alone:
  ``skr-1`` takes 40).

Under the table: the paper's ratio (GMRES time / SKR time, and in iterations) and SKR against
PETSc. Rows ``*-t1`` run on one torch thread (``--threads``, default 1: a chain is sequential).

Usage: python benchmarks/skr_table1.py [--samples 100] [--chains 4] [--threads 1]
       [--only ROW ...] [--petsc-python PYTHON]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch
from petsc_runner import DEFAULT_PYTHON, petsc_missing, run_petsc
from ratios import print_speedups, ratio_cell

from datagen.core.fields import gaussian_random_field, sample_seed
from datagen.core.memory import retain_freed_memory
from datagen.linalg.chains import solve_chains
from datagen.linalg.gcrodr import gcrodr
from datagen.linalg.krylov import Jacobi
from datagen.linalg.sorting import sort_fields
from datagen.problems.darcy.physics import assemble, darcy_system

SIZE, TOL, RESTART, RECYCLE, MAXITER = 82, 1e-8, 40, 20, 20000
GMRES = f"-ksp_type gmres -ksp_gmres_restart {RESTART} -pc_type jacobi -ksp_max_it {MAXITER}"


def coefficients(count: int) -> np.ndarray:
    """The ``darcy_skr`` coefficients of samples 0..count-1: (count, 82, 82)."""
    seeds = [sample_seed(2024, 0, i) for i in range(count)]
    return np.exp(gaussian_random_field(seeds, SIZE, 2.5, 7.0, "periodic").numpy())


def ours(
    a: np.ndarray,
    chains: int,
    sort: bool,
    recycle: int,
    orth: str = "cgs",
    cycles: torch.dtype | None = None,
    restart: int = RESTART,
) -> list:
    """GCRO-DR(40, recycle) (GMRES(40) for 0) with Jacobi along ``chains`` chains, zero start,
    orthogonalization ``orth``, cycles in ``cycles`` (None: float64), ``restart`` Arnoldi steps
    per cycle; per system ``(x, seconds share, iterations)``; the sort is inside the timer."""
    start = time.perf_counter()
    order = sort_fields(a, method="greedy") if sort else np.arange(len(a))

    def system(step):
        op, rhs = darcy_system(torch.from_numpy(a[step]), torch.ones(len(step), SIZE, SIZE))
        return op, Jacobi(op.diagonal()), rhs

    def krylov(op, rhs, x0, pre, space):
        return gcrodr(op, rhs, x0, pre, TOL, restart, recycle, MAXITER, space, orth, cycles)

    x, info = solve_chains(order, chains, system, krylov, "skr", False)
    share = (time.perf_counter() - start) / len(a)
    return [(x[k].ravel(), share, info[k].iterations) for k in range(len(a))]


def on_threads(threads: int, solve):
    """Run ``solve()`` on ``threads`` torch threads."""
    saved = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return solve()
    finally:
        torch.set_num_threads(saved)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of our rows")
    parser.add_argument("--only", nargs="*", default=None, help="run only these rows")
    parser.add_argument("--petsc-python", default=DEFAULT_PYTHON)
    args = parser.parse_args()
    retain_freed_memory()  # as datagen's CLI does, for every row of this process
    if args.samples < 2 or not 1 <= args.chains <= args.samples or args.threads < 1:
        raise SystemExit("skr_table1: need samples >= 2, 1 <= chains <= samples, threads >= 1")
    c, t = args.chains, args.threads
    a = coefficients(args.samples)
    matrices = [assemble(x) for x in a]
    b = np.ones(matrices[0].shape[0])
    py = args.petsc_python
    solvers = {
        "petsc-gmres40": lambda: run_petsc(matrices, b, GMRES + " -ksp_pc_side right", TOL, 1, py),
        "petsc-gmres40-2": lambda: run_petsc(
            matrices, b, GMRES + " -ksp_pc_side right", TOL, 2, py
        ),
        "petsc-gmres40-left": lambda: run_petsc(matrices, b, GMRES, TOL, 1, py),
        "gmres40": lambda: on_threads(t, lambda: ours(a, 1, False, 0)),
        "gmres40-batch": lambda: ours(a, len(a), False, 0),
        f"gmres40-{c}": lambda: ours(a, c, False, 0),
        "skr-1": lambda: on_threads(t, lambda: ours(a, 1, True, RECYCLE)),
        f"skr-{c}": lambda: ours(a, c, True, RECYCLE),
        "skr-1-cgs2": lambda: on_threads(t, lambda: ours(a, 1, True, RECYCLE, "cgs2")),
        "gmres40-f32": lambda: on_threads(t, lambda: ours(a, 1, False, 0, "cgs", torch.float32)),
        "skr-1-f32": lambda: on_threads(t, lambda: ours(a, 1, True, RECYCLE, "cgs", torch.float32)),
        "skr-1-m40": lambda: on_threads(
            t, lambda: ours(a, 1, True, RECYCLE, restart=RESTART - RECYCLE)
        ),
    }
    unknown = set(args.only or []) - set(solvers)
    if unknown:
        raise SystemExit(f"skr_table1: unknown rows {sorted(unknown)}; known: {sorted(solvers)}")
    if args.only is not None:
        solvers = {k: v for k, v in solvers.items() if k in args.only}
    if any(k.startswith("petsc") for k in solvers):
        missing = petsc_missing(py)
        if missing:
            print(f"# {missing}")
            solvers = {k: v for k, v in solvers.items() if not k.startswith("petsc")}
    print(
        f"# {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads "
        f"({t} for gmres40 and skr-1), {args.samples} systems, n = {(SIZE - 2) ** 2}, Jacobi, "
        f"tol {TOL:g}, GMRES({RESTART}), GCRO-DR({RESTART}, {RECYCLE})"
    )
    print("| solver | median s/system | mean iterations | worst residual | vs petsc-gmres40 |")
    print("|---|---|---|---|---|")
    rows = {}
    for name, solve in solvers.items():
        results = solve()
        worst = max(
            np.linalg.norm(b - m @ x) / np.linalg.norm(b)
            for m, (x, _, _) in zip(matrices, results, strict=True)
        )
        seconds = float(np.median([s for _, s, _ in results]))
        rows[name] = (seconds, float(np.mean([i for _, _, i in results])), worst)
        base = rows.get("petsc-gmres40", (None,))[0]
        print(
            f"| {name} | {seconds:.5f} | {rows[name][1]:.1f} | {worst:.1e} | "
            f"{ratio_cell(base, seconds)} |",
            flush=True,
        )
    pairs = [
        ("skr-1", "gmres40"),
        (f"skr-{c}", f"gmres40-{c}"),
        ("skr-1", "petsc-gmres40"),
        (f"skr-{c}", "petsc-gmres40-2"),
        ("gmres40", "petsc-gmres40"),
        ("skr-1-f32", "gmres40-f32"),
        ("skr-1-f32", "petsc-gmres40"),
        ("skr-1-m40", "gmres40"),
    ]
    print_speedups(f"Darcy n = {(SIZE - 2) ** 2}", rows, pairs)


if __name__ == "__main__":
    main()
