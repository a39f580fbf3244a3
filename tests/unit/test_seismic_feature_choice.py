"""Feature sets validated by the forest's blocked CV (overseer.seismic.feature_choice)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from overseer.errors import InputError
from overseer.seismic.feature_choice import (
    SetScore,
    apply_tie_rule,
    choose_features,
    selection_candidates,
    tie_tolerance,
    validate_feature_sets,
)

# small forests: the tests check the decision, not the forest
CFG = {"tree_counts": [5, 20], "max_depth": 6, "folds": 5, "cv_scheme": "blocked", "block_size": 4, "n_jobs": 1}
ATTRIBUTES = ["a", "b", "noise1", "noise2"]


def picks_table(seed: int = 0, n_il: int = 24, n_xl: int = 20) -> pd.DataFrame:
    """One pick per trace; four facies from the signs of ``a`` and ``b`` (both needed), two noise attributes."""
    rng = np.random.default_rng(seed)
    il, xl = np.meshgrid(np.arange(n_il), np.arange(n_xl), indexing="ij")
    n = il.size
    a, b = rng.normal(size=n), rng.normal(size=n)
    facies = 1 + (a > 0).astype(int) + 2 * (b > 0).astype(int)
    return pd.DataFrame(
        {
            "inline": il.ravel(),
            "crossline": xl.ravel(),
            "facies": facies,
            "a": a.astype(np.float32),
            "b": b.astype(np.float32),
            "noise1": rng.normal(size=n).astype(np.float32),
            "noise2": rng.normal(size=n).astype(np.float32),
        }
    )


# the GMM ranked "a" alone highest and dropped "b", which the classifier needs
SELECTION = {
    "best_combination": ["a"],
    "best_score": 3.0,
    "best_per_n": [
        {"n": 1, "combination": ["a"], "score": 3.0},
        {"n": 2, "combination": ["a", "b"], "score": 2.5},
        {"n": 3, "combination": ["a", "b", "noise1"], "score": 2.0},
        {"n": 4, "combination": ATTRIBUTES, "score": 1.5},
    ],
}


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return picks_table()


@pytest.fixture(scope="module")
def validated(table: pd.DataFrame):
    return choose_features("validated", SELECTION, ATTRIBUTES, table, CFG)


def test_validated_adds_the_attribute_the_gmm_winner_dropped(validated) -> None:
    choice = validated.validation
    assert "b" in validated.features and len(validated.features) > 1
    assert set(validated.features) == {"a", "b"}  # not the bigger sets with noise: they tie and lose on size
    summary = choice.summary()
    assert summary["gmm_choice"] == "gmm_best" and summary["gmm_choice_features"] == ["a"]
    assert summary["agrees_with_gmm"] is False
    sets = {row["name"]: row for row in summary["sets"]}
    # identical sets are scored once: gmm_n1 is gmm_best, "all" is gmm_n4
    assert sets["gmm_best"]["aliases"] == ["gmm_n1"] and sets["gmm_n4"]["aliases"] == ["all"]
    assert sets["gmm_best"]["gmm_rank"] == 1 and sets["gmm_n2"]["gmm_rank"] == 2
    assert sets["gmm_n2"]["cv_macro_f1_mean"] > sets["gmm_best"]["cv_macro_f1_mean"] + 0.2
    assert sets["gmm_best"]["tied_with_best"] is False
    assert len(sets["gmm_n2"]["cv_macro_f1_folds"]) == CFG["folds"]
    assert summary["n_estimators"] == 20 and summary["folds"] == 5 and summary["cv_scheme"] == "blocked"
    assert summary["validated_features"] == validated.features
    json.dumps(validated.summary())  # ready for selection.json / the evaluation report


def test_an_uninformative_extra_attribute_does_not_win(table: pd.DataFrame) -> None:
    candidates = {"pair": ["a", "b"], "pair+noise": ["a", "b", "noise1"], "pair+2noise": ["a", "b", "noise1", "noise2"]}
    choice = validate_feature_sets(table, candidates, "facies", None, CFG)
    assert choice.chosen == "pair" and choice.features == ["a", "b"]
    assert "pair" in choice.tied
    for name in ("pair+noise", "pair+2noise"):  # either worse, or within the tie tolerance of the best
        assert name == choice.best or choice.gaps[name] >= 0.0


def test_modes_selected_and_all_return_those_sets(table: pd.DataFrame) -> None:
    selected = choose_features("selected", SELECTION, ATTRIBUTES, table, CFG)
    assert selected.features == ["a"] and selected.validation is None
    everything = choose_features("all", None, ATTRIBUTES)  # needs neither the selection nor the table
    assert everything.features == ATTRIBUTES and everything.summary() == {"mode": "all", "features": ATTRIBUTES}
    with pytest.raises(InputError, match="mode"):
        choose_features("best", SELECTION, ATTRIBUTES, table, CFG)
    with pytest.raises(InputError, match="training table"):
        choose_features("validated", SELECTION, ATTRIBUTES, None, CFG)


def test_deterministic_under_the_seed(table: pd.DataFrame, validated) -> None:
    again = choose_features("validated", SELECTION, ATTRIBUTES, table, CFG)
    assert again.summary() == validated.summary()


def test_groups_and_non_finite_rows(table: pd.DataFrame) -> None:
    wells = table.assign(well=[f"W{i % 7}" for i in range(len(table))]).drop(columns=["inline", "crossline"])
    wells.loc[3, "noise1"] = np.nan  # dropped for every set alike, with a warning
    with pytest.warns(UserWarning, match="non-finite"):
        choice = validate_feature_sets(wells, {"a": ["a"], "ab": ["a", "b", "noise1"]}, "facies", None, CFG)
    assert choice.n_rows == len(wells) - 1 and choice.chosen == "ab"
    # explicit groups replace the table's own, and a missing attribute is named
    explicit = validate_feature_sets(table, {"ab": ["a", "b"]}, "facies", np.arange(len(table)) % 6, CFG)
    assert explicit.chosen == "ab" and explicit.gmm_choice is None and explicit.agrees_with_gmm is None
    with pytest.raises(InputError, match="missing_log"):
        validate_feature_sets(table, {"x": ["a", "missing_log"]}, "facies", None, CFG)


def _score(name: str, n: int, folds: list[float]) -> SetScore:
    return SetScore(name, [f"f{i}" for i in range(n)], folds, folds, float(np.mean(folds)))


def test_tie_rule_one_standard_error() -> None:
    small = _score("small", 2, [0.60, 0.70, 0.80, 0.50, 0.65])  # SE of its folds ~0.05
    noisy = _score("noisy", 3, [0.63, 0.68, 0.83, 0.48, 0.68])  # +0.01 on average, mixed signs
    steady = _score("steady", 3, [0.70, 0.80, 0.90, 0.60, 0.75])  # +0.10 in every fold
    slight = _score("slight", 3, [0.63, 0.73, 0.83, 0.53, 0.68])  # +0.03 in every fold
    for rule in ("one_se", "best_se", "paired_se"):
        assert apply_tie_rule([small, noisy], rule).chosen == "small"  # a tie: the smaller set
        decision = apply_tie_rule([small, steady], rule)
        assert decision.best == decision.chosen == "steady" and decision.tied == ["steady"]
    # within one SE of the folds' spread, but a steady gain: only the paired rule alone keeps it
    assert apply_tie_rule([small, slight]).chosen == "small"
    assert apply_tie_rule([small, slight], "best_se").chosen == "small"
    assert apply_tie_rule([small, slight], "paired_se").chosen == "slight"
    # near a perfect score the best set's folds barely vary; the paired SE still sees the trade-offs
    near = _score("near", 2, [1.0, 0.97, 1.0, 1.0, 0.97])
    trade = _score("trade", 3, [0.99, 1.0, 0.99, 1.0, 1.0])
    assert apply_tie_rule([near, trade], "best_se").chosen == "trade"
    assert apply_tie_rule([near, trade]).chosen == "near"
    assert apply_tie_rule([small, noisy], "exact").chosen == "noisy"
    assert apply_tie_rule([small, steady], 0.2).chosen == "small"
    assert apply_tie_rule([noisy, small]).best == "noisy"  # equal-size ties and order do not matter here
    assert tie_tolerance([0.5, 0.6], [0.5, 0.6], "paired_se") == 0.0
    with pytest.raises(InputError, match="tie_rule"):
        tie_tolerance([0.5], [0.5], "loose")


def test_selection_candidates_names_and_scores() -> None:
    candidates, scores = selection_candidates(SELECTION, ATTRIBUTES)
    assert list(candidates) == ["gmm_best", "gmm_n1", "gmm_n2", "gmm_n3", "gmm_n4", "all"]
    assert scores["gmm_n2"] == 2.5 and "all" not in scores
    with pytest.raises(InputError, match="not candidates"):
        selection_candidates({"best_combination": ["zz"]}, ATTRIBUTES)
