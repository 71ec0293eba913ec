"""LSM, the Latent Spectral Model: a U-Net with a Neural Spectral Block at every scale.

Reference: H. Wu, T. Hu, H. Luo, J. Wang, M. Long, "Solving High-Dimensional PDEs with Latent
Spectral Models", ICML 2023 (public code: thuml/Latent-Spectral-Models, ``models/LSM_2D.py``,
``LSM_3D.py``; thuml/Neural-Solver-Library, ``models/LSM.py``).

Layout (channels first, ``d = 2`` or ``3`` space axes):

1. **Lifting.** The input channels and the grid coordinates (``linspace(0, 1)`` per axis) are
   mapped per point by ``Linear(in + d -> w)``; the field is padded at the end of each axis to
   a multiple of 16.
2. **U-Net** of five scales, widths ``w, 2w, 4w, 8w, 8w``: ``DoubleConv`` = [3^d conv without
   bias, norm, ReLU] x 2; each step down a max-pool by 2 and a ``DoubleConv``; each step up a
   (bi/tri)linear upsampling by 2 (``align_corners``), the skip concatenated first, and a
   ``DoubleConv(in, out, mid = in / 2)``; a 1x1 conv ``w -> w`` at the end.
3. **Neural Spectral Blocks** (:class:`NeuralSpectralBlock`) on the features of every scale
   before the decoder reads them (the decoder consumes the blocks' outputs, also as skips).
4. **Head.** The padding is cropped, then ``Linear(w -> 128)``, GELU, ``Linear(128 -> out)``.

Conventions, and where they differ from the public code (deliberately):

* ``padding`` and ``patch`` are per axis in the order of the tensor's axes (``x, y[, z]``);
  the public ``--padding`` lists them in reverse order. The padding goes at the end of each
  axis. Defaults: the smallest padding that makes every axis a multiple of 16, and
  ``patch = padded / 16`` (the coarsest feature map is one patch).
* The crop keeps the first ``n`` points of each axis, which is right when some axes are not
  padded (the public ``x[..., :-p1, :-p0]`` is empty when exactly one padding is 0).
* The basis frequencies are a buffer of the module (the public code builds them as a plain
  tensor placed on the GPU: it needs a GPU, is not moved by ``.to()`` and not rebuilt from
  the state dict). The module runs on any device: everything follows its parameters and the
  input.
* The number of heads is a parameter (8, as published); the width must be divisible by it.
* ``norm``: ``batch`` (the original, for steady problems) or ``instance`` (affine, as the
  Neural-Solver-Library uses for time-dependent problems).

Published settings: Darcy (85^2 padded by 11 to 96, patch 6, w 64, 1 input channel) and
Navier-Stokes (64^2, no padding, patch 4, w 64, 10 input frames); the parameter counts of both
equal the public model's exactly (``tests/opsolve/models/test_lsm.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

DARCY: dict[str, Any] = {"width": 64, "num_basis": 12, "num_tokens": 4, "heads": 8}
"""Official Darcy model (``exp_darcy.py``: 85^2 padded by 11, patch 6)."""

LEVELS = 5  # scales of the U-Net; the padded size is a multiple of 2 ** (LEVELS - 1)
MULTIPLE = 2 ** (LEVELS - 1)

_CONV = {2: nn.Conv2d, 3: nn.Conv3d}
_POOL = {2: nn.MaxPool2d, 3: nn.MaxPool3d}
_BATCH_NORM = {2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_INSTANCE_NORM = {2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}
_UPSAMPLE = {2: "bilinear", 3: "trilinear"}
NORMS = ("batch", "instance")


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def _per_axis(name: str, value: Any, dims: int, low: int) -> tuple[int, ...] | None:
    """``None``, one integer for every axis, or one per axis; each ``>= low``."""
    if value is None:
        return None
    values = [value] * dims if isinstance(value, int) and not isinstance(value, bool) else value
    if (
        not isinstance(values, list | tuple)
        or len(values) != dims
        or any(isinstance(v, bool) or not isinstance(v, int) or v < low for v in values)
    ):
        raise ValueError(f"{name} must be an integer >= {low} or {dims} of them, got {value!r}")
    return tuple(values)


def default_padding(grid: Sequence[int]) -> tuple[int, ...]:
    """The smallest end padding per axis that makes every axis a multiple of 16 (85 -> 11)."""
    return tuple(-n % MULTIPLE for n in grid)


def patch_layout(
    grid: Sequence[int],
    padding: Sequence[int] | None = None,
    patch: Sequence[int] | None = None,
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(padding, patch)`` for a grid: the defaults filled in, the sizes checked.

    The padded size of each axis must be a multiple of 16 (four halvings), and the patch must
    fit in the coarsest feature map (``padded / 16``) and divide it, so that every scale cuts
    into whole patches. Raises ``ValueError`` naming the axis otherwise.
    """
    padding = tuple(padding) if padding is not None else default_padding(grid)
    padded = [n + p for n, p in zip(grid, padding, strict=True)]
    for axis, size in enumerate(padded):
        if size % MULTIPLE:
            raise ValueError(
                f"axis {axis}: {grid[axis]} + padding {padding[axis]} = {size} is not a "
                f"multiple of {MULTIPLE}; pad to {size + -size % MULTIPLE} (or leave padding unset)"
            )
    coarsest = tuple(size // MULTIPLE for size in padded)
    patch = tuple(patch) if patch is not None else coarsest
    for axis, (p, c) in enumerate(zip(patch, coarsest, strict=True)):
        if p > c:
            raise ValueError(
                f"patch {list(patch)} is larger than the coarsest feature map {list(coarsest)} "
                f"(axis {axis}: {p} > {c}); at most {list(coarsest)}"
            )
        if c % p:
            raise ValueError(
                f"patch {list(patch)} does not divide the coarsest feature map {list(coarsest)} "
                f"(axis {axis}); a divisor of {c}"
            )
    return padding, patch


def grid_coordinates(batch: int, grid: Sequence[int], like: Tensor) -> Tensor:
    """``(batch, d, *grid)``: ``linspace(0, 1, n)`` along each axis (end points included)."""
    axes = [torch.linspace(0.0, 1.0, n, dtype=like.dtype, device=like.device) for n in grid]
    mesh = torch.stack(torch.meshgrid(*axes, indexing="ij"))
    return mesh[None].expand(batch, *mesh.shape)


def patchify(x: Tensor, patch: Sequence[int]) -> Tensor:
    """``(B, C, *space)`` -> ``(B * n_patches, C, *patch)``: non-overlapping patches, ordered
    patch index first along each axis (row-major)."""
    batch, channels, *space = x.shape
    dims = len(space)
    counts = [n // p for n, p in zip(space, patch, strict=True)]
    split = [batch, channels] + [v for pair in zip(counts, patch, strict=True) for v in pair]
    order = [0, *(2 + 2 * i for i in range(dims)), 1, *(3 + 2 * i for i in range(dims))]
    return x.reshape(split).permute(order).reshape(-1, channels, *patch)


def unpatchify(x: Tensor, space: Sequence[int]) -> Tensor:
    """Inverse of :func:`patchify`: ``(B * n_patches, C, *patch)`` -> ``(B, C, *space)``."""
    channels, *patch = x.shape[1:]
    dims = len(patch)
    counts = [n // p for n, p in zip(space, patch, strict=True)]
    x = x.reshape(-1, *counts, channels, *patch)
    order = [0, dims + 1] + [v for i in range(dims) for v in (1 + i, dims + 2 + i)]
    return x.permute(order).reshape(-1, channels, *space)


class NeuralSpectralBlock(nn.Module):
    """The Neural Spectral Block of LSM on one scale: ``(B, C, *space) -> (B, C, *space)``.

    The features are cut into patches (:func:`patchify`); per patch:

    1. **Encoder**: ``tokens`` learned latent tokens (queries, ``(heads, tokens, C / heads)``,
       shared by every patch) attend to the patch's pixels, whose keys and values are a 1x1
       conv ``C -> 2C``; ``softmax(Q K^T) V`` *without* the ``1 / sqrt(d)`` scale (as
       published), plus the queries (residual).
    2. **Transition**: per channel ``c`` each token value ``z`` becomes
       ``z + sum_k a_ck sin(k pi z / K) + b_ck cos(k pi z / K)``, ``k = 0 .. K - 1``; the
       basis acts on the values (a learned 1-D series), not on space.
    3. **Decoder**: the pixels (queries, a 1x1 conv ``C -> C``) read the tokens (keys = values),
       plus the pixels (residual).

    The patch size is an argument of :meth:`forward` (no parameter depends on it).

    Args:
        width: channels ``C`` (divisible by ``heads``).
        dims: 2 or 3 space axes.
        num_basis: ``K`` (12 published). num_tokens: latent tokens per patch (4).
        heads: attention heads (8).
    """

    def __init__(
        self,
        width: int,
        dims: int = 2,
        num_basis: int = 12,
        num_tokens: int = 4,
        heads: int = 8,
    ) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        self.width, self.heads, self.num_tokens = width, heads, num_tokens
        self.register_buffer(
            "frequencies",
            torch.arange(num_basis, dtype=torch.float32) / num_basis,
            persistent=False,
        )
        self.weights = nn.Parameter(torch.rand(width, 2 * num_basis) / width)
        self.latent = nn.Parameter(torch.rand(heads, num_tokens, width // heads) / width)
        self.encoder_attn = _CONV[dims](width, 2 * width, kernel_size=1)
        self.decoder_attn = _CONV[dims](width, width, kernel_size=1)

    def _heads(self, x: Tensor) -> Tensor:
        """``(N, C, L)`` -> ``(N, heads, L, C / heads)``."""
        n, channels, length = x.shape
        return x.reshape(n, self.heads, channels // self.heads, length).transpose(2, 3)

    def transition(self, tokens: Tensor) -> Tensor:
        """``(N, C, M) -> (N, C, M)``: the learned sin / cos series of each token value."""
        phase = math.pi * tokens[..., None] * self.frequencies
        basis = torch.cat([torch.sin(phase), torch.cos(phase)], dim=-1)  # (N, C, M, 2K)
        return torch.einsum("ncmk,ck->ncm", basis, self.weights) + tokens

    def forward(self, x: Tensor, patch: Sequence[int]) -> Tensor:
        """``(B, C, *space) -> (B, C, *space)``; ``patch`` divides ``space`` axis by axis."""
        space = x.shape[2:]
        patches = patchify(x, patch)  # (N, C, *patch)
        n, channels = patches.shape[:2]
        keys, values = self.encoder_attn(patches).flatten(2).chunk(2, dim=1)  # (N, C, L) each
        queries = self.latent.expand(n, *self.latent.shape)  # (N, heads, M, C / heads)
        tokens = (
            F.scaled_dot_product_attention(
                queries, self._heads(keys), self._heads(values), scale=1.0
            )
            + queries
        )
        tokens = tokens.transpose(2, 3).reshape(n, channels, self.num_tokens)  # (N, C, M)
        tokens = self._heads(self.transition(tokens))  # (N, heads, M, C / heads)
        pixels = self._heads(self.decoder_attn(patches).flatten(2))  # (N, heads, L, C / heads)
        read = F.scaled_dot_product_attention(pixels, tokens, tokens, scale=1.0)
        read = read.transpose(2, 3).reshape(patches.shape) + patches
        return unpatchify(read, space)


def _norm(kind: str, dims: int, channels: int) -> nn.Module:
    if kind == "batch":
        return _BATCH_NORM[dims](channels)
    return _INSTANCE_NORM[dims](channels, affine=True)


def double_conv(dims: int, c_in: int, c_out: int, norm: str, mid: int | None = None) -> nn.Module:
    """[3^d conv without bias, norm, ReLU] x 2: ``c_in -> mid -> c_out``."""
    mid = mid or c_out
    conv = _CONV[dims]
    return nn.Sequential(
        conv(c_in, mid, kernel_size=3, padding=1, bias=False),
        _norm(norm, dims, mid),
        nn.ReLU(inplace=True),
        conv(mid, c_out, kernel_size=3, padding=1, bias=False),
        _norm(norm, dims, c_out),
        nn.ReLU(inplace=True),
    )


class LSM(nn.Module):
    """Latent Spectral Model (Wu et al., ICML 2023), 2-D or 3-D.

    Shapes: ``(batch, in_channels, *space) -> (batch, out_channels, *space)`` with
    ``len(space) == dims``, any sizes (padded to multiples of 16 inside, see the module
    docstring for ``padding`` and ``patch``).

    Args:
        in_channels, out_channels: field channels in and out.
        width: ``w``, channels of the finest scale (64 published for Darcy and NS).
        dims: 2 or 3 space axes.
        num_basis: ``K`` of the spectral transition (12). num_tokens: tokens per patch (4).
        heads: attention heads (8).
        padding: end padding per axis (``None``: to the next multiple of 16).
        patch: patch size per axis (``None``: padded size / 16).
        norm: ``batch`` or ``instance``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        width: int = 64,
        dims: int = 2,
        num_basis: int = 12,
        num_tokens: int = 4,
        heads: int = 8,
        padding: int | Sequence[int] | None = None,
        patch: int | Sequence[int] | None = None,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        if dims not in (2, 3):
            raise ValueError(f"dims must be 2 or 3, got {dims!r}")
        for name, value in (
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("width", width),
            ("num_basis", num_basis),
            ("num_tokens", num_tokens),
            ("heads", heads),
        ):
            _positive_int(name, value)
        if width % heads:
            raise ValueError(f"width {width} is not divisible by heads {heads}")
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
        self.padding = _per_axis("padding", padding, dims, 0)
        self.patch = _per_axis("patch", patch, dims, 1)
        self.in_channels, self.out_channels, self.dims = in_channels, out_channels, dims
        self.config: dict[str, Any] = {
            "in_channels": in_channels,
            "out_channels": out_channels,
            "width": width,
            "dims": dims,
            "num_basis": num_basis,
            "num_tokens": num_tokens,
            "heads": heads,
            "padding": None if self.padding is None else list(self.padding),
            "patch": None if self.patch is None else list(self.patch),
            "norm": norm,
        }
        widths = [width, 2 * width, 4 * width, 8 * width, 8 * width]
        self.lift = nn.Linear(in_channels + dims, width)
        self.encoder = nn.ModuleList([double_conv(dims, width, width, norm)])
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            self.encoder.append(nn.Sequential(_POOL[dims](2), double_conv(dims, c_in, c_out, norm)))
        # decoder, coarsest first: input = skip (widths[i]) + upsampled (widths[i + 1] or out)
        ups = [
            (16 * width, 4 * width),
            (8 * width, 2 * width),
            (4 * width, width),
            (2 * width, width),
        ]
        self.decoder = nn.ModuleList(
            [double_conv(dims, c_in, c_out, norm, mid=c_in // 2) for c_in, c_out in ups]
        )
        self.out_conv = _CONV[dims](width, width, kernel_size=1)
        self.blocks = nn.ModuleList(
            [NeuralSpectralBlock(c, dims, num_basis, num_tokens, heads) for c in widths]
        )
        self.head = nn.Sequential(nn.Linear(width, 128), nn.GELU(), nn.Linear(128, out_channels))

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> LSM:
        """Build from a config dict (``model.params`` or :attr:`config`)."""
        return cls(**config)

    def layout(self, grid: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """``(padding, patch)`` this model uses on ``grid`` (``ValueError`` if it cannot)."""
        padding, patch = patch_layout(grid, self.padding, self.patch)
        coarsest = [(n + p) // MULTIPLE for n, p in zip(grid, padding, strict=True)]
        if self.config["norm"] == "instance" and math.prod(coarsest) == 1:
            raise ValueError(
                f"instance norm needs more than one point on the coarsest map, which is 1 "
                f"point for the {' x '.join(map(str, grid))} grid padded by {list(padding)}; "
                f"pad to 32 on an axis (padding) or use norm batch"
            )
        return padding, patch

    def forward(self, x: Tensor) -> Tensor:
        """``(batch, in_channels, *space) -> (batch, out_channels, *space)``."""
        if x.dim() != self.dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"LSM expects (batch, {self.in_channels}, {', '.join('xyz'[: self.dims])}), "
                f"got {tuple(x.shape)}"
            )
        grid = tuple(x.shape[2:])
        padding, patch = self.layout(grid)
        features = torch.cat([x, grid_coordinates(x.shape[0], grid, x)], dim=1)
        h = self.lift(features.movedim(1, -1)).movedim(-1, 1)
        h = F.pad(h, [v for p in reversed(padding) for v in (0, p)])
        skips = []
        for down, block in zip(self.encoder, self.blocks, strict=True):
            h = down(h)
            skips.append(block(h, patch))
        h = skips.pop()
        for up in self.decoder:
            skip = skips.pop()
            h = F.interpolate(h, size=skip.shape[2:], mode=_UPSAMPLE[self.dims], align_corners=True)
            h = up(torch.cat([skip, h], dim=1))
        h = self.out_conv(h)
        h = h[(..., *(slice(0, n) for n in grid))]
        return self.head(h.movedim(1, -1)).movedim(-1, 1)
