"""Write docs/config-reference.md: every key of every config schema, from the schemas themselves.

    python scripts/config_reference.py [--check]

One table per generation problem (the registry's schemas) and one for training configs: the
dotted key, its type, default, allowed values or range, and its meaning (the field's
description, or the first sentence of its section's docstring). ``--check`` exits 1 when the
file is not what the schemas give (a test runs it).
"""

from __future__ import annotations

import re
import sys
import typing
from pathlib import Path
from typing import Any

import annotated_types
import pydantic

from datagen.problems.registry import PROBLEMS
from opsolve.train.config import TrainConfig

OUT = Path(__file__).resolve().parents[1] / "docs" / "config-reference.md"


def _type(annotation: Any) -> str:
    """A short name of a field's type: ``int``, ``float or null``, ``one of a, b``."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return "one of " + ", ".join(f"`{a}`" for a in args)
    if origin is typing.Annotated:
        return _type(args[0])
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " or ".join("null" if a is type(None) else _type(a) for a in args)
    if origin in (tuple, list):
        inner = ", ".join(_type(a) for a in args if a is not Ellipsis)
        return f"list of {inner}" if origin is list or Ellipsis in args else f"[{inner}]"
    if origin is dict:
        return "mapping"
    return getattr(annotation, "__name__", str(annotation)).replace("NoneType", "null")


def _allowed(info: pydantic.fields.FieldInfo) -> str:
    """The bounds and pattern of a field: ``>= 1, <= 4096``."""
    bounds = []
    for item in info.metadata:
        for attribute, sign in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if isinstance(item, getattr(annotated_types, attribute.title())):
                bounds.append(f"{sign} {_number(getattr(item, attribute))}")
        pattern = getattr(item, "pattern", None)
        if pattern:
            bounds.append(f"matches `{pattern}`")
        if isinstance(item, annotated_types.MinLen):
            bounds.append(f"length >= {item.min_length}")
    return ", ".join(bounds)


def _number(value: float) -> str:
    """``2^63`` for large powers of two, ``1e-08`` and ``0.5`` for floats."""
    if isinstance(value, int) and value > 2**20 and value & (value - 1) == 0:
        return f"2^{value.bit_length() - 1}"
    return f"{value:g}" if isinstance(value, float) else str(value)


def _model(annotation: Any) -> type[pydantic.BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model(arg)
        if found is not None:
            return found
    return None


def _markdown(text: str) -> str:
    """Docstring markup as Markdown: ``x`` and :class:`x` become `x`."""
    return re.sub(r":\w+:`~?([^`]+)`", r"`\1`", text).replace("``", "`")


def _first_sentence(doc: str | None) -> str:
    text = " ".join((doc or "").split())
    return _markdown(text.split(". ")[0].rstrip(".")) if text else ""


def _value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return f"`{value}`" if isinstance(value, str) else _number(value)


def rows(schema: type[pydantic.BaseModel], default: Any, prefix: str = "") -> list[tuple]:
    """(key, type, default, allowed, meaning) of every key of ``schema``, depth first."""
    out = []
    for name, info in schema.model_fields.items():
        key = f"{prefix}{name}"
        value = getattr(default, name, None) if default is not None else info.default
        section = _model(info.annotation)
        if section is not None:
            meaning = info.description or _first_sentence(section.__doc__)
            required = "required" if info.is_required() else ""
            out.append((key, "section", required, "", meaning))
            instance = value if isinstance(value, pydantic.BaseModel) else None
            out += rows(section, instance, key + ".")
            continue
        shown = "required" if info.is_required() and default is None else _value(value)
        out.append((key, _type(info.annotation), shown, _allowed(info), info.description or ""))
    return out


def table(entries: list[tuple]) -> str:
    lines = ["| key | type | default | allowed | meaning |", "|---|---|---|---|---|"]
    for key, kind, default, allowed, meaning in entries:
        cells = (f"`{key}`", kind, default, allowed, _markdown(meaning).replace("|", "\\|"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _defaults(schema: type[pydantic.BaseModel]) -> Any:
    try:
        return schema()
    except pydantic.ValidationError:  # a schema with required keys: show the class defaults
        return None


def reference() -> str:
    parts = [
        "# Config key reference",
        "",
        "Generated from the config schemas by `scripts/config_reference.py` (a test checks that",
        "this file is current). Keys are dotted paths (`solver.tol`); a `section` groups the",
        "keys below it. What the keys do is explained on each problem's page",
        "([datagen.md](datagen.md), [training.md](training.md)).",
    ]
    for name, problem in PROBLEMS.items():
        schema = problem.config
        parts += ["", f"## {name}", "", _first_sentence(schema.__doc__) + ".", ""]
        parts.append(table(rows(schema, _defaults(schema))))
    parts += ["", "## training", "", _first_sentence(TrainConfig.__doc__) + ".", ""]
    parts.append(table(rows(TrainConfig, _defaults(TrainConfig))))
    return "\n".join(parts) + "\n"


def main(argv: list[str]) -> int:
    text = reference()
    if "--check" in argv:
        if not OUT.is_file() or OUT.read_text() != text:
            print(f"{OUT} is stale: run python scripts/config_reference.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"written {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
