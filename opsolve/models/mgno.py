"""MgNO: a neural operator whose linear operators are learned multigrid V-cycles.

Reference: J. He, X. Liu, J. Xu, "MgNO: Efficient Parameterization of Linear Operators via
Multigrid", ICLR 2024 (official code: github.com/xlliu2017/MgNO, ``models.py``: ``MgNO_DC``,
``MgNO_DC_smooth``, ``MgNO_NS``).

Official settings (``DARCY_ROUGH``, ``DARCY_SMOOTH``, ``NAVIER_STOKES`` below) and training
defaults (``TRAINING``, for reference; this module does not train):

* Darcy, rough coefficients (256x256, the 512 grid subsampled by 2): width 24, 4 layers, 6
  levels, pre-smoothing ``[1, 1, 1, 1, 1, 2]``, zero padding; 572,661 parameters (the paper's
  "0.57 M"), the same count as the official ``MgNO_DC``.
* Darcy, smooth coefficients (211x211, the 421 grid subsampled by 2): the same with 5 layers;
  738,573 parameters here. The official ``MgNO_DC_smooth`` has 678,093 because it hard-codes
  3x3 instead of 4x4 prolongation kernels on three of its five grid transitions so that the
  sizes 211, 106, 53, 27, 14, 7 fit; it fails on every other size.
* Navier-Stokes (64x64, one input frame, periodic): width 32, 5 layers, 5 levels,
  pre-smoothing ``[1, 1, 1, 2, 2]``, biased smoothing convs; 1,145,674 parameters here. The
  official ``MgNO_NS`` has 2,885,194, of which 1,740,800 are the per-pixel affine maps of its
  ``LayerNorm`` layers tied to 64x64 grids (here ``GroupNorm(1, C)``, 64 each); it also pads its
  prolongation with zeros, so despite circular convolutions it is not periodic.

The official command lines spell the smoothing as ``--num_iteration 10 10 10 10 10 20``:
``argparse`` with ``type=list`` splits each token into characters, so each token is the pair
(pre-smoothing, post-smoothing) of one level, finest first. Here the two lists are explicit:
``smoothing=[1, 1, 1, 1, 1, 2]`` and ``post_smoothing=[0, 0, 0, 0, 0, 0]`` (the default).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from opsolve.layers.multigrid import VCycle, check_grid_input, check_padding_mode

VARIANTS = ("darcy", "navier_stokes")
ACTIVATIONS: dict[str, type[nn.Module]] = {
    "gelu": nn.GELU,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "silu": nn.SiLU,
}

DARCY_ROUGH: dict[str, Any] = {
    "width": 24,
    "num_layers": 4,
    "levels": 6,
    "smoothing": [1, 1, 1, 1, 1, 2],
    "padding_mode": "zeros",
    "variant": "darcy",
}
"""Official rough-Darcy model (``darcy.py --data darcy20c6 --model_type MgNO_DC``)."""

DARCY_SMOOTH: dict[str, Any] = {**DARCY_ROUGH, "num_layers": 5}
"""Official smooth-Darcy model (``--data darcy --model_type MgNO_DC_smooth``), 4x4 kernels."""

NAVIER_STOKES: dict[str, Any] = {
    "width": 32,
    "num_layers": 5,
    "levels": 5,
    "smoothing": [1, 1, 1, 2, 2],
    "padding_mode": "circular",
    "bias": True,
    "variant": "navier_stokes",
}
"""Official Navier-Stokes model (``navier.py --num_iteration 10 10 10 20 20 --bias``)."""

TRAINING: dict[str, Any] = {
    "optimizer": "adam",  # coupled L2 weight decay, like torch.optim.Adam
    "weight_decay": 1e-4,
    "schedule": "one_cycle",  # per epoch; pct_start 0.2
    "max_lr": 5e-4,
    "initial_lr": 2.5e-4,  # div_factor 2
    "final_lr": 2.5e-6,  # final_div_factor 100
    "batch_size": 8,
    "epochs": 500,
    "loss": "relative_h1",
}
"""Official Darcy training recipe (for reference)."""

_CONFIG_KEYS = (
    "in_channels",
    "out_channels",
    "width",
    "num_layers",
    "levels",
    "smoothing",
    "post_smoothing",
    "padding_mode",
    "activation",
    "variant",
    "bias",
    "residual_restriction",
)


class MgNO(nn.Module):
    """MgNO (He, Liu & Xu, ICLR 2024): layers ``u <- act(W u + b(u))`` with ``W`` a V-cycle.

    Shapes: input (batch, in_channels, H, W) -> output (batch, out_channels, H, W), for any
    H, W >= ``2**(levels - 1) + 1`` (33 for 6 levels), odd or even.

    Variants:

    * ``"darcy"`` (official ``MgNO_DC``): ``u <- act(VCycle(u) + Conv1x1(u))`` per layer, the
      1x1 conv with bias; the first V-cycle reads the input directly (no lifting, no
      coordinates); the output is a bias-free 1x1 conv to ``out_channels``. (The official model
      also decodes the output with the data normalizer; that belongs to the data pipeline.)
    * ``"navier_stokes"`` (official ``MgNO_NS``): ``u <- act(VCycle(u))`` with a normalization
      after each prolongation sum and no 1x1 path; output = bias-free 1x1 conv + the input
      frame, so ``out_channels == in_channels``. The official ``LayerNorm([C, 64/2**l, 64/2**l])``
      only accepts 64x64 inputs; here it is ``GroupNorm(1, C)`` (same statistics, per-channel
      instead of per-pixel affine), which works at any size, so the parameter count differs.

    See :mod:`opsolve.layers.multigrid` for the V-cycle and its border handling (any size;
    exactly shift-equivariant with ``padding_mode="circular"``, which the official code is not).

    Args:
        in_channels: input channels (1 for the Darcy coefficient or one vorticity frame).
        out_channels: output channels.
        width: channels of the hidden fields ``u``.
        num_layers: number of V-cycle layers.
        levels: multigrid levels per V-cycle.
        smoothing: pre-smoothing steps per level, finest first; default one per level and two
            on the coarsest (``[1, 1, 1, 1, 1, 2]`` for 6 levels, the official setting).
        post_smoothing: post-smoothing steps per level (default all 0; the last must be 0).
        padding_mode: "zeros" (Dirichlet), "circular" (periodic), "reflect" or "replicate".
        activation: "gelu", "relu", "tanh" or "silu".
        variant: "darcy" or "navier_stokes".
        bias: bias in the smoothing convolutions ``A`` and ``S``.
        residual_restriction: restrict ``f - A u`` instead of ``f``.

    The model can be rebuilt from :attr:`config` with :meth:`from_config` (for checkpoints).
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        out_channels: int = 1,
        width: int = 24,
        num_layers: int = 4,
        levels: int = 6,
        smoothing: Sequence[int] | None = None,
        post_smoothing: Sequence[int] | None = None,
        padding_mode: str = "zeros",
        activation: str = "gelu",
        variant: str = "darcy",
        bias: bool = False,
        residual_restriction: bool = False,
    ) -> None:
        super().__init__()
        for name, value in (
            ("in_channels", in_channels),
            ("out_channels", out_channels),
            ("width", width),
            ("num_layers", num_layers),
            ("levels", levels),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"MgNO {name} must be an integer >= 1; got {value!r}")
        if variant not in VARIANTS:
            raise ValueError(f"MgNO variant must be one of {', '.join(VARIANTS)}; got {variant!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(
                f"MgNO activation must be one of {', '.join(ACTIVATIONS)}; got {activation!r}"
            )
        check_padding_mode(padding_mode)
        for name, flag in (("bias", bias), ("residual_restriction", residual_restriction)):
            if not isinstance(flag, bool):
                raise ValueError(f"MgNO {name} must be true or false; got {flag!r}")
        if variant == "navier_stokes" and out_channels != in_channels:
            raise ValueError(
                "MgNO navier_stokes adds the input frame to the output, so out_channels must "
                f"equal in_channels; got {out_channels} and {in_channels}"
            )
        self.in_channels, self.levels, self.variant = in_channels, levels, variant

        def vcycle(channels_in: int) -> VCycle:
            return VCycle(
                channels_in,
                width,
                levels,
                smoothing,
                post_smoothing,
                padding_mode,
                bias,
                residual_restriction,
                normalize=variant == "navier_stokes",
            )

        channels = [in_channels] + [width] * (num_layers - 1)
        self.vcycles = nn.ModuleList(vcycle(c) for c in channels)
        # Darcy only: the pointwise path b(u), a 1x1 conv with bias.
        self.skips = (
            nn.ModuleList(nn.Conv2d(c, width, 1) for c in channels) if variant == "darcy" else None
        )
        self._config: dict[str, Any] = {  # smoothing as validated and resolved by the V-cycle
            "in_channels": in_channels,
            "out_channels": out_channels,
            "width": width,
            "num_layers": num_layers,
            "levels": levels,
            "smoothing": list(self.vcycles[0].pre_smoothing),
            "post_smoothing": list(self.vcycles[0].post_smoothing),
            "padding_mode": padding_mode,
            "activation": activation,
            "variant": variant,
            "bias": bias,
            "residual_restriction": residual_restriction,
        }
        self.act = ACTIVATIONS[activation]()
        self.project = nn.Conv2d(width, out_channels, 1, bias=False)

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments; ``MgNO.from_config(model.config)`` rebuilds the model."""
        return {k: list(v) if isinstance(v, list) else v for k, v in self._config.items()}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> MgNO:
        """Build a model from a (possibly partial) :attr:`config` dict; unknown keys are errors."""
        if not isinstance(config, Mapping):
            raise ValueError(f"MgNO config must be a mapping; got {type(config).__name__}")
        unknown = sorted(set(config) - set(_CONFIG_KEYS))
        if unknown:
            raise ValueError(
                f"unknown MgNO config key(s) {', '.join(map(str, unknown))}; "
                f"allowed: {', '.join(_CONFIG_KEYS)}"
            )
        return cls(**config)

    def forward(self, x: Tensor) -> Tensor:
        check_grid_input(x, self.in_channels, self.levels, "MgNO")
        u = x
        for i, vcycle in enumerate(self.vcycles):
            z = vcycle(u)
            if self.skips is not None:
                z = z + self.skips[i](u)
            u = self.act(z)
        out = self.project(u)
        return out + x if self.variant == "navier_stokes" else out
