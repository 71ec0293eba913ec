import io
import json

import pytest
import torch
from torch import nn

from opsolve.layers.multigrid import Prolongation, VCycle, level_sizes, min_grid_size
from opsolve.models.mgno import DARCY_ROUGH, DARCY_SMOOTH, NAVIER_STOKES, MgNO


def small(**overrides):
    """A fast model: the official levels and smoothing, few channels and layers."""
    return MgNO(**{"width": 4, "num_layers": 2, **overrides})


@pytest.mark.parametrize(
    "size", [(85, 85), (211, 211), (256, 256), (64, 64), (63, 63), (97, 97), (85, 64), (33, 40)]
)
def test_darcy_output_shape_for_odd_and_even_sizes(size):
    torch.manual_seed(0)
    model = small()
    with torch.no_grad():
        y = model(torch.randn(2, 1, *size))
    assert y.shape == (2, 1, *size)
    assert torch.isfinite(y).all()


def test_level_sizes_and_minimum():
    assert level_sizes(211, 6) == [211, 106, 53, 27, 14, 7]
    assert level_sizes(85, 6) == [85, 43, 22, 11, 6, 3]
    assert min_grid_size(6) == 33 and min_grid_size(1) == 2


def test_official_rough_parameter_count():
    # Same count as the official MgNO_DC(num_layer=4, num_channel_u=24,
    # num_iteration=[[1,0]]*5+[[2,0]]), the paper's "0.57 M".
    model = MgNO(**DARCY_ROUGH)
    assert sum(p.numel() for p in model.parameters()) == 572_661
    assert model.config["smoothing"] == [1, 1, 1, 1, 1, 2]
    assert MgNO(levels=4).config["smoothing"] == [1, 1, 1, 2]  # default pattern per level
    # The defaults are the rough setting.
    assert sum(p.numel() for p in MgNO().parameters()) == 572_661
    # Smooth setting: one more layer, always 4x4 prolongation kernels.
    assert sum(p.numel() for p in MgNO(**DARCY_SMOOTH).parameters()) == 738_573


@pytest.mark.parametrize("variant", ["darcy", "navier_stokes"])
def test_circular_model_commutes_with_shifts_of_coarsest_spacing(variant):
    torch.manual_seed(1)
    model = small(levels=4, padding_mode="circular", variant=variant, bias=True).double()
    x = torch.randn(2, 1, 32, 48, dtype=torch.float64)
    with torch.no_grad():
        y = model(x)
        for shift in [(8, 16), (-8, 24), (24, 8)]:
            y_shift = model(torch.roll(x, shift, dims=(-2, -1)))
            torch.testing.assert_close(
                y_shift, torch.roll(y, shift, dims=(-2, -1)), rtol=0, atol=1e-12
            )
        # Not trivially equivariant: a shift of one fine cell is not (strided restriction).
        y_one = model(torch.roll(x, (1, 0), dims=(-2, -1)))
        assert (y_one - torch.roll(y, (1, 0), dims=(-2, -1))).abs().max() > 1e-6


def test_circular_float32_equivariance_official_levels():
    torch.manual_seed(2)
    model = small(padding_mode="circular")
    x = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        y_shift = model(torch.roll(x, (32, -32), dims=(-2, -1)))
        expected = torch.roll(model(x), (32, -32), dims=(-2, -1))
    torch.testing.assert_close(y_shift, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("fine", [16, 15])
def test_zero_prolongation_is_the_official_transposed_conv_cropped(fine):
    torch.manual_seed(3)
    prolong = Prolongation(3, "zeros").double()
    coarse = torch.randn(2, 3, (fine + 1) // 2, (fine + 1) // 2, dtype=torch.float64)
    official = prolong.RT(coarse)  # kernel 4, stride 2, padding 1: size 2 * coarse
    torch.testing.assert_close(prolong(coarse, (fine, fine)), official[..., :fine, :fine])


def test_circular_prolongation_is_periodic():
    torch.manual_seed(4)
    prolong = Prolongation(2, "circular").double()
    coarse = torch.randn(1, 2, 8, 6, dtype=torch.float64)
    fine = prolong(coarse, (16, 12))
    shifted = prolong(torch.roll(coarse, (1, -1), (-2, -1)), (16, 12))
    torch.testing.assert_close(shifted, torch.roll(fine, (2, -2), (-2, -1)))
    # Wrapping reaches across the border: it differs from the zero-padded version there.
    zeros = Prolongation(2, "zeros").double()
    zeros.load_state_dict(prolong.state_dict())
    assert (zeros(coarse, (16, 12))[..., 0, :] - fine[..., 0, :]).abs().max() > 1e-6


@pytest.mark.parametrize("mode", ["zeros", "circular", "reflect", "replicate"])
def test_vcycle_is_linear_for_every_padding_mode(mode):
    torch.manual_seed(5)
    vcycle = VCycle(
        2, 3, levels=3, pre_smoothing=[1, 2, 1], post_smoothing=[1, 1, 0], padding_mode=mode
    ).double()
    f1, f2 = torch.randn(2, 1, 2, 19, 20, dtype=torch.float64)
    with torch.no_grad():
        out = vcycle(f1 + 2.0 * f2)
        assert out.shape == (1, 3, 19, 20)
        torch.testing.assert_close(out, vcycle(f1) + 2.0 * vcycle(f2))


def test_checkpoint_round_trip_reproduces_outputs():
    torch.manual_seed(6)
    model = small(
        levels=4,
        smoothing=[2, 1, 0, 2],
        post_smoothing=[1, 0, 1, 0],
        padding_mode="reflect",
        activation="silu",
        bias=True,
        residual_restriction=True,
    )
    buffer = io.BytesIO()
    torch.save(
        {"config": json.loads(json.dumps(model.config)), "state": model.state_dict()}, buffer
    )
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    rebuilt = MgNO.from_config(checkpoint["config"])
    rebuilt.load_state_dict(checkpoint["state"])
    assert rebuilt.config == model.config
    x = torch.randn(2, 1, 37, 30)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))


@pytest.mark.parametrize("size", [64, 128])
def test_navier_stokes_output_is_last_layer_plus_input(size):
    torch.manual_seed(7)
    model = MgNO(**{**NAVIER_STOKES, "width": 4, "num_layers": 2})
    assert model.skips is None
    assert any(isinstance(m, nn.GroupNorm) for m in model.modules())
    x = torch.randn(2, 1, size, size)
    with torch.no_grad():
        y = model(x)
        assert y.shape == x.shape
        hidden = x
        for vcycle in model.vcycles:
            hidden = model.act(vcycle(hidden))
        torch.testing.assert_close(y, model.project(hidden) + x)
        model.project.weight.zero_()
        assert torch.equal(model(x), x)


def test_navier_stokes_official_parameter_count():
    # Official MgNO_NS has 2,885,194, of which 1,740,800 are per-pixel LayerNorm affines
    # tied to 64x64; GroupNorm(1, C) has 2 * 32 per norm (4 norms x 5 layers).
    model = MgNO(**NAVIER_STOKES)
    assert sum(p.numel() for p in model.parameters()) == 2_885_194 - 1_740_800 + 5 * 4 * 64


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"width": 0}, "width must be an integer >= 1"),
        ({"width": -3}, "width must be an integer >= 1"),
        ({"num_layers": 0}, "num_layers must be an integer >= 1"),
        ({"levels": 0}, "levels must be an integer >= 1"),
        ({"padding_mode": "periodic"}, "zeros, circular, reflect, replicate"),
        ({"activation": "swish"}, "gelu, relu, tanh, silu"),
        ({"variant": "fno"}, "darcy, navier_stokes"),
        ({"smoothing": [1, 1, 2]}, r"one entry per level \(6\)"),
        ({"smoothing": [0, 1, 1, 1, 1, 2]}, "at least 1 step at the finest level"),
        ({"smoothing": [1, -1, 1, 1, 1, 2]}, "integers >= 0"),
        ({"smoothing": 2}, "smoothing must be a list of 6 step counts"),
        ({"post_smoothing": [0, 0, 0, 0, 0, 1]}, "0 at the coarsest level"),
        ({"variant": "navier_stokes", "out_channels": 2}, "out_channels must equal"),
        ({"bias": "yes"}, "bias must be true or false"),
    ],
)
def test_bad_construction_is_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MgNO(**kwargs)


def test_bad_config_key_is_refused():
    with pytest.raises(ValueError, match="unknown MgNO config key.*num_channel_u"):
        MgNO.from_config({"num_channel_u": 24})


@pytest.mark.parametrize(
    "shape, match",
    [
        ((2, 3, 64, 64), r"MgNO expects input \(batch, 1, H, W\); got \(2, 3, 64, 64\)"),
        ((1, 64, 64), r"MgNO expects input \(batch, 1, H, W\); got \(1, 64, 64\)"),
        ((2, 1, 32, 64), "levels=6 needs H and W >= 33.*got 32 x 64"),
    ],
)
def test_bad_input_is_refused(shape, match):
    model = small()
    with pytest.raises(ValueError, match=match):
        model(torch.randn(*shape))


def test_integer_input_is_refused():
    with pytest.raises(ValueError, match="floating-point"):
        small()(torch.ones(1, 1, 40, 40, dtype=torch.int64))
