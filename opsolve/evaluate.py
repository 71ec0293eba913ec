"""Evaluate a trained run on a dataset split: metrics to JSON, figures to the run directory.

(Runs trained on trajectories go to :func:`opsolve.rollout.evaluate_trajectory_run`: rollout
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

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datagen.errors import UserError
from opsolve.train.assemble import (
    build_operator,
    check_fits,
    grid_spacing,
    load_state,
    open_split,
)
from opsolve.train.checkpoint import load_checkpoint
from opsolve.train.losses import relative_h1, relative_l2


def summarize(values: np.ndarray) -> dict[str, float]:
    """Mean, std, median, min and max of per-sample values ``(n,)`` as plain floats."""
    return {
        "mean": float(values.mean()),
        "std": float(values.std()),
        "median": float(np.median(values)),
        "min": float(values.min()),
        "max": float(values.max()),
    }


def report_header(
    run: Path, which: str, ckpt: dict[str, Any], root: Path, split: str, subsample: int, res: int
) -> dict[str, Any]:
    """The keys every evaluation report starts with: run, checkpoint, model, data, grid."""
    return {
        "run": str(run),
        "checkpoint": {"which": which, "epoch": int(ckpt["epoch"]), "step": int(ckpt["step"])},
        "model": ckpt["model"]["name"],
        "data": str(root),
        "split": split,
        "subsample": subsample,
        "resolution": res,
        "trained_resolution": int(ckpt["data"]["resolution"]),
    }


def write_text_atomic(path: Path, text: str) -> Path:
    """Write a text file atomically (temporary file, then rename): never half written."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def write_report(path: Path, report: dict[str, Any]) -> Path:
    """Write a report as indented JSON, atomically."""
    return write_text_atomic(path, json.dumps(report, indent=2) + "\n")


def _device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available")
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def load_trained(run: str | Path, which: str = "best") -> tuple[torch.nn.Module, dict[str, Any]]:
    """The trained operator (physical units in and out, eval mode, CPU) and its checkpoint."""
    run = Path(run)
    if not run.is_dir():
        raise UserError(f"run directory {run} does not exist")
    if which not in ("best", "last", "refined"):
        raise UserError(f"--checkpoint must be best, last or refined, got {which!r}")
    path = run / "checkpoints" / f"{which}.pt"
    if not path.is_file():
        raise UserError(f"{run}: no {which} checkpoint (expected {path}); has training run?")
    ckpt = load_checkpoint(path)
    model = ckpt["model"]
    op = build_operator(model["name"], dict(model["params"]), None, ckpt["data"], (False, False))
    load_state(op, ckpt["state"], path)
    op.eval()
    return op, ckpt


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

    Runs trained on trajectories are evaluated as rollouts (:mod:`opsolve.rollout`; ``horizon``
    output steps, default the trained ones, in one call or ``autoregressive`` windows).
    Returns the report written to JSON, plus ``json`` and ``figures`` (paths).
    """
    if batch_size < 1 or figures < 0:
        raise UserError("--batch-size must be >= 1 and --figures >= 0")
    run = Path(run)
    op, ckpt = load_trained(run, checkpoint)
    trained = ckpt["data"]
    if trained.get("kind") == "trajectory":
        from opsolve.rollout import evaluate_trajectory_run

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
            _device(device),
            horizon,
            autoregressive,
        )
    if horizon is not None or autoregressive:
        raise UserError("--horizon and --autoregressive apply to runs trained on trajectories")
    root = Path(data) if data is not None else Path(trained["root"])
    r = int(subsample) if subsample is not None else int(trained["subsample"])
    ds = open_split(root, split, r, trained["inputs"], trained["outputs"], None)
    dev = _device(device)
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

    from opsolve.train.plots import plot_error_histogram, plot_predictions

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
