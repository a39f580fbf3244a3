"""Every test run gets its own MLflow store: nothing a test does touches the repository's ``mlflow.db``.

Tests that need a particular store still set ``MLFLOW_TRACKING_URI`` themselves (``monkeypatch``,
or the environment of a subprocess); this is the default under them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

_STORE_DIR = Path(tempfile.mkdtemp(prefix="overseer-tests-mlflow-"))


def pytest_configure(config: object) -> None:
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{_STORE_DIR / 'mlflow.db'}"
    os.environ.pop("MLFLOW_REGISTRY_URI", None)  # the registry follows the tracking store


def pytest_unconfigure(config: object) -> None:
    shutil.rmtree(_STORE_DIR, ignore_errors=True)


# Test files that read a session-built project go to the worker that builds it (`make test` runs
# `--dist loadfile`, which otherwise schedules by file and would build the project on both workers).
SHARED_BUILD = {"tests/integration/test_team_store.py": "tests/integration/test_seismic_pipeline.py"}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    if config.getoption("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class SharedBuildScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            scope = super()._split_scope(nodeid)
            return SHARED_BUILD.get(scope, scope)

    return SharedBuildScheduling(config, log)
