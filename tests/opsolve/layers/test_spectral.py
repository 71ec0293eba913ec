"""Spectral convolutions (dense / low-rank / Monarch weights) and Monarch matrices."""

import math

import pytest
import torch

from opsolve.layers.monarch import (
    MonarchDFT,
    balanced_factor,
    monarch_apply,
    monarch_project,
    monarch_shapes,
    monarch_to_dense,
)
from opsolve.layers.spectral import (
    SpectralConv,
    dense_num_parameters,
    gather_modes,
    kept_shape,
    low_rank_num_parameters,
    monarch_num_parameters,
    scatter_modes,
)

WEIGHTS = ("dense", "low_rank", "monarch")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def random_monarch(n_in, n_out, blocks, dtype=torch.float64):
    shape_l, shape_r = monarch_shapes(n_in, n_out, blocks)
    return torch.randn(*shape_l, dtype=dtype), torch.randn(*shape_r, dtype=dtype)


def identity_weight(channels, modes):
    """Dense weight that passes every kept mode through unchanged."""
    eye = torch.eye(channels, dtype=torch.cdouble)
    return eye.reshape(channels, channels, *([1] * len(modes))).expand(
        channels, channels, *kept_shape(modes)
    )


# ---------------------------------------------------------------- Monarch DFT


@pytest.mark.parametrize("n", [16, 64, 85, 256])
def test_monarch_dft_equals_fft_at_init(n):
    x = torch.randn(4, n, dtype=torch.complex128)
    dft = MonarchDFT(n, dtype=torch.float64)
    torch.testing.assert_close(dft(x), torch.fft.fft(x), atol=1e-5, rtol=0)
    # float32 storage (complex64 arithmetic): same to 1e-5 relative to the spectrum's size
    dft32 = MonarchDFT(n)
    ref = torch.fft.fft(x.to(torch.complex64))
    err = (dft32(x.to(torch.complex64)) - ref).abs().max() / ref.abs().max()
    assert err < 1e-5


def test_monarch_dft_factor_sizes_inverse_and_prime_fallback():
    assert balanced_factor(85) == (5, 17)
    assert balanced_factor(256) == (16, 16)
    assert balanced_factor(13) == (1, 13)  # prime: dense DFT matrix in R
    x = torch.randn(3, 13, 7, dtype=torch.complex128)
    inv = MonarchDFT(13, inverse=True, norm="ortho", dtype=torch.float64)
    torch.testing.assert_close(inv(x, dim=1), torch.fft.ifft(x, dim=1, norm="ortho"))
    assert MonarchDFT(64).num_parameters() == 2 * 64 * (8 + 8)


# ---------------------------------------------------------------- Monarch matrices


@pytest.mark.parametrize(("n_in", "n_out", "blocks"), [(16, 16, 4), (12, 8, 4), (6, 10, 2)])
def test_monarch_apply_matches_dense_product(n_in, n_out, blocks):
    left, right = random_monarch(n_in, n_out, blocks)
    x = torch.randn(5, n_in, dtype=torch.float64)
    torch.testing.assert_close(monarch_apply(left, right, x), x @ monarch_to_dense(left, right).T)


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-5), (torch.float64, 1e-10)])
def test_projection_recovers_monarch_matrix(dtype, tol):
    for n_in, n_out, blocks in [(16, 16, 4), (64, 64, 8), (12, 8, 2)]:
        m = monarch_to_dense(*random_monarch(n_in, n_out, blocks, dtype))
        rec = monarch_to_dense(*monarch_project(m, blocks))
        assert ((rec - m).norm() / m.norm()).item() < tol
    mc = monarch_to_dense(*random_monarch(16, 16, 4, torch.complex128))
    assert (monarch_to_dense(*monarch_project(mc, 4)) - mc).abs().max() < 1e-10


def test_projection_never_worse_than_random_monarch():
    dense = torch.randn(64, 64, dtype=torch.float64)
    best = (monarch_to_dense(*monarch_project(dense, 8)) - dense).norm()
    assert best <= dense.norm()
    for _ in range(10):
        left, right = random_monarch(64, 64, 8)
        candidate = monarch_to_dense(left, right)
        scale = (candidate * dense).sum() / (candidate * candidate).sum()  # best rescaling
        assert best <= (scale * candidate - dense).norm()


# ---------------------------------------------------------------- the layer


def direct_reference(x, weight, modes):
    """FNO 2-D layer by explicit DFT sums (no torch.fft), float64."""
    n1, n2 = x.shape[-2:]
    m1, m2 = modes
    k1 = torch.cat([torch.arange(m1), torch.arange(-m1, 0)]).double()
    k2 = torch.arange(m2).double()
    s1, s2 = torch.arange(n1).double(), torch.arange(n2).double()
    e1 = torch.exp(-2j * math.pi * torch.outer(s1, k1) / n1)  # (n1, 2 m1)
    e2 = torch.exp(-2j * math.pi * torch.outer(s2, k2) / n2)  # (n2, m2)
    coef = torch.einsum("bixy,xk,yl->bikl", x.cdouble(), e1, e2) / (n1 * n2)
    out = torch.einsum("bikl,iokl->bokl", coef, weight)
    real_weight = torch.where(k2 == 0, 1.0, 2.0)  # conjugate half of the last axis
    field = torch.einsum("bokl,xk,yl,l->boxy", out, e1.conj(), e2.conj(), real_weight.cdouble())
    return field.real


def test_dense_2d_matches_direct_dft_reference():
    conv = SpectralConv(3, 2, (2, 3)).double()
    x = torch.randn(2, 3, 8, 10, dtype=torch.float64)
    expected = direct_reference(x, conv.dense_weight(), (2, 3))
    torch.testing.assert_close(conv(x), expected)


def test_shapes_1d_2d_3d():
    assert SpectralConv(3, 5, 6)(torch.randn(2, 3, 32)).shape == (2, 5, 32)
    assert SpectralConv(3, 5, (4, 5))(torch.randn(2, 3, 16, 12)).shape == (2, 5, 16, 12)
    conv3 = SpectralConv(3, 5, (4, 4, 3), "monarch", blocks=1)
    assert conv3(torch.randn(2, 3, 16, 16, 6)).shape == (2, 5, 16, 16, 6)
    assert conv3(torch.randn(1, 3, 8, 8, 6), out_size=(None, 12, 20)).shape == (1, 5, 8, 12, 20)


@pytest.mark.parametrize(
    "sizes, modes", [((64,), (16,)), ((12, 10), (4, 3)), ((8, 10, 9), (2, 3, 5)), ((6, 6), (3, 4))]
)
def test_gather_and_scatter_the_kept_modes(sizes, modes):
    """The block copies equal indexing by the frequencies 0..m-1 and -m..-1 (non-last axes),
    0..m-1 (last), and scattering puts them back into an otherwise zero spectrum."""
    x_ft = torch.fft.rfftn(torch.randn(2, 3, *sizes), dim=tuple(range(-len(sizes), 0)))
    pairs = zip(modes, sizes, strict=True)
    index = [torch.cat([torch.arange(m), torch.arange(n - m, n)]) for m, n in pairs]
    index[-1] = torch.arange(modes[-1])
    grid = torch.meshgrid(index, indexing="ij")
    kept = gather_modes(x_ft, modes)
    assert torch.equal(kept, x_ft[(..., *grid)])
    spectrum = x_ft.shape[2:]
    expected = torch.zeros_like(x_ft)
    expected[(..., *grid)] = kept
    assert torch.equal(scatter_modes(kept, modes, spectrum), expected)


def test_resampling_3d_reproduces_band_limited_field():
    """Identity mode weights: T = 10 -> 40 steps and 64 -> 128 points sample the same field."""
    modes = (4, 4, 4)

    def field(n, t):
        x = torch.arange(n, dtype=torch.float64) / n
        s = torch.arange(t, dtype=torch.float64) / t
        xx, yy, tt = torch.meshgrid(x, x, s, indexing="ij")
        a = torch.cos(2 * math.pi * (3 * xx - 2 * yy)) * torch.sin(2 * math.pi * 3 * tt)
        b = 0.5 + torch.sin(2 * math.pi * (xx + 2 * yy + tt))
        return torch.stack([a, b])[None]  # (1, 2, n, n, t)

    conv = SpectralConv(2, 2, modes, out_size=(128, 128, 40)).double()
    conv.load_dense_weight(identity_weight(2, modes))
    out = conv(field(64, 10))
    assert out.shape == (1, 2, 128, 128, 40)
    torch.testing.assert_close(out, field(128, 40), atol=1e-10, rtol=0)


def test_full_rank_low_rank_equals_dense():
    dense = SpectralConv(6, 4, (3, 3)).double()
    low = SpectralConv(6, 4, (3, 3), "low_rank", rank=4).double()
    low.load_dense_weight(dense.dense_weight())
    x = torch.randn(2, 6, 12, 12, dtype=torch.float64)
    torch.testing.assert_close(low(x), dense(x), atol=1e-10, rtol=1e-10)


def test_monarch_layer_matches_its_dense_weight_and_projection():
    monarch = SpectralConv(8, 8, (3, 3), "monarch").double()  # default blocks: 2 (tie 2/4)
    dense = SpectralConv(8, 8, (3, 3)).double()
    dense.load_dense_weight(monarch.dense_weight())
    x = torch.randn(2, 8, 12, 12, dtype=torch.float64)
    torch.testing.assert_close(monarch(x), dense(x))
    projected = SpectralConv(8, 8, (3, 3), "monarch", blocks=monarch.mixer.blocks).double()
    projected.load_dense_weight(dense.dense_weight())
    torch.testing.assert_close(projected(x), dense(x))


def test_learnable_monarch_transform_equals_fft_at_init():
    learn = SpectralConv(3, 3, (3, 4, 3), transform="monarch", grid=(12, 85, 8))
    learn.double()
    fft = SpectralConv(3, 3, (3, 4, 3)).double()
    fft.load_dense_weight(learn.dense_weight())
    x = torch.randn(2, 3, 12, 85, 8, dtype=torch.float64)
    torch.testing.assert_close(learn(x), fft(x))
    per_direction = 2 * 12 * (3 + 4) + 2 * 85 * (5 + 17)  # 2 n (p + q) per axis, in and out
    assert learn.num_parameters() == fft.num_parameters() + 2 * per_direction
    with pytest.raises(ValueError, match="built for grid"):
        learn(torch.randn(1, 3, 12, 80, 8))


# ---------------------------------------------------------------- counts and flops


def test_parameter_counts():
    cin, cout, modes = 64, 64, (12, 12, 5)
    k = 24 * 24 * 5
    dense = SpectralConv(cin, cout, modes)
    assert dense.num_parameters() == dense_num_parameters(cin, cout, modes) == 2 * 64 * 64 * k
    low = SpectralConv(cin, cout, modes, "low_rank", rank=8)
    assert low.num_parameters() == low_rank_num_parameters(cin, cout, modes, 8) == 2 * 8 * 128 * k
    mon = SpectralConv(cin, cout, modes, "monarch")
    assert mon.mixer.blocks == 8  # sqrt(64)
    assert mon.num_parameters() == monarch_num_parameters(cin, cout, modes, 8)
    assert mon.num_parameters() == 2 * k * 2 * 64 * 8  # 2 n sqrt(n) complex entries per mode
    assert low.num_parameters() <= 0.25 * dense.num_parameters()
    assert mon.num_parameters() <= 0.25 * dense.num_parameters()
    # rectangular Monarch: in out / b + out b complex entries per mode
    rect = SpectralConv(32, 16, 4, "monarch", blocks=4)
    assert rect.num_parameters() == 2 * 4 * (32 * 16 // 4 + 16 * 4)
    # a float rank is a fraction of the dense count
    assert SpectralConv(64, 64, 4, "low_rank", rank=0.25).mixer.rank == 8


def test_flops_follow_the_convention():
    conv = SpectralConv(4, 6, (4, 4))
    n = 32 * 32
    fft = 2.5 * n * math.log2(n)
    expected = 2 * (8 * 4 * 6 * 8 * 4 + fft * 4 + fft * 6)
    assert conv.flops((2, 4, 32, 32)) == int(expected)
    low = SpectralConv(64, 64, (4, 4), "low_rank", rank=8)
    mon = SpectralConv(64, 64, (4, 4), "monarch")
    dense = SpectralConv(64, 64, (4, 4))
    shape = (1, 64, 32, 32)
    assert low.flops(shape) < dense.flops(shape) and mon.flops(shape) < dense.flops(shape)


# ---------------------------------------------------------------- errors and gradients


def test_clear_errors():
    with pytest.raises(ValueError, match="unknown spectral weight 'tucker'.*dense, low_rank"):
        SpectralConv(4, 4, (4, 4), "tucker")
    with pytest.raises(ValueError, match=r"too large for input grid \(16, 16\).*axis 0"):
        SpectralConv(4, 4, (12, 4))(torch.randn(1, 4, 16, 16))
    with pytest.raises(ValueError, match=r"axis 1 \(n=16\) allows at most 9"):
        SpectralConv(4, 4, (4, 10))(torch.randn(1, 4, 16, 16))
    with pytest.raises(ValueError, match="output grid"):
        SpectralConv(4, 4, (4, 4))(torch.randn(1, 4, 16, 16), out_size=(6, 16))
    with pytest.raises(ValueError, match="blocks=5 does not divide.*allowed: 1, 2, 4, 8, 16, 32"):
        SpectralConv(32, 32, (4, 4), "monarch", blocks=5)
    with pytest.raises(ValueError, match=r"expects input \(batch, channels, n1, n2\)"):
        SpectralConv(4, 4, (4, 4))(torch.randn(1, 4, 16))
    with pytest.raises(ValueError, match="expects 4 input channels"):
        SpectralConv(4, 4, (4, 4))(torch.randn(1, 3, 16, 16))
    with pytest.raises(ValueError, match="rank=9 out of range"):
        SpectralConv(8, 8, 4, "low_rank", rank=9)
    with pytest.raises(ValueError, match="needs grid="):
        SpectralConv(4, 4, (4, 4), transform="monarch")


@pytest.mark.parametrize("weight", WEIGHTS)
def test_gradients_flow(weight):
    conv = SpectralConv(4, 4, (3, 3), weight, rank=2, blocks=2)
    x = torch.randn(2, 4, 12, 12, requires_grad=True)
    conv(x).square().mean().backward()
    for name, param in conv.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_learnable_transform_gets_gradients():
    conv = SpectralConv(2, 2, (2, 3), transform="monarch", grid=(16, 16))
    conv(torch.randn(1, 2, 16, 16)).square().mean().backward()
    for dft in (*conv.dft_in, *conv.dft_out):
        assert torch.isfinite(dft.left.grad).all() and dft.left.grad.abs().sum() > 0
