"""Rollout evaluation of trajectory operators: error curves, energy spectra, snapshots.

A trained trajectory run (SFNO, Cao, Brarda, Li, Xi, ICLR 2025, or the FNO-3D baseline) is
evaluated on one window per trajectory of a split (the first ``input_steps`` frames in, the next
``output_steps`` out), either

- trajectory-to-trajectory: one call predicts all output frames (any number for SFNO), or
- autoregressively: windows of the trained ``output_steps`` are chained, the last
  ``input_steps`` predicted frames feeding the next call (for horizons beyond the trained one).

Reported (``RUN/eval_<split>_<res>.json``): relative Bochner L2 / H1 per trajectory, the
relative L2 error of every output step (the curve), and for Navier-Stokes data the ``H^-1``
Bochner norm of the prediction's vorticity residual; figures: the error curve, energy spectra of
prediction vs truth (last output step, mean over trajectories) and vorticity snapshots side by
side. Another ``subsample`` or a finer dataset (``data``) gives zero-shot super-resolution.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datagen.core.errors import UserError
from opsolve.data import open_windows, split_physics
from opsolve.eval.report import report_header, summarize, write_report
from opsolve.norms import relative_bochner, relative_bochner_l2, relative_l2_per_step
from opsolve.plots import plot_error_curves, plot_snapshots, plot_spectra
from opsolve.residual import residual_norm, with_context


def energy_spectrum(w: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Shell-summed kinetic energy ``E(k)`` of vorticity fields on the unit torus.

    ``E(k) = 1/2 sum_{round(|k|) = k} |w_k|^2 / (4 pi^2 |k|^2)`` (velocity from vorticity,
    Parseval, coefficients ``w_k`` of ``norm="forward"``). ``w``: ``(..., n, n)`` ->
    (``k = 1 .. n // 2``, ``E`` of shape ``(..., n // 2)``).
    """
    n = w.shape[-1]
    coeff = torch.fft.fft2(w.double(), norm="forward")
    k = torch.fft.fftfreq(n, d=1.0 / n, dtype=torch.float64)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    energy = 0.5 * coeff.abs() ** 2 / torch.where(k2 > 0, 4 * math.pi**2 * k2, torch.inf)
    shell = torch.round(k2.sqrt()).long().flatten()
    flat = energy.flatten(-2)
    spectrum = torch.zeros(*flat.shape[:-1], int(shell.max()) + 1, dtype=torch.float64)
    spectrum.index_add_(-1, shell, flat)
    half = n // 2
    return np.arange(1, half + 1), spectrum[..., 1 : half + 1].numpy()


def autoregressive(op: torch.nn.Module, x: torch.Tensor, steps: int, window: int) -> torch.Tensor:
    """Chain calls of ``window`` output frames: ``(B, T_in, X, Y) -> (B, steps, X, Y)``."""
    frames, context = [], x
    produced = 0
    while produced < steps:
        out = op(context, out_steps=window)
        frames.append(out)
        produced += window
        context = torch.cat([context, out], dim=1)[:, -x.shape[1] :]
    return torch.cat(frames, dim=1)[:, :steps]


def evaluate_trajectory_run(
    run: Path,
    op: torch.nn.Module,
    ckpt: dict[str, Any],
    data: str | Path | None,
    split: str,
    subsample: int | None,
    checkpoint: str,
    batch_size: int,
    figures: int,
    device: torch.device,
    horizon: int | None = None,
    chained: bool = False,
) -> dict[str, Any]:
    """Evaluate a trajectory run (module docstring); returns the report plus paths."""
    trained = ckpt["data"]
    root = Path(data) if data is not None else Path(trained["root"])
    r = int(subsample) if subsample is not None else int(trained["subsample"])
    window_out = int(trained["output_steps"])
    steps = int(horizon) if horizon is not None else window_out
    if steps < 1:
        raise UserError(f"--horizon must be >= 1, got {steps}")
    window = {
        "input_steps": int(trained["input_steps"]),
        "output_steps": steps,
        "stride": 10**9,  # one window per trajectory
        "field": trained["field"],
    }
    ds = open_windows(root, split, **window, subsample=r)
    physics = split_physics(ds)
    op.to(device)
    start = time.perf_counter()
    parts: dict[str, list] = {"l2": [], "h1": [], "curve": [], "residual": [], "truth_res": []}
    shown_truth, shown_pred = [], []
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False)
    with torch.no_grad():
        for batch in loader:
            x, y = batch["x"].to(device), batch["y"].to(device)
            if chained:
                pred = autoregressive(op, x, steps, window_out).float()
            else:
                pred = op(x, out_steps=steps).float()
            parts["l2"].append(relative_bochner_l2(pred, y).cpu())
            parts["h1"].append(relative_bochner(pred, y, 1.0).cpu())
            parts["curve"].append(relative_l2_per_step(pred, y).cpu())
            if physics is not None and steps >= 3:
                parts["residual"].append(residual_norm(with_context(x, pred), physics).cpu())
                parts["truth_res"].append(residual_norm(with_context(x, y), physics).cpu())
            shown_truth.extend(y.cpu().numpy())
            shown_pred.extend(pred.cpu().numpy())
    seconds = time.perf_counter() - start
    l2 = torch.cat(parts["l2"]).double().numpy()
    h1 = torch.cat(parts["h1"]).double().numpy()
    curve = torch.cat(parts["curve"]).double().mean(0).numpy()
    res = ds.resolution

    report: dict[str, Any] = {
        **report_header(run, checkpoint, ckpt, root, split, r, res),
        "samples": int(l2.size),
        "output_steps": steps,
        "mode": "autoregressive" if chained else "trajectory",
        "seconds": seconds,
        "relative_l2": summarize(l2),
        "relative_h1": summarize(h1),
        "per_step_relative_l2": curve.tolist(),
        "per_sample": {"relative_l2": l2.tolist(), "relative_h1": h1.tolist()},
    }
    if parts["residual"]:
        report["residual_hm1"] = summarize(torch.cat(parts["residual"]).double().numpy())
        report["truth_residual_hm1"] = summarize(torch.cat(parts["truth_res"]).double().numpy())
    stem = f"eval_{split}_{res}" + ("_chained" if chained else "")
    out = write_report(run / f"{stem}.json", report)

    title = (
        f"{ckpt['model']['name']} on {split} at {res}x{res} (trained at {trained['resolution']})"
    )
    paths = [plot_error_curves({"prediction": curve}, run / "figures" / f"{stem}_error.png", title)]
    truth_all, pred_all = np.stack(shown_truth), np.stack(shown_pred)
    k, e_truth = energy_spectrum(torch.from_numpy(truth_all[:, -1]))
    _, e_pred = energy_spectrum(torch.from_numpy(pred_all[:, -1]))
    paths.append(
        plot_spectra(
            k,
            {"truth": e_truth.mean(0), "prediction": e_pred.mean(0)},
            run / "figures" / f"{stem}_spectra.png",
            f"{title}, step {steps}",
        )
    )
    shown = sorted({0, steps // 2, steps - 1})
    for i in range(min(figures, len(shown_truth))):
        paths.append(
            plot_snapshots(
                truth_all[i],
                pred_all[i],
                shown,
                run / "figures" / f"{stem}_snapshots_{i}.png",
                f"{title}: trajectory {i}",
            )
        )
    return {**report, "json": str(out), "figures": [str(p) for p in paths]}
