"""train_gtm: generative topographic mapping of the selected attributes, and a probability volume per facies."""

from __future__ import annotations

import pandas as pd

from overseer import stage
from overseer.io import atomic_dir, read_json, split_run_time, write_artifacts, write_json
from overseer.paths import (
    SEISMIC_GTM_MODEL,
    SEISMIC_GTM_TRAIN_REPORT,
    SEISMIC_GTM_VOLUMES,
    SEISMIC_META,
    SEISMIC_SELECTION_JSON,
    SEISMIC_TRAIN_TABLE,
    SEISMIC_VOLUMES,
)
from overseer.seismic.data.volumes import load_volumes
from overseer.seismic.gtm_workflow import gtm_config, gtm_features, plot_latent_map, predict_gtm_survey, train_gtm
from overseer.seismic.model_io import save_model
from overseer.settings import load_settings
from overseer.tracking import log_artifacts, log_run_time, stage_run

LOGGED = ("log_likelihood", "log_likelihood_per_row", "em_iterations", "beta")  # MLflow metrics of the fit


def main() -> None:
    cfg, settings, meta = stage.load_params("train_gtm"), load_settings(), read_json(SEISMIC_META)
    features = gtm_features(cfg["features"], read_json(SEISMIC_SELECTION_JSON), meta["attributes"])
    table = pd.read_parquet(SEISMIC_TRAIN_TABLE)  # the picks: labelled rows of the supervised PDFs
    volumes = load_volumes(SEISMIC_VOLUMES, names=features)[0] if meta["has_volumes"] else None
    tags = settings.tags("chunk_voxels", "n_jobs")  # run-time settings: time and memory, never the result
    with stage_run("seismic", "train_gtm", inputs=[SEISMIC_TRAIN_TABLE], tags=tags) as mlflow:
        result = train_gtm(table, volumes, features, cfg, n_jobs=settings.n_jobs, facies=meta["facies"])
        config = gtm_config(cfg, result, meta)
        with atomic_dir(SEISMIC_GTM_MODEL) as tmp:
            save_model(result.model, tmp / "model.skops")
            write_json(tmp / "config.json", config)  # what predict and evaluate read
            stats = {} if volumes is None else predict_gtm_survey(  # a Zarr store or seismic.dask: one Dask graph
                result.model, volumes, features, tmp / SEISMIC_GTM_VOLUMES.name, meta,
                chunk_voxels=settings.chunk_voxels, progress=settings.progress,
                volumes_dir=SEISMIC_VOLUMES, dask=stage.load_params("seismic", "dask"),
            )  # fmt: skip
        prediction, run_time = split_run_time(stats)
        run_time.update({k: prediction.pop(k) for k in ("chunks",) if k in prediction})  # follows chunk_voxels
        log_run_time(mlflow, "train_gtm", run_time)
        # metrics.json: numbers only (DVC tabulates every string); method and likelihood stay in config.json
        summary = {k: v for k, v in config.items() if k not in ("train_gtm", "inputs") and not isinstance(v, str)}
        with atomic_dir(SEISMIC_GTM_TRAIN_REPORT) as tmp:
            write_artifacts(tmp, {
                "metrics.json": {**summary, **({"prediction": prediction} if stats else {})},
                "log_likelihood.csv": result.history.to_csv(index=False),
                "latent_map.png": plot_latent_map(result.model, meta["facies"]),
            })  # fmt: skip
        mlflow.log_metrics({k: summary[k] for k in LOGGED})
        log_artifacts(mlflow, [SEISMIC_GTM_TRAIN_REPORT], artifact_path="train")
        print(f"gtm: {summary['latent_nodes']} nodes on {features}, {summary['em_iterations']} EM iterations, "
              f"log-likelihood per row {summary['log_likelihood_per_row']:.3f}")  # fmt: skip


if __name__ == "__main__":
    stage.run(main)
