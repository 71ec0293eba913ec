"""PETSc as a benchmark peer: solve a set of sparse systems with one KSP configuration.

Runs in the Python where petsc4py lives (the system one for Debian's ``python3-petsc4py``), not
in the project's environment; it imports numpy and petsc4py only. The benchmarks start it
through :func:`petsc_runner.run_petsc` and exchange ``.npz`` files:

- input: ``indptr`` (n + 1,), ``indices`` (nnz,) the CSR pattern shared by all systems,
  ``data`` (N, nnz) the entries of each, ``rhs`` (N, n), ``select`` (M,) which systems this
  process solves, ``options`` the PETSc options string (e.g. ``-ksp_type cg -pc_type hypre``);
- output: ``x`` (M, n), ``seconds`` (M,) set-up + solve of each system, ``iterations`` (M,),
  ``reason`` (M,) the KSP converged reason.

Each matrix is assembled before its timer starts; the timer holds the KSP creation, the
preconditioner set-up and the solve. One untimed warm-up solve of the first system is done
first (library loading). With ``--cpu`` the process pins itself to that core; with
``--wait`` it prints ``ready`` and waits for a line on stdin, so that several processes start
together.

Usage: python3 petsc_peer.py IN.npz OUT.npz [--cpu K] [--wait]
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inp")
    parser.add_argument("out")
    parser.add_argument("--cpu", type=int, default=None)
    parser.add_argument("--wait", action="store_true")
    args = parser.parse_args()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    import petsc4py

    petsc4py.init([])
    from petsc4py import PETSc

    data = np.load(args.inp)
    indptr = data["indptr"].astype(PETSc.IntType)
    indices = data["indices"].astype(PETSc.IntType)
    values, rhs, select = data["data"], data["rhs"], data["select"]
    options = str(data["options"])
    n = len(indptr) - 1
    opts = PETSc.Options()
    for key in list(opts.getAll()):
        opts.delValue(key)
    opts.insertString(options)

    def matrix(k: int):
        return PETSc.Mat().createAIJ(size=(n, n), csr=(indptr, indices, values[k]))

    def solve(mat, b_array: np.ndarray):
        b = PETSc.Vec().createWithArray(np.ascontiguousarray(b_array, dtype=np.float64))
        x = b.duplicate()
        x.set(0.0)
        start = time.perf_counter()
        ksp = PETSc.KSP().create()
        ksp.setOperators(mat)
        ksp.setInitialGuessNonzero(False)
        ksp.setFromOptions()
        ksp.setUp()
        ksp.solve(b, x)
        seconds = time.perf_counter() - start
        result = (x.getArray().copy(), seconds, ksp.getIterationNumber(), ksp.getConvergedReason())
        ksp.destroy()
        return result

    solve(matrix(int(select[0])), rhs[int(select[0])])  # warm-up, untimed
    mats = [matrix(int(k)) for k in select]
    if args.wait:
        print("ready", flush=True)
        sys.stdin.readline()
    out = [solve(m, rhs[int(k)]) for m, k in zip(mats, select, strict=True)]
    np.savez(
        args.out,
        x=np.stack([o[0] for o in out]),
        seconds=np.array([o[1] for o in out]),
        iterations=np.array([o[2] for o in out]),
        reason=np.array([o[3] for o in out]),
    )


if __name__ == "__main__":
    main()
