"""Low-rank gradient training (Tensor-GaLore AdamW) against AdamW, on LSM and SFNO, in one run.

Two measurements:

1. **Published sizes, one step**: the Darcy LSM of ``configs/train/darcy_lsm.yaml`` (19.2 M
   parameters, a batch of 4 at 85^2) and the SFNO of ``configs/train/ns_sfno.yaml`` (a batch of
   2, 10 -> 40 frames at 64^2); one optimizer step each with AdamW and with ``galore_adamw``,
   each in its own process: optimizer-state bytes (moments and projection factors) and peak
   memory (resident set on the CPU, allocated CUDA memory on a GPU) of the process.
2. **Equal epochs on small data**: ``configs/train/darcy_lsm_small.yaml`` on the small Darcy
   data (64^2, 96 / 16 / 16) and ``configs/train/ns_sfno_small.yaml`` on the small
   Navier-Stokes data (32^2, 16 / 4 / 4 trajectories), trained ``--epochs`` epochs with AdamW
   and with ``galore_adamw`` at the same learning rate, weight decay and schedule: test
   relative L2, optimizer state of the last checkpoint, peak memory, seconds per epoch.

    python benchmarks/lowrank_training.py [--epochs 20] [--rank 0.5] [--update-gap 50]
        [--scale 1.0] [--seed 0] [--leading-axes N] [--rotate-moments] [--residual]
        [--models lsm sfno] [--out runs/bench/lowrank]
        [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from operator_runs import ROOT, machine_line, run, train_in_child

PUBLISHED = {
    "lsm": ("darcy_lsm.yaml", {"in_channels": 1, "out_channels": 1}, (4, 1, 85, 85)),
    "sfno": ("ns_sfno.yaml", {"input_steps": 10, "output_steps": 40}, (2, 10, 64, 64)),
}
SMALL = {
    "lsm": ("darcy_lsm_small.yaml", "darcy_small"),
    "sfno": ("ns_sfno_small.yaml", "ns_small"),
}

_ONE_STEP = """
import json, resource, sys, torch
sys.path.insert(0, {benchmarks!r})
from lowrank_training import one_step
print("RESULT", json.dumps(one_step(*json.loads(sys.argv[1]))))
"""


def state_bytes(state: dict) -> int:
    """Bytes of the tensors in an optimizer ``state_dict()['state']`` (any nesting)."""
    import torch

    def size(value) -> int:
        if torch.is_tensor(value):
            return value.numel() * value.element_size()
        if isinstance(value, dict):
            return sum(size(v) for v in value.values())
        if isinstance(value, list | tuple):
            return sum(size(v) for v in value)
        return 0

    return sum(size(entry) for entry in state.values())


def optimizer_overrides(name: str, args) -> list[str]:
    """The same learning rate, decay and schedule; only the optimizer (and its galore keys)."""
    out = [f"optimizer.name={name}"]
    if name == "galore_adamw":
        out += [
            f"optimizer.galore.rank={args.rank}",
            f"optimizer.galore.update_gap={args.update_gap}",
            f"optimizer.galore.scale={args.scale}",
        ]
        if args.leading_axes is not None:
            out.append(f"optimizer.galore.leading_axes={args.leading_axes}")
        if args.rotate_moments:
            out.append("optimizer.galore.rotate_moments=true")
        if args.residual:
            out.append("optimizer.galore.residual=true")
    return out


def one_step(model: str, optimizer: str, overrides: list[str], device: str) -> dict:
    """One step of a published model with one optimizer (run in a child process)."""
    import resource

    import torch

    from opsolve.models.registry import build_model, count_parameters
    from opsolve.train.config import load_train_config
    from opsolve.train.optim import build_optimizer

    config, extra, shape = PUBLISHED[model]
    cfg = load_train_config(ROOT / "configs" / "train" / config, ["data.root=none", *overrides])
    torch.manual_seed(0)
    net = build_model(cfg.model.name, {**cfg.model.params, **extra}).to(device)
    opt = build_optimizer(cfg, net.parameters())
    x = torch.randn(*shape, device=device)
    out = net(x)
    out.pow(2).mean().backward()
    opt.step()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    gpu = torch.cuda.max_memory_allocated() if device == "cuda" else 0
    return {
        "parameters": count_parameters(net),
        "state_mib": state_bytes(opt.state_dict()["state"]) / 2**20,
        "peak_mib": (gpu or rss) / 2**20,
        "optimizer": optimizer,
    }


def published_round(args) -> dict:
    rows = {}
    for model in args.models:
        for optimizer in ("adamw", "galore_adamw"):
            spec = [model, optimizer, optimizer_overrides(optimizer, args), args.device]
            code = _ONE_STEP.format(benchmarks=str(Path(__file__).parent))
            done = subprocess.run(
                [sys.executable, "-c", code, json.dumps(spec)],
                capture_output=True,
                text=True,
                cwd=ROOT,
                check=False,
            )
            if done.returncode != 0:
                raise SystemExit(
                    f"one step of {model} / {optimizer} failed:\n{done.stderr[-2000:]}"
                )
            rows[f"{model} / {optimizer}"] = json.loads(done.stdout.rsplit("RESULT", 1)[1])
            print(f"published {model} / {optimizer}: {rows[f'{model} / {optimizer}']}", flush=True)
    return rows


def generate(name: str, out: Path) -> Path:
    """The small dataset of ``configs/datagen/<name>.yaml`` (kept when already there)."""
    from datagen.core.schema import split_file

    target = out / name
    if all(split_file(target, name, s).is_file() for s in ("train", "valid", "test")):
        return target
    done = subprocess.run(
        [sys.executable, "-m", "datagen.cli", "generate", f"configs/datagen/{name}.yaml",
         f"output.dir={target}", "--no-progress"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"generating {name} failed: {done.stderr.strip()[-500:]}")
    return target


def small_round(args) -> dict:
    """Train each small config with both optimizers; compare on the test split."""
    import torch

    from opsolve.eval.compare import compare_runs

    rows = {}
    for model, (config, data_name) in ((m, SMALL[m]) for m in args.models):
        data = generate(data_name, args.out / "data")
        runs = {}
        for optimizer in ("adamw", "galore_adamw"):
            rundir = args.out / model / optimizer
            overrides = [
                f"data.root={data}",
                f"epochs={args.epochs}",
                f"output.dir={rundir}",
                f"device={args.device}",
                f"seed={args.seed}",
                *optimizer_overrides(optimizer, args),
            ]
            cost = train_in_child(ROOT / "configs" / "train" / config, overrides)
            last = torch.load(rundir / "checkpoints" / "last.pt", weights_only=True)
            runs[optimizer] = (rundir, cost, state_bytes(last["optimizer"]["state"]) / 2**20)
            print(f"small {model} / {optimizer}: {cost['seconds']:.0f} s", flush=True)
        result = compare_runs([r[0] for r in runs.values()], args.out / model / "compare")
        for (optimizer, (_rundir, cost, state)), row in zip(
            runs.items(), result["rows"].values(), strict=True
        ):
            rows[f"{model} / {optimizer}"] = {**row, "state_mib": state, **cost}
    return rows


def report(published: dict, small: dict, args) -> str:
    """Markdown: the published-size table (when measured) and the equal-epochs table."""
    lines = [
        f"### Published sizes, one step (rank {args.rank}, update gap {args.update_gap})",
        "",
        "| model / optimizer | parameters | optimizer state (MiB) | state / AdamW's "
        "| peak memory (MiB) | peak / AdamW's |",
        "|---|---|---|---|---|---|",
    ]
    for key, r in published.items():
        base = published[key.split(" / ")[0] + " / adamw"]
        lines.append(
            f"| {key} | {r['parameters']:,} | {r['state_mib']:.1f} "
            f"| {r['state_mib'] / base['state_mib']:.2f} | {r['peak_mib']:.0f} "
            f"| {r['peak_mib'] / base['peak_mib']:.2f} |"
        )
    if not published:
        lines = []
    lines += [
        "",
        f"### Small data, equal epochs ({args.epochs}, seed {args.seed})",
        "",
        "| model / optimizer | test rel. L2 | L2 / AdamW's | optimizer state (MiB) "
        "| state / AdamW's | peak memory (MiB) | s/epoch |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, r in small.items():
        base = small[key.split(" / ")[0] + " / adamw"]
        lines.append(
            f"| {key} | {r['relative_l2']:.4e} | {r['relative_l2'] / base['relative_l2']:.2f} "
            f"| {r['state_mib']:.2f} | {r['state_mib'] / base['state_mib']:.2f} "
            f"| {r['peak_mib']:.0f} | {r['seconds_per_epoch']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--rank", type=float, default=0.5)
    parser.add_argument("--update-gap", type=int, default=50)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench" / "lowrank")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--seed", type=int, default=0, help="training seed of the small runs")
    parser.add_argument(
        "--leading-axes", type=int, default=None, help="compress only this many leading axes"
    )
    parser.add_argument(
        "--rotate-moments", action="store_true", help="carry the moments into new subspaces"
    )
    parser.add_argument(
        "--residual", action="store_true", help="apply the gradient outside the subspace (Fira)"
    )
    parser.add_argument("--models", nargs="+", choices=sorted(SMALL), default=list(SMALL))
    parser.add_argument("--skip-published", action="store_true")
    args = parser.parse_args()
    if args.epochs < 1 or not 0 < args.rank <= 1 or args.update_gap < 1 or args.scale <= 0:
        raise SystemExit(
            "error: need --epochs >= 1, --rank in (0, 1], --update-gap >= 1, --scale > 0"
        )
    print(machine_line(args.device), flush=True)
    published = {} if args.skip_published else published_round(args)
    small = small_round(args)
    text = report(published, small, args)
    print("\n" + text)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.md").write_text(text)
    (args.out / "report.json").write_text(
        json.dumps({"published": published, "small": small}, indent=2)
    )


if __name__ == "__main__":
    run(main)
