"""export@<model>: deployable model files, checked, and registered in the MLflow model registry."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from overseer import stage
from overseer.io import atomic_dir, write_json
from overseer.tracking import log_artifacts, stage_run


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


def rf() -> None:
    import shutil

    from overseer.seismic.model_io import load_model, trusted_types, versions

    cfg = stage.load_params("export", "rf")
    out, train = Path("models/seismic/export"), Path("models/seismic/train")
    config = json.loads((train / "config.json").read_text())
    inputs = [train, Path("models/seismic/facies"), Path("reports/seismic/selection/selection.json")]
    with stage_run("seismic", "export@rf", inputs=inputs) as mlflow:
        model = load_model(train / "model.skops")  # loads back, or the export stops here
        with atomic_dir(out) as tmp:
            for name in ("model.skops", "model.versions.json", "config.json"):
                shutil.copy2(train / name, tmp / name)
            shutil.copy2("reports/seismic/selection/selection.json", tmp / "selection.json")
            if Path("models/seismic/facies").exists():
                shutil.copytree("models/seismic/facies", tmp / "facies")
        import mlflow.sklearn
        import sklearn

        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=cfg["registered_model_name"],
            pip_requirements=[f"scikit-learn=={sklearn.__version__}", f"skops=={versions()['skops']}"],
            serialization_format="skops",
            skops_trusted_types=trusted_types(train / "model.skops"),
        )
        mlflow.log_params(
            {"features": ",".join(config["features"]), **{f"version.{k}": v for k, v in versions().items()}}
        )
        write_json("reports/seismic/export.json", {"registered_model_version": int(info.registered_model_version),
                                                   "files": sorted(p.name for p in out.iterdir())})  # fmt: skip
        print(f"exported to {out}; registry version {info.registered_model_version}")


def gnn() -> None:
    import shutil

    import mlflow.pytorch
    import torch
    import torch_geometric

    from overseer.engraving.engrave import engrave_piece
    from overseer.engraving.predict import predict_piece
    from overseer.engraving.schema import load_split
    from overseer.engraving.train import load_model

    cfg = stage.load_params("export", "gnn")
    train, out = Path("models/engraving/train"), Path("models/engraving/export")
    names, pieces = load_split("data/prepared/engraving", "test")
    with stage_run("engraving", "export@gnn", inputs=[train, "data/prepared/engraving/test"]) as mlflow:
        model = load_model(train)  # loads back, or the export stops here
        written = {}
        with atomic_dir(out) as tmp:
            for item in train.iterdir():
                shutil.copy2(item, tmp / item.name)
            # held-out pieces engraved by the exported model: MusicXML, MEI (both read back), SVG pages
            for name, piece in list(zip(names, pieces, strict=True))[: int(cfg["pieces"])]:
                result = engrave_piece(
                    piece, lambda p: predict_piece(model, p), tmp / "engraved" / name, name,
                    formats=tuple(cfg["formats"]), pages=int(cfg["pages"]),
                    threshold=float(cfg["threshold"]), min_clef_run=int(cfg["min_clef_run"]),
                )  # fmt: skip
                files = sorted(p.name for p in (tmp / "engraved" / name).iterdir())
                written[name] = {"files": files, "notes": result["notes"]}
        info = mlflow.pytorch.log_model(
            model,
            name="model",
            registered_model_name=cfg["registered_model_name"],
            serialization_format="pickle",  # pt2 traces tensors; the model takes a PyG HeteroData
            pip_requirements=[
                f"torch=={torch.__version__.split('+')[0]}",
                f"torch-geometric=={torch_geometric.__version__}",
            ],
        )
        mlflow.set_tag("registered_model_version", str(info.registered_model_version))
        log_artifacts(mlflow, [out / "engraved"], artifact_path="engraved")
        write_json("reports/engraving/export.json", {"registered_model_version": int(info.registered_model_version),
                                                     "files": sorted(p.name for p in out.iterdir()),
                                                     "engraved": written})  # fmt: skip
        version = info.registered_model_version
        print(
            f"exported to {out}; engraved {len(written)} held-out pieces into {out / 'engraved'}; "
            f"registry version {version}"
        )


MODELS = {"cnn": cnn, "rf": rf, "gnn": gnn}

if __name__ == "__main__":
    stage.run(MODELS[sys.argv[1]])
