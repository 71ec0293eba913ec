"""MgNO vs FNO vs TFNO on the same generated Darcy data, at the same budget, in one run.

The data: FNO-type Darcy samples (piecewise-constant coefficient 12 / 3, f = 1) generated
directly at ``--resolution`` (default 85) by ``configs/datagen/darcy_small.yaml`` with
``--train / --valid / --test`` samples (default 1000 / 100 / 100). The models: the published
settings of ``configs/train/darcy_{mgno,fno,tfno}.yaml`` (widths, layers, modes, losses,
optimizers, schedulers and batch sizes as the papers; only the number of epochs is set here).
Every schedule is compressed to the epochs given, so each model anneals as in its full protocol:
OneCycle runs over them as it is, and FNO's StepLR (halve every 100 of 500 epochs) halves every
``epochs / 5``.

Two budgets:

- same epochs: every model trains ``--epochs`` epochs;
- same wall-clock: every model trains for about the time the slowest one took in the
  same-epochs round; its epochs are that time over its own measured seconds per epoch (so its
  learning-rate schedule completes), never fewer than ``--epochs``.

Each training runs in its own process (``opsolve train``) so that its peak memory (resident set on
the CPU, allocated CUDA memory on a GPU) is its own. Every run is evaluated on the same test split
with ``opsolve.eval.compare.compare_runs``. Reports test relative L2 and H1 (means), parameters,
epochs, seconds per epoch, peak memory, and each model's L2 over FNO's.

    python benchmarks/darcy_operators.py [--resolution 85] [--train 1000] [--valid 100]
        [--test 100] [--epochs 3] [--models mgno fno tfno] [--out runs/bench/darcy_operators]
        [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import time
from pathlib import Path

from operator_runs import ROOT, machine_line, run, table, train_in_child


def generate_data(
    out: Path,
    resolution: int,
    counts: dict[str, int],
    config: Path = ROOT / "configs/datagen/darcy_small.yaml",
    name: str = "darcy_bench",
    extra: tuple[str, ...] = (),
) -> Path:
    """The shared dataset (``config`` at ``resolution``, the split sizes ``counts``, more
    ``extra`` overrides); one already there with every split file is used as it is."""
    from datagen.core.config import load_config
    from datagen.core.schema import split_file
    from datagen.generate import generate
    from datagen.problems.darcy.config import DarcyConfig

    if all(split_file(out, name, split).is_file() for split, n in counts.items() if n):
        print(f"data: {out} (already there)", flush=True)
        return out
    overrides = [f"resolution={resolution}", f"output.dir={out}", f"name={name}"]
    overrides += [f"samples.{split}={n}" for split, n in counts.items()] + list(extra)
    cfg = load_config(DarcyConfig, config, overrides)
    start = time.perf_counter()
    generate(cfg, progress=False)
    print(f"data: {out} ({time.perf_counter() - start:.1f} s)", flush=True)
    return out


def compressed_schedule(config: Path, epochs: int) -> list[str]:
    """Overrides that fit a config's step schedule into ``epochs``: ``step_size`` scaled by
    ``epochs`` over the published epochs, so the rate halves as often as in the full protocol
    (OneCycle and cosine already run over the epochs given)."""
    import yaml

    published = yaml.safe_load(config.read_text())
    scheduler = published.get("scheduler", {})
    if scheduler.get("name") != "step":
        return []
    step = max(1, round(scheduler["step_size"] * epochs / published["epochs"]))
    return [f"scheduler.step_size={step}"]


def train_one(model: str, data: Path, run: Path, epochs: int, counts: dict, device: str) -> dict:
    """Train one model in a child process; returns its seconds and peak memory (MiB)."""
    config = ROOT / "configs" / "train" / f"darcy_{model}.yaml"
    overrides = [
        f"data.root={data}",
        "data.subsample=1",
        f"data.limit.train={counts['train']}",
        f"data.limit.valid={counts['valid']}",
        f"data.limit.test={counts['test']}",
        f"epochs={epochs}",
        f"output.dir={run}",
        f"device={device}",
        *compressed_schedule(config, epochs),
    ]
    return train_in_child(config, overrides)


def round_of(name: str, plan: dict[str, int], args, data: Path, counts: dict) -> dict:
    """Train every model for its planned epochs, then compare them on the test split."""
    from opsolve.eval.compare import compare_runs

    runs, costs = {}, {}
    for model, epochs in plan.items():
        run = args.out / name / model
        costs[model] = train_one(model, data, run, epochs, counts, args.device)
        runs[model] = run
        print(f"{name}: {model} {epochs} epochs in {costs[model]['seconds']:.0f} s", flush=True)
    result = compare_runs(list(runs.values()), args.out / name / "compare", samples=2)
    rows = result["rows"]
    for model in plan:
        rows[model]["peak_memory_mib"] = costs[model]["peak_mib"]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolution", type=int, default=85)
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--valid", type=int, default=100)
    parser.add_argument("--test", type=int, default=100)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--models", nargs="+", default=["mgno", "fno", "tfno"])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench" / "darcy_operators")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    args = parser.parse_args()
    counts = {"train": args.train, "valid": args.valid, "test": args.test}
    print(f"{machine_line(args.device)}; {args.resolution}^2, {counts}", flush=True)
    data = generate_data(args.out / "data", args.resolution, counts)

    plan = dict.fromkeys(args.models, args.epochs)
    same_epochs = round_of("same epochs", plan, args, data, counts)
    budget = max(r["train_seconds"] for r in same_epochs.values())
    plan = {
        model: max(args.epochs, math.floor(budget / same_epochs[model]["seconds_per_epoch"]))
        for model in args.models
    }
    same_time = {m: r for m, r in same_epochs.items() if plan[m] == args.epochs}
    longer = {m: e for m, e in plan.items() if e > args.epochs}
    if longer:
        same_time.update(round_of("same wall-clock", longer, args, data, counts))
    same_time = {m: same_time[m] for m in args.models}

    report = table(f"Same epochs ({args.epochs})", same_epochs, "fno")
    report += "\n" + table(f"Same wall-clock (about {budget:.0f} s of training)", same_time, "fno")
    print("\n" + report)
    (args.out / "report.md").write_text(report)
    (args.out / "report.json").write_text(
        json.dumps({"same_epochs": same_epochs, "same_wall_clock": same_time}, indent=2)
    )
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(f"children CPU time {usage.ru_utime + usage.ru_stime:.0f} s")


if __name__ == "__main__":
    run(main)
