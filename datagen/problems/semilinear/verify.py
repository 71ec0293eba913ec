"""Check a 1-D semilinear trajectory file from its stored fields (``datagen verify``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import h5py
import numpy as np
import torch

from datagen.core.report import VerifyReport, flag, storage_eps
from datagen.problems.semilinear.physics import Equation, invariants, simulate

CHUNK = 32  # trajectories read at a time
STEP_LIMIT = 2e-5  # a record re-integrated with the generator's step (float32 runs: ~1e-6)
REFINE = 4  # the accuracy check takes steps REFINE times shorter than the generator's
ACCURACY_LIMIT = 1e-3  # a record against the finer-step solution
INVARIANT_LIMIT = 1e-4  # drift of a conserved quantity, relative to its scale


def check(
    f: h5py.File,
    path: Path,
    equation_of: Callable[[dict[str, float]], Equation],
    conserved: Sequence[int],
    energy_coefficients: tuple[float, float] = (6.0, 1.0),
) -> VerifyReport:
    """Re-integrate every stored interval, twice, and check the conserved quantities.

    Each record ``r + 1`` is recomputed from the stored record ``r`` in float64 by ETDRK4 (the
    equation rebuilt from the file's parameters by ``equation_of``, each trajectory with its own
    length and interval): with the generator's step, which must reproduce it to
    :data:`STEP_LIMIT` plus 64 storage roundoffs (``worst_estimate``: a record off by 1e-4
    fails), and with steps :data:`REFINE` times shorter, from which it may differ by at most
    :data:`ACCURACY_LIMIT` (the generator's time-step error; reported). The invariants
    ``conserved`` (indices into mass, momentum, energy of :func:`invariants`, with
    ``energy_coefficients`` (a, b)) may drift by at most :data:`INVARIANT_LIMIT` of their scale
    over a trajectory.
    """
    n = int(f.attrs["n_trajectories"])
    needed = {"t0_fields": ["u"], "provenance": ["domain_length", "record_interval"]}
    missing = [f"{g}/{k}" for g, keys in needed.items() for k in keys if k not in f[g]]
    missing += [
        k for k in ("steps_per_record", *f.attrs["simulation_parameters"]) if k not in f.attrs
    ]
    if missing:
        return VerifyReport(path, n, [f"{', '.join(missing)} missing (not a 1-D semilinear file?)"])
    u_ds = f["t0_fields"]["u"]
    params = {str(k): float(f.attrs[k]) for k in f.attrs["simulation_parameters"]}
    equation = equation_of(params)
    steps = int(f.attrs["steps_per_record"])
    prov = f["provenance"]
    lengths = np.asarray(prov["domain_length"][...], dtype=np.float64)
    intervals = np.asarray(prov["record_interval"][...], dtype=np.float64)
    threshold = STEP_LIMIT + 64 * storage_eps(f["t0_fields"], "u")
    report = VerifyReport(path, n, [], worst_estimate=0.0, threshold=threshold,
                          measure="record re-integration error")  # fmt: skip
    drifted: list[int] = []
    inaccurate: list[int] = []
    worst_accuracy = 0.0
    for start in range(0, n, CHUNK):
        u = np.asarray(u_ds[start : start + CHUNK], dtype=np.float64)  # (B, R, n)
        finite = np.isfinite(u).reshape(len(u), -1).all(axis=1)
        if not finite.all():
            report.problems.append(
                f"field 'u' has NaN or inf in sample {start + int(np.flatnonzero(~finite)[0])}"
            )
            return report
        batch = len(u)
        window = (lengths[start : start + batch], intervals[start : start + batch])
        report.tally(start, _reintegrated(u, equation, *window, steps), threshold)
        accuracy = _reintegrated(u, equation, *window, steps * REFINE)
        inaccurate.extend((start + np.flatnonzero(accuracy > ACCURACY_LIMIT)).tolist())
        worst_accuracy = max(worst_accuracy, float(accuracy.max()))
        values, scales = invariants(u, lengths[start : start + batch, None], *energy_coefficients)
        scale = scales.max(axis=1) + 1e-30  # (B, 3): over the trajectory
        for i in conserved:
            drift = np.abs(values[..., i] - values[:, :1, i]).max(axis=1) / scale[:, i]
            drifted.extend((start + np.flatnonzero(drift > INVARIANT_LIMIT)).tolist())
    report.note = f"{REFINE}x finer steps {worst_accuracy:.1e}"
    flag(report, report.failing, "records that the re-integrated steps do not reproduce")
    flag(report, sorted(set(drifted)), "a conserved quantity that drifts")
    flag(report, inaccurate, f"records off a {REFINE}x finer-step solution by > {ACCURACY_LIMIT:g}")
    return report


def _reintegrated(
    u: np.ndarray, equation: Equation, lengths: np.ndarray, intervals: np.ndarray, steps: int
) -> np.ndarray:
    """Per trajectory, the largest ``||u_{r+1} - step(u_r)|| / ||u_{r+1}||`` of its records
    ``u`` (B, R, n), each interval taken in ``steps`` float64 ETDRK4 steps: (B,)."""
    batch, records, points = u.shape
    length = np.repeat(lengths, records - 1)
    dt = np.repeat(intervals / steps, records - 1)
    before = torch.from_numpy(u[:, :-1].reshape(-1, points))
    after = u[:, 1:].reshape(-1, points)
    predicted, _ = simulate(
        before, equation, torch.from_numpy(length), torch.from_numpy(dt), steps, steps, 1
    )
    error = np.linalg.norm(predicted[:, 0].numpy() - after, axis=-1) / np.maximum(
        np.linalg.norm(after, axis=-1), 1e-30
    )
    return error.reshape(batch, records - 1).max(axis=1)
