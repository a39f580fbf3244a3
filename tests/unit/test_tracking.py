"""MLflow conventions: where the store is, what a stage run carries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
import yaml
from mlflow import MlflowClient

from overseer import lineage, repo, tracking


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


# -- lineage: pipeline parent runs, datasets, model metrics --------------------------------------

STAGE_PARAMS = {
    "train_rf": {"train_rf": {"n_estimators": 50, "max_depth": 8}, "seed": 1},
    "evaluate@rf": {"evaluate": {"rf": {"slice_sample": 4}}, "seed": 1},
    "train_gtm": {"seed": 2},  # another value of a name the parent has
}


@pytest.fixture
def lineage_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> MlflowClient:
    """A per-test sqlite store, a working directory, per-stage params, no pipeline id unless set."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    for name in ("OVERSEER_PIPELINE_ID", "DVC_EXP_NAME", "DVC_EXP_BASELINE_REV"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(lineage, "dvc_ancestor", lambda process=None: None)  # as if not under dvc
    monkeypatch.setattr(tracking, "stage_params", lambda stage, params_file="params.yaml": STAGE_PARAMS[stage])
    return MlflowClient(os.environ["MLFLOW_TRACKING_URI"])


def _stage(family: str, stage: str, **kwargs) -> str:
    with tracking.stage_run(family, stage, **kwargs) as run:
        return run.active_run().info.run_id


def _pipelines(client: MlflowClient, family: str) -> list:
    experiment = client.get_experiment_by_name(family).experiment_id
    return client.search_runs([experiment], filter_string="tags.`overseer.stage` = 'pipeline'")


def test_stages_of_one_pipeline_nest_under_one_parent_with_params_and_metrics(
    lineage_store: MlflowClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = lineage_store
    monkeypatch.setenv("OVERSEER_PIPELINE_ID", "nightly-7")
    with tracking.stage_run("seismic", "train_rf") as run:
        run.log_params({"features": "amp,phase"})  # a param the stage logs itself
        train = run.active_run().info.run_id
    with tracking.stage_run("seismic", "evaluate@rf") as run:
        run.log_metrics({"eval_accuracy": 0.8})
        parent_id = tracking.log_to_pipeline(run, metrics={"eval_accuracy": 0.8, "eval_macro_f1": 0.7})
        evaluate = run.active_run().info.run_id
    (parent,) = _pipelines(client, "seismic")
    assert parent.info.run_id == parent_id
    for child in (train, evaluate):
        tags = client.get_run(child).data.tags
        assert tags["mlflow.parentRunId"] == parent_id
        assert tags["overseer.pipeline"] == "env:nightly-7"
    assert parent.info.run_name == "seismic/pipeline [nightly-7]"
    assert parent.info.status == "FINISHED"
    assert parent.info.end_time >= client.get_run(evaluate).info.start_time
    assert parent.data.tags["overseer.pipeline.stages"] == "train_rf,evaluate@rf"
    assert parent.data.tags["overseer.pipeline.source"] == "env"
    assert parent.data.params == {
        "train_rf.n_estimators": "50",
        "train_rf.max_depth": "8",
        "seed": "1",
        "evaluate.rf.slice_sample": "4",
        "train_rf.features": "amp,phase",
    }
    assert parent.data.metrics == {"evaluate.rf.eval_accuracy": 0.8, "evaluate.rf.eval_macro_f1": 0.7}
    # a conflicting value leaves the parent's param as it was and fails nothing
    _stage("seismic", "train_gtm")
    assert client.get_run(parent_id).data.params["seed"] == "1"
    assert len(_pipelines(client, "seismic")) == 1


def test_different_pipeline_ids_give_different_parents_and_none_gives_none(
    lineage_store: MlflowClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = lineage_store
    monkeypatch.setenv("OVERSEER_PIPELINE_ID", "a")
    first = _stage("seismic", "train_rf")
    monkeypatch.setenv("OVERSEER_PIPELINE_ID", "b")
    second = _stage("seismic", "train_rf")
    monkeypatch.delenv("OVERSEER_PIPELINE_ID")
    alone = _stage("seismic", "train_rf")
    parents = {r.data.tags["overseer.pipeline"]: r.info.run_id for r in _pipelines(client, "seismic")}
    assert set(parents) == {"env:a", "env:b"}
    assert client.get_run(first).data.tags["mlflow.parentRunId"] == parents["env:a"]
    assert client.get_run(second).data.tags["mlflow.parentRunId"] == parents["env:b"]
    tags = client.get_run(alone).data.tags
    assert "mlflow.parentRunId" not in tags and "overseer.pipeline" not in tags
    with tracking.stage_run("seismic", "evaluate@rf") as run:
        assert tracking.log_to_pipeline(run, metrics={"eval_accuracy": 1.0}) is None
    # one pipeline per family: the same id in another family is that family's own parent
    monkeypatch.setenv("OVERSEER_PIPELINE_ID", "a")
    monkeypatch.setattr(tracking, "stage_params", lambda stage, params_file="params.yaml": {})
    other = _stage("trackbed", "train_cnn")
    (trackbed_parent,) = _pipelines(client, "trackbed")
    assert client.get_run(other).data.tags["mlflow.parentRunId"] == trackbed_parent.info.run_id != parents["env:a"]


def test_a_failed_stage_marks_its_pipeline_failed(lineage_store: MlflowClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVERSEER_PIPELINE_ID", "broken")
    _stage("seismic", "train_rf")
    with pytest.raises(RuntimeError), tracking.stage_run("seismic", "evaluate@rf"):
        raise RuntimeError("boom")
    _stage("seismic", "train_gtm")  # a later stage does not hide the failure
    (parent,) = _pipelines(lineage_store, "seismic")
    assert parent.info.status == "FAILED"
    assert parent.data.tags["overseer.pipeline.stages"] == "train_rf,evaluate@rf,train_gtm"


def test_inputs_are_logged_as_datasets_with_digest_source_and_schema(
    lineage_store: MlflowClient, tmp_path: Path
) -> None:
    import pandas as pd

    (tmp_path / "dvc.yaml").write_text("stages: {}\n")  # the repository root
    (tmp_path / "data").mkdir()
    table = pd.DataFrame({"amp": [0.5, 1.5], "facies": ["sand", "shale"], "n": [1, 2]})
    table.to_parquet(tmp_path / "data" / "train.parquet")
    table.to_csv(tmp_path / "data" / "picks.csv", index=False)
    (tmp_path / "data" / "shards").mkdir()
    (tmp_path / "data" / "shards" / "a.tfrecord").write_bytes(b"x")
    lock = {"schema": "2.0", "stages": {"ingest": {"outs": [{"path": "data/shards", "md5": "f" * 32 + ".dir"}]}}}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    inputs = ["data/train.parquet", "data/picks.csv", "data/shards"]
    run_id = _stage("seismic", "evaluate@rf", inputs=inputs, input_context={"data/train.parquet": "training"})
    run = lineage_store.get_run(run_id)
    found = {i.dataset.name: i for i in run.inputs.dataset_inputs}
    assert set(found) == set(inputs)
    for name, item in found.items():
        assert item.dataset.digest == run.data.tags[f"input.md5.{name}"]
        assert item.dataset.source_type == "local"
        assert json.loads(item.dataset.source)["uri"] == str(tmp_path / name)
    assert found["data/shards"].dataset.digest == "f" * 32 + ".dir"
    contexts = {name: {t.key: t.value for t in item.tags}["mlflow.data.context"] for name, item in found.items()}
    assert contexts == {"data/train.parquet": "training", "data/picks.csv": "evaluation", "data/shards": "evaluation"}
    for name in ("data/train.parquet", "data/picks.csv"):
        columns = json.loads(found[name].dataset.schema)["mlflow_colspec"]
        assert [(c["name"], c["type"]) for c in columns] == [("amp", "double"), ("facies", "string"), ("n", "long")]
    assert not found["data/shards"].dataset.schema


def test_table_schema_reads_only_the_head_of_a_csv(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    rows = ["a,b"] + [f"{i},x" for i in range(lineage.SCHEMA_ROWS)] + ["not a number,x"]
    path.write_text("\n".join(rows) + "\n")
    schema = tracking.table_schema(path)
    assert [(c.name, c.type.name) for c in schema.inputs] == [("a", "long"), ("b", "string")]
    assert tracking.table_schema(tmp_path / "missing.parquet") is None
    (tmp_path / "broken.parquet").write_bytes(b"not parquet")
    assert tracking.table_schema(tmp_path / "broken.parquet") is None


def test_log_model_metrics_shows_on_the_logged_model(lineage_store: MlflowClient, tmp_path: Path) -> None:
    (tmp_path / "holdout.csv").write_text("a,b\n1,2\n")
    with tracking.stage_run("seismic", "train_rf") as run:
        run_id = run.active_run().info.run_id
        experiment = run.active_run().info.experiment_id
        model = mlflow.initialize_logged_model(name="model", source_run_id=run_id, experiment_id=experiment)
        tracking.log_model_metrics(model.model_id, {"eval_accuracy": 0.9}, dataset="holdout.csv")
    tracking.log_model_metrics(model.model_id, {"eval_macro_f1": 0.75})  # no active run: the model's run
    metrics = {m.key: m for m in lineage_store.get_logged_model(model.model_id).metrics}
    assert metrics["eval_accuracy"].value == 0.9 and metrics["eval_macro_f1"].value == 0.75
    assert metrics["eval_accuracy"].dataset_name == "holdout.csv"
    assert metrics["eval_accuracy"].dataset_digest == repo.file_digest(tmp_path / "holdout.csv")
    assert lineage_store.get_run(run_id).data.metrics == {"eval_accuracy": 0.9, "eval_macro_f1": 0.75}


class FakeProcess:
    """What ``pipeline_key`` reads of a process."""

    def __init__(self, pid: int, started: float, args: list[str] | None = None) -> None:
        self.pid, self._started, self._args = pid, started, args or ["/venv/bin/python", "/venv/bin/dvc", "repro"]

    def create_time(self) -> float:
        return self._started

    def cmdline(self) -> list[str]:
        return self._args

    def name(self) -> str:
        return Path(self._args[0]).name


def test_pipeline_key_order_env_then_experiment_then_dvc_process(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lineage.socket, "gethostname", lambda: "box")
    dvc = FakeProcess(4242, 1700000000.5)
    assert lineage.pipeline_key({"OVERSEER_PIPELINE_ID": "ci 12", "DVC_EXP_NAME": "x"}, dvc) == lineage.PipelineKey(
        "env:ci_12", "env", "ci 12"
    )
    by_exp = lineage.pipeline_key({"DVC_EXP_NAME": "brisk-lark"}, dvc)
    assert by_exp == lineage.PipelineKey("exp:brisk-lark/dvc:box:4242:1700000000500", "dvc-exp", "brisk-lark")
    assert lineage.pipeline_key({}, dvc) == lineage.PipelineKey("dvc:box:4242:1700000000500", "dvc-process")
    monkeypatch.setattr(lineage, "dvc_ancestor", lambda process=None: None)
    assert lineage.pipeline_key({"DVC_EXP_NAME": "brisk-lark"}).key == "exp:brisk-lark"
    assert lineage.pipeline_key({"OVERSEER_PIPELINE_ID": " "}) is None
    assert lineage._is_dvc(FakeProcess(1, 0.0, ["python", "-m", "dvc", "exp", "run"]))
    assert not lineage._is_dvc(FakeProcess(1, 0.0, ["python", "stages/train_rf.py"]))


def test_dvc_ancestor_found_through_a_shell(tmp_path: Path) -> None:
    """A stage started as DVC starts it (``dvc`` -> ``sh -c`` -> python) finds the ``dvc`` process."""
    fake_dvc = tmp_path / "dvc"
    child = f"{sys.executable} -c 'from overseer import lineage; print(lineage.pipeline_key({{}}).key)'"
    fake_dvc.write_text(
        f"#!{sys.executable}\nimport subprocess, sys\nsys.exit(subprocess.call({child!r}, shell=True))\n"
    )
    fake_dvc.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("OVERSEER_PIPELINE_ID", "DVC_EXP_NAME")}
    first = subprocess.run([str(fake_dvc)], capture_output=True, text=True, env=env, check=True).stdout.strip()
    second = subprocess.run([str(fake_dvc)], capture_output=True, text=True, env=env, check=True).stdout.strip()
    assert first.startswith("dvc:") and second.startswith("dvc:") and first != second
