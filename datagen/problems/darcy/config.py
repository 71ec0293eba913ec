"""The Darcy config (``problem: darcy``; docs/problems/darcy.md describes every key).

The coefficient families and the forcing are shared: the heat equation draws its coefficient
from :class:`Coefficient`, Poisson its forcing from :class:`Forcing`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from datagen.core.config import (
    MAX_ITERATIONS,
    Boundary,
    DatasetName,
    GenerationConfig,
    Int,
    InverseLength,
    OutputDir,
    RandomField,
    Resolution,
    Scale,
    Smoothness,
    StrictModel,
    Tolerance,
)

# Defaults of each coefficient family: the FNO benchmark and the SKR paper.
FAMILY_DEFAULTS = {
    "piecewise_constant": {"alpha": 2.0, "tau": 3.0, "boundary": "neumann"},
    "lognormal": {"alpha": 2.5, "tau": 7.0, "boundary": "periodic"},
}
FaceAverage = Literal["arithmetic", "harmonic"]


class Coefficient(StrictModel):
    """The Darcy coefficient ``a``.

    ``piecewise_constant``: ``a = high`` where the field is >= 0, ``low`` elsewhere (FNO data:
    12 and 3). ``lognormal``: ``a = exp(field)`` (SKR paper). Unset ``alpha``, ``tau`` and
    ``boundary`` take the family's defaults.
    """

    family: Literal["piecewise_constant", "lognormal"] = Field(
        "piecewise_constant",
        description="piecewise_constant: high / low by the GRF's sign; lognormal: exp(GRF)",
    )
    alpha: Smoothness | None = Field(
        None, description="GRF smoothness exponent (null: the family's)"
    )
    tau: InverseLength | None = Field(
        None, description="GRF inverse length scale (null: the family's)"
    )
    boundary: Boundary | None = Field(
        None, description="GRF boundary: periodic or neumann (null: the family's)"
    )
    high: float = Field(
        12.0, ge=1e-6, le=1e6, description="piecewise_constant: a where the GRF is >= 0"
    )
    low: float = Field(
        3.0, ge=1e-6, le=1e6, description="piecewise_constant: a where the GRF is < 0"
    )

    @model_validator(mode="after")
    def _fill_family_defaults(self) -> Coefficient:
        for key, value in FAMILY_DEFAULTS[self.family].items():
            if getattr(self, key) is None:
                object.__setattr__(self, key, value)
        return self

    def field(self) -> RandomField:
        return RandomField(alpha=self.alpha, tau=self.tau, boundary=self.boundary)


class Forcing(StrictModel):
    """The right-hand side ``f``: a constant, or a GRF (``random``) scaled by ``value``."""

    kind: Literal["constant", "random"] = Field(
        "constant", description="constant (f = value) or random (f = value * GRF)"
    )
    value: Scale = Field(1.0, description="the constant, or the scale of the random field")
    alpha: Smoothness = Field(2.5, description="random: GRF smoothness exponent")
    tau: InverseLength = Field(7.0, description="random: GRF inverse length scale")
    boundary: Boundary = Field("periodic", description="random: GRF boundary, periodic or neumann")

    @model_validator(mode="after")
    def _nonzero(self) -> Forcing:
        if self.value == 0:
            raise ValueError("value must be nonzero (f = 0 gives u = 0)")
        return self

    def field(self) -> RandomField:
        return RandomField(alpha=self.alpha, tau=self.tau, boundary=self.boundary)


class DarcySolver(StrictModel):
    """Linear solver.

    ``pcg``: batched conjugate gradients on ``batch_size`` systems at once, preconditioned by a
    Galerkin multigrid V-cycle (or Jacobi, or ``pyamg``: a PyAMG smoothed-aggregation V-cycle
    per sample, CPU only); a sample that misses ``tol`` in ``maxiter``
    iterations is re-solved directly and marked so. ``skr``: Sorting Krylov Recycling: the
    samples of a work unit are sorted by their coefficients (``sort``), cut into ``chains``
    chains advanced as one batch, and each system is solved by the same preconditioned CG
    deflated by ``recycle`` Ritz vectors of the previous system of its chain and started from
    its solution (``warm_start``). ``direct``: SciPy SuperLU, one by one. ``auto``: ``pcg`` on a
    GPU or from 129 x 129 nodes up, else ``direct`` (measured fastest, benchmarks/RESULTS.md:
    with a multigrid preconditioner the iterations are already few, and one batch of all the
    systems beats chains of recycled ones). ``cycle_precision``: the V-cycle's arithmetic (CG
    stays float64; float32 halves the cycle's memory traffic at no cost in accuracy).
    """

    method: Literal["auto", "pcg", "skr", "direct"] = Field(
        "auto", description="auto, pcg, skr or direct; see the section docstring"
    )
    preconditioner: Literal["multigrid", "jacobi", "pyamg"] = Field(
        "multigrid", description="CG preconditioner: multigrid V-cycle, jacobi, or pyamg (CPU only)"
    )
    tol: Tolerance = Field(1e-8, description="required true relative residual")
    maxiter: Int = Field(
        500, ge=1, le=MAX_ITERATIONS, description="CG iterations before the direct fallback"
    )
    cycle_precision: Literal["float32", "float64"] = Field(
        "float32", description="arithmetic of the multigrid V-cycle (CG stays float64)"
    )
    chains: Int = Field(4, ge=1, le=4096, description="skr: chains advanced as one batch")
    recycle: Int = Field(10, ge=0, le=200, description="skr: Ritz vectors carried")
    warm_start: bool = Field(True, description="skr: start from the previous solution of the chain")
    sort: Literal["auto", "none", "greedy", "scalable"] = Field(
        "auto",
        description="skr: sort of the coefficients; auto: greedy up to 2048 samples, else scalable",
    )


class DarcyConfig(GenerationConfig):
    """A Darcy generation config: ``-div(a grad u) = f`` on the unit square, ``u = 0`` on the
    boundary, a random coefficient ``a`` per sample."""

    problem: Literal["darcy"] = Field("darcy", description="the PDE; picks the schema of the rest")
    name: DatasetName = "darcy"
    resolution: Resolution = 64
    coefficient: Coefficient = Coefficient()
    forcing: Forcing = Forcing()
    face_average: FaceAverage = Field(
        "arithmetic",
        description="face coefficient from its two nodes: arithmetic (FNO) or harmonic mean",
    )
    solver: DarcySolver = DarcySolver()
    output: OutputDir = OutputDir(dir="runs/data/darcy")

    @model_validator(mode="after")
    def _pyamg_on_cpu(self) -> DarcyConfig:
        if self.solver.preconditioner == "pyamg" and self.device != "cpu":
            raise ValueError("solver.preconditioner 'pyamg' runs on the CPU only; set device: cpu")
        return self
