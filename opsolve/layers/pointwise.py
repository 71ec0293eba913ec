"""A 1x1 convolution computed as one matrix product.

:class:`Pointwise` maps ``(B, C_in, *grid) -> (B, C_out, *grid)`` for grids of any dimension
with the parameters of ``torch.nn.ConvNd(C_in, C_out, kernel_size=1)``: the same names, shapes
(``weight (C_out, C_in, 1, ..., 1)``, ``bias (C_out,)``) and initialization (it draws them by
building that convolution), so state dicts load either way. Why: on the CPU, torch's 1x1
convolution goes through oneDNN's general convolution and costs several times a batched matrix
product at the widths of the operators here (``benchmarks/RESULTS.md``, the observer's cost per
step); on a GPU both are one cuBLAS / cuDNN call.
"""

from __future__ import annotations

import torch
from torch import nn

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


class Pointwise(nn.Module):
    """``y[b, o, x] = sum_i W[o, i] v[b, i, x] + bias[o]`` at every grid point ``x``.

    ``ndim`` is the grid's dimension (1 to 3); input ``(B, in_channels, *grid)``, output
    ``(B, out_channels, *grid)``, channels first.
    """

    def __init__(self, ndim: int, in_channels: int, out_channels: int, bias: bool = True) -> None:
        super().__init__()
        if ndim not in _CONV:
            raise ValueError(f"ndim must be 1, 2 or 3, got {ndim!r}")
        conv = _CONV[ndim](in_channels, out_channels, kernel_size=1, bias=bias)
        self.weight = conv.weight
        self.bias = conv.bias
        self.in_channels = in_channels
        self.out_channels = out_channels

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        # one batched product over the samples, (O, I) @ (I, N) each: no transposed copies of
        # the field, which torch.matmul makes when it folds the batch into the rows
        matrix = self.weight.view(1, self.out_channels, self.in_channels)
        matrix = matrix.expand(v.shape[0], -1, -1)
        if self.bias is None:
            y = torch.bmm(matrix, v.flatten(2))
        else:
            y = torch.baddbmm(self.bias.view(1, -1, 1), matrix, v.flatten(2))
        return y.view(v.shape[0], self.out_channels, *v.shape[2:])

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, bias={self.bias is not None}"
