"""Data parallelism under ``torchrun``: process group, batch plans, reductions.

Equality with a single process. A 2-process run with global batch B takes the same optimizer
steps as one process with batch B, in exact arithmetic:

- every rank draws the *same* permutation of the training set per epoch (a generator seeded by
  ``(seed, epoch)``, the same on every rank) and cuts it into the same global batches;
- rank r takes the r-th contiguous share of each global batch (shares differ by at most one
  sample; the last, partial batch too);
- each rank's loss is ``sum(per-sample losses) * world / n_global``; DDP averages gradients
  over ranks (divides by ``world``), so the update uses ``mean over the global batch``;
- a rank whose share of a small last batch is empty runs one sample with weight 0, so that it
  still joins the gradient all-reduce.

What remains is floating-point summation order (over ranks instead of inside one batch).
``torch.utils.data.DistributedSampler`` is not used: it interleaves indices (rank r gets
``perm[r::world]``) and pads the epoch by repeating samples, so its batches are not the
single-process batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist

# The process group and its collectives are shared with the generation's ranks.
from datagen.core.distributed import (  # noqa: F401  (re-exported for the trainer)
    DistInfo,
    all_reduce_sum,
    barrier,
    dist_info_from_env,
    init_distributed,
    shares,
    shutdown_distributed,
)


def broadcast_flag(flag: bool, info: DistInfo, device: torch.device) -> bool:
    """Rank 0's boolean, on every rank."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


@dataclass(frozen=True)
class Step:
    """One optimizer step as seen by one rank."""

    indices: list[int]  # this rank's samples (one placeholder sample when ``weight`` is 0)
    n_global: int  # samples in the global batch
    weight: float  # multiplier of this rank's per-sample loss sum: world / n_global, or 0


def epoch_permutation(n: int, seed: int, epoch: int) -> list[int]:
    """The training order of ``epoch``: a pure function of ``(seed, epoch)``, equal on all ranks."""
    generator = torch.Generator()
    generator.manual_seed((seed * 1_000_003 + epoch) % (2**63))
    return torch.randperm(n, generator=generator).tolist()


def train_plan(n: int, batch_size: int, seed: int, epoch: int, info: DistInfo) -> list[Step]:
    """This rank's steps for one epoch (shuffled, the last batch kept even if partial)."""
    order = epoch_permutation(n, seed, epoch)
    return _plan(order, batch_size, info, weighted=True)


def eval_plan(n: int, batch_size: int, info: DistInfo) -> list[Step]:
    """This rank's steps over a split in its stored order (evaluation)."""
    return _plan(list(range(n)), batch_size, info, weighted=False)


def _plan(order: list[int], batch_size: int, info: DistInfo, weighted: bool) -> list[Step]:
    steps = []
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        lo, hi = shares(len(batch), info.world)[info.rank]
        mine = batch[lo:hi]
        if mine:
            weight = info.world / len(batch) if weighted else 1.0
            steps.append(Step(mine, len(batch), weight))
        elif weighted:  # keep in step with the other ranks' gradient all-reduce
            steps.append(Step(batch[:1], len(batch), 0.0))
    return steps
