"""The ``datagen`` command: generate, verify and describe PDE datasets.

``python -m datagen`` is the same command; under ``torchrun`` (``torchrun --nproc-per-node N
-m datagen generate CONFIG``) the generation runs on N ranks (:mod:`datagen.generate`).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from datagen.core.commands import Failure, parse_command_line, run_command
from datagen.core.errors import RankLost, SolverFailure, UserError
from datagen.linalg import fused


def _generate(args: argparse.Namespace) -> int:
    from datagen.problems.registry import load_generation_config

    overrides = list(args.overrides) + (["output.overwrite=true"] if args.overwrite else [])
    cfg = load_generation_config(args.config, overrides)  # fails fast, before heavy imports
    from datagen.core.memory import retain_freed_memory
    from datagen.generate import generate

    retain_freed_memory()

    summaries = generate(
        cfg, progress=not args.no_progress, consolidate=args.consolidate, threads=args.threads
    )
    if _rank() != 0:
        return 0
    rows = [("split", "samples", "s/sample", "details", "method", "file")]
    for s in summaries:
        methods = ", ".join(f"{m} x{c}" for m, c in s.methods.items())
        details = s.notes or f"worst residual {s.worst_residual:.2e}"
        row = (s.split, str(s.samples), f"{s.seconds_per_sample:.4f}", details, methods)
        rows.append((*row, str(s.path)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
    print(f"dataset written to {Path(cfg.output.dir)}")
    return 0


def _consolidate(args: argparse.Namespace) -> int:
    from datagen.core.files import existing_dir
    from datagen.core.schema import dataset_files
    from datagen.generate import consolidate_dataset

    dataset_files(existing_dir(args.path, "path"))  # a dataset directory, with files
    done = consolidate_dataset(args.path)
    for path in done:
        print(f"consolidated {path}")
    if not done:
        print(f"{args.path}: every split file is already a plain file")
    return 0


def _rank() -> int:
    """This process's rank under ``torchrun`` (0 alone)."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def _threads(text: str) -> int:
    """``--threads``: a positive number of CPU threads."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return value


def _verify(args: argparse.Namespace) -> int:
    from datagen.core.schema import dataset_files
    from datagen.verify import dataset_problems, verify_file

    failed = 0
    if Path(args.path).is_dir():
        for problem in dataset_problems(args.path):
            failed += 1
            print(f"FAIL  {problem}")
        if failed and not any((Path(args.path) / "data").rglob("*.hdf5")):
            return 1
    for path in dataset_files(args.path):
        report = verify_file(path)
        if report.ok:
            print(f"OK    {path}: {report.samples} samples; {report.summary}")
        else:
            failed += 1
            print(
                f"FAIL  {path}: {report.problems[0]}"
                + (f" (+{len(report.problems) - 1} more)" if len(report.problems) > 1 else "")
            )
    return 1 if failed else 0


def _info(args: argparse.Namespace) -> int:
    from datagen.core.files import check_writable_file
    from datagen.core.schema import check_schema, dataset_files, open_dataset_file
    from datagen.plots import FIGURE_SUFFIXES, plot_file
    from datagen.problems.registry import get_problem
    from datagen.verify import describe_file

    if args.figure:
        check_writable_file(args.figure, "--figure", FIGURE_SUFFIXES)
    files = dataset_files(args.path)
    for path in files:
        print(describe_file(path))
    if args.figure:
        with open_dataset_file(files[0]) as f:
            problems = check_schema(f)
            name = f.attrs.get("problem")
        if problems:
            raise UserError(f"{files[0]}: cannot plot a file of another schema ({problems[0]})")
        plot = get_problem(name, f"{files[0]}: problem").figure or plot_file
        out = plot(files[0], args.figure, count=args.count)
        print(f"figure of {args.count} samples of {files[0].name} saved to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="datagen", description="Generate and check PDE datasets.")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser(
        "generate",
        help="generate a dataset from a config",
        description="Generate a dataset from a YAML config. Re-running an "
        "interrupted generation with the same config resumes it.",
    )
    gen.add_argument("config", help="YAML config, e.g. configs/datagen/darcy_small.yaml")
    gen.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="dotted overrides, e.g. resolution=85 samples.train=100",
    )
    gen.add_argument("--overwrite", action="store_true", help="replace an existing dataset")
    gen.add_argument("--no-progress", action="store_true", help="no progress bar")
    gen.add_argument(
        "--consolidate",
        action="store_true",
        help="under torchrun: copy each split into one plain file at the end (default: a "
        "file of virtual datasets over the ranks' parts, nothing copied)",
    )
    gen.add_argument(
        "--threads",
        type=_threads,
        metavar="N",
        help="CPU threads per process (default: all cores; under torchrun the host's cores "
        "split between its ranks)",
    )
    gen.set_defaults(run=_generate)
    con = sub.add_parser(
        "consolidate",
        help="copy the virtual datasets of a dataset into plain files",
        description="Replace every split file whose fields are virtual datasets over the "
        "parts of a multi-process generation by one plain file, and remove the parts.",
    )
    con.add_argument("path", help="a dataset directory")
    con.set_defaults(run=_consolidate)
    ver = sub.add_parser(
        "verify",
        help="re-check a dataset file or directory",
        description="Check schema, finite values and residuals recomputed from "
        "the stored fields. Exit status 1 if any file fails.",
    )
    ver.add_argument("path", help="a dataset directory or one .hdf5 file")
    ver.set_defaults(run=_verify)
    info = sub.add_parser("info", help="describe a dataset file or directory")
    info.add_argument("path", help="a dataset directory or one .hdf5 file")
    info.add_argument("--figure", metavar="PNG", help="save a figure of a few samples")
    info.add_argument("--count", type=int, default=4, help="samples in the figure (default 4)")
    info.set_defaults(run=_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point: user errors are one line on stderr and exit status 2; a failed solve is
    one line and exit status 3 (finished samples kept)."""
    args = parse_command_line(build_parser(), argv, with_overrides=("generate",))
    solve_failed = Failure(SolverFailure, 3, "solve failed", "; finished samples are kept")
    rank_lost = Failure(
        RankLost, 3, "job stopped", "; finished samples are kept: run the same command again"
    )
    return run_command(
        "datagen", lambda: _checked(args), failures=[solve_failed, rank_lost], speak=_speaks
    )


def _checked(args) -> object:
    """Run the command once the environment's switches are valid (a bad one is a user error,
    found before any work)."""
    try:
        fused.switched_on()
    except ValueError as error:
        raise UserError(str(error)) from None
    return args.run(args)


def _speaks(err: BaseException) -> bool:
    """Under ``torchrun``, rank 0 prints what every rank agrees on (user errors, checked on
    every rank before any work); a failed solve or a full disk is printed by the rank that
    met it."""
    return _rank() == 0 or isinstance(err, SolverFailure | OSError)


if __name__ == "__main__":
    sys.exit(main())
