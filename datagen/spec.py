"""The schema of a generation config (``configs/datagen/*.yaml``); see the README for each key."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from datagen.config import Int, StrictModel, apply_overrides, read_yaml, validate
from datagen.errors import UserError

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

    method: Literal["auto", "pcg", "skr", "direct"] = "auto"
    preconditioner: Literal["multigrid", "jacobi", "pyamg"] = "multigrid"
    tol: float = Field(1e-8, gt=0.0, lt=1.0, description="required true relative residual")
    maxiter: Int = Field(500, ge=1, description="CG iterations before the direct fallback")
    cycle_precision: Literal["float32", "float64"] = "float32"
    chains: Int = Field(4, ge=1, le=4096, description="skr: chains advanced as one batch")
    recycle: Int = Field(10, ge=0, le=200, description="skr: Ritz vectors carried")
    warm_start: bool = True
    sort: Literal["auto", "none", "greedy", "scalable"] = "auto"


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

    @model_validator(mode="after")
    def _pyamg_on_cpu(self) -> DatagenConfig:
        if self.solver.preconditioner == "pyamg" and self.device != "cpu":
            raise ValueError("solver.preconditioner 'pyamg' runs on the CPU only; set device: cpu")
        return self


class InitialVorticity(StrictModel):
    """Initial vorticity: a periodic GRF (covariance as :class:`RandomField`) times ``scale``."""

    alpha: float = Field(2.5, gt=1.0)
    tau: float = Field(7.0, gt=0.0)
    scale: float = Field(1.0, gt=0.0)


class VorticityForcing(StrictModel):
    """Vorticity source ``f``.

    ``fno``: ``amplitude (sin(2 pi k (x + y)) + cos(2 pi k (x + y)))`` (the FNO benchmark:
    0.1, k = 1); ``kolmogorov``: ``amplitude sin(2 pi k y)``; ``none``: unforced.
    """

    kind: Literal["fno", "kolmogorov", "none"] = "fno"
    amplitude: float = 0.1
    wavenumber: Int = Field(1, ge=1)


class TimeStepping(StrictModel):
    """Time integration and records.

    The run starts at t = 0, integrates without recording up to ``start`` (warm-up), then
    records ``records`` snapshots evenly on ``(start, end]``, plus ``start`` itself when
    ``include_start``. ``scheme``: ``heun_cn`` (Crank-Nicolson / Heun, second order, the FNO
    and torch-cfd scheme) or ``ifrk4`` (integrating-factor RK4, fourth order). Without
    ``adaptive``, a CFL number ``dt n max(|u| + |v|)`` above ``cfl_max`` at a record stops the
    run; with it, each sample takes the largest steps ``<= dt`` that keep it below ``cfl_max``.
    """

    dt: float = Field(1e-4, gt=0.0)
    start: float = Field(0.0, ge=0.0)
    end: float = Field(50.0, gt=0.0)
    records: Int = Field(50, ge=1)
    include_start: bool = True
    scheme: Literal["heun_cn", "ifrk4"] = "heun_cn"
    adaptive: bool = False
    cfl_max: float = Field(0.8, gt=0.0)

    @model_validator(mode="after")
    def _ordered(self) -> TimeStepping:
        if self.end <= self.start:
            raise ValueError(f"end ({self.end}) must be after start ({self.start})")
        return self

    def record_times(self) -> list[float]:
        step = (self.end - self.start) / self.records
        first = 0 if self.include_start else 1
        return [self.start + j * step for j in range(first, self.records + 1)]


class NavierStokesConfig(StrictModel):
    """A Navier-Stokes generation config (2-D vorticity on the periodic unit torus).

    ``resolution`` is the solve grid, ``store_resolution`` the stored one (spectral
    truncation); ``store_fine`` also writes the solve grid to ``<output.dir>_<resolution>``.
    """

    problem: Literal["navier_stokes"] = "navier_stokes"
    name: str = Field("ns", pattern=r"^[A-Za-z0-9_.-]+$")
    resolution: Int = Field(256, ge=8, le=4096)
    store_resolution: Int = Field(64, ge=8, le=4096)
    store_fine: bool = False
    samples: Samples = Samples()
    seed: Int = Field(0, ge=0, lt=2**63)
    viscosity: float = Field(1e-3, gt=0.0)
    drag: float = Field(0.0, ge=0.0)
    initial: InitialVorticity = InitialVorticity()
    forcing: VorticityForcing = VorticityForcing()
    time: TimeStepping = TimeStepping()
    batch_size: Int = Field(16, ge=1, le=4096)
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    precision: Literal["float32", "float64"] = "float32"
    storage_dtype: Literal["float32", "float64"] = "float32"
    output: Output = Output(dir="runs/data/ns")

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
        return self


class Wavenumber(StrictModel):
    """Helmholtz wave number ``k(x) = k0 (1 + eps tanh(G(x)))``, ``G`` a GRF (``alpha``, ``tau``).

    ``k0 = 20 .. 80`` puts about 3 .. 13 wavelengths across the unit square.
    """

    k0: float = Field(30.0, gt=0.0)
    eps: float = Field(0.2, ge=0.0, lt=1.0, description="relative variation, < 1 keeps k > 0")
    alpha: float = Field(2.0, gt=1.0)
    tau: float = Field(3.0, gt=0.0)
    boundary: Literal["periodic", "neumann"] = "neumann"


class Source(StrictModel):
    """Helmholtz source ``f``: a normalised Gaussian bump (``gaussian``, the same for every
    sample) or a GRF (``random``), times ``value``."""

    kind: Literal["gaussian", "random"] = "gaussian"
    value: float = 1.0
    center: tuple[float, float] = (0.5, 0.5)
    width: float = Field(0.05, gt=0.0)
    alpha: float = Field(2.5, gt=1.0)
    tau: float = Field(7.0, gt=0.0)

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

    method: Literal["auto", "skr", "gmres", "direct"] = "auto"
    tol: float = Field(1e-8, gt=0.0, lt=1.0, description="required true relative residual")
    maxiter: Int = Field(1000, ge=1)
    restart: Int = Field(100, ge=1, le=1000)
    recycle: Int = Field(20, ge=0, le=1000)
    chains: Int = Field(4, ge=1, le=4096)
    sort: Literal["auto", "none", "greedy", "scalable"] = "auto"
    warm_start: bool = True
    shift: float = Field(1.0, gt=0.0, description="damping beta of the shifted Laplacian")
    cycle_precision: Literal["complex64", "complex128"] = "complex64"


class HelmholtzConfig(StrictModel):
    """A Helmholtz generation config: ``-Laplace u - k(x)^2 u = f`` with an absorbing boundary.

    ``resolution`` nodes per side including the boundary (odd, for vertex-centred multigrid);
    it must give at least 10 points per shortest wavelength ``2 pi / (k0 (1 + eps))``.
    """

    problem: Literal["helmholtz"] = "helmholtz"
    name: str = Field("helmholtz", pattern=r"^[A-Za-z0-9_.-]+$")
    resolution: Int = Field(65, ge=9, le=8193)
    samples: Samples = Samples()
    seed: Int = Field(0, ge=0, lt=2**63)
    wavenumber: Wavenumber = Wavenumber()
    source: Source = Source()
    solver: HelmholtzSolver = HelmholtzSolver()
    batch_size: Int = Field(16, ge=1, le=65536, description="samples per work unit (sorted)")
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    storage_dtype: Literal["float32", "float64"] = "float32"
    output: Output = Output(dir="runs/data/helmholtz")

    @model_validator(mode="after")
    def _resolved(self) -> HelmholtzConfig:
        import math

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


class DirichletData(StrictModel):
    """Poisson boundary values ``g``: the boundary trace of a GRF times ``value`` (``random``),
    or ``zero``. The GRF (``alpha``, ``tau``, ``boundary``) is drawn on the whole grid and only
    its boundary nodes are kept, so ``g`` is smooth along the boundary and continuous at the
    corners."""

    kind: Literal["random", "zero"] = "random"
    value: float = Field(1.0, gt=0.0, description="scale of the random boundary data")
    alpha: float = Field(2.5, gt=1.0)
    tau: float = Field(3.0, gt=0.0)
    boundary: Literal["periodic", "neumann"] = "neumann"


class PoissonSolver(StrictModel):
    """Solver of the one Poisson matrix shared by every sample.

    ``dst``: exact fast solver by type-I sine transforms (the 5-point Dirichlet Laplacian is
    diagonal in that basis); ``direct``: SciPy SuperLU, factored once per run and reused for
    every right-hand side; ``auto``: ``dst`` (faster at every size, see
    :mod:`datagen.poisson`). ``tol``: the true relative residual every sample must reach
    (both methods are exact: about 1e-15 to 1e-13).
    """

    method: Literal["auto", "dst", "direct"] = "auto"
    tol: float = Field(1e-10, gt=0.0, lt=1.0, description="required true relative residual")


class PoissonConfig(StrictModel):
    """A Poisson generation config: ``-Laplace u = f`` on the unit square, ``u = g`` on the
    boundary, random ``f`` and ``g`` (one matrix for all samples)."""

    problem: Literal["poisson"] = "poisson"
    name: str = Field("poisson", pattern=r"^[A-Za-z0-9_.-]+$")
    resolution: Int = Field(
        64, ge=5, le=8193, description="grid nodes per side including the boundary"
    )
    samples: Samples = Samples()
    seed: Int = Field(0, ge=0, lt=2**63)
    forcing: Forcing = Forcing(kind="random", value=100.0)
    dirichlet: DirichletData = DirichletData()
    solver: PoissonSolver = PoissonSolver()
    batch_size: Int = Field(64, ge=1, le=65536, description="samples per work unit")
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    storage_dtype: Literal["float32", "float64"] = "float32"
    output: Output = Output(dir="runs/data/poisson")

    @model_validator(mode="after")
    def _random(self) -> PoissonConfig:
        if self.forcing.kind == "constant" and self.dirichlet.kind == "zero":
            raise ValueError(
                "forcing.kind: constant with dirichlet.kind: zero gives the same sample every "
                "time; make the forcing or the boundary data random"
            )
        return self


class InitialCondition(StrictModel):
    """Heat initial condition: a GRF (``alpha``, ``tau``, ``boundary``) times ``scale`` at the
    interior nodes, zero on the boundary."""

    alpha: float = Field(2.5, gt=1.0)
    tau: float = Field(7.0, gt=0.0)
    boundary: Literal["periodic", "neumann"] = "periodic"
    scale: float = Field(1.0, gt=0.0)


class HeatTime(StrictModel):
    """Implicit time stepping of the heat equation and its records.

    ``records`` snapshots evenly on ``(0, end]`` plus the initial condition; the step is
    ``dt`` shortened so that a whole number of steps lands on each record. ``scheme``:
    ``backward_euler`` (first order, L-stable: damps the rough modes of the initial data) or
    ``crank_nicolson`` (second order; rough modes with ``dt lambda >> 1`` decay slowly with
    alternating sign).
    """

    dt: float = Field(1e-3, gt=0.0)
    end: float = Field(0.05, gt=0.0)
    records: Int = Field(10, ge=1, le=100000)
    scheme: Literal["backward_euler", "crank_nicolson"] = "crank_nicolson"

    def steps_per_record(self) -> int:
        import math

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

    method: Literal["auto", "pcg", "direct"] = "auto"
    preconditioner: Literal["multigrid", "jacobi"] = "multigrid"
    tol: float = Field(1e-8, gt=0.0, lt=1.0, description="true relative residual per step")
    maxiter: Int = Field(500, ge=1)
    cycle_precision: Literal["float32", "float64"] = "float32"
    warm_start: bool = True


class HeatConfig(StrictModel):
    """A heat-equation config: ``u_t = div(a grad u)``, ``u = 0`` on the boundary, a random
    coefficient (the Darcy families) and a random initial condition; trajectories stored."""

    problem: Literal["heat"] = "heat"
    name: str = Field("heat", pattern=r"^[A-Za-z0-9_.-]+$")
    resolution: Int = Field(
        64, ge=5, le=8193, description="grid nodes per side including the boundary"
    )
    samples: Samples = Samples()
    seed: Int = Field(0, ge=0, lt=2**63)
    coefficient: Coefficient = Coefficient()
    face_average: Literal["arithmetic", "harmonic"] = "arithmetic"
    initial: InitialCondition = InitialCondition()
    time: HeatTime = HeatTime()
    solver: HeatSolver = HeatSolver()
    batch_size: Int = Field(16, ge=1, le=4096, description="trajectories per work unit")
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    storage_dtype: Literal["float32", "float64"] = "float32"
    output: Output = Output(dir="runs/data/heat")


PROBLEMS = {
    "darcy": DatagenConfig,
    "navier_stokes": NavierStokesConfig,
    "helmholtz": HelmholtzConfig,
    "poisson": PoissonConfig,
    "heat": HeatConfig,
}
GenerationConfig = DatagenConfig | NavierStokesConfig | HelmholtzConfig | PoissonConfig | HeatConfig


def load_generation_config(path: str, overrides: list[str] | None = None) -> GenerationConfig:
    """Read a generation config, pick its schema by ``problem`` (default darcy), validate."""
    data = apply_overrides(read_yaml(path), list(overrides or []))
    problem = data.get("problem", "darcy")
    if problem not in PROBLEMS:
        raise UserError(
            f"{path}: problem: {problem!r} is not allowed; expected one of "
            + ", ".join(repr(p) for p in PROBLEMS)
        )
    return validate(PROBLEMS[problem], data, source=str(path))
