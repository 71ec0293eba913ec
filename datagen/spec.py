"""The schema of a generation config (``configs/datagen/*.yaml``); see the README for each key."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from datagen.config import Int, StrictModel

SPLITS = ("train", "valid", "test")

# Defaults of each coefficient family: the FNO benchmark and the SKR paper.
FAMILY_DEFAULTS = {
    "piecewise_constant": {"alpha": 2.0, "tau": 3.0, "boundary": "neumann"},
    "lognormal": {"alpha": 2.5, "tau": 7.0, "boundary": "periodic"},
}


class RandomField(StrictModel):
    """GRF parameters: covariance ``tau^(2 alpha - 2) (-Laplace + tau^2)^(-alpha)``."""

    alpha: float = Field(2.0, gt=1.0, description="smoothness exponent (> 1 in 2-D)")
    tau: float = Field(3.0, gt=0.0, description="inverse length scale")
    boundary: Literal["periodic", "neumann"] = "neumann"


class Coefficient(StrictModel):
    """The Darcy coefficient ``a``.

    ``piecewise_constant``: ``a = high`` where the field is >= 0, ``low`` elsewhere (FNO data:
    12 and 3). ``lognormal``: ``a = exp(field)`` (SKR paper). Unset ``alpha``, ``tau`` and
    ``boundary`` take the family's defaults.
    """

    family: Literal["piecewise_constant", "lognormal"] = "piecewise_constant"
    alpha: float | None = Field(None, gt=1.0)
    tau: float | None = Field(None, gt=0.0)
    boundary: Literal["periodic", "neumann"] | None = None
    high: float = Field(12.0, gt=0.0)
    low: float = Field(3.0, gt=0.0)

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

    kind: Literal["constant", "random"] = "constant"
    value: float = Field(1.0, description="the constant, or the scale of the random field")
    alpha: float = Field(2.5, gt=1.0)
    tau: float = Field(7.0, gt=0.0)
    boundary: Literal["periodic", "neumann"] = "periodic"

    @model_validator(mode="after")
    def _nonzero(self) -> Forcing:
        if self.value == 0:
            raise ValueError("value must be nonzero (f = 0 gives u = 0)")
        return self

    def field(self) -> RandomField:
        return RandomField(alpha=self.alpha, tau=self.tau, boundary=self.boundary)


class Samples(StrictModel):
    """Number of samples per split."""

    train: Int = Field(64, ge=0)
    valid: Int = Field(16, ge=0)
    test: Int = Field(16, ge=0)

    @model_validator(mode="after")
    def _some(self) -> Samples:
        if self.train + self.valid + self.test == 0:
            raise ValueError("at least one split needs samples")
        return self


class Solver(StrictModel):
    """Linear solver.

    ``pcg``: batched conjugate gradients on ``batch_size`` systems at once, preconditioned by a
    Galerkin multigrid V-cycle (or Jacobi); a sample that misses ``tol`` in ``maxiter``
    iterations is re-solved directly and marked so. ``direct``: SciPy SuperLU, one by one.
    ``auto``: ``pcg`` on a GPU or from 129 x 129 nodes up, else ``direct`` (measured fastest,
    benchmarks/RESULTS.md). ``cycle_precision``: the V-cycle's arithmetic (CG stays float64;
    float32 halves the cycle's memory traffic at no cost in accuracy).
    """

    method: Literal["auto", "pcg", "direct"] = "auto"
    preconditioner: Literal["multigrid", "jacobi"] = "multigrid"
    tol: float = Field(1e-8, gt=0.0, lt=1.0, description="required true relative residual")
    maxiter: Int = Field(500, ge=1, description="CG iterations before the direct fallback")
    cycle_precision: Literal["float32", "float64"] = "float32"


class Output(StrictModel):
    """Where the dataset goes: ``dir/data/<split>/<name>_<split>.hdf5`` plus stats and config."""

    dir: str = "runs/data/darcy"
    overwrite: bool = False


class DatagenConfig(StrictModel):
    """A complete generation config."""

    problem: Literal["darcy"] = "darcy"
    name: str = Field("darcy", pattern=r"^[A-Za-z0-9_.-]+$")
    resolution: Int = Field(
        64, ge=5, le=8193, description="grid nodes per side including the boundary"
    )
    samples: Samples = Samples()
    seed: Int = Field(0, ge=0, lt=2**63)
    coefficient: Coefficient = Coefficient()
    forcing: Forcing = Forcing()
    face_average: Literal["arithmetic", "harmonic"] = "arithmetic"
    solver: Solver = Solver()
    batch_size: Int = Field(16, ge=1, le=4096, description="samples per work unit")
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    storage_dtype: Literal["float32", "float64"] = "float32"
    output: Output = Output()
