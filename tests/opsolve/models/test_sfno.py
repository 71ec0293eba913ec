"""SpaceTimeFNO (SFNO of the Spectral-Refiner paper) and the FNO-3D baseline."""

import math

import pytest
import torch

from datagen.core.errors import UserError
from opsolve.layers.spectral import SpectralConv
from opsolve.models.registry import build_model
from opsolve.models.sfno import SpaceTimeFNO, space_time_features

SMALL = {"modes": [4, 4, 3], "width": 8, "n_layers": 3, "latent_steps": 6, "expansion": 16}


def smooth_trajectory(n: int, steps: int = 6, batch: int = 2) -> torch.Tensor:
    """Band-limited frames ``(batch, steps, n, n)`` (modes |k| <= 2)."""
    x = torch.arange(n) / n
    x, y = torch.meshgrid(x, x, indexing="ij")
    t = torch.arange(steps)[:, None, None] / steps
    frames = [
        torch.sin(2 * math.pi * (x + b * y) + t) + 0.5 * torch.cos(4 * math.pi * y - t)
        for b in range(batch)
    ]
    return torch.stack(frames)


@pytest.mark.parametrize("steps", [1, 2, 5, 6, 17, 40])
def test_any_number_of_output_steps(steps):
    torch.manual_seed(0)
    model = SpaceTimeFNO(**SMALL, output_steps=10)
    x = smooth_trajectory(16)
    assert model(x).shape == (2, 10, 16, 16)
    out = model(x, out_steps=steps)
    assert out.shape == (2, steps, 16, 16) and torch.isfinite(out).all()


def test_resolution_change_at_evaluation():
    torch.manual_seed(0)
    model = SpaceTimeFNO(**SMALL).eval()
    coarse, fine = smooth_trajectory(16), smooth_trajectory(32)
    with torch.no_grad():
        a, b = model(coarse, out_steps=8), model(fine, out_steps=8)
        c = model(smooth_trajectory(24)[:, :, :, :20], out_steps=3)  # non-square grids too
    assert b.shape == (2, 8, 32, 32) and c.shape == (2, 3, 24, 20)
    # the same function on a finer grid: the prediction agrees at the shared nodes up to the
    # nonlinearities' aliasing (measured 1.2e-3 relative)
    gap = (b[..., ::2, ::2] - a).norm() / a.norm()
    assert float(gap) < 0.05


def test_time_features_and_skip_connection():
    feats = space_time_features(2, (4, 6, 5), 4, 0.1, torch.zeros(1))
    assert feats.shape == (2, 7, 4, 6, 5)
    t = torch.arange(5) / 5
    torch.testing.assert_close(feats[0, 2, 1, 3], t)
    torch.testing.assert_close(feats[1, 4, 0, 0], torch.exp(0.1 * t) * torch.cos(math.pi * t))
    model = SpaceTimeFNO(**SMALL)
    with torch.no_grad():
        model.output_conv.mixer.weight.zero_()
    x = smooth_trajectory(16)
    torch.testing.assert_close(model(x, out_steps=3), x[:, -1:].expand(-1, 3, -1, -1))


@pytest.mark.parametrize("weight, extra", [("low_rank", {"rank": 2}), ("monarch", {"blocks": 4})])
def test_structured_spectral_weights(weight, extra):
    torch.manual_seed(0)
    wide = {**SMALL, "width": 16}
    dense = SpaceTimeFNO(**wide)
    model = SpaceTimeFNO(**wide, weight=weight, **extra)
    convs = [m for m in model.modules() if type(m) is SpectralConv]
    assert len(convs) == 3 and all(c.weight_kind == weight for c in convs)
    dense_convs = [m for m in dense.modules() if type(m) is SpectralConv]
    ours = sum(c.num_parameters() for c in convs)
    assert ours <= 0.5 * sum(c.num_parameters() for c in dense_convs)
    assert model(smooth_trajectory(16), out_steps=4).shape == (2, 4, 16, 16)


def test_config_round_trip_through_the_registry():
    torch.manual_seed(0)
    model = build_model("spacetime_fno", {**SMALL, "in_channels": 1, "input_steps": 6})
    again = SpaceTimeFNO.from_config(model.config)
    again.load_state_dict(model.state_dict())
    x = smooth_trajectory(16)
    torch.testing.assert_close(model(x, out_steps=7), again(x, out_steps=7))


def test_fno3d_baseline():
    torch.manual_seed(0)
    model = build_model(
        "fno3d",
        {"modes": [4, 4, 3], "width": 8, "n_layers": 2, "input_steps": 6, "output_steps": 9},
    )
    x = smooth_trajectory(16)
    assert model(x).shape == (2, 9, 16, 16)
    assert model(smooth_trajectory(32), out_steps=4).shape == (2, 4, 32, 32)
    with pytest.raises(ValueError, match="expects \\(batch, 6, x, y\\)"):
        model(x[:, :5])


@pytest.mark.parametrize(
    "params, call, message",
    [
        ({"modes": [9, 4, 3]}, None, "too large for input \\(x, y, t\\) grid \\(16, 16, 6\\)"),
        ({"modes": [4, 4, 5]}, None, "too large for latent time grid"),
        ({"input_steps": 4, "modes": [4, 4, 4], "latent_steps": 8}, None, "input time grid"),
        ({"weight": "monarch", "blocks": 3}, None, "blocks"),
        ({"weight": "butterfly"}, None, "unknown spectral weight 'butterfly'; allowed: dense"),
        ({"modes": [4, 4]}, None, "three positive integers"),
        ({"activation": "swish"}, None, "unknown activation 'swish'"),
        ({"input_steps": 5}, "x", "built for 5 input frames, got 6"),
        ({}, "rank3", "expects trajectories \\(batch, time, x, y\\)"),
    ],
)
def test_bad_input_is_one_line(params, call, message):
    with pytest.raises(ValueError, match=message) as err:
        model = SpaceTimeFNO(**{**SMALL, **params})
        x = smooth_trajectory(16)
        model(x[0] if call == "rank3" else x)
    assert "\n" not in str(err.value)


def test_bad_params_through_the_registry_are_user_errors():
    with pytest.raises(UserError, match="model.params: cannot build 'spacetime_fno'"):
        build_model("spacetime_fno", {"depth": 3})
