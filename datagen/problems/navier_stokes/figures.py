"""The Navier-Stokes figure of ``datagen info --figure``: vorticity snapshots and budgets."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from datagen.core.schema import open_dataset_file  # noqa: E402
from datagen.problems.navier_stokes.physics import (  # noqa: E402
    energy,
    enstrophy,
    spectral_grid,
    to_spectral,
)


def figure(path: str | Path, out: str | Path, count: int = 3, snapshots: int = 5) -> Path:
    """Vorticity snapshots of the first ``count`` trajectories, and energy / enstrophy in time.

    Rows are trajectories, columns ``snapshots`` evenly spaced records (shared colour scale per
    row); the last row plots ``E(t) = 1/2 <|u|^2>`` and ``Z(t) = 1/2 <w^2>`` of every
    trajectory of the file (Parseval on the stored grid).
    """
    out = Path(out)
    with open_dataset_file(path) as f:
        ds = f["t0_fields"]["vorticity"]
        times = np.asarray(f["dimensions"]["time"][...], dtype=np.float64)
        n = min(count, ds.shape[0])
        picks = np.unique(np.linspace(0, ds.shape[1] - 1, snapshots).round().astype(int))
        grid = spectral_grid(ds.shape[-1])
        e_curves, z_curves = [], []
        for start in range(0, ds.shape[0], 16):
            w_hat = to_spectral(torch.from_numpy(np.asarray(ds[start : start + 16], np.float64)))
            flat = w_hat.flatten(0, 1)
            e_curves.append(energy(flat, grid).reshape(w_hat.shape[:2]).numpy())
            z_curves.append(enstrophy(flat, grid).reshape(w_hat.shape[:2]).numpy())
        energies, enstrophies = np.concatenate(e_curves), np.concatenate(z_curves)
        fig = plt.figure(figsize=(2.6 * len(picks), 2.5 * n + 3.0))
        grid_spec = fig.add_gridspec(n + 1, len(picks), height_ratios=[1] * n + [1.2])
        for row in range(n):
            frames = np.asarray(ds[row, picks])
            limit = float(np.abs(frames).max())
            for col, j in enumerate(picks):
                ax = fig.add_subplot(grid_spec[row, col])
                image = ax.imshow(
                    frames[col].T,
                    origin="lower",
                    extent=(0, 1, 0, 1),
                    cmap="RdBu_r",
                    vmin=-limit,
                    vmax=limit,
                )
                ax.set_title(f"traj {row}, t = {times[j]:.3g}", fontsize=8)
                ax.set_xticks([])
                ax.set_yticks([])
            fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        half = max(len(picks) // 2, 1)
        for slot, (values, label) in enumerate(
            ((energies, "energy 1/2 <|u|^2>"), (enstrophies, "enstrophy 1/2 <w^2>"))
        ):
            span = slice(0, half) if slot == 0 else slice(half, len(picks))
            ax = fig.add_subplot(grid_spec[n, span])
            ax.plot(times, values.T, color="tab:blue", alpha=0.3, linewidth=0.8)
            ax.plot(times, values.mean(0), color="black", linewidth=1.5, label="mean")
            ax.set_xlabel("t")
            ax.set_title(label, fontsize=9)
            ax.legend(fontsize=8)
        fig.suptitle(f"{f.attrs['dataset_name']} ({f.attrs.get('split', '')}), vorticity")
        fig.tight_layout()
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=110)
        plt.close(fig)
    return out
