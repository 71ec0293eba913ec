"""Solve a sorted sequence of systems as chains advanced in lockstep (the batching of SKR).

The sorted order is cut into contiguous chains (:func:`datagen.linalg.sorting.chain_schedule`); step
``t`` solves the ``t``-th system of every chain as one batch, passing each chain's recycle
space (and, optionally, its solution as the next initial guess) on to its next system.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from datagen.linalg.krylov import KrylovResult, SolveInfo
from datagen.linalg.sorting import chain_schedule

# step (C,) sample indices -> (operator, preconditioner or None, rhs (C, *grid))
System = Callable[[np.ndarray], tuple[Any, Any, torch.Tensor]]
# (operator, rhs, x0 or None, preconditioner, carried recycle state or None) -> result
Krylov = Callable[[Any, torch.Tensor, Any, Any, Any], KrylovResult]


def leading(state: Any, count: int) -> Any:
    """The recycle state of the first ``count`` chains (a tensor (C, k, *grid) as from
    :func:`datagen.linalg.krylov.pcg`, or anything with ``subset(index)``); None stays None,
    and a state of ``count`` members (with ``len``) is passed on uncopied."""
    if state is None:
        return None
    if isinstance(state, torch.Tensor):
        return state[:count]
    if hasattr(state, "__len__") and len(state) == count:
        return state
    return state.subset(torch.arange(count))


def solve_chains(
    order: np.ndarray,
    chains: int,
    system: System,
    krylov: Krylov,
    method: str,
    warm_start: bool,
) -> tuple[np.ndarray, list[SolveInfo]]:
    """Solve every system of ``order`` along ``chains`` chains, one batched Krylov call a step.

    Args:
        order: (N,) sample indices in solve order (sorted: neighbours similar).
        chains: chains advanced together (the batch size of a step).
        system: builds a step's operator, preconditioner and right-hand sides.
        krylov: the batched solver; it receives the previous system's recycle state of each
            chain (``result.recycle``) and, with ``warm_start``, its solution as ``x0``.
        method: the name recorded in each sample's
        :class:`~datagen.problems.darcy.physics.SolveInfo`.

    Returns:
        ``x`` (N, *grid) in sample order (the solver's dtype) and one ``SolveInfo`` per sample
        with its iterations, true relative residual and share of its step's seconds.
        Unconverged samples are returned as they are, for the caller's fallback.
    """
    if len(order) == 0:
        raise ValueError("solve_chains: the order holds no systems")
    x_all: np.ndarray | None = None
    info: list[SolveInfo | None] = [None] * len(order)
    state, previous = None, None
    for step in chain_schedule(order, chains):
        start = time.perf_counter()
        operator, preconditioner, rhs = system(step)
        x0 = previous[: len(step)] if warm_start and previous is not None else None
        result = krylov(operator, rhs, x0, preconditioner, leading(state, len(step)))
        previous, state = result.x, result.recycle
        share = (time.perf_counter() - start) / len(step)
        x = result.x.cpu().numpy()
        if x_all is None:
            x_all = np.zeros((len(order), *x.shape[1:]), dtype=x.dtype)
        for c, sample in enumerate(step.tolist()):
            x_all[sample] = x[c]
            info[sample] = SolveInfo(
                method, int(result.iterations[c]), float(result.residual[c]), share
            )
    return x_all, info
