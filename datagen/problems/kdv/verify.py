"""Check a Korteweg-de Vries file (``datagen verify``): every interval re-integrated; mass,
momentum and energy conserved without hyperviscosity, the mass with it
(:func:`datagen.problems.semilinear.verify.check`)."""

from __future__ import annotations

from pathlib import Path

import h5py

from datagen.core.report import VerifyReport
from datagen.problems.kdv.physics import equation
from datagen.problems.semilinear.verify import check


def verify(f: h5py.File, path: Path) -> VerifyReport:
    a, b, eps = (float(f.attrs.get(key, 0.0)) for key in ("a", "b", "hyperviscosity"))
    conserved = (0,) if eps > 0 else (0, 1, 2)
    return check(f, path, equation, conserved, energy_coefficients=(a, b))
