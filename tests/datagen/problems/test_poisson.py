"""Poisson with random data: lifting, exact shared-matrix solvers, convergence, datasets."""

import h5py
import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

import datagen.problems.poisson.recipe as poisson_data
from datagen.cli import main
from datagen.core.config import validate
from datagen.core.fields import gaussian_random_field, sample_seed
from datagen.core.schema import check_schema, split_file
from datagen.problems.poisson.config import PoissonConfig
from datagen.problems.poisson.physics import boundary_trace, solve_poisson
from datagen.verify import verify_file
from tests.conftest import ROOT, assert_refused

CONFIG = ROOT / "configs" / "datagen" / "poisson_small.yaml"
NAME = "poisson_small"


def full_system(s: int) -> sp.csr_matrix:
    """Independent reference: all ``s^2`` nodes unknown, identity rows on the boundary."""
    h2 = 1.0 / (s - 1) ** 2
    index = np.arange(s * s).reshape(s, s)
    inner = index[1:-1, 1:-1].ravel()
    edge = np.setdiff1d(index.ravel(), inner)
    rows, cols, vals = (
        [edge, inner],
        [edge, inner],
        [np.ones(len(edge)), np.full(len(inner), 4 / h2)],
    )
    for di, dj in ((1, 0), (-1, 0), (0, 1), (0, -1)):
        rows.append(inner)
        cols.append(index[1 + di : s - 1 + di, 1 + dj : s - 1 + dj].ravel())
        vals.append(np.full(len(inner), -1 / h2))
    data = (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols)))
    return sp.coo_matrix(data, shape=(s * s, s * s)).tocsr()


def random_data(s: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    f = 50 * gaussian_random_field(
        [sample_seed(3, 0, i) for i in range(count)], s, 2.5, 7.0, "periodic"
    )
    g = gaussian_random_field([sample_seed(3, 1, i) for i in range(count)], s, 2.5, 3.0, "neumann")
    return f.numpy(), boundary_trace(g.numpy())


@pytest.mark.parametrize("s", [17, 22])
@pytest.mark.parametrize("method", ["dst", "direct"])
def test_solution_equals_an_independent_sparse_direct_solve(s, method):
    f, g = random_data(s, 3)
    u, info = solve_poisson(f, g, method)
    matrix = full_system(s)
    for k in range(3):
        rhs = np.where(boundary_trace(np.ones((s, s))) > 0, g[k], f[k]).ravel()
        exact = spla.spsolve(matrix.tocsc(), rhs).reshape(s, s)
        assert np.abs(u[k] - exact).max() <= 1e-10 * np.abs(exact).max()
        assert info[k].residual < 1e-13 and info[k].iterations == 0
    assert {i.method for i in info} == {"dst" if method == "dst" else "direct-superlu"}
    np.testing.assert_array_equal(u[:, 0], g[:, 0])  # the boundary values are g exactly


def manufactured_error(s: int) -> float:
    """Max error for u = sin(2x + 1) cos(3y) + x y^2: f = 13 sin(2x + 1) cos(3y) - 2x."""
    x = np.linspace(0, 1, s)
    X, Y = np.meshgrid(x, x, indexing="ij")
    exact = np.sin(2 * X + 1) * np.cos(3 * Y) + X * Y**2
    f = 13 * np.sin(2 * X + 1) * np.cos(3 * Y) - 2 * X
    u, _ = solve_poisson(f[None], boundary_trace(exact)[None], "dst")
    return float(np.abs(u[0] - exact).max())


def test_manufactured_solution_converges_at_second_order():
    """Measured max-norm errors 6.0e-4 .. 2.4e-6 at s = 17 .. 257; ratios 3.96, 4.00, 4.00, 4.00."""
    errors = [manufactured_error(s) for s in (17, 33, 65, 129, 257)]
    ratios = [errors[i] / errors[i + 1] for i in range(len(errors) - 1)]
    assert all(3.9 < r < 4.1 for r in ratios), (errors, ratios)


def generate(tmp_path, name: str, *overrides: str) -> dict:
    out = tmp_path / name
    args = [
        "generate",
        str(CONFIG),
        "resolution=33",
        "samples.train=5",
        "samples.valid=2",
        "samples.test=2",
        "batch_size=2",
        *overrides,
        f"output.dir={out}",
        "--no-progress",
    ]
    assert main(args) == 0
    with h5py.File(split_file(out, NAME, "train"), "r") as f:
        assert check_schema(f) == []
        data = {key: f["t0_fields"][key][...] for key in ("f", "g", "u")}
        for key in ("method", "iterations", "residual", "seed", "sample_index"):
            ds = f["provenance"][key]
            data[key] = ds.asstr()[...] if key == "method" else ds[...]
    data["root"] = out
    return data


def test_direct_factors_the_shared_matrix_once_per_run_and_agrees_with_dst(tmp_path, monkeypatch):
    calls = []
    real = spla.splu

    def counting(*args, **kwargs):
        calls.append(args[0].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(spla, "splu", counting)
    direct = generate(tmp_path, "direct", "solver.method=direct")
    assert len(calls) == 1, "one factorization for 5 work units"
    dst = generate(tmp_path, "dst")  # auto -> dst
    assert len(calls) == 1
    for key in ("f", "g", "seed"):
        np.testing.assert_array_equal(direct[key], dst[key])
    np.testing.assert_allclose(direct["u"], dst["u"], rtol=0, atol=1e-6 * np.abs(dst["u"]).max())
    assert set(direct["method"]) == {"direct-superlu"} and set(dst["method"]) == {"dst"}
    assert dst["residual"].max() < 1e-13 and direct["residual"].max() < 1e-13


def test_dataset_layout_and_verify_catches_corruption(tmp_path, capsys):
    data = generate(tmp_path, "data")
    assert data["f"].shape == data["g"].shape == (5, 33, 33) and data["u"].shape == (5, 1, 33, 33)
    assert np.all(data["g"][:, 1:-1, 1:-1] == 0)
    np.testing.assert_array_equal(boundary_trace(data["u"][:, 0]), data["g"])
    assert data["sample_index"].tolist() == list(range(5))
    path = split_file(data["root"], NAME, "train")
    report = verify_file(path)
    assert report.ok, report.problems
    assert report.worst_estimate < 1e-7 and report.threshold < 4e-6  # float32: ~3e-8
    with h5py.File(path, "r+") as f:
        f["t0_fields/u"][2, 0, 1:-1, 1:-1] *= 1.00001
    bad = verify_file(path)
    assert not bad.ok and "fail the residual check (first: sample 2" in bad.problems[0]
    with h5py.File(path, "r+") as f:
        f["t0_fields/g"][4, 0, 5] += 0.5
    assert main(["verify", str(path)]) == 1
    assert "u != g on the boundary (first: sample 4)" in capsys.readouterr().out


def test_constant_forcing_is_stored_once_and_float64_keeps_the_tolerance(tmp_path):
    data = generate(
        tmp_path, "const", "forcing.kind=constant", "forcing.value=1.0", "storage_dtype=float64"
    )
    assert data["f"].shape == (33, 33) and data["u"].dtype == np.float64
    report = verify_file(split_file(data["root"], NAME, "train"))
    assert report.ok and report.worst_estimate < 1e-13


def test_samples_are_the_same_alone_in_a_batch_and_after_an_interruption(tmp_path, monkeypatch):
    reference = generate(tmp_path, "reference", "batch_size=64")
    alone = generate(tmp_path, "alone", "batch_size=1")
    for key in ("f", "g", "u", "seed"):
        np.testing.assert_array_equal(alone[key], reference[key])
    calls = {"n": 0}
    real = poisson_data.solve_poisson

    def interrupted(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(poisson_data, "solve_poisson", interrupted)
    out = tmp_path / "resumed"
    args = ["generate", str(CONFIG), "resolution=33", "samples.train=5", "samples.valid=2"]
    args += ["samples.test=2", "batch_size=2", f"output.dir={out}", "--no-progress"]
    assert main(args) == 130
    assert len(list((out / ".partial" / "train").glob("*.npz"))) == 2
    assert main(args) == 0
    with h5py.File(split_file(out, NAME, "train"), "r") as f:
        for key in ("f", "g", "u"):
            np.testing.assert_array_equal(f["t0_fields"][key][...], reference[key])


def test_auto_picks_the_sine_transform():
    assert poisson_data.choose_method(validate(PoissonConfig, {})) == "dst"
    fixed = validate(PoissonConfig, {"solver": {"method": "direct"}})
    assert poisson_data.choose_method(fixed) == "direct"


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["resolution=4"], "resolution: Input should be greater than or equal to 5"),
        (["samples.train=-3"], "samples.train: Input should be greater than or equal to 0"),
        (["solver.method=lu"], "solver.method: 'lu' is not allowed"),
        (["dirichlet.value=-1"], "dirichlet.value: Input should be greater than 0"),
        (["forcing.value=0"], "forcing: value must be nonzero"),
        (
            ["forcing.kind=constant", "dirichlet.kind=zero"],
            "make the forcing or the boundary data random",
        ),
        (["dirichlet.tau=0"], "dirichlet.tau"),
    ],
)
def test_bad_poisson_config_is_one_line(overrides, message, tmp_path, capsys):
    assert_refused(CONFIG, overrides, message, tmp_path / "never", capsys)
