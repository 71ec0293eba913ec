"""What the ``datagen`` and ``opsolve`` commands share: overrides anywhere on the line, and
every expected failure as one line on stderr with its exit status (no traceback).

Exit statuses: 0 success, 2 a user error (:class:`UserError`: bad config, file, path or
value), 3 a failure of the computation the command names (a solve, a training), 130
interrupted, 141 output piped into a reader that closed. Anything else that escapes is a bug
and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
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
    speak: bool = True,
) -> int:
    """Run ``call`` and turn the expected failures into one stderr line and an exit status.

    Args:
        prog: the program's name, the first word of every line.
        failures: expected failures beyond user errors (checked first, in order).
        interrupted: what to tell the user after Ctrl-C.
        speak: whether this process prints (under ``torchrun``, rank 0 only).
    """
    kinds = tuple(f.kind for f in failures)
    try:
        return call()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted; {interrupted}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into a closed reader (``| head``): end quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except (UserError, *kinds) as err:
        failure = next(f for f in (*failures, USER_ERROR) if isinstance(err, f.kind))
        if speak:
            print(f"{prog}: {failure.label}: {err}{failure.hint}", file=sys.stderr)
        return failure.status
