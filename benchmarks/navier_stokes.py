"""Navier-Stokes solver throughput: ours vs torch-cfd, side by side in one run.

Same problem (FNO forcing 0.1 (sin 2 pi (x + y) + cos 2 pi (x + y)), nu = 1e-3, 2/3 dealiasing),
same grid, same time step, same scheme (Crank-Nicolson / Heun: torch-cfd's IMEXStepper(order=2)),
same precision, same initial vorticities (developed flow: a GRF advanced to t = 1 by our solver).
Both run in one process with the same torch thread count (``--threads``, default torch's), timed
alternately (torch-cfd, ours, torch-cfd, ours, ...) so that a change in the machine's load hits
both. Reports trajectory-steps per second (batch x steps / seconds, median of repeats), the
speed-up (median of the per-repeat ratios) and the relative difference of the two solvers' final
states (a check that both solve the same thing).

Ours steps the pruned spectrum (``datagen.problems.navier_stokes.physics.Pruned``: the modes the 2/3
rule keeps) with the Basdevant form of the advection (two inverse and two forward pruned real FFTs
per evaluation); torch-cfd steps the full real-FFT spectrum with the advective form (four inverse
and one forward 2-D real FFT per evaluation, plus one of the unbatched forcing). Both are the same
Galerkin-truncated system. With ``--precision float64`` torch-cfd still builds its wavenumbers and
forcing in float32 (its state and arithmetic are float64), so the final states then differ by ~1e-6
rather than by round-off.

    python benchmarks/navier_stokes.py [--device cpu|cuda] [--sizes 64 256] [--batch 16]
        [--steps 200] [--dt 1e-3] [--repeats 5] [--threads N] [--precision float32] [--estimate]

``--estimate`` also times the torch-cfd setting (256^2 solve, dt 1e-3, 50,000 steps stored as
100 records at 64^2) per batch of ``--estimate-batch`` trajectories and extrapolates the time
of a 1,000-trajectory dataset. Needs ``pip install torch-cfd``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from datagen.core.fields import gaussian_random_field
from datagen.core.memory import retain_freed_memory
from datagen.problems.navier_stokes import physics as ns


def initial_state(n: int, batch: int, dtype: torch.dtype, device: str) -> torch.Tensor:
    """Developed vorticity (batch, n, n): FNO-normalised GRF advanced to t = 1."""
    w0 = 2**0.5 * gaussian_random_field(list(range(batch)), n + 1, 2.5, 7.0, "periodic")
    w0 = w0[:, :-1, :-1].to(device=device, dtype=dtype)
    forcing = ns.fno_forcing(n, dtype=dtype, device=device)
    out = ns.simulate(w0, forcing, nu=1e-3, dt=1e-2, record_times=[1.0])
    return out.frames[:, -1]


def ours(w: torch.Tensor, steps: int, dt: float) -> torch.Tensor:
    """What ``datagen.problems.navier_stokes.physics.simulate`` does between two records
    (Heun / CN)."""
    n = w.shape[-1]
    grid = ns.pruned_grid(n, w.dtype, w.device)
    lin = ns.linear_symbol(grid, 1e-3)
    f_hat = ns.to_pruned(ns.to_spectral(ns.fno_forcing(n, dtype=w.dtype, device=w.device)))
    w_hat = ns.to_pruned(ns.to_spectral(w))

    def explicit(state: torch.Tensor) -> torch.Tensor:
        return ns.pruned_nonlinear_term(state, f_hat, grid)

    for _ in range(steps):
        w_hat = ns.step_heun_cn(w_hat, dt, lin, explicit)
    return ns.pruned_irfft2(w_hat)


def torch_cfd(w: torch.Tensor, steps: int, dt: float) -> torch.Tensor:
    from torch_cfd import grids
    from torch_cfd.forcings import SinCosForcing
    from torch_cfd.spectral import IMEXStepper, NavierStokes2DSpectral

    n = w.shape[-1]
    grid = grids.Grid((n, n), domain=((0, 1), (0, 1)), device=w.device)
    forcing = SinCosForcing(grid=grid, scale=0.1, diam=1.0, wave_number=1, vorticity=True)
    equation = NavierStokes2DSpectral(
        viscosity=1e-3, grid=grid, smooth=True, forcing_fn=forcing, step_fn=IMEXStepper(order=2)
    ).to(w.device)
    w_hat, _ = equation(torch.fft.rfft2(w), dt, steps=steps)
    return torch.fft.irfft2(w_hat, s=(n, n))


def timed_alternately(solvers, w, steps, dt, repeats):
    """Seconds per run of each solver (lists, one entry per repeat) and the last outputs."""
    sync = torch.cuda.synchronize if w.is_cuda else (lambda: None)
    for fn in solvers:
        fn(w, 2, dt)  # warm-up (plans, allocator)
    sync()
    seconds, outs = [[] for _ in solvers], [None] * len(solvers)
    for _ in range(repeats):
        for i, fn in enumerate(solvers):
            began = time.perf_counter()
            outs[i] = fn(w, steps, dt)
            sync()
            seconds[i].append(time.perf_counter() - began)
    return seconds, outs


def dataset_estimate(
    batch: int, n: int, device: str, dtype: torch.dtype, steps: int = 500
) -> tuple[float, float]:
    """Seconds per step of a batch in the torch-cfd setting (``n``^2 solve, dt 1e-3, records
    at 64^2, or ``n``^2 if smaller, as ``datagen generate`` stores them) and the minutes that
    1,000 trajectories of 50,000 steps (t = 0..50) would take in batches of ``batch``.

    Timed over ``steps`` steps (five records) after a two-step warm-up."""
    w0 = 2**0.5 * gaussian_random_field(list(range(batch)), n + 1, 2.5, 7.0, "periodic")
    w0 = w0[:, :-1, :-1].to(device, dtype)
    forcing = ns.fno_forcing(n, dtype=dtype, device=device)
    store = min(64, n)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    ns.simulate(w0, forcing, nu=1e-3, dt=1e-3, record_times=[0.002], store_size=store)
    sync()
    began = time.perf_counter()
    times = [steps * 1e-3 * j / 5 for j in range(1, 6)]
    ns.simulate(w0, forcing, nu=1e-3, dt=1e-3, record_times=times, store_size=store)
    sync()
    per_step = (time.perf_counter() - began) / steps
    return per_step, per_step * 50_000 * 1000 / batch / 60


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--dt", type=float, default=1e-3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (both solvers)")
    parser.add_argument("--precision", choices=["float32", "float64"], default="float32")
    parser.add_argument("--estimate", action="store_true")
    parser.add_argument("--estimate-batch", type=int, default=250)
    args = parser.parse_args()
    retain_freed_memory()  # for both solvers (datagen's CLI does the same)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.precision)
    name = torch.cuda.get_device_name() if args.device == "cuda" else platform.processor()
    print(
        f"device {args.device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} "
        f"threads, {args.precision}, batch {args.batch}, {args.steps} steps of dt {args.dt}"
    )
    print("| grid | solver | s per run | trajectory-steps/s | vs torch-cfd | final-state diff |")
    print("|---|---|---|---|---|---|")
    for n in args.sizes:
        w = initial_state(n, args.batch, dtype, args.device)
        (s_ref, s_ours), (ref, mine) = timed_alternately(
            [torch_cfd, ours], w, args.steps, args.dt, args.repeats
        )
        t_ref, t_ours = statistics.median(s_ref), statistics.median(s_ours)
        speedup = statistics.median(a / b for a, b in zip(s_ref, s_ours, strict=True))
        diff = float((mine - ref).norm() / ref.norm())
        work = args.batch * args.steps
        print(f"| {n}^2 | torch-cfd | {t_ref:.3f} | {work / t_ref:,.0f} | 1.00x | |")
        print(
            f"| {n}^2 | opsolve | {t_ours:.3f} | {work / t_ours:,.0f} | {speedup:.2f}x "
            f"| {diff:.1e} |"
        )
    if args.estimate:
        per_step, minutes = dataset_estimate(args.estimate_batch, 256, args.device, dtype)
        print(
            f"torch-cfd setting (256^2, dt 1e-3, t = 0..50, records at 64^2): "
            f"{per_step * 1e3:.2f} ms per step for {args.estimate_batch} trajectories; "
            f"1,000 trajectories ~ {minutes:.1f} minutes"
        )


if __name__ == "__main__":
    main()
