"""Re-check dataset files (`datagen verify`) and describe them (`datagen info`)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
import yaml

from datagen import poisson
from datagen.darcy import residuals
from datagen.helmholtz_data import error_estimates, stored_residuals
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
    measure: str = "relative PDE residual"  # what worst_estimate is, when no residual is

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def summary(self) -> str:
        """One line on what was checked (for a file that passed)."""
        if math.isnan(self.worst_residual):
            return f"{self.measure} {self.worst_estimate:.1e} <= {self.threshold:.2g}"
        return (
            f"error estimate {self.worst_estimate:.1e} <= {self.threshold:.1e}; plain residual "
            f"{self.worst_residual:.1e} (at stored precision)"
        )


def verify_file(path: str | Path, chunk: int = 32) -> VerifyReport:
    """Check schema, finite values, and residuals recomputed in float64 from the stored fields.

    Trajectory files (root attribute ``opsolve_format``) go to :func:`verify_trajectories`,
    Helmholtz files (root attribute ``problem: helmholtz``) to :func:`verify_helmholtz`,
    Poisson files (``problem: poisson``) to :func:`verify_poisson`. For
    Darcy files the check uses the Laplace-preconditioned residual
    ``||L^{-1}(f - A u)|| / ||L^{-1} f||`` (:func:`datagen.darcy.residuals`), which measures
    the relative error of the stored ``u`` within a factor ``a_max / a_min``. A sample passes
    when it is at most ``solver_tol + 64 eps (a_max / a_min)``, ``eps`` the unit roundoff of
    the storage dtype (float32: 6e-8): rounding to the storage dtype passes, a 0.01% error
    does not. The plain relative residual is reported as well.
    """
    path = Path(path)
    with open_dataset_file(path) as f:
        problems = check_schema(f)
        if problems:
            return VerifyReport(path, 0, problems)
        if f.attrs.get("problem") == "heat":
            return verify_heat(f, path, chunk)
        if f.attrs["opsolve_format"] == TRAJECTORY_FORMAT:
            return verify_trajectories(f, path, chunk)
        if f.attrs.get("problem") == "helmholtz":
            return verify_helmholtz(f, path, chunk)
        if f.attrs.get("problem") == "poisson":
            return verify_poisson(f, path, chunk)
        n = int(f.attrs["n_trajectories"])
        report = VerifyReport(path, n, [])
        fields = f["t0_fields"]
        tol = float(f["provenance"].attrs.get("solver_tol", 1e-8))
        average = str(f.attrs.get("face_average", "arithmetic"))
        eps = float(np.finfo(fields["u"].dtype).eps) / 2
        worst, worst_estimate, worst_threshold = 0.0, 0.0, 0.0
        bad: list[int] = []
        for start, block in sample_blocks(fields, ("a", "f", "u"), n, chunk, report):
            a, f_field, u = (torch.from_numpy(block[name]) for name in ("a", "f", "u"))
            u = u[:, 0]
            relative, estimate = residuals(a, f_field.expand_as(u), u, average)
            a = a.flatten(1)
            contrast = (a.max(dim=1).values / a.min(dim=1).values).numpy()
            threshold = tol + 64 * eps * contrast
            bad.extend((start + np.flatnonzero(estimate > threshold)).tolist())
            worst = max(worst, float(relative.max()))
            worst_estimate = max(worst_estimate, float(estimate.max()))
            worst_threshold = max(worst_threshold, float(threshold.max()))
        if report.problems:
            return report
        report.worst_residual, report.worst_estimate = worst, worst_estimate
        report.threshold = worst_threshold
        if bad:
            report.problems.append(
                f"{len(bad)} samples fail the residual check (first: sample {bad[0]}; worst "
                f"preconditioned residual {worst_estimate:.2e} > {worst_threshold:.1e})"
            )
        return report


def sample_blocks(
    fields: h5py.Group, names: tuple[str, ...], n: int, chunk: int, report: VerifyReport
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Read ``names`` from ``fields`` in blocks of at most ``chunk`` samples, as float64.

    Yields ``(start, {name: array})``: a sample-varying field as (B, ...) for samples
    ``start .. start + B - 1``, one shared by all samples as it is stored (no sample axis).
    A missing field or one with NaN or inf in a block is recorded in ``report.problems``
    (all fields of that block checked) and ends the iteration.
    """
    missing = [name for name in names if name not in fields]
    for name in missing:
        report.problems.append(f"field {name!r} missing")
    if missing:
        return
    for start in range(0, n, chunk):
        stop = min(start + chunk, n)
        block = {}
        for name in names:
            ds = fields[name]
            data = ds[start:stop] if ds.attrs["sample_varying"] else ds[...]
            block[name] = np.asarray(data, dtype=np.float64)
            if not np.all(np.isfinite(block[name])):
                report.problems.append(
                    f"field {name!r} has NaN or inf in samples {start}..{stop - 1}"
                )
        if report.problems:
            return
        yield start, block


def flag(report: VerifyReport, samples: list[int], what: str) -> None:
    """Record ``N samples have WHAT (first: sample i)`` when ``samples`` is not empty."""
    if samples:
        report.problems.append(f"{len(samples)} samples have {what} (first: sample {samples[0]})")


def verify_helmholtz(f: h5py.File, path: Path, chunk: int = 32) -> VerifyReport:
    """Check a Helmholtz file: fields ``k``, ``f``, ``u_re``, ``u_im`` finite, residuals small.

    Each sample's error estimate ``||M^{-1}(b - A u)|| / ||M^{-1} b||`` is recomputed from the
    stored ``k``, ``f`` and ``u = u_re + i u_im`` in complex128
    (:func:`datagen.helmholtz_data.error_estimates`; ``M`` the Laplacian with natural boundary
    rows plus ``mean(k^2)``). Unlike the plain residual it is not amplified by ``1/h^2``: a
    scaling of ``u`` by ``1 + d`` gives exactly ``d``, and white errors of relative size ``d``
    give about ``d * rho`` with ``rho = ||u|| / ||M^{-1} b||`` (measured 2.7 to 5.7). A sample
    passes when the estimate is at most ``rho (solver_tol + 16 eps)``, ``eps`` the unit
    roundoff of the storage dtype. Measured on float32 data (resolution 33 / 65 / 129 at
    ``k0`` 15 / 20 / 40): correct samples 0.37 to 0.41 ``eps rho`` (6e-8 to 1.4e-7) against a
    threshold of 2.6e-6 to 5.5e-6; ``u`` scaled by 1.0001 gives 1e-4, by 1.001 gives 1e-3,
    ``k`` off by 1% gives 3e-2 to 6e-2. Float64 files solved to ``solver_tol = 1e-8`` give
    up to 1.1 times their plain residual (<= 1e-8) against about ``5e-8``. The plain relative
    residual ``||b - A u|| / ||b||`` (:func:`datagen.helmholtz_data.stored_residuals`) is
    reported as well.
    """
    n = int(f.attrs["n_trajectories"])
    report = VerifyReport(path, n, [])
    fields = f["t0_fields"]
    tol = float(f["provenance"].attrs.get("solver_tol", 1e-8))
    eps = float(np.finfo(fields["u_re"].dtype).eps) / 2 if "u_re" in fields else 0.0
    worst, worst_estimate, worst_threshold = 0.0, 0.0, 0.0
    bad: list[tuple[int, float, float]] = []
    nonpositive: list[int] = []
    for start, block in sample_blocks(fields, ("k", "f", "u_re", "u_im"), n, chunk, report):
        k = block["k"]
        source = np.broadcast_to(block["f"], k.shape).copy()
        u = block["u_re"][:, 0] + 1j * block["u_im"][:, 0]
        nonpositive.extend((start + np.flatnonzero((k <= 0).any(axis=(-2, -1)))).tolist())
        estimate, rho = error_estimates(k, source, u)
        threshold = rho * (tol + 16 * eps)
        for i in np.flatnonzero(~(estimate <= threshold)):  # NaN fails too
            bad.append((start + int(i), float(estimate[i]), float(threshold[i])))
        worst = max(worst, float(stored_residuals(k, source, u).max()))
        worst_estimate = max(worst_estimate, float(estimate.max()))
        worst_threshold = max(worst_threshold, float(threshold.max()))
    if report.problems:
        return report
    report.worst_residual, report.worst_estimate = worst, worst_estimate
    report.threshold = worst_threshold
    flag(report, nonpositive, "a wave number k <= 0")
    if bad:
        sample, estimate, threshold = bad[0]
        report.problems.append(
            f"{len(bad)} samples fail the residual check (first: sample {sample}; error "
            f"estimate {estimate:.2e} > {threshold:.1e})"
        )
    return report


def verify_poisson(f: h5py.File, path: Path, chunk: int = 32) -> VerifyReport:
    """Check a Poisson file: fields ``f``, ``g``, ``u`` finite, ``u = g`` on the boundary, and
    each sample's error estimate small.

    The estimate ``||L^{-1}(b - L u)|| / ||L^{-1} b||`` (:func:`datagen.poisson.stored_residuals`,
    ``b`` the load lifted from the stored ``f`` and ``g``) is recomputed in float64; with the
    Laplacian itself as ``L`` it is the relative error of the stored interior against the exact
    discrete solution, so a sample passes at ``solver_tol + 64 eps`` (the Darcy rule with
    contrast 1; ``eps`` the unit roundoff of the storage dtype): float32 rounding passes, an
    error of 1e-5 does not. The plain relative residual is reported as well.
    """
    n = int(f.attrs["n_trajectories"])
    report = VerifyReport(path, n, [])
    fields = f["t0_fields"]
    tol = float(f["provenance"].attrs.get("solver_tol", 1e-10))
    eps = float(np.finfo(fields["u"].dtype).eps) / 2 if "u" in fields else 0.0
    threshold = tol + 64 * eps
    worst, worst_estimate = 0.0, 0.0
    bad: list[int] = []
    mismatched: list[int] = []
    for start, block in sample_blocks(fields, ("f", "g", "u"), n, chunk, report):
        u = block["u"][:, 0]
        g = np.broadcast_to(block["g"], u.shape)
        relative, estimate, gap = poisson.stored_residuals(block["f"], g, u)
        bad.extend((start + np.flatnonzero(~(estimate <= threshold))).tolist())
        mismatched.extend((start + np.flatnonzero(gap > 0)).tolist())
        worst = max(worst, float(relative.max()))
        worst_estimate = max(worst_estimate, float(estimate.max()))
    if report.problems:
        return report
    report.worst_residual, report.worst_estimate = worst, worst_estimate
    report.threshold = threshold
    flag(report, mismatched, "u != g on the boundary")
    if bad:
        report.problems.append(
            f"{len(bad)} samples fail the residual check (first: sample {bad[0]}; worst "
            f"error estimate {worst_estimate:.2e} > {threshold:.1e})"
        )
    return report


def verify_heat(f: h5py.File, path: Path, chunk: int = 8) -> VerifyReport:
    """Check a heat-equation trajectory file: ``u`` and ``a`` finite, ``a > 0``, ``u = 0`` on
    the boundary, and every record re-integrated from the previous one.

    :func:`datagen.heat.resolve_records` takes the steps between stored records again, in
    float64 with SuperLU (the scheme, ``dt`` and face average of the file's attributes), from
    the stored previous record; ``worst_estimate`` is the largest
    ``||u_{r+1} - step(u_r)|| / ||u_r||``. The schemes do not amplify perturbations, so a
    correct file shows the storage rounding plus the solver tolerance per step; a record
    passes at ``64 eps + steps * solver_tol`` (``eps`` the storage unit roundoff). Measured on
    a float32 file (17 x 17, 12 Crank-Nicolson steps between records): 1.9e-8 against 3.8e-6;
    a record scaled by 1.0001 gives 7e-5, a coefficient off by 1% 3e-3.
    """
    from datagen.heat import resolve_records

    n = int(f.attrs["n_trajectories"])
    fields = f["t0_fields"]
    eps = float(np.finfo(fields["u"].dtype).eps) / 2 if "u" in fields else 0.0
    times = np.asarray(f["dimensions"]["time"][...], dtype=np.float64)
    dt, scheme = float(f.attrs["dt"]), str(f.attrs["scheme"])
    average = str(f.attrs.get("face_average", "arithmetic"))
    steps = int(round((times[1] - times[0]) / dt)) if len(times) > 1 else 0
    tol = float(f["provenance"].attrs.get("solver_tol", 1e-8))
    threshold = 64 * eps + steps * tol
    report = VerifyReport(path, n, [], threshold=threshold, measure="record re-solve error")
    worst = 0.0
    bad_a, bad_edge, bad_step = [], [], []
    for start, block in sample_blocks(fields, ("u", "a"), n, chunk, report):
        u, a = block["u"], block["a"]
        bad_a.extend((start + np.flatnonzero((a <= 0).any(axis=(-2, -1)))).tolist())
        edge = np.abs(u[..., [0, -1], :]).max(axis=(1, 2, 3)) + np.abs(u[..., [0, -1]]).max(
            axis=(1, 2, 3)
        )
        bad_edge.extend((start + np.flatnonzero(edge > 0)).tolist())
        for i in range(len(u)):
            if start + i in bad_a or steps == 0:
                continue
            error = resolve_records(a[i], u[i], dt, steps, scheme, average)
            worst = max(worst, float(error.max()))
            if not np.all(error <= threshold):
                bad_step.append(start + i)
    if report.problems:
        return report
    report.worst_estimate = worst
    flag(report, bad_a, "a coefficient a <= 0")
    flag(report, bad_edge, "nonzero boundary values")
    flag(report, bad_step, "records that the re-solved steps do not reproduce")
    return report


def verify_trajectories(f: h5py.File, path: Path, chunk: int = 8) -> VerifyReport:
    """Check a Navier-Stokes trajectory file: finite values, zero mean, the PDE residual.

    The residual (:func:`datagen.navier_stokes.relative_residual`) takes the time derivative
    from the stored frames by fourth-order staggered differences and the spatial terms
    spectrally on the stored grid, in float64, measured on the lower half of the stored band
    and from the third interval between records on; a trajectory passes when
    ``||P r|| / ||w_t||`` is at most :data:`RESIDUAL_LIMIT`. Measured on our data (32^2 to
    256^2): 3e-4 to 2e-3; a viscosity off by 2x gives 0.6 to 0.7, a forcing off by 2x 1.5. The mean
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
