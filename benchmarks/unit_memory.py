"""Peak memory of one work unit, measured, beside the recipes' memory models.

    python benchmarks/unit_memory.py [--quick]

Each case generates one split of ``B`` samples (one work unit) in a fresh process and reads
the growth of its peak resident memory (``ru_maxrss``) over the process with everything
imported; the model is the recipe's ``unit_memory(B)`` (:mod:`datagen.core.resources` refuses
a run whose unit does not fit). A ratio model / measured near or above 1 keeps the guard on
the safe side without refusing runs that fit. ``--quick`` runs the small half.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = [  # (config, overrides); the first ones are quick
    ("darcy_small", "resolution=257 batch_size=16 solver.method=pcg"),
    ("darcy_small", "resolution=257 batch_size=4 solver.method=direct"),
    ("poisson_small", "resolution=257 batch_size=16"),
    ("heat_small", "resolution=129 batch_size=8 solver.method=pcg"),
    ("ns_small", "resolution=128 store_resolution=64 batch_size=8 time.end=0.5 time.records=5"),
    ("helmholtz_small", "resolution=129 wavenumber.k0=20.0 batch_size=8 solver.method=skr"),
    ("darcy_small", "resolution=513 batch_size=16 solver.method=pcg"),
    ("darcy_small", "resolution=513 batch_size=4 solver.method=direct"),
    ("darcy_small", "resolution=513 batch_size=16 solver.method=skr"),
    ("poisson_small", "resolution=513 batch_size=64"),
    ("poisson_small", "resolution=513 batch_size=16 solver.method=direct"),
    ("heat_small", "resolution=257 batch_size=8 solver.method=direct"),
    ("heat_small", "resolution=257 batch_size=8 solver.method=pcg"),
    ("helmholtz_small", "resolution=257 wavenumber.k0=40.0 batch_size=16 solver.method=skr"),
    ("helmholtz_small", "resolution=257 wavenumber.k0=40.0 batch_size=8 solver.method=gmres"),
    ("helmholtz_small", "resolution=257 wavenumber.k0=40.0 batch_size=4 solver.method=direct"),
    ("ns_small", "resolution=256 store_resolution=256 batch_size=8 time.end=0.5 time.records=50"),
    ("ks_small", "resolution=1024 batch_size=256 time.records=140 time.warmup=0.0"),
    ("kdv_small", "resolution=4096 batch_size=64 time.records=140 time.dt=0.005"),
]
CHILD = """
import json, resource, sys, tempfile
import torch, scipy.sparse.linalg, h5py
from datagen.core.device import resolve_device
from datagen.core.memory import retain_freed_memory
from datagen.generate import run_recipe
from datagen.problems.registry import get_problem, load_generation_config
config, *overrides = sys.argv[1:]
batch = int(next(o for o in overrides if o.startswith("batch_size=")).split("=")[1])
keys = [f"samples.train={batch}", "samples.valid=0", "samples.test=0"]
cfg = load_generation_config(config, [*overrides, *keys, f"output.dir={tempfile.mkdtemp()}/d"])
device = resolve_device(cfg.device)
recipe = get_problem(cfg.problem).recipe(cfg, device, False)
retain_freed_memory()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
run_recipe(recipe, progress=False)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"measured": peak - before, "model": recipe.unit_memory(batch)}))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the six small cases only")
    args = parser.parse_args()
    cases = CASES[:6] if args.quick else CASES
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    print(f"# unit memory, {machine}, {time.strftime('%Y-%m-%d')}")
    print("| config | overrides | measured | model | model / measured |")
    print("|---|---|---|---|---|")
    for config, overrides in cases:
        path = ROOT / "configs" / "datagen" / f"{config}.yaml"
        result = subprocess.run(
            [sys.executable, "-c", CHILD, str(path), *overrides.split()],
            capture_output=True, text=True, cwd=ROOT, check=True,
        )  # fmt: skip
        row = json.loads(result.stdout.strip().splitlines()[-1])
        measured, model = row["measured"] / 1e6, row["model"] / 1e6
        print(f"| {config} | `{overrides}` | {measured:.0f} MB | {model:.0f} MB | "
              f"{model / measured:.2f} |")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
