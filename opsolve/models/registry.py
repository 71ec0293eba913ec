"""Models by name: a small registry of builders (the neuraloperator habit), and the
operators built from it (a model between input normalization and output decoding).

A builder takes the keyword arguments of ``model.params`` (with ``in_channels`` and
``out_channels`` filled in from the data) and returns a ``torch.nn.Module`` that maps
``(batch, in_channels, *space)`` to ``(batch, out_channels, *space)``.

Registered here: ``fno`` and ``tfno`` (``neuralop.models.FNO`` / ``TFNO``), ``mgno``
(:class:`opsolve.models.mgno.MgNO`), ``lsm`` (:class:`opsolve.models.lsm.LSM`), and for
trajectories ``spacetime_fno`` (:class:`opsolve.models.sfno.SpaceTimeFNO`), ``fno3d``
(:class:`opsolve.models.fno3d.FNO3dBaseline`), ``lsm_trajectory`` and
``fno_trajectory`` (:mod:`opsolve.models.rollout`, frame-by-frame rollouts) and ``observer``
(:class:`opsolve.models.observer.SemilinearObserver`, wrapped in
:class:`opsolve.models.wrapper.ObserverOperator`: it takes measurements and masks, not
frames); models are imported when first built. Trajectory models map ``(batch, T_in, x, y)``
to ``(batch, T_out, x, y)`` and take ``input_steps`` / ``output_steps`` (filled in from the
data) instead of channel counts. Add more with
:func:`register_model`.

The layers and models raise ``ValueError`` / ``TypeError`` for bad arguments or shapes;
:func:`build_model` and :func:`check_fits` turn them into one-line user errors naming the
model.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from datagen.core.errors import UserError
from opsolve.models.wrapper import (
    NormalizedOperator,
    ObserverOperator,
    TrajectoryOperator,
    channel_stats,
)

Builder = Callable[..., torch.nn.Module]

_REGISTRY: dict[str, Builder] = {}
_TRAJECTORY_MODELS: set[str] = set()  # models that map frames to frames (trajectory data)


def register_model(
    name: str, builder: Builder, *, trajectories: bool = False, replace: bool = False
) -> None:
    """Make ``builder`` available as ``model.name: <name>`` in training configs.

    ``trajectories``: the model maps ``(batch, T_in, x, y)`` to ``(batch, T_out, x, y)`` and is
    trained on trajectory data; otherwise it maps steady fields (channels to channels).
    """
    if not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"model name {name!r} must be letters, digits, '-' or '_'")
    if name in _REGISTRY and not replace:
        raise ValueError(f"model {name!r} is already registered (pass replace=True)")
    _REGISTRY[name] = builder
    _TRAJECTORY_MODELS.discard(name)
    if trajectories:
        _TRAJECTORY_MODELS.add(name)


def registered_models() -> list[str]:
    """Names that :func:`build_model` accepts, sorted."""
    return sorted(_REGISTRY)


def check_model_fits_data(name: str, kind: str, root: str | Path) -> None:
    """A UserError when a steady model meets trajectory data or the other way round."""
    check_model_name(name)
    trajectory_model = name in _TRAJECTORY_MODELS
    if (kind == "trajectory") == trajectory_model:
        return
    steady = sorted(set(_REGISTRY) - _TRAJECTORY_MODELS)
    if kind == "trajectory":
        raise UserError(
            f"data.root: {root} holds trajectories, but model {name!r} maps steady fields; "
            f"models for trajectories: {', '.join(sorted(_TRAJECTORY_MODELS))}"
        )
    raise UserError(
        f"data.root: {root} holds steady samples, but model {name!r} maps trajectories; "
        f"models for steady data: {', '.join(steady)}"
    )


def check_model_name(name: str) -> None:
    """A UserError naming the registered models if ``name`` is not one of them."""
    if name not in _REGISTRY:
        raise UserError(
            f"model.name: unknown model {name!r}; registered: {', '.join(registered_models())}"
        )


def build_model(name: str, params: dict[str, Any]) -> torch.nn.Module:
    """Build a registered model; bad parameters become a one-line UserError."""
    check_model_name(name)
    try:
        model = _REGISTRY[name](**params)
    except UserError:
        raise
    except (TypeError, ValueError, AssertionError, KeyError, RuntimeError) as err:
        message = " ".join(str(err).split()) or type(err).__name__
        raise UserError(f"model.params: cannot build {name!r}: {message}") from None
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"the builder of {name!r} returned {type(model).__name__}, not a Module")
    return model


def model_config(name: str, model: torch.nn.Module, params: dict[str, Any]) -> dict[str, Any]:
    """What rebuilds ``model``: its own ``config`` dict when it has one, else ``params``."""
    config = getattr(model, "config", None)
    return dict(config) if isinstance(config, dict) else dict(params)


def _as_modes(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _fno(**params: Any) -> torch.nn.Module:
    """``neuralop.models.FNO``; ``n_modes`` counts both signs (Li et al.'s modes=12 is 24)."""
    from neuralop.models import FNO

    params["n_modes"] = _as_modes(params.get("n_modes"))
    return FNO(**params)


def _tfno(**params: Any) -> torch.nn.Module:
    """``neuralop.models.TFNO``: FNO with Tucker-factorized spectral weights (``rank``)."""
    from neuralop.models import TFNO

    params["n_modes"] = _as_modes(params.get("n_modes"))
    return TFNO(**params)


def _mgno(**params: Any) -> torch.nn.Module:
    """:class:`opsolve.models.mgno.MgNO`, built from its config dict."""
    try:
        from opsolve.models.mgno import MgNO
    except ImportError as err:
        raise UserError(f"model.name: 'mgno' is not available ({err})") from None
    return MgNO.from_config(params)


def _spacetime_fno(**params: Any) -> torch.nn.Module:
    """:class:`opsolve.models.sfno.SpaceTimeFNO` (SFNO of the Spectral-Refiner paper; not
    neuraloperator's spherical SFNO)."""
    from opsolve.models.sfno import SpaceTimeFNO

    return SpaceTimeFNO.from_config(params)


def _fno3d(**params: Any) -> torch.nn.Module:
    """:class:`opsolve.models.fno3d.FNO3dBaseline`: neuraloperator's FNO over (x, y, t)."""
    from opsolve.models.fno3d import FNO3dBaseline

    params["modes"] = _as_modes(params.get("modes", (8, 8, 8)))
    return FNO3dBaseline(**params)


register_model("fno", _fno)
register_model("tfno", _tfno)
register_model("mgno", _mgno)
register_model("spacetime_fno", _spacetime_fno, trajectories=True)
register_model("fno3d", _fno3d, trajectories=True)


def _observer(**params: Any) -> torch.nn.Module:
    """:class:`opsolve.models.observer.SemilinearObserver` (Singh et al., ICLR 2024): predicts
    and assimilates sparse noisy observations of 1-D or 2-D trajectories."""
    from opsolve.models.observer import SemilinearObserver

    params["modes"] = _as_modes(params.get("modes", (16,)))
    return SemilinearObserver.from_config(params)


register_model("observer", _observer, trajectories=True)


def _lsm(**params: Any) -> torch.nn.Module:
    """:class:`opsolve.models.lsm.LSM`, the Latent Spectral Model (Wu et al., ICML 2023)."""
    from opsolve.models.lsm import LSM

    return LSM.from_config(params)


def _rollout(kind: str) -> Builder:
    def build(**params: Any) -> torch.nn.Module:
        from opsolve.models import rollout

        return getattr(rollout, f"{kind}_rollout")(**params)

    build.__doc__ = f":func:`opsolve.models.rollout.{kind}_rollout`: rolled out frame by frame."
    return build


register_model("lsm", _lsm)
register_model("lsm_trajectory", _rollout("lsm"), trajectories=True)
register_model("fno_trajectory", _rollout("fno"), trajectories=True)


def build_operator(
    name: str,
    params: dict[str, Any],
    stats: dict[str, Any] | None,
    data_info: dict[str, Any],
    normalize: tuple[bool, bool],
) -> NormalizedOperator:
    """Registry model wrapped between input normalization and output decoding."""
    model = build_model(name, params)
    wrapper = TrajectoryOperator if data_info.get("kind") == "trajectory" else NormalizedOperator
    if getattr(model, "assimilates", False):
        wrapper = ObserverOperator
    return wrapper(
        model,
        channel_stats(stats, data_info["inputs"], normalize[0]),
        channel_stats(stats, data_info["outputs"], normalize[1]),
    )


def check_fits(
    op: NormalizedOperator, sample: dict[str, torch.Tensor], name: str, device: torch.device
) -> None:
    """One forward pass on one sample: the output must have the target's shape.

    Run it on the device the model will train on (after ``op.to(device)``): neuraloperator's
    grid embedding caches its grid on the device of its first call.
    """
    x, y = sample["x"][None].to(device), sample["y"][None]
    check_modes_fit(op.model, name, tuple(x.shape[2:]))
    observer = isinstance(op, ObserverOperator)
    if observer:  # it assimilates the whole window, here observed everywhere
        x = y = torch.cat([x, y.to(device)], dim=1)
    was = op.training
    try:
        op.eval()
        with torch.no_grad():
            out = op(x, torch.ones_like(x, dtype=torch.bool))[0] if observer else op(x)
    except (RuntimeError, ValueError, IndexError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"model {name!r} does not fit the data (input {tuple(x.shape[1:])}): {first}"
        ) from None
    finally:
        op.train(was)
    if tuple(out.shape) != tuple(y.shape):
        raise UserError(
            f"model {name!r} maps input {tuple(x.shape[1:])} to {tuple(out.shape[1:])}, "
            f"but the target is {tuple(y.shape[1:])}"
        )


def check_modes_fit(model: torch.nn.Module, name: str, grid: tuple[int, ...]) -> None:
    """neuraloperator's FNO / TFNO keep ``n_modes[i]`` Fourier modes along axis ``i`` (both
    signs); more than the grid has are never used, only stored. A UserError names the limit."""
    modes = getattr(model, "n_modes", None)
    if not isinstance(modes, list | tuple) or len(modes) != len(grid):
        return
    if any(int(m) > n for m, n in zip(modes, grid, strict=True)):
        raise UserError(
            f"model.params.n_modes {list(modes)} does not fit the {' x '.join(map(str, grid))} "
            f"grid of the data: at most {list(grid)} (n_modes counts both signs)"
        )


def load_state(module: torch.nn.Module, state: dict[str, Any], source: Path) -> None:
    """Strict ``load_state_dict``; a mismatch (another model version) is a UserError."""
    try:
        module.load_state_dict(state)
    except RuntimeError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else lines[0] if lines else "mismatch"
        raise UserError(f"{source}: the stored weights do not fit the model ({detail})") from None


def count_parameters(model: torch.nn.Module) -> int:
    """Real parameters (a complex one counts twice)."""
    return sum(p.numel() * (2 if p.is_complex() else 1) for p in model.parameters())
