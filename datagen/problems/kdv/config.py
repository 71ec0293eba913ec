"""The Korteweg-de Vries config (``problem: kdv``; docs/problems/ks_kdv.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from datagen.core.config import DatasetName, OutputDir
from datagen.problems.semilinear.config import SemilinearConfig


class KdVConfig(SemilinearConfig):
    """A Korteweg-de Vries config: ``u_t + a u u_x + b u_xxx + eps u_xxxx = 0``, ``eps`` an
    optional hyperviscosity (0: none, every invariant conserved); LPSDA: a = b = 1; the classic
    soliton form: a = 6, b = 1."""

    problem: Literal["kdv"] = Field("kdv", description="the PDE; picks the schema of the rest")
    name: DatasetName = "kdv"
    a: float = Field(1.0, ge=-1e3, le=1e3, description="coefficient of u u_x (nonzero)")
    b: float = Field(1.0, ge=-1e3, le=1e3, description="coefficient of u_xxx (nonzero)")
    hyperviscosity: float = Field(
        0.0, ge=0.0, le=1.0, description="eps of the damping -eps u_xxxx (0: none)"
    )
    output: OutputDir = OutputDir(dir="runs/data/kdv")

    @model_validator(mode="after")
    def _nonzero(self) -> KdVConfig:
        for key in ("a", "b"):
            if getattr(self, key) == 0:
                raise ValueError(f"{key} must be nonzero (else not the KdV equation)")
        return self
