"""Atomic file writes (a file is either its old self or completely new, never torn), and the
checks of path arguments before any work.

Every file the package writes for keeps (dataset shards and split files, ``stats.yaml``, run
configs, metrics, checkpoints, reports) goes through here: the content is written to a hidden
temporary sibling, flushed and fsynced, then renamed over the target (``os.replace``, atomic on
POSIX within one directory). A crash or a kill at any moment leaves the previous file intact.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from datagen.core.commands import signals_held
from datagen.core.errors import UserError


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
    the block raises, the target is untouched and the temporary file removed. Ctrl-C and
    SIGTERM wait until the write is done (:func:`signals_held`), then stop the program.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with signals_held(), open(tmp, mode, **open_args) as handle:
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


def existing_dir(path: str | Path, what: str) -> Path:
    """``path`` as a directory that exists; a UserError naming ``what`` otherwise."""
    path = Path(path)
    if path.is_file():
        raise UserError(f"{what}: {path} is a file, expected a directory")
    if not path.is_dir():
        raise UserError(f"{what}: directory {path} does not exist")
    return path


def check_writable_dir(path: str | Path, what: str) -> None:
    """A UserError unless ``path`` is (or can be created as) a directory this process can
    write in. Nothing is left behind: the probe is a temporary directory, removed at once."""
    path = Path(path).absolute()
    if path.exists() and not path.is_dir():
        raise UserError(f"{what}: {path} is a file, expected a directory")
    ancestor = path
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise UserError(f"{what}: cannot write to {path}: {ancestor} is a file")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".write-test-", dir=ancestor))
    except OSError as err:
        raise UserError(f"{what}: cannot write to {path} ({err.strerror or err})") from None


def check_writable_file(path: str | Path, what: str, suffixes: tuple[str, ...] = ()) -> None:
    """A UserError unless ``path`` can be written as a file (its folder writable, not a
    directory, and one of ``suffixes`` when given)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{what}: {path} is a directory, expected a file name")
    if suffixes and path.suffix.lower() not in suffixes:
        raise UserError(
            f"{what}: {path.name} has no known suffix; use one of {', '.join(suffixes)}"
        )
    check_writable_dir(path.parent, what)
