"""Re-check dataset files (`datagen verify`) and describe them (`datagen info`)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
import yaml

from datagen.darcy import residuals
from datagen.navier_stokes import relative_residual
from datagen.schema import TRAJECTORY_FORMAT, check_schema, open_dataset_file

RESIDUAL_LIMIT = 0.05  # relative PDE residual of a stored Navier-Stokes trajectory


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

    @property
    def summary(self) -> str:
        """One line on what was checked (for a file that passed)."""
        if math.isnan(self.worst_residual):
            return f"relative PDE residual {self.worst_estimate:.1e} <= {self.threshold:.2g}"
        return (
            f"error estimate {self.worst_estimate:.1e} <= {self.threshold:.1e}; plain residual "
            f"{self.worst_residual:.1e} (at stored precision)"
        )


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
        if f.attrs["opsolve_format"] == TRAJECTORY_FORMAT:
            return verify_trajectories(f, path, chunk)
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


def verify_trajectories(f: h5py.File, path: Path, chunk: int = 8) -> VerifyReport:
    """Check a Navier-Stokes trajectory file: finite values, zero mean, the PDE residual.

    The residual (:func:`datagen.navier_stokes.relative_residual`) takes the time derivative
    from the stored frames by fourth-order differences and the spatial terms spectrally on the
    stored grid, in float64, measured on the lower half of the stored band; a trajectory passes
    when ``||P r|| / ||w_t||`` is at most :data:`RESIDUAL_LIMIT`. Measured on our data: 2e-4
    to 2e-3; a viscosity off by 2x gives 0.25 to 0.45, a forcing off by 2x about 1. The mean
    vorticity must vanish (to ``1e-4`` of the rms, float32 storage).
    """
    n = int(f.attrs["n_trajectories"])
    report = VerifyReport(path, n, [], threshold=RESIDUAL_LIMIT)
    frames_ds = f["t0_fields"]["vorticity"]
    times = torch.from_numpy(np.asarray(f["dimensions"]["time"][...], dtype=np.float64))
    forcing = torch.from_numpy(np.asarray(f["t0_fields"]["forcing"][...], dtype=np.float64))
    nu, drag = float(f.attrs["viscosity"]), float(f.attrs["drag"])
    worst, bad, mean_bad = 0.0, [], []
    for start in range(0, n, chunk):
        frames = np.asarray(frames_ds[start : start + chunk], dtype=np.float64)
        if not np.all(np.isfinite(frames)):
            report.problems.append(f"vorticity has NaN or inf in samples {start}..")
            return report
        frames_t = torch.from_numpy(frames)
        rms = frames_t.square().mean(dim=(-2, -1)).sqrt().clamp(min=1e-30)
        mean = frames_t.mean(dim=(-2, -1)).abs() / rms
        mean_bad.extend((start + np.flatnonzero((mean > 1e-4).any(1).numpy())).tolist())
        if len(times) >= 3:
            rho = relative_residual(frames_t, times, forcing, nu, drag).numpy()
            bad.extend((start + np.flatnonzero(rho > RESIDUAL_LIMIT)).tolist())
            worst = max(worst, float(rho.max()))
    report.worst_estimate = worst
    if mean_bad:
        report.problems.append(
            f"{len(mean_bad)} samples have nonzero mean vorticity (first: sample {mean_bad[0]})"
        )
    if bad:
        report.problems.append(
            f"{len(bad)} samples fail the PDE residual check (first: sample {bad[0]}; worst "
            f"relative residual {worst:.2e} > {RESIDUAL_LIMIT})"
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
        if "provenance" in f and "steps" in f["provenance"]:
            prov = f["provenance"]
            lines.append(
                f"  solver {f.attrs.get('scheme')!s} at {f.attrs.get('solve_resolution')}^2, "
                f"dt {f.attrs.get('dt')}; steps max {int(np.max(prov['steps'][...]))}; "
                f"max CFL {np.max(prov['max_cfl'][...]):.3f}; "
                f"seconds/trajectory median {np.median(prov['seconds'][...]):.3g}"
            )
        elif "provenance" in f:
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
