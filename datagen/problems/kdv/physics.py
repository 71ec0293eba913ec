"""Korteweg-de Vries in the semilinear form of :mod:`datagen.problems.semilinear.physics`:
``u_t = -b u_xxx - eps u_xxxx - (a/2) (u^2)_x``, symbol ``L(k) = i b k^3 - eps k^4``,
``c = -a/2``. Without hyperviscosity ``int u``, ``int u^2`` and ``int (a/6 u^3 - b/2 u_x^2)``
are conserved; for a = 6, b = 1, ``u = (c/2) sech^2(sqrt(c)(x - c t - x0)/2)`` is a soliton."""

from __future__ import annotations

from collections.abc import Mapping

from datagen.problems.kdv.config import KdVConfig
from datagen.problems.semilinear.physics import Equation


def parameters(cfg: KdVConfig) -> dict[str, float]:
    """The simulation parameters stored in every file (and read back by ``verify``)."""
    return {"a": cfg.a, "b": cfg.b, "hyperviscosity": cfg.hyperviscosity}


def equation(params: Mapping[str, float]) -> Equation:
    """The equation of ``params`` (:func:`parameters`)."""
    a, b, eps = (float(params[key]) for key in ("a", "b", "hyperviscosity"))
    return Equation(symbol=lambda k: 1j * b * k**3 - eps * k**4, quadratic=-a / 2)
