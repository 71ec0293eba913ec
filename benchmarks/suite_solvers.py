"""The solver items of the acceptance run (``benchmarks/gpu_suite.py``): Darcy against the GPU
peers, Helmholtz ``helmholtz_k60``, Navier-Stokes in the torch-cfd setting, 1-D KS / KdV
against exponax. Each item times the code of the side-by-side benchmark it comes from
(``darcy_solvers.py``, the Helmholtz recipe, ``navier_stokes.py``, ``semilinear_1d.py``),
checks every result (true residuals, agreement with the CPU and with the peers) and records
the targets against the 2-core CPU figures of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import importlib.util
import math
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
from darcy_solvers import TOL, coefficients
from darcy_solvers import ours as darcy_ours
from gpu_peers import cupy_jacobi_cg, cupy_missing, jax_vmapped_cg, missing
from suite_report import Context, Section

from datagen.problems.darcy.physics import assemble, darcy_system, solve_direct

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ("piecewise", "lognormal")
RESIDUAL_SLACK = 1.01  # the true residual may read 1% above tol from its own rounding

# The best 2-core CPU peer per Darcy system (seconds), from RESULTS.md, "Re-measured on an idle
# machine, with a warm-up for every row (2026-12-03)": PETSc CG + hypre BoomerAMG in two
# independent processes, set-up included (3-5x faster than PyAMG and SuperLU on this machine).
CPU_BEST_PEER_DARCY_S = {
    ("piecewise", 257): 0.07637,
    ("lognormal", 257): 0.05771,
    ("piecewise", 513): 0.44971,
    ("lognormal", 513): 0.27405,
}
# SciPy SuperLU per Helmholtz system at 257^2, k0 = 60 on the 2-core CPU (seconds), from
# RESULTS.md, "Helmholtz k0 = 60 at 257^2: SuperLU on the 2-core CPU (2026-12-02)".
CPU_SUPERLU_HELMHOLTZ_S = {257: 0.7982}
DARCY_TARGETS = {"cpu": 100.0, "gpu_peer": 10.0}  # at 257^2, per sample, same residual
NS_TARGETS = {"minutes": 10.0, "vs_torch_cfd": 2.0}  # 1,000 trajectories; per step


def relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


# ----------------------------------------------------------------------------- Darcy

DARCY_COLUMNS = [
    "family",
    "s",
    "solver",
    "systems timed",
    "s/system",
    "systems/s",
    "mean iterations",
    "worst residual",
    "ours vs this",
    "ours vs 2-core CPU peer",
]


def darcy_residuals(a: np.ndarray, x: np.ndarray, device: str) -> np.ndarray:
    """True relative residuals ``||f - A x|| / ||f||`` (f = 1) per system, in float64 with the
    matrix-free operator (the SciPy matrix's equal, tested)."""
    at = torch.from_numpy(a).to(device)
    op, rhs = darcy_system(at, torch.ones_like(at))
    r = rhs - op(torch.from_numpy(x).to(device).reshape(rhs.shape))
    norms = torch.linalg.vector_norm(r.flatten(1), dim=1) / torch.linalg.vector_norm(
        rhs.flatten(1), dim=1
    )
    return norms.cpu().numpy()


def time_darcy(a: np.ndarray, device: str, repeats: int) -> tuple[float, np.ndarray, float]:
    """Fastest of ``repeats`` batched solves (``pcg`` + multigrid, as ``datagen generate``):
    seconds per system, solutions (B, (s-2)^2), mean iterations."""
    best, solved = math.inf, []
    for _ in range(repeats):
        out = darcy_ours(a, "multigrid", len(a), device)
        if out[0][1] < best:
            best, solved = out[0][1], out
    return best, np.stack([x for x, _, _ in solved]), float(np.mean([i for *_, i in solved]))


def darcy(ctx: Context) -> Section:
    """Systems per second at each size and family, the CuPy and JAX peers on the same
    systems, residuals, agreement with SuperLU on the CPU, and the targets at 257^2."""
    b = ctx.budget
    title = f"Darcy generation (pcg + multigrid, batch {b['batch']}) against the GPU peers"
    sec = ctx.begin(Section("darcy", title + ", tol 1e-8", DARCY_COLUMNS, b["seconds"]))
    jax_reason, cupy_reason = missing(ctx.peer_python, "jax"), cupy_missing()
    for name, reason in (("CuPy", cupy_reason), ("JAX", jax_reason)):
        if reason:
            sec.note(f"{name} peer skipped: {reason}")
    cases = []
    for size in b["sizes"]:
        darcy_ours(coefficients("piecewise", size, 2), "multigrid", 2, ctx.device)  # warm-up
        for family in FAMILIES:
            case = darcy_case(sec, ctx, family, size)
            if not cupy_reason:
                a = case["a"][: b["peer_samples"]]
                case["cupy"] = darcy_cupy(sec, a, family, size, case["ours"])
            cases.append(case)
    if not jax_reason:
        darcy_jax(sec, ctx, cases)
    for case in cases:
        darcy_targets(sec, ctx, case)
    return sec


def darcy_case(sec: Section, ctx: Context, family: str, size: int) -> dict:
    """Our row of one family and size, its residual and SuperLU checks; the case's record."""
    b = ctx.budget
    a = coefficients(family, size, b["batch"])
    seconds, x, its = time_darcy(a, ctx.device, b["repeats"])
    x = ctx.perturbed("darcy", x)
    worst = float(darcy_residuals(a, x, ctx.device).max())
    cpu = cpu_ratio(family, size, seconds)
    sec.row(family, size, "pcg-mg (ours)", len(a), seconds, 1 / seconds, its, worst, "1.00x", cpu)
    sec.check(f"{family} {size}^2 pcg-mg worst true residual", worst, TOL * RESIDUAL_SLACK)
    gap = max(
        relative(x[i], solve_direct(a[i], np.ones_like(a[i]))[0][1:-1, 1:-1].ravel())
        for i in range(b["agreement_samples"])
    )
    sec.check(f"{family} {size}^2 pcg-mg vs SuperLU on the CPU (rel. L2)", gap, 1e-8)
    return {"family": family, "size": size, "a": a, "ours": seconds}


def darcy_jax(sec: Section, ctx: Context, cases: list[dict]) -> None:
    """The JAX peer on every case's batch (one process): rows and residual checks; a failure
    of the peer itself is a note (the peer is then missing, not wrong)."""
    try:
        solved, where = jax_vmapped_cg(
            ctx.peer_python, [c["a"] for c in cases], TOL, ctx.budget["repeats"]
        )
    except RuntimeError as error:
        sec.note(f"JAX peer skipped: {str(error)[-600:]}")
        return
    sec.note(f"JAX peer on {where}")
    for case, (x, seconds) in zip(cases, solved, strict=True):
        worst = float(darcy_residuals(case["a"], x, ctx.device).max())
        case["jax"] = seconds
        family, size, ratio = case["family"], case["size"], f"{seconds / case['ours']:.1f}x"
        solver = "jax cg + jacobi (vmap)"
        sec.row(family, size, solver, len(x), seconds, 1 / seconds, "-", worst, ratio, "")
        sec.check(f"{family} {size}^2 JAX worst true residual", worst, TOL * RESIDUAL_SLACK)


def cpu_ratio(family: str, size: int, seconds: float) -> str:
    cpu = CPU_BEST_PEER_DARCY_S.get((family, size))
    return f"{cpu / seconds:.0f}x" if cpu else "(no CPU figure)"


def darcy_cupy(sec: Section, a: np.ndarray, family: str, size: int, ours: float) -> float:
    """CuPy's Jacobi CG on the first systems: a row and a residual check; seconds per system."""
    matrices = [assemble(x) for x in a]
    rhs = np.ones(matrices[0].shape[0])
    solved = cupy_jacobi_cg(matrices, rhs, TOL)
    worst = max(
        np.linalg.norm(rhs - m @ x) / np.linalg.norm(rhs)
        for m, (x, _, _) in zip(matrices, solved, strict=True)
    )
    seconds = float(np.median([t for _, t, _ in solved]))
    its = float(np.mean([i for *_, i in solved]))
    sec.row(
        family,
        size,
        "cupy cg + jacobi (per system)",
        len(a),
        seconds,
        1 / seconds,
        its,
        worst,
        f"{seconds / ours:.1f}x",
        "",
    )
    sec.check(f"{family} {size}^2 CuPy worst true residual", worst, TOL * RESIDUAL_SLACK)
    return seconds


def darcy_targets(sec: Section, ctx: Context, case: dict) -> None:
    """>= 100x the best 2-core CPU peer and >= 10x the best GPU peer per system, at 257^2."""
    family, size, ours = case["family"], case["size"], case["ours"]
    on_gpu = ctx.device == "cuda" and size == 257
    cpu = CPU_BEST_PEER_DARCY_S.get((family, size), math.nan)
    sec.check(
        f"{family} {size}^2 ours vs the best 2-core CPU peer",
        cpu / ours,
        DARCY_TARGETS["cpu"],
        kind="target",
        relation=">=",
        applies=on_gpu,
    )
    peers = [case[k] for k in ("cupy", "jax") if case.get(k)]
    best = min(peers) if peers else math.nan
    sec.check(
        f"{family} {size}^2 ours vs the best GPU peer",
        best / ours,
        DARCY_TARGETS["gpu_peer"],
        kind="target",
        relation=">=",
        applies=on_gpu and bool(peers),
    )


# ----------------------------------------------------------------------------- Helmholtz

HELMHOLTZ_COLUMNS = [
    "solver",
    "s",
    "k0",
    "systems",
    "s/system",
    "mean iterations",
    "worst residual",
    "vs SuperLU on the 2-core CPU",
]


def helmholtz(ctx: Context) -> Section:
    """``helmholtz_k60`` solved as the generator does (SKR and GMRES with the shifted-Laplacian
    V-cycle), per system against SuperLU on the 2-core CPU; residuals and SuperLU agreement."""
    from datagen.linalg.sorting import sort_fields
    from datagen.problems.helmholtz.physics import load
    from datagen.problems.helmholtz.physics import solve_direct as helmholtz_direct
    from datagen.problems.helmholtz.recipe import helmholtz_fields, solve_chains
    from datagen.problems.registry import load_generation_config

    b = ctx.budget
    cfg = load_generation_config(ROOT / "configs/datagen/helmholtz_k60.yaml", b["overrides"])
    s, k0, n, sol = cfg.resolution, cfg.wavenumber.k0, b["samples"], cfg.solver
    sec = ctx.begin(
        Section(
            "helmholtz",
            f"Helmholtz helmholtz_k60 ({s}^2, k0 = {k0:g}), SKR and GMRES",
            HELMHOLTZ_COLUMNS,
            b["seconds"],
        )
    )
    k, f, _ = helmholtz_fields(cfg, "train", np.arange(n))
    rhs = load(torch.from_numpy(f)).numpy()
    device = torch.device(ctx.device)
    solve_chains(k[:2], rhs[:2], np.arange(2), 2, cfg, device, False, False)  # warm-up
    cpu = CPU_SUPERLU_HELMHOLTZ_S.get(s, math.nan)
    solutions = {}
    for method in ("skr", "gmres"):
        skr = method == "skr"
        start = time.perf_counter()
        order = sort_fields(k, method=sol.sort) if skr else np.arange(n)
        u, info = solve_chains(
            k, rhs, order, sol.chains if skr else n, cfg, device, skr, skr and sol.warm_start
        )
        seconds = (time.perf_counter() - start) / n
        u = ctx.perturbed("helmholtz", u)
        worst = float(helmholtz_residuals(k, rhs, u, device).max())
        its = float(np.mean([i.iterations for i in info]))
        versus = f"{cpu / seconds:.2f}x" if math.isfinite(cpu) else "(no CPU figure)"
        sec.row(method, s, k0, n, seconds, its, worst, versus)
        sec.check(f"{method} worst true residual", worst, sol.tol * RESIDUAL_SLACK)
        sec.check(
            f"{method} faster per system than SuperLU on the 2-core CPU",
            cpu / seconds,
            1.0,
            kind="target",
            relation=">=",
            applies=ctx.device == "cuda" and s in CPU_SUPERLU_HELMHOLTZ_S,
        )
        solutions[method] = u
    for i in range(b["agreement_samples"]):
        exact, _ = helmholtz_direct(k[i], rhs[i])
        gap = relative(solutions["skr"][i], exact)
        sec.check(f"skr vs SuperLU on the CPU, system {i} (rel. L2)", gap, 1e-6)
    return sec


def helmholtz_residuals(
    k: np.ndarray, rhs: np.ndarray, u: np.ndarray, device: torch.device
) -> np.ndarray:
    """True relative residuals ``||b - A u|| / ||b||`` per system, complex128, with the
    matrix-free operator (equal to the SciPy assembly, tested)."""
    from datagen.problems.helmholtz.physics import HelmholtzOperator

    op = HelmholtzOperator.from_wavenumber(torch.from_numpy(k).to(device))
    b = torch.from_numpy(rhs).to(device)
    r = b - op(torch.from_numpy(u).to(device))
    return (r.flatten(1).norm(dim=1) / b.flatten(1).norm(dim=1)).cpu().numpy()


# ----------------------------------------------------------------------------- Navier-Stokes

NS_COLUMNS = [
    "grid",
    "batch",
    "steps",
    "solver",
    "s per run",
    "trajectory-steps/s",
    "vs torch-cfd",
    "final-state diff",
]


def navier_stokes(ctx: Context) -> Section:
    """Steps per second in the torch-cfd setting, torch-cfd in the same process, the time of
    1,000 trajectories, and agreement with torch-cfd and with the CPU."""
    import navier_stokes as bench

    from datagen.core.memory import retain_freed_memory

    b = ctx.budget
    n, batch, steps, dt = b["grid"], b["batch"], b["steps"], 1e-3
    sec = ctx.begin(
        Section(
            "navier_stokes",
            f"Navier-Stokes, torch-cfd setting ({n}^2, dt 1e-3), batch {batch}",
            NS_COLUMNS,
            b["seconds"],
        )
    )
    retain_freed_memory()
    w = bench.initial_state(n, batch, torch.float32, ctx.device)
    solvers, names = [bench.ours], ["opsolve"]
    if importlib.util.find_spec("torch_cfd") is None:
        sec.note(
            "torch-cfd skipped: not installed in this Python (pip install torch-cfd; it "
            "needs no download at run time)"
        )
    else:
        solvers, names = [bench.torch_cfd, bench.ours], ["torch-cfd", "opsolve"]
    seconds, outs = bench.timed_alternately(solvers, w, steps, dt, b["repeats"])
    mine = ctx.perturbed("navier_stokes", outs[-1])
    ratio = math.nan
    for name, times in zip(names, seconds, strict=True):
        t = statistics.median(times)
        if name == "opsolve" and len(outs) == 2:
            ratio = statistics.median(a / c for a, c in zip(*seconds, strict=True))
            diff = float((mine - outs[0]).norm() / outs[0].norm())
            sec.row(
                f"{n}^2", batch, steps, name, t, batch * steps / t, f"{ratio:.2f}x", f"{diff:.1e}"
            )
            sec.check("final state vs torch-cfd (rel. L2, float32)", diff, 1e-4)
        else:
            sec.row(f"{n}^2", batch, steps, name, t, batch * steps / t, "", "")
    few = w[: b["agreement_batch"]]
    cpu = bench.ours(few.cpu(), b["agreement_steps"], dt)
    here = ctx.perturbed("navier_stokes", bench.ours(few, b["agreement_steps"], dt).cpu())
    sec.check(
        f"{ctx.device} vs CPU after {b['agreement_steps']} steps (rel. L2, float32)",
        float((here - cpu).norm() / cpu.norm()),
        1e-4,
    )
    per_step, minutes = bench.dataset_estimate(
        batch, n, ctx.device, torch.float32, b["estimate_steps"]
    )
    sec.note(
        f"1,000 trajectories (50,000 steps, records at {min(64, n)}^2) in batches of "
        f"{batch}: {per_step * 1e3:.2f} ms per step, {minutes:.1f} minutes"
    )
    full = ctx.device == "cuda" and n == 256
    sec.check(
        "1,000 trajectories of the torch-cfd setting (minutes)",
        minutes,
        NS_TARGETS["minutes"],
        kind="target",
        applies=full,
    )
    sec.check(
        "opsolve vs torch-cfd per step",
        ratio,
        NS_TARGETS["vs_torch_cfd"],
        kind="target",
        relation=">=",
        applies=full and len(outs) == 2,
    )
    return sec


# ----------------------------------------------------------------------------- 1-D KS / KdV

SEMILINEAR_COLUMNS = [
    "equation",
    "N",
    "dt",
    "batch",
    "ours (traj-steps/s)",
    "exponax (traj-steps/s)",
    "ours / exponax",
    "agreement with exponax",
]
SEMILINEAR_AGREEMENT = {"ks": 1e-5, "kdv": 1e-4}  # KdV: exponax is first order there (RESULTS)


def semilinear(ctx: Context) -> Section:
    """KS and KdV trajectory-steps per second against exponax on the same device, agreement
    with exponax (float64) and of this device with the CPU."""
    import semilinear_1d as bench

    b = ctx.budget
    title = f"1-D KS / KdV (ETDRK4), batch {b['batch']}, against exponax"
    sec = ctx.begin(Section("semilinear", title, SEMILINEAR_COLUMNS, b["seconds"]))
    reason = missing(ctx.peer_python, "exponax, jax")
    if reason:
        sec.note(f"exponax skipped: {reason}")
    python = None if reason else ctx.peer_python
    for case, (_, points, dt, *_) in bench.CASES.items():
        u0 = bench.initial_states(b["batch"], points)
        rate = semilinear_rate(ctx, case, u0, None)
        if python:
            try:
                their_rate = semilinear_rate(ctx, case, u0, python)
                gap, where = semilinear_agreement(ctx, case, u0, points, python)
            except subprocess.CalledProcessError as error:  # the peer broke: it is missing
                sec.note(f"exponax skipped: it failed ({error.stderr.strip()[-600:]})")
                python = None
        if python:
            versus = f"{rate / their_rate:.2f}x"
            sec.row(case, points, dt, b["batch"], rate, their_rate, versus, f"{gap:.1e}")
            steps = b["agreement_steps"]
            label = f"{case} agreement with exponax after {steps} steps (rel. L2, float64)"
            sec.check(label, gap, SEMILINEAR_AGREEMENT[case])
            on_gpu = ctx.device == "cuda"
            sec.check(
                f"{case} ours vs exponax",
                rate / their_rate,
                1.5,
                kind="target",
                relation=">=",
                applies=on_gpu,
            )
        else:
            sec.row(case, points, dt, b["batch"], rate, "-", "", "")
        semilinear_cpu_check(sec, ctx, case, u0)
    if python:
        sec.note(f"exponax ran on {where}")
    return sec


def semilinear_rate(ctx: Context, case: str, u0: np.ndarray, python: str | None) -> float:
    """Trajectory-steps per second, float32, best of ``rounds`` x ``repeats``: ours when
    ``python`` is None, else exponax's in that Python."""
    import semilinear_1d as bench

    b = ctx.budget
    seconds = []
    for _ in range(b["rounds"]):
        if python is None:
            seconds += bench.ours(case, u0, b["steps"], b["repeats"], "float32", ctx.device)[1]
        else:
            seconds += bench.exponax(python, case, u0, b["steps"], b["repeats"], "float32")[1]
    return len(u0) * b["steps"] / min(seconds)


def semilinear_agreement(
    ctx: Context, case: str, u0: np.ndarray, points: int, python: str
) -> tuple[float, str]:
    """Relative L2 between ours and exponax from the same states, float64, on exponax's
    Fourier mask; and the device exponax ran on."""
    import semilinear_1d as bench

    steps = ctx.budget["agreement_steps"]
    kept = int(2 / 3 * (points // 2) - 1)
    mine, _ = bench.ours(case, u0, steps, 1, "float64", ctx.device, kept)
    theirs, _, where = bench.exponax(python, case, u0, steps, 1, "float64")
    return relative(ctx.perturbed("semilinear", mine), theirs), where


def semilinear_cpu_check(sec: Section, ctx: Context, case: str, u0: np.ndarray) -> None:
    """Ours on this device against ours on the CPU, float64."""
    import semilinear_1d as bench

    steps = ctx.budget["agreement_steps"]
    here = ctx.perturbed("semilinear", bench.ours(case, u0, steps, 1, "float64", ctx.device)[0])
    cpu = bench.ours(case, u0, steps, 1, "float64", "cpu")[0]
    label = f"{case} {ctx.device} vs CPU after {steps} steps (rel. L2, float64)"
    sec.check(label, relative(here, cpu), 1e-10)
