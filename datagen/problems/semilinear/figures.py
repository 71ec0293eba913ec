"""The figure of a 1-D trajectory file (``datagen info --figure``): space-time plots."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from datagen.core.schema import open_dataset_file  # noqa: E402


def figure(path: str | Path, out: str | Path, count: int = 3) -> Path:
    """``u(x, t)`` of the first ``count`` trajectories, x to the right and t up, side by side
    on one colour scale."""
    out = Path(out)
    with open_dataset_file(path) as f:
        u = f["t0_fields"]["u"]
        times = np.asarray(f["dimensions"]["time"][...], dtype=np.float64)
        n = min(count, u.shape[0])
        frames = np.asarray(u[:n])
        length = float(f.attrs.get("domain_length", 1.0))
        lengths = np.asarray(f["provenance"]["domain_length"][:n])
        limit = float(np.abs(frames).max()) or 1.0
        fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 4.2), squeeze=False)
        for col in range(n):
            ax = axes[0, col]
            image = ax.imshow(
                frames[col],
                origin="lower",
                aspect="auto",
                extent=(0, lengths[col], times[0], times[-1]),
                cmap="RdBu_r",
                vmin=-limit,
                vmax=limit,
            )
            ax.set_xlabel("x")
            ax.set_title(f"trajectory {col} (L = {lengths[col]:.4g})", fontsize=9)
        axes[0, 0].set_ylabel("t")
        fig.colorbar(image, ax=axes[0, -1], fraction=0.046, pad=0.04)
        fig.suptitle(
            f"{f.attrs['dataset_name']} ({f.attrs.get('split', '')}): u(x, t), L = {length:.4g}"
        )
        fig.tight_layout()
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=110)
        plt.close(fig)
    return out
