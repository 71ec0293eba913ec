"""Progress bars that suit where the output goes.

On a terminal a bar redraws in place (tqdm). Anywhere else (a CI log, ``command > log``, a
notebook's captured stderr) redraws would pile up as carriage returns, megabytes of them over
a training run; there a bar writes one plain line to stdout at most every :data:`LOG_INTERVAL`
seconds, and its last state when it closes, so that stderr holds only errors. Bars nested
inside another (``nested=True``) only show on a terminal.
"""

from __future__ import annotations

import math
import sys
import time
from typing import IO, Any

from tqdm import tqdm

LOG_INTERVAL = 10.0  # seconds between the lines of a bar that is not on a terminal


class LogBar(tqdm):
    """A tqdm bar for output that is not a terminal: whole lines, rate-limited, no redraws."""

    _last_line = -math.inf

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if msg is not None:  # a request to blank the line: nothing to take back in a log
            return True
        closing = self.disable  # close() disables the bar before its final display
        now = time.monotonic()
        if not closing and now - self._last_line < LOG_INTERVAL:
            return True
        self._last_line = now
        self.fp.write(self.format_meter(**self.format_dict) + ("" if closing else "\n"))
        self.fp.flush()
        return True

    def clear(self, nolock: bool = False) -> None:
        """Nothing to clear: lines already written stay."""


def on_terminal(stream: IO[str]) -> bool:
    """Whether ``stream`` is an interactive terminal."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def progress_bar(
    total: int,
    *,
    desc: str | None = None,
    unit: str = "it",
    initial: int = 0,
    enabled: bool = True,
    nested: bool = False,
    file: IO[str] | None = None,
    **options: Any,
) -> tqdm:
    """A progress bar over ``total`` items: tqdm on a terminal, a :class:`LogBar` elsewhere.

    ``enabled=False`` gives a silent bar (same interface); ``nested`` bars (inner loops,
    ``leave=False``) are silent off a terminal. ``options`` go to tqdm.
    """
    interactive = on_terminal(file if file is not None else sys.stderr)
    # Off a terminal the lines go to stdout, so that stderr holds only what went wrong.
    stream = file if file is not None else sys.stderr if interactive else sys.stdout
    silent = not enabled or (nested and not interactive)
    kind = tqdm if interactive else LogBar
    return kind(
        total=total,
        desc=desc,
        unit=unit,
        initial=initial,
        disable=silent,
        leave=not nested,
        file=stream,
        **options,
    )
