"""Data assimilation side by side: the learned observer against classical filters with the
true numerical model and against free-running learned forecasters.

    python benchmarks/assimilation.py --run runs/train/ks_observer [--also RUN ...] [--limit 16]
        [--members 32 64] [--density 0.1] [--noise 0.05] [--warmup 40] [--horizon 800]
        [--densities 0.05 0.1 0.25] [--noises 0.02 0.05 0.1] [--fno-epochs 10] [--out DIR]

On the test trajectories of the observer's dataset (Kuramoto-Sivashinsky or Navier-Stokes),
all methods see the same observations (:func:`opsolve.eval.assimilate.draw_observations`) and
are scored over the same horizon after the same warm-up:

- ``observer``: the trained semilinear observer (Singh et al., ICLR 2024), from the mean;
- ``predictor``: the same model, corrected during the warm-up only, then free;
- ``observer (NAME)``: each further observer run of ``--also`` (trained on the same data), for
  observers of different sizes side by side;
- ``fno``: neuraloperator's FNO trained here for one record interval on the same train split
  (relative L2, Adam), rolled out autoregressively from the *true* state at record 0 (the most
  favourable start: it cannot assimilate);
- ``enkf-M``: a stochastic EnKF with M members, Gaspari-Cohn localization and multiplicative
  inflation, with the true model (the generator's solver), from M climatological states
  (random records of the train split); radius and inflation tuned on valid trajectories for
  each M;
- ``oi``: optimal interpolation (static Gaussian background covariance) with the true model,
  from the mean; background std and correlation length tuned on valid trajectories.

Reported: the mean relative L2 error over the horizon and at a few horizons, and wall-clock
seconds per assimilation step (one step of all trajectories, forecast included), as JSON and a
markdown table, with the error-against-time figure of all methods; then the observer's error
over the horizon for several densities and noise levels (the monotonicity check).
"""

from __future__ import annotations

import argparse
import importlib
import json
import platform
import time
from itertools import product
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from datagen.core.errors import UserError
from opsolve.data import load_statistics, open_windows
from opsolve.eval.assimilate import (
    assimilation_figures,
    compare_methods,
    domain_length,
    draw_observations,
    load_settings,
    observer_methods,
    stacked,
    trajectories,
)
from opsolve.eval.report import load_trained
from opsolve.filters import Forecast, run_enkf, run_oi
from opsolve.norms import relative_l2_per_step


def true_model(path: Path, dt_record: float) -> Forecast:
    """One record interval of the generator's solver for the file's problem (float64)."""
    with h5py.File(path, "r") as f:
        problem = str(f.attrs["problem"])
        params = {str(k): float(f.attrs[k]) for k in f.attrs["simulation_parameters"]}
        attrs = dict(f.attrs)
        if problem == "navier_stokes":
            stored = f["t0_fields"]["forcing"]  # (n, n), or (samples, n, n) when it varies
            forcing = np.asarray(stored[0] if stored.attrs["sample_varying"] else stored[()])
            forcing = torch.from_numpy(forcing.astype(np.float64))
        else:
            length = float(np.asarray(f["provenance"]["domain_length"])[0])
    if problem in ("ks", "kdv"):
        from datagen.problems.semilinear.physics import simulate

        physics = importlib.import_module(f"datagen.problems.{problem}.physics")
        equation = physics.equation(params)
        steps = int(attrs["steps_per_record"])

        def step_1d(u: torch.Tensor) -> torch.Tensor:
            lengths = torch.full((u.shape[0],), length, dtype=torch.float64)
            dts = torch.full((u.shape[0],), dt_record / steps, dtype=torch.float64)
            return simulate(u.double(), equation, lengths, dts, steps, steps, 1)[0][:, 0]

        return step_1d
    if problem == "navier_stokes":
        from datagen.problems.navier_stokes.physics import simulate as simulate_2d

        def step_2d(w: torch.Tensor) -> torch.Tensor:
            out = simulate_2d(
                w.double(), forcing, nu=params["viscosity"], dt=float(attrs["dt"]),
                record_times=[0.0, dt_record], drag=params.get("drag", 0.0),
                scheme=str(attrs["scheme"]),
            )  # fmt: skip
            return out.frames[:, -1]

        return step_2d
    raise SystemExit(f"no true model for problem {problem!r}")


def climatology(
    root: Path, field: str, subsample: int, count: int, members: int, seed: int
) -> torch.Tensor:
    """``(count, members, *grid)`` random records of the train split."""
    ds = open_windows(
        root, "train", input_steps=1, output_steps=1, stride=1, field=field, subsample=subsample
    )
    g = torch.Generator().manual_seed(seed)
    picks = torch.randint(0, len(ds), (count * members,), generator=g).tolist()
    states = torch.stack([ds[i]["x"][0] for i in picks])
    return states.reshape(count, members, *states.shape[1:])


def train_fno(
    root: Path, field: str, subsample: int, epochs: int, ndim: int, seed: int = 0
) -> torch.nn.Module:
    """neuraloperator's FNO for one record interval, trained on train-split pairs."""
    from neuralop.models import FNO

    torch.manual_seed(seed)
    ds = open_windows(
        root, "train", input_steps=1, output_steps=1, stride=16, field=field, subsample=subsample
    )
    pairs = [ds[i] for i in range(len(ds))]
    x = torch.stack([p["x"] for p in pairs])
    y = torch.stack([p["y"] for p in pairs])
    mean, std = float(x.mean()), float(x.std())
    modes = (16,) if ndim == 1 else (12, 12)
    model = FNO(n_modes=modes, hidden_channels=32, in_channels=1, out_channels=1, n_layers=4)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * ((len(x) + 63) // 64))
    for _ in range(epochs):
        for batch in torch.randperm(len(x)).split(64):
            pred = model((x[batch] - mean) / std) * std + mean + x[batch]
            err = (pred - y[batch]).flatten(1).norm(dim=1) / y[batch].flatten(1).norm(dim=1)
            opt.zero_grad()
            err.mean().backward()
            opt.step()
            sched.step()
    model.eval()
    return lambda u: model((u - mean) / std) * std + mean + u  # type: ignore[return-value]


def rollout(step: Any, start: torch.Tensor, steps: int) -> torch.Tensor:
    """``(B, *grid)`` -> ``(B, steps, *grid)`` by repeated one-interval steps (start included)."""
    states, u = [start], start[:, None]
    with torch.no_grad():
        for _ in range(steps - 1):
            u = step(u)
            states.append(u[:, 0])
    return torch.stack(states, dim=1)


def tune(
    run: Any, grid: dict[str, list[float]], truth: torch.Tensor, warmup: int
) -> tuple[dict, float]:
    """The setting of ``grid`` with the lowest mean error after the warm-up."""
    best, best_error = {}, float("inf")
    for values in product(*grid.values()):
        setting = dict(zip(grid, values, strict=True))
        out = run(**setting)
        error = float(np.nanmean(relative_l2_per_step(out, truth.double())[:, warmup:].numpy()))
        if error < best_error:
            best, best_error = setting, error
    return best, best_error


def at_least(low: int):
    """An argparse type: an integer >= ``low`` (one-line error otherwise)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if value < low:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}")
        return value

    return parse


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", required=True, help="an observer training run")
    p.add_argument("--also", nargs="*", default=[], help="more observer runs, the same data")
    p.add_argument("--limit", type=at_least(1), default=16, help="test trajectories")
    p.add_argument("--members", type=at_least(2), nargs="+", default=[32, 64])
    p.add_argument("--density", type=float, default=0.1)
    p.add_argument("--noise", type=float, default=0.05)
    p.add_argument("--mask", default="random")
    p.add_argument("--warmup", type=int, default=40)
    p.add_argument("--horizon", type=int, default=800)
    p.add_argument("--densities", type=float, nargs="*", default=[0.05, 0.1, 0.25])
    p.add_argument("--noises", type=float, nargs="*", default=[0.02, 0.05, 0.1])
    p.add_argument("--tune-trajectories", type=at_least(1), default=4)
    p.add_argument("--tune-horizon", type=int, default=200)
    p.add_argument("--fno-epochs", type=at_least(1), default=10)
    p.add_argument("--out", default="benchmarks/results/assimilation")
    args = p.parse_args()
    torch.manual_seed(0)
    run = Path(args.run)
    op, ckpt = load_trained(run)
    trained = ckpt["data"]
    root, field, sub = Path(trained["root"]), trained["field"], int(trained["subsample"])
    base = [f"density={args.density}", f"noise={args.noise}", f"mask={args.mask}",
            f"warmup={args.warmup}", f"horizon={args.horizon}", f"limit={args.limit}"]  # fmt: skip
    settings = load_settings(base)
    ds = trajectories(root, settings, field, sub)
    truth = stacked(ds)
    std = float(load_statistics(root, [field])["std"][field])
    noise_std = settings.noise * std
    measured, mask = draw_observations(truth, settings, std)
    mean_state = torch.full_like(truth[:, 0], float(load_statistics(root, [field])["mean"][field]))
    model = true_model(ds.path, ds.dt)
    ndim = truth.dim() - 2

    # tune the classical filters on valid trajectories (their own observations)
    tuning = [f"horizon={args.tune_horizon}", f"limit={args.tune_trajectories}", "split=valid"]
    tune_settings = load_settings([*base[:4], *tuning, "seed=1"])
    valid = stacked(trajectories(root, tune_settings, field, sub))
    v_measured, v_mask = draw_observations(valid, tune_settings, std)
    radii = [8.0, 16.0, 32.0] if ndim == 1 else [4.0, 8.0]
    enkf_best = {}  # each ensemble size its own radius and inflation
    for members in args.members:
        v_initial = climatology(root, field, sub, valid.shape[0], members, seed=1)
        enkf_best[members], enkf_error = tune(
            lambda radius, inflation, i=v_initial: run_enkf(
                model, i, v_measured, v_mask, noise_std, radius, inflation
            ),
            {"radius": radii, "inflation": [1.0, 1.02, 1.05]}, valid, args.warmup,
        )  # fmt: skip
        print(
            f"EnKF-{members} tuned on {valid.shape[0]} valid trajectories: "
            f"{enkf_best[members]} ({enkf_error:.3e})"
        )
    v_mean = torch.full_like(valid[:, 0], float(mean_state.flatten()[0]))
    oi_best, oi_error = tune(
        lambda background, length: run_oi(
            model, v_mean, v_measured, v_mask, noise_std, background * std, length
        ),
        {"background": [0.03, 0.1, 0.3], "length": [0.5, 1.0, 2.0]}, valid, args.warmup,
    )  # fmt: skip
    print(f"OI tuned on {valid.shape[0]} valid trajectories: {oi_best} ({oi_error:.3e})")

    start = time.perf_counter()
    fno = train_fno(root, field, sub, args.fno_epochs, ndim)
    fno_seconds = time.perf_counter() - start
    methods = observer_methods(op, settings.warmup, settings.batch_size, torch.device("cpu"))
    for other in map(Path, args.also):
        other_op, other_ckpt = load_trained(other)
        if Path(other_ckpt["data"]["root"]) != root or other_ckpt["data"]["field"] != field:
            raise UserError(f"--also {other}: trained on other data than {run}")
        other_methods = observer_methods(
            other_op, settings.warmup, settings.batch_size, torch.device("cpu")
        )
        methods[f"observer ({other.name})"] = other_methods["observer"]
    methods["fno"] = lambda _y, _m: rollout(fno, truth[:, 0], truth.shape[1])
    for members in args.members:
        initial = climatology(root, field, sub, truth.shape[0], members, seed=2)
        methods[f"enkf-{members}"] = lambda y, m, i=initial, members=members: run_enkf(
            model, i, y, m, noise_std, **enkf_best[members]
        ).float()
    methods["oi"] = lambda y, m: run_oi(
        model, mean_state, y, m, noise_std, oi_best["background"] * std, oi_best["length"]
    ).float()
    summaries, estimates = compare_methods(methods, truth, measured, mask, settings.warmup, ds.dt)

    sweep = {}
    observer_only = {"observer": methods["observer"]}
    for density, noise in [(d, args.noise) for d in args.densities] + [
        (args.density, n) for n in args.noises
    ]:
        s = load_settings([f"density={density}", f"noise={noise}", *base[2:]])
        y, m = draw_observations(truth, s, std)
        summary, _ = compare_methods(observer_only, truth, y, m, s.warmup, ds.dt)
        sweep[f"density={density:g} noise={noise:g}"] = summary["observer"]["horizon_mean"]

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"assimilation_{ckpt['data']['field']}_{ds.path.stem}"
    times = np.arange(truth.shape[1]) * ds.dt
    figures = assimilation_figures(
        stem, summaries, estimates, truth, times, settings.warmup, domain_length(ds.path, 0),
        f"{ds.path.stem}: {settings.density:g} observed, noise {settings.noise:g} std",
    )  # fmt: skip
    report = {
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "date": time.strftime("%Y-%m-%d"),
        "run": str(run),
        "data": str(ds.path),
        "trajectories": int(truth.shape[0]),
        "settings": settings.model_dump(),
        "tuned": {**{f"enkf-{k}": v for k, v in enkf_best.items()}, "oi": oi_best},
        "fno_training_seconds": fno_seconds,
        "methods": {
            k: {kk: v for kk, v in s.items() if kk not in ("mean", "std", "median")}
            for k, s in summaries.items()
        },
        "curves": {k: s["mean"] for k, s in summaries.items()},
        "sweep": sweep,
        "figures": figures,
    }
    (stem.with_suffix(".json")).write_text(json.dumps(report, indent=2) + "\n")
    horizons = list(next(iter(summaries.values()))["at"])
    print(
        f"\n{truth.shape[0]} trajectories, {settings.density:g} observed ({settings.mask}), "
        f"noise {settings.noise:g} std, warm-up {settings.warmup} + horizon {settings.horizon} "
        f"steps of {ds.dt:g}\n"
    )
    print(
        "| method | mean rel. L2 over the horizon | "
        + " | ".join(f"t = {h}" for h in horizons)
        + " | ms per step |"
    )
    print("|---|---|" + "---|" * len(horizons) + "---|")
    for name, s in summaries.items():
        cells = " | ".join(f"{v:.3e}" for v in s["at"].values())
        print(f"| {name} | {s['horizon_mean']:.3e} | {cells} | {s['seconds_per_step'] * 1e3:.2f} |")
    print("\nobserver, mean rel. L2 over the horizon:")
    for key, value in sweep.items():
        print(f"  {key}: {value:.3e}")
    print(f"\nreport: {stem.with_suffix('.json')}\nfigures: {', '.join(figures)}")


if __name__ == "__main__":
    try:
        main()
    except UserError as err:  # bad settings, run or data: one line, exit 2
        raise SystemExit(f"assimilation.py: {err}") from None
