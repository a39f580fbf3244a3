"""ingest@<family>: the family's prepared data, from the embedded default or the user's data."""

from __future__ import annotations

import sys

from overseer import stage
from overseer.io import split_run_time, write_json
from overseer.paths import ENGRAVING, SEISMIC, TRACKBED
from overseer.tracking import log_run_time, stage_run


def trackbed() -> None:
    from overseer.trackbed.data.ingest import ingest_trackbed

    cfg = stage.load_params("ingest", "trackbed")
    user_data = [p for p in (cfg["source"], cfg.get("eval_source")) if p and p != "default"]
    with stage_run("trackbed", "ingest@trackbed", inputs=user_data) as mlflow:
        report = ingest_trackbed(cfg, TRACKBED.prepared)
        write_json(TRACKBED.ingest_report, report)
        splits = report["splits"]
        mlflow.log_metrics({"n_train": splits["train"]["records"], "n_heldout": splits["eval"]["records"]})
        mlflow.log_artifact(str(TRACKBED.ingest_report))


def seismic() -> None:
    from overseer.seismic.data.ingest import ingest_seismic

    cfg = stage.load_params("ingest", "seismic")
    user_data = [cfg.get("amplitude"), cfg.get("picks"), cfg.get("well_logs"), *(cfg.get("volumes") or {}).values()]
    with stage_run("seismic", "ingest@seismic", inputs=[p for p in user_data if p]) as mlflow:
        report = ingest_seismic(cfg, SEISMIC.prepared)
        write_json(SEISMIC.ingest_report, report)
        rows = {split: sum(n.values()) for split, n in report["rows"].items()}
        mlflow.log_metrics({"n_train": rows["train"], "n_heldout": rows.get("holdout", 0)})
        mlflow.log_artifact(str(SEISMIC.ingest_report))


def engraving() -> None:
    from overseer.engraving.data.ingest import ingest_engraving
    from overseer.settings import load_settings

    cfg, settings = stage.load_params("ingest", "engraving"), load_settings()
    user_data = [p for p in (cfg.get("source"), cfg.get("test_source")) if p not in (None, "default")]
    with stage_run("engraving", "ingest@engraving", inputs=user_data, tags=settings.tags("cache_dir")) as mlflow:
        # the parse cache is a run-time setting, not a param: it changes no prepared byte
        report, run_time = split_run_time(
            ingest_engraving({**cfg, "cache_dir": settings.cache_dir}, ENGRAVING.prepared)
        )
        write_json(ENGRAVING.ingest_report, report)
        log_run_time(mlflow, "ingest@engraving", run_time)
        pieces = report["pieces"]
        mlflow.log_metrics(
            {
                "n_train": pieces["train"],
                "n_validation": pieces["validation"],
                "n_heldout": pieces["test"],
                "n_skipped": report["skipped"],
                "n_notes": sum(report["notes"].values()),
            }
        )
        mlflow.log_artifact(str(ENGRAVING.ingest_report))


FAMILIES = {"trackbed": trackbed, "seismic": seismic, "engraving": engraving}

if __name__ == "__main__":
    stage.run(FAMILIES[sys.argv[1]])
