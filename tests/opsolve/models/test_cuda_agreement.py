"""Every model of every shipped training config computes on CUDA what it computes on the CPU
(run by ``pytest -m gpu``): the same weights and input, float32 with TF32 off, agree to 1e-4
relative L2 (FFT and reduction orders differ). The observer has its own test (it takes
measurements and masks: ``test_observer.py``)."""

from __future__ import annotations

import copy

import pytest
import torch

from datagen.core.errors import UserError
from tests.conftest import ROOT


def _not_observer(path) -> bool:
    from opsolve.train.config import load_train_config

    return load_train_config(path).model.name != "observer"


CONFIGS = [p for p in sorted((ROOT / "configs" / "train").glob("*.yaml")) if _not_observer(p)]
GRID = {"steady": (33, 33), "trajectory": (32, 32)}  # MgNO's 6 levels need 33 nodes


def model_and_input(path) -> tuple[torch.nn.Module, torch.Tensor]:
    from opsolve.models.registry import build_model, check_model_fits_data
    from opsolve.train.config import load_train_config

    cfg = load_train_config(path)
    try:
        check_model_fits_data(cfg.model.name, "steady", path)
        kind, steps = "steady", 1
        params = {**cfg.model.params, "in_channels": 1, "out_channels": 1}
    except UserError:
        kind, steps = "trajectory", cfg.data.window.input_steps
        params = {**cfg.model.params, "input_steps": steps}
        params["output_steps"] = cfg.data.window.output_steps
    if cfg.model.name.startswith("lsm"):  # padding and patch for the test grid, not 85 / 64
        params.update(padding=None, patch=None)
    torch.manual_seed(0)
    return build_model(cfg.model.name, params), torch.randn(2, steps, *GRID[kind])


@pytest.fixture
def no_tf32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_cuda_computes_what_the_cpu_computes(path, no_tf32):
    model, x = model_and_input(path)
    gpu_model = copy.deepcopy(model).to("cuda").eval()
    with torch.no_grad():
        cpu = model.eval()(x)
        gpu = gpu_model(x.to("cuda")).cpu()
    assert cpu.shape == gpu.shape
    gap = float((gpu - cpu).norm() / cpu.norm())
    assert gap < 1e-4, gap
