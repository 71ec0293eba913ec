"""Convergence factor of the Darcy V-cycle: operator-dependent against bilinear interpolation.

The V-cycle of :class:`datagen.linalg.multigrid.Multigrid` (damped Jacobi, 2 + 2 sweeps, Galerkin
coarse operators) used as a stationary solver, ``x <- x + M^{-1} (b - A x)``, from a random
error: the energy-norm reduction per cycle over cycles 11-20
(:func:`datagen.linalg.multigrid.convergence_factor`), smallest and largest over the samples, on the
coefficients of ``benchmarks/darcy_solvers.py`` (piecewise 12 / 3 and lognormal).

Usage: python benchmarks/multigrid_factor.py [--sizes 33 65 129 257] [--samples 8]
"""

from __future__ import annotations

import argparse
import platform

import torch
from darcy_solvers import coefficients

from datagen.linalg.multigrid import Multigrid, convergence_factor
from datagen.problems.darcy.physics import DarcyOperator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[33, 65, 129, 257])
    parser.add_argument("--samples", type=int, default=8)
    args = parser.parse_args()
    if args.samples < 1 or min(args.sizes) < 9:
        parser.error("need --samples >= 1 and every size >= 9")
    print(f"# {platform.machine()}, torch {torch.__version__}, {args.samples} samples per row")
    print("| family | s | bilinear (min-max) | operator-dependent (min-max) |")
    print("|---|---|---|---|")
    for family in ("piecewise", "lognormal"):
        for size in args.sizes:
            a = torch.from_numpy(coefficients(family, size, args.samples))
            n = size - 2
            op = DarcyOperator.from_coefficient(a)
            start = torch.randn(
                args.samples, n, n, dtype=torch.float64, generator=torch.Generator().manual_seed(0)
            )
            cells = []
            for interpolation in ("bilinear", "operator"):
                mg = Multigrid(op, (n, n), args.samples, a, interpolation=interpolation)
                factor = convergence_factor(mg, op, start)
                cells.append(f"{float(factor.min()):.3f}-{float(factor.max()):.3f}")
            print(f"| {family} | {size} | {cells[0]} | {cells[1]} |", flush=True)


if __name__ == "__main__":
    main()
