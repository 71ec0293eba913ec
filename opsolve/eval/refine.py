"""The Spectral-Refiner: fine-tune SFNO's output layer with a negative Sobolev residual loss.

Cao, Brarda, Li, Xi, "Spectral-Refiner: Accurate Fine-Tuning of Spatiotemporal Fourier Neural
Operator for Turbulent Flows", ICLR 2025. After training, everything but the output spectral
layer of :class:`~opsolve.models.sfno.SpaceTimeFNO` is frozen; that layer (a single-channel
space-time Fourier multiplier) is enlarged to every mode the target grid holds (no
truncation: old weights copied into the low modes, new ones tiny) and fine-tuned on the
``L^2(0, T; H^-1)`` norm of the vorticity-equation residual of the prediction
(:mod:`opsolve.residual`), plus an optional relative L2 data term. The negative norm weighs the
low-frequency error; dropping the truncation lets the layer fix the high frequencies.

Since only the output layer changes, the frozen layers' single-channel field (hidden layers and
the reduction to one channel) is computed once and each refinement step costs one output layer,
one residual and their gradients.

Modes: ``per_trajectory`` (test time, residual only: a fresh copy of the layer per trajectory)
and ``train_set`` (one refinement on the training windows, then evaluation). Entry point:
:func:`refine_run` (``opsolve refine RUN``).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datagen.core.device import resolve_device
from datagen.core.errors import UserError
from opsolve.data import open_windows, split_physics
from opsolve.eval.report import load_trained, write_report
from opsolve.models.sfno import OutputSpectralConv, SpaceTimeFNO
from opsolve.models.wrapper import TrajectoryOperator
from opsolve.norms import relative_bochner_l2, relative_l2_per_step
from opsolve.plots import plot_refinement
from opsolve.residual import Physics, residual_norm, with_context
from opsolve.train.checkpoint import save_checkpoint
from opsolve.train.config import load_train_config


def full_modes(nx: int, ny: int, latent_steps: int) -> tuple[int, int, int]:
    """Every mode of an ``nx x ny`` grid and ``latent_steps`` times (no truncation)."""
    return nx // 2, ny // 2, latent_steps // 2 + 1


def _frequencies(count: int, modes: int) -> torch.Tensor:
    """Signed frequencies of the ``2 m`` stored positions of a non-last axis."""
    index = torch.arange(count)
    return torch.where(index < modes, index, index - 2 * modes)


def enlarge_output_layer(
    model: SpaceTimeFNO,
    modes: tuple[int, int, int],
    init_scale: float = 1e-6,
    generator: torch.Generator | None = None,
) -> None:
    """Replace the output layer by one with ``modes`` (each >= the old ones), in place.

    The old weight ``(1, 1, 2 m_x, 2 m_y, m_t)`` goes to the same frequencies of the new
    ``(1, 1, 2 M_x, 2 M_y, M_t)`` weight; the other entries are complex Gaussian times
    ``init_scale``, drawn from ``generator`` (CPU; None: the global one). The model's config
    records the new ``output_modes``.
    """
    old = model.output_conv
    if any(new < have for new, have in zip(modes, old.modes, strict=True)):
        raise UserError(f"refinement modes {modes} must not be below the trained {old.modes}")
    layer = OutputSpectralConv(1, 1, modes, "dense").to(old.mixer.weight.device)
    weight_old = old.dense_weight().detach()
    kept = layer.kept
    weight = init_scale * torch.randn(1, 1, *kept, dtype=weight_old.dtype, generator=generator)
    fx = _frequencies(2 * old.modes[0], old.modes[0]) % kept[0]
    fy = _frequencies(2 * old.modes[1], old.modes[1]) % kept[1]
    weight = weight.to(weight_old.device)
    weight[:, :, fx[:, None], fy[None, :], : old.modes[2]] = weight_old
    layer.load_dense_weight(weight)
    model.output_conv = layer
    model.output_modes = tuple(modes)
    model.config["output_modes"] = list(modes)


def freeze_all_but_output(model: SpaceTimeFNO) -> list[torch.nn.Parameter]:
    """``requires_grad`` off everywhere except the output spectral layer; its parameters."""
    for p in model.parameters():
        p.requires_grad_(False)
    trainable = list(model.output_conv.parameters())
    for p in trainable:
        p.requires_grad_(True)
    return trainable


def _sfno(op: TrajectoryOperator) -> SpaceTimeFNO:
    if not isinstance(op.model, SpaceTimeFNO):
        raise UserError(
            f"the Spectral-Refiner needs a spacetime_fno run, this one is {type(op.model).__name__}"
        )
    return op.model


def latent(op: TrajectoryOperator, x: torch.Tensor) -> torch.Tensor:
    """The frozen part: normalized input -> the reduced latent ``(batch, 1, x, y,
    latent_steps)`` (hidden layers and the 1 x 1 reduction to one channel)."""
    model = _sfno(op)
    with torch.no_grad():
        return model.reduce(model.encode((x - op.in_mean) / op.in_std))


def predict_from_latent(
    op: TrajectoryOperator, z: torch.Tensor, x: torch.Tensor, steps: int
) -> torch.Tensor:
    """The trainable part: reduced latent ``z`` (:func:`latent`) and physical input ``x`` ->
    ``(B, steps, X, Y)``."""
    model = _sfno(op)
    out = model.output(z, (x - op.in_mean) / op.in_std, steps)
    return out * op.out_std + op.out_mean


def prepare(
    op: TrajectoryOperator,
    grid: tuple[int, int],
    init_scale: float,
    generator: torch.Generator | None = None,
) -> TrajectoryOperator:
    """A copy of ``op`` with the enlarged, trainable output layer (the rest frozen)."""
    refined = copy.deepcopy(op)
    model = _sfno(refined)
    enlarge_output_layer(model, full_modes(*grid, model.latent_steps), init_scale, generator)
    freeze_all_but_output(model)
    return refined


def fine_tune(
    op: TrajectoryOperator,
    draw: Callable[[], tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]],
    physics: Physics,
    steps: int,
    out_steps: int,
    lr: float = 0.1,
    order: float = -1.0,
    data_weight: float = 0.0,
    keep_best: bool = False,
    schedule: str = "cosine",
) -> list[float]:
    """Adam on ``op``'s trainable (output-layer) parameters, in place, for ``steps`` steps.

    ``draw()`` gives the step's batch: reduced latent ``z`` (:func:`latent`), input ``x (B, T_in, n,
    n)`` and truth ``y`` (or ``None``). Loss: mean over the batch of ``||r||_{L^2(0,T;H^order)}
    + data_weight * rel. L2``, ``r`` the residual of ``[last two input frames, prediction]``.
    ``schedule``: ``cosine`` anneals the rate from ``lr`` to 0 over the steps (measured on
    held-out 64^2 trajectories: 200 steps at 0.1 reach the error a constant 1e-2 reaches in
    1000; see ``benchmarks/RESULTS.md``), ``constant`` keeps it. With ``keep_best`` (fixed
    batch only) the parameters of the lowest loss seen (before any step, or after the last)
    are the ones left: Adam does not descend monotonically, and the loss needs no truth, so
    at test time the best iterate is known. Returns the loss per step.
    """
    params = [p for p in op.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=lr)
    cosine = torch.optim.lr_scheduler.CosineAnnealingLR
    annealing = cosine(optimizer, steps) if schedule == "cosine" else None

    def objective(z: torch.Tensor, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        pred = predict_from_latent(op, z, x, out_steps)
        loss = residual_norm(with_context(x, pred), physics, order)
        if data_weight > 0:
            if y is None:
                raise UserError("refine.data_weight > 0 needs the true trajectories")
            loss = loss + data_weight * relative_bochner_l2(pred, y)
        return loss.mean()

    history: list[float] = []
    best, best_params = float("inf"), None
    for _ in range(steps):
        loss = objective(*draw())
        history.append(float(loss.detach()))
        if keep_best and history[-1] < best:
            best, best_params = history[-1], [p.detach().clone() for p in params]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if annealing is not None:
            annealing.step()
    if keep_best and best_params is not None:
        with torch.no_grad():
            if float(objective(*draw())) > best:
                for p, kept in zip(params, best_params, strict=True):
                    p.copy_(kept)
    return history


def refine_batch(
    op: TrajectoryOperator,
    x: torch.Tensor,
    physics: Physics,
    steps: int,
    out_steps: int,
    lr: float = 0.1,
    order: float = -1.0,
    y: torch.Tensor | None = None,
    data_weight: float = 0.0,
    keep_best: bool = False,
    schedule: str = "cosine",
) -> list[float]:
    """:func:`fine_tune` on one fixed batch ``x (B, T_in, n, n)`` (its latent computed once)."""
    z = latent(op, x)
    batch = (z, x, y)
    return fine_tune(
        op, lambda: batch, physics, steps, out_steps, lr, order, data_weight, keep_best, schedule
    )


def assess(
    op: TrajectoryOperator, x: torch.Tensor, y: torch.Tensor, physics: Physics, order: float
) -> dict[str, np.ndarray]:
    """Per trajectory: relative L2 (Bochner), residual norm and the per-step error curve."""
    with torch.no_grad():
        pred = op(x, out_steps=y.shape[1])
        return {
            "relative_l2": relative_bochner_l2(pred, y).double().cpu().numpy(),
            "residual": residual_norm(with_context(x, pred), physics, order).cpu().numpy(),
            "truth_residual": residual_norm(with_context(x, y), physics, order).cpu().numpy(),
            "per_step": relative_l2_per_step(pred, y).double().cpu().numpy(),
        }


def refine_run(
    run: str | Path,
    overrides: list[str] | None = None,
    checkpoint: str = "best",
    device: str = "auto",
) -> dict[str, Any]:
    """``opsolve refine RUN``: the run's ``refine`` config (with ``refine.key=value``
    overrides), results to ``RUN/refine_<split>_<res>.json`` and figures; ``train_set`` mode
    also writes ``RUN/checkpoints/refined.pt``. Returns the report (plus ``json``, ``figures``).
    """
    run = Path(run)
    if not (run / "config.yaml").is_file():
        raise UserError(f"{run}: no config.yaml (not a training run)")
    bad = [o for o in overrides or [] if not o.startswith("refine.")]
    if bad:
        raise UserError(f"only refine.* keys can be overridden here, got {bad[0]!r}")
    cfg = load_train_config(run / "config.yaml", overrides).refine
    op, ckpt = load_trained(run, checkpoint)
    trained = ckpt["data"]
    if trained.get("kind") != "trajectory":
        raise UserError(f"{run}: the Spectral-Refiner needs a run trained on trajectories")
    _sfno(op)
    root = Path(cfg.data) if cfg.data else Path(trained["root"])
    r = cfg.subsample or int(trained["subsample"])
    window = {k: trained[k] for k in ("input_steps", "output_steps", "stride", "field")}
    stride_one = {**window, "stride": 10**9}  # one window per trajectory
    ds = open_windows(root, cfg.split, **stride_one, subsample=r, limit=cfg.limit)
    physics = split_physics(ds)
    if physics is None:
        raise UserError(f"{root}: not Navier-Stokes data (no vorticity residual to refine on)")
    dev = resolve_device(device, "--device")
    op.to(dev)
    batch = [ds[i] for i in range(len(ds))]
    x = torch.stack([b["x"] for b in batch]).to(dev)
    y = torch.stack([b["y"] for b in batch]).to(dev)
    steps_out = y.shape[1]
    before = assess(op, x, y, physics, cfg.order)
    start = time.perf_counter()
    histories = []
    if cfg.mode == "per_trajectory":
        after_parts = []
        for i in range(x.shape[0]):
            # The new modes' tiny random start is seeded by the trajectory's place in the
            # split: Adam's first steps are about the same size whatever the gradient's, so
            # unseeded starts gave 61x and 67x error reductions on the same data.
            seeded = torch.Generator().manual_seed(i)
            refined = prepare(op, (ds.resolution, ds.resolution), cfg.init_scale, seeded)
            xi, yi = x[i : i + 1], y[i : i + 1]
            histories.append(
                refine_batch(
                    refined,
                    xi,
                    physics,
                    cfg.steps,
                    steps_out,
                    cfg.lr,
                    cfg.order,
                    keep_best=True,
                    schedule=cfg.schedule,
                )
            )
            after_parts.append(assess(refined, xi, yi, physics, cfg.order))
        after = {k: np.concatenate([p[k] for p in after_parts]) for k in after_parts[0]}
    else:
        train = open_windows(
            trained["root"], "train", **window, subsample=int(trained["subsample"])
        )
        train_physics = split_physics(train)
        seeded = torch.Generator().manual_seed(0)
        refined = prepare(op, (train.resolution, train.resolution), cfg.init_scale, seeded)
        generator = torch.Generator().manual_seed(0)

        def draw() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            pick = torch.randint(
                len(train), (min(cfg.batch_size, len(train)),), generator=generator
            )
            xb = torch.stack([train[int(i)]["x"] for i in pick]).to(dev)
            yb = torch.stack([train[int(i)]["y"] for i in pick]).to(dev)
            return latent(refined, xb), xb, yb

        history = fine_tune(
            refined,
            draw,
            train_physics,
            cfg.steps,
            int(window["output_steps"]),
            cfg.lr,
            cfg.order,
            cfg.data_weight,
            schedule=cfg.schedule,
        )
        histories.append(history)
        if ds.resolution != train.resolution:  # enlarge again to the evaluated grid
            enlarge_output_layer(
                _sfno(refined),
                full_modes(ds.resolution, ds.resolution, _sfno(refined).latent_steps),
                0.0,
            )
        after = assess(refined, x, y, physics, cfg.order)
        state = {k: v for k, v in refined.state_dict().items()}
        save_checkpoint(
            {
                **{k: ckpt[k] for k in ckpt if k not in ("format", "state", "model")},
                "model": {"name": ckpt["model"]["name"], "params": _sfno(refined).config},
                "state": state,
                "refine": cfg.model_dump(mode="json"),
            },
            run / "checkpoints" / "refined.pt",
        )
    seconds = time.perf_counter() - start
    res = ds.resolution
    summary = {
        key: {
            "before": float(before[key].mean()),
            "after": float(after[key].mean()),
            "ratio": float(before[key].mean() / max(after[key].mean(), 1e-300)),
        }
        for key in ("relative_l2", "residual")
    }
    report = {
        "run": str(run),
        "checkpoint": checkpoint,
        "refine": cfg.model_dump(mode="json"),
        "data": str(root),
        "split": cfg.split,
        "resolution": res,
        "trained_resolution": int(trained["resolution"]),
        "trajectories": int(x.shape[0]),
        "seconds": seconds,
        "summary": summary,
        "truth_residual": float(before["truth_residual"].mean()),
        "per_trajectory": {
            f"{k}_{when}": d[k].tolist()
            for when, d in (("before", before), ("after", after))
            for k in ("relative_l2", "residual")
        },
        "per_step": {
            "before": before["per_step"].mean(0).tolist(),
            "after": after["per_step"].mean(0).tolist(),
        },
        "loss_history": histories,
    }
    stem = f"refine_{cfg.split}_{res}"
    out = write_report(run / f"{stem}.json", report)
    figure = plot_refinement(report, run / "figures" / f"{stem}.png")
    return {**report, "json": str(out), "figures": [str(figure)]}
