"""What the ``datagen`` and ``opsolve`` commands share: overrides anywhere on the line, and
every expected failure as one line on stderr with its exit status (no traceback).

Exit statuses (docs/errors.md): 0 success, 1 ``datagen verify`` found a bad file, 2 a user
error (:class:`UserError`: bad config, file, path or value), 3 a failure of the computation the
command names (a solve, a training) or a disk that filled up during the run, 130 interrupted
(Ctrl-C), 143 terminated (SIGTERM), 141 output piped into a reader that closed. Anything else
that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from datagen.core.errors import UserError


@dataclass(frozen=True)
class Failure:
    """An expected failure: its exception type, exit status, the word its line starts with
    after the program's name, and a hint appended to the message."""

    kind: type[BaseException]
    status: int
    label: str
    hint: str = ""


USER_ERROR = Failure(UserError, 2, "error")
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program stands so that it ends as after Ctrl-C."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) and SIGTERM until the block ends, then act on the first one as
    its handler would have (raise :class:`KeyboardInterrupt` or :class:`Terminated`).

    For writes that an exception must not cut in half: ``torch.save`` or ``np.savez`` stopped
    by an interrupt while writing fail again closing their zip archive, and the interrupt
    turns into a ``RuntimeError`` with a traceback. Outside the main thread signals cannot be
    held (nor arrive): the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    kinds = (signal.SIGINT, signal.SIGTERM)
    previous = {
        kind: signal.signal(kind, lambda signum, frame: caught.append(signum)) for kind in kinds
    }
    try:
        yield
    finally:
        for kind, handler in previous.items():
            signal.signal(kind, handler)
    if caught:
        handler = previous[caught[0]]
        if callable(handler):
            handler(caught[0], None)
        elif handler == signal.SIG_DFL:
            signal.raise_signal(caught[0])


def _disk_full(err: OSError) -> bool:
    """Whether ``err`` (an OSError, or h5py's wrapping of one) says the disk or quota is full."""
    text = str(err)
    return err.errno in DISK_FULL or any(
        phrase in text for phrase in ("No space left", "Disk quota exceeded", "File too large")
    )


def parse_command_line(
    parser: argparse.ArgumentParser, argv: list[str] | None, with_overrides: Sequence[str]
) -> argparse.Namespace:
    """Parse ``argv``; for the subcommands ``with_overrides``, ``key=value`` words may also
    come after options (``--overwrite resolution=85``) and join ``args.overrides``."""
    args, extra = parser.parse_known_args(argv)
    if (
        extra
        and args.command in with_overrides
        and all("=" in e and not e.startswith("-") for e in extra)
    ):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def run_command(
    prog: str,
    call: Callable[[], int],
    *,
    failures: Sequence[Failure] = (),
    interrupted: str = "run the same command again to resume",
    speak: bool | Callable[[BaseException], bool] = True,
) -> int:
    """Run ``call`` and turn the expected failures into one stderr line and an exit status.

    Args:
        prog: the program's name, the first word of every line.
        failures: expected failures beyond user errors (checked first, in order).
        interrupted: what to tell the user after Ctrl-C.
        speak: whether this process prints (under ``torchrun``, rank 0 only), or which of
            the failures it prints (those that only this rank meets).
    """
    kinds = tuple(f.kind for f in failures)
    says = speak if callable(speak) else lambda err: speak
    try:
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread: leave SIGTERM as it is
        previous = None
    try:
        return call()
    except KeyboardInterrupt as err:
        if says(err):
            print(f"{prog}: interrupted; {interrupted}", file=sys.stderr)
        return 143 if isinstance(err, Terminated) else 130
    except BrokenPipeError:  # output piped into a closed reader (``| head``): end quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (UserError, *kinds) as err:
        failure = next(f for f in (*failures, USER_ERROR) if isinstance(err, f.kind))
        if says(err):
            print(f"{prog}: {failure.label}: {err}{failure.hint}", file=sys.stderr)
        return failure.status
    except OSError as err:
        if not _disk_full(err):
            raise
        if says(err):
            where = f" writing {err.filename}" if err.filename else ""
            print(
                f"{prog}: no space left on the device{where} (or the file-size limit reached): "
                f"free space and {interrupted}",
                file=sys.stderr,
            )
        return 3
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
