"""export@<model>: deployable model files, checked, and registered in the MLflow model registry."""

from __future__ import annotations

import shutil
import sys

from overseer import stage
from overseer.io import atomic_dir, read_json, write_json, write_run_time
from overseer.paths import (
    ENGRAVING,
    SEISMIC,
    SEISMIC_FACIES,
    SEISMIC_GTM_EVAL_REPORT,
    SEISMIC_GTM_EXPORT,
    SEISMIC_GTM_EXPORT_REPORT,
    SEISMIC_GTM_MODEL,
    SEISMIC_SELECTION_JSON,
    TRACKBED,
    TRACKBED_EVAL_FILES,
    TRACKBED_TRAIN_FILES,
)
from overseer.tracking import log_artifacts, register_model, stage_run


def cnn() -> None:
    import keras

    from overseer.trackbed.data.tfrecord import list_tfrecords
    from overseer.trackbed.export import check_images, export_trackbed, pip_requirements
    from overseer.trackbed.quantize import calibration_images

    cfg, out, held_out = (
        stage.load_params("export", "cnn"),
        TRACKBED.exported_model,
        list_tfrecords(TRACKBED_EVAL_FILES),
    )
    images = check_images(held_out, int(cfg["check_images"]))
    # int8 build: activation ranges from training images, agreement with fp32 checked on the evaluation set
    quantize = bool(cfg["quantize"])
    calibration = (
        calibration_images(list_tfrecords(TRACKBED_TRAIN_FILES), int(cfg["calibration_images"])) if quantize else None
    )
    int8_images = check_images(held_out, int(cfg["int8_check_images"])) if quantize else None
    with stage_run("trackbed", "export@cnn", inputs=[TRACKBED.trained_model, TRACKBED_TRAIN_FILES]) as mlflow:
        config = read_json(TRACKBED.trained_model / "config.json")
        check = export_trackbed(TRACKBED.trained_model / "model.keras", out, images, config, calibration, int8_images)
        write_json(TRACKBED.export_report, check)
        mlflow.log_metrics({k: v for k, v in check.items() if isinstance(v, int | float)})
        model = keras.models.load_model(out / "model.keras", compile=False)
        example = (images[:2], model.predict(images[:2], verbose=0))
        version = register_model("tensorflow", model, cfg["registered_model_name"], pip_requirements(), example)
        write_run_time("export@cnn", {"registered_model_version": version})
        print(f"exported to {out}: .keras, SavedModel, ONNX (agreement {check}); registry version {version}")


def rf() -> None:
    from overseer.seismic.model_io import load_model, pip_requirements, trusted_types, versions

    cfg, out, train = stage.load_params("export", "rf"), SEISMIC.exported_model, SEISMIC.trained_model
    with stage_run("seismic", "export@rf", inputs=[train, SEISMIC_FACIES, SEISMIC_SELECTION_JSON]) as mlflow:
        model = load_model(train / "model.skops")  # loads back, or the export stops here
        with atomic_dir(out) as tmp:
            for name in ("model.skops", "model.versions.json", "config.json"):
                shutil.copy2(train / name, tmp / name)
            shutil.copy2(SEISMIC_SELECTION_JSON, tmp / "selection.json")
            if SEISMIC_FACIES.exists():
                shutil.copytree(SEISMIC_FACIES, tmp / "facies")
        version = register_model(
            "sklearn", model, cfg["registered_model_name"], pip_requirements(),
            serialization_format="skops", skops_trusted_types=trusted_types(train / "model.skops"),
        )  # fmt: skip
        features = read_json(train / "config.json")["features"]
        mlflow.log_params({"features": ",".join(features), **{f"version.{k}": v for k, v in versions().items()}})
        files = sorted(p.name for p in out.iterdir())
        write_json(SEISMIC.export_report, {"files": files})
        write_run_time("export@rf", {"registered_model_version": version})
        print(f"exported to {out}; registry version {version}")


def gtm() -> None:
    from overseer.seismic.model_io import load_model, pip_requirements, trusted_types

    cfg, out, train = stage.load_params("export", "gtm"), SEISMIC_GTM_EXPORT, SEISMIC_GTM_MODEL
    with stage_run("seismic", "export@gtm", inputs=[train, SEISMIC_GTM_EVAL_REPORT]) as mlflow:
        model = load_model(train / "model.skops")  # loads back, or the export stops here
        with atomic_dir(out) as tmp:
            shutil.copytree(train, tmp, dirs_exist_ok=True)  # model.skops, config.json, the probability volumes
            shutil.copy2(SEISMIC_GTM_EVAL_REPORT / "metrics.json", tmp / "evaluation.json")  # its held-out scores
        version = register_model(
            "sklearn", model, cfg["registered_model_name"], pip_requirements(),
            serialization_format="skops", skops_trusted_types=trusted_types(train / "model.skops"),
        )  # fmt: skip
        mlflow.log_params({"features": ",".join(read_json(train / "config.json")["features"])})
        write_json(SEISMIC_GTM_EXPORT_REPORT, {"files": sorted(p.name for p in out.iterdir())})
        write_run_time("export@gtm", {"registered_model_version": version})
        print(f"exported to {out} (`overseer predict seismic --model {out}`); registry version {version}")


def gnn() -> None:
    from overseer.engraving.engrave import engrave_pieces
    from overseer.engraving.predict import pip_requirements
    from overseer.engraving.schema import load_split
    from overseer.engraving.train import load_model

    cfg, train, out = stage.load_params("export", "gnn"), ENGRAVING.trained_model, ENGRAVING.exported_model
    names, pieces = load_split(ENGRAVING.prepared, "test")
    with stage_run("engraving", "export@gnn", inputs=[train, ENGRAVING.prepared / "test"]) as mlflow:
        model = load_model(train)  # loads back, or the export stops here
        with atomic_dir(out) as tmp:
            for item in train.iterdir():
                shutil.copy2(item, tmp / item.name)
            # held-out pieces engraved by the exported model: MusicXML, MEI (both read back), SVG pages
            held_out = list(zip(names, pieces, strict=True))[: int(cfg["pieces"])]
            written = engrave_pieces(
                model, held_out, tmp / "engraved",
                formats=cfg["formats"], pages=int(cfg["pages"]),
                threshold=float(cfg["threshold"]), min_clef_run=int(cfg["min_clef_run"]),
            )  # fmt: skip
        # pickle: pt2 traces tensors, and the model takes a PyG HeteroData
        version = register_model(
            "pytorch", model, cfg["registered_model_name"], pip_requirements(), serialization_format="pickle"
        )
        log_artifacts(mlflow, [out / "engraved"], artifact_path="engraved")
        files = sorted(p.name for p in out.iterdir())
        write_json(ENGRAVING.export_report, {"files": files, "engraved": written})
        write_run_time("export@gnn", {"registered_model_version": version})
        print(f"exported to {out}; engraved {len(written)} held-out pieces into {out / 'engraved'}; version {version}")


MODELS = {"cnn": cnn, "rf": rf, "gtm": gtm, "gnn": gnn}

if __name__ == "__main__":
    stage.run(MODELS[sys.argv[1]])
