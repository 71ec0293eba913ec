"""Evaluate a trained run on a dataset split: metrics to JSON, figures to the run directory.

(Runs trained on trajectories go to :func:`opsolve.eval.rollout.evaluate_trajectory_run`: rollout
error curves, energy spectra and vorticity snapshots.)

``evaluate_run(RUN, data=DIR, split="test", subsample=R)`` loads ``RUN/checkpoints/best.pt``
(or ``last.pt``), rebuilds the model from the checkpoint's model config through the registry,
predicts every sample of the split in physical units and writes

- ``RUN/eval_<split>_<res>.json``: mean / std / median / min / max and the per-sample lists of
  the relative L2 and H1 errors (the losses of :mod:`opsolve.train.losses`);
- ``RUN/figures/eval_<split>_<res>_samples.png`` (input / truth / prediction / error of the
  first few samples) and ``..._hist.png`` (histogram of the per-sample errors).

``<res>`` is the evaluated resolution. A ``subsample`` other than the training one evaluates at
another resolution (zero-shot super-resolution for resolution-agnostic models such as FNO);
the input normalization stays the training one (stored in the checkpoint).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datagen.core.device import resolve_device
from datagen.core.errors import UserError
from datagen.core.files import check_writable_dir
from opsolve.data import grid_spacing, open_split
from opsolve.eval.report import load_trained, report_header, summarize, write_report
from opsolve.eval.rollout import evaluate_trajectory_run
from opsolve.models.registry import check_fits
from opsolve.plots import plot_error_histogram, plot_predictions
from opsolve.train.losses import relative_h1, relative_l2


def evaluate_run(
    run: str | Path,
    data: str | Path | None = None,
    split: str = "test",
    subsample: int | None = None,
    checkpoint: str = "best",
    batch_size: int = 8,
    figures: int = 4,
    device: str = "auto",
    horizon: int | None = None,
    autoregressive: bool = False,
) -> dict[str, Any]:
    """Evaluate ``run`` on ``split`` of ``data`` (default: its training data); see module doc.

    Runs trained on trajectories are evaluated as rollouts (:mod:`opsolve.eval.rollout`; ``horizon``
    output steps, default the trained ones, in one call or ``autoregressive`` windows).
    Returns the report written to JSON, plus ``json`` and ``figures`` (paths).
    """
    if batch_size < 1 or figures < 0:
        raise UserError("--batch-size must be >= 1 and --figures >= 0")
    run = Path(run)
    op, ckpt = load_trained(run, checkpoint)
    check_writable_dir(run, "run directory")
    trained = ckpt["data"]
    if trained.get("kind") == "trajectory":
        return evaluate_trajectory_run(
            run,
            op,
            ckpt,
            data,
            split,
            subsample,
            checkpoint,
            batch_size,
            figures,
            resolve_device(device, "--device"),
            horizon,
            autoregressive,
        )
    if horizon is not None or autoregressive:
        raise UserError("--horizon and --autoregressive apply to runs trained on trajectories")
    root = Path(data) if data is not None else Path(trained["root"])
    r = int(subsample) if subsample is not None else int(trained["subsample"])
    ds = open_split(root, split, r, trained["inputs"], trained["outputs"], None)
    dev = resolve_device(device, "--device")
    op.to(dev)
    check_fits(op, ds[0], ckpt["model"]["name"], dev)
    spacing = grid_spacing(ds)

    start = time.perf_counter()
    l2, h1, shown = [], [], {"x": [], "y": [], "pred": []}
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=False)
    with torch.no_grad():
        for batch in loader:
            x, y = batch["x"].to(dev), batch["y"].to(dev)
            pred = op(x).float()
            l2.append(relative_l2(pred, y).cpu())
            h1.append(relative_h1(pred, y, spacing).cpu())
            room = figures - len(shown["x"])
            for key, value in (("x", x), ("y", y), ("pred", pred)):
                shown[key].extend(value[:room].cpu().numpy())
    seconds = time.perf_counter() - start
    l2_all = torch.cat(l2).double().numpy()  # summaries in float64
    h1_all = torch.cat(h1).double().numpy()

    res = ds.resolution
    report = {
        **report_header(run, checkpoint, ckpt, root, split, r, res),
        "samples": int(l2_all.size),
        "seconds": seconds,
        "relative_l2": summarize(l2_all),
        "relative_h1": summarize(h1_all),
        "per_sample": {"relative_l2": l2_all.tolist(), "relative_h1": h1_all.tolist()},
    }
    stem = f"eval_{split}_{res}"
    out = write_report(run / f"{stem}.json", report)

    title = (
        f"{ckpt['model']['name']} on {split} at {res}x{res} (trained at {trained['resolution']})"
    )
    paths = []
    if shown["x"]:
        paths.append(
            plot_predictions(
                np.stack(shown["x"]),
                np.stack(shown["y"]),
                np.stack(shown["pred"]),
                l2_all[: len(shown["x"])],
                run / "figures" / f"{stem}_samples.png",
                title,
            )
        )
    paths.append(
        plot_error_histogram(
            {"rel. L2": l2_all, "rel. H1": h1_all}, run / "figures" / f"{stem}_hist.png", title
        )
    )
    return {**report, "json": str(out), "figures": [str(p) for p in paths]}
