"""Roofline of the Darcy solve: bytes a multigrid-CG solve must move against its measured time.

The machine's memory bandwidth is measured with large torch copies (read + write, arrays far
larger than the last-level cache, best of several); the solve's *necessary* traffic is
counted by :func:`solve_bytes` from its iterations: what a fully fused implementation of the
same algorithm (float64 CG, float32 V-cycle, float32 hierarchy) reads and writes, each
operand once per pass. ``bytes / bandwidth`` is the time no implementation of this algorithm
can beat on this machine; the ratio ``measured / that`` is the gap a row leaves.

Rows: ``pcg-mg`` of ``darcy_solvers.py`` (all systems in one batch, the set-up inside the
timer) per family and size. Writes a table to stdout and the figure to ``--out``.

Usage: python benchmarks/roofline.py [--sizes 129 257 513] [--samples 16]
       [--families piecewise lognormal] [--out benchmarks/results/roofline.png]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch
from darcy_solvers import coefficients, ours

from datagen.core.memory import retain_freed_memory
from datagen.problems.darcy.physics import assemble

F64, F32 = 8, 4


def bandwidth(megabytes: int = 512, repeats: int = 5) -> float:
    """Measured memory bandwidth in bytes/s: ``2 x size / time`` of a torch copy (best of)."""
    x = torch.ones(megabytes * 2**20 // F64, dtype=torch.float64)
    y = torch.empty_like(x)
    y.copy_(x)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        y.copy_(x)
        best = min(best, time.perf_counter() - start)
    return 2 * x.numel() * F64 / best


def vcycle_bytes(unknowns: int) -> float:
    """Bytes of one float32 V-cycle from the fine level down, per the fused passes below.

    Fine level (5-point Darcy operator: 2 face-coefficient arrays), in arrays of the fine
    size: first sweep ``x = w f`` 3; second sweep 6 (x, f, w, 2 coefficients; x written);
    residual + restriction 4 + 9/4 weights + 1/4 written; prolongation + first post-sweep
    7 + 9/4 + 1/4; second post-sweep 6: 30.5. A coarse level has a 9-point stencil (9 arrays
    instead of 2): 30.5 + 4 x 7 = 58.5 at a quarter of the size per level down.
    """
    fine = 30.5 * unknowns
    coarse = 58.5 * unknowns * (1 / 4) / (1 - 1 / 4)
    return F32 * (fine + coarse)


def cg_bytes(unknowns: int) -> float:
    """Bytes of one float64 CG iteration besides the preconditioner: ``A p`` (p and two
    coefficient arrays read, ``A p`` written: 4), ``x += alpha p`` (3), ``r -= alpha A p``
    with its norm (3), ``p = z + beta p`` (3) and ``z`` read back from the cycle (1): 14."""
    return F64 * 14 * unknowns


def setup_bytes(unknowns: int) -> float:
    """The hierarchy written once and the coefficient read: the float64 nodal coefficient
    (1), float32 face coefficients (2), interpolation weights (9/4) and coarse stencils
    (9/4 + 9/16 + ...): a lower bound of any set-up that builds them."""
    coarse = 9 * (1 / 4) / (1 - 1 / 4)
    return F64 * unknowns + F32 * unknowns * (2 + 9 / 4 + coarse)


def solve_bytes(unknowns: int, iterations: float) -> float:
    """Necessary bytes of one preconditioned CG solve with ``iterations`` iterations, the
    set-up and the final true residual (``A x``: 4 float64 arrays)."""
    per_iteration = cg_bytes(unknowns) + vcycle_bytes(unknowns)
    return setup_bytes(unknowns) + iterations * per_iteration + F64 * 4 * unknowns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[129, 257, 513])
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--families", nargs="+", default=["piecewise", "lognormal"])
    parser.add_argument("--out", default="benchmarks/results/roofline.png")
    args = parser.parse_args()
    retain_freed_memory()  # as datagen's CLI does, for every row of this process
    if any(s < 17 for s in args.sizes) or args.samples < 1:
        raise SystemExit("roofline: need sizes >= 17 and samples >= 1")
    unknown = set(args.families) - {"piecewise", "lognormal"}
    if unknown:
        raise SystemExit(f"roofline: unknown families {sorted(unknown)}")
    bw = bandwidth()
    print(
        f"# {platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads; "
        f"measured copy bandwidth {bw / 1e9:.1f} GB/s"
    )
    print("| family | s | iterations | MB per solve | bandwidth time s | measured s | gap |")
    print("|---|---|---|---|---|---|---|")
    points = []
    for family in args.families:
        for size in args.sizes:
            a = coefficients(family, size, args.samples)
            results = ours(a, "multigrid", len(a), "cpu")
            b = np.ones((size - 2) ** 2)
            worst = max(
                np.linalg.norm(b - assemble(x) @ r[0]) / np.linalg.norm(b)
                for x, r in zip(a, results, strict=True)
            )
            if worst > 1e-8:
                raise SystemExit(f"roofline: residual {worst:.1e} above 1e-8 at {family} {size}")
            seconds = float(np.median([t for _, t, _ in results]))
            its = float(np.mean([i for _, _, i in results]))
            moved = solve_bytes((size - 2) ** 2, its)
            points.append((family, size, moved, seconds))
            print(
                f"| {family} | {size} | {its:.1f} | {moved / 1e6:.0f} | {moved / bw:.4f} | "
                f"{seconds:.4f} | {seconds * bw / moved:.1f}x |",
                flush=True,
            )
    plot(points, bw, Path(args.out))
    print(f"# figure: {args.out}")


def plot(points: list, bw: float, out: Path) -> None:
    """Measured seconds per solve against necessary bytes, with the bandwidth line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    moved = np.array([p[2] for p in points])
    span = np.geomspace(moved.min() / 2, moved.max() * 2, 50)
    ax.loglog(span, span / bw, "k-", label=f"bandwidth limit ({bw / 1e9:.0f} GB/s)")
    ax.loglog(span, 3 * span / bw, "k:", label="3x the limit")
    for family, marker in (("piecewise", "o"), ("lognormal", "s")):
        sel = [p for p in points if p[0] == family]
        if sel:
            ax.loglog([p[2] for p in sel], [p[3] for p in sel], marker, label=f"pcg-mg {family}")
            for _, size, x, y in sel:
                ax.annotate(f"{size}^2", (x, y), textcoords="offset points", xytext=(4, 4))
    ax.set_xlabel("necessary bytes per solve")
    ax.set_ylabel("measured seconds per solve")
    ax.set_title("Darcy multigrid-CG solve, tol 1e-8")
    ax.legend(fontsize=8)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
