"""Distributed tuning for real: two `overseer tune` worker processes share one study in PostgreSQL.

The test starts a throw-away PostgreSQL server on loopback from the OS packages (initdb/pg_ctl;
as root it runs them as the `postgres` user) and skips, saying why, where there is none.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow

PARAMS = """\
train_rf:
  features: selected
  normalise: true
  max_depth: 12            # depth of the trees
  tree_counts: [4, 8]
  folds: 3
  cv_scheme: blocked
  block_size: 8
  class_weight: balanced
  max_features: sqrt
  min_samples_leaf: 1
  seed: 0

tune:
  rf:
    seed: 0
    space:
      train_rf.max_depth: {type: int, low: 2, high: 16, log: true}
      train_rf.min_samples_leaf: {type: int, low: 1, high: 8}
"""


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    return str(candidates[-1]) if candidates else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres(tmp_path_factory: pytest.TempPathFactory):
    initdb, pg_ctl = _pg_bin("initdb"), _pg_bin("pg_ctl")
    if not (initdb and pg_ctl):
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: install the OS package 'postgresql'")
    base = tmp_path_factory.mktemp("pg")
    prefix: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run the server as")
        shutil.chown(base, "postgres")
        base.chmod(0o755)
        for parent in base.parents:  # the server user must reach its data folder
            if parent == Path("/"):
                break
            parent.chmod(parent.stat().st_mode | 0o011)
        prefix = ["runuser", "-u", "postgres", "--"]
    data, port = base / "data", _free_port()
    subprocess.run([*prefix, initdb, "-D", str(data), "-A", "trust", "-U", "postgres"], check=True, capture_output=True)
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1"
    subprocess.run(
        [*prefix, pg_ctl, "-D", str(data), "-o", options, "-l", str(base / "log"), "-w", "start"],
        check=True,
        capture_output=True,
    )
    try:
        url = f"postgresql+psycopg2://postgres@127.0.0.1:{port}/postgres"
        yield url
    finally:
        subprocess.run([*prefix, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True)


def _project(root: Path) -> Path:
    (root / "params.yaml").write_text(PARAMS)
    (root / "dvc.yaml").write_text("stages: {}\n")
    rng = np.random.default_rng(0)
    n = 360
    table = pd.DataFrame(
        {
            "inline": rng.integers(0, 48, n),
            "crossline": rng.integers(0, 48, n),
            "sample": rng.integers(0, 40, n),
            "facies": rng.integers(0, 3, n),
        }
    )
    table["a"] = table["facies"] + rng.normal(0, 0.7, n)
    table["b"] = rng.normal(0, 1, n)
    (root / "data/prepared/seismic").mkdir(parents=True)
    table.to_parquet(root / "data/prepared/seismic/train.parquet")
    meta = {"source": "default", "attributes": ["a", "b"], "facies": ["f0", "f1", "f2"]}  # as ingest writes it
    (root / "data/prepared/seismic/meta.json").write_text(json.dumps(meta))
    (root / "reports/seismic/selection").mkdir(parents=True)
    (root / "reports/seismic/selection/selection.json").write_text('{"best_combination": ["a", "b"]}')
    return root


def test_two_workers_share_one_study(tmp_path: Path, postgres: str) -> None:
    project = _project(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    # the project's MLflow store exists before the workers start (as after any `dvc repro`): two
    # processes creating one sqlite store at the same moment race in MLflow's schema migrations
    MlflowClient(f"sqlite:///{project / 'mlflow.db'}").search_experiments()
    overseer = str(Path(sys.executable).parent / "overseer")
    cmd = [overseer, "tune", "rf", "--trials", "4", "--storage", postgres, "--study", "shared"]
    workers = [subprocess.Popen(cmd, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)]
    time.sleep(1.0)  # let the first create the study and its parent run; the second joins it
    workers.append(
        subprocess.Popen(cmd, cwd=project, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    )
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    for worker, out in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, out[-3000:]

    study = optuna.load_study(study_name="shared", storage=postgres)
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 8  # the sum of the workers' trials
    assert sorted(t.number for t in trials) == list(range(8))  # each recorded once
    finished = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    assert all(t.state in finished for t in trials)
    run_ids = [t.user_attrs["mlflow_run_id"] for t in trials]
    assert len(set(run_ids)) == 8

    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("seismic").experiment_id
    runs = client.search_runs([experiment], "tags.`optuna.study` = 'shared'", max_results=100)
    children = [r for r in runs if "optuna.trial" in r.data.tags]
    parents = [r for r in runs if "optuna.trial" not in r.data.tags]
    assert sorted(r.info.run_id for r in children) == sorted(run_ids)
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {study.user_attrs["overseer.mlflow_parent_run"]}
    assert len(parents) == 1  # one parent run for the study, whichever worker created it

    # the best configuration is in params.yaml once, naming the study's best trial
    text = (project / "params.yaml").read_text()
    best = study.best_trial
    assert text.count("tuned: study shared trial") == 2
    assert text.count(f"tuned: study shared trial {best.number}") == 2
    params = yaml.safe_load(text)
    assert params["train_rf"]["max_depth"] == best.params["train_rf.max_depth"]
    assert params["train_rf"]["min_samples_leaf"] == best.params["train_rf.min_samples_leaf"]
