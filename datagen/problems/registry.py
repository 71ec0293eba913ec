"""The problem registry: a problem's name -> its config schema and its parts.

Every problem is a package ``datagen/problems/<name>/`` holding

- ``config.py``: its config schema, a :class:`~datagen.core.config.GenerationConfig` whose
  ``problem`` key is the name (the one registered below);
- ``physics.py``: its discretization, operators and solvers or time steppers;
- ``recipe.py``: ``recipe(cfg, device, progress) -> Recipe`` (:mod:`datagen.core.recipe`);
- ``verify.py``: ``verify(file, path) -> VerifyReport`` (:mod:`datagen.core.report`), the
  check of a stored file from its fields alone;
- optionally ``figures.py``: ``figure(path, out, count) -> Path``, its own figure of a file
  (otherwise :func:`datagen.plots.plot_file` draws it).

The drivers (``generate``, ``verify``, ``info``, the CLI) reach the problems only through this
registry, with no per-problem branch. A config's schema is imported with the registry (pydantic
only, so a config is validated before any solver is imported); the other parts on first use.
Adding a problem is one package and one line in :data:`PROBLEMS`.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from datagen.core.config import GenerationConfig, apply_overrides, read_yaml, validate
from datagen.core.errors import UserError
from datagen.problems.darcy.config import DarcyConfig
from datagen.problems.heat.config import HeatConfig
from datagen.problems.helmholtz.config import HelmholtzConfig
from datagen.problems.kdv.config import KdVConfig
from datagen.problems.ks.config import KSConfig
from datagen.problems.navier_stokes.config import NavierStokesConfig
from datagen.problems.poisson.config import PoissonConfig

if TYPE_CHECKING:  # the contracts, for the type hints only
    import h5py
    import torch

    from datagen.core.recipe import Recipe
    from datagen.core.report import VerifyReport


@dataclass(frozen=True)
class Problem:
    """A PDE family as the drivers see it (module docstring for the package layout)."""

    name: str
    config: type[GenerationConfig]

    @property
    def package(self) -> str:
        return f"{__package__}.{self.name}"

    def _part(self, module: str) -> ModuleType:
        return importlib.import_module(f"{self.package}.{module}")

    def recipe(self, cfg: GenerationConfig, device: torch.device, progress: bool) -> Recipe:
        """The problem's :class:`~datagen.core.recipe.Recipe` for a validated config."""
        return self._part("recipe").recipe(cfg, device, progress)

    def verify(self, f: h5py.File, path: Path) -> VerifyReport:
        """Check an open file of this problem (its schema already checked)."""
        return self._part("verify").verify(f, path)

    @property
    def figure(self) -> Callable[..., Path] | None:
        """The problem's own figure of a file, or None (the generic figure fits it)."""
        spec = importlib.util.find_spec(f"{self.package}.figures")
        return None if spec is None else self._part("figures").figure


PROBLEMS: dict[str, Problem] = {
    p.name: p
    for p in (
        Problem("darcy", DarcyConfig),
        Problem("poisson", PoissonConfig),
        Problem("heat", HeatConfig),
        Problem("helmholtz", HelmholtzConfig),
        Problem("navier_stokes", NavierStokesConfig),
        Problem("ks", KSConfig),
        Problem("kdv", KdVConfig),
    )
}


def get_problem(name: Any, source: str = "problem") -> Problem:
    """The registered problem ``name``; anything else is a UserError naming the choices."""
    if not isinstance(name, str) or name not in PROBLEMS:
        raise UserError(
            f"{source}: {name!r} is not allowed; expected one of "
            + ", ".join(repr(p) for p in PROBLEMS)
        )
    return PROBLEMS[name]


def load_generation_config(
    path: str | Path, overrides: list[str] | None = None
) -> GenerationConfig:
    """Read a generation config, pick its schema by ``problem`` (default darcy), validate."""
    data = apply_overrides(read_yaml(path), list(overrides or []))
    problem = get_problem(data.get("problem", "darcy"), f"{path}: problem")
    return validate(problem.config, data, source=str(path))
