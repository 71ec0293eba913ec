"""Re-check dataset files (`datagen verify`) and describe them (`datagen info`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from datagen.darcy import residuals
from datagen.schema import check_schema, open_dataset_file


@dataclass
class VerifyReport:
    """Outcome of verifying one file. ``ok`` is False if any problem was found."""

    path: Path
    samples: int
    problems: list[str]
    worst_estimate: float = float("nan")
    threshold: float = float("nan")
    worst_residual: float = float("nan")

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_file(path: str | Path, chunk: int = 32) -> VerifyReport:
    """Check schema, finite values, and residuals recomputed in float64 from the stored fields.

    The check uses the Laplace-preconditioned residual ``||L^{-1}(f - A u)|| / ||L^{-1} f||``
    (:func:`datagen.darcy.residuals`), which measures the relative error of the stored ``u``
    within a factor ``a_max / a_min``. A sample passes when it is at most
    ``solver_tol + 64 eps (a_max / a_min)``, ``eps`` the unit roundoff of the storage dtype
    (float32: 6e-8): rounding to the storage dtype passes, a 0.01% error does not. The plain
    relative residual is reported as well.
    """
    path = Path(path)
    with open_dataset_file(path) as f:
        problems = check_schema(f)
        if problems:
            return VerifyReport(path, 0, problems)
        n = int(f.attrs["n_trajectories"])
        report = VerifyReport(path, n, [])
        fields = f["t0_fields"]
        tol = float(f["provenance"].attrs.get("solver_tol", 1e-8))
        average = str(f.attrs.get("face_average", "arithmetic"))
        eps = float(np.finfo(fields["u"].dtype).eps) / 2
        worst, worst_estimate, worst_threshold = 0.0, 0.0, 0.0
        bad: list[int] = []
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            block = {}
            for name in ("a", "f", "u"):
                ds = fields[name]
                data = ds[start:stop] if ds.attrs["sample_varying"] else ds[...]
                data = np.asarray(data, dtype=np.float64)
                if not np.all(np.isfinite(data)):
                    report.problems.append(
                        f"field {name!r} has NaN or inf in samples {start}..{stop - 1}"
                    )
                block[name] = torch.from_numpy(data)
            if report.problems:
                return report
            u = block["u"][:, 0]
            f_field = block["f"].expand_as(u)
            relative, estimate = residuals(block["a"], f_field, u, average)
            a = block["a"].flatten(1)
            contrast = (a.max(dim=1).values / a.min(dim=1).values).numpy()
            threshold = tol + 64 * eps * contrast
            bad.extend((start + np.flatnonzero(estimate > threshold)).tolist())
            worst = max(worst, float(relative.max()))
            worst_estimate = max(worst_estimate, float(estimate.max()))
            worst_threshold = max(worst_threshold, float(threshold.max()))
        report.worst_residual, report.worst_estimate = worst, worst_estimate
        report.threshold = worst_threshold
        if bad:
            report.problems.append(
                f"{len(bad)} samples fail the residual check (first: sample {bad[0]}; worst "
                f"preconditioned residual {worst_estimate:.2e} > {worst_threshold:.1e})"
            )
        return report


def describe_file(path: str | Path) -> str:
    """A readable summary of one dataset file."""
    path = Path(path)
    lines = [str(path)]
    with open_dataset_file(path) as f:
        attrs = f.attrs
        lines.append(
            f"  dataset {attrs.get('dataset_name')!s}  problem {attrs.get('problem')!s}  "
            f"split {attrs.get('split')!s}  format {attrs.get('opsolve_format')!s}"
        )
        lines.append(f"  trajectories {attrs.get('n_trajectories')}  grid {attrs.get('grid_type')}")
        params = {str(k): float(attrs[k]) for k in attrs.get("simulation_parameters", [])}
        lines.append(f"  parameters {params}")
        if "dimensions" in f:
            dims = f["dimensions"]
            shape = " x ".join(str(dims[d].shape[-1]) for d in dims.attrs.get("spatial_dims", []))
            lines.append(f"  spatial grid {shape}, time steps {dims['time'].shape[-1]}")
        for group in ("t0_fields", "t1_fields", "t2_fields"):
            for name in f[group].attrs.get("field_names", []) if group in f else []:
                ds = f[group][name]
                flags = [k for k in ("sample_varying", "time_varying") if ds.attrs.get(k)]
                lines.append(f"  field {name}: {ds.shape} {ds.dtype} {' '.join(flags)}")
        if "provenance" in f:
            prov = f["provenance"]
            methods, counts = np.unique(prov["method"].asstr()[...], return_counts=True)
            lines.append(
                "  solver "
                + ", ".join(f"{m} x{c}" for m, c in zip(methods, counts, strict=True))
                + f"; seconds/sample median {np.median(prov['seconds'][...]):.3g}"
                + f"; worst residual {np.max(prov['residual'][...]):.2e}"
                + f"; iterations max {int(np.max(prov['iterations'][...]))}"
            )
            cfg = yaml.safe_load(prov.attrs.get("config", "{}")) or {}
            lines.append(f"  config: seed {cfg.get('seed')}, coefficient {cfg.get('coefficient')}")
            lines.append(f"  package version {prov.attrs.get('package_version')}")
    return "\n".join(lines)
