"""FNO-3D baseline for trajectories, on neuraloperator's n-d FNO.

The space-time FNO of Li et al. ("Fourier Neural Operator for Parametric Partial Differential
Equations", ICLR 2021, the Navier-Stokes "FNO-3D"): the ``T_in`` input frames become channels,
repeated at every one of the ``T_out`` output times, the grid coordinates ``(x, y, t)`` are
appended (neuraloperator's grid embedding), a 3-D FNO maps this to one channel on the
``(x, y, T_out)`` space-time grid. Time is not periodic, so the time axis is zero-padded
(``time_padding``, a fraction of ``T_out``; the FNO paper pads 6 of 40 steps). Used as the
baseline of :class:`opsolve.models.sfno.SpaceTimeFNO` (Cao et al., ICLR 2025) on the same data.

Shapes: ``forward(x (batch, T_in, x, y), out_steps) -> (batch, T_out, x, y)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from opsolve.layers.spectral import check_modes


class FNO3dBaseline(nn.Module):
    """``neuralop.models.FNO`` over ``(x, y, t)`` with the input frames as channels.

    Args:
        input_steps: ``T_in`` (channels of the FNO).
        output_steps: default ``T_out``.
        modes: ``(m_x, m_y, m_t)`` in our convention (``2 m`` frequencies kept on x and y,
            ``m`` on t); neuraloperator counts both signs, so its ``n_modes`` is
            ``(2 m_x, 2 m_y, 2 m_t)``.
        width: hidden channels; n_layers: Fourier layers.
        time_padding: fraction of ``T_out`` zero-padded at the end of the time axis.
        **fno: further keyword arguments of ``neuralop.models.FNO``.
    """

    def __init__(
        self,
        input_steps: int,
        output_steps: int,
        modes: Sequence[int] = (8, 8, 8),
        width: int = 20,
        n_layers: int = 4,
        time_padding: float = 0.15,
        **fno: Any,
    ) -> None:
        super().__init__()
        from neuralop.models import FNO

        modes_t = tuple(modes)
        if len(modes_t) != 3 or any(not isinstance(m, int) or m < 1 for m in modes_t):
            raise ValueError(
                f"modes must be three positive integers (m_x, m_y, m_t), got {modes!r}"
            )
        for key, value in (("input_steps", input_steps), ("output_steps", output_steps)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{key} must be an integer >= 1, got {value!r}")
        if not 0.0 <= time_padding < 1.0:
            raise ValueError(f"time_padding must be in [0, 1), got {time_padding}")
        fno.pop("in_channels", None)
        fno.pop("out_channels", None)
        self.modes, self.input_steps, self.output_steps = modes_t, input_steps, output_steps
        self.config: dict[str, Any] = {
            "input_steps": input_steps,
            "output_steps": output_steps,
            "modes": list(modes_t),
            "width": width,
            "n_layers": n_layers,
            "time_padding": time_padding,
            **fno,
        }
        padding = [0.0, 0.0, time_padding] if time_padding > 0 else None
        self.fno = FNO(
            n_modes=tuple(2 * m for m in modes_t),
            in_channels=input_steps,
            out_channels=1,
            hidden_channels=width,
            n_layers=n_layers,
            domain_padding=padding,
            **fno,
        )

    def forward(self, x: torch.Tensor, out_steps: int | None = None) -> torch.Tensor:
        """``(batch, T_in, x, y) -> (batch, T_out, x, y)``."""
        if x.dim() != 4 or x.shape[1] != self.input_steps:
            raise ValueError(
                f"FNO3dBaseline expects (batch, {self.input_steps}, x, y), got {tuple(x.shape)}"
            )
        steps = out_steps or self.output_steps
        check_modes((*self.modes[:2], 1), (*x.shape[2:], 1), "input (x, y)")
        frames = x[..., None].expand(*x.shape, steps)  # (batch, T_in, x, y, T_out)
        out = self.fno(frames)[:, 0]  # (batch, x, y, T_out)
        return out.permute(0, 3, 1, 2)
