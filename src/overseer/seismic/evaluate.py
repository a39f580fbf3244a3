"""evaluate@rf: the shared report on held-out picks/wells, CV scores, importance and slice figures.

With nothing held out (``ingest.seismic.holdout.fraction: 0``: every well or pick trains) the
report is that of a cross-validation instead, never of predictions on the training rows: the
trained configuration (``config.json``: its features, best tree count and forest options) is refit
fold by fold through :func:`overseer.seismic.forest.cross_validate`, the project's one fold loop,
and the pooled out-of-fold predictions are scored. Well logs are grouped by well — each well held
out once, or ``WELL_FOLDS`` folds of wells when there are more; picks on volumes by the blocked
CV's inline × crossline blocks (``train_rf.block_size``, ``train_rf.folds``). ``metrics.json``
holds numbers only (what ``dvc metrics show`` and ``dvc exp show`` tabulate); ``evaluation.json``
beside it says which evaluation they are (``"evaluation"``) and, for a cross-validation, its folds
(``"cv"``).

Such a CV is slightly optimistic, and says so: what train_rf chose by CV on the same rows — the tree
count, the attributes (``features: validated | selected``), the ``auto`` well features and smoothing
window — is kept in every fold, not chosen again without the fold's wells (the report's
``evaluation`` names them, ``cv.chosen_on_all_rows`` lists their params). Choosing inside each fold
(nested CV: :func:`~overseer.seismic.well_choice.train_with_choice` per fold) costs about 36 forest
fits per fold instead of one (measured on 9 generated wells × 450 samples, 7 logs, default params,
one thread: 48 s per fold against 15 s for the whole CV), and the attribute selection would still
be made on all wells.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from overseer.errors import InputError
from overseer.io import read_json
from overseer.metrics import ClassificationReport, classification_report, probability_scores
from overseer.plots import plot_reliability
from overseer.seismic.data.volumes import load_volumes
from overseer.seismic.forest import (
    WELL_COLUMN,
    cross_validate,
    make_folds,
    resolve_config,
    summarise_cv,
    thread_limit,
    training_arrays,
)
from overseer.seismic.model_io import load_model
from overseer.seismic.reporting import plot_cv, plot_importance, plot_slices
from overseer.seismic.well_features import model_matrix, smooth_per_well

WELL_FOLDS = 10  # up to this many wells, each well is held out once; more wells: this many folds of wells
HELD_OUT = {"wells": "held-out wells", "picks": "held-out picks"}


def row_ids(table: pd.DataFrame) -> list[str]:
    """Names of held-out rows for the false-inference listing: ``il/xl/s`` voxels or ``well@depth``."""
    if "well" in table:
        return (table["well"].astype(str) + "@" + table["depth"].astype(str)).tolist()
    return [f"il{a}/xl{b}/s{c}" for a, b, c in table[["inline", "crossline", "sample"]].itertuples(index=False)]


def smoothed(table: pd.DataFrame, predicted: np.ndarray, config: Mapping[str, Any]) -> np.ndarray:
    """``predicted`` after the trained model's per-well mode filter (``config.json`` ``smooth``), as
    ``overseer predict seismic`` applies it; unchanged for picks or a window of 1."""
    window = int((config.get("smooth") or {}).get("window", 1))
    if window == 1 or WELL_COLUMN not in table:
        return predicted
    return smooth_per_well(table[WELL_COLUMN], table["depth"], predicted, window)


def holdout_report(
    model: Any,
    holdout: pd.DataFrame,
    features: Sequence[str],
    facies: Sequence[str],
    config: Mapping[str, Any] | None = None,
    probs: np.ndarray | None = None,
) -> ClassificationReport:
    """The classification report of ``model`` on the held-out rows (input built as in training, then
    the trained smoothing of ``config``); ``probs``: the model's probabilities of those rows, if known."""
    probs = model.predict_proba(model_matrix(holdout, list(features))) if probs is None else probs
    predicted = smoothed(holdout, np.asarray(model.classes_)[probs.argmax(axis=1)], config or {})
    return classification_report(holdout["facies"], predicted, facies, probs.max(axis=1), row_ids(holdout))


@dataclass
class ForestEvaluation:
    """The report (held-out rows, or with nothing held out the pooled out-of-fold predictions), the
    whole-volume agreement with the truth (synthetic survey only) and the other files of the
    evaluation folder by name (CV per tree count, importance, slices, the folds of a CV report)."""

    report: ClassificationReport
    recovery: dict[str, float]
    artifacts: dict[str, Any] = field(default_factory=dict)
    evaluation: str = HELD_OUT["picks"]  # what the report scores, in words (evaluation.json "evaluation")
    cv: dict[str, Any] | None = None  # how the folds of a cross-validated report were made
    probabilities: dict[str, float] | None = None  # log-loss, Brier, ECE on held-out rows (none for a CV report)

    def metrics(self) -> dict[str, Any]:
        """``metrics.json``, numbers only: the report's summary and the probabilities' scores."""
        extra = {"probabilities": self.probabilities} if self.probabilities else {}
        return {**self.report.summary(), **extra}

    def described(self) -> dict[str, Any]:
        """``evaluation.json``, beside ``metrics.json``: what was evaluated, in words, and the folds of a
        cross-validation (kept out of the metrics file, which DVC tabulates)."""
        return {"evaluation": self.evaluation, **({"cv": self.cv} if self.cv else {})}

    def summary_files(self) -> dict[str, dict[str, Any]]:
        """The evaluation folder's summaries by file name: ``metrics.json`` (numbers) and ``evaluation.json``."""
        return {"metrics.json": self.metrics(), "evaluation.json": self.described()}


@dataclass
class CrossValidatedReport:
    """What :func:`cross_validated_report` returns."""

    report: ClassificationReport  # pooled out-of-fold predictions, one item per training row
    evaluation: str  # e.g. "leave-wells-out CV (no held-out wells: holdout.fraction 0)"
    cv: dict[str, Any]  # grouped_by, groups, folds, one_group_per_fold, n_estimators, seed, chosen_on_all_rows
    folds: pd.DataFrame  # one row per fold: fold, held_out (wells, or a count of blocks), n_train, n_test


def usable_folds(
    y: np.ndarray, groups: np.ndarray, wanted: int, seed: int | None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The blocked folds (:func:`~overseer.seismic.forest.make_folds`, the ones ``cross_validate``
    makes from the same arguments) with the most folds up to ``wanted`` in which every fold tests
    some rows: with hardly more groups than folds StratifiedGroupKFold can leave a fold empty."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cross_validate warns about its folds once, when it makes them
        for folds in range(int(wanted), 1, -1):
            splits = make_folds(y, groups, folds, "blocked", seed)
            if all(test.size for _, test in splits):
                return splits
    raise InputError(f"no grouping of the {np.unique(groups).size} wells/blocks into 2 or more non-empty folds")


def cross_validated_report(
    train: pd.DataFrame,
    config: Mapping[str, Any],
    facies: Sequence[str],
    *,
    fraction: float = 0.0,
    n_jobs: int | None = None,
) -> CrossValidatedReport:
    """The shared report of the trained configuration cross-validated on the training rows, for
    when nothing was held out: never predictions on rows a model trained on.

    ``config`` is train_rf's ``config.json`` (its ``train_rf`` params, ``features`` and
    ``best_n_estimators``); the folds are grouped by well for well logs (each well held out once,
    or ``WELL_FOLDS`` folds of wells when there are more) and by the blocked CV's inline ×
    crossline blocks for picks (``train_rf.folds`` folds), whatever ``cv_scheme`` trained. Every
    training row is predicted once, by the fold that held its group out; facies are passed to the
    fold loop by name, so its warnings and errors name them. An item's confidence is the fold
    model's probability of the facies it predicted (before smoothing). The well features and window
    are the trained ones (``config.json`` ``well_features``/``smooth``: train_rf's ``auto`` choice
    included, made on all the training wells). ``fraction`` (``holdout.fraction``) labels it; the label
    names what was chosen on all the rows (:func:`chosen_on_all_rows`: the CV is slightly optimistic).
    """
    best = int(config["best_n_estimators"])  # trees (or boosting iterations): the trained size only
    options = {"n_jobs": n_jobs} if n_jobs is not None else {}
    chosen = {k: config[k] for k in ("well_features", "smooth") if k in config}  # auto resolved at training
    conf = resolve_config({**config["train_rf"], **chosen, "tree_counts": [best], "cv_scheme": "blocked", **options})
    if "hgb" in conf:  # gradient boosting's size is its max_iter
        conf["hgb"] = {**conf["hgb"], "max_iter": [best]}
    x, ids, groups, inputs = training_arrays(train, [str(name) for name in config["features"]], conf)
    numeric = [c for c in inputs if pd.api.types.is_numeric_dtype(train[c])]  # the rows training_arrays kept
    kept = train.loc[np.isfinite(train[numeric].to_numpy(np.float64)).all(axis=1)]
    by_well = not {"inline", "crossline"} <= set(train.columns)  # as spatial_groups groups the rows
    grouped_by = "well" if by_well else f"{conf['block_size']}×{conf['block_size']} inline × crossline block"
    names = np.asarray(facies)[ids.astype(np.int64)]
    splits = usable_folds(
        names, groups, _fold_count(names, groups, WELL_FOLDS if by_well else conf["folds"]), conf["seed"]
    )
    result = cross_validate(x, names, groups, {**conf, "folds": len(splits)}, inputs=inputs)
    if result.table["n_test"].tolist() != [test.size for _, test in splits]:  # the fold listing is what was scored
        raise RuntimeError("cross_validate made other folds than make_folds with the same arguments")
    to_id = np.array([list(facies).index(name) for name in result.classes])
    predicted = smoothed(kept, to_id[result.oof[best]], config)
    confidence = result.proba[best].max(axis=1)  # out-of-fold probability of the predicted facies
    report = classification_report(ids, predicted, facies, confidence, row_ids(kept))
    n_groups = int(np.unique(groups).size)
    cv = {
        "grouped_by": grouped_by,
        "groups": n_groups,
        "folds": len(splits),
        "one_group_per_fold": len(splits) == n_groups,
        "n_estimators": best,
        "seed": conf["seed"],
        "chosen_on_all_rows": list(chosen := chosen_on_all_rows(config)),
    }
    label = "leave-wells-out CV (no held-out wells" if by_well else "blocked CV (no held-out picks"
    where = "wells" if by_well else "picks"
    note = f"; {', '.join(chosen.values())} chosen on all {where}: slightly optimistic" if chosen else ""
    evaluation = f"{label}: holdout.fraction {fraction:g}{note})"
    return CrossValidatedReport(report, evaluation, cv, _fold_table(splits, groups, by_well))


def chosen_on_all_rows(config: Mapping[str, Any]) -> dict[str, str]:
    """What train_rf chose by CV on all its training rows and a cross-validated report keeps in every
    fold (params key -> words): the tree count (boosting iterations) when there were candidates, the
    attributes (``features: validated | selected``), the ``auto`` well features and smoothing window
    (``config.json`` ``well_choice``, well logs only)."""
    out: dict[str, str] = {}
    if len(config.get("cv") or {}) > 1:  # CV scores per candidate size
        hgb = config.get("estimator") == "hist_gradient_boosting"
        out["hgb.max_iter" if hgb else "tree_counts"] = "boosting iterations" if hgb else "tree count"
    if (config.get("train_rf") or {}).get("features") in ("validated", "selected"):
        out["features"] = "attributes"
    steps = config.get("well_choice") or {}
    out.update({"well_features": "well features"} if "well_features" in steps else {})
    out.update({"smooth.window": "smoothing window"} if "smooth" in steps else {})
    return out


def _fold_count(names: np.ndarray, groups: np.ndarray, most: int) -> int:
    """``most`` folds, or fewer when there are fewer groups or a facies has fewer rows; at least 2."""
    facies, rows = np.unique(names, return_counts=True)
    n_groups = int(np.unique(groups).size)
    folds = min(int(most), n_groups, int(rows.min()))
    if folds < 2:
        per_facies = dict(zip(map(str, facies), map(int, rows), strict=True))
        raise InputError(
            "nothing is held out (holdout.fraction 0) and the training rows cannot be cross-validated instead: "
            f"{n_groups} well(s) or block(s), rows per facies {per_facies}; "
            "hold out some wells or blocks (ingest.seismic.holdout) or add data"
        )
    return folds


def _fold_table(splits: Sequence[tuple[np.ndarray, np.ndarray]], groups: np.ndarray, by_well: bool) -> pd.DataFrame:
    """One row per fold: the wells it holds out (or how many blocks), its training and test rows."""
    labels = groups.astype(str)
    rows = []
    for fold, (train_rows, test) in enumerate(splits):
        held = sorted(set(labels[test]))
        rows.append(
            {
                "fold": fold,
                "held_out": "; ".join(held) if by_well else f"{len(held)} blocks",
                "n_train": int(train_rows.size),
                "n_test": int(test.size),
            }
        )
    return pd.DataFrame(rows)


def evaluate_forest(
    prepared: Path, model_dir: Path, facies_dir: Path, cfg: Mapping[str, Any], n_jobs: int | None = None
) -> ForestEvaluation:
    """Score the trained forest on the held-out rows — or, when nothing is held out, cross-validate
    its configuration over wells or blocks (:func:`cross_validated_report`); tabulate CV per tree
    count, plot importance and slices through the predicted (and, when known, true) facies volume.
    ``n_jobs``: the forest threads of such a cross-validation (and the OpenMP threads of the held-out
    prediction)."""
    meta = read_json(prepared / "meta.json")
    config = read_json(model_dir / "config.json")
    holdout = pd.read_parquet(prepared / "holdout.parquet")  # never seen by selection, CV or fitting
    cv = summarise_cv(pd.read_csv(model_dir / "cv.csv"))
    artifacts: dict[str, Any] = {
        "cv_by_tree_count.csv": cv.to_csv(),
        "cv_by_tree_count.png": plot_cv(cv, config["cv_scheme"]),
        "importance.png": plot_importance(pd.Series(config["importance"])),
    }
    if holdout.empty:  # holdout.fraction 0: every well/pick trained, so cross-validate instead
        fraction = float((meta.get("holdout") or {}).get("fraction", 0.0))
        train = pd.read_parquet(prepared / "train.parquet")
        scored = cross_validated_report(train, config, meta["facies"], fraction=fraction, n_jobs=n_jobs)
        report, label, folds = scored.report, scored.evaluation, scored.cv
        artifacts["cv_folds.csv"] = scored.folds.to_csv(index=False)
    else:
        model = load_model(model_dir / "model.skops")
        with thread_limit(n_jobs):  # HistGradientBoosting's OpenMP threads follow n_jobs too
            probs = model.predict_proba(model_matrix(holdout, list(config["features"])))  # once, for both reports
        report, folds = holdout_report(model, holdout, config["features"], meta["facies"], config, probs), None
        label = HELD_OUT["wells" if WELL_COLUMN in holdout.columns else "picks"]
        probabilities = holdout_probability_scores(model.classes_, probs, holdout, len(meta["facies"]))
        artifacts["reliability.png"] = plot_reliability(
            probabilities.reliability, "forest: reliability of the most likely facies"
        )
        artifacts["reliability.csv"] = probabilities.reliability.to_csv(index=False)
    recovery = _volume_figures(prepared, facies_dir, meta, cfg, artifacts) if meta["has_volumes"] else {}
    scores = None if holdout.empty else probabilities.summary()
    return ForestEvaluation(report, recovery, artifacts, evaluation=label, cv=folds, probabilities=scores)


def holdout_probability_scores(classes: Any, probs: np.ndarray, holdout: pd.DataFrame, n_facies: int) -> Any:
    """Log-loss, Brier score and calibration (:func:`overseer.metrics.probability_scores`) of the model's
    probabilities ``probs`` (columns: facies ids ``classes``) on the held-out rows, before any smoothing
    (what evaluate@gtm sets beside its own)."""
    full = np.zeros((len(holdout), n_facies))
    full[:, np.asarray(classes, dtype=np.int64)] = probs
    return probability_scores(holdout["facies"].to_numpy(dtype=np.int64), full)


def _volume_figures(
    prepared: Path, facies_dir: Path, meta: Mapping[str, Any], cfg: Mapping[str, Any], artifacts: dict[str, Any]
) -> dict[str, float]:
    """Add the slice figure (and, for the synthetic survey, the truth recovery) to ``artifacts``;
    return the recovery (empty without a true facies model)."""
    recovery: dict[str, float] = {}
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
        grid.shape[0] // 2 if cfg["slice_inline"] is None else int(np.searchsorted(grid.inlines, cfg["slice_inline"]))
    )
    sample = grid.shape[2] // 2 if cfg["slice_sample"] is None else int(cfg["slice_sample"])
    artifacts["slices.png"] = plot_slices(
        volumes.get("amplitude"), panels, meta["facies"], inline, sample, str(grid.inlines[inline])
    )
    return recovery
