"""Figures of training runs and evaluations (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_curves(rows: list[dict[str, Any]], out: str | Path) -> Path:
    """Training loss and validation errors per epoch (log scale), from metrics.csv rows."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    epochs = [int(r["epoch"]) for r in rows]
    for key, label in (
        ("train_loss", "train loss"),
        ("valid_l2", "valid rel. L2"),
        ("valid_h1", "valid rel. H1"),
    ):
        values = [float(r[key]) for r in rows]
        if values:
            ax.semilogy(epochs, values, marker="o" if len(values) < 30 else None, label=label)
    ax.set_xlabel("epoch")
    ax.set_ylabel("relative error")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_predictions(
    x: np.ndarray, y: np.ndarray, pred: np.ndarray, errors: np.ndarray, out: str | Path, title: str
) -> Path:
    """One row per sample: input (first channel), truth, prediction, |error| (first output).

    Args:
        x: ``(n, C_in, X, Y)``; y, pred: ``(n, C_out, X, Y)``; errors: ``(n,)`` relative L2.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    n = x.shape[0]
    fig, axes = plt.subplots(n, 4, figsize=(12.8, 2.9 * n), squeeze=False)
    for row in range(n):
        truth, guess = y[row, 0], pred[row, 0]
        low, high = float(min(truth.min(), guess.min())), float(max(truth.max(), guess.max()))
        panels = (
            (x[row, 0], "input", "viridis", None, None),
            (truth, "truth", "magma", low, high),
            (guess, "prediction", "magma", low, high),
            (np.abs(guess - truth), f"|error| (rel. L2 {errors[row]:.2e})", "inferno", None, None),
        )
        for col, (data, name, cmap, vmin, vmax) in enumerate(panels):
            ax = axes[row, col]
            image = ax.imshow(
                data.T, origin="lower", extent=(0, 1, 0, 1), cmap=cmap, vmin=vmin, vmax=vmax
            )
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
            ax.set_title(f"sample {row}: {name}", fontsize=9)
            ax.set_xticks([0, 1])
            ax.set_yticks([0, 1])
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def plot_error_histogram(errors: dict[str, np.ndarray], out: str | Path, title: str) -> Path:
    """Histogram of per-sample relative errors (one series per metric), log-spaced bins."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    values = np.concatenate([v[v > 0] for v in errors.values()]) if errors else np.ones(1)
    low, high = float(values.min()), float(values.max())
    bins = np.geomspace(low, high * 1.0001, 25) if high > low > 0 else 20
    for name, v in errors.items():
        ax.hist(v, bins=bins, alpha=0.6, label=f"{name} (mean {v.mean():.2e})")
    if isinstance(bins, np.ndarray):
        ax.set_xscale("log")
    ax.set_xlabel("relative error per sample")
    ax.set_ylabel("samples")
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
