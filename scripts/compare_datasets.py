"""Compare two dataset directories array by array, bit for bit.

    python scripts/compare_datasets.py BEFORE AFTER [BEFORE2 AFTER2 ...]

Every HDF5 dataset of every split file (fields, coordinates, boundary masks, scalars and the
per-sample provenance) must have the same shape, dtype and bytes in both, and the root and
field attributes the same values. What differs from run to run by nature is left out: the
wall-clock ``seconds`` of each sample, where it was solved (``rank``, ``device``, ``host``) and
the ``created_unix``, ``config`` and ``package_version`` attributes of ``provenance/``. The
split files are compared by their arrays, so a file of virtual datasets over the parts of a
multi-process run (``data/SPLIT/parts/``) equals the plain file of one process holding the same
arrays. ``stats.yaml`` is compared as numbers. Prints one line per file and exits 1 if anything
differs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np
import yaml

VOLATILE_DATASETS = {f"provenance/{key}" for key in ("seconds", "rank", "device", "host")}
VOLATILE_ATTRS = {"created_unix", "config", "package_version"}


def _items(f: h5py.File) -> dict[str, h5py.Dataset]:
    found: dict[str, h5py.Dataset] = {}
    f.visititems(
        lambda name, obj: found.update({name: obj}) if isinstance(obj, h5py.Dataset) else None
    )
    return found


def _attrs(obj: h5py.HLObject) -> dict[str, object]:
    out = {}
    for key, value in obj.attrs.items():
        if key in VOLATILE_ATTRS:
            continue
        out[key] = value.tolist() if isinstance(value, np.ndarray) else value
    return out


def compare_files(a: Path, b: Path) -> list[str]:
    """What differs between two dataset files (empty: identical up to the volatile parts)."""
    differences = []
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        da, db = _items(fa), _items(fb)
        if set(da) != set(db):
            differences.append(f"datasets differ: {sorted(set(da) ^ set(db))}")
        groups = {""} | {name.rsplit("/", 1)[0] for name in da if "/" in name}
        for name in sorted(set(da) & set(db)):
            if _attrs(da[name]) != _attrs(db[name]):
                differences.append(f"{name}: attributes differ")
            if name in VOLATILE_DATASETS:
                continue
            x, y = da[name][()], db[name][()]
            x, y = np.asarray(x), np.asarray(y)
            if x.shape != y.shape or x.dtype != y.dtype:
                differences.append(f"{name}: {x.shape} {x.dtype} vs {y.shape} {y.dtype}")
            elif x.dtype == object and x.tolist() != y.tolist():  # strings
                differences.append(f"{name}: values differ")
            elif x.dtype != object and x.tobytes() != y.tobytes():
                differences.append(f"{name}: values differ")
        for group in sorted(groups):
            ga, gb = (fa[group], fb.get(group)) if group else (fa, fb)
            if gb is None or _attrs(ga) != _attrs(gb):
                differences.append(f"{group or '/'}: attributes differ")
    return differences


def compare_dirs(a: Path, b: Path) -> list[str]:
    """Compare the split files and ``stats.yaml`` of two dataset directories."""
    files_a = sorted(p.relative_to(a) for p in a.glob("data/*/*.hdf5"))
    files_b = sorted(p.relative_to(b) for p in b.glob("data/*/*.hdf5"))
    lines = []
    if files_a != files_b:
        lines.append(f"DIFF  {a} vs {b}: files differ ({files_a} vs {files_b})")
    for rel in sorted(set(files_a) & set(files_b)):
        differences = compare_files(a / rel, b / rel)
        status = "DIFF " if differences else "SAME "
        lines.append(f"{status} {b / rel}" + (f": {'; '.join(differences)}" if differences else ""))
    stats_a, stats_b = a / "stats.yaml", b / "stats.yaml"
    if stats_a.is_file() or stats_b.is_file():
        same = stats_a.is_file() and stats_b.is_file()
        same = same and yaml.safe_load(stats_a.read_text()) == yaml.safe_load(stats_b.read_text())
        lines.append(f"{'SAME ' if same else 'DIFF '} {stats_b}")
    return lines


def main(argv: list[str]) -> int:
    if len(argv) < 2 or len(argv) % 2:
        print("usage: compare_datasets.py BEFORE AFTER [BEFORE2 AFTER2 ...]", file=sys.stderr)
        return 2
    missing = [path for path in argv if not Path(path).is_dir()]
    if missing:
        print(f"compare_datasets.py: {missing[0]} is not a dataset directory", file=sys.stderr)
        return 2
    lines = []
    for a, b in zip(argv[::2], argv[1::2], strict=True):
        lines += compare_dirs(Path(a), Path(b))
    print("\n".join(lines))
    different = sum(line.startswith("DIFF") for line in lines)
    print(f"{len(lines) - different} identical, {different} different")
    return 1 if different else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
