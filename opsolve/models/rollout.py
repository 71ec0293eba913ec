"""Autoregressive rollouts of steady operators: the last ``T_in`` frames are the channels of a
model that predicts the next frame, which joins the window (the Navier-Stokes protocol of the
FNO and LSM papers: 10 frames in, frames 10..19 out one at a time, trained through the whole
rollout).

Registered as ``lsm_trajectory`` (:class:`opsolve.models.lsm.LSM` with instance norm, as the
Neural-Solver-Library uses for time-dependent tasks) and ``fno_trajectory``
(neuraloperator's 2-D ``FNO``, the "FNO-2D" of Li et al. with recurrent time stepping).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


def _steps(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


class FrameRollout(nn.Module):
    """A one-step model ``(batch, T_in, x, y) -> (batch, 1, x, y)`` rolled out in time.

    Shapes: ``forward(x (batch, T_in, x, y), out_steps) -> (batch, T_out, x, y)``.

    Args:
        step: the one-step model (``T_in`` channels in, one out).
        input_steps: ``T_in``. output_steps: default ``T_out``.
        config: what rebuilds the model through the registry (kept as :attr:`config`).
    """

    def __init__(
        self, step: nn.Module, input_steps: int, output_steps: int, config: dict[str, Any]
    ) -> None:
        super().__init__()
        self.step = step
        self.input_steps = _steps("input_steps", input_steps)
        self.output_steps = _steps("output_steps", output_steps)
        self.config = dict(config)

    def forward(self, x: Tensor, out_steps: int | None = None) -> Tensor:
        """``(batch, T_in, x, y) -> (batch, T_out, x, y)``, one frame at a time."""
        if x.dim() != 4 or x.shape[1] != self.input_steps:
            raise ValueError(
                f"the rollout expects (batch, {self.input_steps}, x, y), got {tuple(x.shape)}"
            )
        window, frames = x, []
        for _ in range(out_steps or self.output_steps):
            frame = self.step(window)
            frames.append(frame)
            window = torch.cat([window[:, 1:], frame], dim=1)
        return torch.cat(frames, dim=1)


def _split(params: dict[str, Any]) -> tuple[int, int, dict[str, Any]]:
    params = dict(params)
    steps = params.pop("input_steps", None), params.pop("output_steps", None)
    for key in ("in_channels", "out_channels"):
        params.pop(key, None)
    return _steps("input_steps", steps[0]), _steps("output_steps", steps[1]), params


def lsm_rollout(**params: Any) -> FrameRollout:
    """LSM rolled out frame by frame (``norm`` instance unless given; 2-D only)."""
    from opsolve.models.lsm import LSM

    t_in, t_out, lsm = _split(params)
    if lsm.pop("dims", 2) != 2:
        raise ValueError("lsm_trajectory is 2-D in space (dims 2): the frames are its channels")
    lsm.setdefault("norm", "instance")
    step = LSM(t_in, 1, **lsm)
    config = {"input_steps": t_in, "output_steps": t_out, **lsm}
    return FrameRollout(step, t_in, t_out, config)


def fno_rollout(**params: Any) -> FrameRollout:
    """neuraloperator's 2-D ``FNO`` rolled out frame by frame (``n_modes`` counts both signs)."""
    from neuralop.models import FNO

    t_in, t_out, fno = _split(params)
    if isinstance(fno.get("n_modes"), list):
        fno["n_modes"] = tuple(fno["n_modes"])
    step = FNO(in_channels=t_in, out_channels=1, **fno)
    config = {"input_steps": t_in, "output_steps": t_out, **params}
    for key in ("in_channels", "out_channels"):
        config.pop(key, None)
    return FrameRollout(step, t_in, t_out, config)
