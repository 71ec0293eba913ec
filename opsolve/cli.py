"""The ``opsolve`` command: train operators from configs, evaluate trained runs, refine
trajectory runs with the Spectral-Refiner (``opsolve refine RUN``) and assimilate observations
with an observer run (``opsolve assimilate RUN``).

User errors (config, data, run directory) are one line on stderr and exit status 2; a diverged
training (NaN/inf) is one line and exit status 3. Under ``torchrun`` only rank 0 prints.
"""

from __future__ import annotations

import argparse
import os
import sys

from datagen.core.commands import Failure, parse_command_line, run_command
from datagen.core.config import DEVICES
from datagen.core.schema import SPLITS


def _rank() -> int:
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def _train(args: argparse.Namespace) -> int:
    from opsolve.train.config import load_train_config

    cfg = load_train_config(args.config, args.overrides)  # fails fast, before heavy imports
    from opsolve.train.trainer import train

    result = train(cfg, resume=args.resume, overwrite=args.overwrite, progress=not args.no_progress)
    if _rank() == 0:
        print(f"run written to {cfg.output.dir}")
        if "valid_l2" in result:
            print(
                f"final epoch {result['epoch']}: valid_l2 {result['valid_l2']:.4e}, "
                f"valid_h1 {result['valid_h1']:.4e}; best epoch {result['best_epoch']}"
            )
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from opsolve.eval.evaluate import evaluate_run

    report = evaluate_run(
        args.run,
        data=args.data,
        split=args.split,
        subsample=args.subsample,
        checkpoint=args.checkpoint,
        batch_size=args.batch_size,
        figures=args.figures,
        device=args.device,
        horizon=args.horizon,
        autoregressive=args.autoregressive,
    )
    l2, h1 = report["relative_l2"], report["relative_h1"]
    print(
        f"{report['split']} at {report['resolution']}x{report['resolution']} "
        f"({report['samples']} samples, {args.checkpoint} checkpoint of epoch "
        f"{report['checkpoint']['epoch']}): relative L2 {l2['mean']:.4e} "
        f"(max {l2['max']:.2e}), relative H1 {h1['mean']:.4e} (max {h1['max']:.2e})"
    )
    if "residual_hm1" in report:
        print(
            f"H^-1 residual of the prediction {report['residual_hm1']['mean']:.3e} (of the "
            f"truth {report['truth_residual_hm1']['mean']:.3e}) over {report['output_steps']} steps"
        )
    print(f"metrics: {report['json']}")
    print(f"figures: {', '.join(report['figures'])}")
    return 0


def _refine(args: argparse.Namespace) -> int:
    from opsolve.eval.refine import refine_run

    report = refine_run(args.run, args.overrides, checkpoint=args.checkpoint, device=args.device)
    s = report["summary"]
    print(
        f"refined {report['trajectories']} {report['split']} trajectories at "
        f"{report['resolution']}x{report['resolution']} ({report['refine']['mode']}, "
        f"{report['refine']['steps']} steps, {report['seconds']:.1f}s): relative L2 "
        f"{s['relative_l2']['before']:.4e} -> {s['relative_l2']['after']:.4e} "
        f"({s['relative_l2']['ratio']:.2f}x), H^-1 residual {s['residual']['before']:.3e} -> "
        f"{s['residual']['after']:.3e} ({s['residual']['ratio']:.1f}x; truth "
        f"{report['truth_residual']:.3e})"
    )
    print(f"report: {report['json']}")
    print(f"figures: {', '.join(report['figures'])}")
    return 0


def _assimilate(args: argparse.Namespace) -> int:
    from opsolve.eval.assimilate import assimilate_run

    report = assimilate_run(
        args.run, args.data, args.overrides, checkpoint=args.checkpoint, device=args.device
    )
    s = report["settings"]
    print(
        f"{report['trajectories']} {s['split']} trajectories, {s['density']:g} of the nodes "
        f"observed ({s['mask']}), noise {s['noise']:g} std, warm-up {s['warmup']} + horizon "
        f"{s['horizon']} steps (dt {report['dt']:g}):"
    )
    for name, m in report["methods"].items():
        print(
            f"  {name:<10} mean relative L2 over the horizon {m['horizon_mean']:.4e}, at the "
            f"end {m['horizon_final']:.4e}, {m['seconds_per_step'] * 1e3:.2f} ms per step"
            + (f", {m['diverged']} diverged" if m["diverged"] else "")
        )
    one = report["one_step"]
    print(
        f"  one step of the predictor from the true states: relative L2 {one['forecast']:.4e} "
        f"(the true change over a step: {one['change']:.4e})"
    )
    print(f"report: {report['json']}")
    print(f"figures: {', '.join(report['figures'])}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from opsolve.eval.compare import compare_runs

    result = compare_runs(
        args.runs, args.out, data=args.data, split=args.split, samples=args.samples
    )
    print(result["table"], end="")
    print(f"written: {', '.join(result['files'])}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="opsolve", description="Train and evaluate operators.")
    sub = parser.add_subparsers(dest="command", required=True)
    tr = sub.add_parser(
        "train",
        help="train a model from a config",
        description="Train from a YAML config into output.dir (config.yaml, log.txt, "
        "metrics.csv, checkpoints/, figures/). Under torchrun: data parallel.",
    )
    tr.add_argument("config", help="YAML config, e.g. configs/train/darcy_fno_small.yaml")
    tr.add_argument(
        "overrides", nargs="*", metavar="key=value", help="dotted overrides, e.g. epochs=5"
    )
    tr.add_argument("--resume", action="store_true", help="continue the run in output.dir")
    tr.add_argument("--overwrite", action="store_true", help="replace the run in output.dir")
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")
    tr.set_defaults(handler=_train)
    ev = sub.add_parser(
        "evaluate",
        help="evaluate a trained run",
        description="Relative L2 and H1 errors (mean and per sample) to RUN/eval_<split>_"
        "<res>.json, figures to RUN/figures/.",
    )
    ev.add_argument("run", help="run directory (output.dir of a training)")
    ev.add_argument("--data", help="dataset directory (default: the training data)")
    ev.add_argument("--split", default="test", choices=SPLITS)
    ev.add_argument(
        "--subsample",
        type=int,
        help="stride (default: the training one); another one evaluates at another resolution",
    )
    ev.add_argument("--checkpoint", default="best", choices=["best", "last", "refined"])
    ev.add_argument("--batch-size", type=int, default=8)
    ev.add_argument("--figures", type=int, default=4, help="samples drawn (default 4)")
    ev.add_argument("--device", default="auto", choices=DEVICES)
    ev.add_argument(
        "--horizon", type=int, help="trajectory runs: output steps (default: the trained ones)"
    )
    ev.add_argument(
        "--autoregressive",
        action="store_true",
        help="trajectory runs: chain windows of the trained output length up to --horizon",
    )
    ev.set_defaults(handler=_evaluate)
    rf = sub.add_parser(
        "refine",
        help="Spectral-Refiner: fine-tune a trajectory run's output layer on the PDE residual",
        description="Enlarge and fine-tune the output spectral layer of a spacetime_fno run "
        "on the H^-1 norm of the vorticity residual (settings: the refine section of "
        "RUN/config.yaml, overridable as refine.key=value); report to RUN/refine_<split>_"
        "<res>.json, figures to RUN/figures/.",
    )
    rf.add_argument("run", help="run directory of a spacetime_fno training")
    rf.add_argument(
        "overrides", nargs="*", metavar="refine.key=value", help="e.g. refine.steps=100"
    )
    rf.add_argument("--checkpoint", default="best", choices=["best", "last"])
    rf.add_argument("--device", default="auto", choices=DEVICES)
    rf.set_defaults(handler=_refine)
    da = sub.add_parser(
        "assimilate",
        help="assimilate sparse noisy observations with a trained observer run",
        description="Run a trained observer on whole trajectories with observations drawn "
        "from key=value settings (density, noise, mask, availability, warmup, horizon, split, "
        "limit, seed, batch_size), against its free predictor; error curves to RUN/"
        "assimilate_<split>_<res>_<mask>_d<density>_n<noise>.json, figures to RUN/figures/.",
    )
    da.add_argument("run", help="run directory of an observer training")
    da.add_argument("overrides", nargs="*", metavar="key=value", help="e.g. density=0.05")
    da.add_argument("--data", help="dataset directory (default: the training data)")
    da.add_argument("--checkpoint", default="best", choices=["best", "last"])
    da.add_argument("--device", default="auto", choices=DEVICES)
    da.set_defaults(handler=_assimilate)
    cp = sub.add_parser(
        "compare",
        help="compare trained runs on one split",
        description="Evaluate several runs on the same split and print a table of errors, "
        "parameters and seconds per epoch; writes comparison.md/.json and figures to --out.",
    )
    cp.add_argument("runs", nargs="+", help="run directories")
    cp.add_argument("--out", required=True, help="folder for the table and figures")
    cp.add_argument("--data", help="dataset directory (default: the first run's training data)")
    cp.add_argument("--split", default="test", choices=SPLITS)
    cp.add_argument("--samples", type=int, default=2, help="samples drawn (default 2)")
    cp.set_defaults(handler=_compare)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors are one line on stderr and exit status 2, a diverged training
    one line and exit status 3; under ``torchrun`` only rank 0 prints them."""
    args = parse_command_line(
        build_parser(), argv, with_overrides=("train", "refine", "assimilate")
    )
    from opsolve.train.errors import TrainingDiverged

    return run_command(
        "opsolve",
        lambda: args.handler(args),
        failures=[Failure(TrainingDiverged, 3, "training diverged")],
        interrupted="run the same command with --resume to continue",
        speak=_rank() == 0,
    )


if __name__ == "__main__":
    sys.exit(main())
