"""A throw-away copy of the project, with tiny params, for end-to-end `dvc repro` runs.

Building a chain is what costs (each stage a process importing MLflow, TensorFlow or Great
Expectations): a chain that several tests read is built once per test run (``seismic_built``), and
a test that changes the project works on its own copy (``copy_project``). `make test` runs two
pytest-xdist workers with ``--dist loadfile``: the readers of a shared build live in one file (or
are mapped to it by ``SHARED_BUILD`` in tests/conftest.py), so one worker builds it once.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
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
        **{k: v for k, v in os.environ.items() if not k.startswith("OVERSEER_")},  # a developer's settings
        "OVERSEER_PROGRESS": "0",  # run-time setting (see overseer.settings): no progress bars in logs
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


def ran_stages(output: str) -> set[str]:
    """The stages a `dvc repro` / `dvc exp run` output says it ran."""
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")}


def commit_all(root: Path, env: dict, message: str) -> str:
    run(["git", "add", "-A"], root, env)
    run(["git", "commit", "-qm", message], root, env)
    return run(["git", "rev-parse", "HEAD"], root, env).stdout.strip()


@dataclass(frozen=True)
class BuiltProject:
    """A project copy after one `dvc repro` of a chain, committed before and after the run."""

    root: Path
    env: dict
    params_commit: str  # HEAD while the stages ran: what their runs' ``git.commit`` tag says
    ran: frozenset[str]  # the stages the build ran
    server: tuple[str, Path] | None  # (uri, artifacts folder) of the MLflow server it logged to, if any


def copy_project(built: BuiltProject, dest: Path) -> tuple[Path, dict]:
    """A private copy of ``built`` (work tree, git, DVC cache, sqlite MLflow store) at ``dest``."""
    shutil.copytree(built.root, dest, symlinks=True)
    env = dict(built.env)
    uri = env.get("MLFLOW_TRACKING_URI", "")
    if uri.startswith("sqlite:///"):
        env["MLFLOW_TRACKING_URI"] = uri.replace(str(built.root), str(dest))
    return dest, env


def file_digests(root: Path, *folders: str) -> dict[str, str]:
    """md5 of every file under ``folders``, keyed by its path relative to ``root``."""
    return {
        path.relative_to(root).as_posix(): hashlib.md5(path.read_bytes()).hexdigest()
        for folder in folders
        for path in sorted((root / folder).rglob("*"))
        if path.is_file()
    }


# The seismic chain that test_seismic_pipeline and test_team_store read (one worker: see Makefile):
# exhaustive selection over the synthetic survey's 11 attributes, built in about a minute and a half.
SEISMIC_SMALL = {
    ("ingest", "seismic", "default", "shape"): [40, 40, 80],
    ("select_attributes", "sem_iter"): 50,
    ("select_attributes", "max_rows_per_facies"): 300,
    ("train_rf", "tree_counts"): [10, 20, 40],
    ("train_gtm", "grid"): [10, 10],
    ("train_gtm", "max_voxels"): 10_000,
    ("train_gtm", "max_iter"): 40,
}
SEISMIC_TARGETS = ("export@rf", "evaluate@rf", "export@gtm")  # export@gtm: train_gtm, evaluate@gtm too


@pytest.fixture(scope="session")
def team_server(tmp_path_factory: pytest.TempPathFactory):
    """A real ``mlflow server`` for the whole test run, or None where no TCP port can be bound."""
    with start_mlflow_server(tmp_path_factory.mktemp("mlflow-server")) as server:
        yield server


@pytest.fixture(scope="session")
def seismic_built(tmp_path_factory: pytest.TempPathFactory, team_server: tuple[str, Path] | None) -> BuiltProject:
    """The seismic chain built once, logging to the team server (a sqlite store where there is none)."""
    root, env = make_project(tmp_path_factory.mktemp("seismic-built"), SEISMIC_SMALL)
    if team_server is not None:
        env["MLFLOW_TRACKING_URI"] = team_server[0]
    commit = commit_all(root, env, "small seismic params")
    ran = ran_stages(run(["dvc", "repro", *SEISMIC_TARGETS], root, env).stdout)
    commit_all(root, env, "small seismic run")
    return BuiltProject(root, env, commit, frozenset(ran), team_server)


def free_port(host: str = "127.0.0.1") -> int | None:
    """A TCP port free on ``host`` right now, or None where nothing can bind there."""
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            return int(sock.getsockname()[1])
    except OSError:
        return None


@contextlib.contextmanager
def start_mlflow_server(base: Path):
    """Run ``mlflow server`` on 127.0.0.1 (sqlite backend, proxied artifacts under ``base``).

    Yields ``(uri, artifacts_dir)``, or None where no TCP port can be bound; the server's process
    group is stopped on exit.
    """

    port = free_port()
    if port is None:
        yield None
        return
    artifacts = base / "artifacts"
    log = (base / "server.log").open("w")
    cmd = [
        str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{base / 'server.db'}",
        "--artifacts-destination", str(artifacts), "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{uri}/health", proc, base / "server.log", "mlflow server", 90, log)
        yield uri, artifacts
    finally:
        stop_process_group(proc)
        log.close()


@contextlib.contextmanager
def serve_model(model_uri: str, env: dict, base: Path, timeout: float = 180):
    """Run ``mlflow models serve -m MODEL_URI`` (local env manager) on 127.0.0.1 and yield a function
    ``post(payload: dict) -> dict`` that sends one JSON request to ``/invocations``; None where no port
    can be bound. The server's process group is stopped on exit."""
    import json
    import urllib.request

    port = free_port()
    if port is None:
        yield None
        return
    log_path = base / f"serve-{port}.log"
    log = log_path.open("w")
    cmd = [
        str(BIN / "mlflow"), "models", "serve", "-m", model_uri, "--env-manager", "local",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"

    def post(payload: dict) -> dict:
        request = urllib.request.Request(
            f"{uri}/invocations", data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"{exc.code}: {exc.read().decode()[:3000]}") from exc

    try:
        wait_until_up(f"{uri}/ping", proc, log_path, "mlflow models serve", timeout, log)
        yield post
    finally:
        stop_process_group(proc)
        log.close()


def stop_process_group(proc: subprocess.Popen) -> None:
    """Stop a server started with ``start_new_session=True`` and its children (uvicorn workers, job
    runners): SIGTERM to the group, SIGKILL after 20 s."""
    import signal

    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def wait_until_up(url: str, proc: subprocess.Popen, log_path: Path, what: str, timeout: float, log=None) -> None:
    """Poll ``url`` until it answers 200; an AssertionError with the log's tail when ``proc`` exits or
    ``timeout`` seconds pass."""
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            if log is not None:
                log.flush()
            raise AssertionError(f"{what} did not answer {url} (exit {proc.poll()}):\n" + log_path.read_text()[-3000:])
        time.sleep(0.5)
