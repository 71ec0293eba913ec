"""The shape of the packages: no import cycle, and no layer importing a higher one.

Every ``import`` statement of ``datagen/`` and ``opsolve/`` counts, at module level or inside
a function or a ``TYPE_CHECKING`` block. The layers, lowest first (docs/layout.md):

- ``datagen.linalg`` (the engine) < ``datagen.core`` (contracts) < ``datagen.problems``
  (one package per PDE) < its ``registry`` < the drivers ``generate``, ``verify``, ``plots`` <
  ``datagen.cli`` (and ``datagen.__main__``, ``python -m datagen``);
- ``opsolve``: ``norms``, ``layers``, ``plots`` < ``models``, ``residual`` < ``data`` <
  ``train`` < ``eval`` < ``cli``, all above ``datagen``'s problems, and ``datagen`` never
  imports ``opsolve``.

A module may import its own layer or lower ones; problems import neither the registry nor each
other's packages in a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("datagen", "opsolve")
# (module prefix, layer): the longest matching prefix decides.
LAYERS = [
    ("datagen", 0),
    ("datagen.linalg", 1),
    ("datagen.core", 2),
    ("datagen.problems", 3),
    ("datagen.problems.registry", 4),
    ("datagen.generate", 5),
    ("datagen.verify", 5),
    ("datagen.plots", 5),
    ("datagen.cli", 6),
    ("datagen.__main__", 6),
    ("opsolve", 10),
    ("opsolve.norms", 10),
    ("opsolve.layers", 10),
    ("opsolve.plots", 10),
    ("opsolve.models", 11),
    ("opsolve.residual", 11),
    ("opsolve.data", 12),
    ("opsolve.train", 13),
    ("opsolve.eval", 14),
    ("opsolve.cli", 15),
]


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for every module of the packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def imports_of(name: str, path: Path, modules: set[str]) -> set[str]:
    """The modules of ours that ``path`` (module ``name``) imports, wherever the statement is."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                targets.add(full if full in modules else base)
    resolved = set()
    for target in targets:
        while target and target not in modules:  # ``import a.b.c`` of a name inside a module
            target = target.rpartition(".")[0]
        if target and target != name:
            resolved.add(target)
    return resolved


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    return {name: imports_of(name, path, set(files)) for name, path in files.items()}


def layer(module: str) -> int:
    matches = [(len(p), n) for p, n in LAYERS if module == p or module.startswith(p + ".")]
    assert matches, f"{module} has no layer: add it to LAYERS (and docs/layout.md)"
    return max(matches)[1]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert "datagen.generate" in graph["datagen.cli"]  # imported inside _generate
    assert "datagen.core.recipe" in graph["datagen.problems.registry"]  # under TYPE_CHECKING
    assert "opsolve.train.trainer" in graph["opsolve.cli"]


def test_no_import_cycle():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_no_layer_imports_a_higher_one():
    upward = [
        f"{module} (layer {layer(module)}) imports {target} (layer {layer(target)})"
        for module, targets in import_graph().items()
        for target in sorted(targets)
        if layer(target) > layer(module)
    ]
    assert not upward, "\n".join(upward)


def test_the_engine_never_sees_a_problem():
    for module, targets in import_graph().items():
        if module.startswith("datagen.linalg"):
            assert all(t.startswith("datagen.linalg") for t in targets), (module, targets)


@pytest.mark.parametrize(
    "graph, expected",
    [
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
        ({"a": {"b"}, "b": set(), "c": {"b"}}, []),
    ],
)
def test_cycle_finder(graph, expected):
    assert cycles(graph) == expected
