"""What the acceptance run (``benchmarks/gpu_suite.py``) records: sections of rows, checks and
notes, and the report written from them (``gpu_suite.json`` and ``gpu_suite.md``).

Two kinds of check:

- ``correctness`` (a residual, an agreement with the CPU or with a peer): a failure makes the
  run exit non-zero;
- ``target`` (a speed-up or a time asked for): recorded as met or not met, never a failure.

A check whose setting is not the one its figure was taken for (a tiny run, a CPU run, a missing
CPU figure) is recorded with ``applies: false`` and not judged.
"""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

OPTIONAL = (
    "numpy",
    "scipy",
    "cupy-cuda13x",
    "cupy-cuda12x",
    "cupy",
    "jax",
    "jaxlib",
    "exponax",
    "torch-cfd",
    "neuraloperator",
    "pyamg",
)


@dataclass
class Context:
    """What an item is given: the device, its own sizes, where the report goes (``out``) and
    where its scratch files go (``work``, removed after the run), the peers' Python."""

    device: str
    tiny: bool
    budget: dict[str, Any]
    out: Path
    work: Path
    peer_python: str
    fault: str | None = None  # the item whose result is perturbed (a check of the checks)
    shared: dict[str, Any] = field(default_factory=dict)  # results one item leaves another

    section: Section | None = None  # the item's record so far (kept if the item fails)

    def begin(self, section: Section) -> Section:
        """Register ``section`` as the item's record and return it."""
        self.section = section
        return section

    def sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()

    def perturbed(self, item: str, value: Any) -> Any:
        """``value`` as it is, or 0.1% off when ``fault`` names ``item``."""
        return value * (1 + 1e-3) if self.fault == item else value


@dataclass
class Check:
    """One judged number: ``value`` against ``limit`` (``relation`` "<=" or ">=")."""

    name: str
    value: float
    limit: float
    kind: str = "correctness"
    relation: str = "<="
    applies: bool = True

    @property
    def passed(self) -> bool | None:
        """True / False when judged, None when it does not apply."""
        if not self.applies:
            return None
        if not math.isfinite(self.value):
            return False
        return self.value <= self.limit if self.relation == "<=" else self.value >= self.limit

    def label(self) -> str:
        if self.passed is None:
            return "n/a"
        if self.kind == "target":
            return "met" if self.passed else "not met"
        return "ok" if self.passed else "FAILED"


@dataclass
class Section:
    """The record of one item: a table, its checks and notes, and its time against budget."""

    item: str
    title: str
    columns: list[str]
    budget_s: float
    rows: list[list[str]] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None

    def row(self, *values: Any) -> None:
        self.rows.append([_cell(v) for v in values])

    def note(self, text: str) -> None:
        print(f"  {self.item}: {text}", flush=True)
        self.notes.append(text)

    def check(self, name: str, value: float, limit: float, **kwargs: Any) -> Check:
        made = Check(name, float(value), float(limit), **kwargs)
        self.checks.append(made)
        return made

    @property
    def failed(self) -> bool:
        """An error, or a correctness check that failed."""
        wrong = [c for c in self.checks if c.kind == "correctness" and c.passed is False]
        return self.error is not None or bool(wrong)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return "-"
        return f"{value:.3g}" if abs(value) < 1e-2 or abs(value) >= 1e5 else f"{value:,.4g}"
    return str(value)


def _number(value: float) -> float | None:
    return value if math.isfinite(value) else None


def versions() -> dict[str, str]:
    """Python, torch (and its CUDA) and the installed optional packages."""
    found = {"python": platform.python_version(), "torch": torch.__version__}
    found["cuda"] = str(torch.version.cuda)
    for name in OPTIONAL:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return found


def device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    return f"CPU: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def header(device: str, tiny: bool, command: str, budget_s: float) -> dict[str, Any]:
    """What the report says about the run as a whole."""
    return {
        "device": device_name(device),
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "versions": versions(),
        "tiny": tiny,
        "command": command,
        "budget_s": budget_s,
    }


def to_markdown(head: dict[str, Any], sections: list[Section]) -> str:
    """The report as markdown: the run, then per item its table, checks and notes."""
    total = sum(s.seconds for s in sections)
    lines = [
        "# GPU acceptance run",
        "",
        f"- Device: {head['device']}"
        + (" (tiny sizes: a check of the script)" if head["tiny"] else ""),
        f"- Date: {head['date']}; {total:.0f} s in all (budget {head['budget_s']:.0f} s)",
        "- Versions: " + ", ".join(f"{k} {v}" for k, v in head["versions"].items()),
        f"- Command: `{head['command']}`",
        f"- Result: {'FAILED' if any(s.failed for s in sections) else 'every check passed'}",
        "",
    ]
    for s in sections:
        lines += [f"## {s.item}: {s.title}", "", f"{s.seconds:.1f} s (budget {s.budget_s:.0f} s)"]
        if s.error:
            lines += ["", f"**error**: {s.error}"]
        if s.rows:
            lines += ["", "| " + " | ".join(s.columns) + " |", "|" + "---|" * len(s.columns)]
            lines += ["| " + " | ".join(r) + " |" for r in s.rows]
        if s.checks:
            lines.append("")
            for c in s.checks:
                value = _cell(c.value)
                lines.append(f"- [{c.label()}] {c.name}: {value} ({c.relation} {_cell(c.limit)})")
        if s.notes:
            lines.append("")
            lines += [f"- {n}" for n in s.notes]
        lines.append("")
    return "\n".join(lines)


def write_report(out: Path, head: dict[str, Any], sections: list[Section]) -> None:
    """``out/gpu_suite.json`` and ``out/gpu_suite.md`` (rewritten after every item)."""
    body = {
        **head,
        "ok": not any(s.failed for s in sections),
        "seconds": sum(s.seconds for s in sections),
        "items": {
            s.item: {
                **asdict(s),
                "failed": s.failed,
                "checks": [
                    {
                        **asdict(c),
                        "value": _number(c.value),
                        "limit": _number(c.limit),
                        "passed": c.passed,
                    }
                    for c in s.checks
                ],
            }
            for s in sections
        },
    }
    (out / "gpu_suite.json").write_text(json.dumps(body, indent=2) + "\n")
    (out / "gpu_suite.md").write_text(to_markdown(head, sections))
