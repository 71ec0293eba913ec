"""Figures of dataset samples."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from datagen.schema import open_dataset_file  # noqa: E402


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
