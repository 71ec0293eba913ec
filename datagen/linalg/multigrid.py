"""Batched, matrix-free geometric multigrid for 2-D stencil operators (CPU or GPU).

Vertex-centred coarsening of the ``n x n`` interior grid: coarse node ``J`` sits on fine node
``2J + 1`` (``n_c = n // 2``), prolongation ``P`` with zero Dirichlet values outside (by default
operator-dependent, :class:`OperatorInterpolation`; or bilinear), restriction ``R = P^T``, and
Galerkin coarse operators ``A_c = R A P``. With a 3 x 3 footprint of ``P`` per coarse node, the
Galerkin operator of a 5- or 9-point operator is a 9-point stencil. With operator-dependent
interpolation it is summed term by term from the fine stencil's non-zero offsets split by parity
(:func:`galerkin_stencil`); with bilinear transfers it is probed, ``R A P`` applied to the nine
3 x 3-periodic indicator vectors (:func:`galerkin`); neither assembles a matrix. Galerkin
coarse operators and operator-dependent interpolation keep the V-cycle robust for the jumping
coefficients of the piecewise-constant Darcy data, where averaged coarse coefficients fail and
bilinear interpolation converges more slowly.

The V-cycle (damped-Jacobi pre- and post-smoothing, a dense Cholesky solve on the coarsest grid)
is symmetric positive definite for SPD ``A``, so it can precondition CG.

A second coarsening, ``"vertex"``, serves grids whose boundary nodes are unknowns (Robin or
impedance boundaries, e.g. :mod:`datagen.problems.helmholtz.physics`): an odd number ``n`` of nodes
per side, coarse node ``J`` on fine node ``2J`` (``n_c = (n + 1) / 2``, both ends kept), the same
bilinear weights, nothing outside the grid. Complex operators (e.g. a complex-shifted Laplacian) use
an LU factorisation on the coarsest grid instead of Cholesky.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from datagen.linalg import fused

Operator = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class StencilOperator:
    """``(A u)_ij = sum_{d} S[d, i, j] u_{(i, j) + d}`` over the 3 x 3 offsets ``d``.

    ``stencil`` is (B, 3, 3, n, n): entry ``[b, 1 + di, 1 + dj, i, j]`` couples node (i, j) to
    (i + di, j + dj); values outside the grid are zero (Dirichlet).
    """

    stencil: torch.Tensor

    def __call__(self, u: torch.Tensor) -> torch.Tensor:
        """``A u`` for ``u`` (B, n0, n1): one fused pass on a CPU (:mod:`datagen.linalg.fused`),
        else the centre product and one in-place multiply-add per offset on the views of nodes
        whose neighbour is inside (no padded copy)."""
        out = fused.stencil9(fused.APPLY, u, None, None, self.stencil)
        return out if out is not None else self._add_neighbours(self.stencil[:, 1, 1] * u, u, 1)

    def residual(self, f: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """``f - A u`` (B, n0, n1) in the passes of one application (no separate subtraction)."""
        out = fused.stencil9(fused.RESIDUAL, u, f, None, self.stencil)
        if out is not None:
            return out
        return self._add_neighbours(torch.addcmul(f, self.stencil[:, 1, 1], u, value=-1), u, -1)

    def sweep(self, f: torch.Tensor, u: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """One damped-Jacobi sweep ``u + weight (f - A u)``: a new (B, n0, n1) tensor."""
        out = fused.stencil9(fused.SWEEP, u, f, weight, self.stencil)
        return out if out is not None else torch.addcmul(u, weight, self.residual(f, u))

    def _add_neighbours(self, out: torch.Tensor, u: torch.Tensor, sign: int) -> torch.Tensor:
        """``out += sign * (off-centre part of A) u`` in place; returns ``out``."""
        n0, n1 = u.shape[-2:]
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                if di == 0 and dj == 0:
                    continue
                i0, i1, j0, j1 = max(0, -di), n0 - max(0, di), max(0, -dj), n1 - max(0, dj)
                out[..., i0:i1, j0:j1].addcmul_(
                    self.stencil[:, 1 + di, 1 + dj, i0:i1, j0:j1],
                    u[..., i0 + di : i1 + di, j0 + dj : j1 + dj],
                    value=sign,
                )
        return out

    def diagonal(self) -> torch.Tensor:
        return self.stencil[:, 1, 1]

    def subset(self, index: torch.Tensor) -> StencilOperator:
        return StencilOperator(self.stencil[index])

    def to(self, dtype: torch.dtype) -> StencilOperator:
        return StencilOperator(self.stencil.to(dtype))


def _along(transfer, x: torch.Tensor, axis: int, *args) -> torch.Tensor:
    """Apply a 1-D transfer acting on the last axis to ``axis`` of ``x``."""
    return transfer(x.movedim(axis, -1), *args).movedim(-1, axis)


def _interleave(even: torch.Tensor, odd: torch.Tensor) -> torch.Tensor:
    """``out[2i] = even[i]``, ``out[2i + 1] = odd[i]`` along the last axis (equal lengths)."""
    return torch.stack([even, odd], dim=-1).flatten(-2)


def _prolong_1d(c: torch.Tensor, n: int) -> torch.Tensor:
    """Interior coarsening, 1-D: fine ``2J + 1`` = c_J, fine ``2J`` = (c_{J-1} + c_J) / 2."""
    padded = torch.nn.functional.pad(c, (1, 1))
    mid = 0.5 * (padded[..., :-1] + padded[..., 1:])  # fine 0, 2, ..., 2 n_c
    odd = torch.nn.functional.pad(c, (0, 1))  # fine 1, 3, ..., 2 n_c + 1 (last is outside)
    return _interleave(mid, odd)[..., :n]


def _restrict_1d(f: torch.Tensor) -> torch.Tensor:
    """Transpose of :func:`_prolong_1d`: ``c_J = f_{2J+1} + (f_{2J} + f_{2J+2}) / 2``."""
    nc = f.shape[-1] // 2
    padded = torch.nn.functional.pad(f, (0, 2 * nc + 1 - f.shape[-1]))
    return padded[..., 1::2] + 0.5 * (padded[..., 0:-1:2] + padded[..., 2::2])


def _prolong_vertex_1d(c: torch.Tensor, n: int) -> torch.Tensor:
    """Vertex coarsening, 1-D: fine ``2J`` = c_J, fine ``2J + 1`` = (c_J + c_{J+1}) / 2."""
    odd = torch.nn.functional.pad(0.5 * (c[..., :-1] + c[..., 1:]), (0, 1))
    return _interleave(c, odd)[..., :n]


def _restrict_vertex_1d(f: torch.Tensor) -> torch.Tensor:
    """Transpose of :func:`_prolong_vertex_1d`: ``c_J = f_{2J} + (f_{2J-1} + f_{2J+1}) / 2``."""
    padded = torch.nn.functional.pad(f, (1, 1))
    return padded[..., 1:-1:2] + 0.5 * (padded[..., 0:-2:2] + padded[..., 2::2])


def prolong(coarse: torch.Tensor, fine_shape: tuple[int, int]) -> torch.Tensor:
    """Bilinear interpolation (B, n_c0, n_c1) -> (B, n0, n1), coarse J at fine 2J + 1.

    Zero values outside the grid (Dirichlet); for even ``n`` the node that would lie on the
    boundary is cut. Separable: the 1-D rule along each axis (strided slicing, no convolution).
    """
    out = _along(_prolong_1d, coarse, -2, fine_shape[0])
    return _along(_prolong_1d, out, -1, fine_shape[1])


def restrict(fine: torch.Tensor) -> torch.Tensor:
    """The transpose of :func:`prolong`: (B, n0, n1) -> (B, n0 // 2, n1 // 2)."""
    return _along(_restrict_1d, _along(_restrict_1d, fine, -2), -1)


def prolong_vertex(coarse: torch.Tensor, fine_shape: tuple[int, int]) -> torch.Tensor:
    """Bilinear interpolation (B, n_c0, n_c1) -> (B, 2 n_c0 - 1, 2 n_c1 - 1), coarse J at 2J."""
    out = _along(_prolong_vertex_1d, coarse, -2, fine_shape[0])
    return _along(_prolong_vertex_1d, out, -1, fine_shape[1])


def restrict_vertex(fine: torch.Tensor) -> torch.Tensor:
    """The transpose of :func:`prolong_vertex`: (B, n0, n1) -> (B, (n0 + 1) / 2, (n1 + 1) / 2)."""
    return _along(_restrict_vertex_1d, _along(_restrict_vertex_1d, fine, -2), -1)


def coarse_shape(shape: tuple[int, int], coarsening: str) -> tuple[int, int]:
    """The coarse grid of ``shape`` under ``coarsening`` ("interior" or "vertex")."""
    if coarsening == "interior":
        return shape[0] // 2, shape[1] // 2
    if coarsening == "vertex":
        return (shape[0] + 1) // 2, (shape[1] + 1) // 2
    raise ValueError(f"coarsening must be 'interior' or 'vertex', got {coarsening!r}")


TRANSFERS = {"interior": (prolong, restrict), "vertex": (prolong_vertex, restrict_vertex)}


def probe_stencil(
    apply: Operator, batch: int, shape: tuple[int, int], like: torch.Tensor
) -> torch.Tensor:
    """The (B, 3, 3, n0, n1) stencil of an operator with at most 9-point coupling on ``shape``.

    Exact by probing: nine batched applications to the 3 x 3-periodic indicator vectors (the
    responses of different nodes to one probe never overlap), no matrix assembly.
    """
    n0, n1 = shape
    stencil = like.new_zeros((batch, 3, 3, n0, n1))
    for c0 in range(3):
        for c1 in range(3):
            probe = like.new_zeros((n0, n1))
            probe[c0::3, c1::3] = 1
            response = apply(probe.expand(batch, n0, n1))
            for di in (-1, 0, 1):
                for dj in (-1, 0, 1):
                    # nodes whose neighbour at (di, dj) is probed: i = c0 - di (mod 3)
                    i0, j0 = (c0 - di) % 3, (c1 - dj) % 3
                    stencil[:, di + 1, dj + 1, i0::3, j0::3] = response[:, i0::3, j0::3]
    return stencil


Entries = dict[tuple[int, int], torch.Tensor]
"""A stencil by offset: ``{(di, dj): (B, n0, n1)}`` for its non-zero offsets only (the
coupling of node (i, j) to (i + di, j + dj)); an absent offset is zero."""


def stencil_entries(stencil: torch.Tensor) -> Entries:
    """The non-zero offsets of a (B, 3, 3, n0, n1) stencil (:class:`StencilOperator`
    layout) as views: an offset that is zero for every node of every member is left out (the
    four corners of a 5-point stencil), so the set-up spends nothing on it."""
    return {
        (di, dj): stencil[:, 1 + di, 1 + dj]
        for di in (-1, 0, 1)
        for dj in (-1, 0, 1)
        if bool(stencil[:, 1 + di, 1 + dj].any())
    }


def entries_of(
    operator: Operator, batch: int, shape: tuple[int, int], like: torch.Tensor
) -> Entries:
    """The stencil of ``operator`` by offset: its own ``stencil_entries()`` (e.g.
    :class:`datagen.problems.darcy.physics.DarcyOperator`'s five), else from its ``stencil``
    (a tensor, as of :class:`StencilOperator`, or a method), else by :func:`probe_stencil`."""
    own = getattr(operator, "stencil_entries", None)
    if own is not None:
        return own()
    stencil = getattr(operator, "stencil", None)
    if stencil is None:
        stencil = probe_stencil(operator, batch, shape, like)
    return stencil_entries(stencil() if callable(stencil) else stencil)


def galerkin(
    apply: Operator,
    batch: int,
    fine_shape: tuple[int, int],
    like: torch.Tensor,
    coarsening: str = "interior",
    transfers: tuple[Callable, Callable] | None = None,
) -> StencilOperator:
    """The 9-point stencil of ``R A P`` on the coarse grid, by probing: StencilOperator.

    ``transfers``: ``(prolong(coarse, fine_shape), restrict(fine))``; default the bilinear
    pair of ``coarsening``. Any ``P`` with a 3 x 3 footprint per coarse node keeps ``R A P``
    9-point for a 9-point ``A``.
    """
    prolong_, restrict_ = transfers or TRANSFERS[coarsening]
    coarse = coarse_shape(fine_shape, coarsening)

    def triple(c: torch.Tensor) -> torch.Tensor:
        return restrict_(apply(prolong_(c, fine_shape)))

    return StencilOperator(probe_stencil(triple, batch, coarse, like))


def footprint_planes(entries: Entries, coarse: tuple[int, int]) -> Entries:
    """The fine stencil split by parity, per offset: ``{(di, dj): (B, 2, 2, n_c0 + 1, n_c1 +
    1)}``, fine node ``(2 I + r0, 2 J + r1)`` at ``[..., r0, r1, I, J]``; outside the grid the
    identity row (no coupling). One copy, after which every footprint position of every coarse
    node (:func:`at_footprint`) is a view with unit inner stride, where strided slices of the
    fine array would be read element by element. ``entries``: :func:`entries_of`."""
    nc0, nc1 = coarse
    planes = {}
    for offset, entry in entries.items():
        n0, n1 = entry.shape[-2:]
        plane = entry.new_empty((entry.shape[0], 2, 2, nc0 + 1, nc1 + 1))
        for r0 in (0, 1):
            for r1 in (0, 1):
                m0, m1 = (n0 - r0 + 1) // 2, (n1 - r1 + 1) // 2  # fine nodes of this parity
                plane[:, r0, r1, :m0, :m1] = entry[..., r0::2, r1::2]
                outside = 1 if offset == (0, 0) else 0
                plane[:, r0, r1, m0:] = outside
                plane[:, r0, r1, :m0, m1:] = outside
        planes[offset] = plane
    return planes


def at_footprint(planes: torch.Tensor, a: int, b: int) -> torch.Tensor:
    """``planes`` (..., 2, 2, n_c0 + 1, n_c1 + 1) at the fine nodes ``(2 I + a, 2 J + b)`` of
    every coarse node ``(I, J)``, ``a, b`` in {0, 1, 2}: a view (..., n_c0, n_c1)."""
    nc0, nc1 = planes.shape[-2] - 1, planes.shape[-1] - 1
    return planes[..., a % 2, b % 2, a // 2 : a // 2 + nc0, b // 2 : b // 2 + nc1]


def _coarse_offsets(e: int) -> tuple[tuple[int, int], ...]:
    """Per axis, the ``(coarse offset, footprint position)`` pairs ``(D, b)`` with ``e = 2 D + b``,
    ``b`` in {-1, 0, 1}: the coarse neighbours whose footprint holds the fine node ``e`` away
    from a coarse node's own fine node."""
    return tuple((d, e - 2 * d) for d in (-1, 0, 1) if abs(e - 2 * d) <= 1)


def galerkin_stencil(planes: Entries, weights: torch.Tensor) -> torch.Tensor:
    """The 9-point stencil (B, 3, 3, n_c0, n_c1) of ``P^T A P``, computed term by term.

    ``planes`` is ``A`` split by parity (:func:`footprint_planes`); ``weights``
    (B, 3, 3, n_c0, n_c1) is ``P`` for interior coarsening (:class:`OperatorInterpolation`
    layout: coarse ``I`` puts ``weights[1 + a, I]`` on fine ``2 I + 1 + a``). Entry ``(I, I + D)``
    sums ``P[p, I] A[p, p + d] P[p + d, I + D]`` over the fine nodes ``p = 2 I + 1 + a`` of
    ``I``'s footprint and the offsets ``d`` with ``a + d = 2 D + b`` inside ``I + D``'s
    footprint (13 ``(a, d, b)`` per axis): one product ``P A`` per ``(a, d)`` at the coarse
    resolution and one multiply-add per term, over the offsets ``d`` that ``A`` has (five on
    the 5-point fine level). Equal to :func:`galerkin`'s probing up to rounding (tests), at a
    third to a fifth of its operations.
    """
    batch, (nc0, nc1) = weights.shape[0], weights.shape[-2:]
    out = weights.new_zeros((batch, 3, 3, nc0, nc1))
    for a0 in (-1, 0, 1):
        for a1 in (-1, 0, 1):
            for (d0, d1), plane in planes.items():
                left = weights[:, 1 + a0, 1 + a1] * at_footprint(plane, 1 + a0, 1 + a1)
                for c0, b0 in _coarse_offsets(a0 + d0):
                    for c1, b1 in _coarse_offsets(a1 + d1):
                        i0, i1 = max(0, -c0), nc0 - max(0, c0)
                        j0, j1 = max(0, -c1), nc1 - max(0, c1)
                        out[:, 1 + c0, 1 + c1, i0:i1, j0:j1].addcmul_(
                            left[:, i0:i1, j0:j1],
                            weights[:, 1 + b0, 1 + b1, i0 + c0 : i1 + c0, j0 + c1 : j1 + c1],
                        )
    return out


def _edge_weight(toward: torch.Tensor, other: torch.Tensor, diagonal: torch.Tensor) -> torch.Tensor:
    """Weight of the coarse node on one side of a fine node between two, from the collapsed
    stencil: ``toward / (toward + other)`` (the two collapsed couplings; a diffusion's row sum
    is zero, so this equals ``-toward / diagonal`` away from boundaries), or ``-toward /
    diagonal`` where the other side is a Dirichlet boundary (``other == 0``, the boundary value
    0 entering through the diagonal). Taking the couplings rather than the diagonal keeps a
    boundary along the collapsed axis out of the weights.

    "Zero" is zero to rounding (64 units of the last place of the diagonal): on coarse Galerkin
    levels a collapsed coupling can be a sum of entries that cancel, and the ratio of two such
    rounding residues would be an arbitrary weight."""
    tiny = 64 * torch.finfo(diagonal.dtype).eps * diagonal.abs()
    both = toward + other
    inner = toward / torch.where(both.abs() <= tiny, torch.ones_like(both), both)
    return torch.where(other.abs() <= tiny, -toward / diagonal, inner)


@dataclass
class OperatorInterpolation:
    """Operator-dependent prolongation for interior coarsening, and its transpose.

    Coarse node ``J`` sits on fine node ``2J + 1``; ``weights`` (B, 3, 3, n_c0, n_c1) give the
    value that coarse node ``(I, J)`` puts on fine node ``(2I + 1 + di, 2J + 1 + dj)``.
    The weights follow the operator's stencil (Alcouffe, Brandt, Dendy and Painter, SIAM J. Sci.
    Stat. Comput. 2, 1981; Dendy, "Black box multigrid", J. Comput. Phys. 48, 1982): a fine node
    between two coarse nodes along one axis takes the stencil collapsed across that axis,
    ``u = (c_- u_- + c_+ u_+) / (c_- + c_+)`` (equal to their ``-(c_- u_- + c_+ u_+) / c_0``
    where the collapsed row sums to zero; :func:`_edge_weight` for the boundaries); a fine node
    between four takes its own equation, with the edge nodes around it interpolated first.
    Across a jump of the coefficient the interpolant then keeps the flux continuous, where
    bilinear interpolation keeps the value's slope; for a constant coefficient both coincide
    (tests). The restriction is ``P^T``, so the Galerkin cycle stays symmetric.
    """

    weights: torch.Tensor
    fine_shape: tuple[int, int]

    @classmethod
    def from_stencil(cls, stencil: torch.Tensor) -> OperatorInterpolation:
        """Weights from the fine operator's stencil (B, 3, 3, n0, n1) (:func:`probe_stencil`)."""
        n0, n1 = stencil.shape[-2:]
        planes = footprint_planes(stencil_entries(stencil), (n0 // 2, n1 // 2))
        return cls.from_planes(planes, (n0, n1))

    @classmethod
    def from_planes(cls, planes: Entries, fine_shape: tuple[int, int]) -> OperatorInterpolation:
        """Weights from the fine operator split by parity (:func:`footprint_planes`), on a fine
        grid of ``fine_shape``. Every sum runs over the offsets the operator has, at the one
        parity of the fine nodes that need it."""
        centre = planes[(0, 0)]
        batch, nc0, nc1 = centre.shape[0], centre.shape[-2] - 1, centre.shape[-1] - 1

        def summed(a: int, b: int, terms) -> torch.Tensor:
            """``sum A[offset] * factor`` at footprint position (a, b) over the ``(offset,
            factor)`` terms whose offset is present (factor None: 1)."""
            out = None
            for offset, factor in terms:
                if offset in planes:
                    entry = at_footprint(planes[offset], a, b)
                    term = entry if factor is None else entry * factor
                    out = term if out is None else out + term
            return torch.zeros_like(at_footprint(centre, a, b)) if out is None else out

        def line(axis: int, side: int) -> list:
            """The offsets on ``side`` along ``axis`` (collapsed across the other axis)."""
            return [((side, d) if axis == 0 else (d, side), None) for d in (-1, 0, 1)]

        w = centre.new_empty((batch, 3, 3, nc0, nc1))
        w[:, 1, 1] = 1
        for a, b, axis in ((0, 1, 0), (2, 1, 0), (1, 0, 1), (1, 2, 1)):
            side = 1 - (a, b)[axis]  # toward the coarse node of this fine node's footprint
            w[:, a, b] = _edge_weight(
                summed(a, b, line(axis, side)),
                summed(a, b, line(axis, -side)),
                summed(a, b, line(axis, 0)),
            )
        for a in (0, 2):
            for b in (0, 2):
                # Fine node (2I + a, 2J + b) sees coarse (I, J) at offset (1 - a, 1 - b), and
                # the edge nodes (2I + 1, 2J + b), (2I + a, 2J + 1) at (1 - a, 0), (0, 1 - b).
                da, db = 1 - a, 1 - b
                terms = (((da, db), None), ((da, 0), w[:, 1, b]), ((0, db), w[:, a, 1]))
                w[:, a, b] = -summed(a, b, terms) / at_footprint(centre, a, b)
        return cls(w, fine_shape)

    def prolong(self, coarse: torch.Tensor, fine_shape: tuple[int, int]) -> torch.Tensor:
        """(B, n_c0, n_c1) -> (B, n0, n1): nine in-place multiply-adds on strided views."""
        nc0, nc1 = coarse.shape[-2:]
        fine = coarse.new_zeros((coarse.shape[0], 2 * nc0 + 1, 2 * nc1 + 1))
        for a in range(3):
            for b in range(3):
                window = fine[:, a : a + 2 * nc0 - 1 : 2, b : b + 2 * nc1 - 1 : 2]
                window.addcmul_(self.weights[:, a, b], coarse)
        return fine[:, : fine_shape[0], : fine_shape[1]]

    def add_prolonged(self, fine: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
        """``fine += P coarse`` in place, ``fine`` (B, n0, n1): :meth:`prolong` without its
        zero-filled buffer and the extra pass of adding it. Returns ``fine``."""
        if fused.add_prolonged(fine, coarse, self.weights) is not None:
            return fine
        n0, n1 = fine.shape[-2:]
        for a in range(3):
            m0 = min(coarse.shape[-2], (n0 - a + 1) // 2)  # coarse rows whose node 2I + a is inside
            for b in range(3):
                m1 = min(coarse.shape[-1], (n1 - b + 1) // 2)
                window = fine[:, a : a + 2 * m0 - 1 : 2, b : b + 2 * m1 - 1 : 2]
                window.addcmul_(self.weights[:, a, b, :m0, :m1], coarse[:, :m0, :m1])
        return fine

    def restrict(self, fine: torch.Tensor) -> torch.Tensor:
        """The transpose of :meth:`prolong`: (B, n0, n1) -> (B, n_c0, n_c1). The fine field
        is padded only when a side is even (its last coarse node's footprint leaves the grid)."""
        out = fused.restrict(fine, self.weights)
        if out is not None:
            return out
        nc0, nc1 = self.weights.shape[-2:]
        n0, n1 = fine.shape[-2:]
        padded = fine
        if (n0, n1) != (2 * nc0 + 1, 2 * nc1 + 1):
            padded = torch.nn.functional.pad(fine, (0, 2 * nc1 + 1 - n1, 0, 2 * nc0 + 1 - n0))
        out = self.weights[:, 1, 1] * padded[:, 1 : 2 * nc0 : 2, 1 : 2 * nc1 : 2]
        for a in range(3):
            for b in range(3):
                if a != 1 or b != 1:
                    window = padded[:, a : a + 2 * nc0 - 1 : 2, b : b + 2 * nc1 - 1 : 2]
                    out.addcmul_(self.weights[:, a, b], window)
        return out

    def subset(self, index: torch.Tensor) -> OperatorInterpolation:
        return OperatorInterpolation(self.weights[index], self.fine_shape)

    def to(self, dtype: torch.dtype) -> OperatorInterpolation:
        return OperatorInterpolation(self.weights.to(dtype), self.fine_shape)


def operator_dependent_level(
    entries: Entries, fine_shape: tuple[int, int]
) -> tuple[OperatorInterpolation, torch.Tensor]:
    """One level of the hierarchy with operator-dependent interpolation: ``P`` from ``A`` by
    offset (:func:`entries_of`) and the Galerkin stencil ``P^T A P`` (B, 3, 3, n_c0, n_c1). On a
    CPU by the fused kernels (:mod:`datagen.linalg.fused`, one pass each, no parity split),
    else by :func:`footprint_planes`, :meth:`OperatorInterpolation.from_planes` and
    :func:`galerkin_stencil`; the two agree to rounding (tests)."""
    coarse, planes = coarse_shape(fine_shape, "interior"), None
    weights = fused.interpolation(entries)
    if weights is None:
        planes = footprint_planes(entries, coarse)
        weights = OperatorInterpolation.from_planes(planes, fine_shape).weights
    stencil = fused.galerkin(entries, weights)
    if stencil is None:
        planes = footprint_planes(entries, coarse) if planes is None else planes
        stencil = galerkin_stencil(planes, weights)
    return OperatorInterpolation(weights, fine_shape), stencil


def dense_matrix(apply: Operator, batch: int, shape: tuple[int, int], like: torch.Tensor):
    """(B, m, m) dense matrices of a small operator on (B, *shape), m = shape[0] * shape[1]."""
    m = shape[0] * shape[1]
    eye = torch.eye(m, dtype=like.dtype, device=like.device)
    columns = [
        apply(eye[k].reshape(shape).expand(batch, *shape)).reshape(batch, m) for k in range(m)
    ]
    return torch.stack(columns, dim=-1)


@dataclass
class Level:
    operator: Operator
    inverse_diagonal: torch.Tensor
    shape: tuple[int, int]
    interpolation: OperatorInterpolation | None = None  # None: the bilinear transfers
    weight: torch.Tensor | None = None  # damping * inverse_diagonal, the smoother's weight


def residual(operator, f: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``f - A u``: the operator's own fused ``residual(f, u)`` when it has one."""
    own = getattr(operator, "residual", None)
    return own(f, u) if own is not None else f - operator(u)


def sweep(operator, weight: torch.Tensor, f: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """One damped-Jacobi sweep ``x + weight (f - A x)``: the operator's own fused ``sweep``
    when it has one, else through :func:`residual`."""
    own = getattr(operator, "sweep", None)
    return own(f, x, weight) if own is not None else x.addcmul_(weight, residual(operator, f, x))


def descend(operator, weight, restrict_, f: torch.Tensor, smoothing: int):
    """The way down one level of a V-cycle from a zero guess: damped-Jacobi pre-smoothing
    ``x <- x + weight (f - A x)`` (the first sweep is ``weight f``), then the restricted
    residual. Returns ``(x, R (f - A x))``: (B, n0, n1) and (B, n_c0, n_c1)."""
    x = weight * f
    for _ in range(smoothing - 1):
        x = sweep(operator, weight, f, x)
    return x, restrict_(residual(operator, f, x))


def ascend(operator, weight, add_prolonged, f, x, coarse, smoothing: int) -> torch.Tensor:
    """The way up: ``x += P coarse`` (``add_prolonged(x, coarse)``, in place), then
    ``smoothing`` post-smoothing sweeps: (B, n0, n1)."""
    x = add_prolonged(x, coarse)
    for _ in range(smoothing):
        x = sweep(operator, weight, f, x)
    return x


class Multigrid:
    """Galerkin V-cycle preconditioner for a batch of operators on (B, n0, n1).

    SPD operators (Darcy) give an SPD cycle (Cholesky on the coarsest grid); complex ones
    (a complex-shifted Laplacian) an LU solve there.

    Args:
        operator: the fine operator (callable on (B, n0, n1), with ``diagonal()``).
        batch: B; like: a tensor giving dtype and device.
        coarsest: stop coarsening when a side is at most this (then a dense Cholesky solve).
        smoothing: damped-Jacobi sweeps before and after the coarse correction.
        damping: the Jacobi weight.
        dtype: precision of the cycle (the hierarchy is built in the operator's precision,
            then stored in this one). float32 halves the memory traffic; as a preconditioner
            of float64 CG it costs at most an extra iteration (tests/datagen). Complex
            operators take complex64 or complex128.
        coarsening: "interior" (Dirichlet grids) or "vertex" (all nodes unknowns, odd sides).
        interpolation: "operator" (:class:`OperatorInterpolation`, the default for interior
            coarsening: V-cycle convergence factor 0.13-0.18 on the piecewise-constant Darcy
            data from 33^2 to 257^2, against 0.15-0.27 with bilinear weights;
            ``benchmarks/multigrid_factor.py``) or "bilinear" (the only one for vertex
            coarsening).
        setup_dtype: precision in which the hierarchy (interpolation weights, Galerkin
            operators, coarsest factorization) is built; None: the operator's. The operator
            needs a ``to(dtype)`` method. Building a float32 cycle in float32 halves the set-up's
            memory traffic (2-2.5x faster on a CPU at 257^2) and leaves CG's iterations on the
            Darcy data unchanged (tests/datagen).
    """

    def __init__(
        self,
        operator,
        shape: tuple[int, int],
        batch: int,
        like: torch.Tensor,
        coarsest: int = 7,
        smoothing: int = 2,
        damping: float = 0.8,
        dtype: torch.dtype | None = None,
        coarsening: str = "interior",
        interpolation: str | None = None,
        setup_dtype: torch.dtype | None = None,
    ) -> None:
        interpolation = interpolation or ("operator" if coarsening == "interior" else "bilinear")
        if interpolation not in ("operator", "bilinear"):
            raise ValueError(
                f"interpolation must be 'operator' or 'bilinear', got {interpolation!r}"
            )
        if interpolation == "operator" and coarsening != "interior":
            raise ValueError("operator-dependent interpolation needs interior coarsening")
        self.smoothing, self.damping = smoothing, damping
        self.dtype = dtype or like.dtype
        self.coarsening = coarsening
        self.levels: list[Level] = []
        if setup_dtype is not None:
            operator, like = operator.to(setup_dtype), like.to(setup_dtype)
        while True:
            low = operator.to(self.dtype)
            odd = shape[0] % 2 == 1 and shape[1] % 2 == 1
            last = min(shape) <= coarsest or (coarsening == "vertex" and not odd)
            weights, coarse_stencil = None, None
            if not last and interpolation == "operator":
                entries = entries_of(operator, batch, shape, like)
                weights, coarse_stencil = operator_dependent_level(entries, shape)
            cycle_weights = weights.to(self.dtype) if weights is not None else None
            inverse = 1.0 / low.diagonal()
            self.levels.append(Level(low, inverse, shape, cycle_weights, damping * inverse))
            if last:
                break
            if coarse_stencil is not None:
                operator = StencilOperator(coarse_stencil)
            else:
                operator = galerkin(operator, batch, shape, like, coarsening)
            shape = coarse_shape(shape, coarsening)
        dense = dense_matrix(operator, batch, shape, like)
        if like.dtype.is_complex:
            lu, pivots = torch.linalg.lu_factor(dense)
            self.cholesky, self.lu = None, (lu.to(self.dtype), pivots)
        else:
            self.cholesky = torch.linalg.cholesky((dense + dense.mT) / 2).to(self.dtype)
            self.lu = None

    def subset(self, index: torch.Tensor) -> Multigrid:
        """The same hierarchy restricted to batch members ``index``."""
        new = object.__new__(Multigrid)
        new.smoothing, new.damping, new.dtype = self.smoothing, self.damping, self.dtype
        new.coarsening = self.coarsening
        new.levels = [
            Level(
                lv.operator.subset(index),
                lv.inverse_diagonal[index],
                lv.shape,
                lv.interpolation.subset(index) if lv.interpolation is not None else None,
                lv.weight[index],
            )
            for lv in self.levels
        ]
        new.cholesky = self.cholesky[index] if self.cholesky is not None else None
        new.lu = (self.lu[0][index], self.lu[1][index]) if self.lu is not None else None
        return new

    def __call__(self, residual: torch.Tensor) -> torch.Tensor:
        """One V-cycle applied to ``residual`` (B, n0, n1) from a zero initial guess."""
        return self._cycle(0, residual.to(self.dtype)).to(residual.dtype)

    def _cycle(self, depth: int, f: torch.Tensor) -> torch.Tensor:
        level = self.levels[depth]
        if depth == len(self.levels) - 1:
            rhs = f.reshape(f.shape[0], -1, 1)
            if self.lu is not None:
                return torch.linalg.lu_solve(*self.lu, rhs).reshape(f.shape)
            return torch.cholesky_solve(rhs, self.cholesky).reshape(f.shape)
        if level.interpolation is not None:
            add_, restrict_ = level.interpolation.add_prolonged, level.interpolation.restrict
        else:
            prolong_, restrict_ = TRANSFERS[self.coarsening]

            def add_(x: torch.Tensor, coarse: torch.Tensor) -> torch.Tensor:
                return x + prolong_(coarse, level.shape)

        x, coarse_f = descend(level.operator, level.weight, restrict_, f, self.smoothing)
        coarse = self._cycle(depth + 1, coarse_f)
        return ascend(level.operator, level.weight, add_, f, x, coarse, self.smoothing)


def convergence_factor(
    cycle: Operator, operator: Operator, error: torch.Tensor, cycles: int = 20
) -> torch.Tensor:
    """Measured asymptotic error reduction per cycle of ``x <- x + M^{-1} (b - A x)``: (B,).

    ``error`` (B, n0, n1) is the start (random, to excite every mode); the factor is the mean
    reduction of the energy norm ``sqrt(e^T A e)`` per cycle over the second half of
    ``cycles`` iterations ``e <- e - M^{-1} A e``, once the slowest mode dominates.
    """
    norms = []
    for _ in range(cycles):
        error = error - cycle(operator(error))
        norms.append((error * operator(error)).flatten(1).sum(1).clamp(min=0).sqrt())
    half = cycles // 2
    return (norms[-1] / norms[half - 1]) ** (1 / (cycles - half))
