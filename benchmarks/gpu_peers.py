"""Darcy on the GPU as a CuPy user and as a JAX user would write it: the peers of the
acceptance run (``benchmarks/gpu_suite.py``).

- CuPy: ``cupyx.scipy.sparse.linalg.cg`` on the assembled CSR matrix (the SciPy assembly of
  :func:`datagen.problems.darcy.physics.assemble` moved to the GPU, outside the timer) with a
  Jacobi preconditioner, one system at a time;
- JAX: the matrix-free 5-point operator written with ``jnp`` (arithmetic face averages, the
  discretization of :class:`datagen.problems.darcy.physics.DarcyOperator`), Jacobi, and
  ``jax.scipy.sparse.linalg.cg`` under ``jax.vmap`` over the batch and ``jax.jit``, float64.

Both stop on their recursive residual at half the required tolerance; the caller checks the
true residual of every result. Neither package is a dependency: CuPy is imported here when
present, JAX runs in the Python given (a subprocess, so that its memory preallocation and its
own CUDA context stay out of this process); a missing one is reported as a reason, not an error.
"""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

MAXITER = 20_000

JAX_DARCY = r"""
import json, sys, time
import numpy as np
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
from jax.scipy.sparse.linalg import cg

c = json.loads(sys.argv[1])

def solve(a):
    s = a.shape[-1]
    h2 = (1.0 / (s - 1)) ** 2
    ax = (a[:-1, 1:-1] + a[1:, 1:-1]) / 2  # faces between (i, j) and (i + 1, j), interior j
    ay = (a[1:-1, :-1] + a[1:-1, 1:]) / 2
    diagonal = (ax[:-1] + ax[1:] + ay[:, :-1] + ay[:, 1:]) / h2

    def matvec(u):
        p = jnp.pad(u, 1)
        fx = ax * (p[1:, 1:-1] - p[:-1, 1:-1])
        fy = ay * (p[1:-1, 1:] - p[1:-1, :-1])
        return (fx[:-1] - fx[1:] + fy[:, :-1] - fy[:, 1:]) / h2

    b = jnp.ones((s - 2, s - 2))
    x, _ = cg(matvec, b, tol=c["tol"], atol=0.0, maxiter=c["maxiter"], M=lambda r: r / diagonal)
    return x

run = jax.jit(jax.vmap(solve))
seconds = []
for case in c["cases"]:
    a = jnp.asarray(np.load(case["a"]))
    x = run(a).block_until_ready()  # compile and warm up
    times = []
    for _ in range(c["repeats"]):
        start = time.perf_counter()
        run(a).block_until_ready()
        times.append(time.perf_counter() - start)
    np.save(case["out"], np.asarray(x).reshape(len(x), -1))
    seconds.append(min(times))
print(json.dumps({"seconds": seconds, "device": str(jax.devices()[0]), "jax": jax.__version__}))
"""


def missing(python: str, modules: str) -> str | None:
    """Why ``python`` cannot ``import modules`` (comma-separated), or None when it can."""
    try:
        done = subprocess.run(
            [python, "-c", f"import {modules}"], capture_output=True, text=True, timeout=120
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"{python}: {error}"
    if done.returncode:
        lines = done.stderr.strip().splitlines() or ["(no message)"]
        return f"{python} cannot import {modules} ({lines[-1]})"
    return None


def cupy_missing() -> str | None:
    """Why CuPy cannot run here (not installed, or no CUDA device), or None when it can."""
    try:
        import cupy as cp

        cp.cuda.runtime.getDeviceCount()
    except Exception as error:
        first = (str(error).strip().splitlines() or [""])[0]
        return f"CuPy is not available ({type(error).__name__}: {first})"
    return None


def cupy_jacobi_cg(
    matrices: list, b: np.ndarray, tol: float
) -> list[tuple[np.ndarray, float, int]]:
    """Per system: (solution, seconds, iterations) of CuPy's CG with Jacobi (see
    :func:`cupy_missing` first)."""
    import cupy as cp
    from cupyx.scipy.sparse import csr_matrix
    from cupyx.scipy.sparse.linalg import LinearOperator, cg

    key = "rtol" if "rtol" in inspect.signature(cg).parameters else "tol"
    rhs = cp.asarray(b)
    out = []
    for index, m in enumerate(matrices):
        A = csr_matrix(m)
        inverse = 1.0 / A.diagonal()
        M = LinearOperator(A.shape, matvec=lambda v, d=inverse: v * d, dtype=cp.float64)
        if index == 0:  # compile the kernels once
            cg(A, rhs, M=M, maxiter=5, atol=0.0, **{key: tol / 2})
        count = [0]
        cp.cuda.Device().synchronize()
        start = time.perf_counter()
        x, _ = cg(
            A,
            rhs,
            M=M,
            maxiter=MAXITER,
            atol=0.0,
            **{key: tol / 2},
            callback=lambda _, c=count: c.__setitem__(0, c[0] + 1),
        )
        cp.cuda.Device().synchronize()
        out.append((cp.asnumpy(x), time.perf_counter() - start, count[0]))
    return out


def jax_vmapped_cg(
    python: str, cases: list[np.ndarray], tol: float, repeats: int
) -> tuple[list[tuple[np.ndarray, float]], str]:
    """Per case (coefficients (B, s, s)): (solutions (B, (s-2)^2), seconds per system), and
    the JAX device, from one run of ``python`` (JAX's memory preallocation switched off)."""
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, a in enumerate(cases):
            np.save(Path(tmp) / f"a{i}.npy", a)
            files.append({"a": str(Path(tmp) / f"a{i}.npy"), "out": str(Path(tmp) / f"x{i}.npy")})
        config = {"cases": files, "tol": tol / 2, "maxiter": MAXITER, "repeats": repeats}
        env = {**os.environ, "XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
        done = subprocess.run(
            [python, "-c", JAX_DARCY, json.dumps(config)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if done.returncode:
            raise RuntimeError(f"the JAX peer failed: {done.stderr.strip()[-1500:]}")
        result = json.loads(done.stdout.strip().splitlines()[-1])
        solved = [
            (np.load(f["out"]), seconds / len(a))
            for f, seconds, a in zip(files, result["seconds"], cases, strict=True)
        ]
    return solved, f"{result['device']}, JAX {result['jax']}"
