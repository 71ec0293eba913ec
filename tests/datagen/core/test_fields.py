import math

import numpy as np
import pytest
import torch

from datagen.core.fields import cosine_sum, gaussian_random_field, sample_seed, sqrt_eigenvalues


def test_cosine_sum_matches_dense_sum():
    s = 13
    x = torch.randn(3, s, dtype=torch.float64)
    k = torch.arange(s, dtype=torch.float64)
    dense = torch.cos(math.pi * k[:, None] * k[None, :] / (s - 1))
    assert torch.allclose(cosine_sum(x, dim=-1), x @ dense.T, atol=1e-13)
    assert torch.allclose(cosine_sum(x.T, dim=0), (x @ dense.T).T, atol=1e-13)


def test_neumann_field_is_the_karhunen_loeve_sum():
    s, alpha, tau = 9, 2.0, 3.0
    field = gaussian_random_field([7], s, alpha, tau, "neumann")[0]
    noise = torch.randn((s, s), generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    x = torch.linspace(0, 1, s, dtype=torch.float64)
    k = torch.arange(s, dtype=torch.float64)
    basis = torch.cos(math.pi * k[None, :] * x[:, None]) * torch.where(k == 0, 1.0, math.sqrt(2))
    lam = sqrt_eigenvalues(math.pi**2 * (k[:, None] ** 2 + k[None, :] ** 2), alpha, tau)
    expected = basis @ (lam * noise) @ basis.T
    assert torch.allclose(field, expected, atol=1e-12)


@pytest.mark.parametrize("boundary,alpha,tau", [("periodic", 2.5, 7.0), ("neumann", 2.0, 3.0)])
def test_pointwise_variance_matches_covariance(boundary, alpha, tau):
    s, n = 17, 3000
    fields = gaussian_random_field(
        [sample_seed(1, 0, i) for i in range(n)], s, alpha, tau, boundary
    )
    k = torch.arange(s - 1 if boundary == "periodic" else s, dtype=torch.float64)
    if boundary == "periodic":
        k = torch.fft.fftfreq(s - 1, d=1.0 / (s - 1), dtype=torch.float64)
        lam = (
            sqrt_eigenvalues(4 * math.pi**2 * (k[:, None] ** 2 + k[None, :] ** 2), alpha, tau) ** 2
        )
        expected = torch.full((s, s), float(lam.sum()), dtype=torch.float64)
    else:
        x = torch.linspace(0, 1, s, dtype=torch.float64)
        phi2 = torch.cos(math.pi * k[None, :] * x[:, None]) ** 2 * torch.where(k == 0, 1.0, 2.0)
        lam = sqrt_eigenvalues(math.pi**2 * (k[:, None] ** 2 + k[None, :] ** 2), alpha, tau) ** 2
        expected = phi2 @ lam @ phi2.T  # Var u(x_i, y_j) = sum_k lam_k phi_k(x_i)^2 phi_k(y_j)^2
    empirical = fields.var(dim=0)
    # Monte-Carlo: relative std of a variance estimate is sqrt(2/n) ~ 2.6%; averaged over nodes.
    assert abs(float(empirical.mean() / expected.mean()) - 1) < 0.05
    assert float((empirical / expected - 1).abs().max()) < 0.2
    assert abs(float(fields.mean())) < 0.05 * math.sqrt(float(expected.mean()))


def test_periodic_field_wraps():
    field = gaussian_random_field([3, 4], 17, 2.5, 7.0, "periodic")
    assert torch.equal(field[:, 0], field[:, -1]) and torch.equal(field[:, :, 0], field[:, :, -1])
    # zero mean mode: the average over one period vanishes
    assert float(field[:, :-1, :-1].mean(dim=(-2, -1)).abs().max()) < 1e-14


@pytest.mark.parametrize("boundary", ["periodic", "neumann"])
def test_sample_is_the_same_alone_or_in_a_batch(boundary):
    seeds = [sample_seed(0, 0, i) for i in range(6)]
    batch = gaussian_random_field(seeds, 33, 2.0, 3.0, boundary)
    for i in (0, 4):
        alone = gaussian_random_field([seeds[i]], 33, 2.0, 3.0, boundary)[0]
        assert torch.equal(alone, batch[i])
    assert not torch.equal(batch[0], batch[1])


def test_seeds_differ_per_stream_and_index():
    seeds = {sample_seed(0, s, i) for s in range(3) for i in range(100)}
    assert len(seeds) == 300
    assert sample_seed(5, 1, 2) == sample_seed(5, 1, 2)
    assert all(0 <= x < 2**63 for x in seeds)


def test_bad_boundary_is_rejected():
    with pytest.raises(ValueError, match="periodic"):
        gaussian_random_field([0], 9, 2.0, 3.0, "dirichlet")  # type: ignore[arg-type]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_and_cuda_agree():
    seeds = [sample_seed(0, 0, i) for i in range(4)]
    cpu = gaussian_random_field(seeds, 65, 2.0, 3.0, "neumann")
    gpu = gaussian_random_field(seeds, 65, 2.0, 3.0, "neumann", device="cuda").cpu()
    np.testing.assert_allclose(gpu.numpy(), cpu.numpy(), atol=1e-12)
