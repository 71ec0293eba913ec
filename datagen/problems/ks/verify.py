"""Check a Kuramoto-Sivashinsky file (``datagen verify``): every interval re-integrated, the
mean of ``u`` conserved (:func:`datagen.problems.semilinear.verify.check`)."""

from __future__ import annotations

from pathlib import Path

import h5py

from datagen.core.report import VerifyReport
from datagen.problems.ks.physics import equation
from datagen.problems.semilinear.verify import check


def verify(f: h5py.File, path: Path) -> VerifyReport:
    return check(f, path, equation, conserved=(0,))
