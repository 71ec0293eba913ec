"""The Navier-Stokes config (``problem: navier_stokes``; docs/problems/navier_stokes.md)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from datagen.core.config import (
    MAX_STEPS,
    DatasetName,
    GenerationConfig,
    Int,
    InverseLength,
    OutputDir,
    Smoothness,
    StrictModel,
)


class InitialVorticity(StrictModel):
    """Initial vorticity: a periodic GRF (covariance as :class:`RandomField`) times ``scale``."""

    alpha: Smoothness = Field(2.5, description="GRF smoothness exponent")
    tau: InverseLength = Field(7.0, description="GRF inverse length scale")
    scale: float = Field(
        1.0, gt=0.0, le=1e4, description="factor on the GRF (1.41421356: the FNO amplitude)"
    )


class VorticityForcing(StrictModel):
    """Vorticity source ``f``.

    ``fno``: ``amplitude (sin(2 pi k (x + y)) + cos(2 pi k (x + y)))`` (the FNO benchmark:
    0.1, k = 1); ``kolmogorov``: ``amplitude sin(2 pi k y)``; ``none``: unforced.
    """

    kind: Literal["fno", "kolmogorov", "none"] = Field(
        "fno", description="fno, kolmogorov or none (unforced); see the section docstring"
    )
    amplitude: float = Field(0.1, ge=-1e4, le=1e4, description="amplitude of the forcing")
    wavenumber: Int = Field(1, ge=1, description="wave number k of the forcing")


class TimeStepping(StrictModel):
    """Time integration and records.

    The run starts at t = 0, integrates without recording up to ``start`` (warm-up), then
    records ``records`` snapshots evenly on ``(start, end]``, plus ``start`` itself when
    ``include_start``. ``scheme``: ``heun_cn`` (Crank-Nicolson / Heun, second order, the FNO
    and torch-cfd scheme) or ``ifrk4`` (integrating-factor RK4, fourth order). Without
    ``adaptive``, a CFL number ``dt n max(|u| + |v|)`` above ``cfl_max`` at a record stops the
    run; with it, each sample takes the largest steps ``<= dt`` that keep it below ``cfl_max``.
    """

    dt: float = Field(
        1e-4, gt=0.0, le=1.0, description="largest time step (shortened to land on the records)"
    )
    start: float = Field(
        0.0, ge=0.0, le=1e6, description="end of the unrecorded warm-up from t = 0"
    )
    end: float = Field(50.0, gt=0.0, le=1e6, description="final time")
    records: Int = Field(50, ge=1, le=10**6, description="snapshots evenly on (start, end]")
    include_start: bool = Field(True, description="also record the state at start")
    scheme: Literal["heun_cn", "ifrk4"] = Field(
        "heun_cn", description="heun_cn (Crank-Nicolson / Heun, second order) or ifrk4 (fourth)"
    )
    adaptive: bool = Field(False, description="per sample, the largest steps <= dt below cfl_max")
    cfl_max: float = Field(
        0.8, gt=0.0, le=2.0, description="CFL bound: stops the run, or caps adaptive steps"
    )

    @model_validator(mode="after")
    def _ordered(self) -> TimeStepping:
        if self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be after start ({self.start})")
        return self

    def record_times(self) -> list[float]:
        step = (self.end - self.start) / self.records
        first = 0 if self.include_start else 1
        return [self.start + j * step for j in range(first, self.records + 1)]


class NavierStokesConfig(GenerationConfig):
    """A Navier-Stokes generation config (2-D vorticity on the periodic unit torus).

    ``resolution`` is the solve grid (``n x n`` periodic nodes), ``store_resolution`` the
    stored one (spectral truncation); ``store_fine`` also writes the solve grid to
    ``<output.dir>_<resolution>``.
    """

    problem: Literal["navier_stokes"] = Field(
        "navier_stokes", description="the PDE; picks the schema of the rest"
    )
    name: DatasetName = "ns"
    resolution: Int = Field(256, ge=8, le=4096, description="periodic solve grid n x n")
    store_resolution: Int = Field(
        64, ge=8, le=4096, description="stored grid (spectral truncation, even, <= resolution)"
    )
    store_fine: bool = Field(
        False, description="also write the solve grid to <output.dir>_<resolution>"
    )
    viscosity: float = Field(1e-3, gt=0.0, le=10.0, description="kinematic viscosity nu")
    drag: float = Field(0.0, ge=0.0, le=1e3, description="linear drag coefficient mu")
    initial: InitialVorticity = InitialVorticity()
    forcing: VorticityForcing = VorticityForcing()
    time: TimeStepping = TimeStepping()
    precision: Literal["float32", "float64"] = Field(
        "float32", description="solver arithmetic (storage_dtype sets the stored arrays)"
    )
    output: OutputDir = OutputDir(dir="runs/data/ns")

    @model_validator(mode="after")
    def _grids(self) -> NavierStokesConfig:
        for key in ("resolution", "store_resolution"):
            if getattr(self, key) % 2:
                raise ValueError(f"{key} must be even (real FFT grid), got {getattr(self, key)}")
        if self.store_resolution > self.resolution:
            raise ValueError(
                f"store_resolution ({self.store_resolution}) must not exceed the solve "
                f"resolution ({self.resolution})"
            )
        kept = (self.resolution - 1) // 3  # the 2/3 rule keeps |k| <= kept
        if self.forcing.kind != "none" and self.forcing.wavenumber > kept:
            raise ValueError(
                f"forcing.wavenumber {self.forcing.wavenumber} is above the {kept} modes a "
                f"{self.resolution} grid keeps (2/3 rule): use wavenumber <= {kept} or a finer "
                "resolution"
            )
        steps = math.ceil(self.time.end / self.time.dt)
        if steps > MAX_STEPS:
            raise ValueError(
                f"time.end / time.dt = {steps:.3g} steps, more than {MAX_STEPS:.0e}: raise "
                "time.dt or lower time.end"
            )
        return self
