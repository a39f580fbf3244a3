"""export@<model>: deployable model files, checked, and registered in the MLflow model registry."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from overseer import stage
from overseer.io import write_json
from overseer.tracking import stage_run


def cnn() -> None:
    import numpy as np

    from overseer.trackbed.data.tfrecord import list_tfrecords
    from overseer.trackbed.export import export_trackbed, register_keras_model
    from overseer.trackbed.pipeline import image_dataset

    cfg = stage.load_params("export", "cnn")
    out = Path("models/trackbed/export")
    config = json.loads(Path("models/trackbed/train/config.json").read_text())
    n_check = int(cfg["check_images"])
    eval_images = image_dataset(list_tfrecords("data/prepared/trackbed/eval"), n_check).take(1)
    images = np.concatenate([batch[0].numpy() for batch in eval_images])
    with stage_run("trackbed", "export@cnn", inputs=["models/trackbed/train"]) as mlflow:
        check = export_trackbed("models/trackbed/train/model.keras", out, images, config)
        write_json("reports/trackbed/export.json", check)
        mlflow.log_metrics({k: v for k, v in check.items() if isinstance(v, int | float)})
        version = register_keras_model(mlflow, out / "model.keras", cfg["registered_model_name"], images[:2])
        mlflow.set_tag("registered_model_version", str(version))
        print(
            f"exported to {out}: model.keras, saved_model/, model.onnx (agreement {check}); registry version {version}"
        )


MODELS = {"cnn": cnn}

if __name__ == "__main__":
    stage.run(MODELS[sys.argv[1]])
