"""The trained object: a model between input normalization and output decoding."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def channel_stats(stats: dict[str, Any] | None, names: list[str], enabled: bool) -> torch.Tensor:
    """``(2, C)``: per-channel mean and std of ``names`` (0 and 1 when ``enabled`` is False).

    A zero std (a constant field) becomes 1, as in :class:`opsolve.data.SteadyDataset`.
    """
    if not enabled or stats is None:
        return torch.stack([torch.zeros(len(names)), torch.ones(len(names))])
    mean = [float(stats["mean"][k]) for k in names]
    std = [float(stats["std"][k]) if float(stats["std"][k]) > 0 else 1.0 for k in names]
    return torch.tensor([mean, std], dtype=torch.float32)


class NormalizedOperator(nn.Module):
    """``x -> decode(model(encode(x)))`` in physical units.

    ``encode`` z-scores each input channel, ``decode`` un-normalizes each output channel, with
    the train split's statistics kept as buffers (saved in the state dict, so a checkpoint
    predicts in physical units on any data of the same fields).

    Args:
        model: maps ``(batch, C_in, *space)`` to ``(batch, C_out, *space)``.
        inputs, outputs: ``(2, C)`` tensors of per-channel mean and std (:func:`channel_stats`).
    """

    def __init__(self, model: nn.Module, inputs: torch.Tensor, outputs: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("in_mean", inputs[0].reshape(1, -1, 1, 1).clone())
        self.register_buffer("in_std", inputs[1].reshape(1, -1, 1, 1).clone())
        self.register_buffer("out_mean", outputs[0].reshape(1, -1, 1, 1).clone())
        self.register_buffer("out_std", outputs[1].reshape(1, -1, 1, 1).clone())

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Tensors only: neuraloperator models slip a ``_metadata`` entry (their constructor
        arguments) into the enclosing state dict, which a strict load then refuses; the model
        config is stored separately in our checkpoints."""
        state = super().state_dict(*args, **kwargs)
        state.pop("_metadata", None)
        return state

    @property
    def in_channels(self) -> int:
        return int(self.in_mean.shape[1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, C_in, X, Y)`` physical input -> ``(batch, C_out, X, Y)`` physical output."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected input (batch, {self.in_channels}, x, y), got {tuple(x.shape)}"
            )
        out = self.model((x - self.in_mean) / self.in_std)
        return out * self.out_std + self.out_mean


class TrajectoryOperator(NormalizedOperator):
    """A trajectory model between normalization and decoding: ``(batch, T_in, x, y)`` ->
    ``(batch, T_out, x, y)`` in physical units.

    The frames are channels of one field, so one mean and std (``(2, 1)`` stats) serve every
    frame and any number of output steps; ``out_steps`` is passed to the model.
    """

    def forward(self, x: torch.Tensor, out_steps: int | None = None) -> torch.Tensor:
        """``(batch, T_in, X, Y)`` physical frames -> ``(batch, T_out, X, Y)`` physical."""
        if x.dim() != 4:
            raise ValueError(f"expected trajectories (batch, time, x, y), got {tuple(x.shape)}")
        out = self.model((x - self.in_mean) / self.in_std, out_steps=out_steps)
        return out * self.out_std + self.out_mean


class ObserverOperator(NormalizedOperator):
    """An assimilating model (:class:`opsolve.models.observer.SemilinearObserver`) between
    normalization and decoding, for one field of any dimension.

    ``forward(measured, mask, prior=None, correct=True)``: measurements ``(B, T, *grid)`` in
    physical units (read on the bool ``mask`` only) -> ``(analysis, forecast, predicted)``,
    each ``(B, T, *grid)`` in physical units. The prior defaults to the field's mean.
    """

    def _encode(self, u: torch.Tensor) -> torch.Tensor:
        return (u - self.in_mean.flatten()[0]) / self.in_std.flatten()[0]

    def _decode(self, u: torch.Tensor) -> torch.Tensor:
        return u * self.out_std.flatten()[0] + self.out_mean.flatten()[0]

    def forward(  # type: ignore[override]
        self,
        measured: torch.Tensor,
        mask: torch.Tensor,
        prior: torch.Tensor | None = None,
        correct: bool | torch.Tensor = True,
        states: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        """``states`` (optional, ``(B, S, *grid)`` physical): also return, fourth, the
        predictor's one-step forecast ``u + F(u)`` of each of them, ``(B, S, *grid)``
        (one call, so that a data-parallel wrapper sees every use of the weights)."""
        mask = mask.to(device=measured.device, dtype=torch.bool)
        encoded = torch.where(mask, self._encode(measured), torch.zeros_like(measured))
        start = None if prior is None else self._encode(prior)
        outputs = self.model(encoded, mask, start, correct)
        decoded = tuple(self._decode(u) for u in outputs)
        return decoded if states is None else (*decoded, self.one_step(states))

    def one_step(self, states: torch.Tensor) -> torch.Tensor:
        """The predictor's forecast ``u + F(u)`` of every state, one interval ahead:
        ``(B, S, *grid) -> (B, S, *grid)``, physical units."""
        flat = self._encode(states).reshape(-1, 1, *states.shape[2:])
        return self._decode(self.model.predict(flat).reshape(states.shape))
