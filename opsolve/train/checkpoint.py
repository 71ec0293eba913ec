"""Checkpoints: written atomically, holding everything an exact resume needs.

A checkpoint (``torch.save`` of a dict) holds:

- ``format``: :data:`FORMAT`; ``model``: ``{"name", "params"}`` (what rebuilds it through the
  registry); ``state``: the state dict of the normalized operator (model + normalization
  buffers); ``normalization``: the statistics used; ``data``: fields, resolution, spacing;
- ``optimizer``, ``scheduler``, ``scaler`` (fp16 AMP) states;
- ``epoch`` (epochs completed), ``step`` (optimizer steps taken), ``best`` (metric, epoch);
- ``rng``: torch (CPU and CUDA), numpy and python generator states; ``sampler``: the seed of
  the training order (the order of epoch ``e`` is a pure function of ``(seed, e)``, see
  :func:`opsolve.train.distributed.epoch_permutation`, so it needs no other state);
- ``config``: the resolved training config; ``metrics``: the epoch's row of metrics.csv.

Everything in it is tensors and plain Python values, so it is read with
``torch.load(..., weights_only=True)``: loading a checkpoint runs no pickled code.

Writes are atomic (:func:`datagen.core.files.atomic_write`: a temporary file, fsynced, renamed
over the target): a crash leaves the previous checkpoint intact, never a torn one.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datagen.core.errors import UserError
from datagen.core.files import atomic_write, existing_dir

FORMAT = "opsolve-checkpoint-1"


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file, fsync, ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path, "wb") as handle:
        torch.save({"format": FORMAT, **state}, handle)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint`; anything else is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # any unreadable file is the user's to fix
        raise UserError(f"{path}: not a readable checkpoint ({type(err).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UserError(f"{path}: not an {FORMAT} checkpoint")
    return state


def run_checkpoint(run: str | Path, which: str, what: str = "run directory") -> Path:
    """The path of ``run``'s ``checkpoints/<which>.pt``; a UserError naming ``what`` when the
    run directory or the checkpoint is missing."""
    path = existing_dir(run, what) / "checkpoints" / f"{which}.pt"
    if not path.is_file():
        raise UserError(f"{run}: no {which} checkpoint (expected {path}); has training run?")
    return path


def rng_state() -> dict[str, Any]:
    """The states of every generator training touches."""
    state = {
        "torch": torch.get_rng_state(),
        "numpy": numpy_state_to_plain(np.random.get_state()),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def numpy_state_to_plain(state: tuple) -> tuple:
    """NumPy's legacy generator state with its key array as a tensor (loadable weights-only)."""
    name, keys, pos, has_gauss, cached = state
    return (
        str(name),
        torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        int(pos),
        int(has_gauss),
        float(cached),
    )


def numpy_state_from_plain(state: tuple) -> tuple:
    """Inverse of :func:`numpy_state_to_plain`."""
    name, keys, pos, has_gauss, cached = state
    return (name, keys.numpy().astype(np.uint32), pos, has_gauss, cached)


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(numpy_state_from_plain(state["numpy"]))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and python generators."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
