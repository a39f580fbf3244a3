"""train_rf: the random-forest facies classifier (AASPI rfc3d) and the facies volume it predicts."""

from __future__ import annotations

from typing import Any

import pandas as pd

from overseer import stage
from overseer.io import atomic_dir, read_json, split_run_time, write_json, write_summary
from overseer.paths import (
    SEISMIC,
    SEISMIC_FACIES,
    SEISMIC_META,
    SEISMIC_SELECTION_JSON,
    SEISMIC_TRAIN_TABLE,
    SEISMIC_VOLUMES,
)
from overseer.seismic.feature_choice import choose_features
from overseer.seismic.forest import check_source, model_config
from overseer.seismic.model_io import save_model
from overseer.seismic.predict_volume import predict_prepared_survey
from overseer.seismic.well_choice import Trained, train_with_choice
from overseer.settings import load_settings
from overseer.tracking import log_artifacts, log_run_time, stage_run


def main() -> None:
    cfg, settings, meta = stage.load_params("train_rf"), load_settings(), read_json(SEISMIC_META)
    check_source(cfg, meta["source"])  # well_features: well logs only (auto: off elsewhere)
    table = pd.read_parquet(SEISMIC_TRAIN_TABLE)  # blocked folds: inline/crossline blocks, or wells
    options = {"n_jobs": settings.n_jobs, "chunk_voxels": settings.chunk_voxels}  # run-time settings, not params
    with stage_run("seismic", "train_rf", inputs=[SEISMIC_TRAIN_TABLE], tags=settings.tags(*options)) as mlflow:
        # validated: the forest's CV checks the GMM selection (auto well features read as off there)
        chosen = choose_features(cfg["features"], read_json(SEISMIC_SELECTION_JSON), meta["attributes"], table, cfg)
        # auto well features / smoothing: leave-wells-out CV on the training wells, then the forest
        trained = train_with_choice(table, features := chosen.features, cfg, meta["source"], options)
        result, resolved = trained.result, trained.resolved
        summary = {**result.summary(), "facies": meta["facies"], "feature_choice": chosen.summary()}
        with atomic_dir(SEISMIC.trained_model) as tmp:
            save_model(result.pipeline, tmp / "model.skops")
            (tmp / "cv.csv").write_text(result.cv.to_csv(index=False))
            write_json(tmp / "config.json", model_config(cfg, result, meta, resolved))  # what predict/evaluate read
        with atomic_dir(SEISMIC_FACIES) as tmp:
            stats = predict_prepared_survey(result.pipeline, SEISMIC_VOLUMES, meta, features, tmp, resolved, **options,
                                            dask=stage.load_params("seismic", "dask"))  # fmt: skip
        prediction, run_time = split_run_time(stats or {})
        run_time.update({k: prediction.pop(k) for k in ("chunks",) if k in prediction})  # follows chunk_voxels
        log_run_time(mlflow, "train_rf", run_time)
        write_summary(SEISMIC.train_report, {**summary, **({"prediction": prediction} if stats else {})})
        log_training(mlflow, summary, trained, len(table))
        log_artifacts(mlflow, [SEISMIC.trained_model / "cv.csv", SEISMIC.train_report], artifact_path="train")
        print(f"rf: {result.best_n_estimators} trees, {result.scheme} CV macro-F1 (mean of folds) "
              f"{summary['cv_macro_f1']:.3f} ± {summary['cv_macro_f1_std']:.3f}, "
              f"pooled {summary.get('cv_pooled_macro_f1', 0):.3f}")  # fmt: skip


def log_training(mlflow: Any, summary: dict[str, Any], trained: Trained, n_train: int) -> None:
    """The run's metrics and tags: CV scores (val_*), tree count, importance, and the auto choice."""
    choice = trained.choice
    mlflow.log_metrics({
        # val_*: the shared names of validation scores (here CV) in every family; val_macro_f1 is
        # the CV macro-F1 (mean of folds) that chose the tree count; pooled: all folds' predictions at once
        "val_macro_f1": summary["cv_macro_f1"], "val_macro_f1_std": summary["cv_macro_f1_std"],
        "val_pooled_macro_f1": summary.get("cv_pooled_macro_f1", float("nan")), "n_train": n_train,
        "val_accuracy": summary["cv_accuracy"], "val_pooled_accuracy": summary.get("cv_pooled_accuracy", float("nan")),
        "best_n_estimators": trained.result.best_n_estimators,
        **{f"importance_{k}": v for k, v in summary["importance"].items()},
        **(choice.metrics() if choice else {}),
    })  # fmt: skip
    mlflow.set_tags({"cv_scheme": trained.result.scheme, **(choice.tags() if choice else {})})


if __name__ == "__main__":
    stage.run(main)
