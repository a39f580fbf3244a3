"""overseer compare: run selection, differing params, metric deltas and the static HTML report."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from overseer import compare, lineage, tracking
from overseer.cli import main
from overseer.errors import InputError

SCRIPT = "<script>alert(1)</script>"


def _log_run(
    client: MlflowClient,
    experiment_id: str,
    family: str,
    stage: str,
    start: int,
    params: dict[str, str],
    metrics: dict[str, float],
    confusion: pd.DataFrame | None = None,
    status: str = "FINISHED",
    work: Path | None = None,
) -> str:
    """One run as ``overseer.tracking.stage_run`` logs it (tags, run name), at a fixed start time."""
    tags = {
        "overseer.family": family,
        "overseer.stage": stage,
        "git.commit": f"{start:040d}",
        "dvc.experiment": "workspace",
        f"input.md5.models/{family}/train": f"{start:032x}.dir",
    }
    run = client.create_run(experiment_id, start_time=start * 1000, tags=tags, run_name=f"{family}/{stage}")
    run_id = run.info.run_id
    for key, value in params.items():
        client.log_param(run_id, key, value)
    for key, value in metrics.items():
        client.log_metric(run_id, key, value, timestamp=start * 1000, step=0)
    if confusion is not None and work is not None:
        folder = work / run_id
        folder.mkdir(parents=True)
        confusion.to_csv(folder / "confusion_matrix.csv")
        client.log_artifact(run_id, str(folder / "confusion_matrix.csv"), artifact_path="eval")
    client.set_terminated(run_id, status=status, end_time=(start + 5) * 1000)
    return run_id


def _confusion(values: list[list[int]], names: list[str]) -> pd.DataFrame:
    return pd.DataFrame(values, index=pd.Index(names, name="true\\predicted"), columns=names)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A sqlite store with trackbed and seismic runs; returns the URI, a client and the run ids."""
    root = tmp_path_factory.mktemp("compare_store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    work = root / "work"
    ids: dict[str, str] = {}
    tb = client.create_experiment("trackbed", artifact_location=(root / "artifacts" / "trackbed").as_uri())
    sm = client.create_experiment("seismic", artifact_location=(root / "artifacts" / "seismic").as_uri())
    tb_cm = _confusion([[5, 1], [0, 4]], ["ASPHALT", "GRAS"])
    base = {"evaluate.cnn.seed": "1"}
    ids["t_train"] = _log_run(client, tb, "trackbed", "train_cnn", 1000, {"train_cnn.lr": "0.001"}, {"loss": 0.3})
    ids["t_e1"] = _log_run(
        client, tb, "trackbed", "evaluate@cnn", 2000,
        {**base, "evaluate.cnn.batch_size": "32", "evaluate.cnn.note": "plain"},
        {"eval_accuracy": 0.80, "eval_macro_f1": 0.70, "eval_f1_ASPHALT": 0.90}, tb_cm, work=work,
    )  # fmt: skip
    ids["t_e2"] = _log_run(
        client, tb, "trackbed", "evaluate@cnn", 3000,
        {**base, "evaluate.cnn.batch_size": "32", "evaluate.cnn.note": SCRIPT},
        {"eval_accuracy": 0.85, "eval_macro_f1": 0.75, "eval_f1_ASPHALT": 0.95}, tb_cm, work=work,
    )  # fmt: skip
    grid = work / "grid" / "misclassified.png"  # evaluate@cnn's image grid, shown beside the confusion matrix
    grid.parent.mkdir(parents=True)
    plt.imsave(grid, np.zeros((4, 4, 3)))
    client.log_artifact(ids["t_e2"], str(grid), artifact_path="eval")
    ids["t_failed"] = _log_run(
        client, tb, "trackbed", "evaluate@cnn", 3500, base, {"eval_accuracy": 0.1}, status="FAILED"
    )
    ids["t_other"] = _log_run(client, tb, "trackbed", "evaluate_holdout", 3700, base, {"eval_accuracy": 0.2})
    ids["t_e3"] = _log_run(
        client, tb, "trackbed", "evaluate@cnn", 4000,
        {**base, "evaluate.cnn.batch_size": "64", "evaluate.cnn.note": "plain"},
        {"eval_accuracy": 0.75, "eval_macro_f1": 0.72, "eval_f1_ASPHALT": 0.80, "eval_macro_type_i_error": 0.1},
    )  # fmt: skip
    ids["s_train"] = _log_run(
        client, sm, "seismic", "train_rf", 1500, {"train_rf.max_depth": "12"}, {"cv_macro_f1": 0.5}
    )
    ids["s_e1"] = _log_run(
        client, sm, "seismic", "evaluate@rf", 2500, {"evaluate.rf.slice_sample": "None"},
        {"eval_accuracy": 0.60, "volume_accuracy": 0.55}, _confusion([[3, 1, 0], [1, 2, 1], [0, 0, 4]], list("abc")),
        work=work,
    )  # fmt: skip
    ids["s_e2"] = _log_run(
        client, sm, "seismic", "evaluate@rf", 4500, {"evaluate.rf.slice_sample": "None"},
        {"eval_accuracy": 0.70, "volume_accuracy": 0.50},
    )  # fmt: skip
    return {"uri": uri, "client": client, "ids": ids, "root": root, "tb_cm": tb_cm}


def _ids(runs: list) -> list[str]:
    return [r.info.run_id for r in runs]


def test_stage_matches_base_name_or_exact_stage() -> None:
    assert compare.stage_matches("evaluate@cnn", "evaluate")
    assert compare.stage_matches("evaluate@cnn", "evaluate@cnn")
    assert not compare.stage_matches("evaluate@rf", "evaluate@cnn")
    assert not compare.stage_matches("evaluate_holdout", "evaluate")
    assert not compare.stage_matches(None, "evaluate")
    assert compare.stage_matches(None, None)


def test_select_runs_default_is_finished_evaluate_runs_per_family_oldest_first(store: dict) -> None:
    ids = store["ids"]
    selected = compare.select_runs(store["client"])
    assert list(selected) == ["trackbed", "seismic"]  # engraving has no experiment: left out
    assert _ids(selected["trackbed"]) == [ids["t_e1"], ids["t_e2"], ids["t_e3"]]  # not FAILED, not evaluate_holdout
    assert _ids(selected["seismic"]) == [ids["s_e1"], ids["s_e2"]]


def test_select_runs_last_family_and_stage(store: dict) -> None:
    client, ids = store["client"], store["ids"]
    assert _ids(compare.select_runs(client, last=2)["trackbed"]) == [ids["t_e2"], ids["t_e3"]]
    assert list(compare.select_runs(client, families=["seismic"])) == ["seismic"]
    assert {k: _ids(v) for k, v in compare.select_runs(client, stage="train_cnn").items()} == {
        "trackbed": [ids["t_train"]]
    }
    assert list(compare.select_runs(client, stage="evaluate@rf")) == ["seismic"]
    every = compare.select_runs(client, families=["trackbed"], last=10, stage=None)["trackbed"]
    assert _ids(every) == [ids[k] for k in ("t_train", "t_e1", "t_e2", "t_other", "t_e3")]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"families": ["nope"]}, "unknown family 'nope'"),
        ({"families": ["engraving"]}, "no finished 'evaluate' runs of engraving"),
        ({"stage": "export"}, "no finished 'export' runs"),
        ({"last": 0}, "--last must be at least 1"),
        ({"stage": "x' or 1=1"}, "bad stage name"),
    ],
)
def test_select_runs_bad_input(store: dict, kwargs: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        compare.select_runs(store["client"], **kwargs)


def test_params_that_differ_and_identical(store: dict) -> None:
    runs = compare.select_runs(store["client"])["trackbed"]
    labels = compare.run_labels(runs)
    assert labels[0] == f"#1 {runs[0].info.run_id[:8]}"
    differ = compare.params_that_differ(runs)
    assert list(differ.index) == ["evaluate.cnn.batch_size", "evaluate.cnn.note"]
    assert list(differ.columns) == labels
    assert differ.loc["evaluate.cnn.batch_size"].tolist() == ["32", "32", "64"]
    assert differ.loc["evaluate.cnn.note"].tolist() == ["plain", SCRIPT, "plain"]
    assert compare.identical_params(runs) == {"evaluate.cnn.seed": "1"}
    tags = compare.tags_that_differ(runs)
    assert "git.commit" in tags.index and "input.md5.models/trackbed/train" in tags.index
    assert "dvc.experiment" not in tags.index  # the same in every run


def test_metric_deltas_against_oldest_and_chosen_baseline(store: dict) -> None:
    runs = compare.select_runs(store["client"])["trackbed"]
    a, b, c = compare.run_labels(runs)
    deltas = compare.metric_deltas(runs, runs[0])
    assert list(deltas.index[:2]) == ["eval_accuracy", "eval_macro_f1"]  # main metrics first
    assert deltas.loc["eval_accuracy", (b, "value")] == pytest.approx(0.85)
    assert [deltas.loc["eval_accuracy", (x, "delta")] for x in (a, b, c)] == pytest.approx([0.0, 0.05, -0.05])
    assert [deltas.loc["eval_macro_f1", (x, "delta")] for x in (a, b, c)] == pytest.approx([0.0, 0.05, 0.02])
    assert deltas.loc["eval_f1_ASPHALT", (c, "delta")] == pytest.approx(-0.10)
    assert math.isnan(deltas.loc["eval_macro_type_i_error", (a, "value")])
    assert math.isnan(deltas.loc["eval_macro_type_i_error", (c, "delta")])  # the baseline lacks it
    chosen = compare.metric_deltas(runs, runs[1].info.run_id)
    assert chosen.loc["eval_accuracy", (a, "delta")] == pytest.approx(-0.05)
    assert chosen.loc["eval_accuracy", (c, "delta")] == pytest.approx(-0.10)
    with pytest.raises(InputError, match="not among the compared runs"):
        compare.metric_deltas(runs[1:], runs[0])


def test_build_comparisons_fetches_confusion_and_baseline(store: dict) -> None:
    client, ids = store["client"], store["ids"]
    selected = compare.select_runs(client)
    trackbed = compare.build_comparisons(client, selected)[0]
    assert trackbed.baseline_id == ids["t_e1"]
    pd.testing.assert_frame_equal(trackbed.confusions[ids["t_e1"]], store["tb_cm"])
    assert trackbed.confusions[ids["t_e3"]] == "not logged"
    # a baseline outside the selection joins its family's runs, the others keep their oldest
    latest = compare.select_runs(client, last=1)
    comparisons = compare.build_comparisons(client, latest, baseline=ids["t_e1"])
    assert _ids(comparisons[0].runs) == [ids["t_e1"], ids["t_e3"]]
    assert comparisons[0].baseline_id == ids["t_e1"]
    assert comparisons[1].baseline_id == ids["s_e2"]
    by_prefix = compare.build_comparisons(client, selected, baseline=ids["t_e2"][:10])
    assert by_prefix[0].baseline_id == ids["t_e2"]
    with pytest.raises(InputError, match="no run 'deadbeef'"):
        compare.build_comparisons(client, selected, baseline="deadbeef")
    with pytest.raises(InputError, match="not among the compared families"):
        compare.build_comparisons(client, compare.select_runs(client, families=["seismic"]), baseline=ids["t_e1"])


def test_render_html_tables_figures_and_escaping(store: dict) -> None:
    client = store["client"]
    comparisons = compare.build_comparisons(client, compare.select_runs(client))
    page = compare.render_html(comparisons, source=store["uri"], stage="evaluate", last=5)
    assert page.startswith("<!DOCTYPE html>")
    headings = ["<h2>trackbed</h2>", "<h2>seismic</h2>", "<h3>Runs</h3>", "<h3>Params that differ</h3>"]
    headings += ["Metrics (Δ against the baseline #1", "<h3>Main metrics</h3>", "<h3>Confusion matrices</h3>"]
    for heading in headings:
        assert heading in page
    assert SCRIPT not in page and "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    # 2 metric charts + 3 logged confusion matrices (t_e1, t_e2, s_e1) + t_e2's misclassification grid;
    # t_e3 and s_e2 did not log a confusion matrix
    assert page.count("data:image/png;base64,") == 6
    assert page.count("most confident misclassifications</figcaption>") == 1
    assert page.count("confusion matrix not logged") == 2
    assert "1 param identical in every run" in page and "evaluate.cnn.seed" in page
    assert "+0.0500" in page and "-0.0500" in page


def test_cli_writes_the_report(store: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "reports" / "compare" / "index.html"
    argv = ["compare", "--tracking-uri", store["uri"], "--out", str(out), "--family", "trackbed", "--last", "2"]
    assert main(argv) == 0
    page = out.read_text(encoding="utf-8")
    assert "<h2>trackbed</h2>" in page and "<h2>seismic</h2>" not in page
    assert store["ids"]["t_e2"] in page and store["ids"]["t_e1"] not in page
    assert f"comparison report: {out}" in capsys.readouterr().out
    assert not [p for p in out.parent.iterdir() if p.name != "index.html"]  # no temporary file left
    assert main(["compare", "--tracking-uri", store["uri"], "--out", str(out), "--stage", "all"]) == 0
    assert "train_cnn" in out.read_text(encoding="utf-8")


def test_cli_bad_input_exits_2(store: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "index.html"
    assert main(["compare", "--tracking-uri", store["uri"], "--out", str(out), "--family", "nope"]) == 2
    assert "unknown family 'nope' (families: trackbed, seismic, engraving)" in capsys.readouterr().err
    missing = tmp_path / "missing" / "mlflow.db"
    assert main(["compare", "--tracking-uri", f"sqlite:///{missing}", "--out", str(out)]) == 2
    assert f"no tracking store at {missing}" in capsys.readouterr().err
    assert not missing.exists()  # reading must not create a store
    empty = f"sqlite:///{tmp_path / 'empty.db'}"
    MlflowClient(tracking_uri=empty).search_experiments()
    assert main(["compare", "--tracking-uri", empty, "--out", str(out)]) == 2
    assert "no finished 'evaluate' runs of trackbed, seismic, engraving" in capsys.readouterr().err
    assert not out.exists()


@pytest.fixture
def pipelines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict:
    """Two trackbed pipeline executions (train_cnn -> evaluate@cnn) and one evaluate run outside any,
    logged by ``stage_run`` as the stages log them."""
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    monkeypatch.setattr(lineage, "dvc_ancestor", lambda process=None: None)
    runs: dict[str, str] = {}
    for pipeline, lr, accuracy in (("p1", "0.001", 0.8), ("p2", "0.0003", 0.9), (None, "0.0003", 0.5)):
        if pipeline:
            monkeypatch.setenv("OVERSEER_PIPELINE_ID", pipeline)
        else:
            monkeypatch.delenv("OVERSEER_PIPELINE_ID")
        params = {"train_cnn": {"train_cnn": {"lr": lr}}, "evaluate@cnn": {"evaluate": {"cnn": {"batch_size": 8}}}}
        monkeypatch.setattr(tracking, "stage_params", lambda stage, params_file="params.yaml", p=params: p[stage])
        with tracking.stage_run("trackbed", "train_cnn"):
            pass
        with tracking.stage_run("trackbed", "evaluate@cnn") as run:
            run.log_metrics({"eval_accuracy": accuracy})
            tracking.log_to_pipeline(run, metrics={"eval_accuracy": accuracy})
            runs[pipeline or "alone"] = run.active_run().info.run_id
    return {"uri": uri, "client": MlflowClient(tracking_uri=uri), "runs": runs}


def test_runs_are_grouped_by_their_pipeline(pipelines: dict) -> None:
    client, runs = pipelines["client"], pipelines["runs"]
    selected = compare.select_runs(client)["trackbed"]
    assert _ids(selected) == [runs["p1"], runs["p2"], runs["alone"]]
    parents = [compare.pipeline_of(r) for r in selected]
    assert parents[0] != parents[1] and parents[0] and parents[1] and parents[2] is None
    (comparison,) = compare.build_comparisons(client, {"trackbed": selected})
    assert comparison.pipelines == {parents[0]: "trackbed/pipeline [p1]", parents[1]: "trackbed/pipeline [p2]"}
    page = compare.render_html([comparison], source=pipelines["uri"])
    assert "<th>pipeline</th>" in page and "2 pipeline executions (parent runs)" in page
    assert f"<td title='{parents[0]}'>trackbed/pipeline [p1]</td>" in page
    assert "No run logged a confusion matrix." in page
    # every stage: the stage runs, not their parents
    every = compare.select_runs(client, last=20, stage=None)["trackbed"]
    assert len(every) == 6 and all(r.data.tags["overseer.stage"] != "pipeline" for r in every)


def test_stage_pipeline_compares_training_params_beside_heldout_metrics(pipelines: dict) -> None:
    client = pipelines["client"]
    parents = compare.select_runs(client, stage="pipeline")["trackbed"]
    assert [r.info.run_name for r in parents] == ["trackbed/pipeline [p1]", "trackbed/pipeline [p2]"]
    assert compare.params_that_differ(parents).loc["train_cnn.lr"].tolist() == ["0.001", "0.0003"]
    assert compare.identical_params(parents) == {"evaluate.cnn.batch_size": "8"}
    deltas = compare.metric_deltas(parents, parents[0])
    assert deltas.loc["evaluate.cnn.eval_accuracy", (compare.run_labels(parents)[1], "delta")] == pytest.approx(0.1)
    assert [compare.pipeline_of(r) for r in parents] == [r.info.run_id for r in parents]
