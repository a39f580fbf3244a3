"""Rules of the layout that a review would otherwise have to catch by reading."""

from __future__ import annotations

import ast
from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from overseer.io import write_artifact, write_artifacts

ROOT = Path(__file__).resolve().parents[2]
STAGE_FUNCTION_LINES = 32  # a stage is a recipe: read params, call the library, write, log


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


# runs go through overseer.tracking; models through overseer.serving (each a mlflow.pyfunc.PythonModel)
MLFLOW_MODULES = ("src/overseer/tracking.py", "src/overseer/serving/")


def test_only_tracking_and_serving_import_mlflow() -> None:
    offenders = [
        name
        for path in [*ROOT.glob("src/**/*.py"), *ROOT.glob("stages/*.py")]
        if not (name := path.relative_to(ROOT).as_posix()).startswith(MLFLOW_MODULES)
        and any(n.split(".")[0] == "mlflow" for n in _imports(path))
    ]
    assert not offenders, f"MLflow goes through overseer.tracking and overseer.serving; these import it: {offenders}"


@pytest.mark.parametrize("script", sorted(p.name for p in (ROOT / "stages").glob("*.py")))
def test_stage_functions_are_short_recipes(script: str) -> None:
    tree = ast.parse((ROOT / "stages" / script).read_text())
    long = [
        f"{node.name}: {node.end_lineno - node.lineno + 1} lines"
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.end_lineno - node.lineno + 1 > STAGE_FUNCTION_LINES
    ]
    assert not long, f"stages/{script}: move the work into the library: {long}"


def test_write_artifacts_by_kind(tmp_path: Path) -> None:
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    paths = write_artifacts(tmp_path, {"a.json": {"x": 1}, "b.csv": "x,y\n1,2\n", "c.bin": b"\x00\x01", "d.png": fig})
    assert (tmp_path / "a.json").read_text() == '{\n  "x": 1\n}\n'
    assert (tmp_path / "b.csv").read_text() == "x,y\n1,2\n"
    assert (tmp_path / "c.bin").read_bytes() == b"\x00\x01"
    assert paths["d.png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(fig.number), "a written figure is closed"
    assert not list(tmp_path.glob(".*")), "no temporary files left behind"


def test_write_artifact_refuses_unknown_kinds_and_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"x\.dat: cannot write a set"):
        write_artifact(tmp_path / "x.dat", {1, 2})
    assert not list(tmp_path.iterdir())


def test_run_time_values_are_split_from_tracked_ones() -> None:
    from overseer.io import split_run_time

    summary = {
        "n_train": 3, "seconds_embed": 1.5, "seconds": 2.0, "epoch_seconds": 0.1, "notes_per_s": 9.0,
        "records_per_split": {"train": 3}, "cache": {"hits": 1}, "registered_model_version": 4,
        "prediction": {"voxels": 8, "voxels_per_second": 5.0}, "counts": {0: 2, 1: 3},  # keys need not be text
    }  # fmt: skip
    tracked, run_time = split_run_time(summary)
    assert tracked == {
        "n_train": 3, "records_per_split": {"train": 3}, "prediction": {"voxels": 8}, "counts": {0: 2, 1: 3}
    }  # fmt: skip
    assert set(run_time) == {
        "seconds_embed", "seconds", "epoch_seconds", "notes_per_s", "cache", "registered_model_version",
        "prediction.voxels_per_second",
    }  # fmt: skip
