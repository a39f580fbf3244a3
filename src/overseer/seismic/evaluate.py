"""evaluate@rf: the shared report on held-out picks/wells, CV scores, importance and slice figures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from overseer.io import read_json
from overseer.metrics import ClassificationReport, classification_report
from overseer.seismic.data.volumes import load_volumes
from overseer.seismic.forest import summarise_cv
from overseer.seismic.model_io import load_model
from overseer.seismic.reporting import plot_cv, plot_importance, plot_slices


def row_ids(table: pd.DataFrame) -> list[str]:
    """Names of held-out rows for the false-inference listing: ``il/xl/s`` voxels or ``well@depth``."""
    if "well" in table:
        return (table["well"].astype(str) + "@" + table["depth"].astype(str)).tolist()
    return [f"il{a}/xl{b}/s{c}" for a, b, c in table[["inline", "crossline", "sample"]].itertuples(index=False)]


def holdout_report(
    model: Any, holdout: pd.DataFrame, features: Sequence[str], facies: Sequence[str]
) -> ClassificationReport:
    """The classification report of ``model`` on the held-out rows."""
    probs = model.predict_proba(holdout[list(features)].to_numpy(np.float32))
    predicted = np.asarray(model.classes_)[probs.argmax(axis=1)]
    return classification_report(holdout["facies"], predicted, facies, probs.max(axis=1), row_ids(holdout))


@dataclass
class ForestEvaluation:
    """The held-out report, the whole-volume agreement with the truth (synthetic survey only) and
    the other files of the evaluation folder by name (CV per tree count, importance, slices)."""

    report: ClassificationReport
    recovery: dict[str, float]
    artifacts: dict[str, Any] = field(default_factory=dict)


def evaluate_forest(prepared: Path, model_dir: Path, facies_dir: Path, cfg: Mapping[str, Any]) -> ForestEvaluation:
    """Score the trained forest on the held-out rows; tabulate CV per tree count, plot importance and
    slices through the predicted (and, when known, true) facies volume."""
    meta = read_json(prepared / "meta.json")
    config = read_json(model_dir / "config.json")
    holdout = pd.read_parquet(prepared / "holdout.parquet")  # never seen by selection, CV or fitting
    report = holdout_report(load_model(model_dir / "model.skops"), holdout, config["features"], meta["facies"])
    cv = summarise_cv(pd.read_csv(model_dir / "cv.csv"))
    artifacts: dict[str, Any] = {
        "cv_by_tree_count.csv": cv.to_csv(),
        "cv_by_tree_count.png": plot_cv(cv, config["cv_scheme"]),
        "importance.png": plot_importance(pd.Series(config["importance"])),
    }
    recovery: dict[str, float] = {}
    if meta["has_volumes"]:
        predicted = np.load(facies_dir / "facies.npy", mmap_mode="r")
        wanted = ["amplitude"] * meta["has_amplitude"] + ["true_facies"] * (meta["source"] == "synthetic")
        volumes, grid = load_volumes(prepared / "volumes", names=wanted)
        panels = {"predicted facies": predicted}
        if "true_facies" in volumes:
            true = np.asarray(volumes["true_facies"]).astype(np.int8)
            panels["true facies model"] = true
            whole = classification_report(true.ravel(), np.asarray(predicted).ravel(), meta["facies"])
            recovery = {"volume_accuracy": whole.accuracy, "volume_macro_f1": whole.macro["f1"]}
            artifacts["facies_model_recovery.json"] = recovery
        inline = (
            grid.shape[0] // 2
            if cfg["slice_inline"] is None
            else int(np.searchsorted(grid.inlines, cfg["slice_inline"]))
        )
        sample = grid.shape[2] // 2 if cfg["slice_sample"] is None else int(cfg["slice_sample"])
        artifacts["slices.png"] = plot_slices(
            volumes.get("amplitude"), panels, meta["facies"], inline, sample, str(grid.inlines[inline])
        )
    return ForestEvaluation(report, recovery, artifacts)
