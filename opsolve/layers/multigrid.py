"""The multigrid V-cycle layer of MgNO: a linear operator between channel fields.

Reference: J. He, X. Liu, J. Xu, "MgNO: Efficient Parameterization of Linear Operators via
Multigrid", ICLR 2024 (official code: github.com/xlliu2017/MgNO, ``models.py``).

MgNO parameterizes the linear operator ``W: f -> u`` of a neural-operator layer by one V-cycle
of a multigrid solver for ``A u = f`` whose components are all learned convolutions:

* smoothing at level ``l``: ``u <- u + S_l(f - A_l u)``, ``A_l`` a 3x3 conv from u-channels to
  f-channels and ``S_l`` a 3x3 conv back; at the finest level ``u`` starts at zero, so the first
  step is ``u = S(f)``;
* restriction: ``u_c = Pi(u)`` and ``f_c = R(f)`` (or ``R(f - A u)``, "residual restriction",
  off in the official runs), both 3x3 convs with stride 2, so ``n -> ceil(n / 2)`` and coarse
  node ``i`` sits on fine node ``2 i``;
* prolongation: a 4x4 transposed conv with stride 2, added to the finer ``u``, then optional
  post-smoothing.

Boundary conditions come from the convolutions' padding mode: ``"zeros"`` (Dirichlet),
``"circular"`` (periodic), ``"reflect"`` or ``"replicate"``.

Differences from the official code, all deliberate:

* Any grid size works. The official code hard-codes the transposed-conv kernels for the grid
  sizes of its experiments (4 everywhere, i.e. even sizes such as 256 and 64; and 3,4,3,3,4 for
  211 in ``MgConv_DC_smooth``) and fails with a size mismatch elsewhere (e.g. 85 or 211 for the
  rough-Darcy model). Here the kernel is always 4x4 and the result is cropped to the actual fine
  size, so the parameter count does not depend on the grid.
* The prolongation treats the border like the convolutions do. Before the transposed conv the
  coarse grid gets one ghost cell per side filled by the padding mode (zeros; periodic wrap;
  mirror about the border node; edge copy); with ``"zeros"`` this is exactly the official
  zero-padded transposed conv. The official code always zero-pads, so with circular padding it is
  not periodic; here the V-cycle commutes exactly with circular shifts by multiples of
  ``2**(levels - 1)`` when H and W are divisible by ``2**(levels - 1)``.
* The optional normalization after each prolongation sum (Navier-Stokes variant) is
  ``GroupNorm(1, C)``: layer norm over (C, H, W) with a per-channel affine map. The official
  code uses ``LayerNorm([C, 64 / 2**l, 64 / 2**l])``, which only accepts 64x64 inputs and has a
  per-pixel affine map (so more parameters, and not shift-equivariant).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PADDING_MODES = ("zeros", "circular", "reflect", "replicate")
"""Boundary treatments, as ``torch.nn.Conv2d`` spells them."""


def check_padding_mode(padding_mode: str) -> str:
    """Return ``padding_mode`` if it is one of :data:`PADDING_MODES`, else raise ValueError."""
    if padding_mode not in PADDING_MODES:
        raise ValueError(
            f"padding_mode must be one of {', '.join(PADDING_MODES)}; got {padding_mode!r}"
        )
    return padding_mode


def min_grid_size(levels: int) -> int:
    """Smallest H (and W) for which every one of ``levels`` grids has at least 2 nodes."""
    return 2 ** (levels - 1) + 1


def level_sizes(size: int, levels: int) -> list[int]:
    """Grid sizes along one axis from the finest level down: ``n, ceil(n/2), ...``."""
    sizes = [size]
    for _ in range(levels - 1):
        sizes.append((sizes[-1] + 1) // 2)
    return sizes


def check_grid_input(x: Tensor, channels: int, levels: int, name: str) -> None:
    """Raise ValueError unless ``x`` is a float ``(batch, channels, H, W)`` tensor on a grid with
    at least :func:`min_grid_size` nodes per axis."""
    if not isinstance(x, Tensor) or x.ndim != 4 or x.shape[1] != channels:
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"{name} expects input (batch, {channels}, H, W); got {got}")
    if not torch.is_floating_point(x):
        raise ValueError(f"{name} expects a floating-point tensor; got {x.dtype}")
    need = min_grid_size(levels)
    height, width = x.shape[-2:]
    if min(height, width) < need:
        raise ValueError(
            f"{name} with levels={levels} needs H and W >= {need} (2 nodes on the coarsest "
            f"grid); got {height} x {width}"
        )


def default_smoothing(levels: int) -> list[int]:
    """The official pattern: one pre-smoothing step per level, two on the coarsest."""
    return [1] * (levels - 1) + [2]


def _check_count(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return value


def _check_steps(name: str, steps: Sequence[int], levels: int) -> tuple[int, ...]:
    if isinstance(steps, (str, bytes)) or not isinstance(steps, Sequence):
        raise ValueError(f"{name} must be a list of {levels} step counts; got {steps!r}")
    if len(steps) != levels:
        raise ValueError(
            f"{name} must have one entry per level ({levels}); got {len(steps)}: {list(steps)}"
        )
    for step in steps:
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"{name} entries must be integers >= 0; got {list(steps)}")
    return tuple(steps)


def _conv3x3(
    in_channels: int, out_channels: int, padding_mode: str, bias: bool, stride: int = 1
) -> nn.Conv2d:
    return nn.Conv2d(
        in_channels,
        out_channels,
        3,
        stride=stride,
        padding=1,
        bias=bias,
        padding_mode=padding_mode,
    )


class SmoothingStep(nn.Module):
    """One smoothing step ``u <- u + S(f - A u)``; with ``first=True`` it is ``u = S(f)``.

    Shapes: ``u`` (batch, u_channels, H, W) or None (first step), ``f`` (batch, f_channels, H, W)
    -> (batch, u_channels, H, W).
    """

    def __init__(
        self, u_channels: int, f_channels: int, padding_mode: str, bias: bool, first: bool = False
    ) -> None:
        super().__init__()
        self.A = None if first else _conv3x3(u_channels, f_channels, padding_mode, bias)
        self.S = _conv3x3(f_channels, u_channels, padding_mode, bias)

    def forward(self, u: Tensor | None, f: Tensor) -> Tensor:
        if self.A is None:
            return self.S(f)
        if u is None:
            raise ValueError("SmoothingStep with an A convolution needs the current u")
        return u + self.S(f - self.A(u))


class Restriction(nn.Module):
    """Fine to coarse: ``u_c = Pi(u)``, ``f_c = R(f)`` or ``R(f - A u)`` (``residual=True``).

    ``Pi`` and ``R`` are bias-free 3x3 convs with stride 2 (as in the official code), so each axis
    goes from ``n`` to ``ceil(n / 2)`` nodes. Shapes: ``u`` (batch, u_channels, H, W), ``f``
    (batch, f_channels, H, W) -> the same channels on the ``ceil(H/2) x ceil(W/2)`` grid.
    """

    def __init__(
        self,
        u_channels: int,
        f_channels: int,
        padding_mode: str,
        residual: bool = False,
        bias: bool = False,
    ) -> None:
        super().__init__()
        self.Pi = _conv3x3(u_channels, u_channels, padding_mode, bias=False, stride=2)
        self.R = _conv3x3(f_channels, f_channels, padding_mode, bias=False, stride=2)
        self.A = _conv3x3(u_channels, f_channels, padding_mode, bias) if residual else None

    def forward(self, u: Tensor, f: Tensor) -> tuple[Tensor, Tensor]:
        residual = f if self.A is None else f - self.A(u)
        return self.Pi(u), self.R(residual)


def _ghost_index(coarse: int, fine: int, padding_mode: str) -> tuple[int, int]:
    """Coarse indices copied into the left and right ghost cells along one axis.

    Coarse node ``i`` sits on fine node ``2 i``, so the ghosts sit on fine nodes ``-2`` and
    ``2 * coarse``; each takes the coarse value the fine-grid padding rule puts there.
    """
    if padding_mode == "circular":
        return coarse - 1, 0
    if padding_mode == "reflect":  # mirror about fine node 0 and fine node `fine - 1`
        return 1, coarse - 2 if fine % 2 else coarse - 1
    return 0, coarse - 1  # replicate


class Prolongation(nn.Module):
    """Coarse to fine: a bias-free 4x4 transposed conv with stride 2 (as in the official code),
    computed for any fine size.

    Coarse node ``i`` feeds fine nodes ``2i-1 .. 2i+2`` (the official ``kernel_size=4, stride=2,
    padding=1``). The coarse grid first gets one ghost cell per side filled according to the
    padding mode, and the result is cropped to the fine size, so odd sizes (where the official
    code needs a 3x3 kernel) work too. Shapes: ``coarse`` (batch, C, h, w) with
    ``h = ceil(H / 2)``, ``w = ceil(W / 2)`` -> (batch, C, H, W).
    """

    def __init__(self, channels: int, padding_mode: str) -> None:
        super().__init__()
        self.padding_mode = check_padding_mode(padding_mode)
        self.RT = nn.ConvTranspose2d(channels, channels, 4, stride=2, padding=1, bias=False)

    def forward(self, coarse: Tensor, fine_size: Sequence[int]) -> Tensor:
        height, width = fine_size
        h, w = coarse.shape[-2:]
        if (h, w) != ((height + 1) // 2, (width + 1) // 2):
            raise ValueError(f"coarse grid {h} x {w} does not match fine grid {height} x {width}")
        if self.padding_mode == "zeros":
            padded = F.pad(coarse, (1, 1, 1, 1))
        else:
            left, right = _ghost_index(w, width, self.padding_mode)
            cols = torch.tensor([left, *range(w), right], device=coarse.device)
            top, bottom = _ghost_index(h, height, self.padding_mode)
            rows = torch.tensor([top, *range(h), bottom], device=coarse.device)
            padded = coarse.index_select(-1, cols).index_select(-2, rows)
        # With one ghost per side, fine node p is output index p + 2.
        return self.RT(padded)[..., 2 : 2 + height, 2 : 2 + width]


class VCycle(nn.Module):
    """One learned multigrid V-cycle, the linear operator ``W: f -> u`` of an MgNO layer.

    Shapes: ``f`` (batch, in_channels, H, W) -> ``u`` (batch, out_channels, H, W), for any H, W
    >= ``2**(levels - 1) + 1``.

    Args:
        in_channels: channels of ``f`` (the layer input).
        out_channels: channels of ``u`` (the layer output).
        levels: number of grids (the official runs use 6 for Darcy, 5 for Navier-Stokes).
        pre_smoothing: smoothing steps per level on the way down, finest first; the first one
            at the finest level is ``u = S(f)``, so ``pre_smoothing[0] >= 1``. Default: one
            step per level and two on the coarsest (``[1, 1, 1, 1, 1, 2]`` for 6). The official
            CLI writes the per-level pairs (pre, post) as digit strings: ``10 10 10 10 10 20``
            is pre ``[1, 1, 1, 1, 1, 2]``, post ``[0, 0, 0, 0, 0, 0]``.
        post_smoothing: steps per level on the way up, after adding the prolongation; default
            none. The coarsest level has no way up, so its entry must be 0.
        padding_mode: one of :data:`PADDING_MODES`, for every conv and the prolongation.
        bias: bias in the smoothing convolutions ``A``, ``S`` (off for Darcy, on for the
            official Navier-Stokes run); ``Pi``, ``R`` and the prolongation never have one.
        residual_restriction: restrict ``f - A u`` instead of ``f`` (off in the official runs).
        normalize: ``GroupNorm(1, out_channels)`` after each prolongation sum (Navier-Stokes).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        levels: int = 6,
        pre_smoothing: Sequence[int] | None = None,
        post_smoothing: Sequence[int] | None = None,
        padding_mode: str = "zeros",
        bias: bool = False,
        residual_restriction: bool = False,
        normalize: bool = False,
    ) -> None:
        super().__init__()
        self.in_channels = _check_count("in_channels", in_channels, 1)
        self.out_channels = _check_count("out_channels", out_channels, 1)
        self.levels = _check_count("levels", levels, 1)
        if pre_smoothing is None:
            pre_smoothing = default_smoothing(levels)
        self.pre_smoothing = _check_steps("smoothing", pre_smoothing, levels)
        if post_smoothing is None:
            post_smoothing = (0,) * levels
        self.post_smoothing = _check_steps("post_smoothing", post_smoothing, levels)
        if self.pre_smoothing[0] < 1:
            raise ValueError(
                "smoothing needs at least 1 step at the finest level (u = S(f)); "
                f"got {list(self.pre_smoothing)}"
            )
        if self.post_smoothing[-1] != 0:
            raise ValueError(
                "post_smoothing must be 0 at the coarsest level (nothing comes back up to it); "
                f"got {list(self.post_smoothing)}"
            )
        self.padding_mode = check_padding_mode(padding_mode)

        u_ch, f_ch = out_channels, in_channels

        def steps(count: int, first: bool = False) -> nn.ModuleList:
            return nn.ModuleList(
                SmoothingStep(u_ch, f_ch, padding_mode, bias, first=first and i == 0)
                for i in range(count)
            )

        self.pre = nn.ModuleList(
            steps(count, first=level == 0) for level, count in enumerate(self.pre_smoothing)
        )
        self.post = nn.ModuleList(steps(count) for count in self.post_smoothing[:-1])
        self.restrict = nn.ModuleList(
            Restriction(u_ch, f_ch, padding_mode, residual_restriction, bias)
            for _ in range(levels - 1)
        )
        self.prolong = nn.ModuleList(Prolongation(u_ch, padding_mode) for _ in range(levels - 1))
        self.norms = nn.ModuleList(
            nn.GroupNorm(1, u_ch) if normalize else nn.Identity() for _ in range(levels - 1)
        )

    def forward(self, f: Tensor) -> Tensor:
        check_grid_input(f, self.in_channels, self.levels, "VCycle")
        u: Tensor | None = None
        down: list[tuple[Tensor, Tensor]] = []
        for level in range(self.levels):
            if level > 0:
                assert u is not None
                u, f = self.restrict[level - 1](u, f)
            for step in self.pre[level]:
                u = step(u, f)
            assert u is not None
            down.append((u, f))
        for level in range(self.levels - 2, -1, -1):
            fine_u, fine_f = down[level]
            u = fine_u + self.prolong[level](u, fine_u.shape[-2:])
            u = self.norms[level](u)
            for step in self.post[level]:
                u = step(u, fine_f)
        assert u is not None
        return u
