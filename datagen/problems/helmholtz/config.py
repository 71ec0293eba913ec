"""The Helmholtz config (``problem: helmholtz``; docs/problems/helmholtz.md)."""

from __future__ import annotations

import math
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
    Scale,
    Smoothness,
    StrictModel,
    Tolerance,
    UnitInterval,
)


class Wavenumber(StrictModel):
    """Helmholtz wave number ``k(x) = k0 (1 + eps tanh(G(x)))``, ``G`` a GRF (``alpha``, ``tau``).

    ``k0 = 20 .. 80`` puts about 3 .. 13 wavelengths across the unit square.
    """

    k0: float = Field(
        30.0,
        gt=0.0,
        le=1e4,
        description="base wave number k0 (20 .. 80: about 3 .. 13 wavelengths)",
    )
    eps: float = Field(0.2, ge=0.0, lt=1.0, description="relative variation, < 1 keeps k > 0")
    alpha: Smoothness = Field(2.0, description="GRF G smoothness exponent")
    tau: InverseLength = Field(3.0, description="GRF G inverse length scale")
    boundary: Boundary = Field("neumann", description="GRF G boundary, periodic or neumann")


class Source(StrictModel):
    """Helmholtz source ``f``: a normalised Gaussian bump (``gaussian``, the same for every
    sample) or a GRF (``random``), times ``value``."""

    kind: Literal["gaussian", "random"] = Field(
        "gaussian", description="gaussian (one normalised bump for all samples) or random (a GRF)"
    )
    value: Scale = Field(1.0, description="factor on the bump or the GRF (nonzero)")
    center: tuple[UnitInterval, UnitInterval] = Field(
        (0.5, 0.5), description="gaussian: bump centre (x, y) on the unit square"
    )
    width: float = Field(0.05, gt=0.0, le=1.0, description="gaussian: bump standard deviation")
    alpha: Smoothness = Field(2.5, description="random: GRF smoothness exponent (periodic GRF)")
    tau: InverseLength = Field(7.0, description="random: GRF inverse length scale")

    @model_validator(mode="after")
    def _nonzero(self) -> Source:
        if self.value == 0:
            raise ValueError("value must be nonzero (f = 0 gives u = 0)")
        return self


class HelmholtzSolver(StrictModel):
    """Linear solver for Helmholtz.

    ``skr``: Sorting Krylov Recycling: the samples of a work unit are sorted by their wave
    number fields (``sort``), cut into ``chains`` contiguous chains advanced together as one
    batch, each system solved by GCRO-DR(``restart``, ``recycle``) with the recycle space and
    (``warm_start``) the solution of the previous system of its chain, right-preconditioned by
    one multigrid V-cycle of the complex-shifted Laplacian (damping ``shift``). ``gmres``: the
    same without sorting, recycling or warm starts. ``direct``: SciPy SuperLU per sample.
    ``auto``: ``skr`` on a GPU, ``direct`` on the CPU (faster there, benchmarks/RESULTS.md).
    A sample that misses ``tol`` in ``maxiter`` iterations is solved directly and marked so.
    """

    method: Literal["auto", "skr", "gmres", "direct"] = Field(
        "auto", description="auto, skr, gmres or direct; see the section docstring"
    )
    tol: Tolerance = Field(1e-8, description="required true relative residual")
    maxiter: Int = Field(
        1000, ge=1, le=MAX_ITERATIONS, description="Krylov iterations before the direct fallback"
    )
    restart: Int = Field(
        100, ge=1, le=1000, description="Krylov vectors per cycle: m of GCRO-DR(m, k) and GMRES(m)"
    )
    recycle: Int = Field(
        20, ge=0, le=1000, description="skr: recycled vectors carried: k of GCRO-DR(m, k)"
    )
    chains: Int = Field(4, ge=1, le=4096, description="skr: chains advanced as one batch")
    sort: Literal["auto", "none", "greedy", "scalable"] = Field(
        "auto",
        description="skr: sort of the wave numbers; auto: greedy up to 2048 samples, else scalable",
    )
    warm_start: bool = Field(True, description="skr: start from the previous solution of the chain")
    shift: float = Field(1.0, gt=0.0, le=100.0, description="damping beta of the shifted Laplacian")
    cycle_precision: Literal["complex64", "complex128"] = Field(
        "complex64", description="arithmetic of the shifted-Laplacian V-cycle"
    )


class HelmholtzConfig(GenerationConfig):
    """A Helmholtz generation config: ``-Laplace u - k(x)^2 u = f`` with an absorbing boundary.

    ``resolution`` nodes per side including the boundary (odd, for vertex-centred multigrid);
    it must give at least 10 points per shortest wavelength ``2 pi / (k0 (1 + eps))``.
    """

    problem: Literal["helmholtz"] = Field(
        "helmholtz", description="the PDE; picks the schema of the rest"
    )
    name: DatasetName = "helmholtz"
    resolution: Int = Field(65, ge=9, le=8193, description="grid nodes per side (odd)")
    wavenumber: Wavenumber = Wavenumber()
    source: Source = Source()
    solver: HelmholtzSolver = HelmholtzSolver()
    output: OutputDir = OutputDir(dir="runs/data/helmholtz")

    @model_validator(mode="after")
    def _resolved(self) -> HelmholtzConfig:
        if self.resolution % 2 == 0:
            raise ValueError(
                f"resolution must be odd (vertex-centred multigrid), got {self.resolution}"
            )
        k_max = self.wavenumber.k0 * (1 + self.wavenumber.eps)
        ppw = 2 * math.pi * (self.resolution - 1) / k_max
        if ppw < 10:
            need = math.ceil(10 * k_max / (2 * math.pi)) + 1
            need += 1 - need % 2  # the next odd resolution
            raise ValueError(
                f"resolution {self.resolution} gives {ppw:.1f} points per wavelength at "
                f"k_max = {k_max:.1f}; at least 10 are needed: use resolution >= {need} "
                "or a smaller wavenumber.k0"
            )
        return self
