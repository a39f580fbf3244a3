"""ingest@<family>: the family's prepared data, from the embedded default or the user's data."""

from __future__ import annotations

import sys

from overseer import stage
from overseer.io import write_json
from overseer.tracking import stage_run


def trackbed() -> None:
    from overseer.trackbed.data.ingest import ingest_trackbed

    cfg = stage.load_params("ingest", "trackbed")
    user_data = [p for p in (cfg["source"], cfg.get("eval_source")) if p and p != "default"]
    with stage_run("trackbed", "ingest@trackbed", inputs=user_data) as mlflow:
        report = ingest_trackbed(cfg, "data/prepared/trackbed")
        write_json("reports/trackbed/ingest.json", report)
        mlflow.log_metrics({f"records_{split}": info["records"] for split, info in report["splits"].items()})
        mlflow.log_artifact("reports/trackbed/ingest.json")


FAMILIES = {"trackbed": trackbed}

if __name__ == "__main__":
    stage.run(FAMILIES[sys.argv[1]])
