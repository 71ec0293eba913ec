"""Figures of dataset files (``datagen info --figure``) that fit any problem.

:func:`plot_file` draws a steady file's samples (:func:`plot_samples`) or a trajectory file's
records (:func:`plot_records`); a problem with a figure of its own (``figures.py`` in its
package, e.g. Navier-Stokes with its energy and enstrophy) is drawn by that instead.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from datagen.core.schema import TRAJECTORY_FORMAT, open_dataset_file  # noqa: E402

# The image formats of matplotlib's Agg canvas that ``--figure`` accepts.
FIGURE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg", ".webp", ".eps", ".ps", ".tif")


def plot_samples(path: str | Path, out: str | Path, count: int = 4) -> Path:
    """Draw the first ``count`` samples of a steady dataset file, one row per sample.

    Columns are the fields that vary per sample (a constant forcing is left out).

    Axes are physical: x to the right, y up, over the unit square.
    """
    out = Path(out)
    with open_dataset_file(path) as f:
        fields = f["t0_fields"]
        n = min(count, int(f.attrs["n_trajectories"]))
        names = [str(k) for k in fields.attrs["field_names"] if fields[k].attrs["sample_varying"]]
        fig, axes = plt.subplots(n, len(names), figsize=(3.2 * len(names), 2.8 * n), squeeze=False)
        for row in range(n):
            for col, name in enumerate(names):
                ds = fields[name]
                data = np.asarray(ds[row])
                data = data.reshape(data.shape[-2:])
                ax = axes[row, col]
                image = ax.imshow(data.T, origin="lower", extent=(0, 1, 0, 1), cmap="viridis")
                fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
                ax.set_title(f"sample {row}: {name}", fontsize=9)
                ax.set_xticks([0, 1])
                ax.set_yticks([0, 1])
        fig.suptitle(f"{f.attrs['dataset_name']} ({f.attrs.get('split', '')})")
        fig.tight_layout()
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=110)
        plt.close(fig)
    return out


def plot_records(path: str | Path, out: str | Path, count: int = 3, snapshots: int = 5) -> Path:
    """Records of the first ``count`` trajectories of a trajectory file, one row each.

    Columns are ``snapshots`` evenly spaced records of the first time-varying field, each on
    its own colour scale (a decaying field stays visible), titled with the record time. Axes
    as in :func:`plot_samples`.
    """
    out = Path(out)
    with open_dataset_file(path) as f:
        fields = f["t0_fields"]
        name = next(str(k) for k in fields.attrs["field_names"] if fields[k].attrs["time_varying"])
        ds = fields[name]
        times = np.asarray(f["dimensions"]["time"][...], dtype=np.float64)
        n = min(count, int(f.attrs["n_trajectories"]))
        picks = np.unique(np.linspace(0, ds.shape[1] - 1, snapshots).round().astype(int))
        fig, axes = plt.subplots(n, len(picks), figsize=(2.6 * len(picks), 2.5 * n), squeeze=False)
        for row in range(n):
            frames = np.asarray(ds[row, picks])
            for col, j in enumerate(picks):
                ax = axes[row, col]
                image = ax.imshow(frames[col].T, origin="lower", extent=(0, 1, 0, 1))
                fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
                ax.set_title(f"traj {row}, t = {times[j]:.3g}", fontsize=8)
                ax.set_xticks([])
                ax.set_yticks([])
        fig.suptitle(f"{f.attrs['dataset_name']} ({f.attrs.get('split', '')}), {name}")
        fig.tight_layout()
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=110)
        plt.close(fig)
    return out


def plot_file(path: str | Path, out: str | Path, count: int = 4) -> Path:
    """:func:`plot_records` for a trajectory file, else :func:`plot_samples`."""
    with open_dataset_file(path) as f:
        trajectories = f.attrs.get("opsolve_format") == TRAJECTORY_FORMAT
    return (plot_records if trajectories else plot_samples)(path, out, count=count)
