"""LSM (Wu et al., ICML 2023): shapes on any grid, the crop, 3-D, device-free construction, the
public parameter counts, checkpoints, training and bad input."""

import io
import json

import pytest
import torch

from datagen.core.errors import UserError
from opsolve.models.lsm import (
    LSM,
    NeuralSpectralBlock,
    default_padding,
    patch_layout,
    patchify,
    unpatchify,
)
from opsolve.models.registry import build_model, count_parameters


@pytest.mark.parametrize("grid", [(85, 85), (64, 64), (211, 211), (421, 421), (221, 51)])
def test_output_shapes_on_any_grid(grid):
    model = LSM(2, 3, width=8).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 2, *grid))
    assert out.shape == (1, 3, *grid)
    assert torch.isfinite(out).all()


def test_default_layout_is_the_published_one():
    assert patch_layout((85, 85)) == ((11, 11), (6, 6))  # Darcy
    assert patch_layout((64, 64)) == ((0, 0), (4, 4))  # Navier-Stokes
    assert patch_layout((221, 51)) == ((3, 13), (14, 4))  # Airfoil: 224 x 64, patch 14 x 4
    assert patch_layout((129, 129)) == ((15, 15), (9, 9))  # Pipe: 144, patch 9
    assert patch_layout((101, 31, 20)) == ((11, 1, 12), (7, 2, 2))  # Plasticity
    assert default_padding((16, 17)) == (0, 15)


def test_the_crop_keeps_the_first_points_when_one_axis_is_unpadded():
    """64 x 60: only the second axis is padded (to 64); the head reads exactly the first
    64 x 60 points of the last feature map (the public crop ``x[..., :-0, :-4]`` is empty)."""
    model = LSM(1, 1, width=8).eval()
    seen = {}
    model.out_conv.register_forward_hook(lambda _m, _i, out: seen.setdefault("h", out))
    x = torch.randn(2, 1, 64, 60)
    with torch.no_grad():
        out = model(x)
        assert seen["h"].shape[2:] == (64, 64)
        expected = model.head(seen["h"][:, :, :64, :60].movedim(1, -1)).movedim(-1, 1)
    assert out.shape == (2, 1, 64, 60)
    torch.testing.assert_close(out, expected)


def test_a_three_dimensional_case():
    model = LSM(2, 1, width=8, dims=3, norm="instance").eval()
    with torch.no_grad():
        out = model(torch.randn(2, 2, 20, 17, 9))
    assert out.shape == (2, 1, 20, 17, 9)
    padding, patch = model.layout((20, 17, 9))
    assert padding == (12, 15, 7) and patch == (2, 2, 1)


def test_patches_round_trip_and_are_contiguous_blocks():
    x = torch.arange(2 * 3 * 8 * 12, dtype=torch.float32).reshape(2, 3, 8, 12)
    patches = patchify(x, (4, 3))
    assert patches.shape == (2 * 2 * 4, 3, 4, 3)
    torch.testing.assert_close(patches[1], x[0, :, 0:4, 3:6])  # second patch of row 0
    torch.testing.assert_close(patches[4], x[0, :, 4:8, 0:3])  # first patch of row 1
    torch.testing.assert_close(unpatchify(patches, (8, 12)), x)
    cube = torch.randn(1, 2, 4, 6, 8)
    torch.testing.assert_close(unpatchify(patchify(cube, (2, 3, 4)), (4, 6, 8)), cube)


def test_the_block_is_the_published_attention_without_scaling():
    """One patch, one head: tokens = softmax(L K^T) V + L, the sin / cos series, then
    pixels + softmax(Q T^T) T, written out with plain matrix products."""
    torch.manual_seed(3)
    block = NeuralSpectralBlock(4, dims=2, num_basis=3, num_tokens=2, heads=1)
    x = torch.randn(1, 4, 2, 2)
    pixels = x.flatten(2)[0].T  # (L, C)
    keys, values = block.encoder_attn(x).flatten(2)[0].chunk(2)  # (C, L) each
    latent = block.latent[0]  # (M, C)
    tokens = torch.softmax(latent @ keys, dim=-1) @ values.T + latent  # (M, C)
    k = torch.arange(3) / 3
    phase = torch.pi * tokens[..., None] * k
    series = torch.cat([torch.sin(phase), torch.cos(phase)], -1)  # (M, C, 2K)
    tokens = (series * block.weights).sum(-1) + tokens
    queries = block.decoder_attn(x).flatten(2)[0].T  # (L, C)
    expected = torch.softmax(queries @ tokens.T, dim=-1) @ tokens + pixels
    out = block(x, (2, 2))
    torch.testing.assert_close(out.flatten(2)[0].T, expected)


def test_runs_on_cpu_without_cuda(monkeypatch):
    """Nothing is built on a GPU: with CUDA hidden and ``Tensor.cuda`` refusing, the model builds,
    runs, moves to float64 with its basis frequencies, and saves them nowhere."""

    def refuse(*_args, **_kwargs):
        raise AssertionError("CUDA touched")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.Tensor, "cuda", refuse)
    model = LSM(1, 1, width=8).double().eval()
    assert all(b.frequencies.dtype == torch.float64 for b in model.blocks)
    assert not any("frequencies" in key for key in model.state_dict())
    with torch.no_grad():
        assert model(torch.randn(1, 1, 33, 33, dtype=torch.float64)).dtype == torch.float64


def test_parameter_counts_equal_the_public_models():
    """The public counts were taken by running thuml/Latent-Spectral-Models (commit 4af9567,
    ``models/LSM_2D.py``) on a CPU with its one GPU placement (of ``modes_list``) removed:
    ``LSM2d(in_channels=1, out_channels=1, width=64, patch_size=[6, 6], num_basis=12,
    num_token=4, padding=[11, 11])`` (Darcy, exp_darcy.py) has 19,187,457 parameters, and with
    ``in_channels=10, patch_size=[4, 4], padding=[0, 0]`` (Navier-Stokes, exp_ns.py)
    19,188,033, by ``sum(p.numel() for p in model.parameters())``."""
    darcy = LSM(1, 1, width=64, padding=11, patch=6)
    assert count_parameters(darcy) == 19_187_457
    ns = build_model("lsm_trajectory", {"input_steps": 10, "output_steps": 10, "patch": 4})
    assert count_parameters(ns) == 19_188_033


def test_checkpoint_round_trip_gives_identical_outputs():
    torch.manual_seed(1)
    model = LSM(2, 1, width=8, num_basis=5, num_tokens=3, heads=4, padding=[3, 0])
    model.train()
    model(torch.randn(4, 2, 45, 48))  # moves the BatchNorm statistics
    model.eval()
    buffer = io.BytesIO()
    torch.save(
        {"config": json.loads(json.dumps(model.config)), "state": model.state_dict()}, buffer
    )
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)
    rebuilt = LSM.from_config(checkpoint["config"])
    rebuilt.load_state_dict(checkpoint["state"])
    rebuilt.eval()
    x = torch.randn(2, 2, 45, 48)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), model(x))


def test_the_lsm_rollout_feeds_each_frame_back():
    torch.manual_seed(2)
    params = {"input_steps": 3, "output_steps": 2, "width": 8}
    model = build_model("lsm_trajectory", params).eval()
    assert model.config == {**params, "norm": "instance"}
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = model(x, out_steps=4)
        window, frames = x, []
        for _ in range(4):
            frames.append(model.step(window))
            window = torch.cat([window[:, 1:], frames[-1]], 1)
    assert out.shape == (2, 4, 32, 32)
    torch.testing.assert_close(out, torch.cat(frames, 1))


@pytest.mark.parametrize(
    "params, message",
    [
        ({"width": 30}, "width 30 is not divisible by heads 8"),
        ({"width": 16, "norm": "layer"}, "norm must be one of batch, instance"),
        ({"width": 16, "patch": [2, 0]}, "patch must be an integer >= 1"),
        ({"width": 16, "dims": 1}, "dims must be 2 or 3"),
    ],
)
def test_bad_construction_is_one_line(params, message):
    with pytest.raises(UserError) as err:
        build_model("lsm", {"in_channels": 1, "out_channels": 1, **params})
    assert message in str(err.value) and "\n" not in str(err.value)


def test_bad_layouts_and_inputs_name_the_limit():
    model = LSM(1, 1, width=8, patch=8)
    with pytest.raises(ValueError, match=r"patch \[8, 8\] is larger than the coarsest feature map"):
        model(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match="is not a multiple of 16"):
        LSM(1, 1, width=8, padding=3)(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match="instance norm needs more than one point"):
        LSM(1, 1, width=8, norm="instance")(torch.randn(1, 1, 16, 16))
    with pytest.raises(ValueError, match=r"LSM expects \(batch, 1, x, y\)"):
        LSM(1, 1, width=8)(torch.randn(1, 3, 64, 64))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_and_cuda_agree():
    model = LSM(1, 1, width=8).double().eval()
    x = torch.randn(2, 1, 40, 36, dtype=torch.float64)
    with torch.no_grad():
        cpu = model(x)
        gpu = model.to("cuda")(x.to("cuda")).cpu()
    torch.testing.assert_close(gpu, cpu, rtol=1e-9, atol=1e-9)


LSM_TINY = {"name": "lsm", "params": {"width": 8, "num_tokens": 2, "heads": 4}}


def test_training_a_few_epochs_lowers_the_loss(small_dataset, tmp_path):
    from opsolve.cli import main
    from opsolve.train.rundir import read_metrics
    from tests.opsolve.train.test_train import write_config

    run = tmp_path / "lsm"
    config = write_config(tmp_path, small_dataset, run, model=LSM_TINY, epochs=4)
    assert main(["train", str(config), "--no-progress"]) == 0
    rows = read_metrics(run / "metrics.csv")
    assert float(rows[-1]["train_loss"]) < 0.8 * float(rows[0]["train_loss"])


@pytest.mark.parametrize(
    "override, message",
    [
        ("model.params.patch=[8,8]", "patch [8, 8] is larger than the coarsest feature map [3, 3]"),
        ("model.params.in_channels=2", "model.params.in_channels: 2 does not match the data"),
        ("model.params.width=10", "width 10 is not divisible by heads 4"),
    ],
)
def test_bad_input_through_training_is_one_line(small_dataset, tmp_path, capsys, override, message):
    from opsolve.cli import main
    from tests.opsolve.train.test_train import write_config

    config = write_config(tmp_path, small_dataset, tmp_path / "bad", model=LSM_TINY)
    assert main(["train", str(config), override, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
