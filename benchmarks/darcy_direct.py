"""Seconds per Darcy system for the reference solvers, side by side in one run.

Same systems (FNO piecewise-constant coefficients, f = 1) for each solver, true relative
residual reported for each:

- ``superlu-colamd``: ``scipy.sparse.linalg.spsolve`` defaults (what a user picks first);
- ``superlu-mmd``: SuperLU with the symmetric minimum-degree ordering (``datagen``'s direct
  method, :func:`datagen.problems.darcy.physics.solve_direct`);
- ``pyamg-sa-cg``: PyAMG smoothed aggregation as a CG preconditioner, setup included, to a true
  relative residual of 1e-8 (needs ``pip install pyamg``).

Usage: python benchmarks/darcy_direct.py [--sizes 85 141 211 257 421] [--samples 5]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import scipy.sparse.linalg as spla

from datagen.core.fields import gaussian_random_field, sample_seed
from datagen.problems.darcy.physics import assemble


def coefficients(size: int, count: int) -> np.ndarray:
    seeds = [sample_seed(2021, 0, i) for i in range(count)]
    field = gaussian_random_field(seeds, size, 2.0, 3.0, "neumann").numpy()
    return np.where(field >= 0, 12.0, 3.0)


def superlu(ordering: str):
    def solve(matrix, b):
        return spla.splu(matrix.tocsc(), permc_spec=ordering).solve(b)

    return solve


def pyamg_cg(matrix, b):
    import pyamg

    ml = pyamg.smoothed_aggregation_solver(matrix)
    # pyamg's tol is relative to ||b|| for the residual it tracks; ask a bit tighter than 1e-8.
    return ml.solve(b, tol=1e-9, accel="cg", maxiter=500)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[85, 141, 211, 257, 421])
    parser.add_argument("--samples", type=int, default=5)
    args = parser.parse_args()
    solvers = {"superlu-colamd": superlu("COLAMD"), "superlu-mmd": superlu("MMD_AT_PLUS_A")}
    try:
        import pyamg  # noqa: F401

        solvers["pyamg-sa-cg"] = pyamg_cg
    except ImportError:
        print("pyamg not installed: skipping pyamg-sa-cg")
    print(f"# {platform.processor() or platform.machine()}, {platform.python_version()}")
    print("| s | unknowns | solver | median s/sample | worst residual | vs best |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes:
        results = {}
        for a in coefficients(size, args.samples):
            matrix = assemble(a)
            b = np.ones(matrix.shape[0])
            for name, solve in solvers.items():
                start = time.perf_counter()
                x = solve(matrix, b)
                seconds = time.perf_counter() - start
                residual = np.linalg.norm(b - matrix @ x) / np.linalg.norm(b)
                results.setdefault(name, []).append((seconds, residual))
        medians = {k: float(np.median([t for t, _ in v])) for k, v in results.items()}
        best = min(medians.values())
        for name, runs in results.items():
            worst = max(r for _, r in runs)
            print(
                f"| {size} | {(size - 2) ** 2} | {name} | {medians[name]:.4f} | {worst:.1e} | "
                f"{medians[name] / best:.2f}x |"
            )


if __name__ == "__main__":
    main()
