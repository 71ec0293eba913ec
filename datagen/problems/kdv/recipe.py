"""Korteweg-de Vries datasets (:mod:`datagen.problems.semilinear.recipe`)."""

from __future__ import annotations

import torch

from datagen.core.recipe import Recipe
from datagen.problems.kdv.config import KdVConfig
from datagen.problems.kdv.physics import equation, parameters
from datagen.problems.semilinear.recipe import build_recipe


def recipe(cfg: KdVConfig, device: torch.device, progress: bool = True) -> Recipe:
    """The Korteweg-de Vries problem as a :class:`~datagen.core.recipe.Recipe`."""
    params = parameters(cfg)
    return build_recipe(cfg, device, progress, equation(params), params)
