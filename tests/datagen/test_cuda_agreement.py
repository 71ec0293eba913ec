"""Every generator on CUDA gives the data it gives on the CPU (run by ``pytest -m gpu``).

Table-driven over the problem registry with the tiny config of each problem
(``tests/test_bad_input.py``'s ``TINY``): the same config generated with ``device=cpu`` and
``device=cuda`` (each with its own ``method: auto``, so the GPU's Krylov solvers meet the CPU's
direct ones where they differ) must store the same fields to 1e-4 relative L2: float32 storage,
solver tolerances of 1e-8, and short stretches of time for the flows.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from datagen.cli import main
from datagen.core.schema import split_file
from datagen.problems.registry import PROBLEMS, load_generation_config
from tests.conftest import ROOT
from tests.test_bad_input import SIZES, TINY

TOLERANCE = 1e-4
GROUPS = ("t0_fields", "t1_fields", "t2_fields")


def stored_fields(path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {
            f"{group}/{name}": np.asarray(f[group][name][...], dtype=np.float64)
            for group in GROUPS
            if group in f
            for name in f[group]
        }


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("problem", sorted(PROBLEMS))
def test_cuda_generates_what_the_cpu_generates(problem, tmp_path):
    config, overrides = TINY[problem]
    path = ROOT / "configs" / "datagen" / f"{config}.yaml"
    args = [*overrides, *SIZES, "--no-progress"]
    for device in ("cpu", "cuda"):
        out = tmp_path / device
        assert main(["generate", str(path), *args, f"device={device}", f"output.dir={out}"]) == 0
    name = load_generation_config(path, overrides).name
    for split in ("train", "valid", "test"):
        cpu = stored_fields(split_file(tmp_path / "cpu", name, split))
        gpu = stored_fields(split_file(tmp_path / "cuda", name, split))
        assert cpu and cpu.keys() == gpu.keys()
        for key, reference in cpu.items():
            gap = np.linalg.norm(gpu[key] - reference) / max(np.linalg.norm(reference), 1e-30)
            assert gap < TOLERANCE, (split, key, gap)
