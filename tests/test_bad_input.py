"""Every bad input of every command is one line on stderr, exit status 2, and nothing on disk.

Table-driven over the schemas themselves: every float key of every generation problem (and
of training configs) gets nan, inf, -inf and a huge value, every integer key 0, a negative
and a huge value, and 0 and a negative value for the floats. A value the schema refuses must
end in one line naming the key; a value it accepts must give a dataset that verifies (no
traceback, no wrong "OK"). Every path argument of every command gets a file where a
directory is expected, a directory where a file is expected, and a place no one can write.
"""

from __future__ import annotations

import typing
from pathlib import Path

import pydantic
import pytest

from datagen.cli import main as datagen_main
from datagen.core.config import GenerationConfig
from datagen.problems.registry import PROBLEMS
from opsolve.cli import main as opsolve_main
from opsolve.train.config import TrainConfig
from tests.conftest import ROOT

# A tiny, fast config per problem: (file, overrides).
TINY = {
    "darcy": ("darcy_small", ["resolution=17"]),
    "poisson": ("poisson_small", ["resolution=17"]),
    "heat": ("heat_small", ["resolution=17", "time.records=2", "time.end=0.004"]),
    "helmholtz": ("helmholtz_small", ["resolution=33", "wavenumber.k0=10.0"]),
    "navier_stokes": ("ns_small", ["resolution=16", "store_resolution=16", "time.end=0.2",
                                   "time.records=4", "time.dt=0.05"]),
    "ks": ("ks_small", ["resolution=32", "time.records=3", "time.warmup=0.0"]),
    "kdv": ("kdv_small", ["resolution=32", "time.records=3"]),
}  # fmt: skip
SIZES = ["samples.train=2", "samples.valid=1", "samples.test=1", "batch_size=2"]
UNWRITABLE = Path("/proc/opsolve-test")  # no one, not even root, can create files there
FLOATS = {".nan": "nan", ".inf": "inf", "-.inf": "-inf", "1.0e+300": "huge"}
MORE_FLOATS = {"0.0": "zero", "-1.0": "negative"}
INTS = {"0": "zero", "-1": "negative", str(10**30): "huge"}


def leaves(schema: type[pydantic.BaseModel], prefix: str = "") -> list[tuple[str, type]]:
    """(dotted key, float or int) for every numeric leaf of a schema (tuples by element)."""
    found = []
    for name, info in schema.model_fields.items():
        key = f"{prefix}{name}"
        kinds = _kinds(info.annotation)
        models = [k for k in kinds if isinstance(k, type) and issubclass(k, pydantic.BaseModel)]
        section = models[0] if models else None
        if section is not None:
            found += leaves(section, key + ".")
        elif float in kinds:
            found.append((key, float))
        elif int in kinds and bool not in kinds:
            found.append((key, int))
    return found


def _kinds(annotation: typing.Any) -> set:
    """The types an annotation admits (through Optional, Annotated and tuples)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Literal:
        return set()
    if origin is typing.Annotated:
        return _kinds(args[0])
    if not args:
        return {annotation}
    return set().union(*(_kinds(a) for a in args))


def cases() -> list[tuple[str, str, str]]:
    """(problem, key, value) of every bad or edge value of every numeric key."""
    out = []
    for problem, entry in PROBLEMS.items():
        assert issubclass(entry.config, GenerationConfig)
        for key, kind in leaves(entry.config):
            values = {**FLOATS, **MORE_FLOATS} if kind is float else INTS
            out += [(problem, key, value) for value in values]
    return out


def _override(problem: str, key: str, value: str) -> str:
    tuple_keys = {"source.center": 2}
    if key in tuple_keys:
        return f"{key}=[{value}, 0.5]"
    return f"{key}={value}"


def refused(err: str, key: str) -> bool:
    """One line, no traceback, the key named (its last part at least)."""
    return (
        err.count("\n") == 1
        and "Traceback" not in err
        and (key in err or key.rsplit(".", 1)[-1] in err or key.split(".")[0] in err)
    )


@pytest.mark.parametrize("problem, key, value", cases())
def test_every_numeric_key_refuses_cleanly_or_works(problem, key, value, tmp_path, capsys):
    config, overrides = TINY[problem]
    out = tmp_path / "out"
    args = [str(ROOT / "configs" / "datagen" / f"{config}.yaml"), *overrides, *SIZES]
    code = datagen_main(
        ["generate", *args, _override(problem, key, value), f"output.dir={out}", "--no-progress"]
    )
    err = capsys.readouterr().err
    bad_always = value in FLOATS or value == "-1" or value == str(10**30)
    if code == 2:
        assert refused(err, key), err
        assert not out.exists(), f"{key}={value} was refused but left {out}"
    else:
        assert not bad_always, f"{key}={value} was accepted (rc {code})"
        assert code == 0, err
        assert datagen_main(["verify", str(out)]) == 0


TRAIN_FLOATS = [key for key, kind in leaves(TrainConfig) if kind is float]


@pytest.mark.parametrize("key", TRAIN_FLOATS)
@pytest.mark.parametrize("value", list(FLOATS))
def test_every_training_float_refuses_non_finite_and_huge(key, value, tmp_path, capsys):
    config = ROOT / "configs" / "train" / "darcy_fno_small.yaml"
    out = tmp_path / "run"
    code = opsolve_main(["train", str(config), f"{key}={value}", f"output.dir={out}"])
    err = capsys.readouterr().err
    assert code == 2 and refused(err, key), err
    assert not out.exists()


def test_the_tables_cover_every_key():
    keys = {key for _, key, _ in cases()}
    assert {"forcing.value", "coefficient.high", "coefficient.tau", "viscosity", "drag",
            "time.end", "time.dt", "forcing.amplitude", "source.center", "samples.train",
            "batch_size", "seed", "solver.maxiter"} <= keys  # fmt: skip
    assert {"optimizer.lr", "loss.gradient_weight", "refine.lr"} <= set(TRAIN_FLOATS)


# --------------------------------------------------------------------------- path arguments


@pytest.fixture
def places(tmp_path) -> dict[str, Path]:
    """A file, a directory, and the nonexistent / unwritable places."""
    file = tmp_path / "a-file.yaml"
    file.write_text("problem: darcy\n")
    folder = tmp_path / "a-folder"
    folder.mkdir()
    return {"file": file, "dir": folder, "missing": tmp_path / "missing", "proc": UNWRITABLE}


def _datagen_cases(p: dict[str, Path], small: Path) -> list[tuple[list[str], str]]:
    config = str(ROOT / "configs" / "datagen" / "darcy_small.yaml")
    return [
        (["generate", str(p["dir"])], "is a directory, expected a YAML config file"),
        (["generate", str(p["missing"])], "config file not found"),
        (["generate", config, f"output.dir={p['file']}"], "is a file, expected a directory"),
        (["generate", config, f"output.dir={p['proc']}"], "cannot write to"),
        (["generate", config, f"output.dir={p['file']}/sub"], "is a file"),
        (["verify", str(p["missing"])], "no such file"),
        (["verify", str(p["file"])], "not a readable HDF5 file"),
        (["verify", str(p["dir"])], "no dataset files"),
        (["info", str(p["file"])], "not a readable HDF5 file"),
        (["info", str(small), "--figure", str(p["dir"])], "is a directory, expected a file"),
        (["info", str(small), "--figure", str(p["proc"]) + ".png"], "cannot write to"),
        (["info", str(small), "--figure", str(p["dir"] / "fig.txt")], "no known suffix"),
    ]


def _opsolve_cases(p: dict[str, Path], small: Path, run: Path) -> list[tuple[list[str], str]]:
    config = str(ROOT / "configs" / "train" / "darcy_fno_small.yaml")
    data = f"data.root={small}"
    return [
        (["train", str(p["dir"])], "is a directory, expected a YAML config file"),
        (["train", config, f"data.root={p['file']}"], "is a file, expected a directory"),
        (["train", config, data, f"output.dir={p['file']}"], "is a file, expected a directory"),
        (["train", config, data, f"output.dir={p['proc']}"], "cannot write to"),
        (["train", config, data, f"output.dir={p['missing']}", "--resume"], "no run to resume"),
        (["evaluate", str(p["file"])], "is a file, expected a directory"),
        (["evaluate", str(p["missing"])], "does not exist"),
        (["evaluate", str(run), "--data", str(p["file"])], "is a file, expected a directory"),
        (["compare", str(run), "--out", str(p["file"])], "is a file, expected a directory"),
        (["compare", str(run), "--out", str(p["proc"])], "cannot write to"),
        (["refine", str(p["file"])], "not a training run"),
    ]


def _listing(root: Path) -> set[Path]:
    return set(root.rglob("*"))


def test_every_path_argument_of_datagen(places, small_dataset, tmp_path, capsys):
    for args, message in _datagen_cases(places, small_dataset):
        before = _listing(tmp_path)
        code = datagen_main([*args, "--no-progress"] if args[0] == "generate" else args)
        err = capsys.readouterr().err
        assert code == 2, (args, err)
        assert message in err and err.count("\n") == 1 and "Traceback" not in err, (args, err)
        assert _listing(tmp_path) == before, args


def test_every_path_argument_of_opsolve(places, small_dataset, trained_run, tmp_path, capsys):
    for args, message in _opsolve_cases(places, small_dataset, trained_run):
        before = _listing(tmp_path)
        code = opsolve_main(args)
        err = capsys.readouterr().err
        assert code == 2, (args, err)
        assert message in err and err.count("\n") == 1 and "Traceback" not in err, (args, err)
        assert _listing(tmp_path) == before, args


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, small_dataset) -> Path:
    """A one-epoch FNO run on the tiny Darcy data."""
    run = tmp_path_factory.mktemp("runs") / "fno"
    config = ROOT / "configs" / "train" / "darcy_fno_small.yaml"
    args = ["train", str(config), f"data.root={small_dataset}", f"output.dir={run}",
            "epochs=1", "--no-progress"]  # fmt: skip
    assert opsolve_main(args) == 0
    return run
