"""Seconds per Darcy system: our batched solvers against the strongest peers, in one run.

Same systems for every solver (``N`` coefficients per size and family, ``f = 1``), same
requirement: true relative residual ``||b - A x|| / ||b|| <= 1e-8`` (checked for every result).

Peers (CPU, one system at a time, matrix assembled outside the timer):
- ``superlu``: SciPy SuperLU with the symmetric minimum-degree ordering;
- ``pyamg``: PyAMG smoothed aggregation as a CG preconditioner, setup included;
- ``gcrotmk``: SciPy's GCROT(m, k) with its recycled subspace carried from system to system,
  preconditioned by PyAMG (setup included);
- ``petsc-hypre`` / ``petsc-gamg`` / ``petsc-icc``: PETSc CG with hypre BoomerAMG, PETSc's
  own smoothed-aggregation AMG, or incomplete Cholesky ICC(0), stopping on the unpreconditioned
  (true) relative residual, default settings otherwise; one process on one core, KSP and
  preconditioner set-up inside the timer (``petsc_runner.py``: petsc4py lives in another
  Python, ``--petsc-python``; the rows are skipped with a message when it is missing);
  ``-2``: the same in two independent processes, one per core, each solving half the systems,
  seconds per system = the busier process's total / N (equal cores with our two threads).

Ours (``datagen``, torch, float64, batched over all ``N`` systems of a size):
- ``pcg-jacobi``: Jacobi-preconditioned CG from zero (a Krylov baseline without recycling);
- ``pcg-mg``: CG preconditioned by the Galerkin multigrid V-cycle in float32
  (``solver.method: pcg``, the default from 129 x 129 up), all systems in one batch;
- ``pcg-mg-1``: the same, one system at a time (what batching buys);
- ``pcg-mg-t1``: ``pcg-mg`` on one thread (equal cores with the one-process PETSc rows);
- ``pcg-mg-warm``: SKR's sort and warm start without recycling: the systems are ordered by the
  greedy nearest-neighbour tour (``datagen.linalg.sorting``), cut into 4 chains advanced as one
  batch, each solve starting from the previous solution of its chain (the ablation of warm starts);
- ``pcg-jacobi-chains`` / ``pcg-mg-chains``: CG along the 4 chains of the rows below, natural
  order, zero start, no recycling: the non-recycled baselines with the chained rows' batching
  (batches of 4), so that the time ratios printed under each table isolate what SKR adds;
- ``rcg-jacobi``: Jacobi-CG recycling 20 Ritz vectors from the previous system of its chain,
  in the natural (unsorted) order, zero start: recycling without sorting (the SKR ablation);
- ``skr-jacobi``: sorted chains, warm starts and 20 recycled Ritz vectors (full SKR, for SPD
  systems: recycled CG instead of GCRO-DR);
- ``skr-mg``: the same with the multigrid preconditioner (10 Ritz vectors).

Every row gets one untimed warm-up first, as a generator in steady state would have: PETSc
solves its first system once (``petsc_peer.py``), our batched rows solve their first batch once
(the first solve in a process pays allocator growth and lazy initialisation, 1.3-1.6x at 257^2).
A batched row's batch is then timed three times and its median taken (one timing of one batch
varied by up to 1.3x between runs on a 2-core VM); a peer row's seconds are the median over its
systems.

"vs best peer": the fastest peer row (any core count) over this row; "vs hypre-2": the two-process
``petsc-hypre-2`` over this row (equal cores).

Usage: python benchmarks/darcy_solvers.py [--sizes 129 257 513] [--samples 16]
       [--families piecewise lognormal] [--device cpu|cuda] [--skip pcg-jacobi ...]
       [--only pcg-mg petsc-hypre ...] [--petsc-python PYTHON]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import scipy.sparse.linalg as spla
import torch
from petsc_runner import DARCY_PEERS, DEFAULT_PYTHON, petsc_missing, run_petsc
from ratios import print_speedups, ratio_cell

from datagen.core.fields import gaussian_random_field, sample_seed
from datagen.core.memory import retain_freed_memory
from datagen.linalg.chains import solve_chains
from datagen.linalg.krylov import pcg
from datagen.linalg.sorting import sort_fields
from datagen.problems.darcy.physics import assemble, darcy_preconditioner, darcy_system

TOL = 1e-8
PEERS = ("superlu", "pyamg", "gcrotmk", *DARCY_PEERS, *(f"{p}-2" for p in DARCY_PEERS))
# (row, its non-recycled baseline on the same chains): the paper's speed-up, GMRES / SKR time
SKR_PAIRS = [
    ("rcg-jacobi", "pcg-jacobi-chains"),
    ("skr-jacobi", "pcg-jacobi-chains"),
    ("pcg-mg-warm", "pcg-mg-chains"),
    ("skr-mg", "pcg-mg-chains"),
]


def coefficients(family: str, size: int, count: int) -> np.ndarray:
    seeds = [sample_seed(2024, 0, i) for i in range(count)]
    if family == "piecewise":
        field = gaussian_random_field(seeds, size, 2.0, 3.0, "neumann").numpy()
        return np.where(field >= 0, 12.0, 3.0)
    return np.exp(gaussian_random_field(seeds, size, 2.5, 7.0, "periodic").numpy())


def peer_superlu(matrices, b):
    out = []
    for m in matrices:
        start = time.perf_counter()
        x = spla.splu(m.tocsc(), permc_spec="MMD_AT_PLUS_A").solve(b)
        out.append((x, time.perf_counter() - start, 0))
    return out


def peer_pyamg(matrices, b):
    import pyamg

    out = []
    for m in matrices:
        start = time.perf_counter()
        residuals: list[float] = []
        ml = pyamg.smoothed_aggregation_solver(m)
        x = ml.solve(b, tol=TOL / 10, accel="cg", maxiter=500, residuals=residuals)
        out.append((x, time.perf_counter() - start, len(residuals) - 1))
    return out


def peer_gcrotmk(matrices, b):
    import pyamg

    recycled: list = []
    out = []
    for m in matrices:
        start = time.perf_counter()
        count = [0]
        M = pyamg.smoothed_aggregation_solver(m).aspreconditioner(cycle="V")
        x, info = spla.gcrotmk(
            m,
            b,
            rtol=TOL / 10,
            atol=0.0,
            M=M,
            m=20,
            k=10,
            CU=recycled,
            discard_C=True,
            maxiter=500,
            callback=lambda _, count=count: count.__setitem__(0, count[0] + 1),
        )
        out.append((x, time.perf_counter() - start, count[0]))
    return out


REPEATS = 3  # timed solves of each batch; its time is their median


def ours(a: np.ndarray, preconditioner: str, batch: int, device: str, threads: int = 0):
    """Our batched CG in batches of ``batch``; ``threads`` > 0: on that many torch threads.
    Each batch (set-up and solve) is timed ``REPEATS`` times after a warm-up; a system's
    seconds are its batch's median divided by the batch size."""
    saved = torch.get_num_threads()
    if threads > 0:
        torch.set_num_threads(threads)
    try:
        return _ours(a, preconditioner, batch, device)
    finally:
        torch.set_num_threads(saved)


def _solve_batch(at: torch.Tensor, preconditioner: str):
    op, rhs = darcy_system(at, torch.ones_like(at))
    precond = darcy_preconditioner(op, rhs, preconditioner)
    return pcg(op, rhs, preconditioner=precond, tol=TOL, maxiter=20000)


def _ours(a: np.ndarray, preconditioner: str, batch: int, device: str):
    out = []
    _solve_batch(torch.from_numpy(a[:batch]).to(device), preconditioner)  # warm-up, untimed
    for lo in range(0, len(a), batch):
        at = torch.from_numpy(a[lo : lo + batch]).to(device)
        seconds = []
        for _ in range(REPEATS):
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            result = _solve_batch(at, preconditioner)
            if device == "cuda":
                torch.cuda.synchronize()
            seconds.append(time.perf_counter() - start)
        share = float(np.median(seconds)) / at.shape[0]
        x = result.x.cpu().numpy()
        out += [(x[k].ravel(), share, int(result.iterations[k])) for k in range(len(x))]
    return out


def ours_chains(
    a: np.ndarray,
    chains: int,
    device: str,
    preconditioner: str,
    sort: bool,
    warm: bool,
    recycle: int,
):
    """Solve along ``chains`` contiguous chains of the (sorted) order, one batch per step
    (:func:`datagen.linalg.chains.solve_chains`).

    Each step's batch holds the next system of every chain; a system may start from the
    previous solution of its chain (``warm``) and be deflated by the Ritz vectors of the
    previous system (``recycle`` > 0 vectors): SKR's sort + warm start + recycling.
    """
    order = sort_fields(a, method="greedy") if sort else np.arange(len(a))
    start = time.perf_counter()

    def system(step):
        at = torch.from_numpy(a[step]).to(device)
        op, rhs = darcy_system(at, torch.ones_like(at))
        return op, darcy_preconditioner(op, rhs, preconditioner), rhs

    def krylov(op, rhs, x0, precond, recycled):
        return pcg(op, rhs, x0, precond, TOL, 20000, recycle=recycled, ritz=recycle)

    x, info = solve_chains(order, chains, system, krylov, "skr", warm)
    share = (time.perf_counter() - start) / len(a)
    return [(x[k].ravel(), share, info[k].iterations) for k in range(len(a))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[129, 257, 513])
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--families", nargs="+", default=["piecewise", "lognormal"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--skip", nargs="*", default=[])
    parser.add_argument("--only", nargs="*", default=None, help="run only these rows")
    parser.add_argument("--petsc-python", default=DEFAULT_PYTHON)
    args = parser.parse_args()
    retain_freed_memory()  # as datagen's CLI does, for every row of this process
    if any(s < 5 for s in args.sizes) or args.samples < 1:
        raise SystemExit("darcy_solvers: need sizes >= 5 and samples >= 1")
    solvers = {
        "superlu": lambda a, ms, b: peer_superlu(ms, b),
        "pyamg": lambda a, ms, b: peer_pyamg(ms, b),
        "gcrotmk": lambda a, ms, b: peer_gcrotmk(ms, b),
        "pcg-jacobi": lambda a, ms, b: ours(a, "jacobi", len(a), args.device),
        "pcg-mg": lambda a, ms, b: ours(a, "multigrid", len(a), args.device),
        "pcg-mg-1": lambda a, ms, b: ours(a, "multigrid", 1, args.device),
        "pcg-mg-t1": lambda a, ms, b: ours(a, "multigrid", len(a), args.device, threads=1),
        "pcg-mg-warm": lambda a, ms, b: ours_chains(a, 4, args.device, "multigrid", True, True, 0),
        "pcg-jacobi-chains": lambda a, ms, b: ours_chains(
            a, 4, args.device, "jacobi", False, False, 0
        ),
        "pcg-mg-chains": lambda a, ms, b: ours_chains(
            a, 4, args.device, "multigrid", False, False, 0
        ),
        "rcg-jacobi": lambda a, ms, b: ours_chains(a, 4, args.device, "jacobi", False, False, 20),
        "skr-jacobi": lambda a, ms, b: ours_chains(a, 4, args.device, "jacobi", True, True, 20),
        "skr-mg": lambda a, ms, b: ours_chains(a, 4, args.device, "multigrid", True, True, 10),
    }
    for name, options in DARCY_PEERS.items():
        for procs, row in ((1, name), (2, f"{name}-2")):
            solvers[row] = lambda a, ms, b, o=options, p=procs: run_petsc(
                ms, b, o, TOL, p, args.petsc_python
            )
    unknown = (set(args.skip) | set(args.only or [])) - set(solvers)
    if unknown:
        raise SystemExit(f"darcy_solvers: unknown rows {sorted(unknown)}; known: {sorted(solvers)}")
    solvers = {k: v for k, v in solvers.items() if k not in args.skip}
    if args.only is not None:
        solvers = {k: v for k, v in solvers.items() if k in args.only}
    if any(k.startswith("petsc") for k in solvers):
        missing = petsc_missing(args.petsc_python)
        if missing:
            print(f"# {missing}")
            solvers = {k: v for k, v in solvers.items() if not k.startswith("petsc")}
    print(
        f"# {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"device {args.device}, {args.samples} systems per row"
    )
    print(
        "| family | s | solver | median s/system | mean iterations | worst residual | "
        "vs best peer | vs hypre-2 |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for family in args.families:
        for size in args.sizes:
            a = coefficients(family, size, args.samples)
            matrices = [assemble(x) for x in a]
            b = np.ones(matrices[0].shape[0])
            rows = {}
            for name, solve in solvers.items():
                results = solve(a, matrices, b)
                worst = max(
                    np.linalg.norm(b - m @ x) / np.linalg.norm(b)
                    for m, (x, _, _) in zip(matrices, results, strict=True)
                )
                seconds = float(np.median([t for _, t, _ in results]))
                rows[name] = (seconds, np.mean([i for _, _, i in results]), worst)
            peers = [v[0] for k, v in rows.items() if k in PEERS]
            best_peer = min(peers) if peers else None  # peers skipped: no ratio
            hypre = rows.get("petsc-hypre-2", (None,))[0]
            for name, (seconds, its, worst) in rows.items():
                print(
                    f"| {family} | {size} | {name} | {seconds:.5f} | {its:.1f} | {worst:.1e} | "
                    f"{ratio_cell(best_peer, seconds)} | {ratio_cell(hypre, seconds)} |",
                    flush=True,
                )
            print_speedups(f"{family} {size}^2", rows, SKR_PAIRS)


if __name__ == "__main__":
    main()
