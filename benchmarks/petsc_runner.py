"""Run PETSc (``petsc_peer.py``) from the project's Python: systems out, solutions back.

petsc4py is not a dependency of the package: it lives in another Python (by default the
system one, where Debian's ``python3-petsc4py`` installs it; ``PETSC_DIR`` is passed through).
:func:`petsc_missing` says why it cannot be used, :func:`run_petsc` solves a list of SciPy
matrices with one KSP configuration in one or several independent processes, each pinned to
its own core and started together.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp

PEER = Path(__file__).with_name("petsc_peer.py")
DEFAULT_PYTHON = "/usr/bin/python3"  # the system Python (Debian's python3-petsc4py)

#: KSP configurations of the Darcy peers (CG, true relative residual as the stopping norm).
CG = "-ksp_type cg -ksp_norm_type unpreconditioned -ksp_max_it 20000"
DARCY_PEERS = {
    "petsc-hypre": CG + " -pc_type hypre -pc_hypre_type boomeramg",
    "petsc-gamg": CG + " -pc_type gamg",
    "petsc-icc": CG + " -pc_type icc",
}


def petsc_missing(python: str) -> str | None:
    """None when ``python`` imports petsc4py, else one line saying why not."""
    try:
        done = subprocess.run(
            [python, "-c", "import petsc4py; petsc4py.init([]); from petsc4py import PETSc"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"PETSc rows skipped: cannot run {python} ({error})"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"PETSc rows skipped: petsc4py not importable by {python} ({last})"
    return None


def run_petsc(
    matrices: list[sp.csr_matrix],
    rhs: np.ndarray,
    options: str,
    tol: float,
    processes: int = 1,
    python: str = DEFAULT_PYTHON,
) -> list[tuple[np.ndarray, float, int]]:
    """Solve ``matrices[k] x = rhs[k]`` with PETSc, ``processes`` independent processes.

    Args:
        matrices: N CSR matrices with one sparsity pattern (n, n).
        rhs: (n,) shared or (N, n).
        options: PETSc options of the KSP and PC; ``-ksp_rtol tol -ksp_atol 0`` are added.
        processes: system k goes to process ``k % processes``, pinned to core
            ``k % processes`` of this process's affinity set; all start together.

    Returns:
        per system ``(x (n,), seconds, iterations)``. One process: each system's own set-up +
        solve time. Several: the busiest process's total divided by N for every system (the
        throughput at that many cores, as for a batch).
    """
    csr = [m.tocsr() for m in matrices]
    for m in csr:
        m.sort_indices()
    indptr, indices = csr[0].indptr, csr[0].indices
    if any(
        not np.array_equal(m.indptr, indptr) or not np.array_equal(m.indices, indices) for m in csr
    ):
        raise ValueError("run_petsc: the matrices must share one sparsity pattern")
    count = len(csr)
    b = np.broadcast_to(np.asarray(rhs, dtype=np.float64), (count, csr[0].shape[0]))
    data = np.stack([m.data for m in csr])
    cores = sorted(os.sched_getaffinity(0))
    if processes > len(cores):
        raise ValueError(f"run_petsc: {processes} processes but {len(cores)} cores allowed")
    full = f"{options} -ksp_rtol {tol:g} -ksp_atol 0"
    with tempfile.TemporaryDirectory() as tmp:
        jobs = []
        for p in range(processes):
            select = np.arange(p, count, processes)
            inp, out = Path(tmp) / f"in{p}.npz", Path(tmp) / f"out{p}.npz"
            np.savez(
                inp,
                indptr=indptr,
                indices=indices,
                data=data,
                rhs=b,
                select=select,
                options=np.array(full),
            )
            command = [python, str(PEER), str(inp), str(out), "--cpu", str(cores[p]), "--wait"]
            env = dict(os.environ, OMP_NUM_THREADS="1")
            proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            jobs.append((proc, select, out))
        for proc, _, _ in jobs:
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"PETSc peer failed: {proc.communicate()[1].strip()[-400:]}")
        for proc, _, _ in jobs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results: list = [None] * count
        totals = []
        for proc, select, out in jobs:
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"PETSc peer failed: {err.strip()[-400:]}")
            got = np.load(out)
            totals.append(float(got["seconds"].sum()))
            for i, k in enumerate(select):
                results[k] = (got["x"][i], float(got["seconds"][i]), int(got["iterations"][i]))
    if processes > 1:
        share = max(totals) / count
        results = [(x, share, its) for x, _, its in results]
    return results


if __name__ == "__main__":  # pragma: no cover - a quick check: python petsc_runner.py
    print(petsc_missing(sys.argv[1] if len(sys.argv) > 1 else DEFAULT_PYTHON) or "petsc4py ok")
