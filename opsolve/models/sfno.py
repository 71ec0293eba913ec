"""SFNO, the space-time Fourier neural operator of the Spectral-Refiner paper.

Cao, Brarda, Li, Xi, "Spectral-Refiner: Accurate Fine-Tuning of Spatiotemporal Fourier Neural
Operator for Turbulent Flows", ICLR 2025. The operator maps a trajectory (``T_in`` frames) to a
trajectory (``T_out`` frames, any number) in Bochner spaces, with Fourier transforms over space
*and* time. It is called :class:`SpaceTimeFNO` here and registered as ``spacetime_fno``: the
name "SFNO" is taken by neuraloperator's *spherical* FNO, a different model.

Layout (channels-first, time last inside the network: ``(batch, channels, x, y, t)``):

1. **Lifting.** Per space-time point, the features ``[w, x, y, t, e^{beta t} sin(pi k t),
   e^{beta t} cos(pi k t)]`` (``k = 1 .. time_features / 2``; ``x_i = i / n`` on the periodic
   grid, ``t_j = j / T_in``; the ``e^{beta t}`` envelope follows the a priori growth bound of the
   paper's time encoding), a group norm (one group), a 1x1 map to ``width`` channels and a
   space-time spectral convolution that resamples time from ``T_in`` to ``latent_steps``.
2. **Hidden layers** (``n_layers - 1`` of them): ``v <- act(FFN(K v) + W v)`` with ``K`` a
   spectral convolution over ``(x, y, t)`` (dense, low-rank or Monarch mode weights, see
   :mod:`opsolve.layers.spectral`), ``FFN`` a 1x1 ``width -> expansion -> width`` GELU network
   and ``W`` a 1x1 map.
3. **Output.** A 1x1 map to one channel, then a single-channel space-time spectral
   convolution whose inverse FFT in time has ``T_out`` points (the spectrum is zero-padded or
   cut in time, so any number of steps comes out), plus the last input frame (skip).

The output spectral layer is the one the Spectral-Refiner enlarges and fine-tunes
(:mod:`opsolve.eval.refine`). Two choices of ours differ from the public code and are deliberate:
the value and the positional features are separate channels (the public code adds the value to
every feature channel), and the time encoding has both sine and cosine (the public code meant
to alternate them but uses sine twice).

Documented setting of the paper (FNO-type Navier-Stokes, nu = 1e-3, 10 frames -> 40 frames at
64^2): modes (12, 12, 5), width 20, 4 spectral layers, latent steps 10, expansion 128.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from opsolve.layers.spectral import SpectralConv, check_modes, gather_modes, scatter_modes

ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def space_time_features(
    batch: int,
    sizes: tuple[int, int, int],
    time_features: int,
    time_decay: float,
    like: torch.Tensor,
) -> torch.Tensor:
    """Positional channels ``(batch, 3 + time_features, x, y, t)``: ``x, y, t`` and the time
    encoding ``e^{beta t} sin(pi k t), e^{beta t} cos(pi k t)``, ``k = 1 .. time_features / 2``.

    ``x_i = i / n_x`` and ``y_i = i / n_y`` (periodic grids, no end node), ``t_j = j / n_t``.
    """
    nx, ny, nt = sizes
    opts = {"dtype": like.dtype, "device": like.device}
    x = torch.arange(nx, **opts) / nx
    y = torch.arange(ny, **opts) / ny
    t = torch.arange(nt, **opts) / nt
    channels = [
        x[:, None, None].expand(nx, ny, nt),
        y[None, :, None].expand(nx, ny, nt),
        t[None, None, :].expand(nx, ny, nt),
    ]
    envelope = torch.exp(time_decay * t)
    for k in range(1, time_features // 2 + 1):
        for basis in (torch.sin, torch.cos):
            channels.append((envelope * basis(math.pi * k * t))[None, None, :].expand(nx, ny, nt))
    return torch.stack(channels)[None].expand(batch, -1, -1, -1, -1)


class OutputSpectralConv(SpectralConv):
    """The single-channel output layer: a space-time Fourier multiplier with free ``T_out``.

    A :class:`SpectralConv` (dense weights) whose output grid may have fewer time bins than
    the layer keeps: the time modes that do not fit the requested ``T_out`` are dropped
    (as ``irfft`` to a shorter length does) instead of being an error, so that any number of
    output steps, even one, can be asked for. Input ``(batch, 1, x, y, t)``, output
    ``(batch, 1, x, y, T_out)``.
    """

    def forward(  # noqa: D102 - documented in the class
        self, x: torch.Tensor, out_size: Sequence[int | None] | None = None
    ) -> torch.Tensor:
        sizes = self._check_input(x)
        out_sizes = self._output_sizes(sizes, out_size)
        check_modes(self.modes, sizes, "input")
        check_modes(self.modes[:-1] + (1,), out_sizes, "output")
        x_ft = torch.fft.rfftn(x, dim=(-3, -2, -1), norm="forward")
        x_ft = x_ft.to(torch.promote_types(x_ft.dtype, torch.complex64))
        kept = gather_modes(x_ft, self.modes)
        y = self.mixer(kept.reshape(x.shape[0], self.in_channels, -1))
        y = y.reshape(x.shape[0], self.out_channels, *self.kept)
        fit = min(self.modes[-1], out_sizes[-1] // 2 + 1)
        spectrum = (*out_sizes[:-1], out_sizes[-1] // 2 + 1)
        y_ft = scatter_modes(y[..., :fit], (*self.modes[:-1], fit), spectrum)
        return torch.fft.irfftn(y_ft, s=out_sizes, dim=(-3, -2, -1), norm="forward")


class SpaceTimeFNO(nn.Module):
    """Trajectory-to-trajectory Fourier neural operator (SFNO of Cao et al., ICLR 2025).

    Args:
        modes: ``(m_x, m_y, m_t)`` modes per axis (``2 m`` frequencies kept on x and y, ``m``
            on t); needs ``2 m_x <= n_x``, ``2 m_y <= n_y`` and ``m_t <= T // 2 + 1`` for the
            input length and ``latent_steps``.
        width: hidden channels.
        n_layers: spectral layers including the lifting one (>= 2).
        latent_steps: time points inside the network.
        input_steps: ``T_in``, when known (checked against ``m_t`` at construction).
        output_steps: default ``T_out`` (``None``: as many as input frames).
        time_features: number of ``e^{beta t} sin/cos`` channels (even).
        time_decay: ``beta``.
        expansion: hidden width of the per-layer FFN.
        activation: "gelu", "relu", "silu" or "tanh".
        weight, rank, blocks: mode-weight parameterization of the lifting and hidden spectral
            layers ("dense", "low_rank", "monarch"; see :class:`SpectralConv`). The output
            layer has one channel and is always dense.
        output_modes: modes of the output layer (default ``modes``; the refiner enlarges it).

    Shapes: ``forward(x (batch, T_in, x, y), out_steps) -> (batch, T_out, x, y)``.
    """

    def __init__(
        self,
        modes: Sequence[int] = (12, 12, 5),
        width: int = 20,
        n_layers: int = 4,
        latent_steps: int = 10,
        input_steps: int | None = None,
        output_steps: int | None = None,
        time_features: int = 4,
        time_decay: float = 0.1,
        expansion: int = 128,
        activation: str = "gelu",
        weight: str = "dense",
        rank: int | float | None = None,
        blocks: int | None = None,
        output_modes: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.modes = self._check_modes("modes", modes)
        self.output_modes = self._check_modes("output_modes", output_modes or modes)
        _check_int("width", width, 1)
        _check_int("n_layers", n_layers, 2)
        _check_int("latent_steps", latent_steps, 1)
        _check_int("expansion", expansion, 1)
        _check_int("time_features", time_features, 0)
        if time_features % 2:
            raise ValueError(f"time_features must be even (sin and cos pairs), got {time_features}")
        if activation not in ACTIVATIONS:
            allowed = ", ".join(ACTIVATIONS)
            raise ValueError(f"unknown activation {activation!r}; allowed: {allowed}")
        if input_steps is not None:
            _check_int("input_steps", input_steps, 1)
            check_modes(self.modes[-1:], (input_steps,), "input time")
        if output_steps is not None:
            _check_int("output_steps", output_steps, 1)
        check_modes(self.modes[-1:], (latent_steps,), "latent time")
        self.config: dict[str, Any] = {
            "modes": list(self.modes),
            "width": width,
            "n_layers": n_layers,
            "latent_steps": latent_steps,
            "input_steps": input_steps,
            "output_steps": output_steps,
            "time_features": time_features,
            "time_decay": float(time_decay),
            "expansion": expansion,
            "activation": activation,
            "weight": weight,
            "rank": rank,
            "blocks": blocks,
            "output_modes": list(self.output_modes),
        }
        self.latent_steps, self.input_steps, self.output_steps = (
            latent_steps,
            input_steps,
            output_steps,
        )
        self.time_features, self.time_decay = time_features, float(time_decay)
        spectral = {"weight": weight, "rank": rank, "blocks": blocks}
        features = 4 + time_features
        self.lift_norm = nn.GroupNorm(1, features, eps=1e-6)
        self.lift = nn.Conv3d(features, width, 1)
        self.lift_conv = SpectralConv(
            width, width, self.modes, out_size=(None, None, latent_steps), **spectral
        )
        hidden = n_layers - 1
        self.convs = nn.ModuleList(
            SpectralConv(width, width, self.modes, **spectral) for _ in range(hidden)
        )
        self.ffns = nn.ModuleList(
            nn.Sequential(nn.Conv3d(width, expansion, 1), nn.GELU(), nn.Conv3d(expansion, width, 1))
            for _ in range(hidden)
        )
        self.skips = nn.ModuleList(nn.Conv3d(width, width, 1) for _ in range(hidden))
        self.act = ACTIVATIONS[activation]()
        self.reduce = nn.Conv3d(width, 1, 1)
        self.output_conv = OutputSpectralConv(1, 1, self.output_modes, "dense")

    @staticmethod
    def _check_modes(name: str, modes: Any) -> tuple[int, int, int]:
        values = tuple(modes) if isinstance(modes, (list, tuple)) else (modes,)
        if len(values) != 3 or any(
            isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in values
        ):
            raise ValueError(
                f"{name} must be three positive integers (m_x, m_y, m_t), got {modes!r}"
            )
        return values  # type: ignore[return-value]

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SpaceTimeFNO:
        """Build from a config dict (``model.params``; channel counts are ignored: one field)."""
        params = {k: v for k, v in config.items() if k not in ("in_channels", "out_channels")}
        return cls(**params)

    def resolve_steps(self, x: torch.Tensor, out_steps: int | None) -> int:
        """``T_out``: ``out_steps``, else the default ``output_steps``, else ``T_in``."""
        steps = out_steps if out_steps is not None else self.output_steps or x.shape[1]
        return _check_int("out_steps", steps, 1)

    def check_input(self, x: torch.Tensor) -> None:
        """One-line errors for a wrong rank, frame count or a grid too small for the modes."""
        if x.dim() != 4:
            raise ValueError(
                f"SpaceTimeFNO expects trajectories (batch, time, x, y), got {tuple(x.shape)}"
            )
        if self.input_steps is not None and x.shape[1] != self.input_steps:
            raise ValueError(
                f"SpaceTimeFNO was built for {self.input_steps} input frames, got {x.shape[1]}"
            )
        nt, nx, ny = x.shape[1:]
        check_modes(self.modes, (nx, ny, nt), "input (x, y, t)")
        check_modes(self.output_modes[:-1] + (1,), (nx, ny, 1), "output (x, y)")

    def forward(self, x: torch.Tensor, out_steps: int | None = None) -> torch.Tensor:
        """``(batch, T_in, x, y) -> (batch, T_out, x, y)``."""
        self.check_input(x)
        steps = self.resolve_steps(x, out_steps)
        v = self.encode(x)
        return self.decode(v, x, steps)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Lifting and hidden layers: ``(batch, T_in, x, y) -> (batch, width, x, y, latent)``."""
        w = x.permute(0, 2, 3, 1)[:, None]  # (batch, 1, x, y, t)
        pos = space_time_features(
            x.shape[0], tuple(w.shape[2:]), self.time_features, self.time_decay, w
        )
        v = self.lift(self.lift_norm(torch.cat([w, pos], dim=1)))
        v = self.lift_conv(v)
        for conv, ffn, skip in zip(self.convs, self.ffns, self.skips, strict=True):
            v = self.act(ffn(conv(v)) + skip(v))
        return v

    def decode(self, v: torch.Tensor, x: torch.Tensor, steps: int) -> torch.Tensor:
        """Reduction, output layer and skip: latent ``v`` and input ``x`` -> ``(batch, steps,
        x, y)``."""
        return self.output(self.reduce(v), x, steps)

    def output(self, z: torch.Tensor, x: torch.Tensor, steps: int) -> torch.Tensor:
        """Output layer and skip: the reduced latent ``z`` ``(batch, 1, x, y, latent)`` and the
        input ``x`` -> ``(batch, steps, x, y)``. The Spectral-Refiner trains only this part, so
        it computes ``z`` once (:func:`opsolve.eval.refine.latent`)."""
        out = self.output_conv(z, out_size=(None, None, steps))
        return out[:, 0].permute(0, 3, 1, 2) + x[:, -1:]
