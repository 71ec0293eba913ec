"""Seconds per Helmholtz system: SuperLU, SciPy gcrotmk and our Krylov solvers, in one run.

Same systems for every solver: ``N`` wave numbers ``k = k0 (1 + 0.2 tanh(GRF))`` per size (k0 chosen
for ``--ppw`` points per shortest wavelength), a Gaussian source, the absorbing boundary of
:mod:`datagen.problems.helmholtz.physics`; every result must reach the true relative residual 1e-8
(the worst one is reported).

- ``superlu``: SciPy SuperLU per system (matrix assembled outside the timer);
- ``gcrotmk``: SciPy GCROT(m, k) with its recycled subspace carried from system to system,
  preconditioned by our shifted-Laplacian V-cycle (built per system, inside the timer); its
  iterations are counted as preconditioner applications;
- ``gmres``: our batched GMRES(m) + V-cycle, all systems in one batch, zero start (the SKR
  paper's baseline, with a much better preconditioner);
- ``gmres-chains``: the same GMRES(m), zero start, along the chains of the next rows
  (``--chains``, default 4; each step one batch): the non-recycled baseline with their
  batching, so that the time ratio isolates what recycling (and sorting) adds;
- ``recycle``: GCRO-DR(m, k) along the chains in index order, zero start (recycling alone);
- ``skr``: sorted chains + GCRO-DR recycling + warm starts (full SKR).

After each size, the recycling speed-up of ``recycle`` and ``skr`` against ``gmres-chains`` (time
and iterations) is printed.

Usage: python benchmarks/linear_solvers.py [--sizes 65 129] [--samples 16] [--ppw 10.5]
       [--restart 100] [--recycle 20] [--shift 1.0] [--chains 4] [--skip NAME ...]
"""

from __future__ import annotations

import argparse
import math
import platform
import time

import numpy as np
import scipy.sparse.linalg as spla
import torch
from ratios import print_speedups

from datagen.core.fields import gaussian_random_field, sample_seed
from datagen.linalg.chains import solve_chains
from datagen.linalg.gcrodr import gcrodr
from datagen.linalg.sorting import sort_fields
from datagen.problems.helmholtz.physics import (
    HelmholtzOperator,
    assemble,
    gaussian_source,
    load,
    shifted_laplace_multigrid,
    wavenumber,
)

TOL = 1e-8
MAXITER = 3000


def problems(size: int, count: int, ppw: float) -> tuple[np.ndarray, np.ndarray, float]:
    k0 = 2 * math.pi * (size - 1) / ppw / 1.2
    seeds = [sample_seed(2024, 0, i) for i in range(count)]
    k = wavenumber(gaussian_random_field(seeds, size, 2.0, 3.0, "neumann"), k0, 0.2).numpy()
    rhs = load(gaussian_source(size, (0.5, 0.5), 0.05).expand(count, size, size)).numpy()
    return k, rhs, k0


def peer_superlu(matrices, rhs):
    out = []
    for m, b in zip(matrices, rhs, strict=True):
        start = time.perf_counter()
        x = spla.splu(m.tocsc(), permc_spec="MMD_AT_PLUS_A").solve(b.ravel())
        out.append((x, time.perf_counter() - start, 0))
    return out


def peer_gcrotmk(matrices, rhs, k, restart: int, recycle: int, shift: float):
    recycled: list = []
    out = []
    for i, (m, b) in enumerate(zip(matrices, rhs, strict=True)):
        start = time.perf_counter()
        vcycle = shifted_laplace_multigrid(torch.from_numpy(k[i : i + 1]), shift)
        shape = k.shape[1:]
        count = [0]  # preconditioner applications: the Krylov steps, comparable to ours

        def apply(v, vcycle=vcycle, shape=shape, count=count):
            count[0] += 1
            t = torch.from_numpy(np.ascontiguousarray(v, dtype=np.complex128)).reshape(1, *shape)
            return vcycle(t).reshape(-1).numpy()

        M = spla.LinearOperator(m.shape, matvec=apply, dtype=np.complex128)
        x, _ = spla.gcrotmk(
            m,
            b.ravel(),
            rtol=TOL / 2,
            atol=0.0,
            M=M,
            m=restart,
            k=recycle,
            CU=recycled,
            discard_C=True,
            maxiter=200,
        )
        out.append((x, time.perf_counter() - start, count[0]))
    return out


def ours(k, rhs, chains: int, sort: bool, warm: bool, restart: int, recycle: int, shift: float):
    """Our GCRO-DR / GMRES + V-cycle along chains (:func:`datagen.linalg.chains.solve_chains`)."""
    order = sort_fields(k, method="greedy") if sort else np.arange(len(k))
    start = time.perf_counter()

    def system(step):
        kt = torch.from_numpy(k[step])
        pre = shifted_laplace_multigrid(kt, shift)
        return HelmholtzOperator.from_wavenumber(kt), pre, torch.from_numpy(rhs[step])

    def krylov(op, b, x0, pre, space):
        return gcrodr(op, b, x0, pre, TOL, restart, recycle, MAXITER, space)

    x, info = solve_chains(order, chains, system, krylov, "skr", warm)
    share = (time.perf_counter() - start) / len(k)
    return [(x[i].ravel(), share, info[i].iterations) for i in range(len(k))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[65, 129])
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--ppw", type=float, default=10.5)
    parser.add_argument("--skip", nargs="*", default=[])
    parser.add_argument("--restart", type=int, default=100, help="m of GMRES(m) / GCRO-DR(m, k)")
    parser.add_argument("--recycle", type=int, default=20, help="k of GCRO-DR(m, k)")
    parser.add_argument("--shift", type=float, default=1.0, help="damping of the V-cycle's CSL")
    parser.add_argument("--chains", type=int, default=4, help="chains of the chained rows")
    args = parser.parse_args()
    if args.restart < 1 or args.recycle < 1:
        parser.error(f"need --restart >= 1 and --recycle >= 1, got {args.restart}, {args.recycle}")
    if not 1 <= args.chains <= args.samples:
        parser.error(f"need 1 <= --chains <= --samples, got {args.chains}")
    if not args.shift > 0:
        parser.error(f"need --shift > 0, got {args.shift}")
    restart, recycle, shift, chains = args.restart, args.recycle, args.shift, args.chains
    print(
        f"# {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"{args.samples} systems per row, GMRES restart {restart}, recycle {recycle}, "
        f"shift {shift}, {chains} chains, cap {MAXITER}"
    )
    print("| s | k0 | solver | median s/system | mean iterations | worst residual | vs superlu |")
    print("|---|---|---|---|---|---|---|")
    for size in args.sizes:
        k, rhs, k0 = problems(size, args.samples, args.ppw)
        matrices = [assemble(x) for x in k]
        solvers = {
            "superlu": lambda k, rhs, ms: peer_superlu(ms, rhs),
            "gcrotmk": lambda k, rhs, ms: peer_gcrotmk(ms, rhs, k, restart, recycle, shift),
            "gmres": lambda k, rhs, ms: ours(k, rhs, len(k), False, False, restart, 0, shift),
            "gmres-chains": lambda k, rhs, ms: ours(
                k, rhs, chains, False, False, restart, 0, shift
            ),
            "recycle": lambda k, rhs, ms: ours(
                k, rhs, chains, False, False, restart, recycle, shift
            ),
            "skr": lambda k, rhs, ms: ours(k, rhs, chains, True, True, restart, recycle, shift),
        }
        rows = {}
        for name, solve in solvers.items():
            if name in args.skip:
                continue
            results = solve(k, rhs, matrices)
            worst = max(
                np.linalg.norm(b.ravel() - m @ x) / np.linalg.norm(b)
                for m, b, (x, _, _) in zip(matrices, rhs, results, strict=True)
            )
            seconds = float(np.median([t for _, t, _ in results]))
            rows[name] = (seconds, np.mean([i for _, _, i in results]), worst)
            base = rows.get("superlu", (float("nan"),))[0]
            print(
                f"| {size} | {k0:.1f} | {name} | {seconds:.4f} | {rows[name][1]:.1f} | "
                f"{worst:.1e} | {base / seconds:.2f}x |",
                flush=True,
            )
        print_speedups(f"{size}^2", rows, [("recycle", "gmres-chains"), ("skr", "gmres-chains")])


if __name__ == "__main__":
    main()
