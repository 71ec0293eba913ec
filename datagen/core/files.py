"""Atomic file writes: a file is either its old self or completely new, never torn.

Every file the package writes for keeps (dataset shards and split files, ``stats.yaml``, run
configs, metrics, checkpoints, reports) goes through here: the content is written to a hidden
temporary sibling, flushed and fsynced, then renamed over the target (``os.replace``, atomic on
POSIX within one directory). A crash or a kill at any moment leaves the previous file intact.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


def replace_atomic(tmp: str | Path, final: str | Path) -> None:
    """Move a finished temporary file over ``final`` (same directory) after fsyncing it."""
    with open(tmp, "rb+") as handle:
        os.fsync(handle.fileno())
    os.replace(tmp, final)


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", **open_args: Any) -> Iterator[IO[Any]]:
    """Open ``path`` for writing through a temporary file renamed into place on success.

    ``mode`` is ``"w"`` (text) or ``"wb"``; ``open_args`` go to :func:`open` (``newline=""`` for
    CSV). The handle accepts ``np.savez``, ``torch.save``, ``json.dump`` and plain writes. If
    the block raises, the target is untouched and the temporary file removed.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, mode, **open_args) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically; returns the path."""
    with atomic_write(path) as handle:
        handle.write(text)
    return Path(path)
