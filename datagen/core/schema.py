"""The dataset file format: the one contract between ``datagen`` and ``opsolve``.

A dataset is a directory laid out as The Well lays out one dataset, so that its ``WellDataset``
opens it (``WellDataset(path=DIR, well_split_name="train", n_steps_input=0, n_steps_output=1)``
for steady problems)::

    DIR/config.yaml                      resolved generation config
    DIR/stats.yaml                       normalization statistics of the train split
    DIR/data/{train,valid,test}/NAME_SPLIT.hdf5

Each HDF5 file follows The Well's schema (PolymathicAI/the_well, docs/data_format.md):

- root attrs ``dataset_name``, ``grid_type`` ("cartesian"), ``n_spatial_dims``,
  ``n_trajectories``, ``simulation_parameters`` (names; each also a root attr), and ours:
  ``opsolve_format`` (:data:`FORMAT`), ``problem``, ``split``;
- ``dimensions/``: ``time`` (T,), ``x`` (s,), ``y`` (s,); attr ``spatial_dims``;
- ``boundary_conditions/``: one group per boundary (``bc_type`` WALL/OPEN/PERIODIC,
  ``associated_dims``, ``associated_fields``, boolean ``mask`` over the dimension);
- ``scalars/``: the simulation parameters as constant scalars;
- ``t0_fields/``, ``t1_fields/``, ``t2_fields/``: channels-last arrays, (traj, time, x, y) when
  ``time_varying``, (traj, x, y) when only ``sample_varying``, (x, y) when neither; attrs
  ``dim_varying``, ``sample_varying``, ``time_varying``; one chunk per sample per step.

A steady problem is a trajectory of one step: the solution ``u`` is (traj, 1, s, s); the
coefficient ``a`` and the forcing ``f`` are not time varying.

A time-dependent problem (format :data:`TRAJECTORY_FORMAT`, e.g. Navier-Stokes) stores its
trajectories as (traj, time, x, y) with the record times in ``dimensions/time``; constant
fields (the forcing) as (x, y).

Our group ``provenance/`` holds the config as YAML (attr ``config``), the package version, the
seed, and per-sample diagnostics. Steady files: ``iterations``, ``residual`` (true relative
residual in float64 at solve time), ``seconds``, ``method``, ``sort_position``,
``sample_index``, ``seed``. Trajectory files: ``steps``, ``max_cfl``, ``seconds``, ``method``
(the time-stepping scheme), ``sample_index``, ``seed``. Every file: where each sample was solved
(:data:`PLACEMENT`: ``rank``, ``device``, ``host``).

A split written by several processes has the same layout, but its sample-varying fields are
HDF5 virtual datasets over part files, ``data/SPLIT/parts/NAME_SPLIT_A-B.hdf5`` (each a complete
file of this format for samples ``A:B``), by relative paths; :func:`consolidate_file` copies
them into a plain file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import yaml

from datagen.core.errors import UserError
from datagen.core.files import replace_atomic, write_text_atomic

FORMAT = "opsolve-steady-1"
TRAJECTORY_FORMAT = "opsolve-trajectory-1"
SPLITS = ("train", "valid", "test")
PARTIAL = ".partial"  # DIR/.partial/: the shards of a generation not yet assembled
WELL_FIELD_GROUPS = ("t0_fields", "t1_fields", "t2_fields")
DIAGNOSTICS = {
    "iterations": np.int32,
    "residual": np.float64,
    "seconds": np.float64,
    "sort_position": np.int64,
    "sample_index": np.int64,
    "seed": np.uint64,
}
TRAJECTORY_DIAGNOSTICS = {
    "steps": np.int64,
    "max_cfl": np.float64,
    "seconds": np.float64,
    "sample_index": np.int64,
    "seed": np.uint64,
}
# Per-sample provenance datasets of each format (plus the string dataset ``method``).
FORMATS = {FORMAT: DIAGNOSTICS, TRAJECTORY_FORMAT: TRAJECTORY_DIAGNOSTICS}
STRING = h5py.string_dtype()
# Where each sample was solved: the rank of the generation (0 for one process), its device
# (``cpu``, ``cuda:1``) and host. Every file has them; files written before them conform too.
PLACEMENT = {"rank": np.int32, "device": STRING, "host": STRING}
PARTS = "parts"  # data/SPLIT/parts/: the files a split's virtual datasets read


@dataclass(frozen=True)
class FieldSpec:
    """One stored field: its name and whether it varies per sample / in time."""

    name: str
    sample_varying: bool = True
    time_varying: bool = False


def split_file(root: str | Path, name: str, split: str) -> Path:
    """Path of one split's file inside a dataset directory."""
    return Path(root) / "data" / split / f"{name}_{split}.hdf5"


SPATIAL_AXES = ("x", "y", "z")


def field_shape(spec: FieldSpec, n: int, steps: int, size: tuple[int, ...]) -> tuple[int, ...]:
    """Stored shape of a field: (n,)? + (steps,)? + size."""
    return (n,) * spec.sample_varying + (steps,) * spec.time_varying + size


@dataclass(frozen=True)
class FileLayout:
    """What a problem decides about its split files (the rest is common to every file).

    Attributes:
        fields: the fields to store (order = order in ``t0_fields/field_names``).
        size: the grid, one length per spatial axis (x, then y, then z): ``(s,)`` in 1-D.
        steps: time steps per trajectory (1 for a steady problem).
        attrs: the problem's own root attributes (``scheme``, ``dt``, ...).
        parameters: simulation parameters (name -> number), stored as root attrs and scalars.
        bc_type: WALL, OPEN or PERIODIC for every axis.
        time: (steps,) time coordinates (default zeros).
        coords: (s,) coordinates of every spatial axis (default ``linspace(0, 1, s)``, the nodes
            of a grid that includes the boundary; a periodic grid passes ``arange(s) / s``).
        file_format: :data:`FORMAT` (steady) or :data:`TRAJECTORY_FORMAT`; decides the
            per-sample diagnostics in ``provenance/`` (:data:`FORMATS`).
        per_sample: further per-sample arrays of ``provenance/`` (name -> dtype), e.g. the
            domain length of each trajectory when it is drawn at random.
    """

    fields: list[FieldSpec]
    size: tuple[int, ...]
    steps: int = 1
    attrs: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, float] = field(default_factory=dict)
    bc_type: str = "WALL"
    time: np.ndarray | None = None
    coords: np.ndarray | None = None
    file_format: str = FORMAT
    per_sample: dict[str, Any] = field(default_factory=dict)

    @property
    def diagnostics(self) -> list[str]:
        """Every per-sample array of ``provenance/`` (the format's, ``method``, ours)."""
        return [*FORMATS[self.file_format], "method", *PLACEMENT, *self.per_sample]


class SplitWriter:
    """Writes one split file under a temporary name; :meth:`commit` renames it into place.

    Args:
        path: final path of the file.
        layout: the problem's fields, grid and attributes (:class:`FileLayout`).
        n: number of trajectories (samples).
        dataset_name: the ``dataset_name`` root attribute.
        attrs: root attributes every file has beyond the Well's (``problem``, ``split``).
        provenance: attrs of ``provenance/`` (config YAML text, version, seed, ...).
        dtype: storage dtype of the fields.
        sources: ``(start, stop, part)`` per part file, ``part`` relative to the file's
            directory: every sample-varying field is then an HDF5 virtual dataset over the
            same field of the parts (samples ``start:stop`` from ``part``; nothing copied), to
            be written only with the fields that do not vary per sample and the provenance.
    """

    def __init__(
        self,
        path: Path,
        layout: FileLayout,
        *,
        n: int,
        dataset_name: str,
        attrs: dict[str, Any],
        provenance: dict[str, Any],
        dtype: str = "float32",
        sources: list[tuple[int, int, str]] | None = None,
    ) -> None:
        fields, size, steps = layout.fields, tuple(layout.size), layout.steps
        parameters, file_format = layout.parameters, layout.file_format
        time, coords, bc_type = layout.time, layout.coords, layout.bc_type
        self.path = path
        self.tmp = path.with_name(path.name + ".partial")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = h5py.File(self.tmp, "w")
        f = self.file
        axes = SPATIAL_AXES[: len(size)]
        f.attrs.update(
            dataset_name=dataset_name,
            grid_type="cartesian",
            n_spatial_dims=len(size),
            n_trajectories=n,
            simulation_parameters=list(parameters),
            opsolve_format=file_format,
            **parameters,
            **attrs,
            **layout.attrs,
        )
        dims = f.create_group("dimensions")
        dims.attrs["spatial_dims"] = list(axes)
        values = {"time": np.zeros(steps) if time is None else np.asarray(time, dtype=np.float64)}
        for axis, length in zip(axes, size, strict=True):
            values[axis] = np.linspace(0.0, 1.0, length) if coords is None else coords
        for key, value in values.items():
            ds = dims.create_dataset(key, data=value.astype(np.float32))
            ds.attrs.update(sample_varying=False, time_varying=key == "time")
        bcs = f.create_group("boundary_conditions")
        for axis, length in zip(axes, size, strict=True):
            group = bcs.create_group(f"{axis}_{bc_type.lower()}")
            mask = np.zeros(length, dtype=bool)
            mask[[0, -1]] = True
            group.create_dataset("mask", data=mask)
            group.attrs.update(
                bc_type=bc_type,
                associated_dims=[axis],
                associated_fields=[s.name for s in fields if s.time_varying],
                sample_varying=False,
                time_varying=False,
            )
        scalars = f.create_group("scalars")
        scalars.attrs["field_names"] = list(parameters)
        for key, value in parameters.items():
            ds = scalars.create_dataset(key, data=np.float64(value))
            ds.attrs.update(sample_varying=False, time_varying=False)
        for group in WELL_FIELD_GROUPS:
            f.create_group(group).attrs["field_names"] = []
        t0 = f["t0_fields"]
        t0.attrs["field_names"] = [s.name for s in fields]
        self.specs = {s.name: s for s in fields}
        for spec in fields:
            shape = field_shape(spec, n, steps, size)
            if sources and spec.sample_varying:
                ds = t0.create_virtual_dataset(
                    spec.name, virtual_layout(f"t0_fields/{spec.name}", shape, dtype, sources),
                    fillvalue=np.nan,  # a part gone missing reads as NaN: verify fails it
                )  # fmt: skip
            else:
                chunks = (1,) * (len(shape) - len(size)) + tuple(size)
                ds = t0.create_dataset(spec.name, shape=shape, dtype=dtype, chunks=chunks)
            ds.attrs.update(
                dim_varying=[True] * len(size),
                sample_varying=spec.sample_varying,
                time_varying=spec.time_varying,
            )
        prov = f.create_group("provenance")
        prov.attrs.update(provenance)
        diagnostics = {**FORMATS[file_format], "method": STRING, **PLACEMENT, **layout.per_sample}
        for key, kind in diagnostics.items():
            prov.create_dataset(key, shape=(n,), dtype=kind)

    def write(self, start: int, arrays: dict[str, np.ndarray]) -> None:
        """Store samples ``start : start + B`` of each sample-varying field and diagnostic.

        Fields that do not vary per sample are written whole (without the batch axis).
        """
        for key, value in arrays.items():
            if key in self.specs:
                target = self.file["t0_fields"][key]
                if self.specs[key].sample_varying:
                    target[start : start + len(value)] = value
                else:
                    target[...] = value
            else:
                target = self.file["provenance"][key]
                target[start : start + len(value)] = value

    def commit(self) -> None:
        """Close the file and rename it to its final name."""
        self.file.close()
        replace_atomic(self.tmp, self.path)

    def abort(self) -> None:
        """Close and delete the temporary file."""
        with contextlib.suppress(Exception):
            self.file.close()
        self.tmp.unlink(missing_ok=True)


def virtual_layout(
    name: str, shape: tuple[int, ...], dtype: str, sources: list[tuple[int, int, str]]
) -> h5py.VirtualLayout:
    """The layout of a virtual dataset ``shape`` whose samples ``start:stop`` are dataset
    ``name`` of the file ``part`` (relative paths are resolved from the virtual file's
    directory, so that a dataset directory can be moved whole)."""
    layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
    for start, stop, part in sources:
        layout[start:stop] = h5py.VirtualSource(part, name, shape=(stop - start, *shape[1:]))
    return layout


def missing_parts(path: str | Path, f: h5py.File) -> list[str]:
    """The part files that the virtual datasets of ``f`` (opened from ``path``) read and that
    are not there (relative to the file's directory), in order, without repeats."""
    missing: list[str] = []
    for group in WELL_FIELD_GROUPS:
        for ds in f[group].values() if group in f else []:
            if not (isinstance(ds, h5py.Dataset) and ds.is_virtual):
                continue
            for source in ds.virtual_sources():
                name = source.file_name
                gone = name != "." and not (Path(path).parent / name).is_file()
                if gone and name not in missing:
                    missing.append(name)
    return missing


def consolidate_file(path: str | Path, block_bytes: int = 2**26) -> bool:
    """Replace a split file whose fields are virtual datasets by one plain file holding the
    same arrays (copied in blocks of about ``block_bytes``), atomically; returns whether there
    was anything to copy. The parts stay; the caller removes them.

    The copy keeps every attribute, and each field the chunks of its parts (one chunk per
    sample per step), so that it equals the file a single process writes.
    """
    path = Path(path)
    with open_dataset_file(path) as f:
        virtual = [
            name
            for group in WELL_FIELD_GROUPS
            for name, ds in (f[group].items() if group in f else [])
            if isinstance(ds, h5py.Dataset) and ds.is_virtual
        ]
        if not virtual:
            return False
        missing = missing_parts(path, f)
        if missing:
            raise UserError(f"{path}: cannot consolidate, part file {missing[0]} is missing")
        tmp = path.with_name(path.name + ".partial")
        try:
            with h5py.File(tmp, "w") as out:
                _copy_group(path, f, out, block_bytes)
            replace_atomic(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return True


def _copy_group(path: Path, source: h5py.Group, target: h5py.Group, block_bytes: int) -> None:
    """Copy ``source`` into ``target``: plain datasets as they are, virtual ones as plain."""
    target.attrs.update(source.attrs)
    for name, item in source.items():
        if isinstance(item, h5py.Group):
            _copy_group(path, item, target.create_group(name), block_bytes)
        elif not item.is_virtual:
            source.copy(item, target, name=name)
        else:
            first = item.virtual_sources()[0]
            with h5py.File(path.parent / first.file_name, "r") as part:
                chunks = part[first.dset_name].chunks
            ds = target.create_dataset(name, shape=item.shape, dtype=item.dtype, chunks=chunks)
            ds.attrs.update(item.attrs)
            per_sample = max(item.dtype.itemsize * int(np.prod(item.shape[1:])), 1)
            step = max(block_bytes // per_sample, 1)
            for start in range(0, item.shape[0], step):
                ds[start : start + step] = item[start : start + step]


@contextlib.contextmanager
def open_dataset_file(path: str | Path) -> Iterator[h5py.File]:
    """Open a dataset file for reading; an unreadable or non-HDF5 file is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    try:
        handle = h5py.File(path, "r")
    except OSError as err:
        if isinstance(err, BlockingIOError) or "unable to lock file" in str(err):
            raise UserError(
                f"{path}: is being written by another process; wait for it to finish"
            ) from None
        if path.name.endswith(".partial"):
            raise UserError(
                f"{path}: is a split file still being written (or left by an interrupted run); "
                "run the generate command again to finish it"
            ) from None
        reason = str(err).split("(")[0].strip().rstrip(":") or "unreadable"
        raise UserError(
            f"{path}: not a readable HDF5 file (truncated or corrupted?): {reason}"
        ) from None
    try:
        yield handle
    finally:
        handle.close()


def check_schema(f: h5py.File) -> list[str]:
    """Problems with a file's layout against The Well's rules and ours (empty = conforms)."""
    problems: list[str] = []
    try:
        _check_schema(f, problems)
    except (KeyError, OSError, ValueError, TypeError) as err:
        problems.append(f"unreadable structure: {err}")
    return problems


def _check_schema(f: h5py.File, problems: list[str]) -> None:
    for key in ("dataset_name", "grid_type", "n_spatial_dims", "n_trajectories"):
        if key not in f.attrs:
            problems.append(f"root attribute {key!r} missing")
    if "simulation_parameters" not in f.attrs:
        problems.append("root attribute 'simulation_parameters' missing")
    else:
        for name in f.attrs["simulation_parameters"]:
            if name not in f.attrs:
                problems.append(f"simulation parameter {name!r} has no root attribute")
    file_format = f.attrs.get("opsolve_format")
    if file_format not in FORMATS:
        problems.append(f"root attribute 'opsolve_format' is not one of {', '.join(FORMATS)}")
    for group in ("dimensions", "boundary_conditions", "scalars", *WELL_FIELD_GROUPS, "provenance"):
        if group not in f:
            problems.append(f"group {group!r} missing")
    if problems:
        return
    n = int(f.attrs["n_trajectories"])
    dims = f["dimensions"]
    spatial = [str(d) for d in dims.attrs.get("spatial_dims", [])]
    if len(spatial) != int(f.attrs["n_spatial_dims"]):
        problems.append("dimensions.spatial_dims does not match n_spatial_dims")
        return
    for d in ["time", *spatial]:
        if d not in dims:
            problems.append(f"dimension {d!r} missing")
        elif "sample_varying" not in dims[d].attrs:
            problems.append(f"dimension {d!r} lacks attribute 'sample_varying'")
    if problems:
        return
    size = tuple(dims[d].shape[-1] for d in spatial)
    steps = dims["time"].shape[-1]
    for name, bc in f["boundary_conditions"].items():
        for key in ("bc_type", "associated_dims", "associated_fields"):
            if key not in bc.attrs:
                problems.append(f"boundary condition {name!r} lacks attribute {key!r}")
        if bc.attrs.get("bc_type") not in ("WALL", "OPEN", "PERIODIC"):
            problems.append(f"boundary condition {name!r}: bc_type must be WALL, OPEN or PERIODIC")
        if "mask" not in bc:
            problems.append(f"boundary condition {name!r} has no mask")
    for name in f["scalars"].attrs.get("field_names", []):
        if name not in f["scalars"]:
            problems.append(f"scalar {name!r} listed but missing")
    for group in WELL_FIELD_GROUPS:
        order = int(group[1])
        if "field_names" not in f[group].attrs:
            problems.append(f"{group} lacks attribute 'field_names'")
            continue
        for name in f[group].attrs["field_names"]:
            if name not in f[group]:
                problems.append(f"{group}/{name} listed but missing")
                continue
            ds = f[group][name]
            flags = {k: ds.attrs.get(k) for k in ("dim_varying", "sample_varying", "time_varying")}
            if any(v is None for v in flags.values()):
                problems.append(f"{group}/{name} lacks dim_varying/sample_varying/time_varying")
                continue
            spec = FieldSpec(name, bool(flags["sample_varying"]), bool(flags["time_varying"]))
            expected = field_shape(spec, n, steps, size) + (len(spatial),) * order
            if ds.shape != expected:
                problems.append(f"{group}/{name} has shape {ds.shape}, expected {expected}")
            if ds.dtype.kind != "f":
                problems.append(f"{group}/{name} is {ds.dtype}, expected floating point")
    prov = f["provenance"]
    for key in [*FORMATS[file_format], "method", *PLACEMENT]:
        if key not in prov:
            if key not in PLACEMENT:
                problems.append(f"provenance/{key} missing")
        elif prov[key].shape != (n,):
            problems.append(f"provenance/{key} has shape {prov[key].shape}, expected ({n},)")
    missing = missing_parts(f.filename, f)
    if missing:
        problems.append(
            f"part file {missing[0]} of its virtual datasets is missing"
            + (f" (+{len(missing) - 1} more)" if len(missing) > 1 else "")
            + f"; a split written by several processes reads its {PARTS}/ folder"
        )
    if "config" not in prov.attrs:
        problems.append("provenance lacks attribute 'config'")


def dataset_files(path: str | Path) -> list[Path]:
    """The split files of a dataset directory (train, valid, test order), or ``[path]``."""
    path = Path(path)
    if path.is_dir():
        files = [p for split in SPLITS for p in sorted((path / "data" / split).glob("*.hdf5"))]
        if not files:
            raise UserError(f"{path}: no dataset files under {path / 'data'}/<split>/")
        return files
    return [path]


def field_statistics(path: Path, fields: list[str], chunk: int = 64) -> dict[str, dict[str, float]]:
    """Mean, std, rms, min and max of each field over all samples of one file (streamed).

    Returns ``{"mean": {field: value}, "std": {...}, "rms": {...}, "min": ..., "max": ...}``,
    the layout of The Well's ``stats.yaml`` (steady data have no ``*_delta`` entries).
    """
    sums = {k: np.zeros(3) for k in fields}  # count, sum, sum of squares (float64)
    lows = {k: np.inf for k in fields}
    highs = {k: -np.inf for k in fields}
    with open_dataset_file(path) as f:
        for key in fields:
            ds = f["t0_fields"][key]
            blocks = range(0, ds.shape[0], chunk) if ds.attrs["sample_varying"] else [None]
            for start in blocks:
                block = ds[...] if start is None else ds[start : start + chunk]
                block = np.asarray(block, dtype=np.float64)
                sums[key] += (block.size, block.sum(), np.square(block).sum())
                lows[key] = min(lows[key], float(block.min()))
                highs[key] = max(highs[key], float(block.max()))
    stats: dict[str, dict[str, float]] = {k: {} for k in ("mean", "std", "rms", "min", "max")}
    for key, (count, total, squares) in sums.items():
        mean = total / count
        stats["mean"][key] = float(mean)
        stats["std"][key] = float(np.sqrt(max(squares / count - mean**2, 0.0)))
        stats["rms"][key] = float(np.sqrt(squares / count))
        stats["min"][key] = lows[key]
        stats["max"][key] = highs[key]
    return stats


def write_stats(root: Path, stats: dict[str, Any]) -> Path:
    """Store normalization statistics as ``root/stats.yaml`` (atomically)."""
    path = Path(root) / "stats.yaml"
    write_text_atomic(path, yaml.safe_dump(stats, sort_keys=False))
    return path


STATISTICS = ("mean", "std", "rms", "min", "max")


def read_stats(root: Path, fields: list[str] | None = None) -> dict[str, Any] | None:
    """Statistics stored by :func:`write_stats`, or None if absent.

    A file that is not valid YAML, lacks one of :data:`STATISTICS` or one of ``fields``, or
    holds a value that is not a finite number is a UserError saying how to recompute it.
    """
    path = Path(root) / "stats.yaml"
    if not path.is_file():
        return None
    fix = f"delete {path} and it is computed again from the train split"
    try:
        stats = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        raise UserError(f"{path} is not valid YAML; {fix}") from None
    if not isinstance(stats, dict):
        raise UserError(f"{path} does not hold statistics per field; {fix}")
    for kind in STATISTICS:
        values = stats.get(kind)
        if not isinstance(values, dict):
            raise UserError(f"{path} lacks the {kind!r} statistics; {fix}")
        for name in fields or values:
            value = values.get(name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise UserError(f"{path}: {kind} of field {name!r} is missing; {fix}")
            if not np.isfinite(value):
                raise UserError(f"{path}: {kind} of field {name!r} is {value}; {fix}")
    return stats
