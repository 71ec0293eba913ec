"""Order parameter fields so that neighbours in the order are similar (the "sort" step of SKR).

Sorting Krylov Recycling (SKR; Wang et al., "Accelerating Data Generation for Neural Operators
via Krylov Subspace Recycling", ICLR 2024) solves the linear systems of a data set one after the
other and recycles a Krylov subspace from each solve into the next. Recycling pays off when
consecutive systems are close, so SKR first orders the samples greedily: start somewhere and
always move to the most similar unvisited sample. This module computes such orders from the
parameter fields alone (numpy + scipy, no solver involved):

- ``greedy_order``: the exact greedy nearest-neighbour tour of SKR, O(N^2 d) time and, for large
  N, O(N d) memory;
- ``sort_fields(method="scalable")``: a cheaper variant of this project (not in the SKR paper):
  smoothed low-mode features, a 2-D PCA projection ordered along a Hilbert curve, and the exact
  greedy tour inside contiguous groups of that coarse order, O(N g d') for groups of size g;
- ``path_length``: the sum of distances between consecutive samples, the quality measure.

Shapes: ``N`` samples, fields ``(N, s, s)``, features ``(N, d)``; orders are permutations
``(N,)`` of ``int64`` with ``fields[order]`` the sorted data set.
"""

from __future__ import annotations

import numpy as np

METHODS = ("auto", "none", "greedy", "scalable")

#: ``greedy_order`` builds the full N x N distance matrix (one matrix product, then O(N) work per
#: step) when it has at most this many entries (float64: 64 MiB) or is no larger than the
#: (N, d) feature array itself; otherwise it streams the distances from the current row, one
#: matrix-vector product per step, in O(N d) memory.
DENSE_MAX_ENTRIES = 2**23

#: ``sort_fields(method="auto")`` runs the exact greedy tour up to this many samples.
AUTO_GREEDY_MAX = 2048


def _as_features(features: np.ndarray, name: str = "features") -> np.ndarray:
    """Validate a real (N, d) array with N >= 1 and return it as float64."""
    array = np.asarray(features)
    if np.iscomplexobj(array):
        raise ValueError(f"{name} must be real, got dtype {array.dtype}")
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (N, d) array, got shape {array.shape}")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"{name} must have at least one row and one column, got {array.shape}")
    array = array.astype(np.float64, copy=False)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contain NaN or inf")
    return array


def _as_fields(fields: np.ndarray) -> np.ndarray:
    """Validate real fields (N, s, s) with N >= 1 and return them as float64."""
    array = np.asarray(fields)
    if np.iscomplexobj(array):
        raise ValueError(f"fields must be real, got dtype {array.dtype}")
    if array.ndim != 3 or array.shape[1] != array.shape[2]:
        raise ValueError(f"fields must be an (N, s, s) array, got shape {array.shape}")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"fields must hold at least one non-empty field, got shape {array.shape}")
    array = array.astype(np.float64, copy=False)
    if not np.all(np.isfinite(array)):
        raise ValueError("fields contain NaN or inf")
    return array


def _lowest_index_argmin(values: np.ndarray, ids: np.ndarray) -> int:
    """Position of the minimum of ``values``; among exact ties, the one with the lowest id."""
    best = values.min()
    tied = np.flatnonzero(values == best)
    if tied.size == 1:
        return int(tied[0])
    return int(tied[np.argmin(ids[tied])])


def _greedy_dense(centred: np.ndarray, sq_norms: np.ndarray, start: int) -> np.ndarray:
    """Greedy tour from the full matrix of squared distances (minus the row constant)."""
    n = centred.shape[0]
    # Row i holds |x_j|^2 - 2 x_i.x_j = |x_i - x_j|^2 - |x_i|^2: same argmin over j.
    scores = centred @ centred.T
    scores *= -2.0
    scores += sq_norms[None, :]
    penalty = np.zeros(n)
    row = np.empty(n)
    order = np.empty(n, dtype=np.int64)
    current = start
    for step in range(n):
        order[step] = current
        penalty[current] = np.inf
        if step + 1 < n:
            np.add(scores[current], penalty, out=row)
            current = int(np.argmin(row))  # first minimum: lowest index among ties
    return order


def _greedy_streaming(centred: np.ndarray, sq_norms: np.ndarray, start: int) -> np.ndarray:
    """Greedy tour with one matrix-vector product per step over the unvisited rows only.

    The unvisited rows are kept contiguous at the front of ``centred`` (the visited row is
    swapped to the back; ``centred`` and ``sq_norms`` are reordered in place), so step k costs
    O((N - k) d) and no N x N array is formed.
    """
    n = centred.shape[0]
    work, sq = centred, sq_norms  # owned by the caller, reordered in place
    ids = np.arange(n, dtype=np.int64)
    order = np.empty(n, dtype=np.int64)
    position = start
    remaining = n
    for step in range(n):
        order[step] = ids[position]
        current = work[position].copy()
        last = remaining - 1
        if position != last:
            work[[position, last]] = work[[last, position]]
            sq[[position, last]] = sq[[last, position]]
            ids[[position, last]] = ids[[last, position]]
        remaining = last
        if remaining == 0:
            break
        scores = work[:remaining] @ current
        scores *= -2.0
        scores += sq[:remaining]
        position = _lowest_index_argmin(scores, ids[:remaining])
    return order


def greedy_order(features: np.ndarray, start: int = 0) -> np.ndarray:
    """Greedy nearest-neighbour order of the rows of ``features`` (the SKR sort).

    As in SKR (Wang et al., ICLR 2024): begin at row ``start`` and repeatedly move to the
    unvisited row closest in Euclidean distance (the Frobenius distance when the rows are
    flattened fields). Exact ties of the computed distances go to the lowest row index, so the
    result is deterministic.

    Args:
        features: (N, d) real array, N >= 1.
        start: index of the first row, 0 <= start < N.

    Returns:
        (N,) int64 permutation of ``range(N)``; ``features[order]`` is the sorted set.

    Cost: O(N^2 d) time. Distances come from the expansion ``|x|^2 - 2 x.y + |y|^2`` on centred
    rows (translation does not change distances and centring limits cancellation). When the
    N x N matrix has at most ``DENSE_MAX_ENTRIES`` entries, or N <= d (then it is no larger
    than the features), it is formed by one matrix product and each step is O(N); otherwise
    each step computes the distances from the current row to the unvisited rows only, O(N d)
    time per step and no memory beyond one centred float64 copy of ``features``. Both paths
    give the same order up to round-off in near-ties.
    """
    x = _as_features(features)
    n, d = x.shape
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)):
        raise ValueError(f"start must be an integer, got {start!r}")
    if not 0 <= start < n:
        raise ValueError(f"start must lie in [0, {n}), got {start}")
    centred = x - x.mean(axis=0)
    sq_norms = np.einsum("ij,ij->i", centred, centred)
    if n * n <= max(DENSE_MAX_ENTRIES, n * d):
        return _greedy_dense(centred, sq_norms, int(start))
    return _greedy_streaming(centred, sq_norms, int(start))


def _low_frequencies(modes: int) -> np.ndarray:
    """The ``modes`` integer frequencies nearest zero: -(modes // 2) .. modes - modes // 2 - 1."""
    return np.arange(modes) - modes // 2


def low_mode_features(fields: np.ndarray, modes: int = 8) -> np.ndarray:
    """Smoothed features of fields: their lowest ``modes x modes`` Fourier coefficients.

    The coefficients are ``c_k = (1 / s^2) sum_x f(x) exp(-2 pi i k.x / s)`` (``np.fft.fft2``
    divided by ``s*s``) for both wavenumbers ``k1, k2`` in the ``modes`` integers closest to
    zero, ``-(modes // 2) .. modes - modes // 2 - 1`` (so ``-4 .. 3`` for ``modes = 8``; the box
    is centred on zero, not the one-sided corner ``[:modes, :modes]``, which would keep the
    waves along one diagonal and drop those along the other). They are computed by two small
    DFT matrix products, O(N s^2 modes) time and no full (N, s, s) complex array.

    By Parseval, ``(1/s^2) sum_x |f(x)|^2 = sum_k |c_k|^2``, so the Euclidean distance between
    two feature rows is the root-mean-square distance between the two fields after both are
    low-pass filtered to these modes: a smoothed L2 distance that ignores fine-scale detail and
    costs ``2 * modes^2`` numbers per field instead of ``s^2``.

    Args:
        fields: (N, s, s) real array.
        modes: number of wavenumbers kept per direction, 1 <= modes <= s.

    Returns:
        (N, 2 * modes * modes) float64: real parts of the (modes, modes) coefficient block
        (row-major), then imaginary parts.
    """
    f = _as_fields(fields)
    n, s, _ = f.shape
    if isinstance(modes, bool) or not isinstance(modes, (int, np.integer)):
        raise ValueError(f"modes must be an integer, got {modes!r}")
    if not 1 <= modes <= s:
        raise ValueError(f"modes must lie in [1, {s}] for fields of size {s}, got {modes}")
    k = _low_frequencies(int(modes))
    grid = np.arange(s)
    # DFT rows exp(-2 pi i k_a x / s) / s = (cos - i sin) / s, phase reduced mod s for accuracy.
    # Real and imaginary parts are kept apart so the (N, s, s) fields are never cast to complex.
    phase = 2 * np.pi * (np.outer(k, grid) % s) / s
    cos, sin = np.cos(phase) / s, np.sin(phase) / s  # (modes, s)
    part_re, part_im = f @ cos.T, -(f @ sin.T)  # (N, s, modes): along the last axis
    coeff_re = np.matmul(cos, part_re) + np.matmul(sin, part_im)  # (N, modes, modes)
    coeff_im = np.matmul(cos, part_im) - np.matmul(sin, part_re)
    return np.concatenate([coeff_re.reshape(n, -1), coeff_im.reshape(n, -1)], axis=1)


def pca_reduce(features: np.ndarray, dims: int) -> np.ndarray:
    """Project centred features on their top ``dims`` principal directions.

    The directions are the leading right singular vectors of the centred (N, d) matrix, taken
    from an SVD of that matrix when N < d and from the eigendecomposition of the d x d scatter
    matrix otherwise (cheaper for many samples). Each direction's sign is fixed so that its
    largest-magnitude loading (the first one among equal magnitudes) is positive, so the
    result does not depend on the LAPACK routine. Used by the scalable SKR-style sort
    (Wang et al., ICLR 2024, sort step) to place samples in the plane.

    Args:
        features: (N, d) real array, N >= 1.
        dims: number of components wanted, >= 1.

    Returns:
        (N, min(dims, d, N)) float64 scores, columns in order of decreasing variance.
    """
    x = _as_features(features)
    if isinstance(dims, bool) or not isinstance(dims, (int, np.integer)):
        raise ValueError(f"dims must be an integer, got {dims!r}")
    if dims < 1:
        raise ValueError(f"dims must be at least 1, got {dims}")
    n, d = x.shape
    keep = min(int(dims), d, n)
    centred = x - x.mean(axis=0)
    if n < d:
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        directions = vt[:keep].T
    else:
        _, vectors = np.linalg.eigh(centred.T @ centred)  # eigenvalues ascending
        directions = vectors[:, ::-1][:, :keep]
    lead = np.argmax(np.abs(directions), axis=0)
    signs = np.where(directions[lead, np.arange(keep)] < 0, -1.0, 1.0)
    return centred @ (directions * signs)


def _hilbert_from_cells(x: np.ndarray, y: np.ndarray, bits: int) -> np.ndarray:
    """Distance along the 2-D Hilbert curve of integer cells (x, y) in [0, 2**bits)^2.

    Walk the quadrant tree from the coarsest level down. At a level of half-width ``h`` the
    quadrant (bit of x, bit of y) contributes its visiting rank times ``h*h`` cells (ranks:
    (0,0) -> 0, (0,1) -> 1, (1,1) -> 2, (1,0) -> 3); the coordinates inside the quadrant are
    then mapped into the frame of the sub-curve: the lower quadrants are transposed, the
    lower-right one also mirrored, so the remaining levels see a standard curve.
    """
    x = x.astype(np.int64, copy=True)
    y = y.astype(np.int64, copy=True)
    index = np.zeros(x.shape, dtype=np.int64)
    half = 1 << (bits - 1)
    while half > 0:
        right = (x & half) != 0
        upper = (y & half) != 0
        rank = np.where(upper, np.where(right, 2, 1), np.where(right, 3, 0))
        index += rank.astype(np.int64) * (half * half)
        x &= half - 1
        y &= half - 1
        mirror = right & ~upper
        x = np.where(mirror, half - 1 - x, x)
        y = np.where(mirror, half - 1 - y, y)
        x, y = np.where(upper, x, y), np.where(upper, y, x)
        half >>= 1
    return index


def hilbert_index(points: np.ndarray, bits: int = 10) -> np.ndarray:
    """Position of each 2-D point along a Hilbert curve over the data's bounding square.

    Each coordinate is shifted by its minimum and both are divided by the larger of the two
    ranges (one scale for both axes, so the plane's geometry is not stretched), then binned
    into ``2**bits`` equal cells per axis. Points in nearby cells get nearby indices, so
    sorting by the index gives a locality-preserving 1-D order of the plane (the coarse order
    of the scalable SKR-style sort, cf. Wang et al., ICLR 2024). An integer grid
    ``0 .. 2**bits - 1`` in both coordinates maps one-to-one onto the cells.

    Args:
        points: (N, 2) real array, N >= 1.
        bits: cells per axis are ``2**bits``, 1 <= bits <= 31.

    Returns:
        (N,) int64 indices in ``[0, 4**bits)``; all zero when the points coincide.
    """
    p = _as_features(points, "points")
    if p.shape[1] != 2:
        raise ValueError(f"points must be an (N, 2) array, got shape {p.shape}")
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise ValueError(f"bits must be an integer, got {bits!r}")
    if not 1 <= bits <= 31:
        raise ValueError(f"bits must lie in [1, 31], got {bits}")
    cells = 1 << int(bits)
    shifted = p - p.min(axis=0)
    span = float(shifted.max())
    if span == 0.0:
        return np.zeros(p.shape[0], dtype=np.int64)
    q = np.floor(shifted / span * cells).astype(np.int64)
    np.clip(q, 0, cells - 1, out=q)
    return _hilbert_from_cells(q[:, 0], q[:, 1], int(bits))


def _scalable_order(fields: np.ndarray, group_size: int, modes: int) -> np.ndarray:
    """Hilbert order of 2-D PCA scores, refined by greedy tours inside contiguous groups."""
    n, s, _ = fields.shape
    features = low_mode_features(fields, min(modes, s))
    plane = pca_reduce(features, 2)
    if plane.shape[1] < 2:  # a single sample: one score column
        plane = np.pad(plane, ((0, 0), (0, 2 - plane.shape[1])))
    coarse = np.argsort(hilbert_index(plane), kind="stable")
    pieces = []
    previous = None
    for begin in range(0, n, group_size):
        group = coarse[begin : begin + group_size]
        local = features[group]
        if previous is None:
            first = 0
        else:
            gaps = np.einsum("ij,ij->i", local - previous, local - previous)
            first = int(np.argmin(gaps))
        tour = group[greedy_order(local, start=first)]
        pieces.append(tour)
        previous = features[tour[-1]]
    return np.concatenate(pieces).astype(np.int64, copy=False)


def sort_fields(
    fields: np.ndarray, method: str = "auto", group_size: int = 512, modes: int = 8
) -> np.ndarray:
    """Order parameter fields so that consecutive ones are similar (the sort step of SKR).

    Methods:
        ``"none"``: the identity order.
        ``"greedy"``: the exact SKR sort (Wang et al., ICLR 2024): ``greedy_order`` of the
            flattened fields, i.e. greedy nearest neighbour in the Frobenius distance, from
            sample 0. O(N^2 s^2) time.
        ``"scalable"``: ``low_mode_features`` (``min(modes, s)`` wavenumbers per axis) ->
            ``pca_reduce`` to 2 dims -> sort by ``hilbert_index`` -> cut that order into
            contiguous groups of ``group_size`` -> ``greedy_order`` on the low-mode features
            inside each group, the first group from its first sample and each later group from
            its sample closest to the previous group's last one -> concatenate. O(N s^2 modes
            + N group_size modes^2) time.
        ``"auto"``: ``"greedy"`` for N <= 2048, else ``"scalable"``.

    Args:
        fields: (N, s, s) real array, N >= 1.
        method: one of ``"auto"``, ``"none"``, ``"greedy"``, ``"scalable"``.
        group_size: samples per greedy group of ``"scalable"``, >= 1.
        modes: wavenumbers per axis of the ``"scalable"`` features, >= 1.

    Returns:
        (N,) int64 permutation; ``fields[order]`` is the sorted data set.
    """
    if method not in METHODS:
        raise ValueError(f"unknown sort method {method!r}; allowed: {', '.join(METHODS)}")
    f = _as_fields(fields)
    for name, value in (("group_size", group_size), ("modes", modes)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    n = f.shape[0]
    if method == "auto":
        method = "greedy" if n <= AUTO_GREEDY_MAX else "scalable"
    if method == "none":
        return np.arange(n, dtype=np.int64)
    if method == "greedy":
        return greedy_order(f.reshape(n, -1))
    return _scalable_order(f, int(group_size), int(modes))


def path_length(fields_or_features: np.ndarray, order: np.ndarray) -> float:
    """Total Euclidean distance between consecutive items taken in ``order``.

    The quality measure of an SKR sort (Wang et al., ICLR 2024): shorter paths mean more
    similar neighbours. Items are flattened, so fields (N, s, s) give Frobenius distances.

    Args:
        fields_or_features: (N, ...) real array, N >= 1, each item flattened to a vector.
        order: (M,) integer indices into the N items (usually a permutation of ``range(N)``).

    Returns:
        ``sum_i |x[order[i+1]] - x[order[i]]|`` as a float (0.0 for M <= 1). Computed in
        chunks of rows, so memory stays O(chunk * d).
    """
    array = np.asarray(fields_or_features)
    if array.ndim < 1 or array.shape[0] < 1:
        raise ValueError(f"need at least one item to measure a path, got shape {array.shape}")
    x = _as_features(array.reshape(array.shape[0], -1), "fields_or_features")
    idx = np.asarray(order)
    if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
        raise ValueError(f"order must be a 1-D integer array, got shape {idx.shape}, {idx.dtype}")
    if idx.size and (idx.min() < 0 or idx.max() >= x.shape[0]):
        raise ValueError(f"order holds indices outside [0, {x.shape[0]})")
    chunk = max(1, 2**22 // x.shape[1])
    total = 0.0
    for begin in range(0, idx.size - 1, chunk):
        a = idx[begin : begin + chunk + 1]
        steps = x[a[1:]] - x[a[:-1]]
        total += float(np.sqrt(np.einsum("ij,ij->i", steps, steps)).sum())
    return total


def chain_schedule(order: np.ndarray, chains: int) -> list[np.ndarray]:
    """Cut a sorted order into ``chains`` contiguous chains advanced in lockstep (SKR batching).

    Args:
        order: (N,) the sorted order (sample positions).
        chains: number of chains C >= 1 (at most N are used).

    Returns:
        one (C_t,) int64 array per step t: the t-th system of every chain long enough
        (chain c holds ``order[c L : (c + 1) L]``, ``L = ceil(N / C)``). Step t's systems
        follow step t - 1's of the same chains, so entry i of step t continues entry i of
        step t - 1.
    """
    order = np.asarray(order, dtype=np.int64)
    if chains < 1:
        raise ValueError(f"chains must be >= 1, got {chains}")
    length = -(-order.size // chains) if order.size else 0
    pieces = [order[c * length : (c + 1) * length] for c in range(chains)]
    pieces = [p for p in pieces if p.size]
    return [np.array([p[t] for p in pieces if t < p.size]) for t in range(length)]


def solve_positions(order: np.ndarray) -> np.ndarray:
    """Each sample's place in the solve order: the inverse permutation of ``order`` (N,)."""
    order = np.asarray(order, dtype=np.int64)
    positions = np.empty_like(order)
    positions[order] = np.arange(order.size)
    return positions
