"""Heat equation: implicit steps against SciPy, order in time, energy, trajectory files."""

import h5py
import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import torch

from datagen.cli import main
from datagen.core.config import validate
from datagen.core.schema import TRAJECTORY_FORMAT, check_schema, split_file
from datagen.problems.darcy.physics import assemble
from datagen.problems.heat.config import HeatConfig
from datagen.problems.heat.physics import THETA, simulate
from datagen.problems.heat.recipe import heat_fields
from datagen.verify import verify_file
from tests.conftest import ROOT, assert_refused

CONFIG = ROOT / "configs" / "datagen" / "heat_small.yaml"
NAME = "heat_small"


def fields(s: int, count: int, family: str = "lognormal") -> tuple[torch.Tensor, torch.Tensor]:
    cfg = validate(HeatConfig, {"resolution": s, "coefficient": {"family": family}})
    a, u0, _ = heat_fields(cfg, "train", np.arange(count), torch.device("cpu"))
    return torch.from_numpy(a), torch.from_numpy(u0)


@pytest.mark.parametrize("scheme", ["backward_euler", "crank_nicolson"])
@pytest.mark.parametrize("preconditioner", ["multigrid", "jacobi"])
def test_one_step_equals_a_scipy_direct_solve(scheme, preconditioner):
    a, u0 = fields(17, 2)
    dt, theta = 2e-3, THETA[scheme]
    out = simulate(a, u0, dt, 1, 1, scheme, preconditioner=preconditioner, tol=1e-12)
    for k in range(2):
        matrix = assemble(a[k].numpy())
        eye = sp.identity(matrix.shape[0])
        x = u0[k, 1:-1, 1:-1].numpy().ravel()
        rhs = x / dt - (1 - theta) * (matrix @ x)
        exact = spla.spsolve((eye / dt + theta * matrix).tocsc(), rhs)
        got = out.frames[k, 1, 1:-1, 1:-1].numpy().ravel()
        assert np.abs(got - exact).max() <= 1e-10 * np.abs(exact).max()
    assert out.frames.shape == (2, 2, 17, 17) and torch.equal(out.frames[:, 0], u0)


def sine_mode_error(scheme: str, steps: int, s: int = 17, t_end: float = 0.1) -> float:
    """Relative error at ``t_end`` of u0 = sin(pi x) sin(pi y), a = 1, against
    ``exp(-lambda t) u0`` with ``lambda`` the discrete eigenvalue: the time error alone."""
    x = torch.linspace(0, 1, s, dtype=torch.float64)
    u0 = (torch.sin(torch.pi * x)[:, None] * torch.sin(torch.pi * x)[None, :])[None]
    h = 1.0 / (s - 1)
    lam = 2 * (4 / h**2) * np.sin(np.pi * h / 2) ** 2
    out = simulate(
        torch.ones(1, s, s, dtype=torch.float64), u0, t_end / steps, steps, 1, scheme, tol=1e-13
    )
    exact = np.exp(-lam * t_end) * u0[0]
    return float((out.frames[0, -1] - exact).abs().max() / exact.abs().max())


@pytest.mark.parametrize("scheme, order", [("backward_euler", 1), ("crank_nicolson", 2)])
def test_order_in_time_on_a_sine_mode(scheme, order):
    """Measured relative errors at t = 0.1 with 5 .. 40 steps: backward Euler 0.36 .. 0.048,
    ratios 1.93, 1.97, 1.98 (first order); Crank-Nicolson 2.6e-2 .. 4.0e-4, ratios 4.03, 4.01,
    4.00 (second order)."""
    errors = [sine_mode_error(scheme, steps) for steps in (5, 10, 20, 40)]
    ratios = [errors[i] / errors[i + 1] for i in range(3)]
    assert all(abs(r - 2**order) < 0.15 * 2**order for r in ratios), (errors, ratios)


@pytest.mark.parametrize("scheme", ["backward_euler", "crank_nicolson"])
def test_energy_decreases(scheme):
    a, u0 = fields(33, 3, "piecewise_constant")
    out = simulate(a, u0, 1e-3, 2, 8, scheme)
    energy = out.frames.square().sum(dim=(-2, -1))
    assert bool((energy[:, 1:] < energy[:, :-1]).all())
    assert bool((out.frames[..., [0, -1], :] == 0).all() and (out.frames[..., [0, -1]] == 0).all())


def generate(tmp_path, name: str, *overrides: str) -> dict:
    out = tmp_path / name
    args = [
        "generate",
        str(CONFIG),
        "resolution=17",
        "samples.train=3",
        "samples.valid=1",
        "samples.test=0",
        "time.end=0.01",
        "time.records=4",
        *overrides,
        f"output.dir={out}",
        "--no-progress",
    ]
    assert main(args) == 0
    with h5py.File(split_file(out, NAME, "train"), "r") as f:
        assert check_schema(f) == [] and f.attrs["opsolve_format"] == TRAJECTORY_FORMAT
        data = {key: f["t0_fields"][key][...] for key in ("u", "a")}
        data["time"] = f["dimensions/time"][...]
        for key in ("method", "steps", "seed", "max_cfl"):
            ds = f["provenance"][key]
            data[key] = ds.asstr()[...] if key == "method" else ds[...]
    data["root"] = out
    return data


def test_trajectory_files_verify_and_do_not_depend_on_the_batch(tmp_path):
    batched = generate(tmp_path, "batched", "solver.method=pcg")
    assert batched["u"].shape == (3, 5, 17, 17) and batched["a"].shape == (3, 17, 17)
    np.testing.assert_allclose(batched["time"], [0, 0.0025, 0.005, 0.0075, 0.01], rtol=1e-6)
    assert set(batched["method"]) == {"crank_nicolson/multigrid"}
    assert batched["steps"].tolist() == [12, 12, 12]  # dt 1e-3 shortened to 2.5e-3 / 3
    cfg = validate(HeatConfig, {"resolution": 17})
    a, u0, seeds = heat_fields(cfg, "train", np.arange(3), torch.device("cpu"))
    np.testing.assert_array_equal(batched["u"][:, 0], u0.astype(np.float32))
    np.testing.assert_array_equal(batched["seed"], seeds)
    path = split_file(batched["root"], NAME, "train")
    report = verify_file(path)
    assert report.ok, report.problems
    alone = generate(tmp_path, "alone", "batch_size=1", "solver.method=pcg")
    np.testing.assert_array_equal(alone["a"], batched["a"])
    np.testing.assert_allclose(alone["u"], batched["u"], rtol=0, atol=1e-6)
    assert report.worst_estimate < 1e-6  # float32 rounding, re-solved record to record
    message = "records that the re-solved steps do not reproduce (first: sample {})"
    with h5py.File(path, "r+") as f:
        f["t0_fields/u"][1, 3] *= 1.0001
    report = verify_file(path)
    assert not report.ok and message.format(1) in report.problems[0]
    assert report.worst_estimate > 5e-5  # measured 7e-5
    with h5py.File(path, "r+") as f:
        f["t0_fields/u"][1, 3] /= 1.0001
        f["t0_fields/a"][2] *= 1.01
    report = verify_file(path)
    assert not report.ok and message.format(2) in report.problems[0]
    assert report.worst_estimate > 1e-3  # measured 3e-3


def test_steps_cg_misses_are_solved_directly(tmp_path):
    """With Jacobi-CG capped at 2 iterations every step falls back to SuperLU, is marked so,
    and gives the same trajectories (the file verifies)."""
    capped = generate(
        tmp_path, "capped", "solver.method=pcg", "solver.preconditioner=jacobi", "solver.maxiter=2"
    )
    assert set(capped["method"]) == {"crank_nicolson/jacobi+direct-fallback:12"}
    reference = generate(tmp_path, "reference", "solver.method=pcg")
    np.testing.assert_allclose(capped["u"], reference["u"], rtol=0, atol=1e-6)
    assert verify_file(split_file(capped["root"], NAME, "train")).ok


def test_direct_method_is_the_cpu_default_and_agrees_with_cg(tmp_path):
    """One SuperLU factorization per trajectory (``auto`` on a CPU) gives the CG trajectories."""
    direct = generate(tmp_path, "direct")  # solver.method: auto
    assert set(direct["method"]) == {"crank_nicolson/direct-superlu"}
    cg = generate(tmp_path, "cg", "solver.method=pcg")
    np.testing.assert_allclose(direct["u"], cg["u"], rtol=0, atol=1e-6)
    assert verify_file(split_file(direct["root"], NAME, "train")).ok


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["resolution=4"], "resolution: Input should be greater than or equal to 5"),
        (["time.dt=0"], "time.dt: Input should be greater than 0"),
        (["time.scheme=forward_euler"], "time.scheme: 'forward_euler' is not allowed"),
        (["samples.valid=-1"], "samples.valid: Input should be greater than or equal to 0"),
        (["solver.preconditioner=ilu"], "solver.preconditioner: 'ilu' is not allowed"),
    ],
)
def test_bad_heat_config_is_one_line(overrides, message, tmp_path, capsys):
    assert_refused(CONFIG, overrides, message, tmp_path / "never", capsys)
