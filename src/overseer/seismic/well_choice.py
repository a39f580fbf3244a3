"""train_rf's ``auto`` well features and smoothing, chosen by leave-wells-out CV on the training wells.

The well-log classifiers that do best on the SEG 2016 facies contest wells (Hall 2016, "Facies
classification using machine learning", The Leading Edge 35(10); the contest results: Hall & Hall 2017,
"Distributed collaborative prediction", The Leading Edge 36(3)) add,
per well and along depth, the logs of neighbouring samples and each log's depth gradient, and filter
the predicted facies per well afterwards (:mod:`overseer.seismic.well_features`). How much of each
helps depends on the wells (their sample rate against the bed thickness), so ``auto`` chooses it on
the training wells, with the project's one fold loop (:func:`overseer.seismic.forest.cross_validate`,
folds of whole wells):

1. **Well features** (``well_features.neighbours`` / ``gradients`` = ``auto``): every candidate of
   :data:`NEIGHBOURS` × :data:`GRADIENTS` (only the ``auto`` keys vary) is cross-validated on the
   attributes train_rf already chose (``features: validated`` runs first, with ``auto`` read as
   off: which logs, then what to add along depth), all on the same rows and so the same folds, at
   one size (the largest candidate tree count or ``hgb.max_iter``, as the feature choice).
   Cost: ``len(candidates) × folds`` fits (6 × 5 = 30 with both keys ``auto`` and 5 folds).
2. **Smoothing** (``smooth.window`` = ``auto``): each window of :data:`WINDOWS` is applied
   (:func:`~overseer.seismic.well_features.smooth_per_well`) to the out-of-fold predictions of the
   trained configuration (train_rf's tree-count CV at its best size) and scored fold by fold. No
   refits: a well's out-of-fold predictions come from the model of the fold that held it out, and
   the filter only reads predictions of the same well, so each score is still of unseen wells.

The rule is :mod:`overseer.seismic.feature_choice`'s one-standard-error rule (Hastie et al.,
Elements of Statistical Learning §7.10): the highest mean fold macro-F1 is the best; candidates
within one standard error of it tie, and a tie goes to the simplest — fewest classifier columns for
well features (neighbours ±1 on n logs add 2n, gradients n), the shortest window for smoothing. The
standard error is the paired one (:func:`~overseer.seismic.feature_choice.tie_tolerance`
``paired_se``: of the fold-wise differences best − candidate), not feature_choice's default, the
larger of that and the best candidate's own fold SE. Every candidate here adds to the same logs
and is scored on the same folds of wells, and between wells the score varies far more than between
candidates (a fold whose wells lack a facies scores low for all of them); that shared spread is the
best candidate's own SE but cancels in the differences. Measured on 6 generated wells, 5 folds:
fold SD 0.13, so with the larger SE all six well-feature candidates and all four windows tied and
``auto`` chose off although ±1 neighbours gained 0.03-0.05 macro-F1 in every one of the 5 folds
(0.844 → 0.883 in the mean); with the paired SE it chose ±1 neighbours and gradients, window 5.
The grids are small on purpose: each added candidate is one more chance to win on fold noise, and
±2 samples and 7-sample windows (±1 ft and 3.5 ft on the contest's 0.5 ft logs) stay within
typical bed thicknesses, so the filter does not erase thin beds; wider ones are a param away
(explicit numbers). Candidates are decided on the training wells only: held-out
wells (``ingest.seismic.holdout``) never reach train_rf.

Library code: nothing is written or logged; :class:`WellChoice` ``.summary()`` goes into the train
report and the model's ``config.json``, ``.metrics()`` / ``.tags()`` into the MLflow run.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from overseer.errors import InputError
from overseer.metrics import classification_report
from overseer.seismic.feature_choice import tie_tolerance
from overseer.seismic.forest import (
    DEFAULTS,
    FACIES_COLUMN,
    ForestResult,
    cross_validate,
    feature_columns,
    resolve_config,
    size_candidates,
    size_param,
    train_forest,
    training_arrays,
)
from overseer.seismic.well_features import (
    AUTO,
    DEPTH_COLUMN,
    WELL_COLUMN,
    encoded_columns,
    is_auto,
    model_inputs,
    smooth_per_well,
)

log = logging.getLogger(__name__)

NEIGHBOURS = (0, 1, 2)  # well_features.neighbours: auto
GRADIENTS = (False, True)  # well_features.gradients: auto
WINDOWS = (1, 3, 5, 7)  # smooth.window: auto
WELL_SOURCE = "well_logs"  # ingest@seismic's source (meta.json) of well-log tables
_ATOL = 1e-12  # fold-averaging round-off does not decide between equal scores
# the standard error of the fold-wise differences (module notes say why not the best candidate's own)
TIE_RULE = "paired_se"


def auto_keys(cfg: Mapping[str, Any]) -> list[str]:
    """The ``train_rf`` keys set to ``auto``, dotted (``["well_features.neighbours", "smooth.window"]``)."""
    return [
        f"{section}.{key}"
        for section in ("well_features", "smooth")
        for key, value in (cfg.get(section) or {}).items()
        if is_auto(value)
    ]


def without_auto(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``cfg`` with every ``auto`` replaced by its off value (neighbours 0, gradients false, window 1)."""
    out = dict(cfg)
    for section in ("well_features", "smooth"):
        given = cfg.get(section) or {}
        out[section] = {k: (DEFAULTS[section][k] if is_auto(v) else v) for k, v in given.items()}
    return out


@dataclass(frozen=True)
class Candidate:
    """One candidate value of the auto params and its cross-validated scores (folds in order)."""

    name: str
    options: dict[str, Any]  # e.g. {"neighbours": 1, "gradients": False} or {"window": 3}
    complexity: int  # classifier columns (well features) or window length (smoothing): lower is simpler
    fold_macro_f1: list[float]
    pooled_macro_f1: float

    @property
    def mean(self) -> float:
        return float(np.mean(self.fold_macro_f1))

    @property
    def std(self) -> float:
        """Standard deviation over folds, ddof=0 (as forest.cross_validate)."""
        return float(np.std(self.fold_macro_f1))


@dataclass
class StepChoice:
    """One step of the choice (``well_features`` or ``smooth``): every candidate and the decision."""

    param: str  # "well_features" | "smooth"
    candidates: list[Candidate]
    best: str  # highest mean (equal means: the simpler)
    chosen: str  # the simplest within tolerance of the best
    gaps: dict[str, float]
    tolerances: dict[str, float]
    fits: int  # models fitted to score the candidates
    simpler: str  # what "simpler" means here, in words

    @property
    def options(self) -> dict[str, Any]:
        return dict(next(c for c in self.candidates if c.name == self.chosen).options)

    def summary(self) -> dict[str, Any]:
        """JSON-ready: every candidate's CV scores, the gap/tolerance to the best, and the decision."""
        rows = [
            {
                "name": c.name,
                **c.options,
                "complexity": c.complexity,
                "cv_macro_f1_mean": c.mean,
                "cv_macro_f1_std": c.std,
                "cv_macro_f1_folds": list(c.fold_macro_f1),
                "cv_pooled_macro_f1": c.pooled_macro_f1,
                "gap_to_best": self.gaps[c.name],
                "tolerance": self.tolerances[c.name],
                "tied_with_best": self.gaps[c.name] <= self.tolerances[c.name] + _ATOL,
            }
            for c in self.candidates
        ]
        decision = {"best": self.best, "chosen": self.chosen, "options": self.options, "fits": self.fits}
        return {**decision, "simpler": self.simpler, "candidates": rows}


def decide(
    param: str, candidates: Sequence[Candidate], fits: int, simpler: str, tie_rule: str | float = TIE_RULE
) -> StepChoice:
    """The one-standard-error rule over ``candidates`` (module notes): best mean, then the simplest tied."""
    if not candidates:
        raise InputError(f"train_rf.{param}: no candidates to choose from")
    order = {c.name: i for i, c in enumerate(candidates)}
    top = max(c.mean for c in candidates)
    best = min(
        (c for c in candidates if math.isclose(c.mean, top, rel_tol=0.0, abs_tol=_ATOL)),
        key=lambda c: (c.complexity, order[c.name]),
    )
    gaps = {c.name: best.mean - c.mean for c in candidates}
    tolerances = {c.name: tie_tolerance(best.fold_macro_f1, c.fold_macro_f1, tie_rule) for c in candidates}
    tied = [c for c in candidates if gaps[c.name] <= tolerances[c.name] + _ATOL]
    chosen = min(tied, key=lambda c: (c.complexity, -c.mean, order[c.name]))
    return StepChoice(param, list(candidates), best.name, chosen.name, gaps, tolerances, fits, simpler)


def _fold_scores(codes: np.ndarray, predicted: np.ndarray, fold: np.ndarray, names: list[str]) -> list[float]:
    return [
        float(classification_report(codes[fold == f], predicted[fold == f], names).macro["f1"])
        for f in range(int(fold.max()) + 1)
    ]


def _well_feature_grid(given: Mapping[str, Any]) -> list[dict[str, Any]]:
    neighbours = NEIGHBOURS if is_auto(given.get("neighbours")) else (int(given.get("neighbours", 0)),)
    gradients = GRADIENTS if is_auto(given.get("gradients")) else (bool(given.get("gradients", False)),)
    return [{"neighbours": k, "gradients": g} for k, g in itertools.product(neighbours, gradients)]


def choose_well_features(
    table: pd.DataFrame, features: Sequence[str], cfg: Mapping[str, Any], *, tie_rule: str | float = TIE_RULE
) -> StepChoice:
    """Cross-validate every well-feature candidate (step 1 of the module notes) and choose.

    ``table``: the training well logs (``well``, ``depth``, ``facies``, the attributes);
    ``features``: the attributes to train on; ``cfg``: the ``train_rf`` params with run options
    (``n_jobs``), ``well_features`` keys ``auto`` where they are to be chosen. Every candidate is
    scored on the rows finite in ``depth`` and every attribute, so all see the same folds.
    """
    grid = _well_feature_grid(cfg.get("well_features") or {})
    conf = resolve_config(without_auto(cfg))
    if conf["cv_scheme"] != "blocked":
        raise InputError("train_rf.well_features: auto needs cv_scheme: blocked (folds of whole wells)")
    size = max(size_candidates(conf))
    conf["hgb" if size_param(conf) == "max_iter" else "tree_counts"] = (
        {**conf["hgb"], "max_iter": [size]} if size_param(conf) == "max_iter" else [size]
    )
    wanted = [DEPTH_COLUMN, *[str(f) for f in features]]
    missing = [c for c in [WELL_COLUMN, *wanted] if c not in table.columns]
    if missing:
        raise InputError(f"train_rf.well_features: auto needs a well-log table; the table lacks {missing}")
    rows = table.loc[np.isfinite(table[wanted].to_numpy(np.float64)).all(axis=1)]
    inputs = model_inputs(features, {"neighbours": 1})
    n_encoded = len(encoded_columns(inputs))
    n_logs = len(inputs) - 2 - n_encoded
    candidates = []
    for options in grid:
        trial = {**conf, "well_features": options}
        x, y, groups, names = training_arrays(rows, features, trial)
        cv = cross_validate(x, y, groups, trial, inputs=names)
        codes = np.searchsorted(cv.classes, y)
        pooled = classification_report(codes, cv.oof[size], [str(c) for c in cv.classes]).macro["f1"]
        name = f"neighbours {options['neighbours']}, gradients {'on' if options['gradients'] else 'off'}"
        complexity = n_logs * (1 + 2 * options["neighbours"] + int(options["gradients"])) + n_encoded
        folds = cv.table.sort_values("fold")["macro_f1"].tolist()
        candidates.append(Candidate(name, options, complexity, [float(v) for v in folds], float(pooled)))
        log.info("well features %s: leave-wells-out CV macro-F1 %.3f", name, candidates[-1].mean)
    return decide("well_features", candidates, len(grid) * int(conf["folds"]), "fewer classifier columns", tie_rule)


def choose_window(
    result: ForestResult, table: pd.DataFrame, windows: Sequence[int] = WINDOWS, *, tie_rule: str | float = TIE_RULE
) -> StepChoice:
    """Score each smoothing window on the out-of-fold predictions of a trained ``result`` (step 2; no refits).

    ``table`` is the table ``result`` trained on (its ``well`` and ``depth`` columns place the rows);
    the folds are ``result``'s (``oof_fold``), so each window's score is per fold of held-out wells.
    """
    if result.oof is None or result.oof_fold is None or result.rows is None:
        raise InputError("choosing train_rf.smooth.window needs the out-of-fold predictions of a trained forest")
    kept = table.iloc[result.rows]
    codes = np.searchsorted(np.asarray(result.classes), kept[FACIES_COLUMN].to_numpy())
    names = [str(c) for c in result.classes]
    candidates = []
    for window in sorted({int(w) for w in windows}):
        predicted = smooth_per_well(kept[WELL_COLUMN].to_numpy(), kept[DEPTH_COLUMN].to_numpy(), result.oof, window)
        pooled = classification_report(codes, predicted, names).macro["f1"]
        scores = _fold_scores(codes, predicted, result.oof_fold, names)
        candidates.append(Candidate(f"window {window}", {"window": window}, window, scores, float(pooled)))
    return decide("smooth", candidates, 0, "a shorter window", tie_rule)


@dataclass
class WellChoice:
    """train_rf's ``auto`` resolution: the steps taken (None: that param was explicit, or not well logs)."""

    auto: list[str]  # the keys that were auto
    source: str
    well_features: StepChoice | None = None
    smooth: StepChoice | None = None

    def resolved(self, cfg: Mapping[str, Any]) -> dict[str, Any]:
        """``cfg`` with each ``auto`` replaced by the choice (off where nothing was chosen)."""
        out = without_auto(cfg)
        if self.well_features is not None:
            out["well_features"] = {**out["well_features"], **self.well_features.options}
        if self.smooth is not None:
            out["smooth"] = {**out["smooth"], **self.smooth.options}
        return out

    def summary(self) -> dict[str, Any]:
        """JSON-ready, for the train report and ``config.json``."""
        taken = [s for s in (self.well_features, self.smooth) if s is not None]
        if self.source == WELL_SOURCE:
            how = "leave-wells-out CV of the training wells; ties within one paired standard error go to the simpler"
        else:
            how = f"off: source {self.source!r} is not well logs"
        steps = {s.param: s.summary() for s in taken}
        return {"auto": list(self.auto), "how": how, "fits": sum(s.fits for s in taken), **steps}

    def metrics(self) -> dict[str, float]:
        """MLflow metrics: ``auto_<param>_<candidate>_cv_macro_f1`` per candidate (mean over folds)."""
        out = {}
        for step in (self.well_features, self.smooth):
            for c in step.candidates if step else []:
                key = "_".join(f"{k[0]}{int(v)}" for k, v in c.options.items())  # n1_g0, w3
                out[f"auto_{step.param}_{key}_cv_macro_f1"] = c.mean
        return out

    def tags(self) -> dict[str, str]:
        """MLflow tags: the chosen value of every auto key (``auto.well_features.neighbours``: ``"1"``)."""
        chosen = self.resolved(_nested_auto(self.auto))
        return {f"auto.{key}": str(chosen[key.split(".")[0]][key.split(".")[1]]) for key in self.auto}


def _nested_auto(keys: Sequence[str]) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {"well_features": {}, "smooth": {}}
    for key in keys:
        section, name = key.split(".")
        out[section][name] = AUTO
    return out


class Trained(NamedTuple):
    """What :func:`train_with_choice` returns."""

    result: ForestResult  # the trained forest (``well_choice`` set when anything was auto)
    resolved: dict[str, Any]  # the train_rf params with every auto replaced (what the model applies)
    choice: WellChoice | None  # None when nothing was auto


def train_with_choice(
    table: pd.DataFrame,
    features: Sequence[str] | None,
    cfg: Mapping[str, Any],
    source: str,
    options: Mapping[str, Any] | None = None,
    *,
    tie_rule: str | float = TIE_RULE,
) -> Trained:
    """train_rf's training: resolve ``auto`` (module notes), then :func:`~overseer.seismic.forest.train_forest`.

    ``cfg``: the ``train_rf`` params; ``source``: ingest's (meta.json) — anything but well logs
    reads ``auto`` as off, without error; ``options``: run options (``n_jobs``). The well features
    are chosen before the forest is built (they are in its pipeline); the window after, on its
    out-of-fold predictions. Fits: step 1's (:attr:`StepChoice.fits`) on top of train_forest's own.
    """
    keys, run = auto_keys(cfg), dict(options or {})
    if not keys or source != WELL_SOURCE:
        resolved = without_auto(cfg)
        result = train_forest(table, features, {**resolved, **run})
        choice = WellChoice(keys, source) if keys else None
        result.well_choice = None if choice is None else choice.summary()
        return Trained(result, resolved, choice)
    features = feature_columns(table) if features is None else [str(f) for f in features]
    choice = WellChoice(keys, source)
    if any(k.startswith("well_features.") for k in keys):
        choice.well_features = choose_well_features(table, features, {**cfg, **run}, tie_rule=tie_rule)
    resolved = choice.resolved(cfg)
    result = train_forest(table, features, {**resolved, **run})
    if "smooth.window" in keys:
        choice.smooth = choose_window(result, table, tie_rule=tie_rule)
        resolved = choice.resolved(cfg)
    result.well_choice = choice.summary()
    return Trained(result, resolved, choice)
