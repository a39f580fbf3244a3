"""train_cnn: ResNet50V2 + head on the trackbed training file, the best config from params.yaml."""

from __future__ import annotations

import tempfile
from pathlib import Path

from overseer import stage
from overseer.io import atomic_dir, numbers_only, split_run_time, write_artifacts, write_json
from overseer.paths import TRACKBED, TRACKBED_TRAIN_FILES
from overseer.plots import plot_training_curves
from overseer.settings import load_settings
from overseer.tracking import log_artifacts, log_history, log_run_time, numeric, stage_run


def main() -> None:
    from overseer.trackbed.data.tfrecord import list_tfrecords
    from overseer.trackbed.distribute import training_strategy
    from overseer.trackbed.model import model_card, save_keras
    from overseer.trackbed.train import train_cnn

    cfg, settings = stage.load_params("train_cnn"), load_settings()
    strategy = training_strategy(settings.tf_strategy)  # how it trains (a setting), not what
    with stage_run("trackbed", "train_cnn", inputs=[TRACKBED_TRAIN_FILES], tags=settings.tags("tf_strategy")) as mlflow:
        with tempfile.TemporaryDirectory() as work:
            result = train_cnn(cfg, list_tfrecords(TRACKBED_TRAIN_FILES), Path(work), strategy)
        mlflow.set_tag("weights_used", result.weights_used)
        log_history(mlflow, result.history)
        summary, run_time = split_run_time(result.summary())
        # val_accuracy: the shared name of the validation accuracy in every family
        mlflow.log_metrics({**numeric(summary), "val_accuracy": summary["best_val_categorical_accuracy"]})
        log_run_time(mlflow, "train_cnn", run_time)
        with atomic_dir(TRACKBED.trained_model) as tmp:
            save_keras(result.model, tmp / "model.keras")  # byte-deterministic .keras
            write_json(tmp / "config.json", model_card(cfg, result.weights_used))
        curves = plot_training_curves(result.history)
        history = result.history.to_csv(index=False)
        write_artifacts(
            TRACKBED.train_report,
            {
                "history.csv": history,
                "training_curves.png": curves,
                "metrics.json": numbers_only(summary),
                "summary.json": summary,
            },
        )
        log_artifacts(mlflow, [TRACKBED.train_report], artifact_path="train")


if __name__ == "__main__":
    stage.run(main)
