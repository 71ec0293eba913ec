"""The observer's assimilation step: the layers as they are against the ones they replaced.

A trained observer run is timed as it is, with its 1x1 maps as ``torch.nn.ConvNd`` holding the
same weights (what :class:`opsolve.layers.pointwise.Pointwise` replaced), with the kept Fourier
modes gathered and scattered by index tensors (what :func:`opsolve.layers.spectral.gather_modes`
and :func:`~opsolve.layers.spectral.scatter_modes` replaced), and with both (the layers before
the change), in one process on the same inputs: ``--trajectories`` trajectories of ``--steps``
steps, 10% of the nodes observed, fastest of ``--repeats`` rollouts, one thread unless
``--threads``. Every variant's estimates are checked against the first's. Also printed: each
run's arithmetic per trajectory and step (:func:`flops_per_step`).

    python benchmarks/observer_step.py --runs runs/train/ks_observer [runs/train/ns_observer]
        [--trajectories 16] [--steps 100] [--repeats 7] [--threads 1] [--grid 64]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import time
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

import opsolve.layers.spectral as spectral
from datagen.core.errors import UserError
from opsolve.eval.report import load_trained
from opsolve.layers.pointwise import Pointwise

CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


def as_convolutions(model: nn.Module) -> None:
    """Replace every :class:`Pointwise` in ``model`` by the ``ConvNd`` with its weights."""
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, Pointwise):
                ndim = child.weight.dim() - 2
                conv = CONV[ndim](
                    child.in_channels, child.out_channels, 1, bias=child.bias is not None
                )
                conv.load_state_dict(child.state_dict())
                setattr(parent, name, conv)


def _index_grid(modes, sizes) -> tuple[torch.Tensor, ...]:
    index = [
        torch.cat([torch.arange(m), torch.arange(n - m, n)])
        for m, n in zip(modes, sizes, strict=True)
    ]
    index[-1] = torch.arange(modes[-1])
    return torch.meshgrid(index, indexing="ij")


def _gather_by_index(x_ft: torch.Tensor, modes) -> torch.Tensor:
    return x_ft[(..., *_index_grid(modes, x_ft.shape[2:]))]


def _scatter_by_index(y: torch.Tensor, modes, spectrum) -> torch.Tensor:
    y_ft = y.new_zeros(*y.shape[:2], *spectrum)
    y_ft[(..., *_index_grid(modes, spectrum))] = y
    return y_ft


@contextlib.contextmanager
def index_gathers() -> Iterator[None]:
    """Kept modes gathered and scattered by index tensors while inside."""
    saved = spectral.gather_modes, spectral.scatter_modes
    spectral.gather_modes, spectral.scatter_modes = _gather_by_index, _scatter_by_index
    try:
        yield
    finally:
        spectral.gather_modes, spectral.scatter_modes = saved


def fastest(
    op, measured: torch.Tensor, mask: torch.Tensor, repeats: int
) -> tuple[float, torch.Tensor]:
    """Fastest of ``repeats`` rollouts, milliseconds per step, and the estimates."""
    with torch.no_grad():
        out = op(measured[:, :2], mask[:, :2])  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            out = op(measured, mask)[0]
            times.append((time.perf_counter() - start) / measured.shape[1] * 1e3)
    return min(times), out


def flops_per_step(model: nn.Module, grid: tuple[int, ...]) -> float:
    """Real flops of one assimilation step of one trajectory: every spectral layer by its
    :meth:`~opsolve.layers.spectral.SpectralConv.flops` convention, every 1x1 map
    ``2 in out`` per node (each layer of the observer runs once per step)."""
    nodes = math.prod(grid)
    total = 0.0
    for module in model.modules():
        if isinstance(module, spectral.SpectralConv):
            total += module.flops((1, module.in_channels, *grid))
        elif isinstance(module, Pointwise):
            total += 2 * module.in_channels * module.out_channels * nodes
    return total


def load_observer(run: Path) -> tuple[nn.Module, nn.Module]:
    """``(the run's operator, its SemilinearObserver)``; one line if ``run`` is not one."""
    try:
        op, _ = load_trained(run)
    except UserError as error:
        raise SystemExit(f"error: {error}") from None
    model = getattr(op, "model", op)
    if not hasattr(model, "gain"):
        raise SystemExit(f"error: {run}: not an observer run (model {type(model).__name__})")
    return op, model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="+", required=True, type=Path)
    p.add_argument("--trajectories", type=int, default=16)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--grid", type=int, default=64, help="nodes per axis")
    args = p.parse_args()
    if min(args.trajectories, args.steps, args.repeats, args.threads, args.grid) < 1:
        raise SystemExit(
            "error: --trajectories, --steps, --repeats, --threads and --grid must be >= 1"
        )
    torch.set_num_threads(args.threads)
    observers = {run: load_observer(run) for run in args.runs}
    print(f"torch {torch.__version__}, {args.threads} thread(s); {time.strftime('%Y-%m-%d')}")
    for run, (_, model) in observers.items():
        mflop = flops_per_step(model, (args.grid,) * len(model.modes)) / 1e6
        print(f"{run}: {mflop:.2f} MFLOP per trajectory and step")
    print("\n| run | grid | layers | ms per step | / now | max difference |")
    print("|---|---|---|---|---|---|")
    for run, (op, model) in observers.items():
        grid = (args.grid,) * len(model.modes)
        generator = torch.Generator().manual_seed(0)
        shape = (args.trajectories, args.steps, *grid)
        mask = torch.rand(shape, generator=generator) < 0.1
        measured = torch.randn(shape, generator=generator) * mask
        rows = {}
        rows["now"] = fastest(op, measured, mask, args.repeats)
        with index_gathers():
            rows["index gathers"] = fastest(op, measured, mask, args.repeats)
        as_convolutions(model)
        rows["1x1 convolutions"] = fastest(op, measured, mask, args.repeats)
        with index_gathers():
            rows["both (before)"] = fastest(op, measured, mask, args.repeats)
        now, reference = rows["now"]
        for name, (ms, out) in rows.items():
            diff = (out - reference).abs().max().item()
            size = "x".join(map(str, grid))
            print(f"| {run.name} | {size} | {name} | {ms:.2f} | {ms / now:.2f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
