"""Loading and validating YAML configs, shared by `datagen` and `opsolve`.

A config is a YAML mapping validated against a typed pydantic schema before any work starts.
Command-line overrides are ``dotted.key=value`` pairs whose values are parsed as YAML
(``samples.train=32``, ``coefficient.family=lognormal``, ``output.overwrite=true``).
Every error is a :class:`UserError` with one line naming the key and what is allowed.
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import Annotated, Any, TypeVar

import pydantic
import yaml

from datagen.errors import UserError

Schema = TypeVar("Schema", bound=pydantic.BaseModel)

# An integer that must be written as one: 64.5, "64" and true are rejected, not coerced.
Int = Annotated[int, pydantic.Strict()]


class StrictModel(pydantic.BaseModel):
    """Base for config schemas: unknown keys are errors, values are validated on assignment."""

    model_config = pydantic.ConfigDict(extra="forbid", validate_assignment=True)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping from ``path``; a missing file or a non-mapping is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise UserError(f"{path} is not valid YAML{where}") from None
    if data is None:
        data = {}
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
