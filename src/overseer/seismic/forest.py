"""Random-forest facies classification (AASPI rfc3d): cross-validated tree count, Gini importance.

rfc3d trains a random forest of CART trees (Gini impurity, eq. 1; the forest averages its trees,
eq. 2) on picked or well-log facies and a set of attributes, tests three candidate tree counts
with five-fold cross-validation, refits the best one on all training data and prints the
normalised Gini importance of every attribute (eqs. 3-4). This module does the same with
scikit-learn, plus what the notes leave out:

* Two fold schemes. ``"random"`` (StratifiedKFold) is what rfc3d does; neighbouring voxels are
  strongly correlated, so a random fold tests on near-copies of its training voxels and overstates
  skill. ``"blocked"`` (StratifiedGroupKFold) keeps every inline × crossline block (or every
  well, for well-log tables) wholly in one fold. The scheme is recorded in every CV row.
* Class weights for imbalanced facies (``"balanced"``: n_samples / (n_classes · count)).
* The score is the shared :mod:`overseer.metrics` report; the best tree count is the one with the
  highest mean macro-F1 (ties go to the fewer trees), not accuracy, because accuracy rewards
  predicting the dominant facies everywhere.
* Well logs only (``well_features``): the logs of the ±k neighbouring samples and each log's depth
  gradient, per well (:class:`overseer.seismic.well_features.WellSequenceFeatures`), as the first
  step of the saved pipeline, whose input is then ``well``, ``depth`` and the logs.
* ``estimator: hist_gradient_boosting``: scikit-learn's ``HistGradientBoostingClassifier`` (its
  options in ``hgb``) instead of the forest. Its candidate ``hgb.max_iter`` values are
  cross-validated as the forest's tree counts are (one warm-started model per fold grows through
  them; without early stopping or subsampling that is the same as a fresh fit of each), and the
  CV rows' ``n_estimators`` is then the number of boosting iterations. Its importance is the
  normalised total split gain per attribute (the analogue of eq. 3 for boosted trees). HGB runs on
  OpenMP threads, not joblib's: every fit and prediction here runs under ``threadpool_limits`` of
  ``n_jobs`` (:func:`thread_limit`), so the project's thread setting holds for both estimators.
* One definition of "CV macro-F1" (:meth:`ForestResult.summary` ``cv_macro_f1``, MLflow
  ``val_macro_f1``): the mean over folds of each fold's macro-F1 at the chosen size, the number the
  tree count (and the feature/well-feature choices) are chosen by and whose fold-to-fold spread gives
  the tie rule its standard error. ``cv_pooled_macro_f1`` is another statistic, named so: one
  macro-F1 of all out-of-fold predictions together (it differs when folds differ in size or mix).
* Out-of-fold class probabilities (``CrossValidation.proba``), so that CV reports carry a confidence.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.class_weight import compute_class_weight
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from overseer.errors import InputError
from overseer.metrics import ClassificationReport, classification_report
from overseer.seismic.well_features import (
    KEY_COLUMNS,
    SMOOTH_DEFAULTS,
    WELL_FEATURE_DEFAULTS,
    WellSequenceFeatures,
    check_window,
    encoded_columns,
    is_auto,
    model_inputs,
    model_matrix,
    well_features_enabled,
)

log = logging.getLogger(__name__)

FACIES_COLUMN = "facies"
WELL_COLUMN = "well"
# Columns of a training table that are never attributes (coordinates, labels, well names).
NON_FEATURE_COLUMNS = frozenset({"inline", "crossline", "sample", "depth", "x", "y", "z", "well", "facies"})
SCHEMES = ("blocked", "random")
CLASS_WEIGHTS = ("balanced", "balanced_subsample", None)
ESTIMATORS = ("random_forest", "hist_gradient_boosting")
# HistGradientBoostingClassifier's options (train_rf.hgb); max_iter: the candidates CV chooses from
HGB_DEFAULTS: dict[str, Any] = {
    "max_iter": [100, 200],
    "learning_rate": 0.1,
    "max_leaf_nodes": 31,
    "l2_regularization": 0.0,
}
DEFAULTS: dict[str, Any] = {
    "tree_counts": [50, 100, 200],
    "max_depth": 12,
    "folds": 5,
    "cv_scheme": "blocked",
    "block_size": 8,
    "normalise": True,
    "class_weight": "balanced",
    "max_features": "sqrt",  # attributes tried per split (scikit-learn's default for classifiers)
    "min_samples_leaf": 1,
    "seed": 0,
    "estimator": "random_forest",  # | "hist_gradient_boosting" (options in "hgb")
    "hgb": HGB_DEFAULTS,
    "well_features": WELL_FEATURE_DEFAULTS,  # well logs only: neighbours ±k and depth gradients per well
    "smooth": SMOOTH_DEFAULTS,  # post-hoc running mode filter per well (window 1: off); applied by predict
}
# well_features / smooth values "auto" (train_rf's leave-wells-out choice, overseer.seismic.well_choice)
# are resolved before training; resolve_config reads any left as the off value of DEFAULTS
NESTED = ("hgb", "well_features", "smooth")
# how a run goes, not what it learns: accepted in a config, never recorded in the model it trains
# (the stage takes it from overseer.settings, not from params)
RUN_OPTIONS: dict[str, Any] = {
    "n_jobs": 2,  # forest threads in cross-validation and the final fit; -1: all cores
}
# scikit-learn's note on "balanced" class weights with warm_start; moot here: a fold's forest grows on the same rows
_WARM_START_NOTE = ".*not recommended for warm_start.*"
CV_COLUMNS = [
    "scheme",
    "n_estimators",
    "fold",
    "n_train",
    "n_test",
    "accuracy",
    "macro_f1",
    "accuracy_mean",
    "accuracy_std",
    "macro_f1_mean",
    "macro_f1_std",
]


def build_pipeline(
    n_estimators: int,
    max_depth: int | None = None,
    normalise: bool = True,
    class_weight: str | None = "balanced",
    random_state: int | None = 0,
    n_jobs: int | None = 1,
    *,
    max_features: str | float | int | None = "sqrt",
    min_samples_leaf: int = 1,
    estimator: str = "random_forest",
    hgb: Mapping[str, Any] | None = None,
    well_features: Mapping[str, Any] | None = None,
    passthrough: Sequence[int] = (),
) -> Pipeline:
    """[``WellSequenceFeatures``] + ``StandardScaler`` (when ``normalise``, rfc3d's "Normalize attribute")
    + ``RandomForestClassifier`` (or ``HistGradientBoostingClassifier``).

    The forest's trees split on Gini impurity (eq. 1) and vote by averaged class probability (eq. 2).
    With ``estimator="hist_gradient_boosting"`` the classifier is scikit-learn's histogram gradient
    boosting with ``hgb``'s options (``HGB_DEFAULTS``), ``n_estimators`` boosting iterations
    (``max_iter``), no early stopping (so the result does not depend on a random validation split);
    ``max_depth``, ``max_features``, ``min_samples_leaf`` and ``n_jobs`` are the forest's and unused,
    and ``"balanced_subsample"`` weights as ``"balanced"`` (its expected weights). When
    ``well_features`` adds anything (:func:`~overseer.seismic.well_features.well_features_enabled`)
    the pipeline's input is ``well`` (codes), ``depth`` and the logs, and its first step, named
    ``"well_features"``, adds the neighbours and gradients and drops ``well`` and ``depth``;
    ``passthrough`` (input positions of encoded columns, :func:`~overseer.seismic.well_features.encoded_columns`)
    get neither.
    The classifier step is always named ``"forest"`` (the last); the scaler, when present, ``"scale"``.
    """
    if class_weight not in CLASS_WEIGHTS:
        raise InputError(f"class_weight must be one of {list(CLASS_WEIGHTS)}, got {class_weight!r}")
    if estimator not in ESTIMATORS:
        raise InputError(f"train_rf.estimator must be one of {list(ESTIMATORS)}, got {estimator!r}")
    if estimator == "random_forest":
        model: Any = RandomForestClassifier(
            n_estimators=int(n_estimators),
            criterion="gini",
            max_depth=None if max_depth is None else int(max_depth),
            class_weight=class_weight,
            max_features=max_features,
            min_samples_leaf=int(min_samples_leaf),
            random_state=random_state,
            n_jobs=n_jobs,
        )
    else:
        options = {**HGB_DEFAULTS, **(hgb or {})}
        model = HistGradientBoostingClassifier(
            max_iter=int(n_estimators),
            learning_rate=float(options["learning_rate"]),
            max_leaf_nodes=None if options["max_leaf_nodes"] is None else int(options["max_leaf_nodes"]),
            l2_regularization=float(options["l2_regularization"]),
            class_weight=None if class_weight is None else "balanced",
            early_stopping=False,
            random_state=random_state,
        )
    steps: list[tuple[str, Any]] = []
    if well_features_enabled(well_features):
        options = {**WELL_FEATURE_DEFAULTS, **(well_features or {})}
        step = WellSequenceFeatures(
            int(options["neighbours"]), bool(options["gradients"]), passthrough=tuple(int(j) for j in passthrough)
        )
        steps.append(("well_features", step))
    steps += [("scale", StandardScaler())] if normalise else []
    return Pipeline([*steps, ("forest", model)])


def size_param(conf: Mapping[str, Any]) -> str:
    """The classifier's size parameter that CV chooses: ``n_estimators`` (forest) or ``max_iter`` (HGB)."""
    return "max_iter" if conf["estimator"] == "hist_gradient_boosting" else "n_estimators"


def size_candidates(conf: Mapping[str, Any]) -> list[int]:
    """The sizes CV compares, increasing: ``tree_counts`` (forest) or ``hgb.max_iter`` (HGB)."""
    key, values = ("hgb.max_iter", conf["hgb"]["max_iter"]) if size_param(conf) == "max_iter" else (
        "tree_counts", conf["tree_counts"])  # fmt: skip
    values = [values] if isinstance(values, int | np.integer) else list(values)
    counts = sorted({int(n) for n in values})
    if not counts or counts[0] < 1:
        raise InputError(f"{key} must be positive integers, got {values}")
    return counts


def pipeline_for(
    conf: Mapping[str, Any], size: int, n_jobs: int | None, inputs: Sequence[str] | None = None
) -> Pipeline:
    """:func:`build_pipeline` of a checked config (:func:`resolve_config`) with ``size`` trees/iterations;
    ``inputs``: the pipeline's input column names (:func:`training_arrays`), whose encoded columns the
    well features pass through (None: every column but well and depth is a log)."""
    return build_pipeline(
        size, conf["max_depth"], conf["normalise"], conf["class_weight"], conf["seed"], n_jobs,
        **forest_options(conf), estimator=conf["estimator"], hgb=conf["hgb"], well_features=conf["well_features"],
        passthrough=encoded_columns(inputs) if inputs is not None else (),
    )  # fmt: skip


@contextmanager
def thread_limit(n_jobs: int | None) -> Iterator[None]:
    """OpenMP threads capped at ``n_jobs`` (the project's thread setting) while inside: scikit-learn's
    ``HistGradientBoostingClassifier`` takes its threads from OpenMP, not from an ``n_jobs``
    (scikit-learn user guide, "Parallelism": ``threadpoolctl``). None or a value below 1 (-1: all
    cores): no cap."""
    if n_jobs is None or int(n_jobs) < 1:
        yield
        return
    with threadpool_limits(limits=int(n_jobs), user_api="openmp"):
        yield


def spatial_groups(table: pd.DataFrame, block_size: int, coords: Sequence[str] = ("inline", "crossline")) -> np.ndarray:
    """CV group of every row: voxels in the same ``block_size`` × ``block_size`` coordinate block share one.

    Blocks are aligned to coordinate 0 (block = floor(coordinate / block_size) per axis), so a
    voxel's block does not depend on which other voxels were picked; groups are numbered 0..G-1 in
    lexicographic block order. A well-log table (no ``coords`` columns but a ``well`` column) is
    grouped by well: the well names are the groups.
    """
    if all(c in table.columns for c in coords):
        if int(block_size) < 1:
            raise InputError(f"block_size must be a positive number of inlines/crosslines, got {block_size}")
        values = table[list(coords)].to_numpy(dtype=np.float64)
        if not np.isfinite(values).all():
            bad = int(np.flatnonzero(~np.isfinite(values).all(axis=1))[0])
            raise InputError(f"coordinates {list(coords)} must be finite", record=bad)
        blocks = np.floor_divide(values, int(block_size)).astype(np.int64)
        _, groups = np.unique(blocks, axis=0, return_inverse=True)
        return groups.reshape(-1).astype(np.int64)
    if WELL_COLUMN in table.columns:
        return table[WELL_COLUMN].astype(str).to_numpy()
    raise InputError(
        f"blocked cross-validation needs coordinate columns {list(coords)} (seismic picks) or a "
        f"'{WELL_COLUMN}' column (well logs); the table has {list(table.columns)}"
    )


def _check_fold_counts(y: np.ndarray, groups: np.ndarray | None, folds: int, scheme: str) -> None:
    """Every facies needs at least ``folds`` samples; with blocked folds the table needs ``folds`` groups."""
    classes, counts = np.unique(y, return_counts=True)
    short = {c.item() if hasattr(c, "item") else c: int(n) for c, n in zip(classes, counts, strict=True) if n < folds}
    if short:
        raise InputError(
            f"{folds}-fold cross-validation needs at least {folds} samples of every facies; "
            f"too few for facies {short} (facies: samples). Pick more voxels of these facies, drop them, "
            "or lower 'folds'"
        )
    if scheme == "blocked":
        n_groups = np.unique(groups).size
        if n_groups < folds:
            raise InputError(
                f"blocked {folds}-fold cross-validation needs at least {folds} spatial blocks or wells, "
                f"the table has {n_groups}; lower 'block_size' or 'folds', or use cv_scheme 'random'"
            )
        for c in classes:
            in_groups = np.unique(groups[y == c]).size
            if in_groups < folds:
                warnings.warn(
                    f"facies {c} occurs in only {in_groups} spatial blocks/wells; with {folds} blocked folds "
                    "some folds cannot test it and a fold may train without it, which lowers its CV scores",
                    stacklevel=3,
                )


def make_folds(
    y: np.ndarray, groups: np.ndarray | None, folds: int, scheme: str, random_state: int | None = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) index pairs: StratifiedGroupKFold for ``"blocked"`` (no group is split), else StratifiedKFold."""
    if scheme not in SCHEMES:
        raise InputError(f"cv_scheme must be one of {list(SCHEMES)}, got {scheme!r}")
    if int(folds) < 2:
        raise InputError(f"folds must be at least 2, got {folds}")
    y = np.asarray(y)
    if scheme == "blocked":
        if groups is None:
            raise InputError("blocked cross-validation needs groups (spatial blocks or well names)")
        groups = np.asarray(groups)
        if groups.shape[0] != y.shape[0]:
            raise InputError(f"groups has {groups.shape[0]} entries but there are {y.shape[0]} samples")
    _check_fold_counts(y, groups, int(folds), scheme)
    if scheme == "blocked":
        splitter = StratifiedGroupKFold(n_splits=int(folds), shuffle=True, random_state=random_state)
        return list(splitter.split(np.zeros(y.shape[0]), y, groups))
    splitter = StratifiedKFold(n_splits=int(folds), shuffle=True, random_state=random_state)
    return list(splitter.split(np.zeros(y.shape[0]), y))


class CrossValidation(NamedTuple):
    """What :func:`cross_validate` returns."""

    table: pd.DataFrame  # CV_COLUMNS, one row per tree count and fold
    oof: dict[int, np.ndarray]  # tree count -> out-of-fold class codes (indices into ``classes``)
    classes: np.ndarray  # the sorted facies labels
    proba: dict[int, np.ndarray]  # tree count -> out-of-fold probabilities, rows × classes (0 for a facies
    # a fold did not train on); ``oof`` is their argmax, as the estimators' ``predict``
    fold: np.ndarray  # the fold that tested each row


FoldCallback = Callable[[int, pd.DataFrame], None]


def cross_validate(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray | None,
    conf: Mapping[str, Any],
    *,
    on_fold: FoldCallback | None = None,
    inputs: Sequence[str] | None = None,
    splits: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
) -> CrossValidation:
    """rfc3d's cross-validation of every tree count, fold by fold: the one fold loop of training and tuning.

    ``conf`` holds the keys of ``DEFAULTS`` (a checked config, :func:`resolve_config`); the sizes
    compared are :func:`size_candidates` (tree counts, or HGB's ``max_iter`` values, reported in the
    ``n_estimators`` column and as ``oof`` keys). ``x`` is float32 attributes, or, with
    ``well_features``, :func:`~overseer.seismic.well_features.model_matrix`'s well codes, depth and
    logs (folds must then keep wells whole: blocked). After each fold, ``on_fold(fold, rows)`` gets
    that fold's rows (columns ``scheme`` … ``macro_f1`` of ``CV_COLUMNS``, one per tree count in
    increasing order); an exception it raises (a pruned tuning trial) ends the cross-validation and
    propagates. ``inputs``: ``x``'s column names (:func:`pipeline_for`); ``splits``: (train, test)
    index pairs to use instead of :func:`make_folds`' (every row tested once). Each fold's model
    predicts its test rows' probabilities once; the predicted class is their argmax (what the
    estimators' ``predict`` returns). Fits and predictions run under :func:`thread_limit`.
    """
    scheme, random_state = conf["cv_scheme"], conf["seed"]
    counts, size = size_candidates(conf), size_param(conf)
    x = np.asarray(x) if well_features_enabled(conf["well_features"]) else np.asarray(x, dtype=np.float32)
    y = np.asarray(y)
    classes, codes = np.unique(y, return_inverse=True)
    names = [str(c) for c in classes]
    if splits is None:
        splits = make_folds(y, groups, conf["folds"], scheme, random_state)  # facies ids, so errors name them
    oof = {n: np.full(codes.shape[0], -1, dtype=np.int64) for n in counts}
    proba = {n: np.zeros((codes.shape[0], classes.size)) for n in counts}
    tested = np.full(codes.shape[0], -1, dtype=np.int64)
    rows = []
    what = "rfc3d" if size == "n_estimators" else "hgb"
    bar = tqdm(total=len(splits) * len(counts), desc=f"{what} {scheme} CV", unit="fit", leave=False)
    with bar, thread_limit(conf["n_jobs"]):
        for fold, (train, test) in enumerate(splits):
            tested[test] = fold
            # One warm-started forest per fold grows through the tree counts in increasing order: with
            # an integer random_state scikit-learn draws the same trees as a fresh fit of each count
            # (it skips the seeds of the trees already grown), so 50/100/200 costs 200 trees, not 350.
            # (HGB likewise grows through its max_iter candidates: without early stopping or
            # subsampling a warm-started fit adds the iterations a fresh fit would make.)
            model = pipeline_for(conf, counts[0], conf["n_jobs"], inputs)
            model.set_params(forest__warm_start=True)
            fold_rows = []
            for n in counts:
                model.set_params(**{f"forest__{size}": n})
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message=_WARM_START_NOTE, category=UserWarning)
                    model.fit(x[train], codes[train])
                fold_proba = model.predict_proba(x[test])
                proba[n][np.ix_(test, model.classes_)] = fold_proba
                pred = model.classes_[fold_proba.argmax(axis=1)]
                oof[n][test] = pred
                report = classification_report(codes[test], pred, names)
                fold_rows.append(
                    {
                        "scheme": scheme,
                        "n_estimators": n,
                        "fold": fold,
                        "n_train": int(train.size),
                        "n_test": int(test.size),
                        "accuracy": report.accuracy,
                        "macro_f1": report.macro["f1"],
                    }
                )
                bar.update()
            rows.extend(fold_rows)
            if on_fold is not None:
                on_fold(fold, pd.DataFrame(fold_rows))
    table = pd.DataFrame(rows)
    # Summary per tree count on every row; std over folds with ddof=0, as scikit-learn's cv_results_.
    by_count = table.groupby("n_estimators")
    for metric in ("accuracy", "macro_f1"):
        table[f"{metric}_mean"] = by_count[metric].transform("mean")
        table[f"{metric}_std"] = by_count[metric].transform(lambda s: float(np.std(s.to_numpy())))
    table = table.sort_values(["n_estimators", "fold"], kind="stable").reset_index(drop=True)
    return CrossValidation(table[CV_COLUMNS], oof, classes, proba, tested)


def cross_validate_tree_counts(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray | None = None,
    tree_counts: Sequence[int] = (50, 100, 200),
    folds: int = 5,
    scheme: str = "blocked",
    max_depth: int | None = None,
    normalise: bool = True,
    class_weight: str | None = "balanced",
    random_state: int | None = 0,
    n_jobs: int | None = 1,
) -> pd.DataFrame:
    """rfc3d's ``folds``-fold cross-validation of each candidate tree count.

    One row per tree count and fold (columns ``CV_COLUMNS``): the fold scheme, the tree count,
    the fold, train/test sizes, accuracy and macro-F1 from :func:`overseer.metrics.classification_report`,
    and the tree count's mean and std (ddof=0) over folds. All tree counts see the same folds.
    ``groups`` (from :func:`spatial_groups`) is needed for ``scheme="blocked"`` and ignored otherwise.
    """
    conf = {
        **DEFAULTS, "tree_counts": tree_counts, "folds": folds, "cv_scheme": scheme, "max_depth": max_depth,
        "normalise": normalise, "class_weight": class_weight, "seed": random_state, "n_jobs": n_jobs,
    }  # fmt: skip
    return cross_validate(x, y, groups, conf).table


def summarise_cv(cv: pd.DataFrame) -> pd.DataFrame:
    """One row per tree count (index ``n_estimators``): scheme, mean/std accuracy and macro-F1."""
    cols = ["scheme", "accuracy_mean", "accuracy_std", "macro_f1_mean", "macro_f1_std"]
    return cv.groupby("n_estimators")[cols].first().sort_index()


def best_tree_count(cv: pd.DataFrame) -> int:
    """The tree count with the highest mean macro-F1; a tie goes to the fewest trees (cheapest prediction)."""
    summary = summarise_cv(cv)
    best = summary["macro_f1_mean"].max()
    # A tolerance, so that fold-averaging round-off does not decide between equal scores.
    tied = summary.index[np.isclose(summary["macro_f1_mean"], best, rtol=0.0, atol=1e-12)]
    return int(min(tied))


@dataclass
class ForestResult:
    """What :func:`train_forest` returns: the refitted model and how it was chosen."""

    pipeline: Pipeline  # fitted on all training rows with the best tree count; predicts facies ids
    cv: pd.DataFrame  # CV_COLUMNS, one row per tree count and fold
    best_n_estimators: int
    scheme: str  # "blocked" or "random": the fold scheme behind every CV number
    importance: pd.Series  # normalised Gini importance (eq. 3), sums to 1, sorted descending
    class_weights: dict[Any, float]  # facies id -> weight used in training (1.0 for all without weighting)
    feature_names: list[str]  # what the classifier sees (with well_features: logs, neighbours, gradients)
    classes: list[Any] = field(default_factory=list)  # facies ids in the model's probability-column order
    cv_report: ClassificationReport | None = None  # pooled out-of-fold predictions of the best tree count
    inputs: list[str] = field(default_factory=list)  # the pipeline's input columns (config.json "features")
    estimator: str = "random_forest"  # or "hist_gradient_boosting" (best_n_estimators: its max_iter)
    oof: np.ndarray | None = None  # out-of-fold class codes (indices into ``classes``) of the best size
    oof_proba: np.ndarray | None = None  # their probabilities, rows × classes
    oof_fold: np.ndarray | None = None  # the fold that tested each row
    rows: np.ndarray | None = None  # positions in the training table of the rows trained on (finite ones)
    well_choice: dict[str, Any] | None = None  # train_rf's auto choice (overseer.seismic.well_choice), if any

    @property
    def cv_summary(self) -> pd.DataFrame:
        return summarise_cv(self.cv)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready digest for metrics files and run logs.

        ``cv_macro_f1`` (± ``cv_macro_f1_std``, over folds, ddof=0) is *the* CV macro-F1: the mean of the
        folds' macro-F1 at ``best_n_estimators``, i.e. ``cv[best_n_estimators]["macro_f1_mean"]``, the
        number that chose it (``cv_accuracy`` likewise). ``cv_pooled_macro_f1`` / ``cv_pooled_accuracy``: the
        scores of all out-of-fold predictions together, a different statistic."""
        best = self.cv_summary.loc[self.best_n_estimators]
        out: dict[str, Any] = {
            "cv_scheme": self.scheme,
            "estimator": self.estimator,
            "best_n_estimators": self.best_n_estimators,
            "cv_macro_f1": float(best["macro_f1_mean"]),
            "cv_macro_f1_std": float(best["macro_f1_std"]),
            "cv_accuracy": float(best["accuracy_mean"]),
            "cv": {
                int(n): {k: (v if isinstance(v, str) else float(v)) for k, v in row.items()}
                for n, row in self.cv_summary.to_dict(orient="index").items()
            },
            "importance": {k: float(v) for k, v in self.importance.items()},
            "class_weights": {str(k): float(v) for k, v in self.class_weights.items()},
            "feature_names": list(self.feature_names),
            "classes": [c.item() if hasattr(c, "item") else c for c in self.classes],
        }
        if self.cv_report is not None:
            # pooled: one score of all out-of-fold predictions of the best size together; ``cv[n]``'s
            # macro_f1_mean is the mean of the per-fold scores, which differs when folds differ in size
            # or facies mix (a small fold missing a facies scores low on its own)
            out["cv_pooled_accuracy"] = self.cv_report.accuracy
            out["cv_pooled_macro_f1"] = self.cv_report.macro["f1"]
        if self.well_choice is not None:
            out["well_choice"] = self.well_choice
        return out


def gini_importance(pipeline: Pipeline, feature_names: Sequence[str]) -> pd.Series:
    """Normalised Gini importance (eq. 3): the node purity gains (eq. 4) of each attribute summed over
    all nodes of all trees, each gain weighted by the node's share of the tree's (weighted) samples,
    then divided by the total so that the importances sum to 1. Sorted descending.

    This sums raw gains over trees as eq. 3 does; scikit-learn's ``feature_importances_`` instead
    normalises each tree before averaging. The two rank attributes alike.
    """
    forest = pipeline[-1]
    gains = np.zeros(len(feature_names), dtype=np.float64)
    for tree in forest.estimators_:
        gains += tree.tree_.compute_feature_importances(normalize=False)
    total = gains.sum()
    if total > 0:
        gains /= total
    else:  # every tree is a single leaf (one facies, or max_depth 0): nothing was learnt from any attribute
        warnings.warn("no tree made a split: every Gini importance is 0", stacklevel=2)
    return pd.Series(gains, index=list(feature_names), name="gini_importance").sort_values(
        ascending=False, kind="stable"
    )


def split_gain_importance(pipeline: Pipeline, feature_names: Sequence[str]) -> pd.Series:
    """Normalised split-gain importance of a fitted ``HistGradientBoostingClassifier`` pipeline: the
    loss reductions of every split on each attribute, summed over all trees of all iterations and
    classes, divided by the total (the boosted-tree analogue of :func:`gini_importance`). Sorted descending."""
    gains = np.zeros(len(feature_names), dtype=np.float64)
    for trees in pipeline[-1]._predictors:  # one list per iteration, one tree per class
        for tree in trees:
            nodes = tree.nodes[~tree.nodes["is_leaf"].astype(bool)]
            np.add.at(gains, nodes["feature_idx"].astype(np.int64), nodes["gain"])
    total = gains.sum()
    if total > 0:
        gains /= total
    else:
        warnings.warn("no tree made a split: every split-gain importance is 0", stacklevel=2)
    return pd.Series(gains, index=list(feature_names), name="split_gain_importance").sort_values(
        ascending=False, kind="stable"
    )


def importance(pipeline: Pipeline, feature_names: Sequence[str]) -> pd.Series:
    """Gini importance (forest, eq. 3) or split-gain importance (HGB) of a fitted pipeline's attributes."""
    if isinstance(pipeline[-1], HistGradientBoostingClassifier):
        return split_gain_importance(pipeline, feature_names)
    return gini_importance(pipeline, feature_names)


def model_feature_names(pipeline: Pipeline, inputs: Sequence[str]) -> list[str]:
    """What the classifier sees, by name: ``inputs``, or ``WellSequenceFeatures``' output names."""
    if "well_features" in pipeline.named_steps:
        return [str(n) for n in pipeline.named_steps["well_features"].get_feature_names_out(list(inputs))]
    return [str(n) for n in inputs]


def _check_nested(out: dict[str, Any]) -> None:
    """The nested options of a config: ``estimator``, ``hgb``, ``well_features`` and ``smooth``."""
    if out["estimator"] not in ESTIMATORS:
        raise InputError(f"train_rf.estimator must be one of {list(ESTIMATORS)}, got {out['estimator']!r}")
    for key in ("well_features", "smooth"):  # auto: resolved by train_rf before it trains; off for anyone else
        out[key] = {k: (DEFAULTS[key][k] if is_auto(v) else v) for k, v in out[key].items()}
    wf = out["well_features"]
    n = wf["neighbours"]
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise InputError(f"train_rf.well_features.neighbours must be a whole number >= 0, got {n!r}")
    if not isinstance(wf["gradients"], bool | np.bool_):
        raise InputError(f"train_rf.well_features.gradients must be true or false, got {wf['gradients']!r}")
    if well_features_enabled(wf) and out["cv_scheme"] != "blocked":
        raise InputError(
            "train_rf.well_features needs cv_scheme: blocked (folds of whole wells): random folds split wells, "
            "so a sample's neighbours and gradients would come from other folds' rows"
        )
    check_window(out["smooth"]["window"])


def resolve_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``DEFAULTS`` and ``RUN_OPTIONS`` updated with the known keys of ``cfg`` (other keys, a stage's
    own, are ignored); the nested options (``hgb``, ``well_features``, ``smooth``) key by key. An
    ``auto`` left in ``well_features`` or ``smooth`` reads as off (neighbours 0, gradients false,
    window 1): train_rf resolves it first (:func:`overseer.seismic.well_choice.train_with_choice`)."""
    out = {**DEFAULTS, **RUN_OPTIONS}
    out.update({k: v for k, v in cfg.items() if k in out and k not in NESTED})
    for key in NESTED:
        given = cfg.get(key) or {}
        unknown = sorted(set(given) - set(DEFAULTS[key]))
        if unknown:
            raise InputError(f"train_rf.{key}: unknown keys {unknown}; known: {sorted(DEFAULTS[key])}")
        out[key] = {**DEFAULTS[key], **given}
    if isinstance(out["class_weight"], str) and out["class_weight"].lower() == "none":
        out["class_weight"] = None
    if out["class_weight"] not in CLASS_WEIGHTS:
        raise InputError(f"class_weight must be one of {list(CLASS_WEIGHTS)}, got {out['class_weight']!r}")
    if out["cv_scheme"] not in SCHEMES:
        raise InputError(f"cv_scheme must be one of {list(SCHEMES)}, got {out['cv_scheme']!r}")
    if out["max_depth"] is not None and int(out["max_depth"]) < 1:
        raise InputError(f"max_depth must be a positive integer or null, got {out['max_depth']!r}")
    _check_nested(out)
    return out


def check_source(cfg: Mapping[str, Any], source: str) -> None:
    """``train_rf.well_features`` needs well logs: any other ingest ``source`` (meta.json) is an ``InputError``
    (``auto`` is not: it means off there)."""
    if well_features_enabled(cfg.get("well_features")) and source != "well_logs":
        raise InputError(
            f"train_rf.well_features (neighbours/gradients along depth per well) needs well-log training data; "
            f"ingest@seismic prepared source {source!r}: set train_rf.well_features.neighbours: 0 and gradients: false "
            "(or auto, which is off there)"
        )


def feature_columns(table: pd.DataFrame) -> list[str]:
    """All attribute columns of a training table: numeric columns that are not coordinates, wells or facies."""
    return [
        c
        for c in table.columns
        if c not in NON_FEATURE_COLUMNS and pd.api.types.is_numeric_dtype(table[c]) and not str(c).startswith("_")
    ]


def forest_options(conf: Mapping[str, Any]) -> dict[str, Any]:
    """The per-tree options of a checked config, as keyword arguments of :func:`build_pipeline`."""
    return {"max_features": conf["max_features"], "min_samples_leaf": conf["min_samples_leaf"]}


def training_arrays(
    table: pd.DataFrame, feature_names: Sequence[str] | None, conf: Mapping[str, Any]
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list[str]]:
    """(x, y, CV groups or None, the pipeline's input columns) of a training table, as train_forest fits them.

    The input columns are the attributes, after ``well`` and ``depth`` when ``conf["well_features"]``
    adds anything (:func:`~overseer.seismic.well_features.model_inputs`; ``x`` is then
    :func:`~overseer.seismic.well_features.model_matrix`'s float64, else float32). Rows with a
    non-finite attribute are dropped with a warning (prediction leaves such voxels undefined, facies -1).
    ``conf`` is a checked config (:func:`resolve_config`).
    """
    if FACIES_COLUMN not in table.columns:
        raise InputError(f"the training table needs a '{FACIES_COLUMN}' column; it has {list(table.columns)}")
    names = feature_columns(table) if feature_names is None else [str(n) for n in feature_names]
    names = model_inputs(names, conf["well_features"])  # well, depth first when well features need them
    if not [n for n in names if n not in KEY_COLUMNS]:
        raise InputError(f"the training table has no attribute columns: {list(table.columns)}")
    missing = [n for n in names if n not in table.columns]
    if missing and well_features_enabled(conf["well_features"]) and set(missing) & set(KEY_COLUMNS):
        raise InputError(
            f"train_rf.well_features needs a well-log table with columns {list(KEY_COLUMNS)}; "
            f"the training table has {list(table.columns)}"
        )
    if missing:
        raise InputError(f"attributes {missing} are not columns of the training table {list(table.columns)}")
    try:
        x = model_matrix(table, names)
    except (TypeError, ValueError) as err:
        raise InputError(f"attribute columns {names} must be numeric: {err}") from err
    y = table[FACIES_COLUMN].to_numpy()
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        warnings.warn(
            f"{int((~finite).sum())} of {finite.size} training rows have a non-finite attribute and are "
            f"dropped (first: row {int(np.flatnonzero(~finite)[0])})",
            stacklevel=3,
        )
    x, y = x[finite], y[finite]
    if pd.isna(y).any():
        raise InputError(f"the '{FACIES_COLUMN}' column has missing values", record=int(np.flatnonzero(pd.isna(y))[0]))
    scheme = conf["cv_scheme"]
    groups = spatial_groups(table.loc[finite], conf["block_size"]) if scheme == "blocked" else None
    return x, y, groups, names


def trained_rows(table: pd.DataFrame, inputs: Sequence[str]) -> np.ndarray:
    """Positions in ``table`` of the rows :func:`training_arrays` keeps for ``inputs`` (finite in all of them)."""
    return np.flatnonzero(np.isfinite(model_matrix(table, list(inputs))).all(axis=1))


def train_forest(table: pd.DataFrame, feature_names: Sequence[str] | None, cfg: Mapping[str, Any]) -> ForestResult:
    """rfc3d: cross-validate each tree count (HGB: each ``hgb.max_iter``), refit the best on all rows,
    Gini (HGB: split-gain) importance of what the classifier sees (:func:`model_feature_names`).

    ``table`` is a training table (one row per picked voxel or well-log sample, a ``facies``
    column of integer facies ids, one column per attribute); ``feature_names`` are the attributes
    to use (the selected combination), or ``None`` for all of them (:func:`feature_columns`).
    ``cfg`` holds the keys of ``DEFAULTS`` and ``RUN_OPTIONS`` (``n_jobs``: the threads of every fit;
    the returned model leaves it unset, so the saved file does not depend on it: give
    :func:`~overseer.seismic.predict_volume.predict_volume` its own ``n_jobs``). Rows with a
    non-finite attribute are dropped with a warning (prediction leaves such voxels undefined, facies -1).
    """
    conf = resolve_config(cfg)
    x, y, groups, inputs = training_arrays(table, feature_names, conf)
    scheme = conf["cv_scheme"]
    folds = cross_validate(x, y, groups, conf, inputs=inputs)
    cv, oof, classes = folds.table, folds.oof, folds.classes
    best = best_tree_count(cv)
    log.info("%s: %s %d-fold CV, best %s %d", conf["estimator"], scheme, conf["folds"], size_param(conf), best)
    pipeline = pipeline_for(conf, best, conf["n_jobs"], inputs)
    with thread_limit(conf["n_jobs"]):
        pipeline.fit(x, y)
    if conf["estimator"] == "random_forest":
        pipeline.set_params(forest__n_jobs=None)  # a run-time setting: the model file must not record it
    names = model_feature_names(pipeline, inputs)

    codes = np.searchsorted(classes, y)
    # confidence: the out-of-fold probability of the predicted facies
    cv_report = classification_report(codes, oof[best], [str(c) for c in classes], folds.proba[best].max(axis=1))
    if conf["class_weight"] is None:
        weights = np.ones(classes.size)
    else:  # "balanced_subsample" reweights every bootstrap sample; its expected weights are these
        weights = compute_class_weight("balanced", classes=classes, y=y)
    return ForestResult(
        pipeline=pipeline,
        cv=cv,
        best_n_estimators=best,
        scheme=scheme,
        importance=importance(pipeline, names),
        class_weights={c.item() if hasattr(c, "item") else c: float(w) for c, w in zip(classes, weights, strict=True)},
        feature_names=names,
        inputs=inputs,
        estimator=conf["estimator"],
        classes=list(classes),
        cv_report=cv_report,
        oof=oof[best],
        oof_proba=folds.proba[best],
        oof_fold=folds.fold,
        rows=trained_rows(table, inputs),
    )


def model_config(
    cfg: Mapping[str, Any], result: ForestResult, meta: Mapping[str, Any], resolved: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The trained model's ``config.json``: its ``train_rf`` params, ``features`` (the pipeline's input
    columns, matched by name at prediction: ``well`` and ``depth`` first when ``well_features`` adds
    anything), the training summary, ``facies`` and ingest's ``inputs`` (meta.json; null for volumes),
    and the resolved ``well_features`` and ``smooth`` (the post-hoc filter prediction applies): those of
    ``resolved`` (the params with ``auto`` replaced by train_rf's choice), else of ``cfg``."""
    conf = resolve_config(cfg if resolved is None else resolved)
    return {
        "train_rf": dict(cfg), "features": list(result.inputs), **result.summary(), "facies": meta["facies"],
        "inputs": meta.get("inputs"), "well_features": conf["well_features"], "smooth": conf["smooth"],
    }  # fmt: skip
