"""Low-rank (Tensor-GaLore) training: smaller optimizer state, refreshed subspaces, exact
resume through weights-only checkpoints, configs."""

import io

import pytest
import torch

from opsolve.cli import main
from opsolve.models.lsm import LSM
from opsolve.train.checkpoint import load_checkpoint
from opsolve.train.config import load_train_config
from opsolve.train.lowrank import (
    LowRankAdamW,
    RefreshedProjector,
    mode_products,
    optimizer_state_bytes,
    residual_update,
    rotate_moments,
    tucker_ranks,
)
from tests.opsolve.train.test_train import METRICS, metric_rows, run_cli, write_config


def test_ranks_keep_short_axes_and_never_exceed_an_axis():
    assert tucker_ranks((512, 1024, 3, 3), 0.25) == [128, 256, 3, 3]
    assert tucker_ranks((20, 20, 12, 12, 5, 2), 0.5) == [10, 10, 6, 6, 3, 2]
    assert tucker_ranks((7, 300), 1e-4) == [1, 1]
    assert tucker_ranks((9, 9), 1.0) == [9, 9]
    assert tucker_ranks((1, 128), 0.5) == [1, 1]  # one singular vector only
    assert tucker_ranks((8, 4, 1), 1.0) == [4, 4, 1]


def test_leading_axes_compress_the_channels_only():
    """``leading_axes=2``: a spectral weight (in, out, modes..., 2) keeps its Fourier modes
    whole, a 3x3 convolution its taps; the optimizer builds its projectors that way and refuses
    a count below one."""
    assert tucker_ranks((20, 20, 12, 12, 5, 2), 0.5, leading_axes=2) == [10, 10, 12, 12, 5, 2]
    assert tucker_ranks((64, 32, 3, 3), 0.5, leading_axes=2) == [32, 16, 3, 3]
    assert tucker_ranks((64, 32), 0.5, leading_axes=1) == [32, 32]  # capped by the other axis
    torch.manual_seed(2)
    weight = torch.nn.Parameter(torch.randn(12, 12, 16, 16, 5, 2))
    low = LowRankAdamW([torch.nn.Parameter(torch.zeros(3)), weight], rank=0.5, leading_axes=2)
    (weight**2).sum().backward()
    low.step()
    shapes = [tuple(f.shape) for f in low.state[weight]["projector"].proj_tensor]
    assert shapes == [(12, 6), (12, 6), (16, 16), (16, 16), (5, 5), (2, 2)]
    with pytest.raises(ValueError, match="leading_axes must be at least 1"):
        LowRankAdamW([weight], leading_axes=0)


def _step(model: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor) -> None:
    optimizer.zero_grad()
    (model(x) ** 2).mean().backward()
    optimizer.step()


def test_state_is_a_fraction_of_adamw_and_the_subspace_is_refreshed():
    torch.manual_seed(0)
    model = LSM(1, 1, width=16)
    x = torch.randn(2, 1, 32, 32)
    adamw = torch.optim.AdamW(model.parameters(), lr=1e-3)
    _step(model, adamw, x)
    low = LowRankAdamW(model.parameters(), lr=1e-3, rank=0.25, update_gap=2)
    _step(model, low, x)
    ratio = optimizer_state_bytes(low) / optimizer_state_bytes(adamw)
    assert 0.05 < ratio < 0.2, ratio
    weight = model.encoder[4][1][0].weight  # (128, 128, 3, 3)
    first = [f.clone() for f in low.state[weight]["projector"].proj_tensor]
    assert [tuple(f.shape) for f in first] == [(128, 32), (128, 32), (3, 3), (3, 3)]
    _step(model, low, x)  # step 1: same subspace
    kept = low.state[weight]["projector"].proj_tensor
    assert all(torch.equal(a, b) for a, b in zip(first, kept, strict=True))
    _step(model, low, x)  # step 2: recomputed from the new gradient
    moved = low.state[weight]["projector"].proj_tensor
    assert not torch.allclose(first[0], moved[0])


@pytest.mark.parametrize("rotate, residual", [(False, False), (True, False), (True, True)])
def test_a_weights_only_round_trip_continues_bit_for_bit(rotate, residual):
    torch.manual_seed(1)
    model = LSM(1, 1, width=8)
    x = torch.randn(2, 1, 32, 32)
    options = {"lr": 1e-3, "weight_decay": 1e-4, "update_gap": 3, "rotate": rotate}
    optimizer = LowRankAdamW(model.parameters(), residual=residual, **options)
    for _ in range(2):
        _step(model, optimizer, x)
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict()}, buffer)
    for _ in range(3):  # crosses a subspace update
        _step(model, optimizer, x)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    clone = LSM(1, 1, width=8)
    clone.load_state_dict(saved["model"])
    resumed = LowRankAdamW(clone.parameters(), residual=residual, **options)
    resumed.load_state_dict(saved["optimizer"])
    for _ in range(3):
        _step(clone, resumed, x)
    for a, b in zip(model.parameters(), clone.parameters(), strict=True):
        assert torch.equal(a, b)


def test_a_killed_low_rank_run_resumes_to_the_uninterrupted_result(small_dataset, tmp_path):
    """FNO on the tiny Darcy data with galore_adamw (subspace every 2 steps), killed after step
    7 and resumed: the same metrics and weights as the run that was not interrupted."""
    optimizer = {"name": "galore_adamw", "lr": 5e-3, "galore": {"rank": 0.5, "update_gap": 2}}
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    config = write_config(tmp_path, small_dataset, straight, optimizer=optimizer)
    assert main(["train", str(config), "--no-progress"]) == 0
    config = write_config(tmp_path, small_dataset, killed, optimizer=optimizer)
    result = run_cli(
        "train", str(config), "--no-progress", env={"OPSOLVE_FAULT": "kill_after_steps=7"}
    )
    assert result.returncode == 137, result.stderr
    assert main(["train", str(config), "--resume", "--no-progress"]) == 0
    a, b = metric_rows(straight), metric_rows(killed)
    assert [r["epoch"] for r in b] == [1, 2, 3, 4]
    for ra, rb in zip(a, b, strict=True):
        for key in METRICS:
            assert rb[key] == pytest.approx(ra[key], rel=1e-6, abs=0), key
    sa = load_checkpoint(straight / "checkpoints" / "last.pt")["state"]
    sb = load_checkpoint(killed / "checkpoints" / "last.pt")["state"]
    for key in sa:
        torch.testing.assert_close(sb[key], sa[key], rtol=1e-5, atol=1e-7)


def test_galore_keys_need_the_galore_optimizer(small_dataset, tmp_path, capsys):
    config = write_config(tmp_path, small_dataset, tmp_path / "x")
    assert main(["train", str(config), "optimizer.galore.rank=0.3", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "galore applies to galore_adamw only, not to 'adam'" in err and err.count("\n") == 1
    assert (
        main(["train", str(config), "optimizer.name=galore_adamw", "optimizer.galore.rank=0"]) == 2
    )
    assert "optimizer.galore.rank" in capsys.readouterr().err
    cfg = load_train_config(config, ["optimizer.name=galore_adamw", "optimizer.galore.rank=0.3"])
    assert cfg.optimizer.galore.rank == 0.3 and cfg.optimizer.galore.update_gap == 50
    assert cfg.optimizer.galore.leading_axes is None
    lead = ["optimizer.name=galore_adamw", "optimizer.galore.leading_axes=0"]
    assert main(["train", str(config), *lead, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "optimizer.galore.leading_axes" in err and err.count("\n") == 1


def test_hosvd_recovers_a_tensor_of_that_tucker_rank():
    """A tensor of exact Tucker rank [3, 4, 2]: the factors are orthonormal and projecting onto
    them and back returns the tensor (what the optimizer's update goes through)."""
    from opsolve.train.lowrank import RefreshedProjector, hosvd_factors

    torch.manual_seed(4)
    core = torch.randn(3, 4, 2, dtype=torch.float64)
    bases = [torch.linalg.qr(torch.randn(n, r, dtype=torch.float64))[0] for n, r in
             ((10, 3), (12, 4), (5, 2))]  # fmt: skip
    tensor = torch.einsum("abc,ia,jb,kc->ijk", core, *bases)
    factors = hosvd_factors(tensor, [3, 4, 2])
    for f, r in zip(factors, (3, 4, 2), strict=True):
        torch.testing.assert_close(f.T @ f, torch.eye(r, dtype=torch.float64))
    projector = RefreshedProjector(rank=[3, 4, 2], update_proj_gap=10)
    low = projector.project(tensor, 0)
    assert low.shape == (3, 4, 2)
    torch.testing.assert_close(projector.project_back(low), tensor)


def _orthonormal(n: int, r: int, dtype=torch.float64) -> torch.Tensor:
    return torch.linalg.qr(torch.randn(n, n, dtype=dtype))[0][:, :r]


def test_rotated_first_moment_is_its_projection_on_the_new_subspace():
    """``m' x_i new = (m x_i old) x_i (new new^H)``: the part of the full-space moment inside the
    new subspace, exactly; a permuted, sign-flipped basis of the same subspace loses nothing."""
    torch.manual_seed(3)
    shape, ranks = (7, 6, 3), (4, 3, 3)
    old = [_orthonormal(n, r) for n, r in zip(shape, ranks, strict=True)]
    new = [_orthonormal(n, r) for n, r in zip(shape, ranks, strict=True)]
    m, v = torch.randn(ranks, dtype=torch.float64), torch.rand(ranks, dtype=torch.float64)
    state = {"exp_avg": m.clone(), "exp_avg_sq": v.clone()}
    rotate_moments(state, old, new)
    full = mode_products(m, old)
    expected = mode_products(full, [f @ f.T for f in new])
    torch.testing.assert_close(mode_products(state["exp_avg"], new), expected)
    assert (state["exp_avg_sq"] >= 0).all()
    perm = [torch.randperm(r) for r in ranks]
    signs = [torch.where(torch.rand(r) < 0.5, -1.0, 1.0).double() for r in ranks]
    same = [o[:, p] * s for o, p, s in zip(old, perm, signs, strict=True)]
    state = {"exp_avg": m.clone(), "exp_avg_sq": v.clone()}
    rotate_moments(state, old, same)
    torch.testing.assert_close(mode_products(state["exp_avg"], same), full)
    torch.testing.assert_close(state["exp_avg_sq"], v[perm[0]][:, perm[1]][:, :, perm[2]])


def test_rotating_the_moments_changes_training_only_when_the_subspace_moves():
    torch.manual_seed(4)
    runs = {}
    for rotate in (False, True):
        torch.manual_seed(5)
        model = LSM(1, 1, width=8)
        x = torch.randn(2, 1, 32, 32)
        optimizer = LowRankAdamW(model.parameters(), lr=1e-3, update_gap=2, rotate=rotate)
        states = []
        for _ in range(4):  # subspaces recomputed before steps 2 and 4 (counting from 0)
            _step(model, optimizer, x)
            states.append([p.detach().clone() for p in model.parameters()])
        runs[rotate] = states
    for step in (0, 1):  # before the first recomputation: the same run
        assert all(
            torch.equal(a, b) for a, b in zip(runs[False][step], runs[True][step], strict=True)
        )
    assert not all(torch.equal(a, b) for a, b in zip(runs[False][3], runs[True][3], strict=True))


def test_the_residual_is_phi_times_the_gradient_outside_the_subspace():
    """``S = phi (G - Q Q^H G)``, ``phi = ||psi(R)|| / ||R||``: orthogonal to the subspace, as
    large as Adam's normalization makes the projected step; its norm grows at most 1.01x."""
    torch.manual_seed(6)
    shape, ranks = (9, 8, 3), [4, 3, 3]
    factors = [_orthonormal(n, r) for n, r in zip(shape, ranks, strict=True)]
    grad = torch.randn(shape, dtype=torch.float64)
    normalized = torch.randn(ranks, dtype=torch.float64)
    projector = RefreshedProjector(rank=ranks, update_proj_gap=10)
    args = (projector.transform, projector.inverse_transform)
    update, norm = residual_update(grad, factors, normalized, None, *args)
    projected = mode_products(grad, [f.T for f in factors])
    inside = mode_products(projected, factors)
    phi = normalized.norm() / projected.norm()
    torch.testing.assert_close(update, phi * (grad - inside), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(mode_products(update, [f.T for f in factors]), 0 * projected)
    assert norm == update.norm()
    limited, limited_norm = residual_update(grad, factors, normalized, norm / 2, *args)
    torch.testing.assert_close(limited, update * (1.01 / 2), rtol=1e-12, atol=0)
    torch.testing.assert_close(limited_norm, norm * 1.01 / 2)
    single = [f.float() for f in factors]  # float32: 1 / tiny of float64 would be 0 / 0
    zero, zero_norm = residual_update(0 * grad.float(), single, normalized.float(), None, *args)
    assert torch.equal(zero, torch.zeros_like(zero)) and zero_norm == 0  # no gradient, no NaN


def test_the_residual_adds_the_part_outside_the_subspace_and_nothing_at_full_rank():
    """One step with the residual moves each projected weight by ``-step_size * S`` more than
    the library's step; at full rank nothing lies outside, so the two steps agree."""
    x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(7))
    for rank in (0.5, 1.0):
        after = {}
        for residual in (False, True):
            torch.manual_seed(8)
            model = LSM(1, 1, width=8).double()
            optimizer = LowRankAdamW(
                model.parameters(), lr=1e-3, rank=rank, update_gap=5, residual=residual
            )
            _step(model, optimizer, x.double())
            weight = model.encoder[1][1][0].weight
            after[residual] = (
                weight.detach().clone(),
                weight.grad.clone(),
                optimizer.state[weight],
            )
        (plain, grad, _), (full, _, state) = after[False], after[True]
        projected = state["projector"].transform(state["projector"].proj_tensor, grad)
        outside = grad - state["projector"].inverse_transform(
            state["projector"].proj_tensor, projected
        )
        if rank == 1.0:
            assert outside.abs().max() < 1e-12
            torch.testing.assert_close(full, plain, rtol=0, atol=1e-14)
        else:
            normalized = state["exp_avg"] / (state["exp_avg_sq"].sqrt() + 1e-6)
            phi = normalized.norm() / projected.norm()
            step_size = 1e-3 * (1 - 0.999) ** 0.5 / (1 - 0.9)
            torch.testing.assert_close(full - plain, -step_size * phi * outside)
            assert (full - plain).abs().max() > 1e-6
