"""Seconds per Poisson sample and per heat step: our solvers against SuperLU and PyAMG, in one run.

Poisson (``-Laplace u = f``, random ``f`` and Dirichlet data, one matrix for every sample):
``N`` loads per size, every result checked for the true relative residual (worst reported).

- ``superlu-each``: SciPy SuperLU factor and solve per sample (what a per-sample script does);
- ``superlu-once``: one SuperLU factorization, all loads as one block (the factorization
  included, shared over the ``N`` samples; our ``solver.method: direct``);
- ``pyamg``: one PyAMG smoothed-aggregation hierarchy, CG per load to 1e-10 (setup shared);
- ``dst``: our sine-transform solve of the block (``solver.method: dst``, the default).

Heat (``u_t = div(a grad u)``, Crank-Nicolson, ``T`` trajectories of ``--steps`` steps, 12 / 3
piecewise-constant coefficients): seconds per trajectory-step, every trajectory compared with
SuperLU's (the worst relative difference of the final state is reported).

- ``superlu``: one factorization of ``I/dt + A/2`` per trajectory, two triangular solves per
  step (the strongest direct peer);
- ``pyamg``: one hierarchy per trajectory, CG per step from the previous state to 1e-8;
- ``ours``: all trajectories as one batch through CG with our multigrid V-cycle, warm-started
  (``datagen.problems.heat.physics.simulate``, what ``datagen generate`` runs).

Usage: python benchmarks/poisson_heat.py [--sizes 129 257 513] [--samples 16]
       [--heat-sizes 129 257] [--trajectories 8] [--steps 20]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import pyamg
import scipy.sparse.linalg as spla
import torch

from datagen.core.fields import gaussian_random_field, sample_seed
from datagen.problems.darcy.physics import assemble
from datagen.problems.heat.physics import THETA, simulate, step_matrix
from datagen.problems.poisson.physics import (
    SharedFactor,
    dst_solve,
    lifted_load,
    relative_residuals,
)

DT = 1e-4


def poisson_loads(size: int, count: int) -> np.ndarray:
    """Lifted loads (N, n, n): GRF forcing times 100 and GRF boundary data."""
    f = gaussian_random_field(
        [sample_seed(7, 0, i) for i in range(count)], size, 2.5, 7.0, "periodic"
    )
    g = gaussian_random_field(
        [sample_seed(7, 1, i) for i in range(count)], size, 2.5, 7.0, "periodic"
    )
    f = 100 * f
    return lifted_load(f.numpy(), g.numpy())


def poisson_rows(size: int, count: int) -> dict[str, tuple[float, float]]:
    """Solver -> (seconds per sample, worst relative residual)."""
    b = poisson_loads(size, count)
    n = size - 2
    matrix = assemble(np.ones((size, size))).tocsc()
    flat = b.reshape(count, n * n)
    rows = {}

    start = time.perf_counter()
    x = np.stack([spla.splu(matrix, permc_spec="MMD_AT_PLUS_A").solve(v) for v in flat])
    rows["superlu-each"] = ((time.perf_counter() - start) / count, x)

    start = time.perf_counter()
    x = SharedFactor(size)(b).reshape(count, -1)
    rows["superlu-once"] = ((time.perf_counter() - start) / count, x)

    start = time.perf_counter()
    ml = pyamg.smoothed_aggregation_solver(matrix.tocsr())
    x = np.stack([ml.solve(v, tol=1e-10, accel="cg", maxiter=200) for v in flat])
    rows["pyamg"] = ((time.perf_counter() - start) / count, x)

    start = time.perf_counter()
    x = dst_solve(b).reshape(count, -1)
    rows["dst"] = ((time.perf_counter() - start) / count, x)
    return {
        name: (seconds, float(relative_residuals(b, x.reshape(b.shape)).max()))
        for name, (seconds, x) in rows.items()
    }


def heat_rows(size: int, count: int, steps: int) -> dict[str, tuple[float, float]]:
    """Solver -> (seconds per trajectory-step, worst final-state difference to SuperLU)."""
    seeds = [sample_seed(7, 2, i) for i in range(count)]
    field = gaussian_random_field(seeds, size, 2.0, 3.0, "neumann").numpy()
    a = np.where(field >= 0, 12.0, 3.0)
    u0 = gaussian_random_field(
        [sample_seed(7, 3, i) for i in range(count)], size, 2.5, 7.0, "periodic"
    )
    u0 = u0.numpy()
    interior = u0[:, 1:-1, 1:-1].reshape(count, -1)
    explicit = 1.0 - THETA["crank_nicolson"]
    finals = {}

    start = time.perf_counter()
    out = []
    for k in range(count):
        system, matrix = step_matrix(a[k], DT, "crank_nicolson")
        solve, x = spla.splu(system, permc_spec="MMD_AT_PLUS_A").solve, interior[k]
        for _ in range(steps):
            x = solve(x / DT - explicit * (matrix @ x))
        out.append(x)
    finals["superlu"] = ((time.perf_counter() - start) / (count * steps), np.stack(out))

    start = time.perf_counter()
    out = []
    for k in range(count):
        system, matrix = step_matrix(a[k], DT, "crank_nicolson")
        ml, x = pyamg.smoothed_aggregation_solver(system.tocsr()), interior[k]
        for _ in range(steps):
            x = ml.solve(x / DT - explicit * (matrix @ x), x0=x, tol=1e-8, accel="cg")
        out.append(x)
    finals["pyamg"] = ((time.perf_counter() - start) / (count * steps), np.stack(out))

    start = time.perf_counter()
    result = simulate(torch.from_numpy(a), torch.from_numpy(u0), DT, steps, 1)
    final = result.frames[:, -1, 1:-1, 1:-1].reshape(count, -1).numpy()
    finals["ours"] = ((time.perf_counter() - start) / (count * steps), final)

    reference = finals["superlu"][1]
    scale = np.linalg.norm(reference, axis=1)
    return {
        name: (seconds, float((np.linalg.norm(x - reference, axis=1) / scale).max()))
        for name, (seconds, x) in finals.items()
    }


def print_rows(label: str, size: int, rows: dict, peers: tuple[str, ...]) -> None:
    best = min(rows[p][0] for p in peers)
    for name, (seconds, check) in rows.items():
        print(
            f"| {label} | {size} | {name} | {seconds * 1e3:.2f} | {check:.1e} "
            f"| {best / seconds:.2f}x |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[129, 257, 513])
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--heat-sizes", type=int, nargs="+", default=[129, 257])
    parser.add_argument("--trajectories", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    print(
        f"# {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; {time.strftime('%Y-%m-%d')}"
    )
    print(
        "| problem | s | solver | ms per sample (Poisson) / per trajectory-step (heat) "
        "| worst residual (Poisson) / difference to SuperLU (heat) | vs best peer |"
    )
    print("|---|---|---|---|---|---|")
    for size in args.sizes:
        rows = poisson_rows(size, args.samples)
        print_rows("Poisson", size, rows, ("superlu-each", "superlu-once", "pyamg"))
    for size in args.heat_sizes:
        rows = heat_rows(size, args.trajectories, args.steps)
        print_rows("heat", size, rows, ("superlu", "pyamg"))


if __name__ == "__main__":
    main()
