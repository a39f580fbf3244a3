"""The forest compiled for ONNX Runtime (overseer.seismic.compiled_forest): scikit-learn's labels on every row."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from overseer.errors import InputError
from overseer.seismic import compiled_forest as cf
from overseer.seismic.forest import build_pipeline
from overseer.seismic.predict_volume import predict_volume

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

SHAPE = (9, 8, 30)


def training(n: int = 600, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three overlapping facies (ids 1, 2, 3) in three float32 attributes."""
    rng = np.random.default_rng(seed)
    y = rng.integers(1, 4, n)
    means = np.array([[0.0, 1.0, -1.0], [1.0, 0.0, 0.5], [-1.0, -0.5, 1.0]], dtype=np.float32)
    x = (means[y - 1] + 0.9 * rng.standard_normal((n, 3))).astype(np.float32)
    return x, y


@pytest.fixture(scope="module")
def model() -> Pipeline:
    x, y = training()
    return build_pipeline(12, 7, True, "balanced", 0, 1).fit(x, y)


@pytest.fixture(scope="module")
def compiled(model: Pipeline) -> cf.CompiledForest:
    return cf.compile_forest(model)


def random_rows(n: int, seed: int = 1) -> np.ndarray:
    return (1.3 * np.random.default_rng(seed).standard_normal((n, 3))).astype(np.float32)


def thresholds_exactly(forest: RandomForestClassifier, n: int, seed: int = 2) -> np.ndarray:
    """Rows whose every feature is a split threshold of that feature (float32 nearest, rounded down,
    or one float32 step either side): the values where float32 comparisons can go the other way."""
    rng = np.random.default_rng(seed)
    cols = []
    for f in range(forest.n_features_in_):
        t = np.concatenate([e.tree_.threshold[e.tree_.feature == f] for e in forest.estimators_])
        t32, floor = t.astype(np.float32), cf.float32_floor(t)
        inf = np.float32(np.inf)
        candidates = np.concatenate([t32, floor, np.nextafter(floor, inf), np.nextafter(t32, -inf)])
        cols.append(rng.choice(candidates, n))
    return np.column_stack(cols).astype(np.float32)


def test_float32_floor_keeps_every_float64_comparison() -> None:
    rng = np.random.default_rng(0)
    t = rng.standard_normal(20_000) * 10.0 ** rng.integers(-3, 4, 20_000)
    t[:3] = [1e300, -1e300, 0.0]
    floor = cf.float32_floor(t)
    assert floor.dtype == np.float32 and np.all(floor.astype(np.float64) <= t)
    inf = np.float32(np.inf)
    with np.errstate(over="ignore"):
        nearest = t.astype(np.float32)
        for x in (floor, np.nextafter(floor, inf), np.nextafter(floor, -inf), nearest):
            np.testing.assert_array_equal(x.astype(np.float64) <= t, x <= floor)
    # the float32 nearest a threshold can lie above it: a row on it would go left in float32, right in sklearn
    assert np.any(nearest.astype(np.float64) > t)


def test_probabilities_and_labels_match_sklearn_on_random_rows(model, compiled, monkeypatch) -> None:
    monkeypatch.setattr(cf, "BATCH_ROWS", 4096)  # several batches, reordered, two threads
    compiled.n_threads = 2
    x = random_rows(40_000)
    expected = model.predict_proba(x)
    got = cf.predict_proba(compiled, x)
    assert got.shape == expected.shape and got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(compiled.predict(x), model.predict(x))
    np.testing.assert_array_equal(compiled.classes_, [1, 2, 3])
    compiled.reorder, compiled.n_threads = False, 1  # the order given: the same numbers
    np.testing.assert_array_equal(compiled.predict_proba(x), got)
    compiled.reorder = True


def test_labels_match_on_rows_exactly_at_split_thresholds(model, compiled) -> None:
    forest = model[-1]
    rows = thresholds_exactly(forest, 30_000)  # in the forest's input space (after the scaler)
    expected = forest.predict_proba(rows)
    got = compiled.forest_proba(rows)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(got.argmax(axis=1), expected.argmax(axis=1))
    on_paths = cf.threshold_rows(forest, compiled.preprocess.transform(random_rows(3000)))
    np.testing.assert_array_equal(compiled.forest_proba(on_paths).argmax(1), forest.predict_proba(on_paths).argmax(1))


def test_a_bare_forest_at_thresholds_of_its_raw_inputs() -> None:
    x, y = training(400, seed=3)
    forest = RandomForestClassifier(n_estimators=8, max_depth=6, random_state=0).fit(x, y)
    compiled = cf.compile_forest(forest)
    assert compiled.preprocess is None
    rows = np.concatenate([thresholds_exactly(forest, 20_000), x])
    np.testing.assert_allclose(compiled.predict_proba(rows), forest.predict_proba(rows), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(compiled.predict(rows), forest.predict(rows))
    agreement = cf.check_against_sklearn(compiled, x)
    assert agreement.ok and agreement.rows == 3 * len(x)


def test_ties_are_decided_by_sklearn() -> None:
    # duplicate rows with both labels: every leaf is 50/50, so every row is an exact tie
    x = np.repeat(np.array([[0.0], [1.0]], dtype=np.float32), 2, axis=0)
    forest = RandomForestClassifier(n_estimators=3, bootstrap=False, random_state=0).fit(x, [0, 1, 0, 1])
    compiled = cf.compile_forest(forest)
    rows = np.tile(x, (6000, 1))
    got = compiled.predict_proba(rows)
    assert compiled.last_refined == len(rows)
    np.testing.assert_array_equal(got, forest.predict_proba(rows))
    np.testing.assert_array_equal(compiled.predict(rows), forest.predict(rows))


def test_non_finite_rows_are_left_to_sklearn(model, compiled) -> None:
    x = random_rows(50)
    x[3, 1] = np.inf
    with pytest.raises(ValueError, match="infinity"):  # scikit-learn's own error
        compiled.predict_proba(x)
    # a forest trained with missing values routes NaN as it learned to: the compiled one leaves them to it
    xt, y = training(300)
    xt[::7, 0] = np.nan
    forest = RandomForestClassifier(n_estimators=5, max_depth=5, random_state=0).fit(xt, y)
    rows = random_rows(2000)
    rows[::3, 0] = np.nan
    np.testing.assert_array_equal(cf.compile_forest(forest).predict_proba(rows), forest.predict_proba(rows))


def survey(seed: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    volumes = {name: (1.2 * rng.standard_normal(SHAPE)).astype(np.float32) for name in ("amp", "freq", "env")}
    volumes["amp"][0, 0, :4] = np.nan
    return volumes


def test_predict_volume_compiled_equals_sklearn_voxel_for_voxel(model, tmp_path) -> None:
    volumes, names = survey(), ["amp", "freq", "env"]
    runs = {}
    for engine in ("sklearn", "compiled"):
        out = tmp_path / engine
        with warnings.catch_warnings():
            warnings.simplefilter("error", cf.CompiledForestWarning)
            stats = predict_volume(
                model, volumes, names, out / "facies.npy", 500, probabilities_dir=out, progress=False, engine=engine
            )
        runs[engine] = (
            stats,
            np.load(out / "facies.npy"),
            np.stack([np.load(out / f"probability_{c}.npy") for c in (1, 2, 3)]),
        )
    (s_stats, s_facies, s_proba), (c_stats, c_facies, c_proba) = runs["sklearn"], runs["compiled"]
    assert s_stats["engine"] == "sklearn" and c_stats["engine"] == cf.BACKEND
    np.testing.assert_array_equal(c_facies, s_facies)
    assert (c_facies == -1).sum() == 4 and c_stats["facies_counts"] == s_stats["facies_counts"]
    np.testing.assert_allclose(c_proba, s_proba, rtol=0, atol=1e-6)
    default = predict_volume(model, volumes, names, tmp_path / "default.npy", progress=False)
    assert default["engine"] == cf.BACKEND
    np.testing.assert_array_equal(np.load(tmp_path / "default.npy"), s_facies)


def test_fallback_when_onnxruntime_is_missing(model, tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    volumes, names = survey(), ["amp", "freq", "env"]
    with pytest.warns(cf.CompiledForestWarning, match="unavailable"):
        stats = predict_volume(model, volumes, names, tmp_path / "f.npy", progress=False)
    assert stats["engine"] == "sklearn"
    x = np.column_stack([volumes[n].reshape(-1) for n in names])
    ok = np.isfinite(x).all(axis=1)
    np.testing.assert_array_equal(np.load(tmp_path / "f.npy").reshape(-1)[ok], model.predict(x[ok]))


def test_fallback_when_the_engines_disagree(model, monkeypatch) -> None:
    def wrong(self, xs):
        p = np.zeros((len(xs), 3))
        p[:, 0] = 1.0
        return p

    monkeypatch.setattr(cf.CompiledForest, "forest_proba", wrong)
    with pytest.warns(cf.CompiledForestWarning, match="disagrees"):
        predictor, used = cf.verified_predictor(model, random_rows(500))
    assert predictor is model and used == "sklearn"


def test_models_that_do_not_compile(tmp_path) -> None:
    x, y = training(300)
    hgb = Pipeline([("scale", StandardScaler()), ("forest", HistGradientBoostingClassifier(max_iter=5))]).fit(x, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cf.verified_predictor(hgb, x) == (hgb, "sklearn")  # auto: quietly scikit-learn
    with pytest.warns(cf.CompiledForestWarning, match="not compiled"):
        assert cf.verified_predictor(hgb, x, engine="compiled") == (hgb, "sklearn")
    with pytest.raises(cf.UnsupportedModelError):
        cf.compile_forest(hgb)
    with pytest.raises(cf.CompileError, match="not fitted"):
        cf.compile_forest(RandomForestClassifier())
    with pytest.raises(InputError, match="engine"):
        predict_volume(hgb, survey(), ["amp", "freq", "env"], tmp_path / "f.npy", engine="fast", progress=False)


def test_threads_follow_joblib_conventions(model) -> None:
    forest = model[-1]
    assert cf.resolve_threads(None, forest) == 1  # build_pipeline(..., n_jobs=1)
    assert cf.resolve_threads(3, forest) == 3
    assert cf.resolve_threads(-1, None) >= 1
    assert cf.compile_forest(model, n_jobs=2).n_threads == 2
