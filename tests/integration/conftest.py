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


def free_port(host: str = "127.0.0.1") -> int | None:
    """A TCP port free on ``host`` right now, or None where nothing can bind there."""
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            return int(sock.getsockname()[1])
    except OSError:
        return None


@pytest.fixture
def mlflow_server(tmp_path_factory: pytest.TempPathFactory):
    """A real ``mlflow server`` on 127.0.0.1 (sqlite backend, proxied artifacts in a temp dir).

    Yields ``(uri, artifacts_dir)``; the server's process group is stopped at teardown.
    """
    import signal
    import time
    import urllib.request

    port = free_port()
    if port is None:
        pytest.skip("cannot bind a TCP port on 127.0.0.1 for an MLflow server")
    base = tmp_path_factory.mktemp("mlflow-server")
    artifacts = base / "artifacts"
    log = (base / "server.log").open("w")
    cmd = [
        str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{base / 'server.db'}",
        "--artifacts-destination", str(artifacts), "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                raise AssertionError(
                    f"mlflow server did not answer /health (exit {proc.poll()}):\n"
                    + (base / "server.log").read_text()[-3000:]
                )
            time.sleep(0.5)
        yield uri, artifacts
    finally:
        import contextlib

        with contextlib.suppress(ProcessLookupError):  # the server and its uvicorn/job-runner children
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
