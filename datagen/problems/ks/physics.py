"""Kuramoto-Sivashinsky in the semilinear form of :mod:`datagen.problems.semilinear.physics`:
``u_t = -nu u_xx - u_xxxx - (u^2 / 2)_x``, symbol ``L(k) = nu k^2 - k^4``, ``c = -1/2``. The
mean of ``u`` is conserved."""

from __future__ import annotations

from collections.abc import Mapping

from datagen.problems.ks.config import KSConfig
from datagen.problems.semilinear.physics import Equation


def parameters(cfg: KSConfig) -> dict[str, float]:
    """The simulation parameters stored in every file (and read back by ``verify``)."""
    return {"viscosity": cfg.viscosity}


def equation(params: Mapping[str, float]) -> Equation:
    """The equation of ``params`` (:func:`parameters`)."""
    nu = float(params["viscosity"])
    return Equation(symbol=lambda k: nu * k**2 - k**4, quadratic=-0.5)
