"""select_attributes: GMM attribute selection (AASPI attribute_selection) on the training table."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from overseer import stage
from overseer.io import atomic_dir, write_json
from overseer.tracking import log_artifacts, stage_run

PREPARED = Path("data/prepared/seismic")
OUT = Path("reports/seismic/selection")


def main() -> None:
    from overseer.seismic.reporting import plot_best_vs_n, selection_summary
    from overseer.seismic.selection import GMMAttributeSelector

    cfg = stage.load_params("select_attributes")
    meta = json.loads((PREPARED / "meta.json").read_text())
    truth = json.loads((PREPARED / "truth.json").read_text()) if (PREPARED / "truth.json").exists() else None
    table = pd.read_parquet(PREPARED / "train.parquet")
    # a seeded subsample per facies bounds the cost; the GMMs need hundreds of points, not millions
    shuffled = table.sample(frac=1.0, random_state=int(cfg["seed"]))
    table = shuffled[shuffled.groupby("facies").cumcount() < int(cfg["max_rows_per_facies"])]
    with stage_run("seismic", "select_attributes", inputs=[PREPARED / "train.parquet"]) as mlflow:
        selector = GMMAttributeSelector(
            max_clusters=int(cfg["max_clusters"]),
            sem_iter=int(cfg["sem_iter"]),
            cem_iter=int(cfg["cem_iter"]),
            exhaustive_max_n=int(cfg["exhaustive_max_n"]),
            beam_width=int(cfg["beam_width"]),
            variance_floor=float(cfg["variance_floor"]),
            tolerance=float(cfg["tolerance"]),
            random_state=int(cfg["seed"]),
            n_jobs=-1,
        ).fit(table[meta["attributes"]], table["facies"])
        summary = selection_summary(selector, truth)
        with atomic_dir(OUT) as tmp:
            write_json(tmp / "selection.json", summary)
            selector.scores_.sort_values("score", ascending=False).to_csv(tmp / "scores.csv", index=False)
            plot_best_vs_n(summary, tmp / "best_vs_n.png")
        mlflow.log_metrics({"best_score": summary["best_score"], "n_selected": summary["n_selected"]})
        mlflow.set_tag("selected_attributes", ",".join(summary["best_combination"]))
        log_artifacts(mlflow, [OUT], artifact_path="selection")
        print(f"selected {summary['best_combination']} (score {summary['best_score']:.3f}) of {meta['attributes']}")
        if "truth" in summary:
            print(f"truth check: {summary['truth']}")


if __name__ == "__main__":
    stage.run(main)
