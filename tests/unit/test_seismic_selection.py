"""GMMAttributeSelector: truth on generated data, eq. 7–9 by hand, search, degenerate and bad input."""

import itertools
import math
import warnings

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline

from overseer.errors import InputError
from overseer.seismic.reporting import selection_metrics, selection_summary
from overseer.seismic.selection import DegenerateAttributeWarning, GMMAttributeSelector, make_selection_data

FAST = dict(sem_iter=40, progress=False)  # search/plumbing tests: the fit quality is tested elsewhere


def _quiet_fit(selector: GMMAttributeSelector, x, y) -> GMMAttributeSelector:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateAttributeWarning)
        return selector.fit(x, y)


# --------------------------------------------------------------------------- truth and eqs. 7–9


@pytest.mark.parametrize("seed", range(5))
def test_informative_pair_wins_its_size_and_the_winner_contains_it(seed: int) -> None:
    """N = 6 attributes, k = 2 separate M = 3 facies (one of them bimodal), 4 are noise."""
    x, y, informative = make_selection_data(6, 2, 3, 200, seed=seed)
    sel = GMMAttributeSelector(random_state=seed, progress=False).fit(x, y)
    assert set(sel.best_per_n_.loc[2, "combination"]) == set(informative)
    assert set(informative) <= set(sel.best_combination_)
    assert sel.best_score_ == pytest.approx(sel.scores_["score"].max())  # eq. 9
    assert len(sel.scores_) == 2**6 - 1
    assert sel.scores_.groupby("n").size().tolist() == [math.comb(6, n) for n in range(1, 7)]
    # the two informative attributes head the single-attribute ranking, noise scores ~0
    singles = sel.scores_[sel.scores_["n"] == 1]
    assert set(singles["combination"].head(2).sum()) == set(informative)
    assert singles["score"].iloc[2:].max() < 0.05 < 1.0 < singles["score"].iloc[1]
    # a tolerance turns eq. 9 towards the smallest near-best combination
    near = GMMAttributeSelector(random_state=seed, progress=False, tolerance=0.05).fit(x, y)
    assert set(near.best_combination_) == set(informative)


def test_score_of_one_attribute_by_hand() -> None:
    """max_clusters = 1 and one attribute: eq. 8 is the mean over facies pairs of the 1-D
    Bhattacharyya distance (μ1−μ2)²/(4(σ1²+σ2²)) + ½ ln((σ1²+σ2²)/(2σ1σ2)), with the sample
    moments and the variance floor (× the overall variance) added."""
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.normal(0, 1, 100), rng.normal(3, 2, 100), rng.normal(-1, 0.5, 100)])
    y = np.repeat(["a", "b", "c"], 100)
    floor = 1e-3
    sel = GMMAttributeSelector(max_clusters=1, variance_floor=floor, progress=False).fit(values[:, None], y)
    moments = [(values[y == f].mean(), values[y == f].var() + floor * values.var()) for f in "abc"]

    def d(p, q):
        (m1, v1), (m2, v2) = p, q
        return (m1 - m2) ** 2 / (4 * (v1 + v2)) + 0.5 * math.log((v1 + v2) / (2 * math.sqrt(v1 * v2)))

    expected = (d(moments[0], moments[1]) + d(moments[0], moments[2]) + d(moments[1], moments[2])) / 3
    assert sel.best_score_ == pytest.approx(expected, rel=1e-9)
    assert sel.best_combination_ == ("x0",)
    assert set(sel.mixtures_) == {"a", "b", "c"}
    assert sel.mixtures_["b"].means[0, 0] == pytest.approx(values[y == "b"].mean())


def test_pipeline_with_random_forest() -> None:
    x, y, informative = make_selection_data(5, 2, 3, 120, seed=1)
    pipe = Pipeline(
        [
            ("select", GMMAttributeSelector(tolerance=0.05, **FAST)),
            ("rf", RandomForestClassifier(n_estimators=30, random_state=0)),
        ]
    )
    pipe.fit(x, y)
    selector = pipe.named_steps["select"]
    assert tuple(selector.get_feature_names_out()) == tuple(sorted(informative))
    assert selector.get_support().sum() == 2
    assert selector.transform(x).shape == (len(x), 2)
    assert pipe.named_steps["rf"].n_features_in_ == 2
    assert (pipe.predict(x) == y).mean() > 0.9
    assert pipe.score(x, y) > 0.9


def test_numpy_input_names_and_reproducibility() -> None:
    x, y, _ = make_selection_data(4, 2, 2, 100, seed=2)
    a = GMMAttributeSelector(random_state=3, **FAST).fit(x.to_numpy(), y)
    b = GMMAttributeSelector(random_state=3, **FAST).fit(x.to_numpy(), y)
    assert not hasattr(a, "feature_names_in_")
    assert all(name.startswith("x") for combo in a.scores_["combination"] for name in combo)
    pd.testing.assert_frame_equal(a.scores_, b.scores_)
    assert list(a.get_feature_names_out()) == list(a.best_combination_)


def test_two_workers_give_the_same_scores() -> None:
    x, y, _ = make_selection_data(5, 2, 3, 80, seed=4)
    one = GMMAttributeSelector(n_jobs=1, **FAST).fit(x, y)
    two = GMMAttributeSelector(n_jobs=2, **FAST).fit(x, y)
    pd.testing.assert_frame_equal(one.scores_, two.scores_)


# --------------------------------------------------------------------------- beam search


@pytest.mark.parametrize("n_attributes", [6, 7, 8])
def test_beam_search_matches_exhaustive(n_attributes: int) -> None:
    x, y, _ = make_selection_data(n_attributes, 3, 3, 60, seed=n_attributes)
    full = GMMAttributeSelector(search="exhaustive", **FAST).fit(x, y)
    beam = GMMAttributeSelector(search="beam", beam_width=6, **FAST).fit(x, y)
    assert full.search_ == "exhaustive" and beam.search_ == "beam"
    assert len(beam.scores_) < len(full.scores_)
    assert beam.best_per_n_["combination"].tolist() == full.best_per_n_["combination"].tolist()
    np.testing.assert_allclose(beam.best_per_n_["score"], full.best_per_n_["score"], rtol=1e-9)
    # a combination scores the same whichever search evaluates it
    merged = beam.scores_.merge(full.scores_, on="combination", suffixes=("_beam", "_full"))
    assert len(merged) == len(beam.scores_)
    np.testing.assert_allclose(merged["score_beam"], merged["score_full"], rtol=1e-9)


def test_auto_search_switches_to_beam() -> None:
    x, y, _ = make_selection_data(5, 2, 2, 60, seed=0)
    sel = GMMAttributeSelector(exhaustive_max_n=4, beam_width=2, **FAST).fit(x, y)
    assert sel.search_ == "beam"
    assert sel.scores_.groupby("n").size().max() <= 2 * 5


def test_the_selection_metrics_file_holds_numbers_only() -> None:
    """metrics.json beside selection.json: what dvc metrics show tabulates, no word (selection.json keeps those)."""
    x, y, informative = make_selection_data(5, 2, 2, 60, seed=0)
    sel = GMMAttributeSelector(exhaustive_max_n=4, beam_width=2, **FAST).fit(x, y)
    summary = selection_summary(sel, {"informative": list(informative), "uninformative": ["x4"]})
    metrics = selection_metrics(summary)
    assert metrics["best_score"] == summary["best_score"] and metrics["exhaustive_search"] is False
    assert metrics["combinations_evaluated"] == len(sel.scores_) and metrics["n_warnings"] == len(sel.warnings_)
    truth = metrics["truth"]
    assert sorted(truth) == ["n_uninformative_selected", "winner_is_informative_set", "winner_within_informative"]

    def leaves(values):
        return [v for x in values.values() for v in leaves(x)] if isinstance(values, dict) else [values]

    assert all(isinstance(v, int | float) for v in leaves(metrics))  # bool is an int; no str, no list


# --------------------------------------------------------------------------- degenerate attributes


def _with_flag(seed: int) -> tuple[pd.DataFrame, np.ndarray, tuple[str, ...]]:
    x, y, informative = make_selection_data(5, 2, 3, 200, seed=seed)
    x["flag"] = (np.random.default_rng(seed + 100).random(len(x)) < 0.5).astype(float)  # binary noise log
    return x, y, informative


def test_binary_attribute_does_not_win() -> None:
    x, y, informative = _with_flag(0)
    with pytest.warns(DegenerateAttributeWarning, match="'flag' takes only 2 distinct value"):
        sel = GMMAttributeSelector(progress=False).fit(x, y)
    assert any("'flag'" in w and "'facies0'" in w for w in sel.warnings_)
    assert "flag" not in sel.best_per_n_.loc[1, "combination"] + sel.best_per_n_.loc[2, "combination"]
    assert set(sel.best_per_n_.loc[2, "combination"]) == set(informative)
    scores = dict(zip(sel.scores_["combination"], sel.scores_["score"], strict=True))
    assert scores[("flag",)] < 0.05  # it separates nothing, and no distance explodes
    assert sel.scores_["score"].max() < 10

    def gains(attribute: str) -> np.ndarray:
        return np.array([scores[tuple(sorted((*c, attribute)))] - s for c, s in scores.items() if attribute not in c])

    # adding the flag to a combination adds what adding a (continuous) noise attribute adds
    noise = [a for a in x.columns if a not in informative and a != "flag"]
    assert np.median(gains("flag")) < 0.01
    assert gains("flag").max() <= max(gains(a).max() for a in noise) + 0.01
    near = GMMAttributeSelector(progress=False, tolerance=0.05)
    assert "flag" not in _quiet_fit(near, x, y).best_combination_


@pytest.mark.parametrize("share", [0.1, 0.3])
def test_unbalanced_binary_attribute_does_not_split_the_facies(share: float) -> None:
    """A flag set in 10 % or 30 % of the samples: a two-cluster fit onto its two values is
    rejected as collapsed, so every facies keeps one cluster and the flag scores ~0."""
    x, y, _ = make_selection_data(3, 1, 3, 200, seed=3)
    x["flag"] = (np.random.default_rng(9).random(len(x)) < share).astype(float)
    sel = _quiet_fit(GMMAttributeSelector(progress=False), x, y)
    row = sel.scores_[sel.scores_["combination"] == ("flag",)].iloc[0]
    assert row["n_clusters"] == (1, 1, 1)
    assert row["score"] < 0.05


def test_nearly_binary_attribute_is_named_and_does_not_win() -> None:
    """A flag with a little measurement noise: no upfront warning can see it, but every
    two-cluster fit collapses onto its two values; they are rejected and the flag is named."""
    x, y, informative = _with_flag(1)
    x["flag"] += np.random.default_rng(0).normal(0, 1e-3, len(x))
    with pytest.warns(DegenerateAttributeWarning, match="clusters collapsed onto it") as record:
        sel = GMMAttributeSelector(progress=False).fit(x, y)
    assert any("'flag'" in str(w.message) for w in record)
    assert set(sel.best_per_n_.loc[2, "combination"]) == set(informative)
    assert sel.scores_.loc[sel.scores_["combination"] == ("flag",), "score"].iloc[0] < 0.05
    assert sel.scores_["score"].max() < 10


def test_without_the_floor_a_nearly_binary_attribute_wins() -> None:
    """The failure the floor prevents (seen on well logs): clusters collapse onto the two values
    and the Bhattacharyya distance explodes."""
    x, y, _ = _with_flag(1)
    x["flag"] += np.random.default_rng(0).normal(0, 1e-3, len(x))
    sel = _quiet_fit(GMMAttributeSelector(variance_floor=1e-9, **FAST), x, y)
    assert all("flag" in combo for combo in sel.best_per_n_["combination"])  # in every top combination
    assert sel.best_per_n_.loc[1, "score"] > 1e3


def test_nearly_constant_attribute_within_a_facies_is_floored_and_named() -> None:
    x, y, _ = make_selection_data(4, 2, 3, 100, seed=5)
    x.loc[y == "facies1", "a0"] = 7.0  # a clipped log: constant in one facies
    with pytest.warns(DegenerateAttributeWarning) as record:
        sel = GMMAttributeSelector(**FAST).fit(x, y)
    texts = [str(w.message) for w in record]
    assert any("'a0'" in t and "'facies1'" in t for t in texts)
    assert sel.warnings_ == texts
    assert np.isfinite(sel.scores_["score"]).all()
    assert sel.scores_["score"].max() < 50  # bounded by the floor, not ~1/variance


def test_collinear_attributes_are_regularised_with_a_warning() -> None:
    x, y, informative = make_selection_data(4, 2, 3, 100, seed=6)
    x["copy"] = 2.0 * x[informative[0]] + 1.0
    with pytest.warns(DegenerateAttributeWarning, match="linearly dependent"):
        sel = GMMAttributeSelector(**FAST).fit(x, y)
    assert np.isfinite(sel.scores_["score"]).all()
    assert sel.scores_["score"].max() < 50


# --------------------------------------------------------------------------- bad input


def test_nan_names_the_column_and_row() -> None:
    x, y, _ = make_selection_data(3, 1, 2, 50, seed=0)
    x.loc[17, "a1"] = np.nan
    with pytest.raises(InputError, match=r"record 17: attribute 'a1' has a non-finite value \(nan\)"):
        GMMAttributeSelector(**FAST).fit(x, y)


def test_constant_attribute_names_the_column() -> None:
    x, y, _ = make_selection_data(3, 1, 2, 50, seed=0)
    x["a2"] = 4.5
    with pytest.raises(InputError, match="attribute 'a2' is constant"):
        GMMAttributeSelector(**FAST).fit(x, y)


def test_non_numeric_attribute_names_the_column() -> None:
    x, y, _ = make_selection_data(3, 1, 2, 50, seed=0)
    x["a1"] = "high"
    with pytest.raises(InputError, match="attribute 'a1' has dtype"):
        GMMAttributeSelector(**FAST).fit(x, y)


def test_fewer_than_two_facies() -> None:
    x, _, _ = make_selection_data(3, 1, 2, 50, seed=0)
    with pytest.raises(InputError, match=r"need at least 2 facies to compare, got 1 \('salt'\)"):
        GMMAttributeSelector(**FAST).fit(x, np.full(len(x), "salt"))


def test_small_facies_names_the_facies_and_counts() -> None:
    x, y, _ = make_selection_data(3, 1, 2, 50, seed=0)
    keep = np.concatenate([np.flatnonzero(y == "facies0"), np.flatnonzero(y == "facies1")[:7]])
    with pytest.raises(InputError, match=r"facies 'facies1' has 7 training samples; .* need at least 8"):
        GMMAttributeSelector(max_clusters=2, **FAST).fit(x.iloc[keep], y[keep])
    # one cluster per facies needs only N + 1 = 4 samples
    sel = GMMAttributeSelector(max_clusters=1, **FAST).fit(x.iloc[keep], y[keep])
    assert (sel.scores_["n_clusters"].map(max) == 1).all()


def test_label_count_mismatch() -> None:
    x, y, _ = make_selection_data(3, 1, 2, 50, seed=0)
    with pytest.raises(InputError, match="one per sample"):
        GMMAttributeSelector(**FAST).fit(x, y[:-1])


def test_missing_labels_sparse_input_and_no_attributes_are_clear_errors() -> None:
    # the conventions scikit-learn's estimator checks look for (tests/unit/test_seismic_selector_checks.py)
    from scipy import sparse

    x, y, _ = make_selection_data(3, 1, 2, 50, seed=0)
    with pytest.raises(InputError, match="requires y to be passed, but the target y is None"):
        GMMAttributeSelector(**FAST).fit(x, None)
    with pytest.raises(InputError, match="sparse input is not supported"):
        GMMAttributeSelector(**FAST).fit(sparse.csr_matrix(x.to_numpy()), y)
    with pytest.raises(InputError, match=r"0 feature\(s\) \(shape=\(100, 0\)\) while a minimum of 1 is required"):
        GMMAttributeSelector(**FAST).fit(x.iloc[:, :0], y)
    x.iloc[3, 0] = np.inf
    with pytest.raises(InputError, match=r"record 3: attribute 'a0' has a non-finite value \(inf\).* no NaN or inf"):
        GMMAttributeSelector(**FAST).fit(x, y)


# --------------------------------------------------------------------------- facies named by name


def test_warnings_and_errors_name_facies_by_name_not_by_label() -> None:
    """The stage fits facies ids 0..M-1 (meta.json's order) and passes the names: every message
    names the facies ("within facies 'salt'", never "within facies '1'"); the fit keeps the ids."""
    x, y, _ = make_selection_data(4, 2, 3, 100, seed=5)
    ids = np.searchsorted(["facies0", "facies1", "facies2"], y)
    names = ["background", "salt", "channel"]
    x.loc[ids == 1, "a0"] = 7.0  # constant in one facies: an upfront warning
    x["flag"] = (np.random.default_rng(0).random(len(x)) < 0.5).astype(float)  # binary: one per facies
    with pytest.warns(DegenerateAttributeWarning) as record:
        sel = GMMAttributeSelector(**FAST, facies_names=names).fit(x, ids)
    texts = [str(w.message) for w in record]
    assert sel.warnings_ == texts
    assert any("'a0'" in t and "within facies 'salt'" in t for t in texts)
    assert {name for name in names if any(f"'flag' takes only 2 distinct value(s) within facies '{name}'" in t
                                          for t in texts)} == set(names)  # fmt: skip
    assert not any(f"facies '{i}'" in t for t in texts for i in range(3))
    assert list(sel.classes_) == [0, 1, 2] and set(sel.mixtures_) == {"0", "1", "2"}  # labels as fitted
    # a mapping works too, and errors name the facies
    keep = np.concatenate([np.flatnonzero(ids == 0), np.flatnonzero(ids == 1)[:7]])
    with pytest.raises(InputError, match=r"facies 'salt' has 7 training samples"):
        GMMAttributeSelector(max_clusters=2, **FAST, facies_names={0: "background", 1: "salt"}).fit(
            x.iloc[keep, :3], ids[keep]
        )
    with pytest.raises(InputError, match=r"need at least 2 facies to compare, got 1 \('salt'\)"):
        GMMAttributeSelector(**FAST, facies_names=names).fit(x, np.ones(len(x), dtype=int))


def test_facies_names_is_a_plain_parameter() -> None:
    from sklearn.base import clone

    sel = GMMAttributeSelector(facies_names=["shale", "sand"])
    assert clone(sel).get_params()["facies_names"] == ["shale", "sand"]
    assert GMMAttributeSelector().get_params()["facies_names"] is None


# --------------------------------------------------------------------------- speed path (issue 11)


def test_scores_equal_those_of_the_implementation_before_the_shared_gemms() -> None:
    """Best score per size n recorded with the per-problem implementation (before issue 11) on
    the same data and seed: the shared-rows GEMMs, the joint CEM and the batched inverses change
    only rounding (observed ≤ 1e-14 relative), so the winners are the same and the scores agree
    within 1e-9."""
    x, y, _ = make_selection_data(5, 2, 3, 100, seed=0)
    sel = GMMAttributeSelector(sem_iter=40, progress=False).fit(x, y)
    before = {
        1: (("a3",), 2.8790680994392392),
        2: (("a3", "a4"), 4.52033541251371),
        3: (("a1", "a3", "a4"), 4.604255634940015),
        4: (("a1", "a2", "a3", "a4"), 4.611209901129094),
        5: (("a0", "a1", "a2", "a3", "a4"), 4.615339943401328),
    }
    for n, (combo, score) in before.items():
        assert sel.best_per_n_.loc[n, "combination"] == combo
        assert sel.best_per_n_.loc[n, "score"] == pytest.approx(score, rel=1e-9)
    assert sel.best_combination_ == ("a0", "a1", "a2", "a3", "a4")
    assert sel.best_score_ == pytest.approx(4.615339943401328, rel=1e-9)


def test_batched_and_single_combination_fits_are_identical() -> None:
    """A combination scores the same, bit for bit, in a batch of its size class as alone."""
    from overseer.seismic import selection as module

    x, y, _ = make_selection_data(5, 2, 3, 80, seed=3)
    values, labels, names, _ = module._as_table(x, y)
    prep, _ = module.prepare_data(
        values, labels, names, max_clusters=2, variance_floor=1e-3, resolution_floor=True, sem_iter=40, random_state=0
    )
    cfg = module.FitConfig(2, module.COVARIANCE_MODELS, 40, 100, 300)
    for n in (2, 3):
        combos = np.array(list(itertools.combinations(range(5), n)))
        batch = module.evaluate_combinations(prep, combos, cfg)
        for i, combo in enumerate(combos):
            alone = module.evaluate_combinations(prep, combo[None], cfg)
            assert alone.scores[0] == batch.scores[i]
            np.testing.assert_array_equal(alone.n_clusters[0], batch.n_clusters[i])
            np.testing.assert_array_equal(alone.model[0], batch.model[i])


def test_sixteen_attributes_exhaustive_on_a_tiny_sample_completes() -> None:
    """N = 16: all 65,535 combinations (issue 11; no timing asserted)."""
    x, y, informative = make_selection_data(16, 2, 2, 40, seed=0)
    sel = GMMAttributeSelector(
        search="exhaustive", sem_iter=1, cem_iter=2, kmeans_iter=2, covariance_models=("VVV",), progress=False
    )
    _quiet_fit(sel, x, y)
    assert sel.search_ == "exhaustive"
    assert len(sel.scores_) == 2**16 - 1
    assert sel.scores_.groupby("n").size().tolist() == [math.comb(16, n) for n in range(1, 17)]
    assert np.isfinite(sel.scores_["score"]).all()
    assert set(sel.best_per_n_.loc[1, "combination"]) <= set(informative)
