"""Monarch matrices, their closed-form projection, and a learnable Monarch DFT.

A Monarch matrix (Dao et al., "Monarch: Expressive Structured Matrices for Efficient and Accurate
Training", ICML 2022) is ``M = P L P^T R`` with ``R``, ``L`` block diagonal and ``P`` the
"reshape (b, n/b), transpose" permutation. We use the rectangular form, written with four
indices. For ``n_in = b * q_in`` inputs and ``n_out = b * q`` outputs (``b`` = ``blocks``):

* ``R``: ``b`` blocks of shape ``(q, q_in)``, stored as a tensor ``(b, q, q_in)``;
* ``L``: ``q`` blocks of shape ``(b, b)``, stored as a tensor ``(q, b, b)``;
* ``M[a * q + c, i * q_in + j] = L[c, a, i] * R[i, c, j]``
  (output index ``(a, c)``, input index ``(i, j)``, ``a, i < b``, ``c < q``, ``j < q_in``).

Read as a product: ``R`` mixes ``j`` inside each input block ``i``, ``P^T`` swaps the roles of
``i`` and ``c``, ``L`` mixes ``i`` inside each block ``c``, and ``P`` swaps back. For a square
``n x n`` matrix with ``b = sqrt(n)`` both factors have ``sqrt(n)`` blocks of size ``sqrt(n)``:
``2 n sqrt(n)`` entries instead of ``n^2``. In general ``n_in n_out / b + n_out b`` entries.

Every block pair ``(c, i)`` of ``M`` -- the ``b x q_in`` sub-matrix ``M[(., c), (i, .)]`` -- is the
rank-1 outer product ``L[c, :, i] R[i, c, :]^T``, and different block pairs share no factor
entries. So the Frobenius-nearest Monarch matrix to any dense matrix is obtained block pair by
block pair from the leading singular triple (Eckart-Young): :func:`monarch_project`.

The DFT of size ``n = p q`` is, by the Cooley-Tukey (four-step) split, a Monarch matrix with
``b = p`` (``R``: ``p`` copies of the size-``q`` DFT with the twiddle factors folded in; ``L``:
``q`` copies of the size-``p`` DFT) times the input stride permutation: :class:`MonarchDFT`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

NORMS = ("backward", "forward", "ortho")


def complex_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """complex128 if any tensor is float64/complex128, else complex64 (the arithmetic dtype)."""
    wide = any(t.dtype in (torch.float64, torch.complex128) for t in tensors)
    return torch.complex128 if wide else torch.complex64


def divisors(n: int) -> list[int]:
    """The positive divisors of ``n >= 1``, ascending."""
    return [d for d in range(1, n + 1) if n % d == 0]


def default_monarch_blocks(n_in: int, n_out: int) -> int:
    """The number of blocks ``b`` (a divisor of both sizes) with the fewest Monarch entries.

    Minimises ``n_in n_out / b + n_out b``; for square ``n`` that is ``b = sqrt(n)`` when ``n``
    is a perfect square (ties go to the smaller ``b``). Coprime sizes give ``b = 1``: ``R`` is
    then a dense matrix and ``L`` a diagonal.
    """
    common = divisors(math.gcd(n_in, n_out))
    return min(common, key=lambda b: (n_in * n_out // b + n_out * b, b))


def check_monarch_blocks(n_in: int, n_out: int, blocks: int) -> None:
    """Raise ``ValueError`` unless ``blocks`` divides both ``n_in`` and ``n_out``."""
    if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 1:
        raise ValueError(f"monarch blocks must be a positive integer, got {blocks!r}")
    if n_in % blocks or n_out % blocks:
        allowed = ", ".join(map(str, divisors(math.gcd(n_in, n_out))))
        raise ValueError(
            f"monarch blocks={blocks} does not divide the channels (in={n_in}, out={n_out}); "
            f"allowed: {allowed}"
        )


def monarch_shapes(n_in: int, n_out: int, blocks: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Shapes ``(L, R)`` of the factors: ``L`` is ``(q, b, b)``, ``R`` is ``(b, q, q_in)``."""
    check_monarch_blocks(n_in, n_out, blocks)
    b, q, q_in = blocks, n_out // blocks, n_in // blocks
    return (q, b, b), (b, q, q_in)


def monarch_num_entries(n_in: int, n_out: int, blocks: int) -> int:
    """Entries of the two factors: ``n_in n_out / b + n_out b`` (``2 n sqrt(n)`` when square)."""
    shape_l, shape_r = monarch_shapes(n_in, n_out, blocks)
    return math.prod(shape_l) + math.prod(shape_r)


def monarch_to_dense(left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """The dense matrix of a Monarch pair.

    Args:
        left: ``L``, shape ``(..., q, b, b)``.
        right: ``R``, shape ``(..., b, q, q_in)``.

    Returns:
        ``M``, shape ``(..., b q, b q_in)`` with ``M[a q + c, i q_in + j] = L[c,a,i] R[i,c,j]``.
    """
    q, b, _ = left.shape[-3:]
    q_in = right.shape[-1]
    blocks = torch.einsum("...cai,...icj->...acij", left, right)
    return blocks.reshape(*blocks.shape[:-4], b * q, b * q_in)


def monarch_apply(left: torch.Tensor, right: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``M x`` for one Monarch pair, without forming ``M``.

    Args:
        left: ``L``, shape ``(q, b, b)``.
        right: ``R``, shape ``(b, q, q_in)``.
        x: shape ``(..., b q_in)``.

    Returns:
        Shape ``(..., b q)``. Cost: ``n_in q + n_out b`` multiply-adds per vector.
    """
    q, b, _ = left.shape
    xb = x.reshape(*x.shape[:-1], b, right.shape[-1])
    y = torch.einsum("...ij,icj->...ic", xb, right)
    z = torch.einsum("...ic,cai->...ac", y, left)
    return z.reshape(*x.shape[:-1], b * q)


def monarch_project(
    dense: torch.Tensor, blocks: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The Frobenius-nearest Monarch matrix to ``dense``, as factors ``(L, R)``.

    The dense matrix is viewed as a 4-D tensor ``[a, c, i, j]`` (output ``a q + c``, input
    ``i q_in + j``); for every block pair ``(c, i)`` the ``b x q_in`` slice ``[:, c, i, :]`` is
    replaced by its best rank-1 approximation ``s u v^H`` (leading singular triple), split as
    ``L[c, :, i] = sqrt(s) u`` and ``R[i, c, :] = sqrt(s) v^H``. Because block pairs share no
    factor entries this is the exact minimiser over all Monarch matrices with ``b`` blocks
    (Dao et al., ICML 2022, Sec. 3.3): a Monarch input is recovered exactly, and the error is
    never larger than that of any other Monarch matrix (including zero).

    Args:
        dense: shape ``(..., n_out, n_in)``, real or complex; leading dims are a batch.
        blocks: ``b``, must divide ``n_out`` and ``n_in``; default :func:`default_monarch_blocks`.

    Returns:
        ``L`` of shape ``(..., q, b, b)`` and ``R`` of shape ``(..., b, q, q_in)``.
    """
    n_out, n_in = dense.shape[-2:]
    b = default_monarch_blocks(n_in, n_out) if blocks is None else blocks
    check_monarch_blocks(n_in, n_out, b)
    q, q_in = n_out // b, n_in // b
    batch = dense.shape[:-2]
    pairs = dense.reshape(*batch, b, q, b, q_in).movedim(-3, -4)  # (..., c, a, i, j)
    pairs = pairs.movedim(-2, -3)  # (..., c, i, a, j)
    u, s, vh = torch.linalg.svd(pairs, full_matrices=False)
    root = s[..., :1].sqrt().to(u.dtype)  # (..., c, i, 1)
    left = (u[..., :, 0] * root).movedim(-1, -2)  # (..., c, i, a) -> (..., c, a, i)
    right = (vh[..., 0, :] * root).movedim(-3, -2)  # (..., c, i, j) -> (..., i, c, j)
    return left.contiguous(), right.contiguous()


def balanced_factor(n: int) -> tuple[int, int]:
    """``(p, q)``: ``p q = n``, ``p`` the largest divisor ``<= sqrt(n)`` (``p = 1`` if prime)."""
    p = max(d for d in divisors(n) if d * d <= n)
    return p, n // p


def _roots(exponent: torch.Tensor, n: int, sign: int) -> torch.Tensor:
    """``exp(sign 2 pi i e / n)`` in complex128, reducing ``e`` modulo ``n`` first for accuracy."""
    angle = (2.0 * math.pi / n) * torch.remainder(exponent, n).to(torch.float64)
    return torch.polar(torch.ones_like(angle), sign * angle)


def dft_monarch_factors(
    n: int, inverse: bool = False, norm: str = "backward"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cooley-Tukey factors of the size-``n`` DFT as a Monarch pair and an input permutation.

    With ``n = p q`` (:func:`balanced_factor`), ``j = j1 + p j2`` and ``k = q k1 + k2``,
    ``w^(jk) = w_p^(j1 k1) w_n^(j1 k2) w_q^(j2 k2)``, so
    ``DFT = M(L, R) Pi`` where ``Pi`` gathers ``x[j1 + p j2]`` into slot ``j1 q + j2`` and

    * ``R[j1, k2, j2] = w_q^(j2 k2) w_n^(j1 k2)`` (``p`` size-``q`` DFTs times twiddles),
    * ``L[k2, k1, j1] = w_p^(j1 k1)`` (``q`` size-``p`` DFTs), times the ``norm`` scale.

    ``w = exp(-2 pi i / n)`` (``+`` for ``inverse``); ``norm`` as in :func:`torch.fft.fft`. For
    prime ``n``, ``p = 1``: ``R`` is the dense DFT matrix and ``L`` is all ones.

    Returns:
        ``L`` ``(q, p, p)``, ``R`` ``(p, q, q)`` (complex128) and the permutation ``(n,)``.
    """
    if norm not in NORMS:
        raise ValueError(f"unknown DFT norm {norm!r}; allowed: {', '.join(NORMS)}")
    p, q = balanced_factor(n)
    sign = 1 if inverse else -1
    j1 = torch.arange(p).view(p, 1, 1)
    k2 = torch.arange(q).view(1, q, 1)
    j2 = torch.arange(q).view(1, 1, q)
    right = _roots(p * j2 * k2 + j1 * k2, n, sign)  # w_q^(j2 k2) = w_n^(p j2 k2)
    k1 = torch.arange(p).view(1, p, 1)
    j1_l = torch.arange(p).view(1, 1, p)
    left = _roots(q * j1_l * k1, n, sign).expand(q, p, p).clone()  # w_p^(j1 k1)
    scaled = (norm == "forward") if not inverse else (norm == "backward")
    scale = 1.0 / n if scaled else (1.0 / math.sqrt(n) if norm == "ortho" else 1.0)
    perm = torch.arange(n).view(q, p).T.reshape(n)  # slot j1 q + j2 <- x[j1 + p j2]
    return left * scale, right, perm


class MonarchDFT(nn.Module):
    """A learnable Monarch transform of size ``n``, initialised at the exact DFT.

    ``y = M(L, R) x[perm]`` with ``L``, ``R`` learnable complex factors from
    :func:`dft_monarch_factors` (stored as real tensors with a trailing axis of 2 so that
    ``module.double()`` and optimizers treat them as ordinary real parameters). At
    initialisation ``forward`` equals ``torch.fft.fft`` (``torch.fft.ifft`` for ``inverse``)
    with the same ``norm``. Cost ``n (p + q)`` complex multiply-adds per vector; for prime ``n``
    this falls back to a dense ``n x n`` DFT matrix (``p = 1``).

    Args:
        n: transform length.
        inverse: initialise at the inverse DFT.
        norm: "backward", "forward" or "ortho", as in :mod:`torch.fft`.
        dtype: real dtype of the stored factors (float32 gives complex64 arithmetic).
    """

    def __init__(
        self,
        n: int,
        inverse: bool = False,
        norm: str = "backward",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"MonarchDFT size must be a positive integer, got {n!r}")
        left, right, perm = dft_monarch_factors(n, inverse=inverse, norm=norm)
        self.n, self.inverse, self.norm = n, inverse, norm
        self.p, self.q = balanced_factor(n)
        self.left = nn.Parameter(torch.view_as_real(left).to(dtype))
        self.right = nn.Parameter(torch.view_as_real(right).to(dtype))
        self.register_buffer("perm", perm, persistent=False)

    def factors(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The complex factors ``L`` ``(q, p, p)`` and ``R`` ``(p, q, q)``."""
        return torch.view_as_complex(self.left), torch.view_as_complex(self.right)

    def forward(self, x: torch.Tensor, dim: int = -1) -> torch.Tensor:
        """Transform ``x`` (real or complex, any shape with ``x.shape[dim] == n``) along ``dim``."""
        if x.shape[dim] != self.n:
            raise ValueError(
                f"MonarchDFT of size {self.n} got an axis of size {x.shape[dim]} (dim={dim})"
            )
        left, right = self.factors()
        dtype = complex_dtype(x, self.left)
        xs = x.movedim(dim, -1).to(dtype).index_select(-1, self.perm)
        y = monarch_apply(left.to(dtype), right.to(dtype), xs)
        return y.movedim(-1, dim)

    def num_parameters(self) -> int:
        """Real parameters: ``2 n (p + q)`` (complex entries count twice)."""
        return sum(t.numel() for t in self.parameters())

    def flops(self, num_vectors: int = 1) -> int:
        """``8 n (p + q)`` real flops per vector (a complex multiply-add is 8 real flops)."""
        return 8 * self.n * (self.p + self.q) * num_vectors

    def extra_repr(self) -> str:
        return f"n={self.n}, p={self.p}, q={self.q}, inverse={self.inverse}, norm={self.norm!r}"
