"""The GPU acceptance run (``benchmarks/gpu_suite.py``) in its tiny CPU mode: every item runs
end to end and writes its report; a wrong result ends it with a non-zero exit; bad input is
one line. (The ``pytest`` item is left out: it would run this test suite inside itself.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

SCRIPT = ROOT / "benchmarks" / "gpu_suite.py"
ITEMS = ["darcy", "helmholtz", "navier_stokes", "semilinear", "training", "rough"]


def suite(*args: str, fault: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "OPSOLVE_SUITE_FAULT"}
    if fault:
        env["OPSOLVE_SUITE_FAULT"] = fault
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--device", "cpu", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_tiny_run_end_to_end(tmp_path):
    done = suite("--tiny", "--out", str(tmp_path), "--skip", "pytest")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_suite.json").read_text())
    assert report["ok"] and report["tiny"] and list(report["items"]) == ITEMS
    assert report["device"].startswith("CPU") and report["versions"]["torch"]
    for name, item in report["items"].items():
        assert item["error"] is None and not item["failed"], name
        assert item["rows"] and item["seconds"] > 0, name
        judged = [c for c in item["checks"] if c["kind"] == "correctness"]
        assert judged and all(c["passed"] for c in judged), name
        targets = [c for c in item["checks"] if c["kind"] == "target"]
        assert all(c["passed"] is None for c in targets), name  # a tiny CPU run judges none
    darcy = report["items"]["darcy"]
    assert any("CuPy" in n for n in darcy["notes"])  # the CuPy row is skipped with a message
    models = [row[0] for row in report["items"]["training"]["rows"]]
    assert {"mgno", "fno", "sfno", "observer_ns", "observer_ks", "lsm"} <= set(models)
    markdown = (tmp_path / "gpu_suite.md").read_text()
    assert "# GPU acceptance run" in markdown and "every check passed" in markdown
    assert all(f"## {name}:" in markdown for name in ITEMS)


def test_a_wrong_result_fails_the_run(tmp_path):
    done = suite("--tiny", "--out", str(tmp_path), "--only", "darcy", "helmholtz", fault="darcy")
    assert done.returncode == 1, done.stderr[-3000:]
    assert "FAILED: darcy" in done.stderr
    report = json.loads((tmp_path / "gpu_suite.json").read_text())
    assert not report["ok"] and report["items"]["darcy"]["failed"]
    assert not report["items"]["helmholtz"]["failed"]
    failed = [c["name"] for c in report["items"]["darcy"]["checks"] if c["passed"] is False]
    assert any("residual" in name for name in failed)
    assert "FAILED" in (tmp_path / "gpu_suite.md").read_text()


def test_bad_input_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import gpu_suite

    cases = [
        (["--out", str(tmp_path), "--only", "nope"], "invalid choice: 'nope'"),
        (["--out", str(SCRIPT)], "is a file, not a directory"),
        (["--out", str(tmp_path), "--rough-seconds", "0"], "--rough-seconds must be > 0"),
        (["--out", str(tmp_path), "--device", "cuda"], "no CUDA device is visible"),
    ]
    if gpu_suite.torch.cuda.is_available():
        cases.pop()
    for args, message in cases:
        with pytest.raises(SystemExit) as stop:
            gpu_suite.main(args)
        err = capsys.readouterr().err
        assert stop.value.code == 2, err
        assert message in err and err.count("\n") == 1 and "Traceback" not in err, err
