"""Speed-up lines printed under a benchmark table (shared by the solver benchmarks)."""

from __future__ import annotations

import math


def print_speedups(label: str, rows: dict, pairs: list[tuple[str, str]]) -> None:
    """Print, for each (row, baseline) pair that was run, ``baseline / row`` in time and iterations.

    Args:
        label: what the rows were measured on (family and size), printed first.
        rows: name -> (median seconds per system, mean iterations, worst residual).
        pairs: (row, baseline) names; a pair with a skipped row is left out.
    """
    for name, base in pairs:
        if name in rows and base in rows:
            (seconds, iterations, _), (base_seconds, base_iterations, _) = rows[name], rows[base]
            print(
                f"# {label}: {name} vs {base}: {base_seconds / seconds:.2f}x in time, "
                f"{base_iterations / max(iterations, 1e-12):.2f}x in iterations",
                flush=True,
            )


def ratio_cell(base_seconds: float | None, seconds: float) -> str:
    """A table cell ``base / seconds`` as ``1.23x``, or ``-`` where the base row was not run."""
    if base_seconds is None or math.isnan(base_seconds):
        return "-"
    return f"{base_seconds / seconds:.2f}x"
