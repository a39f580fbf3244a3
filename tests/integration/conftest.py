"""A throw-away copy of the project, with tiny params, for end-to-end `dvc repro` runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the venv that runs the tests also runs the stages

TINY = {
    ("ingest", "trackbed", "default", "train_per_class"): 8,
    ("ingest", "trackbed", "default", "eval_per_class"): 4,
    ("ingest", "trackbed", "shard_size"): 16,
    ("validate", "trackbed", "min_per_class"): 2,
    ("train_cnn", "weights"): "none",
    ("train_cnn", "epochs"): 2,
    ("train_cnn", "batch_size"): 8,
    ("train_cnn", "val_fraction"): 0.25,
    ("export", "cnn", "check_images"): 8,
}


def set_param(params: dict, keys: tuple, value: object) -> None:
    for key in keys[:-1]:
        params = params[key]
    params[keys[-1]] = value


def run(cmd: list[str], cwd: Path, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return result


def make_project(root: Path, overrides: dict | None = None) -> tuple[Path, dict]:
    """Copy dvc.yaml, params.yaml, stages/, src/ and data/raw into ``root``; git + DVC initialised."""
    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        shutil.copy(REPO / name, root / name)
    for name in ("stages", "src", "data/raw"):
        shutil.copytree(REPO / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    params = yaml.safe_load((root / "params.yaml").read_text())
    for keys, value in {**TINY, **(overrides or {})}.items():
        set_param(params, keys, value)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow-test.db'}",
        "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }  # fmt: skip
    run(["git", "init", "-q"], root, env)
    run(["dvc", "init", "-q"], root, env)
    run(["dvc", "config", "core.analytics", "false"], root, env)
    (root / ".gitignore").write_text("mlflow-test.db\nmlartifacts/\n")
    return root, env


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, dict]:
    return make_project(tmp_path)
