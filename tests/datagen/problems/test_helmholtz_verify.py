"""`datagen verify` on Helmholtz files: the preconditioned error estimate and its threshold."""

import shutil

import h5py
import numpy as np
import pytest
import torch

from datagen.cli import main
from datagen.core.schema import split_file
from datagen.problems.helmholtz.physics import (
    HelmholtzOperator,
    error_estimates,
    mass_weights,
    positive_shift_solve,
)
from datagen.verify import verify_file
from tests.conftest import ROOT

CONFIG = ROOT / "configs" / "datagen" / "helmholtz_small.yaml"


@pytest.fixture(scope="module")
def helmholtz_file(tmp_path_factory):
    """A tiny float32 Helmholtz split: 33 x 33 nodes, k0 = 15 (11 points per wavelength)."""
    out = tmp_path_factory.mktemp("data") / "helmholtz"
    args = [
        "generate",
        str(CONFIG),
        "resolution=33",
        "wavenumber.k0=15",
        "samples.train=4",
        "samples.valid=0",
        "samples.test=0",
        "batch_size=4",
        "solver.method=direct",
        f"output.dir={out}",
        "--no-progress",
    ]
    assert main(args) == 0
    return split_file(out, "helmholtz_small", "train")


def test_positive_shift_solve_inverts_the_shifted_natural_laplacian():
    s, h = 17, 1 / 16
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, s, s)) + 1j * rng.standard_normal((2, s, s))
    c = np.array([100.0, 30.0])
    z = positive_shift_solve(x, h, c)
    area = mass_weights(s, torch.zeros(1, dtype=torch.float64))
    # M = W (-Laplace_N + c) is the Helmholtz operator with k^2 -> -c and no absorption
    op = HelmholtzOperator(torch.from_numpy(-c)[:, None, None] * area.to(torch.complex128), h)
    np.testing.assert_allclose(op(torch.from_numpy(z)).numpy(), area.numpy() * x, atol=1e-12)


def test_generated_helmholtz_file_verifies(helmholtz_file, capsys):
    assert main(["verify", str(helmholtz_file)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK") and "4 samples" in out
    report = verify_file(helmholtz_file)
    # float32 rounding: about 0.4 eps rho (~1e-7), far below rho (tol + 16 eps) (~5e-6)
    assert report.ok and report.worst_estimate < 3e-7 and report.threshold < 1e-5
    assert report.worst_residual > report.worst_estimate  # the plain residual sees 1/h^2


def test_perturbed_helmholtz_solution_fails_naming_the_sample(helmholtz_file, tmp_path, capsys):
    path = tmp_path / helmholtz_file.name
    shutil.copy(helmholtz_file, path)
    with h5py.File(path, "r+") as f:
        k = f["t0_fields/k"][...].astype(np.float64)
        source = f["t0_fields/f"][...].astype(np.float64)
        u = f["t0_fields/u_re"][:, 0] + 1j * f["t0_fields/u_im"][:, 0]
        u = u.astype(np.complex128)
        estimate, _ = error_estimates(k, source, 1.001 * u)
        np.testing.assert_allclose(estimate, 1e-3, rtol=1e-3)  # a scaling by 1 + d gives d
        f["t0_fields/u_re"][2] *= 1.001
        f["t0_fields/u_im"][2] *= 1.001
    assert main(["verify", str(path)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("FAIL") and "1 samples fail" in out and "sample 2" in out
    with h5py.File(path, "r+") as f:  # a wave number off by 1% in another sample
        f["t0_fields/k"][0] *= 1.01
    report = verify_file(path)
    assert not report.ok and "2 samples fail" in report.problems[0]
    assert "first: sample 0" in report.problems[0]


def test_nonpositive_wavenumber_and_nonfinite_field_fail(helmholtz_file, tmp_path, capsys):
    path = tmp_path / helmholtz_file.name
    shutil.copy(helmholtz_file, path)
    with h5py.File(path, "r+") as f:
        f["t0_fields/k"][3] *= -1.0
    assert main(["verify", str(path)]) == 1
    assert "wave number k <= 0 (first: sample 3)" in capsys.readouterr().out
    with h5py.File(path, "r+") as f:
        f["t0_fields/u_im"][1, 0, 3, 3] = np.nan
    assert main(["verify", str(path)]) == 1
    assert "field 'u_im' has NaN or inf" in capsys.readouterr().out
