"""Fused CPU kernels: stencil sweeps in one pass, and the Arnoldi step of GMRES / GCRO-DR.

Eager torch makes one pass over memory per operation, so a 5-point application costs five
passes over the grid and a smoothing sweep about six times the traffic it needs. The kernels of
``stencil_kernels.c`` (next to this file) read each operand once: a sweep of the Darcy operator
at 513^2 takes about half the time of the eager one (``benchmarks/roofline.py``). They are
compiled with the system's C compiler on first use (about a second) into the user's cache
(``$XDG_CACHE_HOME/opsolve``, else ``~/.cache/opsolve``), keyed by the source's hash, and
called through ``ctypes``; their rows are split over ``torch.get_num_threads()`` OpenMP threads
of torch's own runtime (the library links ``libgomp.so.1``, which torch has loaded already, so
the two never run competing thread pools; a pool of our own, spinning while torch's did,
made the kernels slower than eager torch on two cores). Without OpenMP the kernels run on one
thread. Where there is no compiler, the compile fails, ``OPSOLVE_FUSED=0`` is set, or
the tensors are not contiguous CPU float32 / float64 ones, every function here returns None and
the callers use their eager torch path, which gives the same result up to rounding (tests).

``arnoldi_kernels.c`` does a GMRES / GCRO-DR step after the operator in one call
(:class:`ArnoldiStep`): on the SKR paper's systems (6400 unknowns) the eager step spends most of
its time dispatching some forty small tensor operations, not moving memory.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shlex
import subprocess
import sysconfig
import tempfile
from pathlib import Path

import torch

SOURCES = tuple(Path(__file__).with_name(f"{name}_kernels.c") for name in ("stencil", "arnoldi"))
APPLY, RESIDUAL, SWEEP = 0, 1, 2  # out = A x; f - A x; x + w (f - A x)
_SUFFIX = {torch.float32: "f32", torch.float64: "f64"}
_SMALL = 1 << 15  # grid points below which one thread does the whole call
_FLAGS = (  # the first that compiles: this processor's vector units, else generic code
    ["-O3", "-march=native", "-fPIC", "-shared", "-fopenmp"],
    ["-O3", "-fPIC", "-shared", "-fopenmp"],
    ["-O3", "-fPIC", "-shared", "-fopenmp-simd"],
)


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "opsolve" / "kernels"


def _compiler() -> list[str]:
    return shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")[:1]


def _processor() -> bytes:
    """What ``-march=native`` compiles for: the model and feature flags of the first processor
    (Linux), else the platform's names; part of the cache key, so that machines sharing one
    cache directory never load each other's builds."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    wanted = [line for line in lines if line.split(":")[0].strip() in ("model name", "flags")]
    return "\n".join(wanted[:2] or [platform.machine(), platform.processor()]).encode()


def library_name(sources: tuple[Path, ...] = SOURCES) -> str:
    """The cached library's file name: a hash of the sources, the compiler and flags, and the
    processor, so that another of any of them is another file."""
    text = b"".join(source.read_bytes() for source in sources)
    recipe = " ".join(_compiler() + [" ".join(flags) for flags in _FLAGS])
    return f"kernels-{hashlib.sha256(text + recipe.encode() + _processor()).hexdigest()[:16]}.so"


def build(sources: tuple[Path, ...] = SOURCES, directory: Path | None = None) -> Path:
    """Compile ``sources`` into one shared library in ``directory`` (the cache by default)
    unless it is there already; the file appears whole or not at all. Returns its path; raises
    ``OSError`` or ``subprocess.SubprocessError`` when the compiler is missing or fails."""
    sources = tuple(source.resolve() for source in sources)  # each includes itself by its path
    directory = directory or _cache_dir()
    target = directory / library_name(sources)
    if target.exists():
        return target
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        built = Path(scratch) / target.name
        for flags in _FLAGS:
            command = [*_compiler(), *flags, "-o", str(built), *map(str, sources)]
            done = subprocess.run(command, capture_output=True, timeout=120)
            if done.returncode == 0:
                break
        else:
            raise subprocess.CalledProcessError(done.returncode, command, done.stderr)
        os.replace(built, target)
    return target


def switched_on() -> bool:
    """``OPSOLVE_FUSED``: unset or ``1`` on, ``0`` off; any other value a ``ValueError``
    (the command line turns it into a one-line error before any work)."""
    switch = os.environ.get("OPSOLVE_FUSED", "1")
    if switch not in ("0", "1"):
        raise ValueError(
            f"OPSOLVE_FUSED must be 0 (eager torch) or 1 (fused kernels), got {switch!r}"
        )
    return switch == "1"


@functools.cache
def library() -> ctypes.CDLL | None:
    """The compiled kernels, or None where they cannot be had (see the module docstring)."""
    if not switched_on():
        return None
    try:
        lib = ctypes.CDLL(str(build()))
    except (OSError, subprocess.SubprocessError):
        return None
    for suffix in _SUFFIX.values():
        common = [ctypes.c_long] * 3 + [ctypes.c_int] * 2 + [ctypes.c_void_p] * 3
        getattr(lib, f"darcy5_{suffix}").argtypes = common + [ctypes.c_void_p] * 4
        getattr(lib, f"stencil9_{suffix}").argtypes = common + [ctypes.c_void_p] * 2
        transfer = [ctypes.c_long] * 5 + [ctypes.c_int] + [ctypes.c_void_p] * 3
        getattr(lib, f"restrict9_{suffix}").argtypes = transfer
        getattr(lib, f"prolong_add9_{suffix}").argtypes = transfer
        getattr(lib, f"interpolation9_{suffix}").argtypes = (
            [ctypes.c_long] * 5 + [ctypes.c_int] + [ctypes.c_void_p] * 3
        )
        getattr(lib, f"galerkin9_{suffix}").argtypes = (
            [ctypes.c_long] * 5 + [ctypes.c_int] * 2 + [ctypes.c_void_p] * 5
        )
        step = getattr(lib, f"arnoldi_step_{suffix}")
        step.argtypes = [ctypes.c_long] * 5 + [ctypes.c_int] * 2 + [ctypes.c_void_p] * 12
        step.restype = ctypes.c_int
        steps = getattr(lib, f"arnoldi_darcy_steps_{suffix}")
        steps.argtypes = [ctypes.c_long] * 6 + [ctypes.c_int] * 2 + [ctypes.c_void_p] * 18
        steps.restype = ctypes.c_int
    return lib


def _usable(*tensors: torch.Tensor) -> bool:
    dtype = tensors[0].dtype
    return dtype in _SUFFIX and all(
        t.is_cpu and t.dtype == dtype and t.is_contiguous() for t in tensors
    )


def _run(kernel, x: torch.Tensor, mode: int, f, w, *operands: torch.Tensor) -> torch.Tensor:
    """Call ``kernel`` on every row of ``x`` (B, n0, n1) on torch's threads."""
    batch, n0, n1 = x.shape
    out = torch.empty_like(x)
    f, w = (x if t is None else t for t in (f, w))  # unread by the modes that lack them
    threads = torch.get_num_threads() if x.numel() >= _SMALL else 1
    kernel(batch * n0, n0, n1, mode, threads, *(t.data_ptr() for t in (x, f, w, *operands, out)))
    return out


def _kernel(name: str, x: torch.Tensor, f, w, *operands: torch.Tensor):
    """The compiled ``name`` kernel for ``x``'s dtype, or None where the kernels cannot run:
    no library, ``x`` not (B, n0, n1), a given tensor not a contiguous CPU tensor of that dtype,
    or ``f`` / ``w`` not shaped like ``x``."""
    lib = library()
    given = [t for t in (x, f, w, *operands) if t is not None]
    if lib is None or x.ndim != 3 or not _usable(*given):
        return None
    if any(t.shape != x.shape for t in (f, w) if t is not None):
        return None
    return getattr(lib, f"{name}_{_SUFFIX[x.dtype]}")


def darcy5(
    mode: int,
    x: torch.Tensor,
    f: torch.Tensor | None,
    w: torch.Tensor | None,
    diagonal: torch.Tensor,
    wx: torch.Tensor,
    wy: torch.Tensor,
) -> torch.Tensor | None:
    """The Darcy 5-point operator (``DarcyOperator``'s ``diagonal`` (B, n0, n1), couplings
    ``wx`` (B, n0 - 1, n1), ``wy`` (B, n0, n1 - 1)) on ``x`` (B, n0, n1) in ``mode``
    (``APPLY``, ``RESIDUAL`` with ``f``, ``SWEEP`` with ``f`` and weight ``w``); None where the
    kernels cannot run."""
    kernel = _kernel("darcy5", x, f, w, diagonal, wx, wy)
    if kernel is None:
        return None
    batch, n0, n1 = x.shape
    expected = (x.shape, (batch, n0 - 1, n1), (batch, n0, n1 - 1))
    if (diagonal.shape, wx.shape, wy.shape) != expected:
        return None
    return _run(kernel, x, mode, f, w, diagonal, wx, wy)


def stencil9(
    mode: int,
    x: torch.Tensor,
    f: torch.Tensor | None,
    w: torch.Tensor | None,
    stencil: torch.Tensor,
) -> torch.Tensor | None:
    """The 9-point operator of ``stencil`` (B, 3, 3, n0, n1) on ``x`` (B, n0, n1) in ``mode``
    (as :func:`darcy5`); None where the kernels cannot run."""
    kernel = _kernel("stencil9", x, f, w, stencil)
    if kernel is None or stencil.shape != (x.shape[0], 3, 3, *x.shape[1:]):
        return None
    return _run(kernel, x, mode, f, w, stencil)


def _transfer_usable(fine: torch.Tensor, coarse: torch.Tensor, weights: torch.Tensor) -> bool:
    batch, nc0, nc1 = coarse.shape
    return (
        fine.ndim == 3
        and _usable(fine, coarse, weights)
        and fine.shape[0] == batch
        and weights.shape == (batch, 3, 3, nc0, nc1)
        and fine.shape[1] // 2 == nc0
        and fine.shape[2] // 2 == nc1
    )


def restrict(fine: torch.Tensor, weights: torch.Tensor) -> torch.Tensor | None:
    """``P^T fine`` for operator-dependent interpolation ``weights`` (B, 3, 3, n_c0, n_c1)
    (:class:`datagen.linalg.multigrid.OperatorInterpolation`): (B, n0, n1) -> (B, n_c0, n_c1)
    in one pass; None where the kernels cannot run."""
    lib = library()
    if lib is None or fine.ndim != 3 or weights.ndim != 5 or fine.dtype not in _SUFFIX:
        return None
    out = fine.new_empty((fine.shape[0], *weights.shape[-2:]))
    if not _transfer_usable(fine, out, weights):
        return None
    kernel = getattr(lib, f"restrict9_{_SUFFIX[fine.dtype]}")
    _transfer(kernel, fine, out, weights, fine, out)
    return out


def add_prolonged(fine: torch.Tensor, coarse: torch.Tensor, weights: torch.Tensor):
    """``fine += P coarse`` in place (shapes as :func:`restrict`) in one pass; returns ``fine``,
    or None (``fine`` untouched) where the kernels cannot run."""
    lib = library()
    if lib is None or coarse.ndim != 3 or not _transfer_usable(fine, coarse, weights):
        return None
    kernel = getattr(lib, f"prolong_add9_{_SUFFIX[fine.dtype]}")
    _transfer(kernel, fine, coarse, weights, coarse, fine)
    return fine


def _transfer(kernel, fine, coarse, weights, source, target) -> None:
    batch, n0, n1 = fine.shape
    threads = torch.get_num_threads() if fine.numel() >= _SMALL else 1
    kernel(
        batch,
        n0,
        n1,
        *coarse.shape[1:],
        threads,
        *(t.data_ptr() for t in (source, weights, target)),
    )


def _row_contiguous(entries: dict, dtype: torch.dtype | None = None) -> bool:
    """All entries CPU (B, n0, n1) tensors of one float dtype (``dtype`` if given) with
    contiguous rows (any batch stride: views of a (B, 3, 3, n0, n1) stencil qualify)."""
    tensors = list(entries.values())
    if not tensors:
        return False
    first = tensors[0]
    dtype = dtype or first.dtype
    return dtype in _SUFFIX and all(
        t.ndim == 3
        and t.shape == first.shape
        and t.dtype == dtype
        and t.is_cpu
        and t.stride()[1:] == (first.shape[2], 1)
        for t in tensors
    )


def galerkin(entries: dict, weights: torch.Tensor) -> torch.Tensor | None:
    """The 9-point stencil (B, 3, 3, n_c0, n_c1) of ``P^T A P`` for ``A`` by offset
    (``entries``: ``{(di, dj): (B, n0, n1)}``, rows contiguous) and operator-dependent ``P``
    (``weights`` (B, 3, 3, n_c0, n_c1), contiguous), in one pass over the coarse rows
    (:func:`datagen.linalg.multigrid.galerkin_stencil`); None where the kernels cannot run."""
    lib = library()
    if lib is None or not entries or weights.ndim != 5 or weights.dtype not in _SUFFIX:
        return None
    tensors = list(entries.values())
    batch, n0, n1 = tensors[0].shape
    if not _usable(weights) or not _row_contiguous(entries, weights.dtype):
        return None
    if weights.shape != (batch, 3, 3, n0 // 2, n1 // 2):
        return None
    out = weights.new_empty(weights.shape)
    count = len(tensors)
    offsets = (ctypes.c_int * (2 * count))(*(d for offset in entries for d in offset))
    strides = (ctypes.c_long * count)(*(t.stride(0) for t in tensors))
    pointers = (ctypes.c_void_p * count)(*(t.data_ptr() for t in tensors))
    threads = torch.get_num_threads() if out.numel() >= _SMALL else 1
    kernel = getattr(lib, f"galerkin9_{_SUFFIX[weights.dtype]}")
    kernel(
        batch,
        n0,
        n1,
        *weights.shape[-2:],
        threads,
        count,
        offsets,
        strides,
        pointers,
        weights.data_ptr(),
        out.data_ptr(),
    )
    return out


def interpolation(entries: dict) -> torch.Tensor | None:
    """Operator-dependent interpolation weights (B, 3, 3, n0 // 2, n1 // 2) from ``A`` by offset
    (``entries`` as :func:`galerkin`, with the centre), in one pass over the coarse rows
    (:meth:`datagen.linalg.multigrid.OperatorInterpolation.from_planes`); None where the
    kernels cannot run."""
    lib = library()
    centre = entries.get((0, 0))
    if lib is None or centre is None or not _row_contiguous(entries):
        return None
    batch, n0, n1 = centre.shape
    out = centre.new_empty((batch, 3, 3, n0 // 2, n1 // 2))
    table = [entries.get((d0, d1)) for d0 in (-1, 0, 1) for d1 in (-1, 0, 1)]
    pointers = (ctypes.c_void_p * 9)(*(None if t is None else t.data_ptr() for t in table))
    strides = (ctypes.c_long * 9)(*(0 if t is None else t.stride(0) for t in table))
    threads = torch.get_num_threads() if out.numel() >= _SMALL else 1
    kernel = getattr(lib, f"interpolation9_{_SUFFIX[centre.dtype]}")
    kernel(batch, n0, n1, n0 // 2, n1 // 2, threads, pointers, strides, out.data_ptr())
    return out


class ArnoldiStep:
    """The fused Arnoldi step for one restart cycle's arrays (``datagen.linalg.gcrodr._Cycle``).

    Built once per cycle (and again when the cycle drops members), so that a step passes only
    the new vector: ``step(w, j, twice)`` orthogonalizes ``w`` (Bc, N), ``A M^{-1} v_j``, against
    ``basis[:, :k + j + 1]`` in place, writes basis row ``k + j + 1``, ``hbar[:, :j + 2, j]``,
    ``bmat[:, :, j]`` and rows ``j, j + 1`` of ``q``, and returns ``(finish, count)``: the
    members whose cycle ends after this step (residual estimate ``beta |q[j + 1, 0]|`` at most
    ``target``, new norm at most ``floor``, or ``budget`` spent), a bool tensor (Bc,), and how
    many. Use :meth:`plan`, which returns None where the kernel cannot run.

    Planned with the cycle's Darcy operator (and Jacobi preconditioner), ``run(j, twice)`` also
    does the preconditioner and the operator in C and takes steps ``j, j + 1, ...`` until some
    member's cycle ends: ``(finish, count, last)`` with ``last`` the step it ended at (``runs``
    says whether it can).
    """

    def __init__(self, lib, arrays: dict, k: int, threads: int, darcy: dict | None) -> None:
        suffix = _SUFFIX[arrays["basis"].dtype]
        self._kernel = getattr(lib, f"arnoldi_step_{suffix}")
        self._arrays = arrays  # kept alive: the kernels hold their addresses
        basis = arrays["basis"]
        self._batch, self._n, self._k = basis.shape[0], basis.shape[2], k
        self._m = arrays["hbar"].shape[2]
        self._threads = threads
        self._h = basis.new_empty((self._batch, basis.shape[1]))
        self._hnorm = basis.new_empty(self._batch)
        self._finish = torch.empty(self._batch, dtype=torch.bool)
        order = ("basis", "hbar", "q", "bmat", "beta", "target", "floor", "budget")
        self._pointers = [ctypes.c_void_p(arrays[name].data_ptr()) for name in order]
        self._pointers += [ctypes.c_void_p(t.data_ptr()) for t in (self._h, self._hnorm)]
        self._pointers.append(ctypes.c_void_p(self._finish.data_ptr()))
        self.runs = darcy is not None
        if darcy is not None:
            self._darcy = darcy  # kept alive
            self._runner = getattr(lib, f"arnoldi_darcy_steps_{suffix}")
            self._w = basis.new_empty((self._batch, self._n))
            self._last = torch.zeros(1, dtype=torch.int64)
            grid = darcy["diagonal"].shape[1:]
            operands = [darcy[name] for name in ("z", "inverse", "diagonal", "wx", "wy")]
            self._run_head = [self._batch, *grid, k, self._m]
            self._run_pointers = [self._pointers[0], *map(_address, operands), _address(self._w)]
            self._run_pointers += [*self._pointers[1:], _address(self._last)]

    @classmethod
    def plan(
        cls, basis, hbar, q, bmat, beta, target, floor, budget, k: int, darcy: dict | None = None
    ) -> ArnoldiStep | None:
        """The step for these arrays (shapes as ``_Cycle``; ``bmat`` None when ``k = 0``), or
        None: no kernels, complex or CUDA tensors, or arrays not contiguous. ``darcy``: the
        operator's ``diagonal`` (Bc, n0, n1), ``wx``, ``wy`` (as :func:`darcy5`), the Jacobi
        ``inverse`` (Bc, n0, n1) and the cycle's ``z`` (Bc, m, N), both None without a
        preconditioner; where they are usable the step also ``runs``."""
        lib = library()
        bmat = hbar if bmat is None else bmat  # unread when k = 0
        if lib is None or not _usable(basis, hbar, q, bmat, beta):
            return None
        if not (_usable(target, floor) and target.dtype == torch.float64):
            return None
        if not (budget.is_cpu and budget.dtype == torch.int64 and budget.is_contiguous()):
            return None
        batch, width, _ = basis.shape
        m = hbar.shape[2]
        if width != k + m + 1 or hbar.shape != (batch, m + 1, m):
            return None
        if q.shape != (batch, m + 1, m + 1):
            return None
        if k and bmat.shape != (batch, k, m):
            return None
        arrays = dict(basis=basis, hbar=hbar, q=q, bmat=bmat, beta=beta, target=target)
        arrays.update(floor=floor, budget=budget)
        threads = torch.get_num_threads() if batch > 1 else 1
        return cls(lib, arrays, k, threads, darcy if _darcy_usable(darcy, basis, m) else None)

    def __call__(self, w: torch.Tensor, j: int, twice: bool) -> tuple[torch.Tensor, int]:
        if w.shape != (self._batch, self._n) or not _usable(self._arrays["basis"], w):
            raise ValueError(f"arnoldi step: w must be ({self._batch}, {self._n}) like the basis")
        p = self._pointers
        count = self._kernel(
            self._batch, self._n, self._k, self._m, j, int(twice), self._threads,
            p[0], ctypes.c_void_p(w.data_ptr()), *p[1:],
        )  # fmt: skip
        return self._finish, count

    def run(self, j: int, twice: bool) -> tuple[torch.Tensor, int, int]:
        """Steps ``j, j + 1, ...`` (preconditioner, operator and step in C) until some member's
        cycle ends or step ``m - 1`` is done: ``(finish, count, last)``."""
        count = self._runner(*self._run_head, j, int(twice), self._threads, *self._run_pointers)
        return self._finish, count, int(self._last)


def _address(t: torch.Tensor | None) -> ctypes.c_void_p:
    """A tensor's data pointer for ctypes; NULL for None."""
    return ctypes.c_void_p(None if t is None else t.data_ptr())


def _darcy_usable(darcy: dict | None, basis: torch.Tensor, m: int) -> bool:
    """Whether :meth:`ArnoldiStep.run` can use these operands (see :meth:`ArnoldiStep.plan`)."""
    if darcy is None:
        return False
    names = ("diagonal", "wx", "wy", "inverse", "z")
    diagonal, wx, wy, inverse, z = (darcy[name] for name in names)
    if diagonal.ndim != 3 or not _usable(basis, diagonal, wx, wy):
        return False
    batch, n0, n1 = diagonal.shape
    if batch != basis.shape[0] or n0 * n1 != basis.shape[2]:
        return False
    if wx.shape != (batch, n0 - 1, n1) or wy.shape != (batch, n0, n1 - 1):
        return False
    if (inverse is None) != (z is None):
        return False
    if inverse is None:
        return True
    return _usable(basis, inverse, z) and inverse.shape == diagonal.shape and z.shape == (
        batch, m, n0 * n1
    )  # fmt: skip
