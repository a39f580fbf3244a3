"""A team's shared store for real, on loopback: S3 (moto) for DVC and MLflow artifacts, PostgreSQL for
MLflow's runs and registry and for Optuna — two clones of the seismic project working against it.

Clone A is a copy of the session's seismic build (``seismic_built``); with the team's tracking server
it re-exports the forest (one run, one registered version, artifacts through the server into the
bucket), commits and `dvc push`es to an ``s3://`` remote. Clone B is a ``git clone`` of A that
``dvc pull``s. The tests check what a second team member sees (docs/scaling-out.md, "The team store"
section), then run one tuning worker in each clone on one study in PostgreSQL.

The services start once for this module (``team_services``) and stop after it; the module skips,
saying why, where no loopback port can be bound or PostgreSQL cannot start.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from conftest import SEISMIC_TARGETS, BuiltProject, commit_all, copy_project, file_digests, ran_stages
from team_services import (
    BUCKET,
    ServiceUnavailableError,
    bucket_keys,
    mlflow_server,
    postgres,
    run,
    s3_env,
    s3_store,
)

pytestmark = pytest.mark.slow

CHAIN = {"ingest@seismic", "validate@seismic", "select_attributes", "train_rf", "evaluate@rf", "export@rf",
         "train_gtm", "evaluate@gtm", "export@gtm"}  # fmt: skip
MODEL_NAME = "seismic-facies-rf"
STUDY = "team-rf"
TRIALS_PER_WORKER = 2

# What clone B's own client does (its own process, its working tree, MLFLOW_TRACKING_URI from its
# environment, no bucket endpoint): find clone A's export run, fetch the champion version, predict.
CLIENT = """
import json, sys
import mlflow, pandas as pd
name, dst = sys.argv[1], sys.argv[2]
client = mlflow.MlflowClient()
experiment = client.get_experiment_by_name("seismic")
runs = client.search_runs([experiment.experiment_id], "tags.`overseer.stage` = 'export@rf'")
champion = client.get_model_version_by_alias(name, "champion")
local = mlflow.artifacts.download_artifacts(f"models:/{name}@champion", dst_path=dst)
model = mlflow.pyfunc.load_model(local)
columns = model.metadata.get_input_schema().input_names()
rows = pd.read_parquet("data/prepared/seismic/train.parquet").sample(6, random_state=0)
predicted = model.predict(rows[columns].astype("float64").reset_index(drop=True))
print(json.dumps({
    "runs": [{"id": r.info.run_id, "params": r.data.params, "metrics": r.data.metrics, "tags": r.data.tags,
              "artifact_uri": r.info.artifact_uri,
              "models": [o.model_id for o in (r.outputs.model_outputs if r.outputs else [])]} for r in runs],
    "champion": {"version": champion.version, "run_id": champion.run_id, "source": champion.source},
    "local": local, "facies": predicted["facies"].tolist(),
}))
"""


@dataclass(frozen=True)
class Team:
    endpoint: str  # the S3 endpoint (moto)
    tracking_uri: str  # the MLflow server (PostgreSQL backend, S3 artifacts)
    optuna_url: str  # the Optuna storage (another database of the same PostgreSQL server)


@dataclass(frozen=True)
class Clones:
    a: Path
    env_a: dict
    b: Path
    env_b: dict
    a_commit: str  # clone A's HEAD when it re-ran export@rf: the run's git.commit
    runs_before_repro: frozenset[str]  # every run on the server after clone A's export


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    base = tmp_path_factory.mktemp("team-services")
    with contextlib.ExitStack() as stack:
        try:
            endpoint = stack.enter_context(s3_store(base))
            database = stack.enter_context(postgres(base, ("mlflow", "optuna")))
            uri = stack.enter_context(mlflow_server(base, database.url("mlflow"), endpoint))
        except ServiceUnavailableError as exc:
            pytest.skip(str(exc))
        yield Team(endpoint, uri, database.url("optuna"))


def _all_runs(uri: str) -> set[str]:
    import mlflow

    client = mlflow.MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return {r.info.run_id for r in client.search_runs(experiments, max_results=1000)}


@pytest.fixture(scope="module")
def clones(tmp_path_factory: pytest.TempPathFactory, seismic_built: BuiltProject, team: Team) -> Clones:
    """Clone A: the build, one export@rf against the team server, an S3 remote, pushed. Clone B: pulled."""
    assert seismic_built.ran == CHAIN
    base = tmp_path_factory.mktemp("team-clones")
    a, env_a = copy_project(seismic_built, base / "a")
    env_a.update({**s3_env(team.endpoint, base), "MLFLOW_TRACKING_URI": team.tracking_uri})
    a_commit = run(["git", "rev-parse", "HEAD"], a, env_a).stdout.strip()
    forced = run(["dvc", "repro", "--force", "--single-item", "export@rf"], a, env_a)
    assert ran_stages(forced.stdout) == {"export@rf"}, forced.stdout
    run(["dvc", "remote", "add", "-d", "storage", f"s3://{BUCKET}/dvc"], a, env_a)
    run(["dvc", "remote", "modify", "storage", "endpointurl", team.endpoint], a, env_a)  # committed: not a secret
    commit_all(a, env_a, "export for the team, S3 remote")
    run(["dvc", "push"], a, env_a)

    b = base / "b"
    run(["git", "clone", "-q", str(a), str(b)], base, env_a)
    assert not (b / "models/seismic/export").exists()  # cached outputs travel through the S3 remote only
    env_b = dict(env_a)
    run(["dvc", "pull", "--with-deps", *SEISMIC_TARGETS], b, env_b)
    return Clones(a, env_a, b, env_b, a_commit, frozenset(_all_runs(team.tracking_uri)))


def test_dvc_remote_on_s3_round_trip(team: Team, clones: Clones) -> None:
    """`dvc push` to s3:// from clone A; clone B `dvc pull`s: up to date, `dvc repro` runs and logs nothing."""
    a, b, env_a, env_b = clones.a, clones.b, clones.env_a, clones.env_b
    pushed = {key.split("/")[-2] + key.split("/")[-1] for key in bucket_keys(team.endpoint, "dvc/files/md5/")}
    digests = file_digests(a, "data/prepared/seismic", "models/seismic")
    in_git = set(run(["git", "ls-files"], a, env_a).stdout.split())
    assert {md5 for path, md5 in digests.items() if path not in in_git} <= pushed  # every cached file is in S3
    sync = run(["dvc", "status", "--cloud", "--with-deps", *SEISMIC_TARGETS], a, env_a).stdout
    assert "in sync" in sync, sync

    assert f"s3://{BUCKET}/dvc" in run(["dvc", "remote", "list"], b, env_b).stdout
    status = run(["dvc", "status", "--with-deps", *SEISMIC_TARGETS], b, env_b).stdout
    assert "Data and pipelines are up to date." in status, status
    repro = run(["dvc", "repro", *SEISMIC_TARGETS], b, env_b)
    assert ran_stages(repro.stdout) == set(), repro.stdout
    assert _all_runs(team.tracking_uri) == clones.runs_before_repro  # nothing recomputed, nothing logged
    assert file_digests(b, "data/prepared/seismic", "models/seismic") == digests


def _client_in_b(clones: Clones, dst: Path) -> dict:
    env = {k: v for k, v in clones.env_b.items() if not k.startswith("AWS_")}  # MLflow clients need no bucket
    result = subprocess.run(
        [sys.executable, "-c", CLIENT, MODEL_NAME, str(dst)],
        cwd=clones.b, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def seen_from_b(tmp_path_factory: pytest.TempPathFactory, clones: Clones) -> dict:
    return _client_in_b(clones, tmp_path_factory.mktemp("download-in-b"))


def test_run_from_clone_a_is_seen_from_clone_b(team: Team, clones: Clones, seen_from_b: dict) -> None:
    """The export run clone A logged is on the server, with its params and metrics; its model's files are in S3."""
    (found,) = seen_from_b["runs"]
    assert found["tags"]["git.commit"] == clones.a_commit and found["tags"]["dvc.experiment"] == "workspace"
    assert found["params"]["export.rf.registered_model_name"] == MODEL_NAME
    assert found["metrics"], "the export run logged no metric"
    assert found["artifact_uri"].startswith("mlflow-artifacts:/")  # proxied: the client never saw the bucket
    experiment = found["artifact_uri"].split("/")[1]
    (model_id,) = found["models"]  # the pyfunc the run logged (MLflow 3: a logged model beside the run)
    stored = bucket_keys(team.endpoint, f"mlartifacts/{experiment}/models/{model_id}/artifacts/")
    names = {key.split("/artifacts/", 1)[1] for key in stored}
    assert {"MLmodel", "artifacts/export/model.skops", "code/overseer/__init__.py"} <= names, sorted(names)


def test_registered_version_downloads_from_s3(team: Team, clones: Clones, seen_from_b: dict) -> None:
    """Clone B fetches the champion version (clone A's export) through the server from the bucket."""
    import boto3

    from overseer.seismic.predict import load_seismic_model, predict_frame

    champion, (export,) = seen_from_b["champion"], seen_from_b["runs"]
    assert champion["version"] == "1" and champion["run_id"] == export["id"]
    assert champion["source"] == f"models:/{export['models'][0]}"  # the version is the run's logged model
    local = Path(seen_from_b["local"])
    downloaded = local / "artifacts/export/model.skops"
    # the same bytes as the export clone B pulled from the DVC remote, and as the object in the bucket
    assert downloaded.read_bytes() == (clones.b / "models/seismic/export/model.skops").read_bytes()
    (key,) = [k for k in bucket_keys(team.endpoint, "mlartifacts/") if k.endswith("/export/model.skops")]
    env = s3_env(team.endpoint, local)
    s3 = boto3.client(
        "s3", endpoint_url=team.endpoint, region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"], aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )  # fmt: skip
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == downloaded.read_bytes()

    import pandas as pd

    model = load_seismic_model(clones.b / "models/seismic/export")
    rows = pd.read_parquet(clones.b / "data/prepared/seismic/train.parquet").sample(6, random_state=0)
    expected = predict_frame(model, rows[model.features].astype("float64").reset_index(drop=True))
    assert seen_from_b["facies"] == expected["facies"].tolist()


def _wait_for_study(team: Team, worker: subprocess.Popen, timeout: float = 180) -> str:
    """The study's MLflow parent run id, once the first worker has created the study and registered it."""
    import mlflow
    import optuna

    client = mlflow.MlflowClient(team.tracking_uri)
    deadline = time.monotonic() + timeout
    while True:
        experiment = client.get_experiment_by_name("seismic")
        tune_runs = client.search_runs([experiment.experiment_id], f"tags.`optuna.study` = '{STUDY}'")
        if tune_runs:  # the parent exists: so do the study's tables, and its attribute follows at once
            attrs = optuna.load_study(study_name=STUDY, storage=team.optuna_url).user_attrs
            if "overseer.mlflow_parent_run" in attrs:
                return attrs["overseer.mlflow_parent_run"]
        if worker.poll() is not None or time.monotonic() > deadline:
            out = worker.communicate(timeout=30)[0] if worker.poll() is not None else ""
            raise AssertionError(f"the first tuning worker did not open study {STUDY!r} (exit {worker.poll()}):\n{out}")
        time.sleep(0.5)


def test_two_tuning_workers_one_in_each_clone_share_one_study(team: Team, clones: Clones) -> None:
    """`overseer tune rf --storage postgresql+psycopg2://…` in clone A and in clone B: one study."""
    import mlflow
    import optuna

    cmd = [str(Path(sys.executable).parent / "overseer"), "tune", "rf", "--trials", str(TRIALS_PER_WORKER),
           "--storage", team.optuna_url, "--study", STUDY]  # fmt: skip
    workers: list[subprocess.Popen] = []
    try:
        for root, env in ((clones.a, clones.env_a), (clones.b, clones.env_b)):
            workers.append(
                subprocess.Popen(cmd, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            )
            if len(workers) == 1:  # the second joins the study the first created (no race for its parent run)
                parent = _wait_for_study(team, workers[0])
        outputs = [w.communicate(timeout=300)[0] for w in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.communicate()
    for worker, out in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, out[-3000:]

    trials = optuna.load_study(study_name=STUDY, storage=team.optuna_url).get_trials(deepcopy=False)
    assert sorted(t.number for t in trials) == list(range(2 * TRIALS_PER_WORKER))  # no number given twice
    by_worker: dict[int, int] = {}
    for trial in trials:
        pid = trial.user_attrs["overseer.worker"]["pid"]
        by_worker[pid] = by_worker.get(pid, 0) + 1
    assert by_worker == {w.pid: TRIALS_PER_WORKER for w in workers}  # each worker ran its own trials

    client = mlflow.MlflowClient(team.tracking_uri)
    experiment = client.get_experiment_by_name("seismic").experiment_id
    runs = client.search_runs([experiment], f"tags.`optuna.study` = '{STUDY}'", max_results=100)
    children = {r.info.run_id: r for r in runs if "optuna.trial" in r.data.tags}
    assert [r.info.run_id for r in runs if "optuna.trial" not in r.data.tags] == [parent]
    assert sorted(children) == sorted(t.user_attrs["mlflow_run_id"] for t in trials)
    assert {r.data.tags["mlflow.parentRunId"] for r in children.values()} == {parent}
    # each worker ends by making the study's best trial so far its checkout's configuration; the one that
    # ended last saw every trial
    best = optuna.load_study(study_name=STUDY, storage=team.optuna_url).best_trial
    summaries = []
    for root in (clones.a, clones.b):
        summary = json.loads((root / f"reports/tuning/rf/{STUDY}/summary.json").read_text())
        trained = yaml.safe_load((root / "params.yaml").read_text())["train_rf"]
        assert {path: trained[path.split(".", 1)[1]] for path in summary["best_params"]} == summary["best_params"]
        summaries.append((summary["trials"], summary["best_trial"]))
    assert (2 * TRIALS_PER_WORKER, best.number) in summaries, summaries
