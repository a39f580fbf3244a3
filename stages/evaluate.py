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


def gnn() -> None:
    from overseer.engraving.evaluate import evaluate_pieces
    from overseer.engraving.predict import predict_piece
    from overseer.engraving.schema import load_split
    from overseer.engraving.train import load_model

    cfg = stage.load_params("evaluate", "gnn")
    prepared, model_dir, out = (
        Path("data/prepared/engraving"),
        Path("models/engraving/train"),
        Path("reports/engraving/eval"),
    )
    names, pieces = load_split(prepared, "test")  # held-out pieces only: never seen in training or early stopping
    with stage_run("engraving", "evaluate@gnn", inputs=[model_dir, prepared / "test"]) as mlflow:
        model = load_model(model_dir)
        with atomic_dir(out) as tmp:
            evaluation = evaluate_pieces(
                pieces, names, lambda piece: predict_piece(model, piece, max_notes=cfg.get("max_notes")), tmp,
                threshold=float(cfg["threshold"]), min_clef_run=int(cfg["min_clef_run"]),
            )  # fmt: skip
        mlflow.log_metrics({f"eval_{k}": v for k, v in evaluation.post.items()})
        mlflow.log_metrics({f"eval_raw_{k}": v for k, v in evaluation.raw.items()})
        log_artifacts(mlflow, [out / "metrics.json", out / "table1.md"], artifact_path="eval")
        print(evaluation.table.to_string())


MODELS = {"cnn": cnn, "rf": rf, "gnn": gnn}

if __name__ == "__main__":
    stage.run(MODELS[sys.argv[1]])
