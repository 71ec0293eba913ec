"""The Kuramoto-Sivashinsky config (``problem: ks``; docs/problems/ks_kdv.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from datagen.core.config import DatasetName, OutputDir
from datagen.problems.semilinear.config import SemilinearConfig


class KSConfig(SemilinearConfig):
    """A Kuramoto-Sivashinsky config: ``u_t + u u_x + nu u_xx + u_xxxx = 0``, periodic."""

    problem: Literal["ks"] = Field("ks", description="the PDE; picks the schema of the rest")
    name: DatasetName = "ks"
    viscosity: float = Field(
        1.0, gt=0.0, le=100.0, description="factor nu on u_xx (1: the standard equation)"
    )
    output: OutputDir = OutputDir(dir="runs/data/ks")
