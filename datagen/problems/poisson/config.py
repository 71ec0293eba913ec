"""The Poisson config (``problem: poisson``; docs/problems/poisson.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from datagen.core.config import (
    BatchSize,
    Boundary,
    DatasetName,
    GenerationConfig,
    InverseLength,
    OutputDir,
    Resolution,
    Smoothness,
    StrictModel,
    Tolerance,
)
from datagen.problems.darcy.config import Forcing


class DirichletData(StrictModel):
    """Poisson boundary values ``g``: the boundary trace of a GRF times ``value`` (``random``),
    or ``zero``. The GRF (``alpha``, ``tau``, ``boundary``) is drawn on the whole grid and only
    its boundary nodes are kept, so ``g`` is smooth along the boundary and continuous at the
    corners."""

    kind: Literal["random", "zero"] = Field(
        "random", description="random (boundary trace of a GRF times value) or zero"
    )
    value: float = Field(1.0, gt=0.0, le=1e8, description="scale of the random boundary data")
    alpha: Smoothness = Field(2.5, description="random: GRF smoothness exponent")
    tau: InverseLength = Field(3.0, description="random: GRF inverse length scale")
    boundary: Boundary = Field("neumann", description="random: GRF boundary, periodic or neumann")


class PoissonSolver(StrictModel):
    """Solver of the one Poisson matrix shared by every sample.

    ``dst``: exact fast solver by type-I sine transforms (the 5-point Dirichlet Laplacian is
    diagonal in that basis); ``direct``: SciPy SuperLU, factored once per run and reused for
    every right-hand side; ``auto``: ``dst`` (faster at every size, see
    :mod:`datagen.problems.poisson.physics`). ``tol``: the true relative residual every sample
    must reach (both methods are exact: about 1e-15 to 1e-13).
    """

    method: Literal["auto", "dst", "direct"] = Field(
        "auto", description="dst (sine transforms), direct (SuperLU factored once) or auto (dst)"
    )
    tol: Tolerance = Field(1e-10, description="required true relative residual")


class PoissonConfig(GenerationConfig):
    """A Poisson generation config: ``-Laplace u = f`` on the unit square, ``u = g`` on the
    boundary, random ``f`` and ``g`` (one matrix for all samples)."""

    problem: Literal["poisson"] = Field(
        "poisson", description="the PDE; picks the schema of the rest"
    )
    name: DatasetName = "poisson"
    resolution: Resolution = 64
    forcing: Forcing = Forcing(kind="random", value=100.0)
    dirichlet: DirichletData = DirichletData()
    solver: PoissonSolver = PoissonSolver()
    batch_size: BatchSize = 64
    output: OutputDir = OutputDir(dir="runs/data/poisson")

    @model_validator(mode="after")
    def _random(self) -> PoissonConfig:
        if self.forcing.kind == "constant" and self.dirichlet.kind == "zero":
            raise ValueError(
                "forcing.kind: constant with dirichlet.kind: zero gives the same sample every "
                "time; make the forcing or the boundary data random"
            )
        return self
