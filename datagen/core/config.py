"""Loading and validating YAML configs (shared by ``datagen`` and ``opsolve``), and the keys
every generation config has.

A config is a YAML mapping validated against a typed pydantic schema before any work starts.
Command-line overrides are ``dotted.key=value`` pairs whose values are parsed as YAML
(``samples.train=32``, ``coefficient.family=lognormal``, ``output.overwrite=true``).
Every error is a :class:`UserError` with one line naming the key and what is allowed.

:class:`GenerationConfig` declares the keys common to every problem (name, resolution,
samples, seed, batch_size, device, storage_dtype, output); a problem's config subclasses it,
names its ``problem`` and adds its own sections (``datagen/problems/<name>/config.py``).
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import pydantic
import yaml
from pydantic import Field, model_serializer, model_validator

from datagen.core.errors import UserError

Schema = TypeVar("Schema", bound=pydantic.BaseModel)

# An integer that must be written as one: 64.5, "64" and true are rejected, not coerced.
Int = Annotated[int, pydantic.Strict()]
# A dataset name: files are NAME_SPLIT.hdf5.
DatasetName = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9_.-]+$", description="dataset name; files are NAME_SPLIT.hdf5")
]
# Nodes per side of a grid that includes the boundary.
Resolution = Annotated[
    int,
    pydantic.Strict(),
    Field(ge=5, le=8193, description="grid nodes per side including the boundary"),
]
# Samples solved together and stored as one resumable shard.
BatchSize = Annotated[
    int, pydantic.Strict(), Field(ge=1, le=65536, description="samples per work unit")
]
# Gaussian random fields (covariance tau^(2 alpha - 2) (-Laplace + tau^2)^(-alpha)): alpha > 1
# gives a field of finite variance in 2-D; tau above 1e4 is a length below any grid we store.
Smoothness = Annotated[float, Field(gt=1.0, le=100.0)]
InverseLength = Annotated[float, Field(gt=0.0, le=1e4)]
# The scale of an input field, either sign: |value| <= 1e8 keeps float32 data finite.
Scale = Annotated[float, Field(ge=-1e8, le=1e8)]
# A coordinate on the unit square.
UnitInterval = Annotated[float, Field(ge=0.0, le=1.0)]
# A relative residual a float64 solve can reach.
Tolerance = Annotated[float, Field(ge=1e-14, lt=1.0)]
# Iteration caps and step counts: beyond these a run would not end in any reasonable time.
MAX_ITERATIONS = 10**7
MAX_STEPS = 10**9
Boundary = Literal["periodic", "neumann"]
Device = Literal["cpu", "cuda", "auto"]
DEVICES: tuple[str, ...] = typing.get_args(Device)


class StrictModel(pydantic.BaseModel):
    """Base for config schemas: unknown keys are errors, values are validated on assignment,
    and a float is finite (nan and inf are refused with the key named)."""

    model_config = pydantic.ConfigDict(
        extra="forbid", validate_assignment=True, allow_inf_nan=False
    )


class RandomField(StrictModel):
    """GRF parameters: covariance ``tau^(2 alpha - 2) (-Laplace + tau^2)^(-alpha)``."""

    alpha: Smoothness = Field(2.0, description="smoothness exponent (> 1 in 2-D)")
    tau: InverseLength = Field(3.0, description="inverse length scale")
    boundary: Boundary = Field(
        "neumann", description="periodic (FFT modes) or neumann (cosine modes) field"
    )


class Samples(StrictModel):
    """Number of samples per split."""

    train: Int = Field(64, ge=0, description="samples of the train split")
    valid: Int = Field(16, ge=0, description="samples of the valid split")
    test: Int = Field(16, ge=0, description="samples of the test split")

    @model_validator(mode="after")
    def _some(self) -> Samples:
        if self.train + self.valid + self.test == 0:
            raise ValueError("at least one split needs samples")
        return self


class OutputDir(StrictModel):
    """Where a dataset goes: ``dir/data/<split>/<name>_<split>.hdf5`` plus stats and config."""

    dir: str = Field("runs/data/darcy", description="dataset directory")
    overwrite: bool = Field(False, description="replace an existing dataset (same as --overwrite)")


class GenerationConfig(StrictModel):
    """The keys of every generation config; a problem subclasses it (its ``problem`` literal,
    its defaults for ``name``, ``resolution`` and ``output``, and its own sections).

    ``batch_size`` samples form one work unit: solved together and stored as one resumable
    shard. Sample ``i`` of a split depends only on ``(seed, split, i)``.
    """

    problem: str = Field(description="the PDE: darcy, poisson, heat, helmholtz or navier_stokes")
    name: DatasetName
    resolution: Resolution
    samples: Samples = Samples()
    seed: Int = Field(
        0, ge=0, lt=2**63, description="base seed; sample i of a split depends on (seed, split, i)"
    )
    batch_size: BatchSize = 16
    device: Device = Field(
        "cpu", description="where fields are drawn and solves run; auto: cuda if available"
    )
    storage_dtype: Literal["float32", "float64"] = Field(
        "float32", description="dtype of the stored arrays: float32 (The Well) or float64"
    )
    output: OutputDir = OutputDir()

    @model_serializer(mode="wrap")
    def _reading_order(self, handler: Any) -> dict[str, Any]:
        """Dump in reading order: what the dataset is, then the problem's own sections, then
        how it is run (``batch_size``, ``device``, ``storage_dtype``, ``output``)."""
        data = handler(self)
        tail = ("batch_size", "device", "storage_dtype", "output")
        return {**{k: v for k, v in data.items() if k not in tail}, **{k: data[k] for k in tail}}


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping from ``path``; a missing file or a non-mapping is a UserError."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path} is a directory, expected a YAML config file")
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise UserError(f"{path} is not valid YAML{where}") from None
    if data is None:
        raise UserError(f"{path} is empty: a config holds at least the keys it sets")
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a YAML mapping of keys to values")
    return data


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``dotted.key=value`` override applied.

    Values are parsed as YAML scalars or flow collections (``1e-8``, ``true``, ``[1, 2]``).
    """
    out = _deep_copy(data)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise UserError(f"override {item!r} must look like key=value or section.key=value")
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise UserError(f"override {item!r}: {part!r} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return out


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def validate(schema: type[Schema], data: dict[str, Any], source: str = "config") -> Schema:
    """Validate ``data`` against ``schema``; the first problem becomes a one-line UserError."""
    try:
        return schema.model_validate(data)
    except pydantic.ValidationError as err:
        raise UserError(f"{source}: {_describe(schema, err.errors()[0])}") from None


def load_config(
    schema: type[Schema], path: str | Path, overrides: list[str] | None = None
) -> Schema:
    """Read ``path``, apply ``overrides`` and validate against ``schema``."""
    data = apply_overrides(read_yaml(path), list(overrides or []))
    return validate(schema, data, source=str(path))


def first_difference(
    old: Any, new: Any, ignore: tuple[str, ...] = (), prefix: str = ""
) -> tuple[str, Any, Any] | None:
    """The first dotted key (in sorted order) where two nested config mappings differ, with
    its value in each; keys in ``ignore`` do not count. None when they agree."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return None if old == new else (prefix.rstrip("."), old, new)
    for key in sorted(set(old) | set(new)):
        name = f"{prefix}{key}"
        if name in ignore:
            continue
        found = first_difference(old.get(key), new.get(key), ignore, name + ".")
        if found is not None:
            return found
    return None


def dump_config(config: pydantic.BaseModel) -> str:
    """The resolved config (defaults filled in) as YAML text, keys in schema order."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def _describe(schema: type[pydantic.BaseModel], error: dict[str, Any]) -> str:
    """Turn one pydantic error record into 'key: what is wrong; what is allowed'."""
    loc = [str(p) for p in error["loc"]]
    key = ".".join(loc)
    kind = error["type"]
    value = error.get("input")
    if kind == "extra_forbidden":
        allowed = _fields_at(schema, loc[:-1])
        close = difflib.get_close_matches(loc[-1], allowed, n=1, cutoff=0.5)
        hint = f"; did you mean {'.'.join([*loc[:-1], close[0]])!r}?" if close else ""
        return f"unknown key {key!r}{hint} (allowed here: {', '.join(allowed) or 'none'})"
    if kind == "missing":
        return f"{key}: required key is missing"
    if kind in ("literal_error", "enum"):
        return f"{key}: {value!r} is not allowed; expected {error['ctx']['expected']}"
    if kind.endswith("_type") or kind.endswith("_parsing") or kind == "model_type":
        return f"{key}: {value!r} has the wrong type ({error['msg'].lower()})"
    message = error["msg"].removeprefix("Value error, ")
    got = "" if isinstance(value, dict) else f" (got {value!r})"
    return f"{key or 'config'}: {message}{got}"


def _fields_at(schema: type[pydantic.BaseModel], path: list[str]) -> list[str]:
    """Field names of the sub-model at ``path`` (following Optional[...] annotations)."""
    model: Any = schema
    for part in path:
        field = model.model_fields.get(part)
        if field is None:
            return []
        model = _model_in(field.annotation)
        if model is None:
            return []
    return list(model.model_fields)


def _model_in(annotation: Any) -> type[pydantic.BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
