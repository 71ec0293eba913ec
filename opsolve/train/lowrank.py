"""Low-rank gradient training: neuraloperator's Tensor-GaLore AdamW, made to resume exactly.

GaLore (Zhao et al., ICML 2024) keeps Adam's moments in a low-rank subspace of each weight's
gradient; Tensor-GaLore (George et al., 2025) takes the subspace from a Tucker decomposition of
the gradient tensor, so convolution kernels and spectral weights keep their tensor structure.
The optimizer is ``neuralop.training.AdamW`` (decoupled weight decay); this module chooses
which weights are projected and how far, and changes four things of the library's version:

* **The subspace is refreshed** every ``update_gap`` steps, as GaLore prescribes; the
  library's projector computes it once, at the first step, and never again.
* **Ranks never exceed what an axis holds.** ``rank`` is a fraction of each axis of a
  weight; axes of at most 4 entries (the taps of a 3x3 kernel, the real / imaginary pair of a
  spectral weight) are kept whole, and no rank exceeds the product of the others. tensorly
  pads a Tucker factor with random columns when a rank exceeds the singular vectors an
  unfolding has, which would make runs depend on the global random state.
* **The factors come from a truncated HOSVD** (:func:`hosvd_factors`), tens of times faster on
  a CPU than tensorly's iterated Tucker decomposition (:class:`RefreshedProjector`).
* **Checkpoints hold tensors only.** The projector objects in the optimizer state become their
  Tucker factors in ``state_dict()`` and are rebuilt by ``load_state_dict()``, so the state
  loads with ``torch.load(weights_only=True)`` and a resumed run continues bit for bit.

Weights of two or more axes are projected; biases and norm scales are updated by plain AdamW.

Optionally (``residual=True``) the part of the gradient outside the subspace is applied too,
as Fira does (Chen et al., "Fira: can we achieve full-rank training of LLMs under low-rank
constraint?", 2024): scaled by ``phi = ||psi(R)|| / ||R||``, how much Adam's normalization
``psi`` enlarges the projected gradient ``R`` this step, so the whole update is full rank while
the moments stay low rank; its norm may grow by at most 1.01x per step (Fira's limiter against
spikes). One scalar per weight is all it adds to the state. Fira scales each column of a
matrix; a Tucker core has no columns, so ``phi`` is one number per weight here.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import tensorly as tl
import torch
from neuralop.training.adamw import AdamW as NeuralopAdamW
from neuralop.training.tensor_galore_projector import TensorGaLoreProjector

KEPT_AXIS = 4  # axes of at most this many entries are not compressed


def tucker_ranks(shape: tuple[int, ...], rank: float, leading_axes: int | None = None) -> list[int]:
    """Per-axis Tucker ranks: ``ceil(rank * n)`` on axes longer than 4, ``n`` on the others,
    then each capped by the product of the other ranks (a mode's unfolding has no more
    singular vectors than that: a ``(1, 128)`` weight has rank ``[1, 1]``). ``leading_axes``:
    compress only that many leading axes (2: the output and input channels of linear,
    convolution and spectral weights), keeping the others (kernel taps, Fourier modes) whole."""
    ranks = [
        n
        if n <= KEPT_AXIS or (leading_axes is not None and axis >= leading_axes)
        else min(n, max(1, math.ceil(rank * n)))
        for axis, n in enumerate(shape)
    ]
    changed = True
    while changed:
        changed = False
        for i, r in enumerate(ranks):
            cap = math.prod(ranks[:i] + ranks[i + 1 :])
            if r > cap:
                ranks[i], changed = cap, True
    return ranks


def hosvd_factors(tensor: torch.Tensor, ranks: list[int]) -> list[torch.Tensor]:
    """Truncated higher-order SVD: per axis ``i`` the ``ranks[i]`` leading left singular
    vectors of the mode-``i`` unfolding, ``(n_i, r_i)`` with orthonormal columns, from the
    eigenvectors of its ``(n_i, n_i)`` Gram matrix (largest first; complex tensors too)."""
    factors = []
    for axis, rank in enumerate(ranks):
        unfolding = tensor.movedim(axis, 0).reshape(tensor.shape[axis], -1)
        gram = unfolding @ unfolding.conj().T
        _values, vectors = torch.linalg.eigh(gram)  # ascending eigenvalues
        factors.append(vectors[:, -rank:].flip(-1).contiguous())
    return factors


class RefreshedProjector(TensorGaLoreProjector):
    """neuraloperator's Tucker projector with its subspace recomputed every ``update_gap``
    steps, fixed per-axis ``ranks``, and the factors by truncated HOSVD
    (:func:`hosvd_factors`) instead of tensorly's ``tucker`` (HOOI from an SVD start): on a
    ``(128, 256, 3, 3)`` weight of LSM at ranks ``[64, 128, 3, 3]`` the HOSVD took 1.6 s and
    ``tucker`` 36 s on the same (busy) 2-core CPU, and ``tucker`` took 153 s on the largest,
    ``(512, 1024, 3, 3)``, once per refresh. GaLore itself takes a truncated SVD of the
    gradient, which the HOSVD is on every axis; the library's projection and projection back
    (``transform`` / ``inverse_transform``) are used as they are."""

    preset = False  # the subspace of this step was set by the optimizer (rotated moments)

    def project(self, full_rank_grad: torch.Tensor, iter: int) -> torch.Tensor:  # noqa: A002
        if self.proj_tensor is None or (iter % self.update_proj_gap == 0 and not self.preset):
            self.proj_tensor = self.get_projection_tensor(full_rank_grad, self.rank)
        self.preset = False
        self.proj_tensor = [f.to(full_rank_grad.device) for f in self.proj_tensor]
        return self.transform(self.proj_tensor, full_rank_grad)

    def get_projection_tensor(self, weights: torch.Tensor, rank: list[int]) -> list[torch.Tensor]:
        return hosvd_factors(weights.detach(), list(rank))


class LowRankAdamW(NeuralopAdamW):
    """AdamW with Tensor-GaLore projection of every weight of >= 2 axes.

    Args:
        params: the model's parameters.
        lr, weight_decay: as AdamW (decoupled decay).
        rank: fraction of each axis kept (axes of <= 4 entries whole), in (0, 1].
        update_gap: optimizer steps between recomputations of the subspace.
        scale: factor on the projected-back update (GaLore's ``alpha``).
        leading_axes: compress only this many leading axes of each weight (None: all).
        rotate: when a subspace is recomputed, carry the moments into it
            (:func:`rotate_moments`) instead of keeping their coordinates in the old one, as
            the library (and GaLore) does.
        residual: also apply the gradient's part outside the subspace, scaled as Fira does
            (module docstring; :func:`residual_update`).
    """

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        rank: float = 0.5,
        update_gap: int = 50,
        scale: float = 1.0,
        leading_axes: int | None = None,
        rotate: bool = False,
        residual: bool = False,
    ) -> None:
        if not 0.0 < rank <= 1.0:
            raise ValueError(f"rank must be in (0, 1], got {rank}")
        if leading_axes is not None and leading_axes < 1:
            raise ValueError(f"leading_axes must be at least 1, got {leading_axes}")
        self.leading_axes = leading_axes
        self.rotate = rotate
        self.residual = residual
        params = [p for p in params if p.requires_grad]
        projected = [p for p in params if p.dim() >= 2]
        plain = [p for p in params if p.dim() < 2]
        if not plain:  # the library needs a first (plain) group
            plain, projected = projected[:1], projected[1:]
        tl.set_backend("pytorch")
        super().__init__(
            plain,
            lr=lr,
            weight_decay=weight_decay,
            galore_params=projected or None,
            galore_rank=rank,
            galore_update_proj_gap=update_gap,
            galore_scale=scale,
            warm_restart=False,
        )

    def _projector(self, shape: tuple[int, ...]) -> RefreshedProjector:
        return RefreshedProjector(
            rank=tucker_ranks(shape, float(self.galore_rank), self.leading_axes),
            update_proj_gap=self.galore_update_proj_gap,
            scale=self.galore_scale,
            warm_restart=False,
        )

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        for group in self.param_groups:
            if not group.get("galore", False):
                continue
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "projector" not in state:
                    state["projector"] = self._projector(tuple(p.shape))
                elif (
                    self.rotate
                    and "exp_avg" in state
                    and state["step"] % self.galore_update_proj_gap == 0
                ):
                    projector = state["projector"]
                    new = projector.get_projection_tensor(p.grad, projector.rank)
                    rotate_moments(state, projector.proj_tensor, new)
                    projector.proj_tensor, projector.preset = new, True
        loss = super().step(closure)
        if self.residual:
            for group in self.param_groups:
                if group.get("galore", False):
                    for p in group["params"]:
                        if p.grad is not None:
                            self._apply_residual(p, group)
        return loss

    def _apply_residual(self, p: torch.nn.Parameter, group: dict[str, Any]) -> None:
        """After the library's step: ``p -= step_size * scale * S`` (:func:`residual_update`),
        ``step_size`` the library's (learning rate with Adam's bias corrections)."""
        state = self.state[p]
        projector = state["projector"]
        normalized = state["exp_avg"] / (state["exp_avg_sq"].sqrt() + group["eps"])
        update, state["residual_norm"] = residual_update(
            p.grad,
            projector.proj_tensor,
            normalized,
            state.get("residual_norm"),
            projector.transform,
            projector.inverse_transform,
        )
        step_size = group["lr"]
        if group["correct_bias"]:
            beta1, beta2 = group["betas"]
            step = state["step"]
            step_size *= math.sqrt(1.0 - beta2**step) / (1.0 - beta1**step)
        p.add_(update, alpha=-step_size * projector.scale)

    def state_dict(self) -> dict[str, Any]:
        """The state with each projector replaced by its list of Tucker factors."""
        state = super().state_dict()
        state["state"] = {
            key: {
                **entry,
                "projector": [f.clone() for f in entry["projector"].proj_tensor],
            }
            if isinstance(entry.get("projector"), TensorGaLoreProjector)
            else entry
            for key, entry in state["state"].items()
        }
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a :meth:`state_dict`, rebuilding the projectors from their factors."""
        super().load_state_dict(state_dict)
        for p, entry in self.state.items():
            factors = entry.get("projector")
            if isinstance(factors, list | tuple):
                projector = self._projector(tuple(p.shape))
                projector.proj_tensor = [f.to(p.device) for f in factors]
                entry["projector"] = projector


def mode_products(tensor: torch.Tensor, matrices: list[torch.Tensor]) -> torch.Tensor:
    """``tensor x_0 M_0 x_1 M_1 ...``: axis ``i`` of ``tensor`` (length ``m_i``) becomes
    ``M_i @`` it, ``M_i`` of shape ``(r_i, m_i)``."""
    for axis, matrix in enumerate(matrices):
        moved = torch.tensordot(matrix.to(tensor.dtype), tensor.movedim(axis, 0), dims=1)
        tensor = moved.movedim(0, axis)
    return tensor


def rotate_moments(state: dict[str, Any], old: list[torch.Tensor], new: list[torch.Tensor]) -> None:
    """Carry Adam's moments from the Tucker subspace ``old`` to ``new`` (factors ``(n_i, r_i)``
    with orthonormal columns): the first moment by ``R_i = new_i^H old_i`` on each axis, the
    exact change of basis of its part inside both subspaces; the second moment, which has no
    such change of basis, by ``|R_i|^2`` elementwise, which keeps it non-negative and is exact
    when the subspaces agree up to the order and signs of their vectors."""
    rotations = [n.conj().T @ o for n, o in zip(new, old, strict=True)]
    state["exp_avg"] = mode_products(state["exp_avg"], rotations)
    squares = [r.abs().square() for r in rotations]
    state["exp_avg_sq"] = mode_products(state["exp_avg_sq"], squares)


def residual_update(
    grad: torch.Tensor,
    factors: list[torch.Tensor],
    normalized: torch.Tensor,
    previous_norm: torch.Tensor | None,
    transform: Callable[[list[torch.Tensor], torch.Tensor], torch.Tensor],
    inverse_transform: Callable[[list[torch.Tensor], torch.Tensor], torch.Tensor],
    growth: float = 1.01,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fira's update from the gradient outside the subspace: ``S = phi (G - Q(Q^H G))`` with
    ``phi = ||psi(R)|| / ||R||``, ``R = Q^H G`` the projected gradient (Tucker factors ``Q``)
    and ``psi(R)`` = ``normalized``, Adam's normalized low-rank step; if ``||S||`` exceeds
    ``growth`` times the previous step's, it is scaled down to that. Returns ``S`` (the shape of
    ``grad``) and ``||S||`` for the next step's limit. A zero projected gradient gives
    ``phi = 0``: no residual, never a NaN."""
    projected = transform(factors, grad)
    outside = grad - inverse_transform(factors, projected)
    projected_norm = torch.linalg.vector_norm(projected)
    phi = torch.where(
        projected_norm > 0, torch.linalg.vector_norm(normalized) / projected_norm, 0.0
    )
    update = phi * outside
    norm = torch.linalg.vector_norm(update)
    if previous_norm is not None and norm > growth * previous_norm:
        update = update * (growth * previous_norm / norm)
        norm = growth * previous_norm
    return update, norm.detach().clone()


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of every tensor in the optimizer's state (moments, projection factors)."""
    total = 0
    for entry in optimizer.state.values():
        for value in entry.values():
            tensors = value.proj_tensor if isinstance(value, TensorGaLoreProjector) else value
            for t in tensors if isinstance(tensors, list | tuple) else [tensors]:
                if torch.is_tensor(t):
                    total += t.numel() * t.element_size()
    return total
