"""train_rf's auto well features and smoothing (overseer.seismic.well_choice): leave-wells-out CV choice."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
from well_tables import layered_wells

from overseer.seismic.forest import cross_validate, make_folds, model_config, resolve_config, training_arrays
from overseer.seismic.well_choice import (
    GRADIENTS,
    NEIGHBOURS,
    WINDOWS,
    Candidate,
    auto_keys,
    choose_well_features,
    decide,
    train_with_choice,
    without_auto,
)
from overseer.seismic.well_features import model_matrix, smooth_per_well

CFG = {"tree_counts": [10], "folds": 3, "n_jobs": 1, "max_depth": 8}
AUTO = {"well_features": {"neighbours": "auto", "gradients": "auto"}, "smooth": {"window": "auto"}}
FEATURES = ["gr", "pe", "Formation:A"]
META = {"facies": ["sand", "silt", "shale"], "inputs": None}


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return layered_wells()


@pytest.fixture(scope="module")
def trained(table: pd.DataFrame):
    return train_with_choice(table, FEATURES, {**CFG, **AUTO}, "well_logs")


def test_auto_keys_and_their_off_values() -> None:
    cfg = {**CFG, "well_features": {"neighbours": "auto", "gradients": True}, "smooth": {"window": "auto"}}
    assert auto_keys(cfg) == ["well_features.neighbours", "smooth.window"]
    off = without_auto(cfg)
    assert off["well_features"] == {"neighbours": 0, "gradients": True} and off["smooth"] == {"window": 1}
    assert auto_keys({**CFG, "well_features": {"neighbours": 2}}) == []


def test_every_candidate_is_scored_on_the_same_folds_and_the_simplest_tie_wins(trained) -> None:
    step = trained.choice.well_features
    assert [tuple(c.options.values()) for c in step.candidates] == list(itertools.product(NEIGHBOURS, GRADIENTS))
    assert step.fits == 6 * CFG["folds"] and trained.choice.smooth.fits == 0
    assert trained.choice.summary()["fits"] == 18
    assert all(len(c.fold_macro_f1) == CFG["folds"] for c in step.candidates)
    # classifier columns: 2 logs x (1 + 2k + gradient) + the one-hot column, which gets no sequence features
    assert [c.complexity for c in step.candidates] == [3, 5, 7, 9, 11, 13]
    by_name = {c.name: c for c in step.candidates}
    best, chosen = by_name[step.best], by_name[step.chosen]
    assert best.mean == max(c.mean for c in step.candidates)
    tied = [c for c in step.candidates if step.gaps[c.name] <= step.tolerances[c.name] + 1e-12]
    assert chosen in tied and chosen.complexity == min(c.complexity for c in tied)
    # beds of 3-10 samples and noisy logs: a neighbour helps by construction (not tuned to: any k > 0)
    assert chosen.options["neighbours"] > 0
    # the choice is resolved before the pipeline is built, and is the pipeline's
    assert trained.resolved["well_features"] == chosen.options
    step_in_model = trained.result.pipeline.named_steps["well_features"]
    assert (step_in_model.neighbours, step_in_model.gradients) == tuple(chosen.options.values())
    assert "Formation:A_above1" not in trained.result.feature_names


def test_window_scores_are_those_of_the_trained_out_of_fold_predictions(trained) -> None:
    step = trained.choice.smooth
    assert [c.options["window"] for c in step.candidates] == list(WINDOWS)
    result = trained.result
    folds = result.cv[result.cv["n_estimators"] == result.best_n_estimators].sort_values("fold")
    # window 1 is no filter: its fold scores are the tree-count CV's own, no refit in between
    np.testing.assert_allclose(step.candidates[0].fold_macro_f1, folds["macro_f1"])
    assert trained.resolved["smooth"] == {"window": step.options["window"]}
    assert step.candidates[0].complexity < step.candidates[-1].complexity


def test_the_choice_is_saved_with_the_model_and_prediction_applies_it(trained, table, tmp_path) -> None:
    from overseer.seismic.model_io import save_model
    from overseer.seismic.predict import load_seismic_model, predict_table

    config = model_config({**CFG, **AUTO}, trained.result, META, trained.resolved)
    assert config["train_rf"]["smooth"] == {"window": "auto"}  # the params as given
    assert config["well_features"] == trained.resolved["well_features"]
    assert config["smooth"] == trained.resolved["smooth"]
    candidates = config["well_choice"]["well_features"]["candidates"]
    assert len(candidates) == 6 and {"cv_macro_f1_mean", "cv_macro_f1_folds", "tied_with_best"} <= set(candidates[0])
    assert trained.choice.tags()["auto.smooth.window"] == str(trained.resolved["smooth"]["window"])
    assert set(trained.choice.metrics()) >= {"auto_well_features_n0_g0_cv_macro_f1", "auto_smooth_w3_cv_macro_f1"}
    save_model(trained.result.pipeline, tmp_path / "model.skops")
    (tmp_path / "config.json").write_text(json.dumps(config))
    new = layered_wells(n_wells=2, seed=7).drop(columns="facies")
    predicted = predict_table(load_seismic_model(tmp_path), new)
    proba = trained.result.pipeline.predict_proba(model_matrix(new, trained.result.inputs))
    expected = smooth_per_well(new["well"], new["depth"], proba.argmax(axis=1), trained.resolved["smooth"]["window"])
    np.testing.assert_array_equal(predicted["facies"], np.asarray(META["facies"])[expected])


def test_explicit_values_still_work_and_narrow_the_grid(table: pd.DataFrame) -> None:
    cfg = {**CFG, "well_features": {"neighbours": 1, "gradients": "auto"}}
    step = choose_well_features(table, FEATURES, cfg)
    assert [c.options for c in step.candidates] == [
        {"neighbours": 1, "gradients": False},
        {"neighbours": 1, "gradients": True},
    ]
    explicit = {**CFG, "well_features": {"neighbours": 2, "gradients": False}, "smooth": {"window": 3}}
    done = train_with_choice(table, FEATURES, explicit, "well_logs")
    assert done.choice is None and done.result.well_choice is None and done.resolved == explicit
    assert done.result.pipeline.named_steps["well_features"].neighbours == 2


def test_auto_is_off_without_error_for_volumes_and_picks() -> None:
    rng = np.random.default_rng(0)
    il, xl = np.meshgrid(np.arange(12), np.arange(12), indexing="ij")
    amp = rng.normal(size=il.size)
    picks = pd.DataFrame({"inline": il.ravel(), "crossline": xl.ravel(), "sample": 0,
                          "facies": (amp > 0).astype(int), "amp": amp.astype(np.float32)})  # fmt: skip
    done = train_with_choice(picks, None, {**CFG, **AUTO, "block_size": 4}, "volumes")
    assert list(done.result.pipeline.named_steps) == ["scale", "forest"]
    assert done.resolved["well_features"] == {"neighbours": 0, "gradients": False}
    assert done.resolved["smooth"] == {"window": 1}
    assert done.result.well_choice["how"].startswith("off") and done.result.well_choice["fits"] == 0


def test_decide_is_the_one_standard_error_rule() -> None:
    simple = Candidate("simple", {"window": 1}, 1, [0.80, 0.90, 0.85], 0.85)
    close = Candidate("close", {"window": 3}, 3, [0.83, 0.89, 0.86], 0.86)  # +0.01 on average, not fold by fold
    steady = Candidate("steady", {"window": 5}, 5, [0.81, 0.91, 0.86], 0.86)  # +0.01 in every fold
    tie = decide("smooth", [simple, close], 0, "a shorter window")
    assert (tie.best, tie.chosen) == ("close", "simple")  # within one paired SE: the simpler
    assert tie.tolerances["simple"] == pytest.approx(np.std([0.03, -0.01, 0.01], ddof=1) / np.sqrt(3))
    win = decide("smooth", [simple, steady], 0, "a shorter window")
    assert (win.best, win.chosen) == ("steady", "steady")  # a gain in every fold is no fold noise
    assert win.summary()["candidates"][1]["tied_with_best"] and not win.summary()["candidates"][0]["tied_with_best"]
    # feature_choice's larger SE (the best one's own fold spread) would tie it
    assert decide("smooth", [simple, steady], 0, "a shorter window", "one_se").chosen == "simple"


def test_no_leakage_a_held_out_wells_labels_never_reach_its_predictions(table: pd.DataFrame) -> None:
    """Scores of a fold are of wells no model of that fold saw: relabelling a test fold's wells changes
    nothing about the out-of-fold predictions of their rows, with neighbours and gradients on."""
    conf = resolve_config({**CFG, "well_features": {"neighbours": 2, "gradients": True}})
    x, y, groups, inputs = training_arrays(table, FEATURES, conf)
    splits = make_folds(y, groups, conf["folds"], "blocked", conf["seed"])
    for _, test in splits:  # folds of whole wells
        assert set(groups[test]).isdisjoint(np.delete(groups, test))
    before = cross_validate(x, y, groups, conf, inputs=inputs, splits=splits)
    test = splits[0][1]
    relabelled = y.copy()
    relabelled[test] = (y[test] + 1) % 3
    after = cross_validate(x, relabelled, groups, conf, inputs=inputs, splits=splits)
    np.testing.assert_array_equal(after.oof[10][test], before.oof[10][test])
    np.testing.assert_array_equal(after.proba[10][test], before.proba[10][test])
    # the filter reads a well's own predictions only: others' predictions do not move it
    wells_, depths = table["well"].to_numpy(), table["depth"].to_numpy()
    other = np.where(wells_ == "W0", before.oof[10], (before.oof[10] + 1) % 3)
    w0 = wells_ == "W0"
    np.testing.assert_array_equal(
        smooth_per_well(wells_, depths, other, 5)[w0], smooth_per_well(wells_, depths, before.oof[10], 5)[w0]
    )
