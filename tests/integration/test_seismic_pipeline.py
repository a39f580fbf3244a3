"""The seismic chain built once by `dvc repro` (``seismic_built``, logging to a real MLflow server): its
outputs, then scaling out — a DVC remote, the team tracking server, queued DVC experiments.

Every test that reads the build is in this file, so that `--dist loadfile` runs them in one worker and
the chain is built once; a test that changes the project works on its own copy (see
docs/scaling-out.md for the user guide these tests back).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import SEISMIC_TARGETS, BuiltProject, commit_all, copy_project, file_digests, ran_stages, run, serve_model

pytestmark = pytest.mark.slow

CHAIN = {"ingest@seismic", "validate@seismic", "select_attributes", "train_rf", "evaluate@rf", "export@rf",
         "train_gtm", "evaluate@gtm", "export@gtm"}  # fmt: skip
MODEL_NAME = "seismic-facies-rf"


def test_seismic_chain(seismic_built: BuiltProject) -> None:
    root = seismic_built.root
    assert seismic_built.ran == CHAIN

    selection = json.loads((root / "reports/seismic/selection/selection.json").read_text())
    assert selection["combinations_evaluated"] == 2**11 - 1 and selection["search"] == "exhaustive"
    assert "truth" in selection and len(selection["best_per_n"]) == 11

    train = json.loads((root / "reports/seismic/train/summary.json").read_text())  # metrics.json: the numbers
    assert train["cv_scheme"] == "blocked" and set(train["cv"]) == {"10", "20", "40"}
    assert abs(sum(train["importance"].values()) - 1) < 1e-6
    # train_rf.features: validated — the forest's CV checked the GMM's per-n winners and all candidates
    choice = train["feature_choice"]
    assert choice["mode"] == "validated" and set(train["importance"]) == set(choice["features"])
    assert choice["validation"]["gmm_choice_features"] == selection["best_combination"]

    facies = np.load(root / "models/seismic/facies/facies.npy", mmap_mode="r")
    assert facies.shape == (40, 40, 80) and facies.dtype == np.int8 and facies.min() >= 0

    metrics = json.loads((root / "reports/seismic/eval/metrics.json").read_text())
    holdout_rows = len(__import__("pandas").read_parquet(root / "data/prepared/seismic/holdout.parquet"))
    assert metrics["n_items"] == holdout_rows  # evaluated on held-out picks only
    for name in ("slices.png", "importance.png", "cv_by_tree_count.png", "facies_model_recovery.json"):
        assert (root / "reports/seismic/eval" / name).exists(), name
    exported = root / "models/seismic/export"
    assert {"model.skops", "config.json", "selection.json", "facies"} <= {p.name for p in exported.iterdir()}


def test_gtm_chain(seismic_built: BuiltProject) -> None:
    """train_gtm → evaluate@gtm → export@gtm: probability volumes, the latent map, GTM beside the forest."""
    root = seismic_built.root
    selection = json.loads((root / "reports/seismic/selection/selection.json").read_text())
    train = json.loads((root / "reports/seismic/gtm/train/metrics.json").read_text())
    assert train["features"] == selection["best_combination"] and train["latent_nodes"] == 100
    curve = __import__("pandas").read_csv(root / "reports/seismic/gtm/train/log_likelihood.csv")
    assert len(curve) == train["em_iterations"] + 1 and curve["log_likelihood"].is_monotonic_increasing
    assert (root / "reports/seismic/gtm/train/latent_map.png").stat().st_size > 10_000
    volumes = root / "models/seismic/gtm/train/volumes"
    facies = np.load(volumes / "facies.npy", mmap_mode="r")
    total = sum(np.load(volumes / f"probabilities/probability_{c}.npy") for c in range(4))
    assert facies.shape == (40, 40, 80) and facies.min() >= 0 and np.allclose(total, 1, atol=1e-5)

    metrics = json.loads((root / "reports/seismic/gtm/eval/metrics.json").read_text())
    forest = json.loads((root / "reports/seismic/eval/metrics.json").read_text())
    described = [json.loads((root / f"reports/seismic/{d}/evaluation.json").read_text()) for d in ("gtm/eval", "eval")]
    assert described == [{"evaluation": "held-out picks"}] * 2 and metrics["n_items"] == forest["n_items"]
    versus = metrics["versus_forest"]
    assert versus["accuracy"] == {"gtm": metrics["accuracy"], "forest": forest["accuracy"]}
    assert versus["log_loss"]["forest"] == forest["probabilities"]["log_loss"]  # both scored as probabilities
    assert metrics["accuracy"] > 0.5 and metrics["recovery"]["volume_accuracy"] > 0.5  # four facies: chance 0.25
    for name in ("reliability.png", "probability_slices.png", "confusion_matrix.png"):
        assert (root / "reports/seismic/gtm/eval" / name).stat().st_size > 10_000, name
    exported = root / "models/seismic/gtm/export"
    assert {"model.skops", "config.json", "evaluation.json", "volumes"} <= {p.name for p in exported.iterdir()}


def _skipped(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if "didn't change, skipping" in line}


def _runs(uri: str, experiment: str = "seismic") -> list:
    import mlflow

    client = mlflow.MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    # stage runs only: the pipeline's parent runs (tracking.stage_run nests them) are counted apart
    stages = "tags.`overseer.stage` != 'pipeline'"
    return [] if found is None else client.search_runs([found.experiment_id], stages, max_results=1000)


def test_remote_push_then_clone_pull_reproduces_nothing(tmp_path: Path, seismic_built: BuiltProject) -> None:
    """`dvc push` to a (local-directory) remote; a fresh clone `dvc pull`s and has nothing to re-run."""
    assert seismic_built.ran == CHAIN
    origin, env = copy_project(seismic_built, tmp_path / "origin")

    remote = tmp_path / "remote"
    run(["dvc", "remote", "add", "-d", "storage", str(remote)], origin, env)  # committed: clones get it
    commit_all(origin, env, "small seismic run, remote")
    run(["dvc", "push"], origin, env)
    assert any(p.is_file() for p in (remote / "files" / "md5").rglob("*")), "nothing pushed"
    assert "in sync" in run(["dvc", "status", "--cloud", "--with-deps", *SEISMIC_TARGETS], origin, env).stdout

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(origin), str(clone)], tmp_path, env)
    assert not (clone / "models/seismic/train").exists()  # cached outputs travel through the remote only
    assert str(remote) in run(["dvc", "remote", "list"], clone, env).stdout
    # only the seismic chain ran in this copy: pull (and check) its stages and everything upstream
    run(["dvc", "pull", "--with-deps", *SEISMIC_TARGETS], clone, env)
    status = run(["dvc", "status", "--with-deps", *SEISMIC_TARGETS], clone, env).stdout
    assert "Data and pipelines are up to date." in status

    # the clone reports to the same MLflow store: a repro that recomputes nothing logs no run
    runs_before = {r.info.run_id for r in _runs(env["MLFLOW_TRACKING_URI"])}
    assert len(runs_before) >= len(CHAIN)
    repro = run(["dvc", "repro", *SEISMIC_TARGETS], clone, env)
    assert ran_stages(repro.stdout) == set(), repro.stdout
    assert _skipped(repro.stdout) == CHAIN, repro.stdout
    assert {r.info.run_id for r in _runs(env["MLFLOW_TRACKING_URI"])} == runs_before

    # the pulled outputs are byte for byte the originals
    cached = ("data/prepared/seismic", "models/seismic")
    pulled, original = file_digests(clone, *cached), file_digests(origin, *cached)
    assert "models/seismic/export/model.skops" in pulled and "models/seismic/facies/facies.npy" in pulled
    assert pulled == original


def test_runs_and_model_versions_land_on_tracking_server(tmp_path: Path, seismic_built: BuiltProject) -> None:
    """MLFLOW_TRACKING_URI=http://...: every stage's run and every export's model version is on the server."""
    import mlflow

    if seismic_built.server is None:
        pytest.skip("cannot bind a TCP port on 127.0.0.1 for an MLflow server")
    uri, artifacts = seismic_built.server
    root, commit = seismic_built.root, seismic_built.params_commit
    assert not (root / "mlflow.db").exists() and not (root / "mlflow-test.db").exists()

    client = mlflow.MlflowClient(uri)
    experiment = client.get_experiment_by_name("seismic")
    assert experiment.artifact_location.startswith("mlflow-artifacts:")  # proxied by the server
    runs = client.search_runs([experiment.experiment_id], "tags.`overseer.stage` != 'pipeline'")
    by_stage = {r.data.tags["overseer.stage"]: r for r in runs}
    assert len(runs) == len(CHAIN) and set(by_stage) == CHAIN
    # one dvc repro: one parent run, every stage run nested beneath it
    (parent,) = client.search_runs([experiment.experiment_id], "tags.`overseer.stage` = 'pipeline'")
    assert {r.data.tags.get("mlflow.parentRunId") for r in runs} == {parent.info.run_id}
    for stage, found in by_stage.items():
        assert found.info.status == "FINISHED", stage
        assert found.info.run_name.startswith(f"seismic/{stage} [{commit[:7]}]")
        assert found.data.tags["git.commit"] == commit and found.data.tags["dvc.experiment"] == "workspace"
    train = by_stage["train_rf"]
    assert train.data.params["train_rf.tree_counts"] == "[10, 20, 40]"
    assert "input.md5.data/prepared/seismic/train.parquet" in train.data.tags

    first_export = by_stage["export@rf"].info.run_id
    (version,) = client.search_model_versions(f"name='{MODEL_NAME}'")
    assert version.version == "1" and version.run_id == first_export
    assert json.loads((root / "reports/runtime/export@rf.json").read_text())["registered_model_version"] == 1
    assert any(artifacts.rglob("MLmodel")), "the model's files went to the server's artifact store"
    # what a deployment does: fetch the version through the server. models:/ URIs resolve through the
    # global registry URI whatever `registry_uri=` says (seen with MLflow 3.17 after other tests ran
    # in the process), so point it at the server for this block and restore it after.
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        local = mlflow.artifacts.download_artifacts(f"models:/{MODEL_NAME}/1", dst_path=str(tmp_path / "download"))
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])
    restored = mlflow.pyfunc.load_model(local)  # the served pyfunc: facies names from named attribute columns
    assert restored.metadata.get_input_schema().input_names()

    # a second export (from a copy of the project: the shared build stays as built) is a second version,
    # linked to the second export run
    root, env = copy_project(seismic_built, tmp_path / "project")
    assert ran_stages(run(["dvc", "repro", "--force", "--single-item", "export@rf"], root, env).stdout) == {"export@rf"}
    exports = client.search_runs([experiment.experiment_id], "tags.`overseer.stage` = 'export@rf'")
    second_export = ({r.info.run_id for r in exports} - {first_export}).pop()
    versions = {v.version: v.run_id for v in client.search_model_versions(f"name='{MODEL_NAME}'")}
    assert versions == {"1": first_export, "2": second_export}
    assert json.loads((root / "reports/runtime/export@rf.json").read_text())["registered_model_version"] == 2


def _wait_for_queue(root: Path, env: dict, timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    while True:
        status = run(["dvc", "queue", "status"], root, env).stdout
        if not any(word in status for word in ("Queued", "Running")):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"queued experiments still pending after {timeout:.0f} s:\n{status}")
        time.sleep(3)


def test_queued_experiments_log_to_one_store(tmp_path: Path, seismic_built: BuiltProject) -> None:
    """`dvc exp run --queue` + `dvc queue start -j 2`: both experiments' runs land in <repo>/mlflow.db."""
    root, env = copy_project(seismic_built, tmp_path / "project")
    del env["MLFLOW_TRACKING_URI"]  # the project's default store: sqlite:///<repo>/mlflow.db
    with (root / ".gitignore").open("a") as fh:
        fh.write("mlflow.db\n")
    assert ran_stages(run(["dvc", "repro", "export@rf"], root, env).stdout) == set()  # the copy is up to date
    # the baseline's train_rf in this store: the experiments' runs name what changed since it
    forced = run(["dvc", "repro", "--force", "--single-item", "train_rf"], root, env).stdout
    assert ran_stages(forced) == {"train_rf"}
    baseline = commit_all(root, env, "small seismic baseline")
    store = f"sqlite:///{root / 'mlflow.db'}"
    assert len(_runs(store)) == 1

    depths = {4: None, 8: None}
    for depth in depths:  # train_rf only: evaluation and export in an experiment are the same code again
        run(["dvc", "exp", "run", "--queue", "-S", f"train_rf.max_depth={depth}", "train_rf"], root, env)
    try:
        run(["dvc", "queue", "start", "-j", "2"], root, env)
        status = _wait_for_queue(root, env)
    finally:
        run(["dvc", "queue", "stop", "--kill"], root, env, check=False)
    if status.count("Success") != 2:
        failed = [line.split()[1] for line in status.splitlines()[1:] if "Failed" in line]
        logs = "".join(run(["dvc", "queue", "logs", name], root, env, check=False).stdout for name in failed)
        raise AssertionError(f"queued experiments did not all succeed:\n{status}\n{logs[-6000:]}")

    shown = json.loads(run(["dvc", "exp", "show", "--json"], root, env).stdout)
    for commit in shown:
        for experiment in commit.get("experiments") or []:
            (revision,) = experiment["revs"]
            depth = revision["data"]["params"]["params.yaml"]["data"]["train_rf"]["max_depth"]
            depths[depth] = experiment["name"]
    assert None not in depths.values(), shown

    runs = _runs(store)
    # the baseline's train_rf, then each experiment's train_rf
    assert len(runs) == 1 + 2
    by_experiment: dict[str, dict[str, object]] = {}
    for found in runs:
        by_experiment.setdefault(found.data.tags["dvc.experiment"], {})[found.data.tags["overseer.stage"]] = found
    assert set(by_experiment) == {"workspace", *depths.values()}
    for depth, name in depths.items():
        stages = by_experiment[name]
        assert set(stages) == {"train_rf"}, name
        assert stages["train_rf"].data.params["train_rf.max_depth"] == str(depth)
        assert stages["train_rf"].info.run_name.startswith(f"seismic/train_rf [{name}]")
        assert f"train_rf.max_depth={depth}" in stages["train_rf"].data.tags["overseer.changed"]
        assert stages["train_rf"].data.tags["git.commit"] == baseline  # the commit the experiment started from
    assert not list((root / ".dvc").rglob("mlflow.db")), "a run wrote a store inside DVC's temp workspace"


def test_the_exported_forest_serves_facies_names_by_column_name(tmp_path: Path, seismic_built: BuiltProject) -> None:
    """The built forest logged as a pyfunc (``log_seismic_model``, example rows from the project's training
    table) into a store of this test's own, served by ``mlflow models serve``: one REST request with the
    attribute columns reversed and an extra column gets facies names, those of the ordered rows."""
    import mlflow
    import pandas as pd

    from overseer.seismic.predict import load_seismic_model, predict_frame
    from overseer.serving.seismic import log_seismic_model

    root = seismic_built.root
    export = root / "models/seismic/export"
    store = f"sqlite:///{tmp_path / 'serving.db'}"
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(store)
    mlflow.set_registry_uri(store)
    try:
        experiment = mlflow.create_experiment("served", artifact_location=(tmp_path / "artifacts").as_uri())
        with pytest.MonkeyPatch.context() as patch:
            patch.chdir(root)  # as export@rf runs: the example rows come from data/prepared/seismic/train.parquet
            with mlflow.start_run(experiment_id=experiment):
                info = log_seismic_model(export, "seismic-facies-served")
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])
    assert info.registered_model_version == 1

    model = load_seismic_model(export)
    table = pd.read_parquet(root / "data/prepared/seismic/train.parquet").sample(8, random_state=0)
    rows = table[model.features].astype("float64").reset_index(drop=True)
    expected = predict_frame(model, rows)["facies"].tolist()
    misordered = rows[model.features[::-1]].assign(inline=1.0)
    payload = {"dataframe_split": {"columns": list(misordered.columns), "data": misordered.to_numpy().tolist()}}
    env = {**seismic_built.env, "MLFLOW_TRACKING_URI": store, "MLFLOW_REGISTRY_URI": store}
    with serve_model("models:/seismic-facies-served/1", env, tmp_path) as post:
        if post is None:
            pytest.skip("cannot bind a TCP port on 127.0.0.1 for mlflow models serve")
        answer = post(payload)
    predictions = answer["predictions"]
    assert [p["facies"] for p in predictions] == expected and set(expected) <= set(model.facies)
    assert sorted(predictions[0]) == sorted(["facies", *(f"p_{name}" for name in model.class_names)])
