"""export@<model>: deployable model files, checked, and registered in the MLflow model registry."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from overseer import stage
from overseer.io import atomic_dir, read_json, write_json, write_run_time
from overseer.paths import (
    ENGRAVING,
    SEISMIC,
    SEISMIC_EVAL_METRICS,
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
from overseer.registry import annotate_export, current_champion, promote
from overseer.tracking import log_artifacts, log_model_metrics, stage_run


def _publish(mlflow: Any, key: str, name: str, info: Any, out: Path) -> int:
    """The registered version of an export: held-out metrics on the logged model, version tags, model card
    (description and ``out/MODEL_CARD.md``), alias challenger — and champion when the model has none yet."""
    version = int(info.registered_model_version)
    mlflow.set_tag("registered_model_version", str(version))
    client = mlflow.MlflowClient()
    published = annotate_export(client, key, name, version, mlflow.active_run().data.tags, out)
    log_model_metrics(info.model_id, published["heldout"])
    if current_champion(client, name) is None:  # a first version serves until a better one is promoted
        print(promote(client, key, version, name=name).message)
    print(f"{name} version {version} is the challenger; card {published['card']}; `overseer promote {key}` checks it")
    return version


def cnn() -> None:
    from overseer.serving.trackbed import encode_png, log_trackbed_model
    from overseer.trackbed.data.tfrecord import list_tfrecords
    from overseer.trackbed.export import check_images, export_trackbed
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
    inputs = [TRACKBED.trained_model, TRACKBED_TRAIN_FILES, TRACKBED.eval_report / "metrics.json"]
    with stage_run("trackbed", "export@cnn", inputs=inputs, input_context="export") as mlflow:
        config = read_json(TRACKBED.trained_model / "config.json")
        check = export_trackbed(TRACKBED.trained_model / "model.keras", out, images, config, calibration, int8_images)
        write_json(TRACKBED.export_report, check)
        mlflow.log_metrics({k: v for k, v in check.items() if isinstance(v, int | float)})
        examples = [encode_png(image.astype("uint8")) for image in images[:2]]
        info = log_trackbed_model(out, cfg["registered_model_name"], examples)
        version = _publish(mlflow, "cnn", cfg["registered_model_name"], info, out)
        write_run_time("export@cnn", {"registered_model_version": version})
        print(f"exported to {out}: .keras, SavedModel, ONNX (agreement {check}); registry version {version}")


def rf() -> None:
    from overseer.seismic.model_io import load_model, versions
    from overseer.serving.seismic import log_seismic_model

    cfg, out, train = stage.load_params("export", "rf"), SEISMIC.exported_model, SEISMIC.trained_model
    with stage_run(
        "seismic", "export@rf", inputs=[train, SEISMIC_FACIES, SEISMIC_SELECTION_JSON, SEISMIC_EVAL_METRICS]
    ) as mlflow:
        load_model(train / "model.skops")  # loads back, or the export stops here
        with atomic_dir(out) as tmp:
            for name in ("model.skops", "model.versions.json", "config.json"):
                shutil.copy2(train / name, tmp / name)
            shutil.copy2(SEISMIC_SELECTION_JSON, tmp / "selection.json")
            if SEISMIC_FACIES.exists():
                shutil.copytree(SEISMIC_FACIES, tmp / "facies")
        info = log_seismic_model(out, cfg["registered_model_name"])
        version = _publish(mlflow, "rf", cfg["registered_model_name"], info, out)
        features = read_json(train / "config.json")["features"]
        mlflow.log_params({"features": ",".join(features), **{f"version.{k}": v for k, v in versions().items()}})
        files = sorted(p.name for p in out.iterdir())
        write_json(SEISMIC.export_report, {"files": files})
        write_run_time("export@rf", {"registered_model_version": version})
        print(f"exported to {out}; registry version {version}")


def gtm() -> None:
    from overseer.seismic.model_io import load_model
    from overseer.serving.seismic import log_seismic_model

    cfg, out, train = stage.load_params("export", "gtm"), SEISMIC_GTM_EXPORT, SEISMIC_GTM_MODEL
    with stage_run("seismic", "export@gtm", inputs=[train, SEISMIC_GTM_EVAL_REPORT]) as mlflow:
        load_model(train / "model.skops")  # loads back, or the export stops here
        with atomic_dir(out) as tmp:
            shutil.copytree(train, tmp, dirs_exist_ok=True)  # model.skops, config.json, the probability volumes
            shutil.copy2(SEISMIC_GTM_EVAL_REPORT / "metrics.json", tmp / "evaluation.json")  # its held-out scores
        info = log_seismic_model(out, cfg["registered_model_name"])
        version = _publish(mlflow, "gtm", cfg["registered_model_name"], info, out)
        mlflow.log_params({"features": ",".join(read_json(train / "config.json")["features"])})
        write_json(SEISMIC_GTM_EXPORT_REPORT, {"files": sorted(p.name for p in out.iterdir())})
        write_run_time("export@gtm", {"registered_model_version": version})
        print(f"exported to {out} (`overseer predict seismic --model {out}`); registry version {version}")


def gnn() -> None:
    from overseer.engraving.engrave import engrave_pieces, write_postprocess_settings
    from overseer.engraving.schema import load_split
    from overseer.engraving.train import load_model
    from overseer.serving.engraving import log_engraving_model

    cfg, train, out = stage.load_params("export", "gnn"), ENGRAVING.trained_model, ENGRAVING.exported_model
    names, pieces = load_split(ENGRAVING.prepared, "test")
    penalty = float(read_json(ENGRAVING.eval_report / "metrics.json")["key"]["penalty"])  # chosen on validation
    with stage_run("engraving", "export@gnn", inputs=[train, ENGRAVING.eval_report / "metrics.json"]) as mlflow:
        model = load_model(train)  # loads back, or the export stops here
        with atomic_dir(out) as tmp:
            for item in train.iterdir():
                shutil.copy2(item, tmp / item.name)
            write_postprocess_settings(tmp, penalty)  # what engrave and the served model post-process with
            # held-out pieces engraved by the exported model: MusicXML, MEI (both read back), SVG pages
            held_out = list(zip(names, pieces, strict=True))[: int(cfg["pieces"])]
            written = engrave_pieces(
                model, held_out, tmp / "engraved",
                formats=cfg["formats"], pages=int(cfg["pages"]),
                threshold=float(cfg["threshold"]), min_clef_run=int(cfg["min_clef_run"]), key_change_penalty=penalty,
            )  # fmt: skip
        info = log_engraving_model(out, cfg["registered_model_name"])  # with postprocess.json
        version = _publish(mlflow, "gnn", cfg["registered_model_name"], info, out)
        log_artifacts(mlflow, [out / "engraved"], artifact_path="engraved")
        files = sorted(p.name for p in out.iterdir())
        write_json(ENGRAVING.export_report, {"files": files, "engraved": written})
        write_run_time("export@gnn", {"registered_model_version": version})
        print(f"exported to {out}; engraved {len(written)} held-out pieces into {out / 'engraved'}; version {version}")


MODELS = {"cnn": cnn, "rf": rf, "gtm": gtm, "gnn": gnn}

if __name__ == "__main__":
    stage.run(MODELS[sys.argv[1]])
