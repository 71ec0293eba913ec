"""What every evaluation (evaluate, rollout, compare, refine) shares: loading a trained run,
the head of its report, summaries of per-sample values, and writing the report as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from datagen.core.errors import UserError
from datagen.core.files import write_text_atomic
from opsolve.models.registry import build_operator, load_state
from opsolve.train.checkpoint import load_checkpoint, run_checkpoint

CHECKPOINTS = ("best", "last", "refined")


def _trained_model_name(run: Path) -> str | None:
    """``model.name`` of the run's config.yaml (None when there is none or it is unreadable)."""
    try:
        data = yaml.safe_load((run / "config.yaml").read_text())
        return str(data["model"]["name"])
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        return None


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


def write_report(path: Path, report: dict[str, Any]) -> Path:
    """Write a report as indented JSON, atomically."""
    return write_text_atomic(path, json.dumps(report, indent=2) + "\n")


def load_trained(run: str | Path, which: str = "best") -> tuple[torch.nn.Module, dict[str, Any]]:
    """The trained operator (physical units in and out, eval mode, CPU) and its checkpoint."""
    if which not in CHECKPOINTS:
        raise UserError(f"--checkpoint must be one of {', '.join(CHECKPOINTS)}, got {which!r}")
    path = run_checkpoint(run, which)
    run = Path(run)
    ckpt = load_checkpoint(path)
    model = ckpt["model"]
    trained = _trained_model_name(run)
    if trained is not None and trained != model["name"]:
        raise UserError(
            f"{path} holds a {model['name']!r} model, but {run}/config.yaml trained {trained!r}: "
            "the checkpoint belongs to another run"
        )
    op = build_operator(model["name"], dict(model["params"]), None, ckpt["data"], (False, False))
    load_state(op, ckpt["state"], path)
    op.eval()
    return op, ckpt
