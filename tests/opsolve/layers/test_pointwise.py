"""The 1x1 convolution as a matrix product: the same map, parameters and state dict as ConvNd."""

import pytest
import torch
from torch import nn

from opsolve.layers.pointwise import Pointwise

CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
GRIDS = {1: (17,), 2: (9, 6), 3: (5, 4, 3)}


@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("bias", [True, False])
def test_equals_the_convolution_and_loads_its_state(ndim: int, bias: bool) -> None:
    torch.manual_seed(0)
    conv = CONV[ndim](5, 3, kernel_size=1, bias=bias).double()
    torch.manual_seed(0)
    point = Pointwise(ndim, 5, 3, bias).double()
    # same draws from the same seed: the initialization is the convolution's
    for (name, p), (conv_name, q) in zip(
        point.named_parameters(), conv.named_parameters(), strict=True
    ):
        assert name == conv_name and torch.equal(p, q)
    other = CONV[ndim](5, 3, kernel_size=1, bias=bias).double()
    point.load_state_dict(other.state_dict())
    v = torch.randn(4, 5, *GRIDS[ndim], dtype=torch.float64)
    torch.testing.assert_close(point(v), other(v), rtol=1e-12, atol=1e-12)
    other.load_state_dict(point.state_dict())


def test_gradients_equal_the_convolution() -> None:
    torch.manual_seed(1)
    conv = nn.Conv2d(4, 6, kernel_size=1).double()
    point = Pointwise(2, 4, 6).double()
    point.load_state_dict(conv.state_dict())
    v = torch.randn(3, 4, 7, 5, dtype=torch.float64)
    target = torch.randn(3, 6, 7, 5, dtype=torch.float64)
    for module in (conv, point):
        ((module(v) - target) ** 2).sum().backward()
    torch.testing.assert_close(point.weight.grad, conv.weight.grad)
    torch.testing.assert_close(point.bias.grad, conv.bias.grad)


def test_non_contiguous_input_and_bad_dimension() -> None:
    point = Pointwise(2, 3, 2)
    v = torch.randn(2, 8, 8, 3).permute(0, 3, 1, 2)  # channels-last memory
    torch.testing.assert_close(point(v), point(v.contiguous()))
    with pytest.raises(ValueError, match="ndim must be 1, 2 or 3"):
        Pointwise(4, 3, 2)
