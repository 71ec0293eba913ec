"""The config sections of the 1-D semilinear problems (``ks``, ``kdv``)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_validator

from datagen.core.config import (
    MAX_STEPS,
    GenerationConfig,
    Int,
    InverseLength,
    Smoothness,
    StrictModel,
)

KASSAM_TREFETHEN_LENGTH = 32 * math.pi


def _multiple(value: float, step: float) -> int | None:
    """``value / step`` when it is a whole number (to 1e-9 relative), else None."""
    ratio = value / step
    return round(ratio) if abs(ratio - round(ratio)) <= 1e-9 * max(1.0, ratio) else None


class Domain(StrictModel):
    """The periodic interval ``[0, length)``; ``length_jitter`` draws each trajectory's length
    uniformly in ``length (1 +- length_jitter)`` (LPSDA's randomisation: 0.1)."""

    length: float = Field(64.0, gt=0.0, le=1e6, description="domain length L")
    length_jitter: float = Field(
        0.0, ge=0.0, lt=0.5, description="relative spread of a trajectory's length (0: none)"
    )


class SemilinearTime(StrictModel):
    """Time stepping and records.

    ETDRK4 steps of ``dt``; the first record is taken at ``warmup``, then one every
    ``interval`` (a multiple of ``dt``), ``records`` in all. ``span_jitter`` draws each
    trajectory's record interval (and with it its step and time span) uniformly in
    ``interval (1 +- span_jitter)`` (LPSDA: 0.1).
    """

    dt: float = Field(0.05, gt=0.0, le=100.0, description="ETDRK4 time step")
    interval: float = Field(0.2, gt=0.0, le=1e4, description="time between records")
    records: Int = Field(140, ge=2, le=10**6, description="snapshots stored per trajectory")
    warmup: float = Field(
        0.0, ge=0.0, le=1e6, description="time of the first record (earlier steps unstored)"
    )
    span_jitter: float = Field(
        0.0, ge=0.0, lt=0.5, description="relative spread of a trajectory's record interval"
    )

    @model_validator(mode="after")
    def _on_the_steps(self) -> SemilinearTime:
        for key in ("interval", "warmup"):
            value = getattr(self, key)
            if value and _multiple(value, self.dt) is None:
                raise ValueError(
                    f"{key} ({value}) must be a multiple of dt ({self.dt}): records land on steps"
                )
        steps = round((self.warmup + (self.records - 1) * self.interval) / self.dt)
        if steps > MAX_STEPS:
            raise ValueError(f"{steps:.3g} steps, more than {MAX_STEPS:.0e}: raise dt")
        return self

    @property
    def steps_per_record(self) -> int:
        return round(self.interval / self.dt)

    @property
    def warmup_steps(self) -> int:
        return round(self.warmup / self.dt)

    def record_times(self) -> list[float]:
        return [self.warmup + j * self.interval for j in range(self.records)]


class InitialData(StrictModel):
    """Initial data.

    ``sines``: ``sum_j A_j sin(2 pi l_j x / L + phi_j)``, ``modes`` terms, ``A_j`` uniform in
    ``[-amplitude, amplitude]``, ``phi_j`` in ``[0, 2 pi)``, ``l_j`` drawn from ``wavenumbers``
    (LPSDA / PDE-Arena); ``grf``: a periodic Gaussian random field (``alpha``, ``tau``) times
    ``scale``; ``kassam_trefethen``: ``cos(x/16)(1 + sin(x/16))`` (their Kuramoto-Sivashinsky
    case; needs ``domain.length`` = 32 pi).
    """

    kind: Literal["sines", "grf", "kassam_trefethen"] = Field(
        "sines", description="sines (LPSDA), grf, or kassam_trefethen"
    )
    modes: Int = Field(10, ge=1, le=1000, description="sines: number of terms J")
    amplitude: float = Field(
        0.5, gt=0.0, le=1e4, description="sines: A_j in [-amplitude, amplitude]"
    )
    wavenumbers: list[Int] = Field(
        [1, 2, 3], min_length=1, description="sines: the integer wavenumbers l_j are drawn from"
    )
    alpha: Smoothness = Field(2.0, description="grf: smoothness exponent")
    tau: InverseLength = Field(3.0, description="grf: inverse length scale (on the unit interval)")
    scale: float = Field(1.0, gt=0.0, le=1e4, description="grf: factor on the field")

    @model_validator(mode="after")
    def _positive_wavenumbers(self) -> InitialData:
        if any(w < 1 for w in self.wavenumbers):
            raise ValueError(f"wavenumbers must be integers >= 1, got {self.wavenumbers}")
        return self


class SemilinearConfig(GenerationConfig):
    """The keys every 1-D semilinear problem has: the grid (``resolution`` periodic nodes,
    even), the domain, time stepping and records, the initial data and the arithmetic."""

    resolution: Int = Field(256, ge=8, le=65536, description="periodic grid points N (even)")
    domain: Domain = Domain()
    time: SemilinearTime = SemilinearTime()
    initial: InitialData = InitialData()
    precision: Literal["float32", "float64"] = Field(
        "float32", description="solver arithmetic (storage_dtype sets the stored arrays)"
    )

    @model_validator(mode="after")
    def _grid(self) -> SemilinearConfig:
        if self.resolution % 2:
            raise ValueError(f"resolution must be even (real FFT grid), got {self.resolution}")
        kt = self.initial.kind == "kassam_trefethen"
        if (
            kt
            and abs(self.domain.length - KASSAM_TREFETHEN_LENGTH) > 1e-9 * KASSAM_TREFETHEN_LENGTH
        ):
            raise ValueError(
                "initial.kind kassam_trefethen is periodic on domain.length = 32 pi "
                f"({KASSAM_TREFETHEN_LENGTH!r}) only, got {self.domain.length}"
            )
        if kt and self.domain.length_jitter:
            raise ValueError("initial.kind kassam_trefethen needs domain.length_jitter: 0")
        highest = max(self.initial.wavenumbers) if self.initial.kind == "sines" else 0
        if highest > (self.resolution - 1) // 3:
            raise ValueError(
                f"initial.wavenumbers up to {highest} exceed the {(self.resolution - 1) // 3} "
                f"modes a {self.resolution}-point grid keeps (2/3 rule)"
            )
        return self
