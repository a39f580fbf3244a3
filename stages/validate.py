"""validate@<family>: Great Expectations suites on the prepared data; a failure stops the pipeline."""

from __future__ import annotations

import sys
from pathlib import Path

from overseer import stage
from overseer.tracking import log_artifacts, stage_run


def trackbed() -> None:
    from overseer.trackbed.data.tfrecord import list_tfrecords
    from overseer.validation.trackbed import validate_trackbed

    cfg = stage.load_params("validate", "trackbed")
    splits = {split: list_tfrecords(f"data/prepared/trackbed/{split}") for split in ("train", "eval")}
    report_dir = Path("reports/trackbed/validation")
    with stage_run("trackbed", "validate@trackbed", inputs=["data/prepared/trackbed"]) as mlflow:
        try:
            results = validate_trackbed(splits, int(cfg["min_per_class"]), report_dir)
        finally:
            log_artifacts(mlflow, [report_dir], artifact_path="validation")
        mlflow.log_metrics({"expectations_failed": sum(len(r.failures) for r in results)})


def seismic() -> None:
    from overseer.validation.seismic import validate_seismic

    cfg = stage.load_params("validate", "seismic")
    report_dir = Path("reports/seismic/validation")
    with stage_run("seismic", "validate@seismic", inputs=["data/prepared/seismic"]) as mlflow:
        try:
            results = validate_seismic(
                "data/prepared/seismic", int(cfg["min_per_facies"]), float(cfg["max_nonfinite_fraction"]), report_dir
            )
        finally:
            log_artifacts(mlflow, [report_dir], artifact_path="validation")
        mlflow.log_metrics({"expectations_failed": sum(len(r.failures) for r in results)})


def engraving() -> None:
    from overseer.validation.engraving import validate_engraving

    cfg = stage.load_params("validate", "engraving")
    report_dir = Path("reports/engraving/validation")
    with stage_run("engraving", "validate@engraving", inputs=["data/prepared/engraving"]) as mlflow:
        try:
            results = validate_engraving("data/prepared/engraving", cfg["min_pieces"], report_dir)
        finally:
            log_artifacts(mlflow, [report_dir], artifact_path="validation")
        mlflow.log_metrics({"expectations_failed": sum(len(r.failures) for r in results)})


FAMILIES = {"trackbed": trackbed, "seismic": seismic, "engraving": engraving}

if __name__ == "__main__":
    stage.run(FAMILIES[sys.argv[1]])
