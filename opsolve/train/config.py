"""The schema of a training config (``configs/train/*.yaml``).

Loaded and validated with :mod:`datagen.core.config` (YAML, ``dotted.key=value`` overrides, one-line
errors). Every key has a default except ``data.root``; :func:`load_train_config` is the entry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from datagen.core.config import Device, Int, StrictModel, load_config


class ModelSpec(StrictModel):
    """Which model to build: a registered name and the keyword arguments of its builder.

    ``in_channels`` / ``out_channels`` may be left out: they are taken from the data. Given, they
    must match the data.
    """

    name: str = Field(
        "fno", description="registered model: fno, tfno, mgno, lsm, spacetime_fno, fno3d, ..."
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="keyword arguments of the model's builder"
    )


class Limits(StrictModel):
    """Use only the first N samples of a split (null: all)."""

    train: Int | None = Field(None, ge=1, description="first N train samples (null: all)")
    valid: Int | None = Field(None, ge=1, description="first N valid samples (null: all)")
    test: Int | None = Field(None, ge=1, description="first N test samples (null: all)")


class Normalize(StrictModel):
    """Z-score inputs / outputs per channel with the train split's statistics (``stats.yaml``).

    Outputs are normalized only inside the model: predictions are decoded to physical units
    before every loss and metric.
    """

    inputs: bool = Field(True, description="z-score the inputs with the train statistics")
    outputs: bool = Field(
        True, description="z-score the outputs (decoded before losses and metrics)"
    )


class Window(StrictModel):
    """Windows of trajectory datasets (:class:`opsolve.data.TrajectoryDataset`): ``input_steps``
    frames in, ``output_steps`` frames out, a window starting every ``stride`` records. Used
    only when the dataset holds trajectories (e.g. Navier-Stokes vorticity)."""

    input_steps: Int = Field(10, ge=1, le=100_000, description="frames given to the model")
    output_steps: Int = Field(10, ge=1, le=100_000, description="frames the model predicts")
    stride: Int = Field(1, ge=1, description="records between window starts")
    field: str = Field(
        "vorticity", min_length=1, description="dataset field the windows are cut from"
    )


class Data(StrictModel):
    """The dataset directory written by ``datagen`` and how to read it.

    Steady datasets (Darcy) give samples ``(C_in, s, s) -> (C_out, s, s)``; trajectory datasets
    give windows ``(input_steps, s, s) -> (output_steps, s, s)`` (``window``; ``inputs`` and
    ``outputs`` do not apply). ``subsample`` strides the grid of either.
    """

    root: str = Field(..., min_length=1, description="dataset directory (DIR/data/<split>/)")
    subsample: Int = Field(
        1, ge=1, le=4096, description="stride: 421 -> 85 with 5, 421 -> 211 with 2"
    )
    inputs: list[str] | None = Field(None, description="input fields (default: varying ones)")
    outputs: list[str] | None = Field(None, description="output fields (default: u)")
    limit: Limits = Limits()
    normalize: Normalize = Normalize()
    num_workers: Int = Field(0, ge=0, le=64, description="DataLoader worker processes")
    window: Window = Window()


class Loss(StrictModel):
    """Training loss: per-sample relative error in L2 or H1, averaged over the batch.

    ``gradient_weight`` (relative_h1 only) scales the gradient term of the H1 norm:
    ``||e||^2 + w ||grad e||^2``. 1 is the H1 norm on the unit square; ``1 / (4 pi^2)`` is the
    norm MgNO's official code trains with (Fourier weights ``1 + |k|^2`` with integer ``k``).
    The reported ``valid_h1`` always uses ``w = 1``.

    On trajectories the errors are relative Bochner norms over space-time (``L^2(0,T; L^2)``
    and ``L^2(0,T; H^1)``, :mod:`opsolve.norms`), and ``residual_weight`` adds that multiple of
    the ``L^2(0,T; H^residual_order)`` norm of the vorticity-equation residual of the
    prediction (:mod:`opsolve.residual`; Navier-Stokes data only; ``-1``: the ``H^-1`` norm of
    the Spectral-Refiner, Cao et al., ICLR 2025).
    """

    name: Literal["relative_l2", "relative_h1"] = Field(
        "relative_l2", description="per-sample relative error: relative_l2 or relative_h1"
    )
    gradient_weight: float = Field(
        1.0, gt=0.0, le=1e6, description="relative_h1: weight w of the gradient term"
    )
    residual_weight: float = Field(
        0.0,
        ge=0.0,
        le=1e6,
        description="factor on the H^residual_order norm of the vorticity residual (NS only)",
    )
    residual_order: float = Field(-1.0, ge=-4.0, le=4.0, description="s of the H^s norm")

    @model_validator(mode="after")
    def _weight_needs_h1(self) -> Loss:
        if self.name != "relative_h1" and self.gradient_weight != 1.0:
            raise ValueError("gradient_weight applies to relative_h1 only")
        return self


class GaLore(StrictModel):
    """Low-rank gradient projection of ``galore_adamw`` (:mod:`opsolve.train.lowrank`):
    neuraloperator's Tensor-GaLore AdamW keeps the moments of every weight of >= 2 axes in a
    Tucker subspace of its gradient, ``rank`` of each axis longer than 4, recomputed every
    ``update_gap`` steps; ``scale`` multiplies the projected-back update."""

    rank: float = Field(0.5, gt=0.0, le=1.0, description="fraction of each weight axis kept")
    update_gap: Int = Field(
        50, ge=1, le=1_000_000, description="optimizer steps between subspace updates"
    )
    scale: float = Field(1.0, gt=0.0, le=100.0, description="factor on the low-rank update")
    leading_axes: Int | None = Field(
        None,
        ge=1,
        le=16,
        description="compress only this many leading axes of each weight (2: the channels; "
        "null: every axis longer than 4)",
    )
    rotate_moments: bool = Field(
        False, description="carry Adam's moments into each recomputed subspace"
    )
    residual: bool = Field(
        False, description="also apply the gradient outside the subspace, scaled (Fira)"
    )


class Optimizer(StrictModel):
    """Adam (L2 penalty added to the gradient), AdamW (decoupled weight decay) or
    ``galore_adamw`` (AdamW with Tensor-GaLore low-rank moments, section ``galore``)."""

    name: Literal["adam", "adamw", "galore_adamw"] = Field(
        "adam", description="adam (L2 penalty), adamw (decoupled decay) or galore_adamw"
    )
    lr: float = Field(1e-3, gt=0.0, le=10.0, description="learning rate (OneCycle: the peak)")
    weight_decay: float = Field(0.0, ge=0.0, le=10.0, description="weight decay coefficient")
    galore: GaLore = GaLore()

    @model_validator(mode="after")
    def _galore_needs_its_optimizer(self) -> Optimizer:
        if self.name != "galore_adamw" and self.galore != GaLore():
            raise ValueError(f"galore applies to galore_adamw only, not to {self.name!r}")
        return self


_SCHEDULER_KEYS = {
    "onecycle": {"pct_start", "div_factor", "final_div_factor"},
    "step": {"step_size", "gamma"},
    "cosine": {"t_max", "eta_min"},
    "none": set(),
}


class Scheduler(StrictModel):
    """Learning-rate schedule: one-cycle stepped after every optimizer step, the others once
    per epoch.

    ``onecycle``: from ``lr / div_factor`` up to ``optimizer.lr`` over ``pct_start`` of the
    run's steps (cosine), then down to ``lr / div_factor / final_div_factor`` at its last
    step. ``step``: multiply by
    ``gamma`` every ``step_size`` epochs. ``cosine``: cosine from ``lr`` to ``eta_min`` over
    ``t_max`` epochs (default: all). ``none``: constant. Keys of another schedule are errors
    (unless they hold the default, as in a dumped resolved config).
    """

    name: Literal["onecycle", "step", "cosine", "none"] = Field(
        "none", description="onecycle, step, cosine or none; see the section docstring"
    )
    pct_start: float = Field(
        0.3, gt=0.0, lt=1.0, description="onecycle: fraction of the steps spent rising"
    )
    div_factor: float = Field(
        25.0, gt=0.0, le=1e8, description="onecycle: starting lr = lr / div_factor"
    )
    final_div_factor: float = Field(
        1e4, gt=0.0, le=1e8, description="onecycle: final lr = starting lr / final_div_factor"
    )
    step_size: Int = Field(100, ge=1, le=1_000_000, description="epochs")
    gamma: float = Field(0.5, gt=0.0, le=1.0, description="step: lr factor every step_size epochs")
    t_max: Int | None = Field(None, ge=1, le=1_000_000, description="epochs (default: epochs)")
    eta_min: float = Field(0.0, ge=0.0, le=10.0, description="cosine: final learning rate")

    @model_validator(mode="after")
    def _only_own_keys(self) -> Scheduler:
        fields = type(self).model_fields
        foreign = sorted(
            key
            for key in (self.model_fields_set - {"name"}) - _SCHEDULER_KEYS[self.name]
            if getattr(self, key) != fields[key].default  # a dumped default is harmless
        )
        if foreign:
            own = ", ".join(sorted(_SCHEDULER_KEYS[self.name])) or "none"
            raise ValueError(
                f"{foreign[0]!r} does not apply to scheduler {self.name!r} (its keys: {own})"
            )
        return self


class Refine(StrictModel):
    """The Spectral-Refiner (``opsolve refine RUN``; Cao, Brarda, Li, Xi, ICLR 2025).

    Everything but the output spectral layer is frozen; that layer is enlarged to every mode
    the target grid holds (old weights in the low modes, new ones ``init_scale`` times a
    Gaussian) and fine-tuned with Adam for ``steps`` steps at rate ``lr`` (annealed to 0 on a
    cosine, or ``schedule: constant``) on
    ``||residual||_{L^2(0,T; H^order)} + data_weight * relative L2 error``.

    ``mode``: ``per_trajectory`` refines a fresh copy for every trajectory of ``split`` (test
    time: only the residual, ``data_weight`` must be 0 since the truth is unknown);
    ``train_set`` refines once on the training windows (``data_weight`` may be > 0) and
    evaluates on ``split``. ``subsample`` picks the evaluated grid (default: the training one;
    a finer dataset via ``data``).
    """

    mode: Literal["per_trajectory", "train_set"] = Field(
        "per_trajectory",
        description="per_trajectory: each trajectory of split; train_set: once on train windows",
    )
    steps: Int = Field(200, ge=1, le=1_000_000, description="Adam steps")
    lr: float = Field(0.1, gt=0.0, le=10.0, description="Adam learning rate")
    schedule: Literal["cosine", "constant"] = Field(
        "cosine", description="lr annealed to 0 on a cosine, or constant"
    )
    order: float = Field(-1.0, ge=-4.0, le=4.0, description="s of the residual's H^s norm")
    data_weight: float = Field(
        0.0, ge=0.0, le=1e6, description="factor on the relative L2 error (train_set mode only)"
    )
    init_scale: float = Field(
        1e-6, ge=0.0, le=1.0, description="scale of the new high-mode weights"
    )
    split: Literal["train", "valid", "test"] = Field(
        "test", description="split evaluated; per_trajectory also refines on it"
    )
    limit: Int | None = Field(4, ge=1, description="trajectories refined (null: all)")
    data: str | None = Field(None, description="dataset to refine on (default: training data)")
    subsample: Int | None = Field(
        None, ge=1, description="grid stride of the evaluated data (default: the training one)"
    )
    batch_size: Int = Field(4, ge=1, le=65536, description="train_set mode: windows per step")

    @model_validator(mode="after")
    def _no_truth_at_test_time(self) -> Refine:
        if self.mode == "per_trajectory" and self.data_weight > 0:
            raise ValueError("data_weight needs mode train_set (per_trajectory has no truth)")
        return self


class ObserverTraining(StrictModel):
    """Observations for training an ``observer`` model (:mod:`opsolve.train.assimilation`):
    drawn on the fly on every window, ``density`` of the grid nodes (a range up to
    ``density_max`` when given: each trajectory draws its own), noise ``noise`` times the
    field's std, ``mask`` random (new nodes every step), sensors (fixed nodes) or stripes (a
    band of the first axis), present at a step with probability ``availability``. The first
    ``warmup`` steps of a window are assimilated but not scored; ``measurement_weight``
    weighs the relative misfit of the predicted measurements in the loss, and
    ``prediction_weight`` the predictor's one-step error on the true states."""

    density: float = Field(0.1, ge=0.0, le=1.0, description="fraction of nodes observed")
    density_max: float | None = Field(
        None, ge=0.0, le=1.0, description="upper end of a density range (null: no range)"
    )
    noise: float = Field(
        0.05, ge=0.0, le=100.0, description="noise std as a fraction of the field's std"
    )
    mask: Literal["random", "sensors", "stripes"] = Field(
        "random", description="random (per step), sensors (fixed) or stripes (a swath)"
    )
    availability: float = Field(
        1.0, ge=0.0, le=1.0, description="probability that a step has observations"
    )
    warmup: Int = Field(8, ge=0, le=100_000, description="steps assimilated but not scored")
    measurement_weight: float = Field(
        0.1, ge=0.0, le=1e6, description="factor on the measurement misfit in the loss"
    )
    prediction_weight: float = Field(
        0.0, ge=0.0, le=1e6, description="factor on the one-step forecast error of the true states"
    )

    @model_validator(mode="after")
    def _range(self) -> ObserverTraining:
        if self.density_max is not None and self.density_max < self.density:
            raise ValueError(
                f"density_max ({self.density_max}) must be >= density ({self.density})"
            )
        return self


class Init(StrictModel):
    """Start from the weights of another run (fine-tuning): its network only, not its
    normalization, optimizer or schedule; a resumed run keeps its own weights."""

    run: str | None = Field(None, min_length=1, description="run directory to start from")
    checkpoint: Literal["best", "last"] = Field("best", description="which of its checkpoints")


class Output(StrictModel):
    """The run directory: config.yaml, log.txt, metrics.csv, checkpoints/, figures/."""

    dir: str = Field("runs/train/run", min_length=1, description="the run directory")


class TrainConfig(StrictModel):
    """A complete training config."""

    model: ModelSpec = ModelSpec()
    data: Data = Field(description="the dataset and how to read it (data.root is required)")
    loss: Loss = Loss()
    optimizer: Optimizer = Optimizer()
    scheduler: Scheduler = Scheduler()
    epochs: Int = Field(10, ge=1, le=1_000_000, description="training epochs")
    batch_size: Int = Field(8, ge=1, le=65536, description="global batch, split across DDP ranks")
    eval_batch_size: Int | None = Field(None, ge=1, le=65536, description="default: batch_size")
    selection: Literal["valid_l2", "valid_h1"] = Field(
        "valid_l2", description="validation metric that picks best.pt"
    )
    seed: Int = Field(
        0, ge=0, lt=2**63, description="seed of the weight initialization and the batch order"
    )
    device: Device = Field("auto", description="cpu, cuda, or auto (cuda if available)")
    precision: Literal["fp32", "amp"] = Field(
        "fp32", description="fp32, or amp (mixed precision, CUDA only)"
    )
    amp_dtype: Literal["bf16", "fp16"] = Field("bf16", description="autocast dtype for amp")
    output: Output = Output()
    init: Init = Init()
    refine: Refine = Refine()
    observer: ObserverTraining = ObserverTraining()

    @model_validator(mode="after")
    def _scored_steps(self) -> TrainConfig:
        steps = self.data.window.input_steps + self.data.window.output_steps
        if self.model.name == "observer" and self.observer.warmup >= steps:
            raise ValueError(
                f"observer.warmup ({self.observer.warmup}) leaves no scored step in windows of "
                f"{steps} steps (data.window.input_steps + output_steps): lower it below {steps}"
            )
        return self

    @model_validator(mode="after")
    def _cosine_length(self) -> TrainConfig:
        if self.scheduler.name == "cosine" and self.scheduler.t_max is None:
            object.__setattr__(self.scheduler, "t_max", self.epochs)
        return self


def load_train_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read, override and validate a training config; problems are one-line UserErrors."""
    return load_config(TrainConfig, path, overrides)
