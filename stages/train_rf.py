"""train_rf: the random-forest facies classifier (AASPI rfc3d) and the facies volume it predicts."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from overseer import stage
from overseer.io import atomic_dir, write_json
from overseer.tracking import log_artifacts, stage_run

PREPARED = Path("data/prepared/seismic")
MODEL_DIR = Path("models/seismic/train")
FACIES_DIR = Path("models/seismic/facies")
REPORT = Path("reports/seismic/train/metrics.json")


def main() -> None:
    from overseer.seismic.data.volumes import load_volumes
    from overseer.seismic.forest import train_forest
    from overseer.seismic.model_io import save_model
    from overseer.seismic.predict_volume import predict_volume

    cfg = stage.load_params("train_rf")
    meta = json.loads((PREPARED / "meta.json").read_text())
    selection = json.loads(Path("reports/seismic/selection/selection.json").read_text())
    features = selection["best_combination"] if cfg["use_selected"] else meta["attributes"]
    table = pd.read_parquet(PREPARED / "train.parquet")  # blocked folds: inline/crossline blocks, or wells
    with stage_run("seismic", "train_rf", inputs=[PREPARED / "train.parquet"]) as mlflow:
        result = train_forest(table, features, cfg)
        summary = {**result.summary(), "facies": meta["facies"]}
        with atomic_dir(MODEL_DIR) as tmp:
            save_model(result.pipeline, tmp / "model.skops")
            result.cv.to_csv(tmp / "cv.csv", index=False)
            write_json(tmp / "config.json", {"train_rf": cfg, "features": features, **summary})
        with atomic_dir(FACIES_DIR) as tmp:
            if meta["has_volumes"]:
                volumes, _ = load_volumes(PREPARED / "volumes", names=features)
                stats = predict_volume(
                    result.pipeline, volumes, features, tmp / "facies.npy", int(cfg["chunk_voxels"]),
                    probabilities_dir=tmp / "probabilities" if cfg["probabilities"] else None,
                    segy_template=meta["segy_template"],
                    segy_options={"iline_byte": meta["iline_byte"], "xline_byte": meta["xline_byte"], "dtype": "int16"},
                )  # fmt: skip
                summary["prediction"] = {k: v for k, v in stats.items() if not isinstance(v, str | Path)}
            else:  # a well-log training table has no volume to classify
                (tmp / "NO_VOLUME.txt").write_text("trained on well logs: no attribute volume to classify\n")
        write_json(REPORT, summary)
        mlflow.log_metrics(
            {
                # val_*: the shared names of validation scores (here out-of-fold CV) in every family
                "val_macro_f1": summary.get("cv_macro_f1", float("nan")),
                "val_accuracy": summary.get("cv_accuracy", float("nan")),
                "n_train": len(table),
                "best_n_estimators": result.best_n_estimators,
                **{f"importance_{k}": v for k, v in summary["importance"].items()},
            }
        )
        mlflow.set_tag("cv_scheme", result.scheme)
        log_artifacts(mlflow, [MODEL_DIR / "cv.csv", REPORT], artifact_path="train")
        print(f"rf: {result.best_n_estimators} trees, {result.scheme} CV macro-F1 {summary.get('cv_macro_f1', 0):.3f}")


if __name__ == "__main__":
    stage.run(main)
