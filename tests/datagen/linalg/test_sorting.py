import numpy as np
import pytest

from datagen.linalg import sorting
from datagen.linalg.sorting import (
    greedy_order,
    hilbert_index,
    low_mode_features,
    path_length,
    pca_reduce,
    sort_fields,
)


def smooth_fields(n: int, s: int, seed: int, alpha: float = 2.0, tau: float = 3.0) -> np.ndarray:
    """Periodic GRF-like samples: white noise filtered by (4 pi^2 |k|^2 + tau^2)^(-alpha/2)."""
    rng = np.random.default_rng(seed)
    k = np.fft.fftfreq(s, d=1.0 / s)
    wavenumber_sq = 4 * np.pi**2 * (k[:, None] ** 2 + k[None, :] ** 2)
    amplitude = (wavenumber_sq + tau**2) ** (-alpha / 2)
    amplitude[0, 0] = 0.0
    noise = rng.standard_normal((n, s, s))
    return np.fft.ifft2(amplitude * np.fft.fft2(noise)).real


def brute_force_greedy(x: np.ndarray, start: int = 0) -> np.ndarray:
    """Reference: full pairwise distance matrix, visited columns masked, first minimum."""
    dist = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(axis=-1))
    n = x.shape[0]
    visited = np.zeros(n, dtype=bool)
    order = [start]
    visited[start] = True
    for _ in range(n - 1):
        row = np.where(visited, np.inf, dist[order[-1]])
        nxt = int(np.argmin(row))
        order.append(nxt)
        visited[nxt] = True
    return np.array(order)


@pytest.fixture(params=["dense", "streaming"])
def greedy_path(request, monkeypatch):
    """Run a test through both code paths of greedy_order (streaming needs N > d, as here)."""
    if request.param == "streaming":
        monkeypatch.setattr(sorting, "DENSE_MAX_ENTRIES", 0)
    return request.param


@pytest.mark.parametrize("method", ["none", "greedy", "scalable", "auto"])
@pytest.mark.parametrize("n", [1, 2, 7, 300])
def test_every_method_returns_a_permutation(method, n):
    fields = smooth_fields(n, 8, seed=n)
    order = sort_fields(fields, method=method, group_size=64, modes=4)
    assert order.dtype == np.int64
    assert order.shape == (n,)
    assert sorted(order.tolist()) == list(range(n))


def test_scalable_with_default_arguments_and_tiny_fields():
    # modes (8) > s (4) is clipped to s inside sort_fields.
    fields = smooth_fields(20, 4, seed=3)
    order = sort_fields(fields, method="scalable")
    assert sorted(order.tolist()) == list(range(20))


def test_greedy_recovers_a_shuffled_line(greedy_path):
    rng = np.random.default_rng(0)
    n = 60
    t = np.cumsum(rng.uniform(0.5, 1.5, n))  # increasing, unequal gaps
    direction = rng.standard_normal(16)
    points = 3.0 + t[:, None] * direction[None, :]
    shuffle = rng.permutation(n)
    shuffled = points[shuffle]
    # Position of each point along the line, then start from the first endpoint.
    rank = np.argsort(np.argsort(t[shuffle]))
    start = int(np.flatnonzero(rank == 0)[0])
    order = greedy_order(shuffled, start=start)
    np.testing.assert_array_equal(shuffle[order], np.arange(n))
    # From the other endpoint the line is walked backwards.
    end = int(np.flatnonzero(rank == n - 1)[0])
    np.testing.assert_array_equal(shuffle[greedy_order(shuffled, start=end)], np.arange(n)[::-1])


@pytest.mark.parametrize("start", [0, 17, 49])
def test_greedy_matches_brute_force(greedy_path, start):
    x = np.random.default_rng(1).standard_normal((50, 5))
    np.testing.assert_array_equal(greedy_order(x, start=start), brute_force_greedy(x, start))


def test_greedy_breaks_ties_by_lowest_index(greedy_path):
    # Rows 1, 2 and 3 are the same point; from row 0 all three are equally close.
    x = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [5.0, 0.0]])
    np.testing.assert_array_equal(greedy_order(x), [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(greedy_order(x, start=4), [4, 1, 2, 3, 0])


def test_sorted_paths_are_much_shorter_than_random_order():
    n = 400
    fields = smooth_fields(n, 32, seed=0)
    random_length = path_length(fields, np.arange(n))  # i.i.d. samples: a random order
    greedy = path_length(fields, sort_fields(fields, "greedy")) / random_length
    scalable = path_length(fields, sort_fields(fields, "scalable")) / random_length
    grouped = path_length(fields, sort_fields(fields, "scalable", group_size=50)) / random_length
    hilbert_only = path_length(fields, sort_fields(fields, "scalable", group_size=1))
    hilbert_only /= random_length
    # Measured: greedy 0.626, scalable 0.626 (one group), 0.672 (groups of 50), Hilbert alone 0.837.
    assert greedy < 0.70
    assert scalable < 0.70
    assert grouped < 0.75
    assert hilbert_only < 0.90
    assert greedy < hilbert_only and grouped < hilbert_only


def test_path_length_of_a_unit_square():
    corners = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    assert path_length(corners, np.arange(4)) == pytest.approx(3.0)
    assert path_length(corners, np.array([0, 2, 1, 3])) == pytest.approx(1 + 2 * np.sqrt(2))
    assert path_length(corners, np.array([2])) == 0.0


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_hilbert_walks_the_full_grid_through_adjacent_cells(bits):
    side = 2**bits
    gx, gy = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    points = np.stack([gx.ravel(), gy.ravel()], axis=1).astype(float)
    index = hilbert_index(points, bits=bits)
    assert index.dtype == np.int64
    assert sorted(index.tolist()) == list(range(side * side))  # a bijection onto 0..4^b-1
    walk = points[np.argsort(index)]
    steps = np.abs(np.diff(walk, axis=0)).sum(axis=1)
    np.testing.assert_array_equal(steps, np.ones(side * side - 1))
    # The curve is invariant under scaling/shifting of the data (quantised over its range).
    np.testing.assert_array_equal(hilbert_index(5.0 * points - 2.0, bits=bits), index)


def test_hilbert_of_coincident_points_is_zero():
    np.testing.assert_array_equal(hilbert_index(np.ones((3, 2))), np.zeros(3, dtype=np.int64))


def test_pca_recovers_the_dominant_direction():
    rng = np.random.default_rng(2)
    direction = rng.standard_normal(6)
    direction /= np.linalg.norm(direction)
    cloud = 10.0 * rng.standard_normal((500, 1)) * direction + 0.3 * rng.standard_normal((500, 6))
    for data in (cloud, cloud[:4]):  # eigh path (N >= d) and SVD path (N < d)
        scores = pca_reduce(data, 2)
        assert scores.shape == (data.shape[0], 2)
        centred = data - data.mean(axis=0)
        # First score = projection on the first component; recover that direction by least squares.
        recovered = np.linalg.lstsq(centred, scores[:, 0], rcond=None)[0]
        cosine = recovered @ direction / np.linalg.norm(recovered)
        assert abs(cosine) > 0.99
    full = pca_reduce(cloud, 2)
    assert full[:, 0].var() > full[:, 1].var()
    assert pca_reduce(cloud, 10).shape == (500, 6)
    assert pca_reduce(cloud[:1], 3).shape == (1, 1)


def test_pca_signs_are_deterministic():
    rng = np.random.default_rng(4)
    for n, d in ((200, 3), (4, 5)):  # eigh path (N >= d) and SVD path (N < d)
        cloud = rng.standard_normal((n, d)) * np.linspace(5.0, 0.5, d)
        scores = pca_reduce(cloud, 3)
        centred = cloud - cloud.mean(axis=0)
        assert scores.shape == (n, 3)
        # Minimum-norm least squares recovers the directions (they span the rows of centred).
        directions = np.linalg.lstsq(centred, scores, rcond=None)[0]  # (d, 3)
        lead = np.argmax(np.abs(directions), axis=0)
        assert np.all(directions[lead, np.arange(directions.shape[1])] > 0)
        # Flipping the data flips the scores (the directions' signs do not depend on it).
        np.testing.assert_allclose(pca_reduce(-cloud, 3), -scores, atol=1e-10)


def test_low_mode_features_are_scaled_fft_coefficients_and_obey_parseval():
    s, modes = 16, 6
    fields = smooth_fields(3, s, seed=5)
    features = low_mode_features(fields, modes)
    assert features.shape == (3, 2 * modes * modes)
    k = np.arange(modes) - modes // 2  # -3 .. 2
    block = (np.fft.fft2(fields) / s**2)[:, k[:, None] % s, k[None, :] % s]
    np.testing.assert_allclose(features[:, : modes * modes], block.real.reshape(3, -1), atol=1e-12)
    np.testing.assert_allclose(features[:, modes * modes :], block.imag.reshape(3, -1), atol=1e-12)
    # Keeping all modes: feature distance = RMS distance between the fields (Parseval).
    full = low_mode_features(fields, s)
    rms = np.sqrt(np.mean((fields[0] - fields[1]) ** 2))
    assert np.linalg.norm(full[0] - full[1]) == pytest.approx(rms, rel=1e-10)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((4, 8)), r"\(N, s, s\)"),
        (np.zeros((2, 4, 5)), r"\(N, s, s\)"),
        (np.zeros((0, 8, 8)), "at least one"),
        (np.full((2, 3, 3), np.nan), "NaN"),
    ],
)
def test_sort_fields_rejects_bad_fields(bad, match):
    with pytest.raises(ValueError, match=match):
        sort_fields(bad)


def test_bad_arguments_raise_value_errors():
    fields = smooth_fields(5, 8, seed=0)
    with pytest.raises(ValueError, match="allowed: auto, none, greedy, scalable"):
        sort_fields(fields, method="nearest")
    with pytest.raises(ValueError, match="group_size"):
        sort_fields(fields, method="scalable", group_size=0)
    with pytest.raises(ValueError, match="2-D"):
        greedy_order(np.zeros(5))
    with pytest.raises(ValueError, match="at least one row"):
        greedy_order(np.zeros((0, 3)))
    with pytest.raises(ValueError, match="start"):
        greedy_order(np.zeros((3, 2)), start=3)
    with pytest.raises(ValueError, match="modes"):
        low_mode_features(fields, modes=9)
    with pytest.raises(ValueError, match="dims"):
        pca_reduce(np.zeros((3, 2)), 0)
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        hilbert_index(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="bits"):
        hilbert_index(np.zeros((3, 2)), bits=0)
    with pytest.raises(ValueError, match="outside"):
        path_length(np.zeros((3, 2)), np.array([0, 3]))
