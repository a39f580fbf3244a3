"""cv_cnn: how stable the best config is — train_cnn's head cross-validated across shards or source groups."""

from __future__ import annotations

import tempfile

from overseer import stage
from overseer.io import atomic_dir, write_artifacts
from overseer.paths import TRACKBED_CV_REPORT, TRACKBED_PROVENANCE, TRACKBED_TRAIN_FILES
from overseer.tracking import log_artifacts, log_run_time, stage_run


def main() -> None:
    from overseer.trackbed.cross_validation import cross_validate_trackbed
    from overseer.trackbed.data.tfrecord import list_tfrecords

    cfg, train_cfg = stage.load_params("cv_cnn"), stage.load_params("train_cnn")
    inputs = [TRACKBED_TRAIN_FILES, TRACKBED_PROVENANCE]
    with stage_run("trackbed", "cv_cnn", inputs=inputs) as mlflow, tempfile.TemporaryDirectory() as work:
        # the backbone embeds every training image once; each fold trains only the head on the others
        result = cross_validate_trackbed(
            train_cfg, list_tfrecords(TRACKBED_TRAIN_FILES), TRACKBED_PROVENANCE, work, int(cfg["folds"]),
            by=cfg["groups"], seed=int(cfg["seed"]),
        )  # fmt: skip
        with atomic_dir(TRACKBED_CV_REPORT) as tmp:
            write_artifacts(tmp, result.artifacts())
        mlflow.log_metrics(result.flat_metrics())
        mlflow.set_tag("cv_grouping", result.grouping.kind)
        log_run_time(mlflow, "cv_cnn", result.run_time)
        log_artifacts(mlflow, [TRACKBED_CV_REPORT], artifact_path="cv")
        macro = result.summary()["macro_f1"]
        print(
            f"cv_cnn: {cfg['folds']} folds by {result.grouping.kind}: macro-F1 {macro['mean']:.3f} ± {macro['std']:.3f}"
        )


if __name__ == "__main__":
    stage.run(main)
