"""The one device resolution of both commands: ``cpu``, ``cuda`` or ``auto``."""

from __future__ import annotations

import torch

from datagen.core.config import DEVICES
from datagen.core.errors import UserError


def resolve_device(name: str, key: str = "device", local_rank: int | None = None) -> torch.device:
    """The torch device for ``name``: ``auto`` is CUDA when available, else the CPU.

    Args:
        name: ``cpu``, ``cuda`` or ``auto``.
        key: the config key or option that gave ``name`` (named in the error).
        local_rank: under ``torchrun``, the process's ``LOCAL_RANK``: it takes that GPU (made
            the current one). None: the current GPU.

    Raises:
        UserError: an unknown name, or ``cuda`` asked for on a machine without one.
    """
    if name not in DEVICES:
        raise UserError(f"{key}: {name!r} is not one of {', '.join(DEVICES)}")
    available = torch.cuda.is_available()
    if name == "cuda" and not available:
        raise UserError(
            f"{key}: 'cuda' was asked for but no CUDA device is available; use cpu or auto"
        )
    if name == "cpu" or not available:
        return torch.device("cpu")
    if local_rank is not None and local_rank >= torch.cuda.device_count():
        raise UserError(
            f"LOCAL_RANK={local_rank}, but this host has {torch.cuda.device_count()} CUDA "
            "device(s): start at most that many processes per node (torchrun --nproc-per-node)"
        )
    index = torch.cuda.current_device() if local_rank is None else local_rank
    torch.cuda.set_device(index)
    return torch.device("cuda", index)
