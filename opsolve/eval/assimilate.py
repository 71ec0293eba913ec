"""``opsolve assimilate RUN``: a trained observer against its free predictor on whole
trajectories with sparse noisy observations.

The observer (:mod:`opsolve.models.observer`; Singh et al., ICLR 2024) starts every test
trajectory from the field's mean at record 0 and assimilates observations drawn with the
settings below (:mod:`opsolve.observations`, seeded, so every method and every call sees the
same ones). Two runs of the same model are compared:

- ``observer``: corrections at every step of ``warmup + horizon``;
- ``predictor``: corrections during the warm-up only, then the predictor runs freely.

Reported (``RUN/assimilate_<split>_<res>_<mask>_d<density>_n<noise>.json``): per method the
relative L2 error of every step (mean, std and median over trajectories), its mean over the
horizon (the steps after the warm-up) and at a few horizons, and the seconds per assimilation
step (one step of the whole batch of trajectories); and the predictor's own one-step error from
the true states over the horizon, beside the true change over one step (``one_step``).
Figures: the error against time of every method on one axis; for 1-D data space-time images of
truth, estimate and error, for 2-D data snapshots. The baselines with the true numerical model
(EnKF, optimal interpolation) and an autoregressive FNO are in ``benchmarks/assimilation.py``,
which reuses these functions.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np
import torch
from pydantic import Field

from datagen.core.config import Int, StrictModel, apply_overrides, validate
from datagen.core.device import resolve_device
from datagen.core.errors import UserError
from opsolve.data import TrajectoryDataset, load_statistics, open_windows
from opsolve.eval.report import load_trained, report_header, write_report
from opsolve.models.wrapper import ObserverOperator
from opsolve.norms import relative_l2_per_step
from opsolve.observations import observation_masks, observe, seeded


class AssimilationSettings(StrictModel):
    """The ``key=value`` settings of ``opsolve assimilate`` (module docstring)."""

    density: float = Field(0.1, ge=0.0, le=1.0, description="fraction of nodes observed")
    noise: float = Field(
        0.05, ge=0.0, le=100.0, description="noise std as a fraction of the field's std"
    )
    mask: Literal["random", "sensors", "stripes"] = Field("random", description="mask kind")
    availability: float = Field(
        1.0, ge=0.0, le=1.0, description="probability that a step has observations"
    )
    warmup: Int = Field(40, ge=0, le=10**6, description="steps before the horizon is scored")
    horizon: Int = Field(800, ge=1, le=10**6, description="scored steps after the warm-up")
    split: Literal["train", "valid", "test"] = Field("test", description="trajectories used")
    limit: Int | None = Field(None, ge=1, description="first N trajectories (null: all)")
    seed: Int = Field(0, ge=0, lt=2**62, description="seed of the observations")
    batch_size: Int = Field(64, ge=1, le=65536, description="trajectories per batch")

    @property
    def steps(self) -> int:
        return self.warmup + self.horizon


def load_settings(overrides: list[str] | None) -> AssimilationSettings:
    """Defaults with ``key=value`` overrides, validated (one-line errors)."""
    data = apply_overrides(AssimilationSettings().model_dump(), list(overrides or []))
    return validate(AssimilationSettings, data, "assimilate")


def trajectories(
    root: str | Path, settings: AssimilationSettings, field: str, subsample: int
) -> TrajectoryDataset:
    """One window of ``warmup + horizon`` records per trajectory, from record 0."""
    probe = open_windows(
        root, settings.split, input_steps=1, output_steps=1, stride=1, field=field,
        subsample=subsample, limit=settings.limit,
    )  # fmt: skip
    if settings.steps > probe.records:
        raise UserError(
            f"warmup + horizon = {settings.steps} steps reach beyond the {probe.records} "
            f"records of the {settings.split} trajectories in {probe.path}: measurement times "
            f"must lie within the trajectory (at most {probe.records} steps)"
        )
    return open_windows(
        root, settings.split, input_steps=1, output_steps=settings.steps - 1, stride=10**9,
        field=field, subsample=subsample, limit=settings.limit,
    )  # fmt: skip


def stacked(ds: TrajectoryDataset) -> torch.Tensor:
    """All windows of ``ds`` as one tensor ``(B, T, *grid)``."""
    return torch.stack([torch.cat([w["x"], w["y"]]) for w in (ds[i] for i in range(len(ds)))])


def draw_observations(
    truth: torch.Tensor, settings: AssimilationSettings, field_std: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Measurements and masks ``(B, T, *grid)`` for ``settings`` (seeded by ``settings.seed``)."""
    generator = seeded(settings.seed)
    mask = observation_masks(
        truth.shape[0], truth.shape[1], truth.shape[2:], settings.density, settings.mask,
        settings.availability, generator,
    )  # fmt: skip
    return observe(truth, mask, settings.noise * field_std, generator), mask


Method = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def timed(method: Method, measured: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Run ``method(measured, mask) -> estimates (B, T, *grid)``; seconds per step."""
    start = time.perf_counter()
    estimates = method(measured, mask)
    return estimates, (time.perf_counter() - start) / measured.shape[1]


def observer_methods(
    op: ObserverOperator, warmup: int, batch_size: int, device: torch.device
) -> dict[str, Method]:
    """``observer`` (always corrected) and ``predictor`` (free after the warm-up)."""

    def run(corrected: Callable[[int], torch.Tensor]) -> Method:
        def method(measured: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            parts = []
            with torch.no_grad():
                for lo in range(0, measured.shape[0], batch_size):
                    y = measured[lo : lo + batch_size].to(device)
                    m = mask[lo : lo + batch_size].to(device)
                    parts.append(op(y, m, correct=corrected(y.shape[1]))[0].cpu())
            return torch.cat(parts)

        return method

    return {
        "observer": run(lambda steps: torch.ones(steps, dtype=torch.bool)),
        "predictor": run(lambda steps: torch.arange(steps) < warmup),
    }


def one_step_errors(
    op: ObserverOperator, truth: torch.Tensor, warmup: int, batch_size: int, device: torch.device
) -> dict[str, float]:
    """The predictor alone, one interval ahead from the true states: the mean relative L2
    error of ``u_{k-1} + F(u_{k-1})`` against ``u_k`` over the horizon's steps ``k >= warmup``
    (``forecast``), beside the true change ``||u_k - u_{k-1}|| / ||u_k||`` (``change``, the error
    of persistence). ``truth`` ``(B, T, *grid)``."""
    first = max(warmup, 1)
    before, after = truth[:, first - 1 : -1], truth[:, first:]
    with torch.no_grad():
        forecast = torch.cat([
            op.one_step(before[lo : lo + batch_size].to(device)).cpu()
            for lo in range(0, truth.shape[0], batch_size)
        ])  # fmt: skip
    return {
        "forecast": float(relative_l2_per_step(forecast.double(), after.double()).mean()),
        "change": float(relative_l2_per_step(before.double(), after.double()).mean()),
    }


def error_summary(
    errors: torch.Tensor, warmup: int, dt: float, seconds_per_step: float
) -> dict[str, Any]:
    """Per-step relative errors ``(B, T)`` -> curves, horizon means, errors at a few horizons.

    Non-finite errors (a diverged estimate) are kept as NaN in the curves and counted.
    """
    e = errors.double().numpy()
    finite = np.isfinite(e)
    e = np.where(finite, e, np.nan)
    scored = e[:, warmup:]
    horizon = scored.shape[1]
    marks = sorted({max(1, round(horizon * f)) for f in (0.1, 0.25, 0.5, 1.0)})
    with np.errstate(invalid="ignore"):
        mean = np.nanmean(e, axis=0) if finite.any() else np.full(e.shape[1], np.nan)
    return {
        "mean": mean.tolist(),
        "std": np.nanstd(e, axis=0).tolist() if finite.any() else [math.nan] * e.shape[1],
        "median": np.nanmedian(e, axis=0).tolist() if finite.any() else [math.nan] * e.shape[1],
        "horizon_mean": float(np.nanmean(scored)) if np.isfinite(scored).any() else math.nan,
        "horizon_final": float(np.nanmean(scored[:, -1])) if horizon else math.nan,
        "at": {f"{k * dt:g}": float(np.nanmean(scored[:, k - 1])) for k in marks},
        "diverged": int((~finite).any(axis=1).sum()),
        "seconds_per_step": seconds_per_step,
    }


def compare_methods(
    methods: dict[str, Method],
    truth: torch.Tensor,
    measured: torch.Tensor,
    mask: torch.Tensor,
    warmup: int,
    dt: float,
) -> tuple[dict[str, dict[str, Any]], dict[str, torch.Tensor]]:
    """Every method on the same observations: (summaries, estimates ``(B, T, *grid)``)."""
    summaries, estimates = {}, {}
    for name, method in methods.items():
        out, seconds = timed(method, measured, mask)
        errors = relative_l2_per_step(out.double(), truth.double())
        summaries[name] = error_summary(errors, warmup, dt, seconds)
        estimates[name] = out
    return summaries, estimates


def domain_length(path: Path, index: int) -> float:
    """The stored domain length of trajectory ``index`` (1-D problems), else 1."""
    with h5py.File(path, "r") as f:
        group = f.get("provenance")
        if group is not None and "domain_length" in group:
            return float(np.asarray(group["domain_length"])[index])
    return 1.0


def assimilation_figures(
    out_stem: Path,
    summaries: dict[str, dict[str, Any]],
    estimates: dict[str, torch.Tensor],
    truth: torch.Tensor,
    times: np.ndarray,
    warmup: int,
    length: float,
    title: str,
) -> list[str]:
    """The error-against-time figure of all methods, and the first trajectory's fields."""
    from opsolve.plots import plot_assimilation_curves, plot_snapshots, plot_space_time

    curves = {k: (np.asarray(s["mean"]), np.asarray(s["std"])) for k, s in summaries.items()}
    files = [
        plot_assimilation_curves(
            times,
            curves,
            float(times[min(warmup, len(times) - 1)]),
            out_stem.with_name(out_stem.name + "_curves.png"),
            title,
        )  # fmt: skip
    ]
    first = next(iter(estimates))
    estimate, target = estimates[first][0].numpy(), truth[0].numpy()
    if truth.dim() == 3:
        files.append(
            plot_space_time(
                times,
                length,
                target,
                estimate,
                out_stem.with_name(out_stem.name + "_space_time.png"),
                f"{title}: {first}",
                first,
            )  # fmt: skip
        )
    else:
        steps = sorted({0, warmup, (warmup + truth.shape[1]) // 2, truth.shape[1] - 1})
        files.append(
            plot_snapshots(
                target,
                estimate,
                steps,
                out_stem.with_name(out_stem.name + "_snapshots.png"),
                f"{title}: {first}",
                first,
            )  # fmt: skip
        )
    return [str(f) for f in files]


def report_name(settings: AssimilationSettings, resolution: int) -> str:
    """``assimilate_<split>_<res>_<mask>_d<density>_n<noise>``."""
    s = settings
    return f"assimilate_{s.split}_{resolution}_{s.mask}_d{s.density:g}_n{s.noise:g}"


def assimilate_run(
    run: str | Path,
    data: str | Path | None = None,
    overrides: list[str] | None = None,
    checkpoint: str = "best",
    device: str = "auto",
    figures: bool = True,
) -> dict[str, Any]:
    """``opsolve assimilate RUN``: the report (module docstring) plus ``json`` and ``figures``."""
    settings = load_settings(overrides)
    run = Path(run)
    op, ckpt = load_trained(run, checkpoint)
    if not isinstance(op, ObserverOperator):
        raise UserError(
            f"{run}: holds a {ckpt['model']['name']!r} model; assimilate needs an 'observer' run"
        )
    trained = ckpt["data"]
    root = Path(data) if data else Path(trained["root"])
    subsample = int(trained["subsample"])
    ds = trajectories(root, settings, trained["field"], subsample)
    field_std = float(load_statistics(root, [ds.field])["std"][ds.field]) or 1.0
    truth = stacked(ds)
    measured, mask = draw_observations(truth, settings, field_std)
    dev = resolve_device(device, "--device")
    op.to(dev)
    methods = observer_methods(op, settings.warmup, settings.batch_size, dev)
    summaries, estimates = compare_methods(methods, truth, measured, mask, settings.warmup, ds.dt)
    report = {
        **report_header(run, checkpoint, ckpt, root, settings.split, subsample, ds.resolution),
        "settings": settings.model_dump(),
        "trajectories": int(truth.shape[0]),
        "dt": ds.dt,
        "field_std": field_std,
        "observed_fraction": float(mask.double().mean()),
        "methods": summaries,
        "one_step": one_step_errors(op, truth, settings.warmup, settings.batch_size, dev),
    }
    stem = run / "figures" / report_name(settings, ds.resolution)
    times = np.arange(truth.shape[1]) * ds.dt
    report["figures"] = (
        assimilation_figures(
            stem,
            summaries,
            estimates,
            truth,
            times,
            settings.warmup,
            domain_length(ds.path, 0),
            f"{ds.field}, {settings.density:g} observed ({settings.mask}), noise "
            f"{settings.noise:g} std",
        )  # fmt: skip
        if figures
        else []
    )
    path = write_report(run / f"{report_name(settings, ds.resolution)}.json", report)
    report["json"] = str(path)
    return report
