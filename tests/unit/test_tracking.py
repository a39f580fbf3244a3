"""MLflow conventions: where the store is, what a stage run carries."""

from __future__ import annotations

import os
from pathlib import Path

import mlflow
import pytest
import yaml

from overseer import repo, tracking


def test_repo_root_from_dvc_temporary_experiment_workspace(tmp_path: Path) -> None:
    workspace = tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "tmpabc123"
    workspace.mkdir(parents=True)
    assert repo.repo_root(workspace) == tmp_path / "repo"


def test_repo_root_walks_up_to_dvc_yaml(tmp_path: Path) -> None:
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    (tmp_path / "stages").mkdir()
    assert repo.repo_root(tmp_path / "stages") == tmp_path


def test_tracking_uri_default_is_absolute_sqlite_and_env_overrides(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.tracking_uri(tmp_path) == f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.tracking_uri(tmp_path) == "http://127.0.0.1:5000"


def test_flatten_uses_dotted_names() -> None:
    assert tracking.flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": "x"}) == {"a.b": 1, "a.c.d": [1, 2], "e": "x"}


def test_input_digests_prefer_dvc_lock_then_hash(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("hello")
    (tmp_path / "other.txt").write_text("x")
    lock = {"schema": "2.0", "stages": {"ingest": {"outs": [{"path": "data", "md5": "abc.dir"}]}}}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    digests = tracking.input_digests(["data", "other.txt", "missing"], root=tmp_path)
    assert digests["data"] == "abc.dir"
    assert digests["other.txt"] == "9dd4e461268c8034f5c8564e155c67a6"  # md5("x")
    assert "missing" not in digests
    first = repo.file_digest(tmp_path / "data")
    (tmp_path / "data" / "a.txt").write_text("hello!")
    assert repo.file_digest(tmp_path / "data") != first


def test_stage_run_records_params_commit_and_inputs(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("DVC_EXP_NAME", "brisk-lark")
    (tmp_path / "params.yaml").write_text("train_cnn:\n  learning_rate: 0.001\n  head_units: [64, 32]\n")
    (tmp_path / "input.bin").write_bytes(b"data")
    with tracking.stage_run("trackbed", "train_cnn", inputs=["input.bin"]) as run:
        run.log_metric("val_loss", 0.5)
        run_id = run.active_run().info.run_id
    client = mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"])
    logged = client.get_run(run_id)
    assert logged.data.params["train_cnn.learning_rate"] == "0.001"
    assert logged.data.tags["overseer.stage"] == "train_cnn"
    assert logged.data.tags["dvc.experiment"] == "brisk-lark"
    assert logged.data.tags["input.md5.input.bin"] == repo.file_digest(tmp_path / "input.bin")
    assert "git.commit" in logged.data.tags
    assert logged.info.run_name == "trackbed/train_cnn [brisk-lark]"
    assert client.get_experiment(logged.info.experiment_id).name == "trackbed"
    assert logged.data.tags["overseer.changed"] == "nothing"

    # a second run names what changed since the last finished run of the stage
    (tmp_path / "params.yaml").write_text("train_cnn:\n  learning_rate: 0.0003\n  head_units: [64, 32]\n")
    monkeypatch.delenv("DVC_EXP_NAME")
    with tracking.stage_run("trackbed", "train_cnn") as run:
        second = run.active_run().info.run_id
    logged = client.get_run(second)
    assert logged.info.run_name.startswith("trackbed/train_cnn [")
    assert logged.info.run_name.endswith("] learning_rate=0.0003")
    assert logged.data.tags["overseer.changed"] == "train_cnn.learning_rate=0.0003"


def test_run_label_shortens_long_change_lists() -> None:
    changed = {f"s.k{i}": str(i) for i in range(5)}
    assert (
        tracking.run_label("seismic", "train_rf", "abc1234", changed) == "seismic/train_rf [abc1234] k0=0 k1=1 k2=2 +2"
    )


def test_failed_stage_marks_run_failed(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    with pytest.raises(RuntimeError), tracking.stage_run("trackbed", "ingest@trackbed") as run:
        run_id = run.active_run().info.run_id
        raise RuntimeError("boom")
    assert mlflow.MlflowClient(os.environ["MLFLOW_TRACKING_URI"]).get_run(run_id).info.status == "FAILED"
