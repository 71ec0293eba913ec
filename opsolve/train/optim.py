"""Optimizer, learning-rate schedule, device and precision from a training config."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import nullcontext
from typing import Any

import torch

from datagen.core.errors import UserError
from opsolve.train.config import TrainConfig


def build_optimizer(
    cfg: TrainConfig, params: Iterator[torch.nn.Parameter]
) -> torch.optim.Optimizer:
    """Adam (coupled L2 penalty, as the FNO and MgNO codes), AdamW (decoupled decay) or
    AdamW with Tensor-GaLore low-rank moments (:class:`opsolve.train.lowrank.LowRankAdamW`)."""
    o = cfg.optimizer
    if o.name == "galore_adamw":
        from opsolve.train.lowrank import LowRankAdamW

        g = o.galore
        return LowRankAdamW(
            params,
            lr=o.lr,
            weight_decay=o.weight_decay,
            rank=g.rank,
            update_gap=g.update_gap,
            scale=g.scale,
            leading_axes=g.leading_axes,
            rotate=g.rotate_moments,
            residual=g.residual,
        )
    cls = torch.optim.AdamW if o.name == "adamw" else torch.optim.Adam
    return cls(params, lr=o.lr, weight_decay=o.weight_decay)


def steps_per_batch(cfg: TrainConfig) -> bool:
    """Whether the schedule steps after every optimizer step (one-cycle, as Smith and Topin
    define it) rather than after every epoch (step, cosine, none)."""
    return cfg.scheduler.name == "onecycle"


def build_scheduler(
    cfg: TrainConfig, optimizer: torch.optim.Optimizer, steps_per_epoch: int
) -> Any:
    """The learning-rate schedule of ``cfg.scheduler``: one-cycle over every optimizer step of
    the run (``epochs * steps_per_epoch``), so that its last steps, not a whole last epoch, run
    at the final rate; the others over the epochs."""
    s = cfg.scheduler
    lr_sched = torch.optim.lr_scheduler
    if s.name == "onecycle":
        return lr_sched.OneCycleLR(
            optimizer,
            max_lr=cfg.optimizer.lr,
            total_steps=cfg.epochs * steps_per_epoch,
            pct_start=s.pct_start,
            div_factor=s.div_factor,
            final_div_factor=s.final_div_factor,
        )
    if s.name == "step":
        return lr_sched.StepLR(optimizer, step_size=s.step_size, gamma=s.gamma)
    if s.name == "cosine":
        return lr_sched.CosineAnnealingLR(optimizer, T_max=s.t_max or cfg.epochs, eta_min=s.eta_min)
    return lr_sched.LambdaLR(optimizer, lambda _: 1.0)


def check_precision(cfg: TrainConfig, device: torch.device) -> None:
    """Mixed precision runs on CUDA only: on CPU it is an error, not a silent fallback."""
    if cfg.precision == "amp" and device.type != "cuda":
        raise UserError(
            f"precision: 'amp' needs a CUDA device (device resolved to {device.type}); "
            "use precision=fp32"
        )


def autocast(cfg: TrainConfig, device: torch.device) -> Any:
    """``torch.autocast`` for ``precision: amp`` (bf16 or fp16), else a no-op context."""
    if cfg.precision != "amp":
        return nullcontext()
    dtype = torch.bfloat16 if cfg.amp_dtype == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def spectral_layers_in_fp32(model: torch.nn.Module) -> int:
    """Feed every spectral convolution float32 inputs; returns how many were found.

    Under ``torch.autocast`` a spectral layer receives bf16/fp16 activations, and ``torch.fft``
    is not autocast to float32: cuFFT has no bfloat16 and computes float16 only for power-of-two
    sizes (85, 211 fail). A forward pre-hook casts the input of each module whose class name
    starts with ``SpectralConv`` (neuraloperator's and :mod:`opsolve.layers.spectral`'s) to
    float32, so the FFTs and the per-mode complex products run in full precision while the
    pointwise and convolution layers run in reduced precision.
    """

    def to_fp32(_module: torch.nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args)

    found = 0
    for module in model.modules():
        if type(module).__name__.startswith("SpectralConv"):
            module.register_forward_pre_hook(to_fp32)
            found += 1
    return found


def check_amp_model(cfg: TrainConfig, model: torch.nn.Module) -> None:
    """fp16 autocast needs ``GradScaler``, which cannot unscale complex gradients (the spectral
    weights of FNO / TFNO): a UserError pointing to bf16, which needs no scaler."""
    if cfg.precision != "amp" or cfg.amp_dtype != "fp16":
        return
    if any(p.is_complex() for p in model.parameters()):
        raise UserError(
            "amp_dtype: 'fp16' needs a gradient scaler, which cannot unscale this model's "
            "complex (spectral) weights; use amp_dtype=bf16"
        )
