"""Every test run gets its own MLflow store: nothing a test does touches the repository's ``mlflow.db``.

Tests that need a particular store still set ``MLFLOW_TRACKING_URI`` themselves (``monkeypatch``,
or the environment of a subprocess); this is the default under them.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

_STORE_DIR = Path(tempfile.mkdtemp(prefix="overseer-tests-mlflow-"))


def pytest_configure(config: object) -> None:
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{_STORE_DIR / 'mlflow.db'}"
    os.environ.pop("MLFLOW_REGISTRY_URI", None)  # the registry follows the tracking store


def pytest_unconfigure(config: object) -> None:
    shutil.rmtree(_STORE_DIR, ignore_errors=True)
