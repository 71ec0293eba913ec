"""Process memory settings for long CPU runs.

glibc returns every large freed block (>= 128 KiB by default, adapted upwards only slowly) to
the operating system and maps fresh pages for the next one. Pseudo-spectral steps allocate and
free tens of megabytes of temporaries per step, so on a CPU they spend more time in page faults
than in FFTs: one Navier-Stokes nonlinear term at 256^2 x 16 took 45 ms with the defaults and
19 ms with freed memory kept in the process (measured on a 2-core x86-64 machine).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3


def retain_freed_memory(threshold: int = 1 << 30) -> bool:
    """Keep freed blocks up to ``threshold`` bytes in the process (glibc only); True if set.

    Equivalent to starting Python with ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_``
    set. A no-op elsewhere (macOS, Windows, musl).
    """
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, threshold)) and bool(mallopt(M_TRIM_THRESHOLD, threshold))
