"""Re-check dataset files (``datagen verify``) and describe them (``datagen info``).

:func:`verify_file` checks a file's layout against the schema (:mod:`datagen.core.schema`),
then hands it to the check of its problem (the root attribute ``problem``, through
:mod:`datagen.problems.registry`), which recomputes every sample's correctness from the stored
fields alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from datagen.core.report import VerifyReport
from datagen.core.schema import PARTIAL, SPLITS, check_schema, open_dataset_file, split_file
from datagen.problems.registry import PROBLEMS


def dataset_problems(root: str | Path) -> list[str]:
    """What a dataset directory lacks against its own ``config.yaml``: an unfinished
    generation (``.partial/``), the splits the config promises, their sample counts."""
    root = Path(root)
    problems = []
    work = root / PARTIAL
    if work.is_dir():
        finished = len(list(work.rglob("*.npz")))
        problems.append(
            f"{root} is still being written, or its generation was interrupted ({work} holds "
            f"{finished} finished work units): run the generate command again to finish it"
        )
    config = root / "config.yaml"
    if not config.is_file():
        return problems
    try:
        data = yaml.safe_load(config.read_text()) or {}
        name, samples = data["name"], dict(data["samples"])
    except (yaml.YAMLError, KeyError, TypeError, ValueError):
        return [*problems, f"{config}: not a resolved generation config (no name or samples)"]
    for split in SPLITS:
        promised = int(samples.get(split, 0) or 0)
        path = split_file(root, name, split)
        if promised and not path.is_file():
            problems.append(
                f"the {split} split is missing: {path} (the config promises {promised})"
            )
        elif promised and path.is_file():
            with open_dataset_file(path) as f:
                held = int(f.attrs.get("n_trajectories", -1))
            if held != promised:
                problems.append(f"{path} holds {held} samples; the config promises {promised}")
    return problems


def verify_file(path: str | Path) -> VerifyReport:
    """Check schema, finite values, and residuals recomputed in float64 from the stored fields."""
    path = Path(path)
    with open_dataset_file(path) as f:
        problems = check_schema(f)
        if problems:
            return VerifyReport(path, 0, problems)
        name = f.attrs.get("problem")
        if name not in PROBLEMS:
            known = ", ".join(PROBLEMS)
            return VerifyReport(
                path, 0, [f"root attribute 'problem' is {name!r}, not one of {known}"]
            )
        return PROBLEMS[name].verify(f, path)


def describe_file(path: str | Path) -> str:
    """A readable summary of one dataset file."""
    path = Path(path)
    lines = [str(path)]
    with open_dataset_file(path) as f:
        attrs = f.attrs
        lines.append(
            f"  dataset {attrs.get('dataset_name')!s}  problem {attrs.get('problem')!s}  "
            f"split {attrs.get('split')!s}  format {attrs.get('opsolve_format')!s}"
        )
        lines.append(f"  trajectories {attrs.get('n_trajectories')}  grid {attrs.get('grid_type')}")
        params = {str(k): float(attrs[k]) for k in attrs.get("simulation_parameters", [])}
        lines.append(f"  parameters {params}")
        if "dimensions" in f:
            dims = f["dimensions"]
            shape = " x ".join(str(dims[d].shape[-1]) for d in dims.attrs.get("spatial_dims", []))
            lines.append(f"  spatial grid {shape}, time steps {dims['time'].shape[-1]}")
        for group in ("t0_fields", "t1_fields", "t2_fields"):
            for name in f[group].attrs.get("field_names", []) if group in f else []:
                ds = f[group][name]
                flags = [k for k in ("sample_varying", "time_varying") if ds.attrs.get(k)]
                lines.append(f"  field {name}: {ds.shape} {ds.dtype} {' '.join(flags)}")
        if "provenance" in f and "steps" in f["provenance"]:
            prov = f["provenance"]
            lines.append(
                f"  solver {f.attrs.get('scheme')!s} at {f.attrs.get('solve_resolution')}^2, "
                f"dt {f.attrs.get('dt')}; steps max {int(np.max(prov['steps'][...]))}; "
                f"max CFL {np.max(prov['max_cfl'][...]):.3f}; "
                f"seconds/trajectory median {np.median(prov['seconds'][...]):.3g}"
            )
        elif "provenance" in f:
            prov = f["provenance"]
            methods, counts = np.unique(prov["method"].asstr()[...], return_counts=True)
            lines.append(
                "  solver "
                + ", ".join(f"{m} x{c}" for m, c in zip(methods, counts, strict=True))
                + f"; seconds/sample median {np.median(prov['seconds'][...]):.3g}"
                + f"; worst residual {np.max(prov['residual'][...]):.2e}"
                + f"; iterations max {int(np.max(prov['iterations'][...]))}"
            )
            cfg = yaml.safe_load(prov.attrs.get("config", "{}")) or {}
            lines.append(f"  config: seed {cfg.get('seed')}, coefficient {cfg.get('coefficient')}")
            lines.append(f"  package version {prov.attrs.get('package_version')}")
    return "\n".join(lines)
