"""Spectral convolutions over 1, 2 or 3 axes with dense, low-rank or Monarch mode weights.

``SpectralConv`` is the Fourier layer of FNO (Li et al., "Fourier Neural Operator for
Parametric Partial Differential Equations", ICLR 2021): transform the last ``d`` axes with
``rfftn``, keep the low modes, mix channels mode by mode with a complex matrix ``W[k]``, zero
the rest and transform back -- optionally onto a different grid (resampling).

Kept modes, for ``modes = (m_1, ..., m_d)``:

* a non-last axis of size ``n`` keeps frequencies ``0 .. m-1`` and ``-m .. -1`` (``2 m`` of
  them, stored in that order); it requires ``2 m <= n``;
* the last axis (the real transform, ``n // 2 + 1`` bins) keeps ``0 .. m-1``; it requires
  ``m <= n // 2 + 1``.

The kept block has shape ``kept = (2 m_1, ..., 2 m_{d-1}, m_d)`` and ``K = prod(kept)`` modes.
The same limits apply to the output grid. Transforms use ``norm="forward"``, so Fourier
coefficients do not depend on the grid and resampling preserves a band-limited function.

Per-mode weights ("mixers", each maps ``(batch, in, K) -> (batch, out, K)``):

* ``dense``: ``W`` of shape ``(in, out, *kept)`` complex, as in FNO.
* ``low_rank``: ``W[k] = U[k] V[k]^T`` with ``U`` ``(in, r, *kept)``, ``V`` ``(out, r, *kept)``.
  Chosen over a CP or Tucker factorization of the whole tensor (TFNO, Kossaifi et al.,
  "Multi-Grid Tensorized Fourier Neural Operator for High-Resolution PDEs", TMLR 2024) because
  (1) the parameter fraction ``r (in + out) / (in out)`` is set directly by ``r``; (2) the best
  rank-``r`` factors of a dense weight are a closed-form per-mode SVD (Eckart-Young), so a
  trained dense layer can be compressed; and (3) ``r = min(in, out)`` represents every dense
  weight exactly, so "full-rank low-rank equals dense" is an identity, not an approximation.
* ``monarch``: every ``W[k]^T`` (the ``out x in`` matrix applied to the channels) is a Monarch
  matrix ``P L P^T R`` (Dao et al., "Monarch: Expressive Structured Matrices for Efficient and
  Accurate Training", ICML 2022); see :mod:`opsolve.layers.monarch` for the layout. ``in != out``
  is allowed: ``blocks`` must divide both.

Parameters are stored as real tensors with a trailing axis of 2 (real, imaginary) so that
``module.double()`` / ``.half()`` and every optimizer treat them as ordinary real tensors
(``Module.to(float64)`` drops the imaginary part of complex parameters).

FLOP convention (:meth:`SpectralConv.flops`, real floating-point operations of one forward):
a complex FFT of ``N`` points costs ``5 N log2 N``, a real one half of that (``2.5 N log2 N``,
``N`` = total points of the ``d``-axis grid), per channel and sample; a complex multiply-add
costs 8. Dense mixing is ``8 in out K`` per sample, low-rank ``8 r (in + out) K``, Monarch
``8 K (in q + out b)``, a Monarch DFT of length ``n = p q`` ``8 n (p + q)`` per vector.
Gathering, zero-filling and scattering modes are not counted.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch
from torch import nn

from opsolve.layers.monarch import (
    MonarchDFT,
    check_monarch_blocks,
    complex_dtype,
    default_monarch_blocks,
    monarch_num_entries,
    monarch_project,
    monarch_shapes,
    monarch_to_dense,
)

TRANSFORMS = ("fft", "monarch")


def _complex_param(shape: Sequence[int], std: float) -> nn.Parameter:
    """A complex Gaussian (total variance ``std^2``) stored as real ``(*shape, 2)``."""
    return nn.Parameter(torch.view_as_real(torch.randn(*shape, dtype=torch.cfloat) * std))


def _as_complex(param: torch.Tensor) -> torch.Tensor:
    return torch.view_as_complex(param)


def _store(param: nn.Parameter, value: torch.Tensor) -> None:
    """Copy a complex ``value`` into a real-stored parameter, without recording gradients."""
    with torch.no_grad():
        param.copy_(torch.view_as_real(value.to(complex_dtype(param)).contiguous()))


def _check_dense(weight: torch.Tensor, in_channels: int, out_channels: int, kept: tuple) -> None:
    expected = (in_channels, out_channels, *kept)
    if tuple(weight.shape) != expected:
        raise ValueError(f"dense weight must have shape {expected}, got {tuple(weight.shape)}")


class DenseMixer(nn.Module):
    """Full complex weight ``W`` of shape ``(in, out, *kept)``: ``2 in out K`` real parameters.

    Initialised as in neuraloperator: complex Gaussian with std ``sqrt(2 / (in + out))``.
    """

    def __init__(self, in_channels: int, out_channels: int, kept: tuple[int, ...]) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.kept = in_channels, out_channels, kept
        std = math.sqrt(2.0 / (in_channels + out_channels))
        self.weight = _complex_param((in_channels, out_channels, *kept), std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, in, K) -> (batch, out, K)``."""
        w = _as_complex(self.weight).reshape(self.in_channels, self.out_channels, -1)
        return torch.einsum("bik,iok->bok", x, w.to(x.dtype))

    def dense_weight(self) -> torch.Tensor:
        """``W``, shape ``(in, out, *kept)``, complex."""
        return _as_complex(self.weight)

    def set_from_dense(self, weight: torch.Tensor) -> None:
        """Copy ``weight`` ``(in, out, *kept)`` into ``W``."""
        _check_dense(weight, self.in_channels, self.out_channels, self.kept)
        _store(self.weight, weight)

    def flops_per_sample(self) -> int:
        return 8 * self.in_channels * self.out_channels * math.prod(self.kept)


class LowRankMixer(nn.Module):
    """Per-mode rank-``r`` weight ``W[k] = U[k] V[k]^T`` (module docstring: why this one).

    ``U``: ``(in, r, *kept)``, ``V``: ``(out, r, *kept)``: ``2 r (in + out) K`` real parameters,
    a fraction ``r (in + out) / (in out)`` of dense. Each factor is complex Gaussian with std
    ``(2 / ((in + out) r))^(1/4)`` so that ``W`` has the dense layer's entry variance.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kept: tuple[int, ...], rank: int
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.kept, self.rank = (
            in_channels,
            out_channels,
            kept,
            rank,
        )
        std = (2.0 / ((in_channels + out_channels) * rank)) ** 0.25
        self.u = _complex_param((in_channels, rank, *kept), std)
        self.v = _complex_param((out_channels, rank, *kept), std)

    def _factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        u = _as_complex(self.u).reshape(self.in_channels, self.rank, -1)
        v = _as_complex(self.v).reshape(self.out_channels, self.rank, -1)
        return u, v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, in, K) -> (batch, out, K)`` via ``V (U^T x)``, never forming ``W``."""
        u, v = self._factors()
        h = torch.einsum("bik,irk->brk", x, u.to(x.dtype))
        return torch.einsum("brk,ork->bok", h, v.to(x.dtype))

    def dense_weight(self) -> torch.Tensor:
        """``W = U V^T`` per mode, shape ``(in, out, *kept)``."""
        u, v = self._factors()
        w = torch.einsum("irk,ork->iok", u, v)
        return w.reshape(self.in_channels, self.out_channels, *self.kept)

    def set_from_dense(self, weight: torch.Tensor) -> None:
        """Best rank-``r`` factors of ``weight`` ``(in, out, *kept)`` by per-mode SVD.

        ``W[k] = A S B^H`` gives ``U[k] = A_r S_r^(1/2)``, ``V[k] = conj(B_r) S_r^(1/2)``;
        exact when ``r >= rank(W[k])``, in particular for ``r = min(in, out)``.
        """
        _check_dense(weight, self.in_channels, self.out_channels, self.kept)
        w = weight.to(torch.complex128).reshape(self.in_channels, self.out_channels, -1)
        a, s, bh = torch.linalg.svd(w.permute(2, 0, 1), full_matrices=False)  # (K, in, out)
        root = s[:, : self.rank].sqrt().to(a.dtype)  # (K, r)
        u = a[:, :, : self.rank] * root[:, None, :]  # (K, in, r)
        v = bh[:, : self.rank, :].transpose(1, 2) * root[:, None, :]  # (K, out, r)
        _store(self.u, u.permute(1, 2, 0).reshape(self.u.shape[:-1]))
        _store(self.v, v.permute(1, 2, 0).reshape(self.v.shape[:-1]))

    def flops_per_sample(self) -> int:
        return 8 * self.rank * (self.in_channels + self.out_channels) * math.prod(self.kept)


class MonarchMixer(nn.Module):
    """Per-mode Monarch weight: the ``out x in`` matrix ``W[k]^T`` is ``M(L[k], R[k])``.

    ``L``: ``(q, b, b, *kept)``, ``R``: ``(b, q, q_in, *kept)`` with ``b = blocks``,
    ``q = out / b``, ``q_in = in / b``: ``2 K (in out / b + out b)`` real parameters
    (``4 K n sqrt(n)`` for ``in = out = n``, ``b = sqrt(n)``). Factors are complex Gaussian with
    std ``(2 / (in + out))^(1/4)``: each entry of ``W`` is one product ``L R``.
    """

    def __init__(
        self, in_channels: int, out_channels: int, kept: tuple[int, ...], blocks: int
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.kept, self.blocks = (
            in_channels,
            out_channels,
            kept,
            blocks,
        )
        shape_l, shape_r = monarch_shapes(in_channels, out_channels, blocks)
        std = (2.0 / (in_channels + out_channels)) ** 0.25
        self.left = _complex_param((*shape_l, *kept), std)
        self.right = _complex_param((*shape_r, *kept), std)

    def _factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``L`` ``(q, b, b, K)`` and ``R`` ``(b, q, q_in, K)``, complex."""
        left = _as_complex(self.left)
        right = _as_complex(self.right)
        return left.reshape(*left.shape[:3], -1), right.reshape(*right.shape[:3], -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, in, K) -> (batch, out, K)``: ``R`` inside input blocks, then ``L`` across."""
        left, right = self._factors()
        b, q, q_in = right.shape[:3]
        xb = x.reshape(x.shape[0], b, q_in, x.shape[-1])
        y = torch.einsum("bijk,icjk->bick", xb, right.to(x.dtype))
        z = torch.einsum("bick,caik->back", y, left.to(x.dtype))
        return z.reshape(x.shape[0], self.out_channels, x.shape[-1])

    def dense_weight(self) -> torch.Tensor:
        """``W`` ``(in, out, *kept)`` with ``W[:, :, k] = M(L[k], R[k])^T``."""
        left, right = self._factors()
        m = monarch_to_dense(left.movedim(-1, 0), right.movedim(-1, 0))  # (K, out, in)
        return m.permute(2, 1, 0).reshape(self.in_channels, self.out_channels, *self.kept)

    def set_from_dense(self, weight: torch.Tensor) -> None:
        """Per mode, the Frobenius-nearest Monarch matrix (:func:`monarch_project`)."""
        _check_dense(weight, self.in_channels, self.out_channels, self.kept)
        w = weight.to(torch.complex128).reshape(self.in_channels, self.out_channels, -1)
        left, right = monarch_project(w.permute(2, 1, 0), self.blocks)  # (K, ...) each
        _store(self.left, left.movedim(0, -1).reshape(self.left.shape[:-1]))
        _store(self.right, right.movedim(0, -1).reshape(self.right.shape[:-1]))

    def flops_per_sample(self) -> int:
        q = self.out_channels // self.blocks
        per_mode = self.in_channels * q + self.out_channels * self.blocks
        return 8 * per_mode * math.prod(self.kept)


MIXERS = ("dense", "low_rank", "monarch")


def resolve_rank(in_channels: int, out_channels: int, rank: int | float | None) -> int:
    """The low-rank ``r``: an int is the rank itself (``1 .. min(in, out)``); a float in
    ``(0, 1]`` is a target fraction of the dense parameter count, ``r = round(f in out / (in +
    out))`` clipped to ``[1, min(in, out)]``; ``None`` means the fraction 0.25."""
    full = min(in_channels, out_channels)
    if rank is None:
        rank = 0.25
    if isinstance(rank, bool) or not isinstance(rank, (int, float)):
        raise ValueError(f"low_rank rank must be an int or a float fraction, got {rank!r}")
    if isinstance(rank, float):
        if not 0.0 < rank <= 1.0:
            raise ValueError(f"low_rank rank fraction must be in (0, 1], got {rank}")
        r = round(rank * in_channels * out_channels / (in_channels + out_channels))
        return min(max(r, 1), full)
    if not 1 <= rank <= full:
        raise ValueError(f"low_rank rank={rank} out of range; allowed: 1 .. min(in, out) = {full}")
    return rank


def make_mixer(
    weight: str,
    in_channels: int,
    out_channels: int,
    kept: tuple[int, ...],
    rank: int | float | None = None,
    blocks: int | None = None,
) -> nn.Module:
    """The per-mode channel mixer named ``weight`` ("dense", "low_rank" or "monarch")."""
    if weight == "dense":
        return DenseMixer(in_channels, out_channels, kept)
    if weight == "low_rank":
        return LowRankMixer(
            in_channels, out_channels, kept, resolve_rank(in_channels, out_channels, rank)
        )
    if weight == "monarch":
        b = default_monarch_blocks(in_channels, out_channels) if blocks is None else blocks
        check_monarch_blocks(in_channels, out_channels, b)
        return MonarchMixer(in_channels, out_channels, kept, b)
    raise ValueError(f"unknown spectral weight {weight!r}; allowed: {', '.join(MIXERS)}")


def _normalize_modes(modes: int | Sequence[int]) -> tuple[int, ...]:
    modes_t = (modes,) if isinstance(modes, int) else tuple(modes)
    if not modes_t or any(isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in modes_t):
        raise ValueError(f"modes must be positive integers (one per axis), got {modes!r}")
    return modes_t


def kept_shape(modes: Sequence[int]) -> tuple[int, ...]:
    """``(2 m_1, ..., 2 m_{d-1}, m_d)``: the kept block of the ``rfftn`` spectrum."""
    return (*(2 * m for m in modes[:-1]), modes[-1])


def check_modes(modes: Sequence[int], sizes: Sequence[int], what: str = "input") -> None:
    """Raise ``ValueError`` unless ``2 m <= n`` (non-last axes) and ``m <= n // 2 + 1``."""
    for axis, (m, n) in enumerate(zip(modes, sizes, strict=True)):
        last = axis == len(modes) - 1
        limit = n // 2 + 1 if last else n // 2
        if m > limit:
            rule = "m <= n//2+1 on the last axis" if last else "2*m <= n on non-last axes"
            raise ValueError(
                f"modes={tuple(modes)} too large for {what} grid {tuple(sizes)}: axis {axis} "
                f"(n={n}) allows at most {limit} modes ({rule})"
            )


def mode_blocks(
    modes: Sequence[int], sizes: Sequence[int]
) -> list[tuple[tuple[slice, ...], tuple[slice, ...]]]:
    """The kept modes of an ``rfftn`` spectrum of grid ``sizes`` as ``2^(d-1)`` rectangular
    blocks (low and high frequencies of each non-last axis, the low ones of the last):
    ``(slices of the spectrum, slices of the kept array)`` per block. On each non-last axis the
    kept array holds the low modes ``0 .. m-1`` then the high ones ``n-m .. n-1``. Copying block
    by block costs a few strided copies, where indexing with index tensors is a gather."""
    per_axis = [[(slice(0, m), slice(0, m)), (slice(n - m, n), slice(m, 2 * m))]
                for m, n in zip(modes[:-1], sizes[:-1], strict=True)]  # fmt: skip
    per_axis.append([(slice(0, modes[-1]), slice(0, modes[-1]))])
    return [tuple(zip(*block, strict=True)) for block in itertools.product(*per_axis)]


def gather_modes(x_ft: torch.Tensor, modes: Sequence[int]) -> torch.Tensor:
    """The kept modes of ``x_ft`` ``(B, C, *spectrum)``: ``(B, C, *kept)`` (:func:`mode_blocks`)."""
    blocks = mode_blocks(modes, (*x_ft.shape[2:-1], 0))  # the last axis: low modes only
    if len(blocks) == 1:  # one axis: a view
        return x_ft[(..., *blocks[0][0])]
    out = x_ft.new_empty(*x_ft.shape[:2], *kept_shape(modes))
    for spectrum, block in blocks:
        out[(..., *block)] = x_ft[(..., *spectrum)]
    return out


def scatter_modes(y: torch.Tensor, modes: Sequence[int], spectrum: Sequence[int]) -> torch.Tensor:
    """``y`` ``(B, C, *kept)`` placed in a zero spectrum ``(B, C, *spectrum)`` at the kept modes
    of :func:`mode_blocks`."""
    y_ft = y.new_zeros(*y.shape[:2], *spectrum)
    for part, block in mode_blocks(modes, (*spectrum[:-1], 0)):
        y_ft[(..., *part)] = y[(..., *block)]
    return y_ft


def _fft_flops(points: int, channels: int) -> float:
    """A real ``d``-axis transform of ``points`` points: ``2.5 N log2 N`` per channel."""
    return 2.5 * points * math.log2(points) * channels if points > 1 else 0.0


class SpectralConv(nn.Module):
    """Fourier layer: ``irfftn( W[k] . rfftn(x)[k] on the kept modes k )``.

    Args:
        in_channels, out_channels: channel counts.
        modes: modes per transformed axis, ``(m_1, ..., m_d)`` (an int means ``d = 1``); the
            last ``d`` axes of the input are transformed. See the module docstring for which
            frequencies are kept and the size limits.
        weight: "dense", "low_rank" or "monarch" (module docstring).
        rank: low-rank ``r`` (int) or dense-parameter fraction (float); :func:`resolve_rank`.
        blocks: Monarch block count ``b`` (must divide both channel counts); default
            :func:`default_monarch_blocks` (``sqrt(n)`` for square ``n``).
        out_size: default output grid, one entry per axis (``None`` entries: same as input).
        transform: "fft", or "monarch" to replace the complex FFTs along the non-last axes by
            learnable :class:`MonarchDFT` modules initialised at the exact (inverse) DFT; the
            last axis keeps ``rfft``/``irfft``. Needs ``d >= 2`` and a fixed ``grid``.
        grid: the input grid (needed by ``transform="monarch"``); the output grid is then
            ``out_size`` (default ``grid``) and may not be overridden in ``forward``.

    Shapes: input ``(batch, in_channels, n_1, ..., n_d)``, output
    ``(batch, out_channels, n'_1, ..., n'_d)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        modes: int | Sequence[int],
        weight: str = "dense",
        *,
        rank: int | float | None = None,
        blocks: int | None = None,
        out_size: Sequence[int | None] | None = None,
        transform: str = "fft",
        grid: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.modes = _normalize_modes(modes)
        self.kept = kept_shape(self.modes)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.weight_kind = weight
        self.mixer = make_mixer(weight, in_channels, out_channels, self.kept, rank, blocks)
        self.out_size = self._check_out_size(out_size)
        self.transform = transform
        self.grid: tuple[int, ...] | None = None
        self.dft_in = nn.ModuleList()
        self.dft_out = nn.ModuleList()
        if transform == "monarch":
            self._build_monarch_transforms(grid)
        elif transform != "fft":
            raise ValueError(f"unknown transform {transform!r}; allowed: {', '.join(TRANSFORMS)}")

    @property
    def ndim(self) -> int:
        """Number of transformed axes ``d``."""
        return len(self.modes)

    def _check_out_size(self, out_size: Sequence[int | None] | None) -> tuple | None:
        if out_size is None:
            return None
        out = tuple(out_size)
        if len(out) != self.ndim or any(n is not None and n < 1 for n in out):
            raise ValueError(
                f"out_size must have {self.ndim} positive entries (or None), got {out_size!r}"
            )
        return out

    def _build_monarch_transforms(self, grid: Sequence[int] | None) -> None:
        if self.ndim < 2:
            raise ValueError("transform='monarch' needs at least 2 axes (the last axis uses rfft)")
        if grid is None or len(grid) != self.ndim:
            raise ValueError(f"transform='monarch' needs grid= with {self.ndim} sizes, got {grid}")
        self.grid = tuple(grid)
        out = self._output_sizes(self.grid, None)
        check_modes(self.modes, self.grid, "input")
        check_modes(self.modes, out, "output")
        self.dft_in.extend(MonarchDFT(n, norm="forward") for n in self.grid[:-1])
        self.dft_out.extend(MonarchDFT(n, inverse=True, norm="forward") for n in out[:-1])

    def _output_sizes(
        self, sizes: tuple[int, ...], out_size: Sequence[int | None] | None
    ) -> tuple[int, ...]:
        requested = self._check_out_size(out_size) or self.out_size or (None,) * self.ndim
        return tuple(n if r is None else int(r) for n, r in zip(sizes, requested, strict=True))

    def _check_input(self, x: torch.Tensor) -> tuple[int, ...]:
        if x.ndim != self.ndim + 2:
            axes = ", ".join(f"n{i + 1}" for i in range(self.ndim))
            raise ValueError(
                f"SpectralConv over {self.ndim} axes expects input (batch, channels, {axes}) "
                f"with {self.ndim + 2} dims, got shape {tuple(x.shape)}"
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"SpectralConv expects {self.in_channels} input channels, got {x.shape[1]}"
            )
        return tuple(x.shape[2:])

    def _forward_transform(self, x: torch.Tensor) -> torch.Tensor:
        axes = tuple(range(-self.ndim, 0))
        if self.transform == "fft":
            return torch.fft.rfftn(x, dim=axes, norm="forward")
        x_ft = torch.fft.rfft(x, dim=-1, norm="forward")
        for axis, dft in zip(axes[:-1], self.dft_in, strict=True):
            x_ft = dft(x_ft, dim=axis)
        return x_ft

    def _inverse_transform(self, y_ft: torch.Tensor, out_sizes: tuple[int, ...]) -> torch.Tensor:
        axes = tuple(range(-self.ndim, 0))
        if self.transform == "fft":
            return torch.fft.irfftn(y_ft, s=out_sizes, dim=axes, norm="forward")
        for axis, dft in zip(axes[:-1], self.dft_out, strict=True):
            y_ft = dft(y_ft, dim=axis)
        return torch.fft.irfft(y_ft, n=out_sizes[-1], dim=-1, norm="forward")

    def forward(
        self, x: torch.Tensor, out_size: Sequence[int | None] | None = None
    ) -> torch.Tensor:
        """``(batch, in, *sizes) -> (batch, out, *out_sizes)``.

        ``out_size`` (per axis, ``None`` = keep) overrides the constructor's ``out_size``.
        """
        sizes = self._check_input(x)
        out_sizes = self._output_sizes(sizes, out_size)
        check_modes(self.modes, sizes, "input")
        check_modes(self.modes, out_sizes, "output")
        if self.grid is not None and (sizes != self.grid or out_sizes != self._fixed_out()):
            raise ValueError(
                f"transform='monarch' was built for grid {self.grid} -> {self._fixed_out()}, "
                f"got {sizes} -> {out_sizes}"
            )
        dtype = complex_dtype(x, next(self.mixer.parameters()))
        x_ft = self._forward_transform(x).to(dtype)
        batch = x.shape[0]
        kept = gather_modes(x_ft, self.modes)
        y = self.mixer(kept.reshape(batch, self.in_channels, -1))
        spectrum = (*out_sizes[:-1], out_sizes[-1] // 2 + 1)
        y = y.reshape(batch, self.out_channels, *self.kept)
        return self._inverse_transform(scatter_modes(y, self.modes, spectrum), out_sizes)

    def _fixed_out(self) -> tuple[int, ...]:
        assert self.grid is not None
        return self._output_sizes(self.grid, None)

    def dense_weight(self) -> torch.Tensor:
        """The equivalent dense weight ``(in, out, *kept)`` (complex)."""
        return self.mixer.dense_weight()

    def load_dense_weight(self, weight: torch.Tensor) -> None:
        """Set the mode weights from a dense ``(in, out, *kept)`` weight: copied (dense), best
        rank-``r`` per mode (low_rank) or nearest Monarch per mode (monarch)."""
        self.mixer.set_from_dense(weight.detach())

    def num_parameters(self) -> int:
        """Real parameters (a complex entry counts 2), including learnable transforms.

        dense: ``2 in out K``; low_rank: ``2 r (in + out) K``; monarch:
        ``2 K (in out / b + out b)``; plus ``2 n (p + q)`` per Monarch DFT; ``K = prod(kept)``.
        """
        return sum(p.numel() for p in self.parameters())

    def flops(
        self, input_shape: Sequence[int], out_size: Sequence[int | None] | None = None
    ) -> int:
        """Estimated real flops of ``forward`` on ``input_shape`` (module docstring convention)."""
        batch, _, *sizes = input_shape
        sizes_t = tuple(sizes)
        out_sizes = self._output_sizes(sizes_t, out_size)
        total = batch * self.mixer.flops_per_sample()
        if self.transform == "fft":
            total += _fft_flops(math.prod(sizes_t), batch * self.in_channels)
            total += _fft_flops(math.prod(out_sizes), batch * self.out_channels)
            return int(total)
        for grid, channels, dfts in (
            (sizes_t, self.in_channels, self.dft_in),
            (out_sizes, self.out_channels, self.dft_out),
        ):
            rows = math.prod(grid[:-1])
            total += _fft_flops(grid[-1], batch * channels * rows)
            spectrum = rows * (grid[-1] // 2 + 1)
            for n, dft in zip(grid[:-1], dfts, strict=True):
                total += dft.flops(batch * channels * spectrum // n)
        return int(total)

    def extra_repr(self) -> str:
        parts = [
            f"{self.in_channels}, {self.out_channels}",
            f"modes={self.modes}",
            f"weight={self.weight_kind!r}",
        ]
        if self.out_size is not None:
            parts.append(f"out_size={self.out_size}")
        if self.transform != "fft":
            parts.append(f"transform={self.transform!r}, grid={self.grid}")
        return ", ".join(parts)


def dense_num_parameters(in_channels: int, out_channels: int, modes: Sequence[int]) -> int:
    """``2 in out K`` with ``K = prod(kept_shape(modes))``."""
    return 2 * in_channels * out_channels * math.prod(kept_shape(modes))


def low_rank_num_parameters(
    in_channels: int, out_channels: int, modes: Sequence[int], rank: int
) -> int:
    """``2 r (in + out) K``."""
    return 2 * rank * (in_channels + out_channels) * math.prod(kept_shape(modes))


def monarch_num_parameters(
    in_channels: int, out_channels: int, modes: Sequence[int], blocks: int
) -> int:
    """``2 K (in out / b + out b)``."""
    entries = monarch_num_entries(in_channels, out_channels, blocks)
    return 2 * entries * math.prod(kept_shape(modes))
