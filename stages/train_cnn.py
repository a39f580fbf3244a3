"""train_cnn: ResNet50V2 + head on the trackbed training file, the best config from params.yaml."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from overseer import stage
from overseer.io import atomic_dir, atomic_file, write_json
from overseer.plots import plot_training_curves
from overseer.tracking import log_artifacts, stage_run

MODEL_DIR = Path("models/trackbed/train")
REPORT_DIR = Path("reports/trackbed/train")


def main() -> None:
    from overseer.trackbed.data.schema import CLASSES
    from overseer.trackbed.data.tfrecord import list_tfrecords
    from overseer.trackbed.train import train_cnn

    cfg = stage.load_params("train_cnn")
    with stage_run("trackbed", "train_cnn", inputs=["data/prepared/trackbed/train"]) as mlflow:
        with tempfile.TemporaryDirectory() as work:
            result = train_cnn(cfg, list_tfrecords("data/prepared/trackbed/train"), Path(work))
        mlflow.set_tag("weights_used", result.weights_used)
        for row in result.history.to_dict("records"):
            mlflow.log_metrics({k: float(v) for k, v in row.items() if k not in ("epoch", "phase")}, step=row["epoch"])
        summary = result.summary()
        mlflow.log_metrics({k: v for k, v in summary.items() if isinstance(v, int | float)})
        # the shared name of the validation accuracy in every family (best_val_loss is in the summary;
        # the per-epoch val_loss is the Keras history above)
        mlflow.log_metrics({"val_accuracy": summary["best_val_categorical_accuracy"]})

        with atomic_dir(MODEL_DIR) as tmp:
            result.model.save(tmp / "model.keras")
            config = {
                "train_cnn": cfg,
                "classes": list(CLASSES),
                "weights_used": result.weights_used,
                "input": {"shape": [224, 224, 3], "dtype": "float32", "range": [0, 255], "channels": "RGB"},
            }
            (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        REPORT_DIR.mkdir(parents=True, exist_ok=True)
        with atomic_file(REPORT_DIR / "history.csv") as tmp:
            result.history.to_csv(tmp, index=False)
        plot_training_curves(result.history, REPORT_DIR / "training_curves.png")
        write_json(REPORT_DIR / "metrics.json", summary)
        log_artifacts(mlflow, [REPORT_DIR], artifact_path="train")


if __name__ == "__main__":
    stage.run(main)
