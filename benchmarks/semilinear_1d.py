"""1-D Kuramoto-Sivashinsky and Korteweg-de Vries: our ETDRK4 against exponax, side by side.

    python benchmarks/semilinear_1d.py [--exponax-python PATH] [--batch 64 256 1024]
        [--steps 500] [--repeats 7] [--rounds 2] [--device cpu|cuda]

Both integrate the same batch of initial states (LPSDA-type sums of random sines) with
4th-order ETDRK on the same grid, step and precision: ours through
:func:`datagen.problems.semilinear.physics.simulate` (torch), exponax 0.2.0 (JAX) with
``KuramotoSivashinskyConservative`` / ``KortewegDeVries`` at ``order=4``, no hyperviscosity,
``jax.vmap`` over the batch and ``jax.lax.scan`` over the steps under ``jax.jit``. Reported:
trajectory-steps per second (batch x steps / seconds) in float32, the ratio ours / exponax, and
the agreement of the two from the same state after 100 steps in float64 (relative L2). Times
are the minimum over ``repeats`` calls after a warm-up (and JIT compilation), in ``rounds``
alternating rounds of ours and exponax: the minimum is robust to other load on a shared
machine, and both sides are treated alike. exponax keeps the Fourier modes
``m <= (2/3)(N/2) - 1`` and we ``m <= (N - 1) / 3`` (one more at N = 256, still alias-free);
the agreement is taken with exponax's mask on both (``kept``). exponax runs in the Python
given by ``--exponax-python`` (it needs JAX; not a dependency of this package); without it only
our rows are printed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from datagen.problems.kdv.physics import equation as kdv_equation
from datagen.problems.ks.physics import equation as ks_equation
from datagen.problems.semilinear.physics import simulate

CASES = {  # name: (domain length, points, dt, our equation, exponax stepper and keywords)
    "ks": (64.0, 256, 0.05, ks_equation({"viscosity": 1.0}),
           "KuramotoSivashinskyConservative", {}),
    "kdv": (128.0, 256, 0.02, kdv_equation({"a": 1.0, "b": 1.0, "hyperviscosity": 0.0}),
            "KortewegDeVries", {"convection_scale": 1.0, "dispersivity": 1.0,
                                "hyper_diffusivity": 0.0, "conservative": True}),
}  # fmt: skip
AGREEMENT_STEPS = 100
SOLITON = dict(length=50.0, points=256, speed=1.0, start=15.0, end=10.0)  # a = 6, b = 1

SOLITON_EXPONAX = r"""
import json, math, sys
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import numpy as np
import exponax as ex
c = json.loads(sys.argv[1])
x = np.arange(c["points"]) * c["length"] / c["points"]
def soliton(t):
    s = (x - c["speed"] * t - c["start"] + c["length"] / 2) % c["length"] - c["length"] / 2
    return c["speed"] / 2 / np.cosh(math.sqrt(c["speed"]) * s / 2) ** 2
errors = {}
for dt in c["dts"]:
    stepper = ex.stepper.KortewegDeVries(1, c["length"], c["points"], dt, convection_scale=6.0,
        dispersivity=1.0, hyper_diffusivity=0.0, conservative=True, order=4)
    u = jax.lax.fori_loop(0, round(c["end"] / dt), lambda i, v: stepper(v),
                          jnp.asarray(soliton(0.0))[None])
    errors[str(dt)] = float(np.linalg.norm(np.asarray(u[0]) - soliton(c["end"]))
                            / np.linalg.norm(soliton(c["end"])))
print(json.dumps(errors))
"""

EXPONAX = r"""
import json, sys, time
import numpy as np
import jax
config = json.loads(sys.argv[1])
if config["precision"] == "float64":
    jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import exponax as ex
stepper = getattr(ex.stepper, config["stepper"])(
    1, config["length"], config["points"], config["dt"], order=4, **config["keywords"]
)
u0 = jnp.asarray(np.load(config["states"]))[:, None, :]  # (B, 1, N)
step = jax.vmap(stepper)

@jax.jit
def run(u):
    return jax.lax.scan(lambda v, _: (step(v), None), u, None, length=config["steps"])[0]

out = run(u0).block_until_ready()  # compile and warm up
seconds = []
for _ in range(config["repeats"]):
    start = time.perf_counter()
    run(u0).block_until_ready()
    seconds.append(time.perf_counter() - start)
np.save(config["out"], np.asarray(out[:, 0]))
print(json.dumps({"seconds": seconds, "device": str(jax.devices()[0])}))
"""


def initial_states(batch: int, points: int, seed: int = 0) -> np.ndarray:
    """LPSDA-type initial data: sums of 10 sines, amplitudes U(-0.5, 0.5), wavenumbers 1..3."""
    rng = np.random.default_rng(seed)
    j = np.arange(points) / points
    amplitude = rng.uniform(-0.5, 0.5, (batch, 10, 1))
    phase = rng.uniform(0, 2 * math.pi, (batch, 10, 1))
    wavenumber = rng.integers(1, 4, (batch, 10, 1))
    return (amplitude * np.sin(2 * math.pi * wavenumber * j + phase)).sum(axis=1)


def ours(
    case: str,
    u0: np.ndarray,
    steps: int,
    repeats: int,
    precision: str,
    device: str,
    kept: int | None = None,
):
    length, points, dt, equation, _, _ = CASES[case]
    dtype = getattr(torch, precision)
    state = torch.from_numpy(u0).to(device, dtype)
    batch = len(u0)
    args = (equation, torch.full((batch,), length), torch.full((batch,), dt), steps, 1, 1)

    def once():
        frames, _ = simulate(state, *args, kept=kept)
        if device == "cuda":
            torch.cuda.synchronize()
        return frames[:, 0]

    out = once()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        once()
        seconds.append(time.perf_counter() - start)
    return out.cpu().double().numpy(), seconds


def exponax(python: str, case: str, u0: np.ndarray, steps: int, repeats: int, precision: str):
    length, points, dt, _, stepper, keywords = CASES[case]
    with tempfile.TemporaryDirectory() as tmp:
        states, out = Path(tmp) / "u0.npy", Path(tmp) / "out.npy"
        np.save(states, u0.astype(precision))
        config = dict(stepper=stepper, length=length, points=points, dt=dt, keywords=keywords,
                      states=str(states), out=str(out), steps=steps, repeats=repeats,
                      precision=precision)  # fmt: skip
        result = subprocess.run([python, "-c", EXPONAX, json.dumps(config)], capture_output=True,
                                text=True, check=True)  # fmt: skip
        timing = json.loads(result.stdout.strip().splitlines()[-1])
        return np.load(out).astype(np.float64), timing["seconds"], timing["device"]


def soliton_errors(python: str | None, dts: list[float]) -> list[tuple[float, float, float]]:
    """(dt, ours, exponax) relative L2 errors of a KdV soliton (a = 6, b = 1) after t = 10,
    float64: exponax keeps the real part of its contour means also for KdV's imaginary symbol,
    which makes its ETDRK4 first order there."""
    c = SOLITON
    x = torch.arange(c["points"], dtype=torch.float64) * c["length"] / c["points"]

    def soliton(t: float) -> torch.Tensor:
        s = (x - c["speed"] * t - c["start"] + c["length"] / 2) % c["length"] - c["length"] / 2
        return c["speed"] / 2 / torch.cosh(math.sqrt(c["speed"]) * s / 2) ** 2

    equation = kdv_equation({"a": 6.0, "b": 1.0, "hyperviscosity": 0.0})
    exact = soliton(c["end"])
    theirs = {}
    if python:
        config = json.dumps({**c, "dts": dts})
        result = subprocess.run([python, "-c", SOLITON_EXPONAX, config], capture_output=True,
                                text=True, check=True)  # fmt: skip
        theirs = json.loads(result.stdout.strip().splitlines()[-1])
    rows = []
    for dt in dts:
        frames, _ = simulate(soliton(0.0)[None], equation, torch.tensor([c["length"]]),
                             torch.tensor([dt]), 0, round(c["end"] / dt), 2)  # fmt: skip
        ours_error = float((frames[0, -1] - exact).norm() / exact.norm())
        rows.append((dt, ours_error, theirs.get(str(dt), float("nan"))))
    return rows


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text}")
    return value


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exponax-python", help="a Python with exponax 0.2.0 and JAX")
    parser.add_argument("--batch", type=positive, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--steps", type=positive, default=500)
    parser.add_argument("--repeats", type=positive, default=7)
    parser.add_argument("--rounds", type=positive, default=2)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args()
    if args.exponax_python:
        try:
            probe = subprocess.run([args.exponax_python, "-c", "import exponax, jax"],
                                   capture_output=True, text=True).returncode  # fmt: skip
        except OSError:
            probe = 1
        if probe:
            parser.error(f"--exponax-python {args.exponax_python}: cannot import exponax and jax")
    machine = f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}"
    print(f"# 1-D semilinear, {machine}, {args.device}, {time.strftime('%Y-%m-%d')}")
    print(f"{args.steps} steps, float32, minimum of {args.rounds} x {args.repeats}; agreement: "
          f"float64 after "
          f"{AGREEMENT_STEPS} steps\n")  # fmt: skip
    print("| equation | N | dt | batch | ours (traj-steps/s) | exponax (traj-steps/s) "
          "| ours / exponax | agreement (rel. L2) |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|")
    for case, (_, points, dt, *_) in CASES.items():
        for batch in args.batch:
            u0 = initial_states(batch, points)
            ours_s, ex_s = [], []
            for _ in range(args.rounds):
                ours_s += ours(case, u0, args.steps, args.repeats, "float32", args.device)[1]
                if args.exponax_python:
                    ex_s += exponax(args.exponax_python, case, u0, args.steps, args.repeats,
                                    "float32")[1]  # fmt: skip
            ours_rate = batch * args.steps / min(ours_s)
            row = [case, str(points), f"{dt:g}", str(batch), f"{ours_rate:,.0f}"]
            if args.exponax_python:
                ex_rate = batch * args.steps / min(ex_s)
                kept = int(2 / 3 * (points // 2) - 1)  # exponax's mask, for the comparison
                mine, _ = ours(case, u0, AGREEMENT_STEPS, 1, "float64", args.device, kept)
                theirs, _, _ = exponax(args.exponax_python, case, u0, AGREEMENT_STEPS, 1,
                                       "float64")  # fmt: skip
                agreement = np.linalg.norm(mine - theirs) / np.linalg.norm(theirs)
                row += [f"{ex_rate:,.0f}", f"{ours_rate / ex_rate:.2f}x", f"{agreement:.1e}"]
            else:
                row += ["(no --exponax-python)", "", ""]
            print("| " + " | ".join(row) + " |", flush=True)
    print("\nKdV soliton (a = 6, b = 1, L = 50, N = 256) after t = 10, float64, relative L2:\n")
    print("| dt | ours | exponax |\n|---|---|---|")
    for dt, mine, theirs in soliton_errors(args.exponax_python, [0.02, 0.01, 0.005]):
        print(f"| {dt:g} | {mine:.1e} | {theirs:.1e} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
