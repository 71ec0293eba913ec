"""Kuramoto-Sivashinsky datasets (:mod:`datagen.problems.semilinear.recipe`)."""

from __future__ import annotations

import torch

from datagen.core.recipe import Recipe
from datagen.problems.ks.config import KSConfig
from datagen.problems.ks.physics import equation, parameters
from datagen.problems.semilinear.recipe import build_recipe


def recipe(cfg: KSConfig, device: torch.device, progress: bool = True) -> Recipe:
    """The Kuramoto-Sivashinsky problem as a :class:`~datagen.core.recipe.Recipe`."""
    params = parameters(cfg)
    return build_recipe(cfg, device, progress, equation(params), params)
