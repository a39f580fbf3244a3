"""evaluate@<model>: the shared classification report on held-out data, from the saved model."""

from __future__ import annotations

import sys
from pathlib import Path

from overseer import stage
from overseer.io import atomic_dir
from overseer.metrics import write_report
from overseer.tracking import log_artifacts, stage_run


def cnn() -> None:
    from overseer.trackbed.data.tfrecord import list_tfrecords
    from overseer.trackbed.evaluate import evaluate_model

    cfg = stage.load_params("evaluate", "cnn")
    out = Path("reports/trackbed/eval")
    inputs = ["models/trackbed/train", "data/prepared/trackbed/eval"]
    with stage_run("trackbed", "evaluate@cnn", inputs=inputs) as mlflow:
        report = evaluate_model(
            "models/trackbed/train/model.keras", list_tfrecords("data/prepared/trackbed/eval"), int(cfg["batch_size"])
        )
        with atomic_dir(out) as tmp:
            write_report(report, tmp)
        mlflow.log_metrics(report.flat_metrics("eval_"))
        log_artifacts(mlflow, [out], artifact_path="eval")
        print(f"evaluation: accuracy {report.accuracy:.4f}, macro F1 {report.macro['f1']:.4f}, "
              f"weighted F1 {report.weighted['f1']:.4f} on {int(report.confusion.sum())} held-out images")  # fmt: skip


def rf() -> None:
    from overseer.seismic.evaluate import evaluate_forest

    cfg = stage.load_params("evaluate", "rf")
    prepared, out = Path("data/prepared/seismic"), Path("reports/seismic/eval")
    inputs = ["models/seismic/train", "models/seismic/facies", prepared / "holdout.parquet"]
    with stage_run("seismic", "evaluate@rf", inputs=inputs) as mlflow:
        with atomic_dir(out) as tmp:
            report, recovery = evaluate_forest(
                prepared, Path("models/seismic/train"), Path("models/seismic/facies"), cfg, tmp
            )
        mlflow.log_metrics({**report.flat_metrics("eval_"), **{f"eval_{k}": v for k, v in recovery.items()}})
        log_artifacts(mlflow, [out], artifact_path="eval")
        print(f"held-out: accuracy {report.accuracy:.4f}, macro F1 {report.macro['f1']:.4f}; truth recovery {recovery}")


MODELS = {"cnn": cnn, "rf": rf}

if __name__ == "__main__":
    stage.run(MODELS[sys.argv[1]])
