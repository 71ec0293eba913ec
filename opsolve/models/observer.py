"""The semilinear neural operator with an observer: prediction and assimilation.

Singh, Borsoi, Erdogmus, Imbiriba, "Learning semilinear neural operators: a unified recursive
framework for prediction and data assimilation", ICLR 2024. For a semilinear PDE
``u_t = L u + N(u)`` observed sparsely and noisily, the recursion

    prediction  u_k^f = u_{k-1}^a + F(u_{k-1}^a)
    correction  u_k^a = u_k^f + K(u_k^f) [ y_k - E(u_k^f) ]   at the observed nodes

follows the observer ``u_t = L u + N(u) + K(t)[y - C u]`` of Afshar, Germ and Morris (IEEE TAC
2023). Here

- ``F`` (:class:`SpectralNet`) is an FNO-type operator on our spectral layers (dense, low-rank
  or Monarch mode weights, :mod:`opsolve.layers.spectral`): one record interval per step;
- ``E`` (:class:`Measurement`) is a learned pointwise measurement operator, ``E(u) = u + e(u)``
  with ``e`` a small per-node network started at zero (the data observe ``u`` plus noise);
- ``K`` (:class:`Gain`) is a learned, state-dependent gain that spreads the innovation
  ``d = m (y - E(u^f))`` (zero off the mask ``m``) over the whole field: a spectral network on
  ``d`` whose every layer is gated by features of ``[u^f, m]``. It has no bias on the path of
  ``d`` and activations with ``act(0) = 0``, so ``K(u^f)[0] = 0`` exactly: no innovation, no
  correction. Its output layer starts at zero, so an untrained observer is its predictor.

Optionally (``memory = c > 0``) the gain carries ``c`` latent channels ``h_k`` from step to step,
an extension of ours: the gain reads ``h_{k-1}`` beside ``[u^f, m]`` and writes ``h_k`` by a
gated update from its state and innovation features (bounded, ``|h| <= 1``). A filter with the
state alone cannot tell a node observed a step ago from one unobserved for fifty, which an
ensemble Kalman filter knows from its spread; the memory can learn such a record. ``u`` still
follows the two equations above, so with no innovation there is still no correction, and the
predictor ``F`` is untouched.

Optionally (``density_scaled = True``, an extension of ours) the gain reads the innovation
divided by the fraction ``p`` of the grid observed in that sample, ``d / p``: its Fourier
coefficients then estimate those of the innovation field whatever the density (the Monte Carlo
estimate of a mean), so more observations average the noise instead of enlarging the
correction. A gain trained on the raw ``d`` at 2-10% densities learns a correction scaled for
those: at 20% and more it overcorrects and the estimate diverges. At ``p = 1`` the two agree.

Steps without observations (an empty mask) are not corrected at all. The first step starts
from a prior ``u_0^f`` (by default the field's mean, zero in normalized units): the first
``warmup`` steps of a run bring the estimate onto the trajectory and are not scored.

Shapes (channels first, any resolution): a state is ``(batch, 1, *grid)`` with 1-D or 2-D
``grid`` (the length of ``modes``); a run takes measurements ``y`` and masks ``m`` of shape
``(batch, steps, *grid)`` and returns analyses, forecasts and predicted measurements of the
same shape (:meth:`SemilinearObserver.forward`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from opsolve.layers.pointwise import Pointwise
from opsolve.layers.spectral import SpectralConv

Measure = Callable[[torch.Tensor], torch.Tensor]
GainFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def _modes(modes: int | Sequence[int]) -> tuple[int, ...]:
    out = (modes,) if isinstance(modes, int) else tuple(modes)
    if not 1 <= len(out) <= 3 or any(
        isinstance(m, bool) or not isinstance(m, int) or m < 1 for m in out
    ):
        raise ValueError(f"modes must be 1 to 3 positive integers (one per axis), got {modes!r}")
    return out


def _positive(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def periodic_coordinates(batch: int, grid: Sequence[int], like: torch.Tensor) -> torch.Tensor:
    """``sin(2 pi x_i), cos(2 pi x_i)`` per axis on the periodic grid ``x_j = j / n``:
    ``(batch, 2 d, *grid)``."""
    channels = []
    for axis, n in enumerate(grid):
        x = torch.arange(n, dtype=like.dtype, device=like.device) * (2 * torch.pi / n)
        shape = [1] * len(grid)
        shape[axis] = n
        for f in (torch.sin, torch.cos):
            channels.append(f(x).reshape(shape).expand(*grid))
    return torch.stack(channels)[None].expand(batch, -1, *grid)


class SpectralBlock(nn.Module):
    """``v -> act(K v + W v)``: a spectral convolution plus a 1x1 map, ``(B, C, *grid)``."""

    def __init__(
        self,
        width: int,
        modes: tuple[int, ...],
        weight: str,
        rank: int | float | None,
        blocks: int | None,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.spectral = SpectralConv(width, width, modes, weight, rank=rank, blocks=blocks)
        self.local = Pointwise(len(modes), width, width, bias)
        self.act = nn.GELU()

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.act(self.spectral(v) + self.local(v))


class SpectralNet(nn.Module):
    """An FNO (Li et al., ICLR 2021) on our spectral layers: 1x1 lifting to ``width``,
    ``layers`` :class:`SpectralBlock`, 1x1 projection ``width -> 2 width -> out``.

    ``(B, in_channels, *grid) -> (B, out_channels, *grid)``; ``coordinates`` appends
    :func:`periodic_coordinates`; ``zero_output`` starts the last map at zero.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        width: int,
        modes: tuple[int, ...],
        layers: int,
        weight: str = "dense",
        rank: int | float | None = None,
        blocks: int | None = None,
        coordinates: bool = False,
        zero_output: bool = False,
    ) -> None:
        super().__init__()
        d = len(modes)
        self.coordinates = coordinates
        self.lift = Pointwise(d, in_channels + (2 * d if coordinates else 0), width)
        self.blocks = nn.ModuleList(
            SpectralBlock(width, modes, weight, rank, blocks) for _ in range(layers)
        )
        self.project = nn.Sequential(
            Pointwise(d, width, 2 * width), nn.GELU(), Pointwise(d, 2 * width, out_channels)
        )
        if zero_output:
            nn.init.zeros_(self.project[-1].weight)
            nn.init.zeros_(self.project[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.coordinates:
            x = torch.cat([x, periodic_coordinates(x.shape[0], x.shape[2:], x)], dim=1)
        v = self.lift(x)
        for block in self.blocks:
            v = block(v)
        return self.project(v)


class Measurement(nn.Module):
    """``E(u) = u + e(u)``, ``e`` a per-node ``1 -> hidden -> 1`` GELU network started at zero:
    ``(B, 1, *grid) -> (B, 1, *grid)``."""

    def __init__(self, ndim: int, hidden: int = 16) -> None:
        super().__init__()
        self.net = nn.Sequential(Pointwise(ndim, 1, hidden), nn.GELU(), Pointwise(ndim, hidden, 1))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        return u + self.net(u)


class Gain(nn.Module):
    """The state-dependent gain ``K(u^f)[d]``: ``(forecast, innovation, mask) -> correction``,
    each ``(B, 1, *grid)``.

    A state path ``s_0 = lift_s([u^f, m] (+ coordinates))``, ``s_l = block_l(s_{l-1})``, and an
    innovation path ``z_0 = W d``, ``z_l = act(K_l z_{l-1} + W_l z_{l-1}) * (1 + tanh(s_l))``
    without biases, then ``correction = P z_L`` (bias-free 1x1 maps, the last started at 0).
    With ``act(0) = 0`` the correction of ``d = 0`` is exactly 0 for every state.

    With ``memory = c > 0`` the state path also reads the memory ``h`` ``(B, c, *grid)``, and
    the call returns ``(correction, h')`` with the gated update
    ``g, q = split(R [s_L, z_L])``, ``h' = (1 - sigmoid(g)) h + sigmoid(g) tanh(q)``.

    With ``density_scaled`` the innovation path starts from ``d / p``, ``p`` each sample's
    observed fraction of the grid (module docstring).
    """

    def __init__(
        self,
        width: int,
        modes: tuple[int, ...],
        layers: int,
        weight: str,
        rank: int | float | None,
        blocks: int | None,
        coordinates: bool,
        memory: int = 0,
        density_scaled: bool = False,
    ) -> None:
        super().__init__()
        d = len(modes)
        self.coordinates = coordinates
        self.memory = memory
        self.density_scaled = density_scaled
        self.state_lift = Pointwise(d, 2 + memory + (2 * d if coordinates else 0), width)
        self.state = nn.ModuleList(
            SpectralBlock(width, modes, weight, rank, blocks) for _ in range(layers)
        )
        self.lift = Pointwise(d, 1, width, bias=False)
        self.innovation = nn.ModuleList(
            SpectralBlock(width, modes, weight, rank, blocks, bias=False) for _ in range(layers)
        )
        self.project = nn.Sequential(
            Pointwise(d, width, width, bias=False), nn.GELU(), Pointwise(d, width, 1, bias=False)
        )
        nn.init.zeros_(self.project[-1].weight)
        if memory:
            self.remember = Pointwise(d, 2 * width, 2 * memory)

    def forward(
        self,
        forecast: torch.Tensor,
        innovation: torch.Tensor,
        mask: torch.Tensor,
        memory: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        s = torch.cat([forecast, mask] if memory is None else [forecast, mask, memory], dim=1)
        if self.coordinates:
            s = torch.cat([s, periodic_coordinates(s.shape[0], s.shape[2:], s)], dim=1)
        s = self.state_lift(s)
        if self.density_scaled:
            innovation = innovation / observed_fraction(mask)
        z = self.lift(innovation)
        for state_block, block in zip(self.state, self.innovation, strict=True):
            s = state_block(s)
            z = block(z) * (1 + torch.tanh(s))
        if memory is None:
            return self.project(z)
        gate, candidate = self.remember(torch.cat([s, z], dim=1)).chunk(2, dim=1)
        gate = torch.sigmoid(gate)
        return self.project(z), (1 - gate) * memory + gate * torch.tanh(candidate)


def observed_fraction(mask: torch.Tensor) -> torch.Tensor:
    """Each sample's fraction of observed nodes, ``(B, 1, *grid) -> (B, 1, 1, ...)``, at least
    one node's worth (a sample without observations gets no correction anyway)."""
    nodes = mask[0].numel()
    return mask.flatten(1).sum(1).clamp_min(1).div(nodes).reshape(-1, *([1] * (mask.dim() - 1)))


def correct(
    forecast: torch.Tensor,
    measured: torch.Tensor,
    mask: torch.Tensor,
    measure: Measure,
    gain: GainFn,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One correction ``u^a = u^f + K(u^f)[m (y - E(u^f))]``; samples without observations
    keep ``u^f`` exactly.

    Args:
        forecast: ``u^f`` ``(B, 1, *grid)``; measured: ``y`` ``(B, 1, *grid)`` (read on the
            mask only); mask: ``(B, 1, *grid)`` bool.
        measure: ``E``; gain: ``K``, called as ``gain(forecast, innovation, mask)``.

    Returns:
        the analysis ``u^a`` and the predicted measurement ``E(u^f)``, both ``(B, 1, *grid)``.
    """
    m = mask.to(forecast.dtype)
    predicted = measure(forecast)
    innovation = m * (measured - predicted)
    analysis = forecast + gain(forecast, innovation, m)
    observed = mask.flatten(1).any(dim=1).reshape(-1, *([1] * (forecast.dim() - 1)))
    return torch.where(observed, analysis, forecast), predicted


class SemilinearObserver(nn.Module):
    """Predictor ``F``, measurement ``E`` and gain ``K`` of the semilinear observer (module
    docstring; Singh et al., ICLR 2024), in normalized units.

    Args:
        modes: Fourier modes per axis (1-D: ``(m,)``, 2-D: ``(m_1, m_2)``; see
            :class:`SpectralConv` for the limits); the grid's dimension is ``len(modes)``.
        width, layers: channels and spectral blocks of the predictor.
        gain_width, gain_layers, gain_modes: of the gain (default: the predictor's).
        weight, rank, blocks: mode-weight kind of every spectral layer ("dense", "low_rank",
            "monarch").
        coordinates: give the predictor and gain periodic coordinates (for forcing that is not
            translation invariant, e.g. Kolmogorov flow); off for translation-invariant
            equations (KS, KdV).
        measurement_hidden: hidden width of ``E``'s per-node network.
        memory: latent channels the gain carries from step to step (module docstring; 0: the
            paper's observer, the state alone).
        density_scaled: the gain reads the innovation divided by the observed fraction
            (module docstring; False: the paper's raw innovation).
        input_steps, output_steps: filled in from the data by training (the window); unused.

    Shapes: ``forward(measured (B, T, *grid), mask (B, T, *grid), prior (B, *grid) | None)``
    returns ``(analysis, forecast, predicted)`` each ``(B, T, *grid)``.
    """

    assimilates = True

    def __init__(
        self,
        modes: int | Sequence[int] = (16,),
        width: int = 32,
        layers: int = 4,
        gain_width: int | None = None,
        gain_layers: int | None = None,
        gain_modes: int | Sequence[int] | None = None,
        weight: str = "dense",
        rank: int | float | None = None,
        blocks: int | None = None,
        coordinates: bool = False,
        measurement_hidden: int = 16,
        memory: int = 0,
        density_scaled: bool = False,
        input_steps: int | None = None,
        output_steps: int | None = None,
    ) -> None:
        super().__init__()
        self.modes = _modes(modes)
        g_modes = self.modes if gain_modes is None else _modes(gain_modes)
        if len(g_modes) != len(self.modes):
            raise ValueError(f"gain_modes {gain_modes!r} must have {len(self.modes)} entries")
        width, layers = _positive("width", width), _positive("layers", layers)
        g_width = _positive("gain_width", width if gain_width is None else gain_width)
        g_layers = _positive("gain_layers", layers if gain_layers is None else gain_layers)
        if isinstance(memory, bool) or not isinstance(memory, int) or memory < 0:
            raise ValueError(f"memory must be an integer >= 0, got {memory!r}")
        if not isinstance(density_scaled, bool):
            raise ValueError(f"density_scaled must be true or false, got {density_scaled!r}")
        spec = {"weight": weight, "rank": rank, "blocks": blocks}
        self.predictor = SpectralNet(
            1, 1, width, self.modes, layers, coordinates=coordinates, **spec
        )
        self.measurement = Measurement(
            len(self.modes), _positive("measurement_hidden", measurement_hidden)
        )
        self.gain = Gain(
            g_width,
            g_modes,
            g_layers,
            coordinates=coordinates,
            memory=memory,
            density_scaled=density_scaled,
            **spec,
        )
        self.config = {
            "modes": list(self.modes),
            "width": width,
            "layers": layers,
            "gain_width": g_width,
            "gain_layers": g_layers,
            "gain_modes": list(g_modes),
            "weight": weight,
            "rank": rank,
            "blocks": blocks,
            "coordinates": coordinates,
            "measurement_hidden": measurement_hidden,
            "memory": memory,
            "density_scaled": density_scaled,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> SemilinearObserver:
        return cls(**config)

    @property
    def ndim(self) -> int:
        """Spatial dimension of the states."""
        return len(self.modes)

    def predict(self, analysis: torch.Tensor) -> torch.Tensor:
        """``u^f = u^a + F(u^a)``: ``(B, 1, *grid) -> (B, 1, *grid)``."""
        return analysis + self.predictor(analysis)

    def correct(
        self,
        forecast: torch.Tensor,
        measured: torch.Tensor,
        mask: torch.Tensor,
        memory: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """:func:`correct` with this model's ``E`` and ``K``: ``(u^a, E(u^f), h')``; ``h'`` is
        the gain's new memory ``(B, c, *grid)`` (None without memory)."""
        if memory is None:
            return (*correct(forecast, measured, mask, self.measurement, self.gain), None)
        written = []

        def gain(f: torch.Tensor, d: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
            correction, new = self.gain(f, d, m, memory)
            written.append(new)
            return correction

        analysis, predicted = correct(forecast, measured, mask, self.measurement, gain)
        return analysis, predicted, written[0]

    def check_input(self, measured: torch.Tensor, mask: torch.Tensor) -> None:
        """ValueError unless measurements and mask are ``(batch, steps, *grid)`` alike."""
        if measured.dim() != self.ndim + 2:
            raise ValueError(
                f"the observer has {self.ndim}-D modes {list(self.modes)}, so it takes "
                f"(batch, steps, {', '.join('xyz'[: self.ndim])}) measurements, got shape "
                f"{tuple(measured.shape)}"
            )
        if tuple(mask.shape) != tuple(measured.shape):
            raise ValueError(
                f"the observation mask {tuple(mask.shape)} does not match the measurements "
                f"{tuple(measured.shape)}"
            )

    def forward(
        self,
        measured: torch.Tensor,
        mask: torch.Tensor,
        prior: torch.Tensor | None = None,
        correct: bool | torch.Tensor = True,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Assimilate a run of ``T`` steps (module docstring).

        ``correct``: False for the free predictor from the prior, or a ``(T,)`` bool tensor
        naming the steps that are corrected (e.g. only the warm-up).
        """
        self.check_input(measured, mask)
        steps = measured.shape[1]
        if isinstance(correct, bool):
            correct = torch.full((steps,), correct)
        state = torch.zeros_like(measured[:, :1]) if prior is None else prior[:, None]
        memory = None
        if self.gain.memory:
            memory = measured.new_zeros(measured.shape[0], self.gain.memory, *measured.shape[2:])
        analyses, forecasts, predictions = [], [], []
        for k in range(steps):
            forecast = state if k == 0 else self.predict(state)
            if bool(correct[k]):
                state, predicted, memory = self.correct(
                    forecast, measured[:, k : k + 1], mask[:, k : k + 1], memory
                )
            else:
                state, predicted = forecast, self.measurement(forecast)
            analyses.append(state)
            forecasts.append(forecast)
            predictions.append(predicted)
        return torch.cat(analyses, 1), torch.cat(forecasts, 1), torch.cat(predictions, 1)
