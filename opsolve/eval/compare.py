"""Compare trained runs on one dataset split: a table of errors and costs, and figures.

``compare_runs([RUN, ...], split="test")`` evaluates every run on the same split of the same data
(the first run's training data unless ``data`` is given) through
:func:`opsolve.eval.evaluate.evaluate_run` and collects, per run: model, parameters, epochs,
training seconds, test relative L2 and H1 (mean and median) and the ratio of each run's mean L2 to
the best one. It writes

- ``OUT/comparison.json`` and ``OUT/comparison.md`` (the table as Markdown);
- ``OUT/comparison_samples.png``: for a few samples, the input, the truth and each model's
  prediction error on a shared colour scale (which model errs where);
- ``OUT/comparison_curves.png``: the validation relative L2 of every run per epoch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from datagen.core.errors import UserError
from datagen.core.files import check_writable_dir, write_text_atomic
from opsolve.data import open_split, open_windows
from opsolve.eval.evaluate import evaluate_run
from opsolve.eval.report import load_trained, write_report
from opsolve.models.registry import count_parameters
from opsolve.plots import plot_comparison_samples, plot_validation_curves
from opsolve.train.rundir import RunPaths, read_metrics


def run_label(run: str | Path, labels: set[str]) -> str:
    """A short unique name for a run: its directory name, made unique with a counter."""
    base = Path(run).name or str(run)
    label, k = base, 2
    while label in labels:
        label, k = f"{base}-{k}", k + 1
    return label


def comparison_row(report: dict[str, Any], metrics: list[dict[str, str]], parameters: int) -> dict:
    """One table row from an evaluation report and the run's metrics.csv rows."""
    seconds = sum(float(r["seconds"]) for r in metrics)
    epochs = len(metrics)
    return {
        "model": report["model"],
        "parameters": int(parameters),
        "epochs": epochs,
        "train_seconds": seconds,
        "seconds_per_epoch": seconds / epochs if epochs else float("nan"),
        "checkpoint_epoch": report["checkpoint"]["epoch"],
        "resolution": report["resolution"],
        "samples": report["samples"],
        "relative_l2": report["relative_l2"]["mean"],
        "relative_l2_median": report["relative_l2"]["median"],
        "relative_h1": report["relative_h1"]["mean"],
    }


def markdown_table(rows: dict[str, dict[str, Any]]) -> str:
    """The comparison as a Markdown table; ``vs best`` is each mean L2 over the smallest one."""
    best = min(r["relative_l2"] for r in rows.values())
    lines = [
        "| run | model | parameters | epochs | s/epoch | rel. L2 (mean) | rel. L2 (median) "
        "| rel. H1 (mean) | L2 vs best |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, r in rows.items():
        lines.append(
            f"| {label} | {r['model']} | {r['parameters']:,} | {r['epochs']} "
            f"| {r['seconds_per_epoch']:.2f} | {r['relative_l2']:.4e} "
            f"| {r['relative_l2_median']:.4e} | {r['relative_h1']:.4e} "
            f"| {r['relative_l2'] / best:.2f}x |"
        )
    return "\n".join(lines) + "\n"


def predict_samples(
    run: str | Path, root: Path, split: str, subsample: int, count: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first ``count`` samples of a split with a run's predictions (physical units).

    Returns ``x (n, C_in, X, Y)``, ``y`` and ``pred`` ``(n, C_out, X, Y)`` as float32 arrays.
    For a run trained on trajectories a sample is the first window of a trajectory, and only
    its last input frame and last output frame are returned (``C_in = C_out = 1``): the
    longest lead time, where models differ most.
    """
    op, ckpt = load_trained(run)
    trained = ckpt["data"]
    trajectories = trained.get("kind") == "trajectory"
    if trajectories:
        window = {k: trained[k] for k in ("input_steps", "output_steps", "field")}
        ds = open_windows(root, split, **window, stride=10**9, subsample=subsample, limit=count)
    else:
        ds = open_split(root, split, subsample, trained["inputs"], trained["outputs"], None)
    n = min(count, len(ds))
    x = torch.stack([ds[i]["x"] for i in range(n)])
    y = torch.stack([ds[i]["y"] for i in range(n)])
    with torch.no_grad():
        pred = op(x).float()
    if trajectories:
        x, y, pred = x[:, -1:], y[:, -1:], pred[:, -1:]
    return x.numpy(), y.numpy(), pred.numpy()


def compare_runs(
    runs: list[str | Path],
    out: str | Path,
    data: str | Path | None = None,
    split: str = "test",
    samples: int = 2,
) -> dict[str, Any]:
    """Evaluate ``runs`` on one split and write the table and figures to ``out`` (module doc).

    Returns ``{"rows": {label: row}, "table": markdown, "files": [paths]}``.
    """
    if not runs:
        raise UserError("compare: give at least one run directory")
    check_writable_dir(out, "--out")
    reports, labels = {}, set()
    for run in runs:
        if not RunPaths(Path(run)).metrics.is_file():
            raise UserError(f"{run} is not a training run (no metrics.csv)")
    first = load_trained(runs[0])[1]["data"]
    root = Path(data) if data is not None else Path(first["root"])
    subsample = int(first["subsample"])
    for run in runs:
        label = run_label(run, labels)
        labels.add(label)
        reports[label] = (run, evaluate_run(run, data=root, split=split, figures=0))
    resolutions = {report["resolution"] for _, report in reports.values()}
    if len(resolutions) > 1:
        raise UserError(
            f"compare: the runs were evaluated at different resolutions {sorted(resolutions)}; "
            "compare runs trained with the same data.subsample"
        )
    rows = {}
    for label, (run, report) in reports.items():
        op, _ = load_trained(run)
        parameters = count_parameters(op.model)
        rows[label] = comparison_row(report, read_metrics(RunPaths(Path(run)).metrics), parameters)

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(rows)
    write_text_atomic(out / "comparison.md", table)
    write_report(out / "comparison.json", {"data": str(root), "split": split, "rows": rows})
    files = [out / "comparison.md", out / "comparison.json"]
    if samples > 0:
        predictions = {}
        for label, (run, _) in reports.items():
            x, y, predictions[label] = predict_samples(run, root, split, subsample, samples)
        files.append(plot_comparison_samples(x, y, predictions, out / "comparison_samples.png"))
    curves = {
        label: read_metrics(RunPaths(Path(run)).metrics) for label, (run, _) in reports.items()
    }
    files.append(plot_validation_curves(curves, out / "comparison_curves.png"))
    return {"rows": rows, "table": table, "files": [str(f) for f in files]}
