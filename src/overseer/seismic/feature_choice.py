"""Which attributes the classifier trains on: GMM selection checked by the forest's cross-validation.

The AASPI attribute-selection notes (section "Attribute Selection") rank combinations by the
overlap of their facies GMMs (eqs. 7-9), then say: "We then validate this combination in
predicting facies not used in constructing the original GMMs. Next, we increase n to determine if
we can significantly increase the amount of overlap distances (or confidence)." The GMM score alone
is not that check: on real well logs the eq. 9 winner kept 3 of 7 logs and the forest trained on
it scored a blind macro-F1 of 0.354 against 0.539 with all logs. This module does the check the
notes describe, with the classifier that will be trained:

* :func:`validate_feature_sets` scores every candidate set (the per-n winners O_n, the overall GMM
  winner, all attributes) by rfc3d's cross-validation (:func:`overseer.seismic.forest.cross_validate`,
  the project's one fold loop) with the ``train_rf`` config: one tree count, ``train_rf.folds``
  blocked folds (spatial blocks or wells), the same rows and therefore the same folds for every set.
* The rule: the highest mean fold macro-F1 is the best set; a set whose mean is below the best by
  no more than one standard error ties with it, and the tie goes to the fewest attributes: the
  one-standard-error rule (Breiman et al. 1984; Hastie et al., Elements of Statistical Learning
  §7.10). "Significantly increase ... by increasing the dimensionality" is the notes' own criterion:
  an attribute joins only when it pays for itself beyond the fold-to-fold noise of the score. The
  standard error is the larger of the best set's and the paired one (:func:`tie_tolerance` says why).
* :func:`choose_features` is what ``train_rf`` calls: ``"validated"`` (the CV choice),
  ``"selected"`` (the GMM winner, ``best_combination``) or ``"all"``.

Library code: nothing is written and nothing is logged to MLflow; ``FeatureChoice.summary()`` is a
JSON-ready dict for the stage to put next to ``selection.json`` / the evaluation report.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from overseer.errors import InputError
from overseer.metrics import classification_report
from overseer.seismic.forest import (
    FACIES_COLUMN,
    cross_validate,
    resolve_config,
    size_candidates,
    size_param,
    training_arrays,
)

log = logging.getLogger(__name__)

MODES = ("validated", "selected", "all")
TIE_RULES = ("one_se", "best_se", "paired_se", "exact")
GMM_BEST = "gmm_best"  # name of the overall GMM winner (selection.json ``best_combination``)
ALL = "all"  # name of the set of all candidate attributes
# fold-averaging round-off must not decide between equal scores (as forest.best_tree_count)
_ATOL = 1e-12


def per_n_name(n: int) -> str:
    """Name of the GMM per-size winner O_n among the candidates (``"gmm_n3"``)."""
    return f"gmm_n{int(n)}"


@dataclass(frozen=True)
class SetScore:
    """One candidate feature set and its cross-validated scores (one entry per fold, fold order)."""

    name: str
    features: list[str]
    fold_macro_f1: list[float]
    fold_accuracy: list[float]
    pooled_macro_f1: float  # macro-F1 of all out-of-fold predictions together (train_rf's cv_pooled_macro_f1)
    aliases: list[str] = field(default_factory=list)  # other candidate names for the same set
    gmm_score: float | None = None  # average cumulative distance (eq. 8) when the set came from the GMM search

    @property
    def n_features(self) -> int:
        return len(self.features)

    @property
    def mean(self) -> float:
        return float(np.mean(self.fold_macro_f1))

    @property
    def std(self) -> float:
        """Standard deviation over folds, ddof=0 (as forest.cross_validate and scikit-learn's cv_results_)."""
        return float(np.std(self.fold_macro_f1))


def tie_tolerance(best: Sequence[float], other: Sequence[float], tie_rule: str | float = "one_se") -> float:
    """How far below the best set's mean fold macro-F1 a set may be and still tie with it.

    ``"best_se"``: one standard error of the best set's fold scores, sd(best_f, ddof=1)/√k (the
    classic one-SE rule). ``"paired_se"``: one standard error of the fold-wise differences,
    sd(best_f − other_f, ddof=1)/√k; every set sees the same folds, so pairing removes the shared
    fold difficulty (large between wells). ``"one_se"`` (default): the larger of the two. Each alone
    understates the noise of the comparison in one regime: near a perfect score the best set's folds
    barely vary (best_se → 0) while two sets still trade wins fold by fold; with five folds the paired
    SE is itself a noisy estimate and comes out small by chance. Measured on generated picks where two
    attributes decide four facies (12 seeds; candidates: one of them, both, both + noise, all):
    noise-free labels — both attributes alone chosen 12/12 (one_se), 9/12 (best_se), 12/12
    (paired_se); noisy labels — 9/12, 8/12, 6/12; every rule kept both informative attributes in
    every seed. The default errs towards fewer attributes, as the notes do. A set differing from the
    best in one fold only is exactly one paired SE away, and ties. ``"exact"``: 0 (equal means only).
    A number: that absolute tolerance in macro-F1.
    """
    if isinstance(tie_rule, bool) or not isinstance(tie_rule, (str, int, float)):
        raise InputError(f"tie_rule must be one of {list(TIE_RULES)} or a non-negative number, got {tie_rule!r}")
    if isinstance(tie_rule, str):
        if tie_rule not in TIE_RULES:
            raise InputError(f"tie_rule must be one of {list(TIE_RULES)} or a non-negative number, got {tie_rule!r}")
        best_f = np.asarray(best, dtype=np.float64)
        if tie_rule == "exact" or best_f.size < 2:
            return 0.0
        best_se = float(np.std(best_f, ddof=1) / math.sqrt(best_f.size))
        diff = best_f - np.asarray(other, dtype=np.float64)
        paired_se = float(np.std(diff, ddof=1) / math.sqrt(diff.size))
        return {"best_se": best_se, "paired_se": paired_se, "one_se": max(best_se, paired_se)}[tie_rule]
    if not (math.isfinite(tie_rule) and tie_rule >= 0):
        raise InputError(f"a numeric tie_rule must be a finite tolerance >= 0, got {tie_rule!r}")
    return float(tie_rule)


class Decision(NamedTuple):
    """What :func:`apply_tie_rule` returns."""

    best: str  # highest mean fold macro-F1 (equal means: fewer attributes, then candidate order)
    chosen: str  # the fewest attributes among the sets tied with ``best``
    gaps: dict[str, float]  # best mean − set mean
    tolerances: dict[str, float]  # the tie tolerance of each set against ``best``
    tied: list[str]  # the sets within tolerance of ``best``, candidate order


def apply_tie_rule(scores: Sequence[SetScore], tie_rule: str | float = "one_se") -> Decision:
    """The validated choice among scored sets (the rule of the module docstring, notes "Attribute Selection").

    The best set has the highest mean fold macro-F1; a set ties with it when ``best mean − set mean
    <= tie_tolerance(best, set)``; among the tied sets the fewest attributes win, then the higher
    mean, then the earlier candidate.
    """
    if not scores:
        raise InputError("no candidate feature sets to validate")
    order = {s.name: i for i, s in enumerate(scores)}
    top = max(s.mean for s in scores)
    best = min(
        (s for s in scores if math.isclose(s.mean, top, rel_tol=0.0, abs_tol=_ATOL)),
        key=lambda s: (s.n_features, order[s.name]),
    )
    gaps, tolerances, tied = {}, {}, []
    for s in scores:
        gaps[s.name] = best.mean - s.mean
        tolerances[s.name] = tie_tolerance(best.fold_macro_f1, s.fold_macro_f1, tie_rule)
        if gaps[s.name] <= tolerances[s.name] + _ATOL:
            tied.append(s)
    chosen = min(tied, key=lambda s: (s.n_features, -s.mean, order[s.name]))
    return Decision(best.name, chosen.name, gaps, tolerances, [s.name for s in tied])


def _rule_text(tie_rule: str | float) -> str:
    tol = (
        {
            "one_se": "one standard error (the larger of the best set's fold SE and the paired SE of best − set)",
            "best_se": "one standard error of the best set's fold scores (sd(ddof=1)/√folds)",
            "paired_se": "one paired standard error of the fold-wise differences (sd(best − set, ddof=1)/√folds)",
            "exact": "0 (equal means only)",
        }.get(tie_rule)
        if isinstance(tie_rule, str)
        else f"{float(tie_rule):g} macro-F1"
    )
    return (
        "highest mean blocked-CV macro-F1 of the forest; sets whose mean is below the best by at most "
        f"{tol} tie with it, and a tie goes to the fewest attributes"
    )


@dataclass
class FeatureChoice:
    """What :func:`validate_feature_sets` returns: every candidate's CV scores and the validated choice."""

    scores: list[SetScore]  # candidate order, identical sets merged (see ``SetScore.aliases``)
    best: str  # name of the highest mean
    chosen: str  # name of the validated set
    tie_rule: str | float
    gaps: dict[str, float]
    tolerances: dict[str, float]
    tied: list[str]
    scheme: str  # "blocked" or "random": the folds behind every number
    folds: int
    n_estimators: int
    n_rows: int  # training rows scored (finite in every candidate attribute)
    gmm_choice: str | None = None  # name of the set the GMM selection chose, when known

    def _by_name(self, name: str) -> SetScore:
        for s in self.scores:
            if s.name == name or name in s.aliases:
                return s
        raise KeyError(name)

    @property
    def features(self) -> list[str]:
        """The validated attributes, in the candidate's order."""
        return list(self._by_name(self.chosen).features)

    @property
    def rule(self) -> str:
        return _rule_text(self.tie_rule)

    @property
    def agrees_with_gmm(self) -> bool | None:
        """Whether the CV check keeps the GMM's choice (None when no GMM choice was given)."""
        if self.gmm_choice is None:
            return None
        return set(self._by_name(self.gmm_choice).features) == set(self.features)

    def table(self) -> pd.DataFrame:
        """One row per candidate set: GMM score and rank next to CV mean/std/rank, gap and tolerance."""
        rows = []
        for s in self.scores:
            rows.append(
                {
                    "name": s.name,
                    "aliases": list(s.aliases),
                    "features": list(s.features),
                    "n_features": s.n_features,
                    "gmm_score": s.gmm_score,
                    "cv_macro_f1_mean": s.mean,
                    "cv_macro_f1_std": s.std,
                    "cv_macro_f1_folds": [float(v) for v in s.fold_macro_f1],
                    "cv_accuracy_mean": float(np.mean(s.fold_accuracy)),
                    "cv_pooled_macro_f1": float(s.pooled_macro_f1),
                    "gap_to_best": float(self.gaps[s.name]),
                    "tolerance": float(self.tolerances[s.name]),
                    "tied_with_best": s.name in self.tied,
                }
            )
        out = pd.DataFrame(rows)
        # rank 1 = best; GMM by eq. 8 score (sets without one get no rank), CV by mean then fewer attributes
        out["gmm_rank"] = out["gmm_score"].astype("float64").rank(ascending=False, method="min")
        cv_order = sorted(range(len(out)), key=lambda i: (-out.loc[i, "cv_macro_f1_mean"], out.loc[i, "n_features"]))
        out["cv_rank"] = 0
        out.loc[cv_order, "cv_rank"] = np.arange(1, len(out) + 1)
        return out

    def summary(self) -> dict[str, Any]:
        """A JSON-ready digest: the GMM ranking and the CV check side by side, and the decision."""
        sets = []
        for row in self.table().to_dict(orient="records"):
            rank = row.pop("gmm_rank")
            row["gmm_rank"] = None if pd.isna(rank) else int(rank)
            row["gmm_score"] = (
                None if row["gmm_score"] is None or pd.isna(row["gmm_score"]) else float(row["gmm_score"])
            )
            row["cv_rank"] = int(row["cv_rank"])
            row["n_features"] = int(row["n_features"])
            row["tied_with_best"] = bool(row["tied_with_best"])
            sets.append(row)
        gmm = None if self.gmm_choice is None else self._by_name(self.gmm_choice)
        return {
            "rule": self.rule,
            "tie_rule": self.tie_rule,
            "cv_scheme": self.scheme,
            "folds": int(self.folds),
            "n_estimators": int(self.n_estimators),
            "n_rows": int(self.n_rows),
            "best_cv": self.best,
            "validated": self.chosen,
            "validated_features": self.features,
            "validated_cv_macro_f1": self._by_name(self.chosen).mean,
            "gmm_choice": None if gmm is None else gmm.name,
            "gmm_choice_features": None if gmm is None else list(gmm.features),
            "gmm_choice_cv_macro_f1": None if gmm is None else gmm.mean,
            "agrees_with_gmm": self.agrees_with_gmm,
            "sets": sets,
        }


def _merge_candidates(
    candidates: Mapping[str, Sequence[str]], gmm_scores: Mapping[str, float] | None
) -> list[tuple[str, list[str], list[str], float | None]]:
    """(name, features, aliases, gmm score) per distinct set, first name kept; features must be unique."""
    merged: dict[frozenset[str], list[Any]] = {}
    for name, feats in candidates.items():
        feats = [str(f) for f in feats]
        if not feats:
            raise InputError(f"candidate feature set {name!r} is empty")
        if len(set(feats)) != len(feats):
            raise InputError(f"candidate feature set {name!r} names an attribute twice: {feats}")
        score = None if gmm_scores is None else gmm_scores.get(name)
        key = frozenset(feats)
        if key in merged:
            merged[key][2].append(str(name))
            if merged[key][3] is None and score is not None:
                merged[key][3] = float(score)
        else:
            merged[key] = [str(name), feats, [], None if score is None else float(score)]
    return [tuple(v) for v in merged.values()]  # type: ignore[misc]


def validate_feature_sets(
    table: pd.DataFrame,
    candidates: Mapping[str, Sequence[str]],
    labels_col: str = FACIES_COLUMN,
    groups: np.ndarray | None = None,
    cfg: Mapping[str, Any] | None = None,
    *,
    n_estimators: int | None = None,
    tie_rule: str | float = "one_se",
    gmm_scores: Mapping[str, float] | None = None,
    gmm_choice: str | None = None,
) -> FeatureChoice:
    """Score each candidate feature set by the forest's cross-validation and choose (notes, "Attribute Selection").

    ``table``: the training table (picks or well logs); ``candidates``: name → attribute list (see
    :func:`selection_candidates`; identical sets are scored once, their other names kept as aliases);
    ``labels_col``: the facies column; ``groups``: the CV group of every row of ``table`` (None: from
    the table, :func:`~overseer.seismic.forest.spatial_groups` with ``cfg['block_size']``, when the
    scheme is blocked); ``cfg``: the ``train_rf`` params (plus run options such as ``n_jobs``),
    read by :func:`~overseer.seismic.forest.resolve_config` (``auto`` well features read as off: train_rf
    chooses them after the attributes, :mod:`overseer.seismic.well_choice`).

    Cost is bounded: one forest of ``n_estimators`` trees (default: the largest of
    ``cfg['tree_counts']``; with ``estimator: hist_gradient_boosting`` the largest ``hgb.max_iter``)
    per fold and distinct set, ``cfg['folds']`` folds. Every set is scored on
    the same rows (those finite in every candidate attribute) and hence on the same folds, so the
    scores compare pairwise. ``gmm_scores`` (name → eq. 8 score) and ``gmm_choice`` (the name of the
    GMM's chosen set) are only reported, beside the CV check.
    """
    conf = resolve_config(cfg or {})
    size = size_param(conf)  # n_estimators (forest) or max_iter (HGB): one size only, the largest by default
    trees = max(size_candidates(conf)) if n_estimators is None else int(n_estimators)
    if trees < 1:
        raise InputError(f"n_estimators must be a positive integer, got {n_estimators!r}")
    if size == "max_iter":
        conf["hgb"] = {**conf["hgb"], "max_iter": [trees]}
    else:
        conf["tree_counts"] = [trees]
    sets = _merge_candidates(candidates, gmm_scores)
    if not sets:
        raise InputError("no candidate feature sets to validate")
    if gmm_choice is not None and gmm_choice not in candidates:
        raise InputError(f"gmm_choice {gmm_choice!r} is not a candidate: {list(candidates)}")
    if labels_col not in table.columns:
        raise InputError(f"the training table needs a '{labels_col}' column; it has {list(table.columns)}")
    union = list(dict.fromkeys(f for _, feats, _, _ in sets for f in feats))
    missing = [f for f in union if f not in table.columns]
    if missing:
        raise InputError(f"attributes {missing} are not columns of the training table {list(table.columns)}")
    try:
        finite = np.isfinite(table[union].to_numpy(dtype=np.float64)).all(axis=1)
    except (TypeError, ValueError) as err:
        raise InputError(f"attribute columns {union} must be numeric: {err}") from err
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape[0] != len(table):
            raise InputError(f"groups has {groups.shape[0]} entries but the table has {len(table)} rows")
    if not finite.all():
        warnings.warn(
            f"{int((~finite).sum())} of {finite.size} training rows have a non-finite candidate attribute and "
            "are left out of every set's cross-validation (the same rows for all sets)",
            stacklevel=2,
        )
    # the same rows for every set, so the same folds: the scores compare pairwise
    rows = table.loc[finite]
    if labels_col != FACIES_COLUMN:
        rows = rows.drop(columns=[FACIES_COLUMN], errors="ignore").rename(columns={labels_col: FACIES_COLUMN})
    fold_groups = None if groups is None else groups[finite]

    scores = []
    for name, feats, aliases, gmm_score in sets:
        # training_arrays builds x exactly as train_forest does (well features included)
        x, y, table_groups, inputs = training_arrays(rows, feats, conf)
        cv = cross_validate(x, y, table_groups if fold_groups is None else fold_groups, conf, inputs=inputs)
        folds = cv.table.sort_values("fold")
        codes = np.searchsorted(cv.classes, y)
        pooled = classification_report(codes, cv.oof[trees], [str(c) for c in cv.classes]).macro["f1"]
        scores.append(
            SetScore(
                name=name,
                features=feats,
                fold_macro_f1=[float(v) for v in folds["macro_f1"]],
                fold_accuracy=[float(v) for v in folds["accuracy"]],
                pooled_macro_f1=float(pooled),
                aliases=aliases,
                gmm_score=gmm_score,
            )
        )
        log.info("feature set %s (%d attributes): CV macro-F1 %.3f", name, len(feats), scores[-1].mean)
    decision = apply_tie_rule(scores, tie_rule)
    gmm_name = None
    if gmm_choice is not None:  # the merged set's kept name
        gmm_name = next(s.name for s in scores if gmm_choice == s.name or gmm_choice in s.aliases)
    return FeatureChoice(
        scores=scores,
        best=decision.best,
        chosen=decision.chosen,
        tie_rule=tie_rule,
        gaps=decision.gaps,
        tolerances=decision.tolerances,
        tied=decision.tied,
        scheme=conf["cv_scheme"],
        folds=int(conf["folds"]),
        n_estimators=trees,
        n_rows=int(finite.sum()),
        gmm_choice=gmm_name,
    )


def selection_candidates(
    selection: Mapping[str, Any], all_features: Sequence[str]
) -> tuple[dict[str, list[str]], dict[str, float]]:
    """The candidates the notes' "Attribute Selection" validates, from a ``selection.json`` dict.

    Returns (name → attributes, name → eq. 8 score): ``"gmm_best"`` (``best_combination``), one
    ``"gmm_n<n>"`` per ``best_per_n`` row (O_n, increasing n), and ``"all"`` (``all_features``, no
    GMM score of its own unless it equals an O_n). Attributes outside ``all_features`` are an error.
    """
    if "best_combination" not in selection:
        raise InputError(f"the selection report has no 'best_combination'; it has {list(selection)}")
    known = {str(f) for f in all_features}
    candidates: dict[str, list[str]] = {GMM_BEST: [str(f) for f in selection["best_combination"]]}
    scores: dict[str, float] = {}
    if selection.get("best_score") is not None:
        scores[GMM_BEST] = float(selection["best_score"])
    for row in sorted(selection.get("best_per_n", []), key=lambda r: int(r["n"])):
        name = per_n_name(row["n"])
        candidates[name] = [str(f) for f in row["combination"]]
        scores[name] = float(row["score"])
    candidates[ALL] = [str(f) for f in all_features]
    for name, feats in candidates.items():
        unknown = [f for f in feats if f not in known]
        if unknown:
            raise InputError(
                f"selection set {name!r} names attributes {unknown} that are not candidates {sorted(known)}"
            )
    return candidates, scores


class ChosenFeatures(NamedTuple):
    """What :func:`choose_features` returns."""

    features: list[str]  # the attributes to train on
    mode: str
    validation: FeatureChoice | None  # the CV check (mode "validated" only)

    def summary(self) -> dict[str, Any]:
        """JSON-ready: the mode, the features and, for "validated", the side-by-side check."""
        out: dict[str, Any] = {"mode": self.mode, "features": list(self.features)}
        if self.validation is not None:
            out["validation"] = self.validation.summary()
        return out


def choose_features(
    mode: str,
    selection: Mapping[str, Any] | None,
    all_features: Sequence[str],
    table: pd.DataFrame | None = None,
    cfg: Mapping[str, Any] | None = None,
    *,
    labels_col: str = FACIES_COLUMN,
    groups: np.ndarray | None = None,
    n_estimators: int | None = None,
    tie_rule: str | float = "one_se",
) -> ChosenFeatures:
    """The attributes ``train_rf`` trains on: ``"validated"`` | ``"selected"`` | ``"all"``.

    ``"selected"``: the GMM winner (``selection['best_combination']``, eq. 9); ``"all"``:
    ``all_features``; ``"validated"``: the notes' check ("Attribute Selection": validate the
    combination in predicting facies, then increase n), i.e. :func:`validate_feature_sets` over
    :func:`selection_candidates` on ``table`` with ``cfg`` (the ``train_rf`` params). Only
    ``"validated"`` needs ``table`` and fits anything.
    """
    if mode not in MODES:
        raise InputError(f"features mode must be one of {list(MODES)}, got {mode!r}")
    if mode == "all":
        return ChosenFeatures([str(f) for f in all_features], mode, None)
    if selection is None:
        raise InputError(f"features mode {mode!r} needs the selection report (selection.json)")
    if mode == "selected":
        if "best_combination" not in selection:
            raise InputError(f"the selection report has no 'best_combination'; it has {list(selection)}")
        return ChosenFeatures([str(f) for f in selection["best_combination"]], mode, None)
    if table is None:
        raise InputError("features mode 'validated' needs the training table")
    candidates, scores = selection_candidates(selection, all_features)
    choice = validate_feature_sets(
        table, candidates, labels_col, groups, cfg,
        n_estimators=n_estimators, tie_rule=tie_rule, gmm_scores=scores, gmm_choice=GMM_BEST,
    )  # fmt: skip
    return ChosenFeatures(choice.features, mode, choice)
