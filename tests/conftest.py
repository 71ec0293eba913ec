import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SMALL_CONFIG = ROOT / "configs" / "datagen" / "darcy_small.yaml"


def pytest_collection_modifyitems(config, items):
    if os.environ.get("OPSOLVE_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow test: set OPSOLVE_SLOW=1 to run it")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seeded_torch():
    """Every test starts from the same torch seed: random inputs do not vary between runs."""
    import torch

    torch.manual_seed(0)


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run ``python -m datagen.cli ARGS`` in a subprocess (as a user would)."""
    return subprocess.run(
        [sys.executable, "-m", "datagen.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


@pytest.fixture(scope="session")
def small_dataset(tmp_path_factory) -> Path:
    """A tiny Darcy dataset (s = 33, 12/4/4 samples), generated once per session."""
    out = tmp_path_factory.mktemp("data") / "darcy"
    result = run_cli(
        "generate",
        str(SMALL_CONFIG),
        "resolution=33",
        "samples.train=12",
        "samples.valid=4",
        "samples.test=4",
        "batch_size=5",
        f"output.dir={out}",
        "--no-progress",
    )
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture
def dataset_copy(small_dataset, tmp_path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(small_dataset, target)
    return target


def assert_refused(config: Path, overrides: list[str], message: str, out: Path, capsys) -> None:
    """``datagen generate CONFIG OVERRIDES`` exits 2 with ``message`` on one stderr line, no
    traceback, and writes nothing to ``out``."""
    from datagen.cli import main

    code = main(["generate", str(config), *overrides, f"output.dir={out}", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()
