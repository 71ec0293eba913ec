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
        [--device cpu] [--plan MODEL=EPOCHS ...] [--side-by-side]

``--plan lsm=3 fno=16`` trains one round only, each model for its own epochs (an equal
wall-clock chosen by hand from measured seconds per epoch; the table shows the seconds each
took). ``--side-by-side`` trains a round's models at the same time, each on one thread pinned to
its own core, so that on a machine with a core per model they run under the same conditions in
the time of the longest.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import time
from pathlib import Path

from operator_runs import ROOT, finish_training, machine_line, run, start_training, table


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


def train_overrides(model: str, data: Path, run: Path, epochs: int, counts: dict, device: str):
    """``(config, overrides)`` that train ``model``'s published config on the shared data."""
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
    return config, overrides


def round_of(name: str, plan: dict[str, int], args, data: Path, counts: dict) -> dict:
    """Train every model for its planned epochs, then compare them on the test split. One
    model after another, or with ``args.side_by_side`` all at once, one thread each, each
    pinned to its own core."""
    from opsolve.eval.compare import compare_runs

    runs, costs, children = {}, {}, {}
    cores = sorted(os.sched_getaffinity(0))  # the cores this process may use (main checks)
    for i, (model, epochs) in enumerate(plan.items()):
        runs[model] = args.out / name / model
        config, overrides = train_overrides(model, data, runs[model], epochs, counts, args.device)
        core = cores[i] if args.side_by_side else None
        children[model] = (start_training(config, overrides, core), config)
        if core is None:
            costs[model] = finish_training(*children[model])
    for model, epochs in plan.items():
        costs[model] = costs.get(model) or finish_training(*children[model])
        print(f"{name}: {model} {epochs} epochs in {costs[model]['seconds']:.0f} s", flush=True)
    result = compare_runs(list(runs.values()), args.out / name / "compare", samples=2)
    rows = result["rows"]
    for model in plan:
        rows[model]["peak_memory_mib"] = costs[model]["peak_mib"]
    return rows


def parse_plan(items: list[str], models: list[str]) -> dict[str, int]:
    """``["lsm=3", "fno=16"]`` -> ``{"lsm": 3, "fno": 16}``; one line for a bad item."""
    plan = {}
    for item in items:
        model, _, epochs = item.partition("=")
        if model not in models or not epochs.isdigit() or int(epochs) < 1:
            raise SystemExit(
                f"error: --plan {item!r}: expected MODEL=EPOCHS with MODEL one of {models} "
                "and EPOCHS a positive integer"
            )
        plan[model] = int(epochs)
    return plan


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
    parser.add_argument(
        "--plan",
        nargs="+",
        metavar="MODEL=EPOCHS",
        help="one round only, each model its own epochs (an equal wall-clock chosen by hand)",
    )
    parser.add_argument(
        "--side-by-side",
        action="store_true",
        help="train a round's models at once, one thread each, each pinned to its own core",
    )
    args = parser.parse_args()
    counts = {"train": args.train, "valid": args.valid, "test": args.test}
    print(f"{machine_line(args.device)}; {args.resolution}^2, {counts}", flush=True)
    if args.side_by_side and (
        args.device != "cpu" or len(args.models) > len(os.sched_getaffinity(0))
    ):
        raise SystemExit("error: --side-by-side needs --device cpu and a core per model")
    plan = parse_plan(args.plan, args.models) if args.plan else None
    data = generate_data(args.out / "data", args.resolution, counts)
    if plan:
        rows = round_of("planned", plan, args, data, counts)
        report = table("Planned epochs", {m: rows[m] for m in plan}, "fno")
        print("\n" + report)
        (args.out / "report.md").write_text(report)
        (args.out / "report.json").write_text(json.dumps({"planned": rows}, indent=2))
        return

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
