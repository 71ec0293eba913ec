"""The problem registry: every problem reached by name, with no per-problem branch elsewhere."""

from __future__ import annotations

import importlib
import inspect

import pytest

from datagen.cli import main
from datagen.core.config import GenerationConfig
from datagen.core.errors import UserError
from datagen.problems.registry import PROBLEMS, get_problem, load_generation_config
from tests.conftest import ROOT

# A tiny dataset of every problem: (config, overrides).
TINY = {
    "darcy": ("darcy_small", ["resolution=17"]),
    "poisson": ("poisson_small", ["resolution=17"]),
    "heat": ("heat_small", ["resolution=17", "time.records=3"]),
    "helmholtz": ("helmholtz_small", ["resolution=33", "wavenumber.k0=10.0"]),
    "navier_stokes": ("ns_small", ["resolution=16", "store_resolution=16", "time.end=1.0"]),
    "ks": ("ks_small", ["resolution=32", "time.records=4", "time.warmup=0.0"]),
    "kdv": ("kdv_small", ["resolution=32", "time.records=4"]),
}


def test_every_problem_package_has_its_parts():
    assert set(PROBLEMS) == set(TINY)
    for name, problem in PROBLEMS.items():
        assert issubclass(problem.config, GenerationConfig)
        assert problem.config.model_fields["problem"].default == name
        for part, function in (("recipe", "recipe"), ("verify", "verify")):
            module = importlib.import_module(f"datagen.problems.{name}.{part}")
            assert callable(getattr(module, function)), (name, part)
        recipe = importlib.import_module(f"datagen.problems.{name}.recipe").recipe
        assert list(inspect.signature(recipe).parameters) == ["cfg", "device", "progress"]


def test_every_shipped_config_loads_with_its_problem():
    configs = sorted((ROOT / "configs" / "datagen").glob("*.yaml"))
    assert len(configs) >= 10
    for path in configs:
        cfg = load_generation_config(path)
        assert isinstance(cfg, PROBLEMS[cfg.problem].config), path


def test_an_unknown_problem_names_the_registered_ones():
    with pytest.raises(UserError, match="problem: 'burgers' is not allowed; expected one of"):
        get_problem("burgers")


@pytest.mark.parametrize("problem", sorted(TINY))
def test_generate_verify_and_draw_every_problem(problem, tmp_path, capsys):
    config, overrides = TINY[problem]
    out = tmp_path / problem
    tiny = ["samples.train=2", "samples.valid=1", "samples.test=1", "batch_size=2"]
    args = [str(ROOT / "configs" / "datagen" / f"{config}.yaml"), *overrides, *tiny]
    assert main(["generate", *args, f"output.dir={out}", "--no-progress"]) == 0
    assert main(["verify", str(out)]) == 0
    figure = tmp_path / "figure.png"
    assert main(["info", str(out), "--figure", str(figure), "--count", "2"]) == 0
    assert figure.read_bytes()[:4] == b"\x89PNG" and figure.stat().st_size > 5_000
    assert f"problem {problem}" in capsys.readouterr().out
