"""The heat-equation config (``problem: heat``; docs/problems/heat.md)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from datagen.core.config import (
    MAX_ITERATIONS,
    MAX_STEPS,
    Boundary,
    DatasetName,
    GenerationConfig,
    Int,
    InverseLength,
    OutputDir,
    Resolution,
    Smoothness,
    StrictModel,
    Tolerance,
)
from datagen.problems.darcy.config import Coefficient, FaceAverage


class InitialCondition(StrictModel):
    """Heat initial condition: a GRF (``alpha``, ``tau``, ``boundary``) times ``scale`` at the
    interior nodes, zero on the boundary."""

    alpha: Smoothness = Field(2.5, description="GRF smoothness exponent")
    tau: InverseLength = Field(7.0, description="GRF inverse length scale")
    boundary: Boundary = Field("periodic", description="GRF boundary, periodic or neumann")
    scale: float = Field(1.0, gt=0.0, le=1e8, description="factor on the GRF (the scale of u(0))")


class HeatTime(StrictModel):
    """Implicit time stepping of the heat equation and its records.

    ``records`` snapshots evenly on ``(0, end]`` plus the initial condition; the step is
    ``dt`` shortened so that a whole number of steps lands on each record. ``scheme``:
    ``backward_euler`` (first order, L-stable: damps the rough modes of the initial data) or
    ``crank_nicolson`` (second order; rough modes with ``dt lambda >> 1`` decay slowly with
    alternating sign).
    """

    dt: float = Field(
        1e-3, gt=0.0, le=1e3, description="largest time step (shortened to land on the records)"
    )
    end: float = Field(0.05, gt=0.0, le=1e6, description="final time T")
    records: Int = Field(
        10, ge=1, le=100000, description="snapshots evenly on (0, end], plus t = 0"
    )
    scheme: Literal["backward_euler", "crank_nicolson"] = Field(
        "crank_nicolson",
        description="backward_euler (first order, L-stable) or crank_nicolson (second)",
    )

    @model_validator(mode="after")
    def _bounded(self) -> HeatTime:
        steps = self.records * self.steps_per_record()
        if steps > MAX_STEPS:
            raise ValueError(
                f"end / dt = {steps:.3g} steps, more than {MAX_STEPS:.0e}: raise dt or lower end"
            )
        return self

    def steps_per_record(self) -> int:
        return max(1, math.ceil(self.end / self.records / self.dt * (1 - 1e-12)))

    def step(self) -> float:
        """The step actually taken (``<= dt``)."""
        return self.end / self.records / self.steps_per_record()

    def record_times(self) -> list[float]:
        return [self.end * j / self.records for j in range(self.records + 1)]


class HeatSolver(StrictModel):
    """Solver of the SPD systems ``(I/dt + theta A) u_new = (I/dt - (1 - theta) A) u``.

    ``pcg``: batched preconditioned CG over the trajectories of a work unit
    (``preconditioner``: Galerkin multigrid V-cycle built once per unit, or Jacobi), each step
    started from the previous solution (``warm_start``); a step that misses ``tol`` in
    ``maxiter`` iterations is solved by SuperLU and counted. ``direct``: one SuperLU
    factorization per trajectory (its matrix is the same at every step), two triangular solves
    per step. ``auto``: ``direct`` on the CPU, ``pcg`` on a GPU (measured:
    benchmarks/RESULTS.md, SuperLU with one factorization is 1.3-2.7x faster than batched CG on
    a 2-core CPU at 129 to 257).
    """

    method: Literal["auto", "pcg", "direct"] = Field(
        "auto", description="auto, pcg or direct; see the section docstring"
    )
    preconditioner: Literal["multigrid", "jacobi"] = Field(
        "multigrid", description="pcg: multigrid V-cycle (built once per unit) or jacobi"
    )
    tol: Tolerance = Field(1e-8, description="true relative residual per step")
    maxiter: Int = Field(
        500, ge=1, le=MAX_ITERATIONS, description="pcg: CG iterations per step before SuperLU"
    )
    cycle_precision: Literal["float32", "float64"] = Field(
        "float32", description="arithmetic of the multigrid V-cycle (CG stays float64)"
    )
    warm_start: bool = Field(True, description="pcg: start each step from the previous solution")


class HeatConfig(GenerationConfig):
    """A heat-equation config: ``u_t = div(a grad u)``, ``u = 0`` on the boundary, a random
    coefficient (the Darcy families) and a random initial condition; trajectories stored."""

    problem: Literal["heat"] = Field("heat", description="the PDE; picks the schema of the rest")
    name: DatasetName = "heat"
    resolution: Resolution = 64
    coefficient: Coefficient = Coefficient()
    face_average: FaceAverage = Field(
        "arithmetic",
        description="face coefficient from its two nodes: arithmetic (FNO) or harmonic mean",
    )
    initial: InitialCondition = InitialCondition()
    time: HeatTime = HeatTime()
    solver: HeatSolver = HeatSolver()
    output: OutputDir = OutputDir(dir="runs/data/heat")
