"""evaluate@rf: the held-out report, and with nothing held out (holdout.fraction 0) a cross-validation
over wells or blocks, never predictions on training rows (issue 11)."""

from __future__ import annotations

import copy
import io
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from params_defaults import section

from overseer.io import write_artifacts, write_json
from overseer.metrics import write_report
from overseer.seismic.data.ingest import ingest_seismic
from overseer.seismic.evaluate import (
    WELL_FOLDS,
    chosen_on_all_rows,
    cross_validated_report,
    evaluate_forest,
    holdout_report,
)
from overseer.seismic.forest import build_pipeline, model_config, train_forest
from overseer.seismic.model_io import load_model, save_model
from overseer.seismic.well_choice import train_with_choice
from overseer.validation.core import ValidationFailed, validate_and_report
from overseer.validation.seismic import validate_seismic

CODES = {1: "SS", 2: "CSiS", 3: "FSiS"}
LOGS: dict[str, Any] = section(
    "ingest", "seismic",
    source="volumes", facies=dict(CODES), columns={"well": "Well Name", "depth": "Depth", "facies": "Facies"},
    holdout={"block_size": 4, "fraction": 0, "wells": [], "seed": 0},
)  # fmt: skip
TRAIN_RF: dict[str, Any] = {  # train_rf params, small
    "use_selected": False,
    "normalise": True,
    "max_depth": 8,
    "tree_counts": [10, 20],
    "folds": 3,
    "cv_scheme": "blocked",
    "block_size": 4,
    "class_weight": "balanced",
    "max_features": "sqrt",
    "min_samples_leaf": 1,
    "probabilities": False,
    "seed": 0,
}
EVALUATE_RF = {"slice_inline": None, "slice_sample": None}
WELLS = [f"W{i}" for i in range(5)]


def _strings(values: Any) -> list[str]:
    """Every string value at any depth of a metrics dict: DVC's metrics tables show them, so none belong there."""
    if isinstance(values, dict):
        return [s for v in values.values() for s in _strings(v)]
    return [values] if isinstance(values, str) else []


def well_logs(path: Path, wells: list[str], *, samples: int = 48, seed: int = 0, lacking: str | None = None) -> Path:
    """A well-log CSV: three depth bands of facies per well (codes 1..3) and two logs that follow
    them; the well ``lacking`` has no rows of the last facies."""
    rng = np.random.default_rng(seed)
    rows = []
    for well in wells:
        bands = 2 if well == lacking else 3
        for k in range(samples):
            code = 1 + (k * bands) // samples
            rows.append(
                {
                    "Well Name": well,
                    "Depth": 1000.0 + 0.5 * k,
                    "Facies": code,
                    "GR": 40 + 15 * code + rng.normal(0, 4),
                    "PE": 3.0 + 0.3 * code + rng.normal(0, 0.2),
                }
            )
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def ingest(path: Path, out: Path, **holdout: Any) -> Path:
    cfg = copy.deepcopy({**LOGS, "well_logs": str(path)})
    cfg["holdout"].update(holdout)
    ingest_seismic(cfg, out)
    return out


def train(prepared: Path, model_dir: Path, cfg: dict[str, Any] = TRAIN_RF) -> dict[str, Any]:
    """What train_rf writes to models/seismic/train (model, cv.csv, config.json), on all attributes."""
    meta = json.loads((prepared / "meta.json").read_text())
    features = meta["attributes"]
    result = train_forest(pd.read_parquet(prepared / "train.parquet"), features, {**cfg, "n_jobs": 1})
    model_dir.mkdir(parents=True)
    save_model(result.pipeline, model_dir / "model.skops")
    (model_dir / "cv.csv").write_text(result.cv.to_csv(index=False))
    config = {"train_rf": cfg, "features": features, **result.summary(), "facies": meta["facies"]}
    write_json(model_dir / "config.json", {**config, "inputs": meta.get("inputs")})
    return config


@pytest.fixture(scope="module")
def all_wells_train(tmp_path_factory) -> tuple[Path, Path]:
    """Well logs ingested with holdout.fraction 0 and a forest trained on every well."""
    root = tmp_path_factory.mktemp("all_wells")
    prepared = ingest(well_logs(root / "logs.csv", WELLS), root / "prepared")
    train(prepared, root / "model")
    return prepared, root / "model"


# ---------------------------------------------------------------------------- validation
def test_an_empty_holdout_passes_validation(all_wells_train) -> None:
    prepared, _ = all_wells_train
    assert pd.read_parquet(prepared / "holdout.parquet").empty
    report = validate_seismic(prepared, 20, 0.0)
    assert report.success and report.summary["holdout_rows"] == 0


def test_held_out_wells_without_a_facies_fail_validation_by_facies_name(tmp_path: Path) -> None:
    path = well_logs(tmp_path / "logs.csv", WELLS, lacking="W4")
    prepared = ingest(path, tmp_path / "prepared", wells=["W4"])
    with pytest.raises(ValidationFailed, match=r"split holdout, facies FSiS: .*min_value=1\) failed \(count=0\)"):
        validate_and_report(validate_seismic(prepared, 20, 0.0), tmp_path / "report")


# ---------------------------------------------------------------------------- nothing held out
def test_an_empty_holdout_is_evaluated_by_leave_wells_out_cv(all_wells_train, tmp_path: Path) -> None:
    prepared, model_dir = all_wells_train
    training = pd.read_parquet(prepared / "train.parquet")
    evaluation = evaluate_forest(prepared, model_dir, tmp_path / "no_facies_volume", EVALUATE_RF, n_jobs=1)
    metrics, described = evaluation.metrics(), evaluation.described()
    assert list(described) == ["evaluation", "cv"] and "evaluation" not in metrics and "cv" not in metrics
    assert described["evaluation"] == (
        "leave-wells-out CV (no held-out wells: holdout.fraction 0; "
        "tree count chosen on all wells: slightly optimistic)"
    )
    assert metrics["n_items"] == len(training)  # every training row predicted once, out of fold
    assert described["cv"] == {
        "grouped_by": "well",
        "groups": 5,
        "folds": 5,
        "one_group_per_fold": True,
        "n_estimators": json.loads((model_dir / "config.json").read_text())["best_n_estimators"],
        "seed": 0,
        "chosen_on_all_rows": ["tree_counts"],  # train_rf's CV chose among tree_counts [10, 20] on the same wells
    }
    assert set(metrics["per_class"]) == set(CODES.values()) and 0.0 <= metrics["macro"]["f1"] <= 1.0
    assert evaluation.report.confusion.shape == (3, 3)
    items = evaluation.report.predictions["item"]
    assert sorted(items) == sorted(training["well"] + "@" + training["depth"].astype(str))
    folds = pd.read_csv(io.StringIO(evaluation.artifacts["cv_folds.csv"]))
    assert sorted(folds["held_out"]) == WELLS and folds["n_test"].sum() == len(training)
    assert (folds["n_train"] + folds["n_test"] == len(training)).all()
    # the stage's files: metrics.json holds numbers only (what dvc metrics show tabulates), the words beside it
    write_report(evaluation.report, tmp_path / "eval")
    write_artifacts(tmp_path / "eval", {**evaluation.artifacts, "metrics.json": metrics, "evaluation.json": described})
    written = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert written["n_items"] == len(training) and not _strings(written)
    assert json.loads((tmp_path / "eval" / "evaluation.json").read_text()) == described


def _well_specific(n_wells: int, rows: int = 30) -> pd.DataFrame:
    """Wells that each hold one facies, alternating from well to well, with a log that tells the
    wells apart (its value is the well's number): a forest that saw a well scores it perfectly,
    one that did not predicts its neighbours' facies, which is always the other one."""
    rng = np.random.default_rng(0)
    parts = []
    for w in range(n_wells):
        parts.append(
            pd.DataFrame(
                {
                    "well": f"W{w:02d}",
                    "depth": 1000.0 + 0.5 * np.arange(rows),
                    "facies": w % 2,
                    "position": (w + rng.uniform(-0.1, 0.1, rows)).astype(np.float32),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def test_no_fold_scores_a_well_it_trained_on() -> None:
    table = _well_specific(6)
    conf = {**TRAIN_RF, "max_depth": None, "max_features": None, "tree_counts": [20]}
    config = {"train_rf": conf, "features": ["position"], "best_n_estimators": 20}
    seen = build_pipeline(20, None, True, "balanced", 0, 1, max_features=None).fit(table[["position"]], table["facies"])
    assert (seen.predict(table[["position"]]) == table["facies"]).all()  # training-set predictions: perfect
    with pytest.warns(UserWarning, match="occurs in only 3 spatial blocks/wells") as record:
        scored = cross_validated_report(table, config, ["even", "odd"], n_jobs=1)
    assert {str(w.message).split()[1] for w in record} == {"even", "odd"}  # the fold loop names facies by name
    assert scored.cv["folds"] == 6 and scored.cv["one_group_per_fold"]
    assert scored.report.summary()["n_items"] == len(table)
    assert scored.report.accuracy == 0.0  # every row scored by a forest that never saw its well
    conf = scored.report.predictions["confidence"]
    assert conf.notna().all() and conf.between(0, 1).all()  # the fold model's probability of its prediction


def test_a_cv_report_names_the_choices_made_on_all_wells(all_wells_train) -> None:
    prepared, _ = all_wells_train
    meta = json.loads((prepared / "meta.json").read_text())
    table = pd.read_parquet(prepared / "train.parquet")
    auto = {"well_features": {"neighbours": "auto", "gradients": False}, "smooth": {"window": "auto"}}
    cfg = {**TRAIN_RF, **auto, "features": "validated"}
    trained = train_with_choice(table, meta["attributes"], {**cfg, "n_jobs": 1}, "well_logs")
    config = model_config(cfg, trained.result, meta, trained.resolved)  # train_rf's config.json
    scored = cross_validated_report(table, config, meta["facies"], n_jobs=1)
    assert scored.evaluation == (
        "leave-wells-out CV (no held-out wells: holdout.fraction 0; tree count, attributes, well features, "
        "smoothing window chosen on all wells: slightly optimistic)"
    )
    assert scored.cv["chosen_on_all_rows"] == ["tree_counts", "features", "well_features", "smooth.window"]
    # nothing chosen (one size, attributes all, no auto): a plain label; boosting names its iterations
    plain = {"train_rf": {"features": "all"}, "cv": {"20": {}}, "well_choice": {"auto": [], "how": "off"}}
    assert chosen_on_all_rows(plain) == {}
    hgb = {"estimator": "hist_gradient_boosting", "cv": {"100": {}, "200": {}}}
    assert chosen_on_all_rows(hgb) == {"hgb.max_iter": "boosting iterations"}
    single = {"train_rf": {**TRAIN_RF, "tree_counts": [20]}, "features": meta["attributes"], "best_n_estimators": 20}
    assert cross_validated_report(table, single, meta["facies"], n_jobs=1).evaluation == (
        "leave-wells-out CV (no held-out wells: holdout.fraction 0)"
    )


def test_many_wells_are_cross_validated_in_folds_of_wells() -> None:
    table = _well_specific(WELL_FOLDS + 4, rows=12)
    config = {"train_rf": {**TRAIN_RF, "tree_counts": [5]}, "features": ["position"], "best_n_estimators": 5}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        scored = cross_validated_report(table, config, ["even", "odd"], n_jobs=1)
    assert scored.cv["folds"] == WELL_FOLDS and not scored.cv["one_group_per_fold"]
    held = [well for wells in scored.folds["held_out"] for well in wells.split("; ")]
    assert sorted(held) == sorted(table["well"].unique())  # every well held out exactly once
    assert scored.folds["n_test"].sum() == len(table) == scored.report.summary()["n_items"]


def test_an_empty_holdout_of_picks_is_evaluated_by_blocked_cv(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    shape = (12, 12, 20)
    facies = np.zeros(shape, np.int8)
    facies[:, :, 10:] = 1
    volumes = {}
    for name, signal in (("informative", 3.0), ("noise", 0.0)):
        np.save(tmp_path / f"{name}.npy", (rng.normal(size=shape) + signal * facies).astype(np.float32))
        volumes[name] = str(tmp_path / f"{name}.npy")
    il, xl, s = (a.ravel() for a in np.meshgrid(np.arange(12), np.arange(0, 12, 3), np.arange(2, 20, 4), indexing="ij"))
    picks = pd.DataFrame({"inline": il, "crossline": xl, "sample": s, "facies": facies[il, xl, s]})
    picks.to_csv(tmp_path / "picks.csv", index=False)
    cfg = {**copy.deepcopy(LOGS), "volumes": volumes, "facies": ["shale", "sand"], "picks": str(tmp_path / "picks.csv")}
    ingest_seismic(cfg, tmp_path / "prepared")
    prepared, model_dir = tmp_path / "prepared", tmp_path / "model"
    assert validate_seismic(prepared, 20, 0.0).success
    train(prepared, model_dir)
    (tmp_path / "facies").mkdir()
    np.save(tmp_path / "facies" / "facies.npy", facies)  # what train_rf predicts; evaluation only plots it
    evaluation = evaluate_forest(prepared, model_dir, tmp_path / "facies", EVALUATE_RF, n_jobs=1)
    metrics, described = evaluation.metrics(), evaluation.described()
    assert described["evaluation"] == (
        "blocked CV (no held-out picks: holdout.fraction 0; tree count chosen on all picks: slightly optimistic)"
    )
    assert metrics["n_items"] == len(pd.read_parquet(prepared / "train.parquet")) == len(picks)
    assert described["cv"]["grouped_by"] == "4×4 inline × crossline block" and described["cv"]["folds"] == 3
    assert not _strings(metrics)
    assert metrics["macro"]["f1"] > 0.8 and "slices.png" in evaluation.artifacts


# ---------------------------------------------------------------------------- held-out wells
def test_a_holdout_is_evaluated_as_before(tmp_path: Path) -> None:
    prepared = ingest(well_logs(tmp_path / "logs.csv", WELLS), tmp_path / "prepared", fraction=0.3)
    config = train(prepared, tmp_path / "model")
    holdout = pd.read_parquet(prepared / "holdout.parquet")
    assert not holdout.empty
    evaluation = evaluate_forest(prepared, tmp_path / "model", tmp_path / "no_facies_volume", EVALUATE_RF)
    metrics = evaluation.metrics()
    assert evaluation.described() == {"evaluation": "held-out wells"} and "cv" not in metrics
    assert metrics["n_items"] == len(holdout) and "cv_folds.csv" not in evaluation.artifacts
    model = load_model(tmp_path / "model" / "model.skops")
    expected = holdout_report(model, holdout, config["features"], list(CODES.values())).summary()
    assert {k: v for k, v in metrics.items() if k != "probabilities"} == expected and not _strings(metrics)
    scores = metrics["probabilities"]  # the forest's probabilities on the same rows, scored as evaluate@gtm's
    assert set(scores) == {"log_loss", "brier", "ece"} and scores["log_loss"] > 0 and 0 <= scores["ece"] <= 1
