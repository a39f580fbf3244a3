"""evaluate@<model>: the shared classification report on held-out data, from the saved model."""

from __future__ import annotations

import sys

from overseer import stage
from overseer.io import atomic_dir, write_artifacts
from overseer.metrics import write_report
from overseer.paths import (
    ENGRAVING,
    SEISMIC,
    SEISMIC_FACIES,
    SEISMIC_GTM_EVAL_REPORT,
    SEISMIC_GTM_MODEL,
    SEISMIC_HOLDOUT_TABLE,
    SEISMIC_TRAIN_TABLE,
    TRACKBED,
    TRACKBED_EVAL_FILES,
)
from overseer.tracking import log_artifacts, log_heldout, stage_run


def cnn() -> None:
    from overseer.trackbed.data.tfrecord import list_tfrecords
    from overseer.trackbed.evaluate import evaluate_model
    from overseer.trackbed.peek import write_eval_grids

    cfg, model, out = stage.load_params("evaluate", "cnn"), TRACKBED.trained_model, TRACKBED.eval_report
    with stage_run("trackbed", "evaluate@cnn", inputs=[model, TRACKBED_EVAL_FILES]) as mlflow:
        report = evaluate_model(
            model / "model.keras", files := list_tfrecords(TRACKBED_EVAL_FILES), int(cfg["batch_size"])
        )
        with atomic_dir(out) as tmp:
            write_report(report, tmp)
            write_eval_grids(report, files, tmp)  # the notebook's peek and the most confident errors, as images
        log_heldout(mlflow, report.flat_metrics("eval_"))
        log_artifacts(mlflow, [out], artifact_path="eval")
        print(f"evaluation: accuracy {report.accuracy:.4f}, macro F1 {report.macro['f1']:.4f}, "
              f"weighted F1 {report.weighted['f1']:.4f} on {int(report.confusion.sum())} held-out images")  # fmt: skip


def rf() -> None:
    from overseer.seismic.evaluate import evaluate_forest
    from overseer.settings import load_settings

    cfg, model, out = stage.load_params("evaluate", "rf"), SEISMIC.trained_model, SEISMIC.eval_report
    inputs = [model, SEISMIC_FACIES, SEISMIC_HOLDOUT_TABLE, SEISMIC_TRAIN_TABLE]  # train: CV when nothing is held out
    settings = load_settings()  # n_jobs: the forest threads of that CV, a run-time setting, not a param
    with stage_run("seismic", "evaluate@rf", inputs=inputs, tags=settings.tags("n_jobs")) as mlflow:
        evaluation = evaluate_forest(SEISMIC.prepared, model, SEISMIC_FACIES, cfg, n_jobs=settings.n_jobs)
        report, recovery = evaluation.report, evaluation.recovery
        with atomic_dir(out) as tmp:
            write_report(report, tmp)
            write_artifacts(tmp, {**evaluation.artifacts, **evaluation.summary_files()})  # metrics.json: numbers
        scores = {**recovery, **(evaluation.probabilities or {})}  # truth recovery, log-loss, Brier, ECE
        log_heldout(mlflow, {**report.flat_metrics("eval_"), **{f"eval_{k}": v for k, v in scores.items()}})
        mlflow.set_tag("evaluation", evaluation.evaluation)
        log_artifacts(mlflow, [out], artifact_path="eval")
        print(f"{evaluation.evaluation}: accuracy {report.accuracy:.4f}, macro F1 {report.macro['f1']:.4f} on "
              f"{int(report.confusion.sum())} rows; truth recovery {recovery}")  # fmt: skip


def gtm() -> None:
    from overseer.seismic.gtm_evaluate import evaluate_gtm

    cfg, model, out = stage.load_params("evaluate", "gtm"), SEISMIC_GTM_MODEL, SEISMIC_GTM_EVAL_REPORT
    inputs = [model, SEISMIC_HOLDOUT_TABLE, SEISMIC_TRAIN_TABLE]  # train: CV of the PDFs when nothing is held out
    with stage_run("seismic", "evaluate@gtm", inputs=inputs) as mlflow:
        evaluation = evaluate_gtm(SEISMIC.prepared, model, SEISMIC.eval_report, cfg)
        with atomic_dir(out) as tmp:
            write_report(evaluation.report, tmp)
            write_artifacts(tmp, {**evaluation.artifacts, **evaluation.summary_files()})
        log_heldout(mlflow, evaluation.flat_metrics())
        mlflow.set_tag("evaluation", evaluation.evaluation)
        log_artifacts(mlflow, [out], artifact_path="eval")
        print(f"gtm, {evaluation.evaluation}:\n{evaluation.versus_forest.round(4).to_string()}")


def gnn() -> None:
    from overseer.engraving.evaluate import choose_key_penalty, evaluate_pieces, write_evaluation
    from overseer.engraving.predict import predict_piece
    from overseer.engraving.schema import load_split
    from overseer.engraving.train import load_model

    cfg, model_dir, out = stage.load_params("evaluate", "gnn"), ENGRAVING.trained_model, ENGRAVING.eval_report
    names, pieces = load_split(ENGRAVING.prepared, "test")  # held-out only: never seen in training or early stopping
    _, validation = load_split(ENGRAVING.prepared, "validation")  # the key change penalty is chosen on these
    inputs = [model_dir, ENGRAVING.prepared / "test", ENGRAVING.prepared / "validation"]
    with stage_run("engraving", "evaluate@gnn", inputs=inputs) as mlflow:
        model, threshold = load_model(model_dir), float(cfg["threshold"])
        predict = lambda piece: predict_piece(model, piece, max_notes=cfg.get("max_notes"))  # noqa: E731
        key = choose_key_penalty(cfg.get("key_change_penalty", "auto"), validation, predict, threshold=threshold)
        evaluation = evaluate_pieces(
            pieces, names, predict, threshold=threshold, min_clef_run=int(cfg["min_clef_run"]), key_change_penalty=key
        )  # metrics.json's key: raw / per-bar / sequence-smoothed accuracy; key_penalty.csv: the validation grid
        with atomic_dir(out) as tmp:
            write_evaluation(evaluation, tmp)  # files, tasks/<task>/ reports (predictions.csv of stem, clef: dvc plots)
        log_heldout(mlflow, {f"eval_{k}": v for k, v in evaluation.post.items()})
        log_heldout(mlflow, {f"eval_raw_{k}": v for k, v in evaluation.raw.items()})
        log_heldout(mlflow, {f"eval_key_{k}": v for k, v in evaluation.key.items()})
        log_artifacts(mlflow, [out / "metrics.json", out / "table1.md"], artifact_path="eval")
        print(evaluation.table.to_string())
        print(f"key accuracy {evaluation.key['raw']:.4f} raw, {evaluation.key['per_bar']:.4f} per bar, "
              f"{evaluation.key['sequence']:.4f} sequence-smoothed (penalty {key.penalty:g})")  # fmt: skip


MODELS = {"cnn": cnn, "rf": rf, "gtm": gtm, "gnn": gnn}

if __name__ == "__main__":
    stage.run(MODELS[sys.argv[1]])
