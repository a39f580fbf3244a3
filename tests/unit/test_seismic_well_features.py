"""Features along depth per well (WellSequenceFeatures) and the per-well mode filter (smooth_per_well)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from overseer.errors import InputError
from overseer.seismic.well_features import (
    WellSequenceFeatures,
    check_window,
    encoded_columns,
    model_inputs,
    model_matrix,
    smooth_per_well,
    well_features_enabled,
)

LOGS = ["gr", "rhob"]


def wells_table(seed: int = 0) -> pd.DataFrame:
    """Three wells of 6, 1 and 9 samples at irregular depths, rows shuffled."""
    rng = np.random.default_rng(seed)
    parts = []
    for well, n in (("A", 6), ("B", 1), ("C", 9)):
        depth = 1000 + np.cumsum(rng.uniform(0.2, 1.0, n))
        parts.append(
            pd.DataFrame({"well": well, "depth": depth, "gr": rng.normal(60, 10, n), "rhob": rng.normal(2.4, 0.1, n)})
        )
    return pd.concat(parts, ignore_index=True).sample(frac=1.0, random_state=seed).reset_index(drop=True)


def _expected(table: pd.DataFrame, k: int, gradients: bool) -> pd.DataFrame:
    """Row by row, from each well sorted by depth: what the transformer must give."""
    out = []
    for _, well in table.groupby("well", sort=False):
        well = well.sort_values("depth")
        values, n = well[LOGS].to_numpy(), len(well)
        for i, label in enumerate(well.index):
            row = {log: values[i, j] for j, log in enumerate(LOGS)}
            for j, log in enumerate(LOGS):
                for d in range(1, k + 1):
                    row[f"{log}_above{d}"] = values[max(i - d, 0), j]
                    row[f"{log}_below{d}"] = values[min(i + d, n - 1), j]
            if gradients:
                for j, log in enumerate(LOGS):
                    g = np.gradient(values[:, j], well["depth"].to_numpy()) if n > 1 else np.zeros(n)
                    row[f"{log}_gradient"] = g[i]
            out.append(pd.Series(row, name=label))
    return pd.DataFrame(out).loc[table.index]


@pytest.mark.parametrize(("k", "gradients"), [(1, False), (2, True), (0, True), (3, False)])
def test_neighbours_and_gradients_follow_depth_within_each_well(k: int, gradients: bool) -> None:
    table = wells_table()
    step = WellSequenceFeatures(neighbours=k, gradients=gradients).fit(table[["well", "depth", *LOGS]])
    got = step.transform(table[["well", "depth", *LOGS]])
    expected = _expected(table, k, gradients)
    assert list(step.get_feature_names_out()) == list(expected.columns)  # logs, per log above/below, gradients
    np.testing.assert_allclose(got, expected.to_numpy(dtype=np.float64), rtol=0, atol=1e-12)


def test_output_does_not_depend_on_the_row_order() -> None:
    table = wells_table(1)
    step = WellSequenceFeatures(neighbours=2, gradients=True)
    first = step.fit_transform(table[["well", "depth", *LOGS]])
    shuffled = table.sample(frac=1.0, random_state=7)
    second = step.fit_transform(shuffled[["well", "depth", *LOGS]])
    np.testing.assert_array_equal(second, first[table.index.get_indexer(shuffled.index)])
    # well codes (what model_matrix passes) instead of names: the same features
    codes = model_matrix(table, ["well", "depth", *LOGS])
    np.testing.assert_array_equal(step.fit_transform(codes), first)


def test_names_of_an_array_input_and_given_names() -> None:
    step = WellSequenceFeatures(neighbours=1).fit(np.c_[np.zeros(3), np.arange(3.0), np.ones(3)])
    assert list(step.get_feature_names_out()) == ["x2", "x2_above1", "x2_below1"]
    assert list(step.get_feature_names_out(["well", "depth", "gr"])) == ["gr", "gr_above1", "gr_below1"]


def test_a_repeated_depth_is_an_error_for_gradients_only() -> None:
    table = pd.DataFrame({"well": ["A", "A", "A"], "depth": [1.0, 2.0, 2.0], "gr": [1.0, 2.0, 3.0]})
    WellSequenceFeatures(neighbours=1).fit_transform(table)  # neighbours: stable order, fine
    with pytest.raises(InputError, match=r"well 'A' has depth 2 twice.*well_features\.gradients"):
        WellSequenceFeatures(gradients=True).fit_transform(table)


def test_model_inputs_and_matrix() -> None:
    assert model_inputs(["gr", "rhob"], {"neighbours": 0, "gradients": False}) == ["gr", "rhob"]
    assert model_inputs(["gr"], {"neighbours": 1}) == ["well", "depth", "gr"]
    assert model_inputs(["well", "depth", "gr"], {"gradients": True}) == ["well", "depth", "gr"]  # idempotent
    assert not well_features_enabled(None) and well_features_enabled({"gradients": True})
    table = wells_table()
    plain = model_matrix(table, LOGS)
    assert plain.dtype == np.float32 and plain.shape == (len(table), 2)
    keyed = model_matrix(table, ["well", "depth", *LOGS])
    assert keyed.dtype == np.float64
    np.testing.assert_array_equal(keyed[:, 0], pd.factorize(table["well"], sort=True)[0])
    np.testing.assert_array_equal(keyed[:, 1], table["depth"].to_numpy())


# ---------------------------------------------------------------- the scikit-learn estimator checks
GRADIENT_FAILURES = {
    "check_estimators_dtypes": (
        "its integer data repeats a (well, depth) pair, and a depth gradient at a repeated depth is the "
        "project's InputError (a division by zero), not a number"
    ),
}


def test_encoded_columns_pass_through_without_neighbours_or_gradients() -> None:
    """One-hot formation columns (ingest's ``<column>:<level>``) keep their values and get no sequence features."""
    table = wells_table(2)
    table["Formation:A1 SH"] = (table["depth"] > table["depth"].median()).astype(np.float64)
    table["Formation:B1 LM"] = 1.0 - table["Formation:A1 SH"]
    inputs = ["well", "depth", "gr", "Formation:A1 SH", "rhob", "Formation:B1 LM"]
    assert encoded_columns(inputs) == [3, 5] and encoded_columns(["gr", "rhob"]) == []
    x = table[inputs]
    step = WellSequenceFeatures(neighbours=1, gradients=True, passthrough=(3, 5)).fit(x)
    names = list(step.get_feature_names_out())
    sequence = ["gr_above1", "gr_below1", "rhob_above1", "rhob_below1", "gr_gradient", "rhob_gradient"]
    assert names == ["gr", "Formation:A1 SH", "rhob", "Formation:B1 LM", *sequence]
    got = pd.DataFrame(step.transform(x), columns=names, index=table.index)
    # the logs' sequence features are those of the logs alone: the encoded columns change nothing
    logs_only = WellSequenceFeatures(neighbours=1, gradients=True).fit(table[["well", "depth", *LOGS]])
    alone = pd.DataFrame(logs_only.transform(table[["well", "depth", *LOGS]]),
                         columns=logs_only.get_feature_names_out(), index=table.index)  # fmt: skip
    pd.testing.assert_frame_equal(got[alone.columns], alone)
    pd.testing.assert_frame_equal(
        got[["Formation:A1 SH", "Formation:B1 LM"]], x[["Formation:A1 SH", "Formation:B1 LM"]]
    )
    with pytest.raises(ValueError, match="passthrough column 1"):
        WellSequenceFeatures(neighbours=1, passthrough=(1,)).fit(x)


def test_training_passes_ingests_one_hot_columns_through() -> None:
    from overseer.seismic.forest import train_forest

    table = wells_table(3)
    table = pd.concat([table, wells_table(4).assign(well=lambda t: t["well"] + "2")], ignore_index=True)
    table["facies"] = (table["gr"] > 60).astype(int)
    table["Formation:A"] = (table["depth"] > 1003).astype(np.float32)
    cfg = {"tree_counts": [5], "folds": 2, "n_jobs": 1, "well_features": {"neighbours": 1, "gradients": True}}
    trained = train_forest(table, ["gr", "Formation:A"], cfg)
    assert trained.feature_names == ["gr", "Formation:A", "gr_above1", "gr_below1", "gr_gradient"]
    assert trained.pipeline.named_steps["well_features"].passthrough == (3,)  # saved with the model


@parametrize_with_checks(
    [WellSequenceFeatures(neighbours=1, gradients=False), WellSequenceFeatures(neighbours=0, gradients=True)],
    expected_failed_checks=lambda estimator: GRADIENT_FAILURES if estimator.gradients else {},
)
def test_scikit_learn_estimator_checks(estimator, check) -> None:
    check(estimator)


# ---------------------------------------------------------------- smoothing
def test_mode_filter_per_well_in_depth_order() -> None:
    facies = np.array([0, 0, 1, 0, 0, 2, 2, 0, 2, 2])
    wells = np.array(["A"] * 5 + ["B"] * 5)
    depths = np.r_[np.arange(5.0), np.arange(5.0)]
    np.testing.assert_array_equal(smooth_per_well(wells, depths, facies, 3), [0, 0, 0, 0, 0, 2, 2, 2, 2, 2])
    np.testing.assert_array_equal(smooth_per_well(wells, depths, facies, 1), facies)
    # the same samples in another order: the same facies per sample
    order = np.random.default_rng(0).permutation(10)
    np.testing.assert_array_equal(
        smooth_per_well(wells[order], depths[order], facies[order], 3), smooth_per_well(wells, depths, facies, 3)[order]
    )
    # a window never mixes wells: B's first sample would be 0 if A's last two were its neighbours
    assert smooth_per_well(wells, depths, facies, 5)[5] == 2


def test_ties_keep_the_samples_own_facies_and_names_work() -> None:
    names = np.array(["sand", "shale", "salt"], dtype=object)
    wells, depths = np.zeros(3), np.arange(3.0)
    # window 3 at the top sample sees [sand, shale]: a tie, the sample keeps sand
    np.testing.assert_array_equal(smooth_per_well(wells, depths, names, 3), ["sand", "shale", "salt"])
    assert smooth_per_well([], [], np.array([]), 3).size == 0


@pytest.mark.parametrize("window", [0, 2, 4, -1, 1.0, True])
def test_bad_windows_name_the_param(window) -> None:
    with pytest.raises(InputError, match=r"train_rf\.smooth\.window"):
        check_window(window)
