"""Kuramoto-Sivashinsky and Korteweg-de Vries: ETDRK4 against exact and independent solutions,
invariants, and the datasets (batching, resume, files, loaders, bad input)."""

from __future__ import annotations

import math
import shutil

import h5py
import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from datagen.cli import main
from datagen.core.errors import SolverFailure
from datagen.linalg.etdrk4 import ETDRK4, etdrk4_step
from datagen.problems.kdv.physics import equation as kdv_equation
from datagen.problems.ks.physics import equation as ks_equation
from datagen.problems.semilinear.physics import Equation, invariants, simulate
from datagen.verify import verify_file
from tests.conftest import ROOT

KS = ks_equation({"viscosity": 1.0})
KS_SMALL = str(ROOT / "configs" / "datagen" / "ks_small.yaml")
KDV_SMALL = str(ROOT / "configs" / "datagen" / "kdv_small.yaml")
TINY = ["resolution=64", "samples.train=6", "samples.valid=2", "samples.test=2", "batch_size=3",
        "time.records=6", "--no-progress"]  # fmt: skip


def run(u0, eq, length, dt, steps, records=2):
    frames, _ = simulate(
        u0[None], eq, torch.tensor([length]), torch.tensor([dt]), 0, steps, records
    )
    return frames[0]


def grid(n, length):
    return torch.arange(n, dtype=torch.float64) * length / n


def test_a_kdv_soliton_keeps_its_shape_speed_and_invariants():
    n, length, c, x0 = 256, 50.0, 1.0, 15.0
    x = grid(n, length)

    def soliton(t):
        shifted = (x - c * t - x0 + length / 2) % length - length / 2
        return c / 2 / torch.cosh(math.sqrt(c) * shifted / 2) ** 2

    eq = kdv_equation({"a": 6.0, "b": 1.0, "hyperviscosity": 0.0})
    transit, dt = length / c, 0.005
    frames = run(soliton(0.0), eq, length, dt, round(transit / dt / 10), records=11)
    exact = soliton(transit)
    assert ((frames[-1] - exact).norm() / exact.norm()) < 1e-6
    values, _ = invariants(frames.numpy(), length, a=6.0, b=1.0)
    drift = np.abs(values - values[0]).max(axis=0) / np.abs(values[0])
    assert drift.max() < 1e-8


def test_etdrk4_is_fourth_order_and_exact_without_the_nonlinearity():
    n, length = 64, 100.0
    x = grid(n, length)
    u0 = 0.5 * torch.sin(2 * math.pi * x / length) + 0.3 * torch.cos(4 * math.pi * x / length)
    eq = Equation(lambda k: 1j * k**3, -0.5)  # smooth, dispersive
    reference = run(u0, eq, length, 0.05 / 8, 1600)[-1]
    errors = [
        (run(u0, eq, length, dt, round(10.0 / dt))[-1] - reference).norm() for dt in (0.4, 0.2, 0.1)
    ]  # noqa: E501
    ratios = [errors[0] / errors[1], errors[1] / errors[2]]
    assert all(14 < r < 18 for r in ratios), ratios  # measured 15.5, 15.7
    linear = Equation(KS.symbol, 0.0)
    out = run(u0, linear, length, 0.25, 40)[-1]
    k = 2 * math.pi * torch.arange(n // 2 + 1, dtype=torch.float64) / length
    keep = torch.arange(n // 2 + 1) <= (n - 1) // 3
    exact = torch.fft.irfft(
        torch.where(keep, torch.exp(10.0 * KS.symbol(k)) * torch.fft.rfft(u0), 0), n=n
    )
    torch.testing.assert_close(out, exact, rtol=0, atol=1e-13)


def test_etdrk4_coefficients_stay_accurate_for_tiny_eigenvalues():
    """The contour means give phi-functions without cancellation: at h L = 1e-10 the weights
    equal their Taylor limits (f1 = f2 = f3 = h/6 ... times 1, 2, 1 / 6 of h)."""
    h = 0.5
    c = ETDRK4.of(torch.tensor([1e-10, -1e-12], dtype=torch.float64), h)
    torch.testing.assert_close(c.q, torch.full((2,), h / 2, dtype=torch.float64), rtol=1e-9, atol=0)
    torch.testing.assert_close(
        c.f1 + 4 * c.f2 + c.f3, torch.full((2,), h, dtype=torch.float64), rtol=1e-9, atol=0
    )  # noqa: E501
    v = torch.ones(1, 2, dtype=torch.float64)
    assert torch.isfinite(etdrk4_step(v, c, lambda w: -(w**2))).all()


def test_kuramoto_sivashinsky_against_an_independent_integration_to_t_20():
    """Kassam and Trefethen's case against SciPy's DOP853 (rtol 1e-12) on the same Galerkin
    system: 5.0e-6 at h = 1/4 and converging (7.6e-7 at 1/8, 1.0e-7 at 1/16); the mean of u
    stays where it started to round-off."""
    n, length = 128, 32 * math.pi
    x = np.arange(n) * length / n
    u0 = np.cos(x / 16) * (1 + np.sin(x / 16))
    k = 2 * math.pi * np.arange(n // 2 + 1) / length
    keep = np.arange(n // 2 + 1) <= (n - 1) // 3

    def rhs(t, y):
        v = y[: n // 2 + 1] + 1j * y[n // 2 + 1 :]
        u = np.fft.irfft(v, n=n)
        dv = (k**2 - k**4) * v + np.where(keep, -0.5j * k * np.fft.rfft(u * u), 0)
        return np.concatenate([dv.real, dv.imag])

    v0 = np.where(keep, np.fft.rfft(u0), 0)
    ref = solve_ivp(rhs, (0, 20), np.concatenate([v0.real, v0.imag]), method="DOP853",
                    rtol=1e-12, atol=1e-12)  # fmt: skip
    exact = np.fft.irfft(ref.y[: n // 2 + 1, -1] + 1j * ref.y[n // 2 + 1 :, -1], n=n)
    errors = []
    for h in (0.25, 0.125):
        frames = run(torch.tensor(u0), KS, length, h, round(20 / h))
        errors.append(np.linalg.norm(frames[-1].numpy() - exact) / np.linalg.norm(exact))
    assert errors[0] < 1e-5 and errors[1] < errors[0] / 4, errors
    mean = frames.mean(dim=-1)
    assert float((mean - mean[0]).abs().max()) < 1e-13


def test_a_blow_up_names_the_sample_and_time():
    n, length = 64, 22.0
    u0 = torch.sin(2 * math.pi * grid(n, length) / length)[None].repeat(2, 1)
    u0[0] = 0.0  # stays zero
    u0[1] *= 1e3
    eq = Equation(lambda k: 0 * k, -50.0)  # steep, undamped
    with pytest.raises(SolverFailure, match=r"sample 1 blew up at t = "):
        simulate(u0, eq, torch.tensor([length] * 2), torch.tensor([0.5, 0.5]), 0, 40, 4)


@pytest.fixture(scope="module")
def ks_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("ks") / "ks"
    jitter = ["domain.length_jitter=0.1", "time.span_jitter=0.1"]
    assert main(["generate", KS_SMALL, *TINY, *jitter, f"output.dir={out}"]) == 0
    return out


def test_a_trajectory_is_the_same_alone_and_in_a_batch(ks_data, tmp_path):
    """In float64 to round-off (float32 FFTs round differently with the batch size; a resumed
    unit is the same batch, so resumes are bit for bit: ``test_a_killed_run_resumes``)."""
    assert main(["verify", str(ks_data)]) == 0
    jitter = ["domain.length_jitter=0.1", "time.span_jitter=0.1", "precision=float64"]
    roots = {}
    for batch in (3, 1):
        roots[batch] = tmp_path / f"b{batch}"
        args = [KS_SMALL, *TINY, *jitter, f"batch_size={batch}", f"output.dir={roots[batch]}"]
        assert main(["generate", *args]) == 0
    for split in ("train", "valid", "test"):
        a, b = (next((root / "data" / split).glob("*.hdf5")) for root in roots.values())
        with h5py.File(a) as fa, h5py.File(b) as fb:
            np.testing.assert_allclose(
                fa["t0_fields/u"][...], fb["t0_fields/u"][...], rtol=0, atol=1e-10
            )
            lengths = fa["provenance/domain_length"][...]
            np.testing.assert_array_equal(lengths, fb["provenance/domain_length"][...])
            assert np.all(np.abs(lengths / 64.0 - 1) <= 0.1) and np.unique(lengths).size > 1


def test_a_killed_run_resumes_to_the_same_arrays(ks_data, tmp_path, monkeypatch):
    import datagen.generate as generate_module

    out = tmp_path / "killed"
    args = ["generate", KS_SMALL, *TINY, "domain.length_jitter=0.1", "time.span_jitter=0.1",
            f"output.dir={out}"]  # fmt: skip
    real, calls = np.savez, {"n": 0}

    def savez(handle, **arrays):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(handle, **arrays)

    monkeypatch.setattr(generate_module.np, "savez", savez)
    assert main(args) == 130
    monkeypatch.setattr(generate_module.np, "savez", real)
    assert main(args) == 0
    for split in ("train", "valid", "test"):
        a, b = (next((root / "data" / split).glob("*.hdf5")) for root in (ks_data, out))
        with h5py.File(a) as fa, h5py.File(b) as fb:
            np.testing.assert_array_equal(fa["t0_fields/u"][...], fb["t0_fields/u"][...])


def test_the_files_read_with_the_well_and_our_loader(ks_data):
    from the_well.data import WellDataset

    from opsolve.data import TrajectoryDataset

    well = WellDataset(path=str(ks_data), well_split_name="train", n_steps_input=3,
                       n_steps_output=2, use_normalization=False)  # fmt: skip
    assert tuple(well[0]["input_fields"].shape) == (3, 64, 1)
    ours = TrajectoryDataset(ks_data, "train", input_steps=3, output_steps=2, stride=1)
    sample = ours[0]
    assert tuple(sample["x"].shape) == (3, 64) and tuple(sample["y"].shape) == (2, 64)
    with h5py.File(next((ks_data / "data" / "train").glob("*.hdf5"))) as f:
        np.testing.assert_array_equal(sample["x"].numpy(), f["t0_fields/u"][0, :3])
        assert f.attrs["n_spatial_dims"] == 1 and list(f["dimensions"].attrs["spatial_dims"]) == [
            "x"
        ]


def test_verify_catches_wrong_parameters_and_changed_records(ks_data, tmp_path):
    path = tmp_path / "bad.hdf5"
    shutil.copy(next((ks_data / "data" / "train").glob("*.hdf5")), path)
    with h5py.File(path, "r+") as f:
        u = f["t0_fields/u"]
        frames = u[2]
        frames[3] *= 1 + 1e-4
        u[2] = frames
    report = verify_file(path)
    assert (
        not report.ok
        and "records that the re-integrated steps do not reproduce" in report.problems[0]
    )
    with h5py.File(path, "r+") as f:
        f["t0_fields/u"][2] = frames / np.float32(1 + 1e-4)  # back (to rounding)
        f.attrs["viscosity"] = 1.01
    assert not verify_file(path).ok


def test_kdv_data_conserve_their_invariants(tmp_path):
    out = tmp_path / "kdv"
    assert main(["generate", KDV_SMALL, *TINY, f"output.dir={out}"]) == 0
    report = verify_file(next((out / "data" / "train").glob("*.hdf5")))
    assert report.ok and report.worst_estimate < 2e-5, report.problems


@pytest.mark.parametrize(
    "override, message",
    [
        ("resolution=63", "resolution must be even"),
        ("domain.length=-5.0", "domain.length: Input should be greater than 0"),
        ("time.interval=0.33", "interval (0.33) must be a multiple of dt (0.05)"),
        ("initial.kind=kassam_trefethen", "kassam_trefethen is periodic on domain.length = 32 pi"),
        ("initial.wavenumbers=[1,40]", "exceed the 21 modes a 64-point grid keeps"),
    ],
)
def test_bad_input_is_one_line(override, message, tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["generate", KS_SMALL, *TINY, override, f"output.dir={out}"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not out.exists()


def test_a_step_too_large_blows_up_cleanly(tmp_path, capsys):
    out = tmp_path / "big_dt"
    args = ["generate", KDV_SMALL, *TINY, "time.dt=0.5", "time.interval=0.5",
            "initial.amplitude=20.0", f"output.dir={out}"]  # fmt: skip
    assert main(args) == 3
    err = capsys.readouterr().err
    assert "blew up at t = " in err and "lower time.dt" in err and err.count("\n") == 1
    assert not list((out / ".partial").rglob("*.npz"))  # nothing invalid kept


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_agrees_with_the_cpu():
    n, length = 256, 64.0
    x = grid(n, length)
    u0 = 0.3 * torch.sin(2 * math.pi * x / length) + 0.2 * torch.cos(6 * math.pi * x / length)
    batch = u0[None].repeat(4, 1)
    args = (KS, torch.full((4,), length), torch.full((4,), 0.05), 0, 200, 3)
    cpu, _ = simulate(batch, *args)
    gpu, _ = simulate(batch.cuda(), *args)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-10)
