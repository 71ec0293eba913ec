"""The semilinear observer: exact properties of the correction, masks of every kind and size,
training, checkpoints, the assimilate command and its bad input."""

from __future__ import annotations

import json
import re

import pytest
import torch

from opsolve.models.observer import SemilinearObserver, correct, observed_fraction
from opsolve.observations import observation_masks, observe, seeded
from tests.conftest import ROOT, run_cli

KS_SMALL = str(ROOT / "configs" / "datagen" / "ks_small.yaml")
KS_OBSERVER = str(ROOT / "configs" / "train" / "ks_observer.yaml")


def _observer(ndim: int = 1, **kw) -> SemilinearObserver:
    modes = (6,) if ndim == 1 else (4, 4)
    return SemilinearObserver(modes=modes, width=8, layers=2, gain_layers=1, **kw)


def _randomize_gain(model: SemilinearObserver) -> None:
    torch.nn.init.normal_(model.gain.project[-1].weight, std=0.5)  # a nonzero gain


# ------------------------------------------------------------------ the correction step


@pytest.mark.parametrize("ndim", [1, 2])
def test_zero_gain_or_no_observations_give_the_predictor_exactly(ndim):
    model = _observer(ndim).double()
    grid = (32,) if ndim == 1 else (16, 16)
    truth = torch.randn(3, 6, *grid, dtype=torch.float64)
    mask = observation_masks(3, 6, grid, 0.3, generator=seeded(0))
    measured = observe(truth, mask, 0.1, seeded(1))
    free = model(measured, mask, correct=False)[0]
    assert torch.equal(model(measured, mask)[0], free)  # the untrained gain is zero
    _randomize_gain(model)
    assert not torch.equal(model(measured, mask)[0], free)
    none = torch.zeros_like(mask)
    assert torch.equal(model(measured, none)[0], free)  # no observations: no correction


def test_a_gain_that_inverts_the_measurement_returns_the_truth():
    forecast = torch.randn(4, 1, 32, dtype=torch.float64)
    truth = torch.randn(4, 1, 32, dtype=torch.float64)
    everywhere = torch.ones_like(truth, dtype=torch.bool)

    def identity(u):
        return u

    analysis, _ = correct(forecast, truth, everywhere, identity, lambda f, d, m: d)
    torch.testing.assert_close(analysis, truth, rtol=0, atol=1e-14)  # E = K = I: y itself
    scale, shift = 2.5, -0.3

    def affine(u):
        return scale * u + shift

    measured = affine(truth)  # y = E(u), observed everywhere without noise
    analysis, predicted = correct(forecast, measured, everywhere, affine, lambda f, d, m: d / scale)
    torch.testing.assert_close(analysis, truth, rtol=0, atol=1e-14)
    torch.testing.assert_close(predicted, affine(forecast), rtol=0, atol=0)


def test_no_innovation_means_no_correction_for_any_state():
    model = _observer(1).double()
    _randomize_gain(model)
    forecast = torch.randn(2, 1, 32, dtype=torch.float64)
    mask = observation_masks(2, 1, (32,), 0.5, generator=seeded(3))[:, :1]
    measured = model.measurement(forecast)  # y = E(u^f): a zero innovation
    analysis, _, _ = model.correct(forecast, measured, mask)
    assert torch.equal(analysis, forecast)


def test_each_sample_is_corrected_with_its_own_observations_only():
    model = _observer(1).double()
    _randomize_gain(model)
    truth = torch.randn(3, 4, 32, dtype=torch.float64)
    mask = observation_masks(3, 4, (32,), 0.25, generator=seeded(4))
    mask[1] = False  # sample 1 never observed
    mask[2, 2] = False  # sample 2 not at step 2
    measured = observe(truth, mask, 0.0)
    together = model(measured, mask)[0]
    for b in range(3):
        alone = model(measured[b : b + 1], mask[b : b + 1])[0]
        torch.testing.assert_close(together[b : b + 1], alone, rtol=1e-12, atol=1e-12)
    assert torch.equal(together[1], model(measured[1:2], mask[1:2], correct=False)[0][0])


# ------------------------------------------------------------------------------- masks


@pytest.mark.parametrize("grid", [(64,), (16, 12)])
def test_random_masks_hold_the_drawn_count_per_step(grid):
    nodes = torch.tensor(grid).prod().item()
    mask = observation_masks(5, 7, grid, (0.0, 1.0), "random", generator=seeded(0))
    counts = mask.flatten(2).sum(-1)  # (5, 7)
    assert (counts == counts[:, :1]).all()  # one density per trajectory
    assert len(set(counts[:, 0].tolist())) > 1  # batched masks of different sizes
    assert not (mask[:, 0] == mask[:, 1]).all()  # new nodes every step
    assert observation_masks(2, 3, grid, 0.0).sum() == 0
    assert observation_masks(2, 3, grid, 1.0).sum() == 2 * 3 * nodes


def test_sensors_are_fixed_and_stripes_are_bands():
    sensors = observation_masks(2, 5, (32,), 0.25, "sensors", generator=seeded(1))
    assert (sensors == sensors[:, :1]).all() and sensors[0, 0].sum() == 8
    stripes = observation_masks(2, 5, (16, 8), 0.25, "stripes", generator=seeded(2))
    rows = stripes.any(dim=-1)  # (2, 5, 16)
    assert (stripes.all(dim=-1) == rows).all()  # whole rows
    assert (rows.sum(-1) == 4).all()
    starts = rows & ~torch.roll(rows, 1, dims=-1)
    assert (starts.sum(-1) == 1).all()  # one contiguous band (periodically)
    assert observation_masks(3, 4, (32,), 0.5, availability=0.0).sum() == 0


@pytest.mark.parametrize("ndim", [1, 2])
def test_any_mask_runs_on_any_resolution(ndim):
    model = _observer(ndim)
    for grid in [(32,), (48,)] if ndim == 1 else [(16, 16), (24, 20)]:
        truth = torch.randn(2, 3, *grid)
        for kind in ("random", "sensors", "stripes"):
            mask = observation_masks(2, 3, grid, (0.0, 1.0), kind, generator=seeded(5))
            out = model(observe(truth, mask, 0.05, seeded(6)), mask)
            assert all(o.shape == truth.shape for o in out)


def test_a_mask_that_does_not_match_is_one_clear_error():
    truth = torch.randn(2, 3, 32)
    with pytest.raises(ValueError, match="does not match"):
        observe(truth, torch.ones(2, 3, 16, dtype=torch.bool), 0.1)
    with pytest.raises(ValueError, match="does not match"):
        _observer(1)(truth, torch.ones(2, 3, 31, dtype=torch.bool))
    with pytest.raises(ValueError, match="1-D modes"):
        _observer(1)(torch.randn(2, 3, 8, 8), torch.ones(2, 3, 8, 8, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"density must be in \[0, 1\]"):
        observation_masks(1, 1, (8,), 1.5)
    with pytest.raises(ValueError, match="noise must be"):
        observe(truth, torch.ones_like(truth, dtype=torch.bool), -0.1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("ndim", [1, 2])
def test_cpu_and_cuda_agree(ndim):
    model = _observer(ndim).double()
    _randomize_gain(model)
    grid = (32,) if ndim == 1 else (16, 16)
    truth = torch.randn(3, 5, *grid, dtype=torch.float64)
    mask = observation_masks(3, 5, grid, (0.0, 0.5), generator=seeded(0))
    measured = observe(truth, mask, 0.05, seeded(1))
    cpu = model(measured, mask)[0]
    gpu = model.cuda()(measured.cuda(), mask.cuda())[0].cpu()
    torch.testing.assert_close(cpu, gpu, rtol=1e-10, atol=1e-10)


def _randomize_memory(model: SemilinearObserver, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.gain.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=p.dtype) * 0.5)


@pytest.mark.parametrize("ndim", [1, 2])
def test_with_memory_no_innovation_still_gives_the_predictor_exactly(ndim):
    """The gain's memory changes how innovations are spread, never the state without one: a
    zero output layer, or no observations, leave every step at the free predictor's value."""
    model = _observer(ndim, memory=3).double()
    grid = (32,) if ndim == 1 else (16, 16)
    truth = torch.randn(3, 12, *grid, dtype=torch.float64)
    mask = observation_masks(3, 12, grid, 0.3, generator=seeded(0))
    measured = observe(truth, mask, 0.1, seeded(1))
    free = model(measured, mask, correct=False)[0]
    _randomize_memory(model)
    assert not torch.equal(model(measured, mask)[0], free)
    assert torch.equal(model(measured, torch.zeros_like(mask))[0], free)
    torch.nn.init.zeros_(model.gain.project[-1].weight)
    assert torch.equal(model(measured, mask)[0], free)


def test_the_memory_is_bounded_and_steers_the_corrections():
    model = _observer(1, memory=4).double()
    _randomize_memory(model)
    truth = torch.randn(2, 60, 32, dtype=torch.float64) * 5
    mask = observation_masks(2, 60, (32,), 0.2, generator=seeded(4))
    measured = observe(truth, mask, 0.1, seeded(5))
    state = model.predict(truth[:, :1])
    memory = torch.zeros(2, 4, 32, dtype=torch.float64)
    for k in range(60):
        state, _, memory = model.correct(state, measured[:, k : k + 1], mask[:, k : k + 1], memory)
        assert memory.abs().max() <= 1.0
    once = model(measured, mask)[0]
    with torch.no_grad():
        model.gain.remember.weight.mul_(-1.0)  # another record: other corrections
    assert not torch.allclose(model(measured, mask)[0][:, 2:], once[:, 2:])
    assert torch.equal(model(measured, mask)[0][:, 0], once[:, 0])  # step 0: memory still 0


def test_a_memory_observer_round_trips_through_its_state_dict():
    model = _observer(1, memory=2).double()
    _randomize_memory(model, seed=2)
    again = SemilinearObserver.from_config(model.config).double()
    again.load_state_dict(model.state_dict())
    truth = torch.randn(2, 9, 32, dtype=torch.float64)
    mask = observation_masks(2, 9, (32,), 0.25, generator=seeded(6))
    measured = observe(truth, mask, 0.1, seeded(7))
    assert torch.equal(model(measured, mask)[0], again(measured, mask)[0])


@pytest.mark.parametrize("memory", [-1, 1.5, True])
def test_a_bad_memory_is_one_clear_error(memory):
    with pytest.raises(ValueError, match="memory must be an integer >= 0"):
        _observer(1, memory=memory)


def test_the_observed_fraction_makes_a_constant_innovation_density_free():
    """``d / p`` averages to the innovation's value on every sample, whatever its density,
    and a sample without observations divides by one node's worth, not by zero."""
    mask = observation_masks(4, 1, (16, 16), 0.1, generator=seeded(8))[:, :1].clone()
    mask[1] = observation_masks(1, 1, (16, 16), 0.4, generator=seeded(9))[:, :1]
    mask[2] = True
    mask[3] = False
    innovation = 0.7 * mask.double()
    averaged = (innovation / observed_fraction(mask)).mean(dim=(1, 2, 3))
    torch.testing.assert_close(averaged[:3], torch.full((3,), 0.7, dtype=torch.float64))
    assert averaged[3] == 0.0
    assert observed_fraction(mask)[3].item() == 1 / 256


@pytest.mark.parametrize("ndim", [1, 2])
def test_a_density_scaled_gain_reads_the_innovation_over_the_observed_fraction(ndim):
    """The scaled gain is the raw gain applied to ``d / p``: the same for a fully observed
    sample, per sample for mixed densities; no observations still means no correction."""
    grid = (32,) if ndim == 1 else (16, 16)
    scaled = _observer(ndim, memory=2, density_scaled=True).double()
    _randomize_memory(scaled, seed=3)
    raw = _observer(ndim, memory=2).double()
    raw.load_state_dict(scaled.state_dict())
    forecast = torch.randn(3, 1, *grid, dtype=torch.float64)
    mask = observation_masks(3, 1, grid, 0.2, generator=seeded(10))[:, :1].clone()
    mask[0] = True
    innovation = mask * torch.randn(3, 1, *grid, dtype=torch.float64)
    memory = torch.zeros(3, 2, *grid, dtype=torch.float64)
    m = mask.double()
    out, _ = scaled.gain(forecast, innovation, m, memory)
    expected, _ = raw.gain(forecast, innovation / observed_fraction(m), m, memory)
    torch.testing.assert_close(out, expected, rtol=0, atol=0)
    torch.testing.assert_close(out[:1], raw.gain(forecast, innovation, m, memory)[0][:1])
    truth = torch.randn(2, 5, *grid, dtype=torch.float64)
    observed = observation_masks(2, 5, grid, 0.3, generator=seeded(11))
    measured = observe(truth, observed, 0.1, seeded(12))
    free = scaled(measured, observed, correct=False)[0]
    assert torch.equal(scaled(measured, torch.zeros_like(observed))[0], free)
    again = SemilinearObserver.from_config(scaled.config).double()
    again.load_state_dict(scaled.state_dict())
    assert torch.equal(again(measured, observed)[0], scaled(measured, observed)[0])
    assert not torch.equal(raw(measured, observed)[0], scaled(measured, observed)[0])


def test_a_bad_density_scaled_is_one_clear_error():
    with pytest.raises(ValueError, match="density_scaled must be true or false"):
        _observer(1, density_scaled="yes")


def test_the_forecasts_of_given_states_are_the_predictors_own():
    """``states=`` returns ``u + F(u)`` of each state in physical units, from the same call."""
    from opsolve.models.wrapper import ObserverOperator

    stats = torch.tensor([[0.3], [2.0]])
    op = ObserverOperator(_observer(1).double(), stats, stats).double()
    truth = torch.randn(3, 5, 32, dtype=torch.float64)
    mask = observation_masks(3, 5, (32,), 0.3, generator=seeded(0))
    measured = observe(truth, mask, 0.1, seeded(1))
    *run, taught = op(measured, mask, states=truth[:, :-1])
    assert all(torch.equal(a, b) for a, b in zip(run, op(measured, mask), strict=True))
    for k in range(4):
        u = (truth[:, k : k + 1] - 0.3) / 2.0
        expected = (u + op.model.predictor(u)) * 2.0 + 0.3
        torch.testing.assert_close(taught[:, k : k + 1], expected, rtol=1e-6, atol=1e-8)


def test_the_one_step_report_scores_the_predictor_from_the_true_states():
    """``one_step_errors``: the forecasts of the horizon's true states against the next ones;
    a predictor with ``F = 0`` is persistence, whose error is the true change."""
    from opsolve.eval.assimilate import one_step_errors
    from opsolve.models.wrapper import ObserverOperator
    from opsolve.norms import relative_l2_per_step

    stats = torch.tensor([[0.3], [2.0]])
    op = ObserverOperator(_observer(1).double(), stats, stats).double()
    truth = torch.randn(5, 9, 32, dtype=torch.float64)
    result = one_step_errors(op, truth, warmup=3, batch_size=2, device=torch.device("cpu"))
    with torch.no_grad():
        forecast = op.one_step(truth[:, 2:-1])
    assert result["forecast"] == pytest.approx(
        float(relative_l2_per_step(forecast, truth[:, 3:]).mean()), rel=1e-12
    )
    change = float(relative_l2_per_step(truth[:, 2:-1], truth[:, 3:]).mean())
    assert result["change"] == pytest.approx(change, rel=1e-12)
    assert result["forecast"] != pytest.approx(change)
    last = op.model.predictor.project[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.zero_()
    persistence = one_step_errors(op, truth, warmup=0, batch_size=64, device=torch.device("cpu"))
    assert persistence["forecast"] == pytest.approx(persistence["change"], rel=1e-12)


def test_the_prediction_term_adds_the_one_step_error_of_the_true_states():
    from opsolve.models.wrapper import ObserverOperator
    from opsolve.train.assimilation import AssimilationTask, relative_l2
    from opsolve.train.config import ObserverTraining

    torch.manual_seed(0)
    stats = torch.tensor([[0.0], [1.0]])
    op = ObserverOperator(_observer(1), stats, stats)
    x, y = torch.randn(4, 1, 32), torch.randn(4, 7, 32)
    plain = AssimilationTask(ObserverTraining(warmup=2), 1.0, seed=3)
    taught = AssimilationTask(ObserverTraining(warmup=2, prediction_weight=0.5), 1.0, seed=3)
    truth = torch.cat([x, y], dim=1)
    steps = torch.stack([op.model.predict(truth[:, k : k + 1])[:, 0] for k in range(7)], 1)
    expected = plain.loss(op, x, y, 11) + 0.5 * relative_l2(steps, truth[:, 1:])
    torch.testing.assert_close(taught.loss(op, x, y, 11), expected, rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------- training and assimilation


@pytest.fixture(scope="module")
def ks_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("ks") / "ks"
    result = run_cli(
        "generate", KS_SMALL, "resolution=32", "samples.train=6", "samples.valid=2",
        "samples.test=2", "time.records=30", f"output.dir={out}", "--no-progress",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out


def _tiny(ks_data, out, *extra):
    return [
        "train", KS_OBSERVER, f"data.root={ks_data}", f"output.dir={out}",
        "model.params.modes=[6]", "model.params.width=8", "model.params.layers=2",
        "model.params.gain_width=8", "model.params.gain_layers=1",
        "data.window.output_steps=7", "data.window.stride=5", "data.limit.valid=2",
        "observer.warmup=3", "batch_size=4", "--no-progress", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def observer_run(ks_data, tmp_path_factory):
    from opsolve.cli import main

    out = tmp_path_factory.mktemp("runs") / "observer"
    assert main(_tiny(ks_data, out, "epochs=4", "optimizer.lr=5.0e-3")) == 0
    return out


def test_training_lowers_the_loss(observer_run):
    rows = (observer_run / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    loss = [float(r.split(",")[header.index("train_loss")]) for r in rows[1:]]
    assert len(loss) == 4 and loss[-1] < 0.8 * loss[0]


def test_the_run_log_names_a_1d_grid(observer_run):
    """The first log line gives the grid as it is: one size for 1-D data, not ``s x s``."""
    first = (observer_run / "log.txt").read_text().splitlines()[0]
    assert re.search(r"valid at \d+\), ", first), first


def test_a_checkpoint_round_trip_gives_identical_rollouts(observer_run, ks_data):
    from opsolve.eval.assimilate import draw_observations, load_settings, stacked, trajectories
    from opsolve.eval.report import load_trained

    settings = load_settings(["warmup=5", "horizon=20"])
    truth = stacked(trajectories(ks_data, settings, "u", 1))
    measured, mask = draw_observations(truth, settings, 1.0)
    op, ckpt = load_trained(observer_run, "last")
    again, _ = load_trained(observer_run, "last")
    first = op(measured, mask)[0]
    assert torch.equal(first, again(measured, mask)[0])
    assert torch.isfinite(first).all()


def test_training_resumes_exactly(ks_data, tmp_path):
    import os
    import subprocess
    import sys

    from opsolve.cli import main

    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert main(_tiny(ks_data, whole, "epochs=2")) == 0
    env = {**os.environ, "OPSOLVE_FAULT": "kill_after_steps=9"}  # inside epoch 2
    args = [sys.executable, "-m", "opsolve.cli", *_tiny(ks_data, cut, "epochs=2")]
    killed = subprocess.run(args, env=env, capture_output=True, cwd=ROOT)
    assert killed.returncode == 137
    assert main([*_tiny(ks_data, cut, "epochs=2"), "--resume"]) == 0
    a = torch.load(whole / "checkpoints" / "last.pt", weights_only=True)["state"]
    b = torch.load(cut / "checkpoints" / "last.pt", weights_only=True)["state"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_assimilate_writes_curves_and_figures(observer_run, capsys):
    from opsolve.cli import main

    code = main(["assimilate", str(observer_run), "warmup=5", "horizon=20", "density=0.25"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "observer" in out and "predictor" in out
    report = json.loads((observer_run / "assimilate_test_32_random_d0.25_n0.05.json").read_text())
    for name in ("observer", "predictor"):
        m = report["methods"][name]
        assert len(m["mean"]) == 25 and m["horizon_mean"] > 0
    # the same observations for both: identical during the warm-up
    assert report["methods"]["observer"]["mean"][:5] == report["methods"]["predictor"]["mean"][:5]
    assert 0 < report["one_step"]["forecast"] < report["one_step"]["change"]  # beats persistence
    assert "one step of the predictor from the true states" in out
    assert all((observer_run / "figures" / f).is_file() for f in (
        "assimilate_test_32_random_d0.25_n0.05_curves.png",
        "assimilate_test_32_random_d0.25_n0.05_space_time.png",
    ))  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["density=1.5"], "density"),
        (["noise=-0.1"], "noise"),
        (["mask=grid"], "mask"),
        (["warmup=20", "horizon=20"], "measurement times must lie within the trajectory"),
    ],
)
def test_assimilate_bad_input_is_one_line(observer_run, args, message, capsys):
    from opsolve.cli import main

    code = main(["assimilate", str(observer_run), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("observer.density=-0.1", "observer.density"),
        ("observer.density=2", "observer.density"),
        ("observer.noise=-1", "observer.noise"),
        ("observer.warmup=8", "leaves no scored step"),
        ("observer.density_max=0.01", "density_max"),
        ("observer.prediction_weight=-1", "observer.prediction_weight"),
    ],
)
def test_observer_training_bad_input_is_one_line(ks_data, tmp_path, override, message, capsys):
    from opsolve.cli import main

    code = main([*_tiny(ks_data, tmp_path / "run"), override])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()


def test_assimilate_refuses_a_run_of_another_model(tmp_path, small_dataset, capsys):
    from opsolve.cli import main

    run = tmp_path / "fno"
    assert main([
        "train", str(ROOT / "configs" / "train" / "darcy_fno_small.yaml"),
        f"data.root={small_dataset}", f"output.dir={run}", "epochs=1",
        "model.params.n_modes=[8,8]", "model.params.hidden_channels=4", "--no-progress",
    ]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["assimilate", str(run)]) == 2
    assert "needs an 'observer' run" in capsys.readouterr().err
