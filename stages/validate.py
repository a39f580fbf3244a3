"""validate@<family>: Great Expectations suites on the prepared data; a failure stops the pipeline."""

from __future__ import annotations

import sys
from collections.abc import Callable

from overseer import stage
from overseer.paths import FAMILY_PATHS, TRACKBED
from overseer.tracking import log_artifacts, stage_run
from overseer.validation.core import ValidationReport, validate_and_report


def trackbed(cfg: dict) -> ValidationReport:
    from overseer.trackbed.data.tfrecord import list_tfrecords
    from overseer.validation.trackbed import validate_trackbed

    splits = {split: list_tfrecords(TRACKBED.prepared / split) for split in ("train", "eval")}
    return validate_trackbed(splits, int(cfg["min_per_class"]))


def seismic(cfg: dict) -> ValidationReport:
    from overseer.paths import SEISMIC
    from overseer.validation.seismic import validate_seismic

    return validate_seismic(SEISMIC.prepared, int(cfg["min_per_facies"]), float(cfg["max_nonfinite_fraction"]))


def engraving(cfg: dict) -> ValidationReport:
    from overseer.paths import ENGRAVING
    from overseer.validation.engraving import validate_engraving

    return validate_engraving(ENGRAVING.prepared, cfg["min_pieces"])


def main(family: str, validate: Callable[[dict], ValidationReport]) -> None:
    """Run the family's suites, write the report, log it, and fail the stage if any expectation failed."""
    cfg, paths = stage.load_params("validate", family), FAMILY_PATHS[family]
    with stage_run(family, f"validate@{family}", inputs=[paths.prepared]) as mlflow:
        report = validate(cfg)
        mlflow.log_metrics({"expectations_failed": report.n_failed})
        try:
            validate_and_report(report, paths.validation_report)
        finally:
            log_artifacts(mlflow, [paths.validation_report], artifact_path="validation")


FAMILIES = {"trackbed": trackbed, "seismic": seismic, "engraving": engraving}

if __name__ == "__main__":
    stage.run(main, sys.argv[1], FAMILIES[sys.argv[1]])
