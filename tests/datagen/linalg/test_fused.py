"""The fused CPU stencil kernels against the eager torch expressions they replace."""

import os
import subprocess
import sys

import pytest
import torch

from datagen.linalg import fused, gcrodr
from datagen.linalg.krylov import Jacobi
from datagen.linalg.multigrid import (
    Multigrid,
    OperatorInterpolation,
    StencilOperator,
    footprint_planes,
    galerkin_stencil,
    stencil_entries,
)
from datagen.problems.darcy.physics import DarcyOperator
from tests.conftest import ROOT, SMALL_CONFIG

needs_kernels = pytest.mark.skipif(
    fused.library() is None, reason="no C compiler here: the fused kernels fall back to torch"
)
TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-5}


def eager_modes(apply, u, f, w):
    """A u, f - A u and u + w (f - A u) from the operator's eager application."""
    au = apply(u)
    return au, f - au, u + w * (f - au)


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def inputs(batch, n0, n1, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(batch, n0, n1, generator=gen, dtype=torch.float64).to(dtype) for _ in "ufw"]


def eager_darcy(op):
    return lambda u: op._add_neighbours(op.diagonal() * u, u, -1)


def check_modes(op, kernel, reference, u, f, w) -> None:
    """The operator's ``A u``, ``f - A u`` and sweep, run through the kernels (``kernel(mode)``
    is not None), against ``eager_modes`` of ``reference``, to the dtype's tolerance."""
    expected = eager_modes(reference, u, f, w)
    got = (op(u), op.residual(f, u), op.sweep(f, u, w))
    for mode, (g, e) in enumerate(zip(got, expected, strict=True)):
        assert kernel(mode) is not None
        assert relative(g, e) < TOLERANCE[u.dtype], mode


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", [(2, 9, 12), (1, 1, 6), (3, 7, 1), (2, 16, 15)])
def test_darcy_kernel_equals_the_eager_passes(dtype, shape):
    batch, n0, n1 = shape
    gen = torch.Generator().manual_seed(1)
    a = torch.rand(batch, n0 + 2, n1 + 2, generator=gen, dtype=torch.float64) + 0.5
    op = DarcyOperator.from_coefficient(a).to(dtype)
    u, f, w = inputs(batch, n0, n1, dtype)

    def kernel(mode):
        return fused.darcy5(mode, u, f, w, op._diag, op._wx, op._wy)

    check_modes(op, kernel, eager_darcy(op), u, f, w)


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", [(2, 9, 12), (1, 1, 6), (3, 7, 1), (2, 16, 15)])
def test_nine_point_kernel_equals_the_padded_sum(dtype, shape):
    batch, n0, n1 = shape
    gen = torch.Generator().manual_seed(2)
    stencil = torch.randn(batch, 3, 3, n0, n1, generator=gen, dtype=torch.float64).to(dtype)
    u, f, w = inputs(batch, n0, n1, dtype, seed=3)

    def padded_sum(v):
        p = torch.nn.functional.pad(v, (1, 1, 1, 1))
        return sum(
            stencil[:, i, j] * p[:, i : i + n0, j : j + n1] for i in range(3) for j in range(3)
        )

    def kernel(mode):
        return fused.stencil9(mode, u, f, w, stencil)

    check_modes(StencilOperator(stencil), kernel, padded_sum, u, f, w)


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", [(2, 9, 12), (1, 15, 15), (3, 16, 7), (2, 3, 2)])
def test_transfer_kernels_equal_the_eager_transfers(dtype, shape, monkeypatch):
    """Restriction and in-place prolongation with operator-dependent weights, odd and even
    sides (where the last footprint leaves the grid), against the eager strided passes."""
    batch, n0, n1 = shape
    gen = torch.Generator().manual_seed(7)
    a = torch.rand(batch, n0 + 2, n1 + 2, generator=gen, dtype=torch.float64) + 0.5
    interp = OperatorInterpolation.from_stencil(DarcyOperator.from_coefficient(a).stencil())
    interp = interp.to(dtype)
    fine = torch.randn(batch, n0, n1, generator=gen, dtype=torch.float64).to(dtype)
    coarse = torch.randn(batch, n0 // 2, n1 // 2, generator=gen, dtype=torch.float64).to(dtype)
    assert fused.restrict(fine, interp.weights) is not None
    got = interp.restrict(fine), interp.add_prolonged(fine.clone(), coarse)
    monkeypatch.setattr(fused, "library", lambda: None)
    expected = interp.restrict(fine), interp.add_prolonged(fine.clone(), coarse)
    for g, e in zip(got, expected, strict=True):
        assert relative(g, e) < TOLERANCE[dtype]


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", [(2, 9, 12), (1, 15, 15), (3, 16, 7), (2, 3, 2)])
def test_set_up_kernels_equal_the_parity_split_path(dtype, shape):
    """Interpolation weights and the Galerkin stencil from the fused kernels against the eager
    set-up (:func:`footprint_planes`, ``from_planes``, :func:`galerkin_stencil`, which the
    multigrid tests check against SciPy's assembled P^T A P), for the Darcy operator's five
    entries and for a 9-point stencil's views, odd and even sides."""
    batch, n0, n1 = shape
    gen = torch.Generator().manual_seed(8)
    a = torch.exp(torch.randn(batch, n0 + 2, n1 + 2, generator=gen, dtype=torch.float64))
    darcy = DarcyOperator.from_coefficient(a).to(dtype)
    nine = torch.randn(batch, 3, 3, n0, n1, generator=gen, dtype=torch.float64).to(dtype)
    nine[:, 1, 1] = nine[:, 1, 1].abs() + 9  # a non-zero centre, as every operator has
    for entries in (darcy.stencil_entries(), stencil_entries(nine)):
        planes = footprint_planes(entries, (n0 // 2, n1 // 2))
        weights = OperatorInterpolation.from_planes(planes, (n0, n1)).weights
        got = fused.interpolation(entries)
        assert got is not None and relative(got, weights) < TOLERANCE[dtype]
        expected = galerkin_stencil(planes, weights)
        got = fused.galerkin(entries, weights)
        assert got is not None and relative(got, expected) < TOLERANCE[dtype]
    assert fused.galerkin({(0, 0): darcy.diagonal(), (1, 0): darcy.diagonal().mT}, weights) is None


@needs_kernels
def test_rows_split_over_threads_give_the_same_bits():
    """Above the size where the rows are split over torch's threads, one and two threads give
    identical results (every row is computed the same way by whichever thread owns it)."""
    u, f, w = inputs(3, 129, 130, torch.float32, seed=4)
    stencil = torch.randn(3, 3, 3, 129, 130, generator=torch.Generator().manual_seed(5))
    saved = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            torch.set_num_threads(threads)
            results.append(fused.stencil9(fused.SWEEP, u, f, w, stencil))
    finally:
        torch.set_num_threads(saved)
    assert torch.equal(*results)


@needs_kernels
def test_what_the_kernels_do_not_take_falls_back_to_torch():
    """Strided, broadcast, mismatched or complex input: None from the kernels (the caller's
    eager path then runs), and the operator's answer is still right."""
    a = torch.rand(2, 10, 10, dtype=torch.float64) + 0.5
    op = DarcyOperator.from_coefficient(a)
    u = torch.randn(2, 8, 8, dtype=torch.float64)
    strided = u.mT
    assert fused.darcy5(fused.APPLY, strided, None, None, op._diag, op._wx, op._wy) is None
    torch.testing.assert_close(op(strided), eager_darcy(op)(strided), rtol=1e-12, atol=0)
    broadcast = u[:1].expand(2, 8, 8)
    assert fused.darcy5(fused.APPLY, broadcast, None, None, op._diag, op._wx, op._wy) is None
    assert (
        fused.darcy5(fused.APPLY, u[:1].contiguous(), None, None, op._diag, op._wx, op._wy) is None
    )
    assert fused.darcy5(fused.APPLY, u.float(), None, None, op._diag, op._wx, op._wy) is None
    stencil = torch.randn(2, 3, 3, 8, 8, dtype=torch.complex128)
    assert fused.stencil9(fused.APPLY, u.to(torch.complex128), None, None, stencil) is None


@needs_kernels
@pytest.mark.parametrize("n", [31, 32])
def test_vcycle_with_the_kernels_equals_the_eager_cycle(n, monkeypatch):
    gen = torch.Generator().manual_seed(6)
    a = torch.exp(torch.randn(3, n + 2, n + 2, generator=gen, dtype=torch.float64))
    r = torch.randn(3, n, n, generator=gen, dtype=torch.float64)
    op = DarcyOperator.from_coefficient(a)
    fast = Multigrid(op, (n, n), 3, r, coarsest=3)(r)
    monkeypatch.setattr(fused, "library", lambda: None)
    eager = Multigrid(op, (n, n), 3, r, coarsest=3)(r)
    assert relative(fast, eager) < 1e-12


@needs_kernels
def test_build_is_cached_and_atomic(tmp_path):
    """A second build finds the first's file; a compiler that fails leaves nothing behind."""
    first = fused.build(directory=tmp_path)
    stamp = first.stat().st_mtime_ns
    assert fused.build(directory=tmp_path) == first and first.stat().st_mtime_ns == stamp
    broken = tmp_path / "broken.c"
    broken.write_text("this is not C\n")
    with pytest.raises(subprocess.CalledProcessError):
        fused.build((broken,), tmp_path / "other")
    assert list((tmp_path / "other").iterdir()) == []


def test_builds_are_kept_apart_per_processor(monkeypatch):
    """The cache key holds the processor (``-march=native`` builds for it): another model or
    other feature flags name another file, so a cache shared by two machines never hands one
    the other's build (no compiler needed: the name is computed before any build)."""
    names = set()
    for processor in (b"model name: A\nflags: sse2 avx2", b"model name: A\nflags: sse2"):
        monkeypatch.setattr(fused, "_processor", lambda p=processor: p)
        names.add(fused.library_name())
    assert len(names) == 2 and all(name.startswith("kernels-") for name in names)


def test_no_kernels_when_switched_off_or_without_a_compiler(tmp_path, monkeypatch):
    fused.library.cache_clear()
    try:
        monkeypatch.setenv("OPSOLVE_FUSED", "0")
        assert fused.library() is None
        fused.library.cache_clear()
        monkeypatch.delenv("OPSOLVE_FUSED")
        monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
        assert fused.library() is None
        a = torch.rand(1, 6, 6, dtype=torch.float64) + 0.5
        op = DarcyOperator.from_coefficient(a)
        u = torch.randn(1, 4, 4, dtype=torch.float64)
        torch.testing.assert_close(op(u), eager_darcy(op)(u), rtol=0, atol=0)
    finally:
        fused.library.cache_clear()


def test_a_bad_switch_is_one_line_and_exit_2(tmp_path):
    """``OPSOLVE_FUSED=false`` (neither 0 nor 1): ``datagen generate`` stops before any work
    with one line naming the variable and what is allowed, exit status 2, no traceback (with the
    default solver choice too, which at this size never reaches the kernels)."""
    env = {**os.environ, "OPSOLVE_FUSED": "false"}
    command = [sys.executable, "-m", "datagen.cli", "generate", str(SMALL_CONFIG)]
    command += ["resolution=33", "samples.train=2", "samples.valid=1", "samples.test=1"]
    command += [f"output.dir={tmp_path / 'out'}", "--no-progress"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert result.returncode == 2, result.stderr
    assert (
        "OPSOLVE_FUSED must be 0 (eager torch) or 1 (fused kernels), got 'false'" in result.stderr
    )
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def arnoldi_cycle(batch: int, n: int, k: int, m: int, dtype, budget: list[int], seed: int = 0):
    """A GCRO-DR cycle (:func:`gcrodr._start_cycle`) on random data: k orthonormal recycle rows
    C (B, k, n), a residual, targets that some members reach before others."""
    gen = torch.Generator().manual_seed(seed)
    r = torch.randn(batch, n, generator=gen, dtype=torch.float64).to(dtype)
    c = u = w = None
    if k:
        q, _ = torch.linalg.qr(torch.randn(batch, n, k, generator=gen, dtype=torch.float64))
        c = q.mT.contiguous().to(dtype)
        u, w = (
            torch.randn(batch, k, n, generator=gen, dtype=torch.float64).to(dtype) for _ in "uw"
        )
    norm = r.double().norm(dim=1)
    target = norm * torch.logspace(-1, -6, batch, dtype=torch.float64)
    budget = torch.tensor(budget, dtype=torch.int64)
    return gcrodr._start_cycle(None, None, r, u, w, c, m, target, 1e-14 * norm, budget)


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("k", [0, 3])
@pytest.mark.parametrize("twice", [True, False])
def test_fused_arnoldi_steps_equal_the_eager_steps(dtype, k, twice):
    """Every step of a cycle, fused against eager, on four members whose targets and budgets
    end them at different steps: the basis, Hessenberg, B and rotation arrays and the finish
    masks agree to 1e-12 in float64 (1e-5 in float32). On odd steps the new vector is mostly
    in the span of the basis so far, which makes ``twice`` take the second Gram-Schmidt pass."""
    batch, n, m = 4, 50, 12
    gen = torch.Generator().manual_seed(1)
    matrix = torch.eye(n, dtype=torch.float64) + 0.3 * torch.randn(n, n, generator=gen).double()
    matrix = matrix.to(dtype)
    fast = arnoldi_cycle(batch, n, k, m, dtype, [12, 12, 5, 9])
    slow = arnoldi_cycle(batch, n, k, m, dtype, [12, 12, 5, 9])
    assert fast.fused_step is not None
    first_finish = torch.full((batch,), m)
    for j in range(m):
        v = fast.basis[:, k + j]
        torch.testing.assert_close(v, slow.basis[:, k + j], rtol=0, atol=TOLERANCE[dtype] * 10)
        w_fast = v @ matrix.T + 3 * (j % 2) * fast.basis[:, : k + j + 1].sum(1)
        w_slow = w_fast.clone()
        finish, count = fast.fused_step(w_fast, j, twice)
        expected = gcrodr._eager_step(slow, j, w_slow, twice)
        assert torch.equal(finish, expected) and count == int(expected.sum()), j
        first_finish = torch.where(finish & (first_finish == m), j, first_finish)
        written = {"basis": (fast.basis[:, : k + j + 2], slow.basis[:, : k + j + 2])}
        for name in ("hbar", "q") + (("bmat",) if k else ()):  # zeros / identity elsewhere
            written[name] = (getattr(fast, name), getattr(slow, name))
        for name, (got, want) in written.items():
            assert relative(got, want) < TOLERANCE[dtype], (name, j)
    assert len(set(first_finish.tolist())) >= 3, first_finish  # members end at different steps


@needs_kernels
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("recycle", [0, 6])
def test_solves_with_the_fused_step_equal_the_eager_solves(dtype, recycle, monkeypatch):
    """GMRES(15) and GCRO-DR(15, 6) on a batch of three Jacobi-preconditioned Darcy systems,
    then again on the next three with the recycled spaces: the fused step gives the eager
    path's iterations and solutions (1e-10 in float64, 50 tol in float32); with the kernels
    switched off no cycle has a fused step."""
    n = 14
    gen = torch.Generator().manual_seed(3)
    a = torch.exp(torch.randn(6, n + 2, n + 2, generator=gen, dtype=torch.float64)).to(dtype)
    f = torch.randn(6, n, n, generator=gen, dtype=torch.float64).to(dtype)
    tol = 1e-9 if dtype == torch.float64 else 1e-4

    def solve():
        space, out = None, []
        for part in (slice(0, 3), slice(3, 6)):
            op = DarcyOperator.from_coefficient(a[part])
            result = gcrodr.gcrodr(op, f[part], None, Jacobi(op.diagonal()), tol, 15, recycle,
                                   2000, space)  # fmt: skip
            space = result.recycle
            out.append(result)
        return out

    fast = solve()
    monkeypatch.setattr(fused, "library", lambda: None)
    assert arnoldi_cycle(2, 10, 0, 4, dtype, [4, 4]).fused_step is None
    slow = solve()
    for got, want in zip(fast, slow, strict=True):
        assert bool(got.converged.all())
        assert torch.equal(got.iterations, want.iterations)
        assert relative(got.x, want.x) < (1e-10 if dtype == torch.float64 else 50 * tol)


@needs_kernels
@pytest.mark.parametrize("jacobi", [True, False])
@pytest.mark.parametrize("recycle", [0, 6])
def test_runs_of_steps_in_c_equal_steps_one_at_a_time(jacobi, recycle, monkeypatch):
    """On a Darcy operator with Jacobi or no preconditioner the cycle's steps run in C
    (``ArnoldiStep.run``: preconditioner, operator and step without Python in between); with
    the operands withheld the same kernels run one step at a time from Python. Three members
    ending their cycles at different steps, float64: the same iterations, and solutions to
    1e-13 with Jacobi (the same arithmetic in the same order); without a preconditioner the
    stepwise path applies the operator to a strided basis row, which takes the eager passes,
    and rounding makes them differ by up to 1e-10 (the solve's tolerance) and a member's
    iterations by one."""
    n = 12
    gen = torch.Generator().manual_seed(4)
    a = torch.exp(torch.randn(3, n + 2, n + 2, generator=gen, dtype=torch.float64))
    f = torch.randn(3, n, n, generator=gen, dtype=torch.float64)
    op = DarcyOperator.from_coefficient(a)
    pre = Jacobi(op.diagonal()) if jacobi else None
    r = f.reshape(3, -1)
    norm = r.norm(dim=1)
    cycle = gcrodr._start_cycle(op, pre, r, None, None, None, 10, norm, norm, torch.tensor([9] * 3))
    assert cycle.fused_step is not None and cycle.fused_step.runs

    def solve():
        first = gcrodr.gcrodr(op, f, None, pre, 1e-10, 10, recycle, 3000)
        second = gcrodr.gcrodr(op, f.flip(0), None, pre, 1e-10, 10, recycle, 3000, first.recycle)
        return first, second

    in_c = solve()
    monkeypatch.setattr(gcrodr._Cycle, "_darcy", lambda self: None)
    stepwise = solve()
    for got, want in zip(in_c, stepwise, strict=True):
        assert bool(got.converged.all()) and len(set(got.iterations.tolist())) > 1
        slack = 0 if jacobi else 1
        assert int((got.iterations - want.iterations).abs().max()) <= slack
        assert relative(got.x, want.x) < (1e-13 if jacobi else 1e-10)
