"""Processes under ``torchrun``: where this one sits, the process group, and the few collectives
both commands use (training's data parallelism in :mod:`opsolve.train.distributed`, the
generation's ranks in :mod:`datagen.generate`).

``torchrun`` (``python -m torch.distributed.run``) starts the processes and sets ``WORLD_SIZE``,
``RANK``, ``LOCAL_RANK`` and ``LOCAL_WORLD_SIZE`` in each; without it there is one process and
every collective here is a no-op, so the same code runs alone and in a group.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from datagen.core.errors import UserError


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``world`` processes, this one ``rank``; ``local_rank`` of the
    ``local_world`` processes on its host."""

    world: int = 1
    rank: int = 0
    local_rank: int = 0
    local_world: int = 1

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_info_from_env() -> DistInfo:
    """Read ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE`` (set by torchrun);
    default: one process."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", str(world)))
    except ValueError:
        raise UserError(
            "WORLD_SIZE, RANK, LOCAL_RANK and LOCAL_WORLD_SIZE must be integers"
        ) from None
    if world < 1 or not 0 <= rank < world:
        raise UserError(f"RANK={rank} does not fit WORLD_SIZE={world}")
    return DistInfo(world=world, rank=rank, local_rank=local, local_world=max(local_world, 1))


def init_distributed(
    info: DistInfo,
    device: torch.device,
    backend: str | None = None,
    timeout: datetime.timedelta | None = None,
) -> None:
    """Join the process group when running under torchrun.

    ``backend``: default gloo on CPU, nccl on CUDA (gradients live on the device); the
    generation passes gloo, its messages being a few numbers. ``timeout``: how long a
    collective waits for the slowest rank (torch's default when None).
    """
    if info.enabled and not dist.is_initialized():
        backend = backend or ("nccl" if device.type == "cuda" else "gloo")
        options: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
        dist.init_process_group(backend=backend, rank=info.rank, world_size=info.world, **options)


def shutdown_distributed() -> None:
    """Leave the process group if one was joined."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    """Wait until every rank is here (a no-op for one process)."""
    if info.enabled:
        dist.barrier()


def all_reduce_sum(values: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum ``values`` over ranks (in place; returned for chaining); a no-op for one process."""
    if info.enabled:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def all_gather(value: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``value`` (any picklable object), in rank order, on every rank."""
    if not info.enabled:
        return [value]
    gathered: list[Any] = [None] * info.world
    dist.all_gather_object(gathered, value)
    return gathered


def broadcast(value: Any, info: DistInfo) -> Any:
    """Rank 0's ``value`` (any picklable object), on every rank."""
    if not info.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def agree(info: DistInfo, error: UserError | None) -> None:
    """Raise on every rank the first rank's error, if any rank had one.

    A check that may fail on one rank only (a path this host cannot write, a device short of
    memory) passes its outcome through here, so that every rank stops, not only the one that
    saw the problem; the message names the rank when there are several.
    """
    messages = all_gather(None if error is None else str(error), info)
    for rank, message in enumerate(messages):
        if message is not None:
            if error is not None and not info.enabled:
                raise error
            raise UserError(message if rank == 0 else f"rank {rank}: {message}")


def shares(n: int, world: int) -> list[tuple[int, int]]:
    """Contiguous ``[start, stop)`` shares of ``n`` items over ``world`` ranks (sizes +-1)."""
    base, extra = divmod(n, world)
    bounds, start = [], 0
    for r in range(world):
        stop = start + base + (1 if r < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def weighted_shares(weights: list[int], world: int) -> list[tuple[int, int]]:
    """Contiguous ``[start, stop)`` shares of items with ``weights`` over ``world`` ranks, the
    weight of each share as even as whole items allow.

    Item ``i`` goes to the rank whose equal part of the total weight holds the middle of the
    item, so that shares differ by at most about one item's weight; ranks beyond the number
    of items get empty shares.
    """
    total = sum(weights)
    owners, before = [], 0
    for w in weights:
        middle = before + w / 2
        owners.append(min(int(middle * world // total), world - 1) if total else 0)
        before += w
    bounds = []
    for r in range(world):
        mine = [i for i, owner in enumerate(owners) if owner == r]
        start = mine[0] if mine else (bounds[-1][1] if bounds else 0)
        bounds.append((start, mine[-1] + 1 if mine else start))
    return bounds
