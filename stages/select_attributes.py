"""select_attributes: GMM attribute selection (AASPI attribute_selection) on the training table."""

from __future__ import annotations

import pandas as pd

from overseer import stage
from overseer.io import atomic_dir, read_json, write_artifacts
from overseer.paths import SEISMIC_META, SEISMIC_SELECTION, SEISMIC_TRAIN_TABLE, SEISMIC_TRUTH
from overseer.settings import load_settings
from overseer.tracking import log_artifacts, stage_run

# select_attributes params passed to the selector as they are (``seed`` becomes its random_state)
SELECTOR_PARAMS = (
    "max_clusters",
    "sem_iter",
    "cem_iter",
    "exhaustive_max_n",
    "beam_width",
    "variance_floor",
    "tolerance",
)


def main() -> None:
    from overseer.seismic.reporting import plot_best_vs_n, selection_metrics, selection_summary
    from overseer.seismic.selection import GMMAttributeSelector
    from overseer.splits import cap_per_class

    cfg, settings, meta = stage.load_params("select_attributes"), load_settings(), read_json(SEISMIC_META)
    truth = read_json(SEISMIC_TRUTH) if SEISMIC_TRUTH.exists() else None
    # a seeded subsample per facies bounds the cost; the GMMs need hundreds of points, not millions
    table = cap_per_class(pd.read_parquet(SEISMIC_TRAIN_TABLE), "facies", int(cfg["max_rows_per_facies"]), cfg["seed"])
    tags = settings.tags("n_jobs", "progress")  # run-time settings: the scores do not depend on them
    with stage_run("seismic", "select_attributes", inputs=[SEISMIC_TRAIN_TABLE], tags=tags) as mlflow:
        selector = GMMAttributeSelector(
            **{key: cfg[key] for key in SELECTOR_PARAMS}, random_state=int(cfg["seed"]),
            n_jobs=settings.n_jobs, progress=settings.progress, facies_names=meta["facies"],  # messages name facies
        ).fit(table[meta["attributes"]], table["facies"])  # fmt: skip
        summary = selection_summary(selector, truth)
        scores = selector.scores_.sort_values("score", ascending=False).to_csv(index=False)
        with atomic_dir(SEISMIC_SELECTION) as tmp:
            write_artifacts(tmp, {
                "selection.json": summary, "metrics.json": selection_metrics(summary),  # metrics: numbers only
                "scores.csv": scores, "best_vs_n.png": plot_best_vs_n(summary),
            })  # fmt: skip
        mlflow.log_metrics({"best_score": summary["best_score"], "n_selected": summary["n_selected"]})
        mlflow.set_tag("selected_attributes", ",".join(summary["best_combination"]))
        log_artifacts(mlflow, [SEISMIC_SELECTION], artifact_path="selection")
        print(f"selected {summary['best_combination']} (score {summary['best_score']:.3f}) of {meta['attributes']}")
        if "truth" in summary:
            print(f"truth check: {summary['truth']}")


if __name__ == "__main__":
    stage.run(main)
