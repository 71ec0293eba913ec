"""SFNO (dense, low-rank, Monarch weights) vs FNO-3D, LSM and FNO-2D on the same Navier-Stokes
data, and the Spectral-Refiner on held-out trajectories, in one run.

The data: FNO-type flow (nu = 1e-3, ``configs/datagen/ns_small.yaml``) solved at
``--resolution`` (default 64), stored at ``--store`` (default 32) and, for the refiner's
super-resolution row, also at the solve grid; ``--train / --valid / --test`` trajectories.
The models: ``configs/train/ns_{sfno,sfno_lowrank,sfno_monarch,fno3d}_small.yaml`` (10 frames
in, 10 out; the same widths, layers, optimizer settings and batch size) and, with
``--models``, the frame-by-frame rollouts ``ns_lsm_small`` (LSM) and ``ns_fno2d_small``
(FNO-2D), each for ``--epochs`` epochs in its own process (peak memory is its own). All are
evaluated on the same test split by ``opsolve.eval.compare.compare_runs``: relative
space-time (Bochner) L2 and H1, parameters, seconds per epoch, peak memory, and each model's
L2 over FNO-3D's (FNO-2D's without FNO-3D). ``--set KEY=VALUE ...`` overrides every model's
config (e.g. ``model.params.width=20``, the paper's SFNO width; the low-rank config asks for
a quarter of the dense parameters, so its rank follows the width), and ``--datagen-set
KEY=VALUE ...`` the data's generation config (e.g. ``time.records=50``).

Then the dense SFNO is refined per test trajectory (``opsolve refine``: output layer enlarged to
every mode of the grid, ``--refine-steps`` Adam steps, rate 0.1 on a cosine, on the H^-1 norm of
the vorticity residual, no data) on the training grid and on the solve grid (zero-shot
super-resolution; skipped with ``--refine-steps 0``); reported: the test relative L2 error to
the truth and the H^-1 residual before and after.

    python benchmarks/ns_operators.py [--resolution 64] [--store 32] [--train 32] [--valid 4]
        [--test 4] [--epochs 10] [--models sfno ... lsm fno2d] [--refine-steps 200]
        [--set KEY=VALUE ...] [--datagen-set KEY=VALUE ...] [--out runs/bench/ns_operators]
        [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from operator_runs import ROOT, machine_line, run, table, train_in_child

MODELS = ("sfno", "sfno_lowrank", "sfno_monarch", "fno3d", "lsm", "fno2d")


def generate_data(
    out: Path, resolution: int, store: int, counts: dict[str, int], extra: list[str]
) -> Path:
    """The shared dataset at ``store`` (and ``OUT_<resolution>`` at the solve grid); one
    already there with every split file is used as it is."""
    from datagen.core.schema import split_file
    from datagen.generate import generate
    from datagen.problems.registry import load_generation_config

    fine = out.with_name(f"{out.name}_{resolution}")
    wanted = [split for split, n in counts.items() if n]
    if all(split_file(d, "ns_bench", s).is_file() for d in (out, fine) for s in wanted):
        print(f"data: {out} (already there)", flush=True)
        return out
    overrides = [
        f"resolution={resolution}",
        f"store_resolution={store}",
        "store_fine=true",
        f"output.dir={out}",
        "name=ns_bench",
    ]
    overrides += [f"samples.{split}={n}" for split, n in counts.items()] + extra
    cfg = load_generation_config(str(ROOT / "configs/datagen/ns_small.yaml"), overrides)
    start = time.perf_counter()
    generate(cfg, progress=False)
    print(f"data: {out} ({time.perf_counter() - start:.1f} s)", flush=True)
    return out


def refinement_rows(run: Path, fine: Path, steps: int, limit: int, device: str) -> dict[str, dict]:
    """Refine ``run`` per test trajectory on its own grid and on the fine dataset."""
    from opsolve.eval.refine import refine_run

    rows = {}
    for grid, extra in (("training grid", []), ("solve grid", [f"refine.data={fine}"])):
        overrides = [f"refine.steps={steps}", f"refine.limit={limit}", *extra]
        report = refine_run(run, overrides, device=device)
        rows[f"{grid} ({report['resolution']}^2)"] = report
        print(f"refine on {grid}: {report['seconds']:.0f} s", flush=True)
    return rows


def refinement_table(rows: dict[str, dict]) -> str:
    lines = [
        "### Spectral-Refiner on held-out test trajectories (dense SFNO)",
        "",
        "| grid | trajectories | steps | rel. L2 before | after | ratio | H^-1 residual before "
        "| after | ratio | truth's residual | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for grid, r in rows.items():
        e, res = r["summary"]["relative_l2"], r["summary"]["residual"]
        lines.append(
            f"| {grid} | {r['trajectories']} | {r['refine']['steps']} | {e['before']:.3e} "
            f"| {e['after']:.3e} | {e['ratio']:.2f}x | {res['before']:.3e} | {res['after']:.3e} "
            f"| {res['ratio']:.1f}x | {r['truth_residual']:.3e} | {r['seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--store", type=int, default=32)
    parser.add_argument("--train", type=int, default=32)
    parser.add_argument("--valid", type=int, default=4)
    parser.add_argument("--test", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--refine-steps", type=int, default=200)
    parser.add_argument("--set", nargs="*", default=[], help="overrides for every model")
    parser.add_argument("--datagen-set", nargs="*", default=[], help="overrides for the data")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench" / "ns_operators")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    args = parser.parse_args()
    counts = {"train": args.train, "valid": args.valid, "test": args.test}
    print(f"{machine_line(args.device)}; {args.store}^2 from {args.resolution}^2, {counts}")
    print(f"model overrides {args.set}; data overrides {args.datagen_set}", flush=True)
    data = generate_data(args.out / "data", args.resolution, args.store, counts, args.datagen_set)
    fine = data.with_name(f"{data.name}_{args.resolution}")

    from opsolve.eval.compare import compare_runs

    runs, costs = {}, {}
    for model in args.models:
        runs[model] = args.out / model
        overrides = [
            f"data.root={data}",
            f"epochs={args.epochs}",
            f"output.dir={runs[model]}",
            f"device={args.device}",
            *args.set,
        ]
        costs[model] = train_in_child(ROOT / "configs/train" / f"ns_{model}_small.yaml", overrides)
        print(f"{model}: {args.epochs} epochs in {costs[model]['seconds']:.0f} s", flush=True)
    rows = compare_runs(list(runs.values()), args.out / "compare", samples=2)["rows"]
    for model in args.models:
        rows[model]["peak_memory_mib"] = costs[model]["peak_mib"]
    reference = next((m for m in ("fno3d", "fno2d") if m in rows), args.models[0])
    report = table(f"Same epochs ({args.epochs})", rows, reference)
    refined = {}
    if "sfno" in runs and args.refine_steps > 0:
        refined = refinement_rows(runs["sfno"], fine, args.refine_steps, args.test, args.device)
        report += "\n" + refinement_table(refined)
    print("\n" + report)
    (args.out / "report.md").write_text(report)
    summary = {g: {k: r[k] for k in ("summary", "truth_residual")} for g, r in refined.items()}
    (args.out / "report.json").write_text(
        json.dumps({"same_epochs": rows, "refine": summary}, indent=2)
    )


if __name__ == "__main__":
    run(main)
