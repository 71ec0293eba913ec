"""Figures of training runs and evaluations (matplotlib, Agg backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _new_figure(out: str | Path, size: tuple[float, float] = (5.5, 3.6)):
    """A figure with one axis, after making sure the output folder exists."""
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    return plt.subplots(figsize=size)


def _finish_lines(fig, ax, out: str | Path, xlabel: str, ylabel: str, title: str = "") -> Path:
    """Labels, log grid, legend and title of a line plot; saved to ``out`` and closed."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return Path(out)


def plot_curves(rows: list[dict[str, Any]], out: str | Path) -> Path:
    """Training loss and validation errors per epoch (log scale), from metrics.csv rows."""
    fig, ax = _new_figure(out)
    epochs = [int(r["epoch"]) for r in rows]
    for key, label in (
        ("train_loss", "train loss"),
        ("valid_l2", "valid rel. L2"),
        ("valid_h1", "valid rel. H1"),
    ):
        values = [float(r[key]) for r in rows]
        if values:
            ax.semilogy(epochs, values, marker="o" if len(values) < 30 else None, label=label)
    return _finish_lines(fig, ax, out, "epoch", "relative error")


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
    fig, ax = _new_figure(out)
    values = np.concatenate([v[v > 0] for v in errors.values()]) if errors else np.ones(1)
    low, high = float(values.min()), float(values.max())
    bins = np.geomspace(low, high * 1.0001, 25) if high > low > 0 else 20
    for name, v in errors.items():
        ax.hist(v, bins=bins, alpha=0.6, label=f"{name} (mean {v.mean():.2e})")
    if isinstance(bins, np.ndarray):
        ax.set_xscale("log")
    return _finish_lines(fig, ax, out, "relative error per sample", "samples", title)


def plot_comparison_samples(
    x: np.ndarray, y: np.ndarray, predictions: dict[str, np.ndarray], out: str | Path
) -> Path:
    """One row per sample: input, truth, then each model's |error| on one shared colour scale.

    Args:
        x: ``(n, C_in, X, Y)``; y: ``(n, C_out, X, Y)``; predictions: label -> ``(n, C_out, X, Y)``.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    n, models = x.shape[0], list(predictions)
    cols = 2 + len(models)
    fig, axes = plt.subplots(n, cols, figsize=(3.2 * cols, 2.9 * n), squeeze=False)
    for row in range(n):
        truth = y[row, 0]
        errors = {m: np.abs(predictions[m][row, 0] - truth) for m in models}
        top = max(float(e.max()) for e in errors.values()) if errors else 1.0
        rel = {m: np.linalg.norm(e) / max(np.linalg.norm(truth), 1e-30) for m, e in errors.items()}
        panels = [(x[row, 0], "input", "viridis", None), (truth, "truth", "magma", None)]
        panels += [(errors[m], f"{m}: |error| ({rel[m]:.2e})", "inferno", top) for m in models]
        for col, (data, name, cmap, vmax) in enumerate(panels):
            ax = axes[row, col]
            image = ax.imshow(
                data.T,
                origin="lower",
                extent=(0, 1, 0, 1),
                cmap=cmap,
                vmin=None if vmax is None else 0.0,
                vmax=vmax,
            )
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
            ax.set_title(f"sample {row}: {name}", fontsize=9)
            ax.set_xticks([0, 1])
            ax.set_yticks([0, 1])
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def plot_validation_curves(curves: dict[str, list[dict[str, Any]]], out: str | Path) -> Path:
    """Validation relative L2 per epoch of several runs (metrics.csv rows per run label)."""
    fig, ax = _new_figure(out)
    for label, rows in curves.items():
        epochs = [int(r["epoch"]) for r in rows]
        ax.semilogy(epochs, [float(r["valid_l2"]) for r in rows], label=label)
    return _finish_lines(fig, ax, out, "epoch", "valid rel. L2")


def plot_refinement(report: dict[str, Any], out: str | Path) -> Path:
    """Spectral-Refiner: loss per step (one line per refinement) and the per-step relative
    error before / after, from a refine report (:func:`opsolve.eval.refine.refine_run`)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(10.5, 3.6))
    for history in report["loss_history"]:
        axes[0].semilogy(np.arange(1, len(history) + 1), history, alpha=0.7)
    axes[0].set_xlabel("refinement step")
    axes[0].set_ylabel("residual loss")
    axes[0].set_title("fine-tuning the output layer")
    for when, style in (("before", "--"), ("after", "-")):
        curve = report["per_step"][when]
        axes[1].semilogy(np.arange(1, len(curve) + 1), curve, style, label=when)
    s = report["summary"]
    axes[1].set_title(
        f"rel. L2 {s['relative_l2']['before']:.2e} -> {s['relative_l2']['after']:.2e}, "
        f"residual / {s['residual']['ratio']:.1f}",
        fontsize=9,
    )
    axes[1].set_xlabel("output step")
    axes[1].set_ylabel("relative L2 error")
    axes[1].legend()
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_error_curves(curves: dict[str, np.ndarray], out: str | Path, title: str) -> Path:
    """Relative L2 error per output step (mean over trajectories), one line per series."""
    fig, ax = _new_figure(out)
    for name, curve in curves.items():
        ax.plot(
            np.arange(1, len(curve) + 1), curve, marker="o" if len(curve) < 25 else None, label=name
        )
    ax.set_yscale("log")
    return _finish_lines(fig, ax, out, "output step", "relative L2 error", title)


def plot_spectra(
    wavenumbers: np.ndarray, spectra: dict[str, np.ndarray], out: str | Path, title: str
) -> Path:
    """Energy spectra ``E(k)`` (log-log), e.g. prediction vs truth."""
    fig, ax = _new_figure(out)
    for name, spectrum in spectra.items():
        keep = spectrum > 0
        ax.loglog(wavenumbers[keep], spectrum[keep], label=name)
    return _finish_lines(fig, ax, out, "wavenumber |k|", "energy E(k)", title)


def plot_snapshots(
    truth: np.ndarray,
    pred: np.ndarray,
    steps: list[int],
    out: str | Path,
    title: str,
    label: str = "prediction",
) -> Path:
    """Vorticity snapshots: rows truth / prediction / error, one column per output step.

    Args:
        truth, pred: ``(T_out, X, Y)`` of one trajectory; steps: 0-based output steps shown;
        label: the name of ``pred`` in the titles.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(3, len(steps), figsize=(2.9 * len(steps), 8.2), squeeze=False)
    for col, step in enumerate(steps):
        a, b = truth[step], pred[step]
        low, high = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
        for row, (data, name, cmap, vmin, vmax) in enumerate(
            (
                (a, "truth", "RdBu_r", low, high),
                (b, label, "RdBu_r", low, high),
                (np.abs(b - a), "|error|", "inferno", None, None),
            )
        ):
            ax = axes[row, col]
            image = ax.imshow(
                data.T, origin="lower", extent=(0, 1, 0, 1), cmap=cmap, vmin=vmin, vmax=vmax
            )
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
            ax.set_title(f"step {step + 1}: {name}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def plot_assimilation_curves(
    times: np.ndarray,
    curves: dict[str, tuple[np.ndarray, np.ndarray]],
    warmup_end: float,
    out: str | Path,
    title: str,
) -> Path:
    """Relative L2 error against time, one line per method: the mean over trajectories with a
    band of one standard deviation; a dashed line where the warm-up ends.

    Args:
        times: ``(T,)``; curves: method -> (mean ``(T,)``, std ``(T,)``).
    """
    fig, ax = _new_figure(out, (6.4, 3.8))
    for name, (mean, std) in curves.items():
        (line,) = ax.plot(times, mean, label=name)
        low = np.clip(mean - std, np.maximum(mean * 1e-2, 1e-12), None)
        ax.fill_between(times, low, mean + std, color=line.get_color(), alpha=0.15, lw=0)
    ax.axvline(warmup_end, color="0.4", ls="--", lw=0.8)
    ax.set_yscale("log")
    # A method started from the true state has zero error at t = 0: the axis starts at the
    # smallest error after the first record instead of at round-off.
    later = [m[1:][m[1:] > 0] for m, _ in curves.values() if len(m) > 1]
    floor = min((float(v.min()) for v in later if v.size), default=None)
    if floor is not None:
        ax.set_ylim(bottom=0.5 * floor)
    return _finish_lines(fig, ax, out, "time", "relative L2 error", title)


def plot_space_time(
    times: np.ndarray,
    length: float,
    truth: np.ndarray,
    estimate: np.ndarray,
    out: str | Path,
    title: str,
    label: str = "estimate",
) -> Path:
    """A 1-D trajectory as space-time images: truth, estimate and error (time across).

    Args:
        times: ``(T,)``; length: the domain length; truth, estimate: ``(T, X)``.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(3, 1, figsize=(9.0, 6.6), sharex=True)
    low, high = float(truth.min()), float(truth.max())
    extent = (float(times[0]), float(times[-1]), 0.0, float(length))
    for ax, (data, name, cmap, vmin, vmax) in zip(
        axes,
        (
            (truth, "truth", "RdBu_r", low, high),
            (estimate, label, "RdBu_r", low, high),
            (estimate - truth, "error", "RdBu_r", -max(abs(low), abs(high)) / 2, None),
        ),
        strict=True,
    ):
        vmax = -vmin if vmax is None else vmax
        image = ax.imshow(
            data.T, origin="lower", aspect="auto", extent=extent, cmap=cmap, vmin=vmin, vmax=vmax
        )
        fig.colorbar(image, ax=ax, fraction=0.03, pad=0.01)
        ax.set_ylabel("x")
        ax.set_title(name, fontsize=9)
    axes[-1].set_xlabel("time")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
