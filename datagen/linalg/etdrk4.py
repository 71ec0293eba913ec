"""Exponential time differencing RK4 for ``u_t = L u + N(u)`` with ``L`` diagonal.

Cox and Matthews (J. Comput. Phys. 176, 2002), ETDRK4: the stiff linear part is integrated
exactly, the nonlinear part by a fourth-order Runge-Kutta-like combination of four evaluations.
Its coefficients are the phi-functions ``(e^z - 1) / z`` and the like at ``z = h L``, which
cancel catastrophically for small ``|z|``; as Kassam and Trefethen (SIAM J. Sci. Comput. 26,
2005) they are evaluated as means over a circle of radius 1 around each ``z`` (the Cauchy
integral), with ``M = 16`` points on the upper half circle for real ``L`` (the real part of
the mean) and ``2M`` on the whole circle for complex ``L`` (dispersive equations). Everything
is batched: ``L`` may be (K,) for one equation or (B, K) for one per member (a domain length per
trajectory), and the state is (B, K) in whatever basis ``L`` is diagonal in (Fourier modes).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

CONTOUR_POINTS = 16


@dataclass(frozen=True)
class ETDRK4:
    """The coefficients of one step ``h`` for a diagonal ``L`` (all shaped like ``L``).

    ``e``, ``e2``: ``exp(h L)``, ``exp(h L / 2)``; ``q``: ``h phi_1(h L / 2)``; ``f1``, ``f2``,
    ``f3``: the weights of the four nonlinear evaluations (Kassam and Trefethen, eq. 2.5).
    """

    e: torch.Tensor
    e2: torch.Tensor
    q: torch.Tensor
    f1: torch.Tensor
    f2: torch.Tensor
    f3: torch.Tensor

    @classmethod
    def of(cls, linear: torch.Tensor, h: float | torch.Tensor, points: int = CONTOUR_POINTS):
        """Coefficients for ``L`` (``linear``, real or complex, any shape) and step ``h``
        (a float, or a tensor broadcasting against ``L``), computed in double precision."""
        hl = torch.as_tensor(h, dtype=torch.float64, device=linear.device) * linear.to(
            torch.complex128
        )
        if linear.is_complex():  # the whole circle
            angles = 2 * math.pi * (torch.arange(2 * points, dtype=torch.float64) + 0.5)
            roots = torch.exp(1j * angles / (2 * points))
        else:  # the upper half: the real part of the mean is the full mean for real z
            angles = math.pi * (torch.arange(1, points + 1, dtype=torch.float64) - 0.5) / points
            roots = torch.exp(1j * angles)
        lr = hl[..., None] + roots.to(hl.device)
        h_c = torch.as_tensor(h, dtype=torch.float64, device=linear.device).to(torch.complex128)

        def mean(values: torch.Tensor) -> torch.Tensor:
            out = values.mean(dim=-1)
            return out if linear.is_complex() else out.real

        e_lr = torch.exp(lr)
        q = h_c * mean((torch.exp(lr / 2) - 1) / lr)
        f1 = h_c * mean((-4 - lr + e_lr * (4 - 3 * lr + lr**2)) / lr**3)
        f2 = h_c * mean((2 + lr + e_lr * (-2 + lr)) / lr**3)
        f3 = h_c * mean((-4 - 3 * lr - lr**2 + e_lr * (4 - lr)) / lr**3)
        real = (lambda t: t) if linear.is_complex() else (lambda t: t.real)
        return cls(
            e=real(torch.exp(hl)),
            e2=real(torch.exp(hl / 2)),
            q=real(q),
            f1=real(f1),
            f2=real(f2),
            f3=real(f3),
        )

    def to(self, dtype: torch.dtype) -> ETDRK4:
        """The coefficients in ``dtype`` (complex for complex ``L``; a complex ``dtype`` for real
        ``L`` saves the mixed-type products with a complex state)."""
        return ETDRK4(*(getattr(self, k).to(dtype) for k in ("e", "e2", "q", "f1", "f2", "f3")))


def etdrk4_step(
    v: torch.Tensor, c: ETDRK4, nonlinear: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """One ETDRK4 step of ``v' = L v + N(v)``: ``v`` (B, K) -> (B, K); ``nonlinear`` is ``N``
    in the same basis."""
    nv = nonlinear(v)
    e2v = c.e2 * v
    a = torch.addcmul(e2v, c.q, nv)
    na = nonlinear(a)
    b = torch.addcmul(e2v, c.q, na)
    nb = nonlinear(b)
    d = torch.addcmul(c.e2 * a, c.q, torch.sub(nb, nv, alpha=0.5), value=2)
    nd = nonlinear(d)
    out = torch.addcmul(c.e * v, nv, c.f1)
    out.addcmul_(na.add_(nb), c.f2, value=2)
    return out.addcmul_(nd, c.f3)
