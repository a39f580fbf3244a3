"""rfc3d: cross-validated random forest (overseer.seismic.forest) and chunked volume prediction."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier

from overseer.errors import InputError
from overseer.seismic.forest import (
    CV_COLUMNS,
    HGB_DEFAULTS,
    best_tree_count,
    build_pipeline,
    check_source,
    cross_validate,
    cross_validate_tree_counts,
    feature_columns,
    make_folds,
    model_config,
    resolve_config,
    spatial_groups,
    train_forest,
    training_arrays,
)
from overseer.seismic.predict_volume import plan_chunks, predict_volume
from overseer.seismic.well_features import model_matrix

CFG = {"tree_counts": [5, 10, 20], "max_depth": 6, "folds": 5, "cv_scheme": "blocked", "block_size": 4, "n_jobs": 1}


def picks_table(n_il: int = 30, n_xl: int = 20, seed: int = 0) -> pd.DataFrame:
    """One pick per trace; facies 1/2/3 from amp + 0.4·freq, two pure-noise attributes."""
    rng = np.random.default_rng(seed)
    il, xl = np.meshgrid(np.arange(n_il), np.arange(n_xl), indexing="ij")
    n = il.size
    amp, freq = rng.normal(size=n), rng.normal(size=n)
    facies = np.digitize(amp + 0.4 * freq, [-0.5, 0.5]) + 1
    return pd.DataFrame(
        {
            "inline": il.ravel(),
            "crossline": xl.ravel(),
            "sample": rng.integers(0, 50, n),
            "facies": facies,
            "amp": amp.astype(np.float32),
            "freq": freq.astype(np.float32),
            "noise1": rng.normal(size=n).astype(np.float32),
            "noise2": rng.normal(size=n).astype(np.float32),
        }
    )


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return picks_table()


@pytest.fixture(scope="module")
def result(table: pd.DataFrame):
    return train_forest(table, None, CFG)


# ---------------------------------------------------------------- groups and folds


def test_spatial_groups_on_a_hand_made_grid() -> None:
    # inline 0..3 x crossline 0..3, blocks of 2x2: block (il//2, xl//2) numbered lexicographically
    il, xl = np.meshgrid(np.arange(4), np.arange(4), indexing="ij")
    grid = pd.DataFrame({"inline": il.ravel(), "crossline": xl.ravel()})
    expected = [0, 0, 1, 1, 0, 0, 1, 1, 2, 2, 3, 3, 2, 2, 3, 3]
    np.testing.assert_array_equal(spatial_groups(grid, 2), expected)
    # blocks are aligned to coordinate 0, not to the first pick: inlines 3,4 fall in blocks 1 and 2
    shifted = pd.DataFrame({"inline": [3, 4, 5, 4], "crossline": [0, 0, 0, 1]})
    np.testing.assert_array_equal(spatial_groups(shifted, 2), [0, 1, 1, 1])


def test_well_tables_are_grouped_by_well() -> None:
    wells = pd.DataFrame({"depth": [1.0, 2.0, 1.0, 3.0], "well": ["A-1", "A-1", "B-2", "C-3"], "gr": [1, 2, 3, 4]})
    np.testing.assert_array_equal(spatial_groups(wells, 8), ["A-1", "A-1", "B-2", "C-3"])
    with pytest.raises(InputError, match="well"):
        spatial_groups(wells.drop(columns="well"), 8)


def test_blocked_folds_never_split_a_block(table: pd.DataFrame) -> None:
    groups = spatial_groups(table, 4)
    assert np.unique(groups).size == 8 * 5  # ceil(30/4) x ceil(20/4)
    folds = make_folds(table["facies"].to_numpy(), groups, 5, "blocked", 0)
    assert len(folds) == 5
    tested = np.concatenate([test for _, test in folds])
    assert np.sort(tested).tolist() == list(range(len(table)))  # every row tested exactly once
    for train, test in folds:
        assert not set(groups[train]) & set(groups[test])


def test_random_folds_overstate_skill_on_correlated_voxels() -> None:
    # Facies and attribute "signatures" are constant over 5x5 blocks and unrelated to each other, so
    # the attributes only identify a location. Random folds test on neighbours of training voxels
    # (near-perfect scores); blocked folds test unseen blocks, where nothing can be learnt.
    rng = np.random.default_rng(3)
    il, xl = np.meshgrid(np.arange(40), np.arange(40), indexing="ij")
    block = (il // 5) * 8 + xl // 5
    block_facies = rng.integers(0, 3, 64)
    signature = rng.uniform(-5, 5, (64, 2))
    x = (signature[block.ravel()] + rng.normal(0, 0.05, (1600, 2))).astype(np.float32)
    y = block_facies[block.ravel()]
    groups = spatial_groups(pd.DataFrame({"inline": il.ravel(), "crossline": xl.ravel()}), 5)
    kw = {"tree_counts": (10,), "max_depth": 8, "random_state": 0, "n_jobs": 1}
    random = cross_validate_tree_counts(x, y, groups, scheme="random", **kw)
    blocked = cross_validate_tree_counts(x, y, groups, scheme="blocked", **kw)
    assert set(random["scheme"]) == {"random"} and set(blocked["scheme"]) == {"blocked"}
    assert random["macro_f1_mean"].iloc[0] > 0.95
    assert blocked["macro_f1_mean"].iloc[0] < 0.6


# ---------------------------------------------------------------- cross-validation and training


def test_cv_table_has_one_row_per_tree_count_and_fold(result) -> None:
    cv = result.cv
    assert list(cv.columns) == CV_COLUMNS
    assert cv.shape == (15, len(CV_COLUMNS))
    assert cv.groupby("n_estimators")["fold"].apply(list).to_dict() == {n: [0, 1, 2, 3, 4] for n in (5, 10, 20)}
    assert (cv["n_train"] + cv["n_test"] == 600).all()
    for n, rows in cv.groupby("n_estimators"):
        assert rows["macro_f1_mean"].iloc[0] == pytest.approx(rows["macro_f1"].mean())
        assert rows["accuracy_std"].iloc[0] == pytest.approx(np.std(rows["accuracy"]))
        assert rows["macro_f1"].between(0.7, 1.0).all(), n  # facies are learnable from amp and freq


def test_best_tree_count_is_the_best_mean_macro_f1(result) -> None:
    summary = result.cv_summary
    assert list(summary.index) == [5, 10, 20]
    assert result.best_n_estimators == summary["macro_f1_mean"].idxmax()
    assert result.pipeline[-1].n_estimators == result.best_n_estimators
    # hand-made table: 100 and 200 tie on macro-F1 (the fewer trees win), 50 has the best accuracy
    rows = [(50, 0.80, 0.99), (100, 0.90, 0.50), (200, 0.90, 0.60)]
    cv = pd.DataFrame(
        [
            {"scheme": "random", "n_estimators": n, "macro_f1_mean": f1, "accuracy_mean": acc}
            | {"accuracy_std": 0.0, "macro_f1_std": 0.0}
            for n, f1, acc in rows
        ]
    )
    assert best_tree_count(cv) == 100


def test_warm_started_cv_equals_separate_fits(table: pd.DataFrame) -> None:
    # The CV grows one forest per fold through the tree counts; the scores must equal a fresh fit per count.
    x, y = table[["amp", "freq"]].to_numpy(np.float32), table["facies"].to_numpy()
    groups = spatial_groups(table, 4)
    kw = {"folds": 5, "scheme": "blocked", "max_depth": 4, "random_state": 1, "n_jobs": 1}
    grown = cross_validate_tree_counts(x, y, groups, tree_counts=(3, 7), **kw)
    alone = cross_validate_tree_counts(x, y, groups, tree_counts=(7,), **kw)
    pd.testing.assert_frame_equal(grown[grown["n_estimators"] == 7].reset_index(drop=True), alone)


def test_train_forest_scores_with_the_public_cv_fold_by_fold(table: pd.DataFrame, result) -> None:
    # one fold loop: train_forest's CV table is cross_validate's, and on_fold sees each fold's rows as they come
    conf = resolve_config(CFG)
    x, y, groups, _ = training_arrays(table, None, conf)
    seen: list[tuple[int, pd.DataFrame]] = []
    cv = cross_validate(x, y, groups, conf, on_fold=lambda fold, rows: seen.append((fold, rows)))
    pd.testing.assert_frame_equal(cv.table, result.cv)
    assert cv.classes.tolist() == result.classes == [1, 2, 3]
    assert [fold for fold, _ in seen] == [0, 1, 2, 3, 4]
    for fold, rows in seen:
        assert rows["n_estimators"].tolist() == [5, 10, 20] and set(rows["fold"]) == {fold}
        expected = cv.table[cv.table["fold"] == fold][rows.columns].reset_index(drop=True)
        pd.testing.assert_frame_equal(rows, expected)
    best = result.best_n_estimators  # the pooled out-of-fold predictions behind cv_report
    assert result.cv_report.confusion.sum() == len(table) and (cv.oof[best] >= 0).all()


def test_an_exception_from_on_fold_ends_the_cv_and_propagates(table: pd.DataFrame) -> None:
    optuna = pytest.importorskip("optuna")
    conf = resolve_config(CFG | {"tree_counts": [3]})
    x, y, groups, _ = training_arrays(table, ["amp"], conf)
    calls = []

    def prune(fold: int, rows: pd.DataFrame) -> None:
        calls.append(fold)
        if fold == 1:
            raise optuna.TrialPruned(f"pruned at fold {fold}")

    with pytest.raises(optuna.TrialPruned, match="fold 1"):
        cross_validate(x, y, groups, conf, on_fold=prune)
    assert calls == [0, 1]


def test_resolve_config_fills_defaults_and_checks_values() -> None:
    conf = resolve_config({"class_weight": "None", "tree_counts": [7], "stage_only_key": 1})
    assert conf["class_weight"] is None and conf["tree_counts"] == [7] and "stage_only_key" not in conf
    assert conf["folds"] == 5 and conf["cv_scheme"] == "blocked"
    for bad, match in (({"class_weight": "heavy"}, "class_weight"), ({"max_depth": 0}, "max_depth")):
        with pytest.raises(InputError, match=match):
            resolve_config(bad)


def test_scheme_is_recorded(table: pd.DataFrame, result) -> None:
    assert result.scheme == "blocked" and set(result.cv["scheme"]) == {"blocked"}
    random = train_forest(table, ["amp", "freq"], CFG | {"cv_scheme": "random", "tree_counts": [5]})
    assert random.scheme == "random" and set(random.cv["scheme"]) == {"random"}
    assert random.summary()["cv_scheme"] == "random"


def test_importance_sums_to_one_and_ranks_the_informative_attribute_first(result) -> None:
    imp = result.importance
    assert imp.sum() == pytest.approx(1.0)
    assert list(imp.index[:2]) == ["amp", "freq"]  # facies = digitize(amp + 0.4 freq)
    assert imp["amp"] > 0.5 and imp[["noise1", "noise2"]].max() < 0.1
    assert imp.is_monotonic_decreasing
    assert result.feature_names == ["amp", "freq", "noise1", "noise2"] == feature_columns(result_table())
    # eq. 3 sums raw gains over trees; scikit-learn averages per-tree-normalised gains: same ranking
    sk = pd.Series(result.pipeline[-1].feature_importances_, index=result.feature_names)
    assert list(sk.sort_values(ascending=False).index) == list(imp.index)


def result_table() -> pd.DataFrame:
    return picks_table()


def test_balanced_class_weights(table: pd.DataFrame, result) -> None:
    assert result.pipeline[-1].class_weight == "balanced"
    counts = table["facies"].value_counts()
    for facies, n in counts.items():  # n_samples / (n_classes * count)
        assert result.class_weights[facies] == pytest.approx(600 / (3 * n))
    plain = train_forest(table, ["amp"], CFG | {"class_weight": None, "tree_counts": [5]})
    assert plain.pipeline[-1].class_weight is None and set(plain.class_weights.values()) == {1.0}


def test_balanced_class_weights_raise_minority_recall() -> None:
    # 8 % minority facies, shifted by 1.2 sigma on one attribute: shallow unweighted trees almost
    # never predict it; balanced weights move the decision boundary towards the majority.
    rng = np.random.default_rng(0)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = (rng.random(n) < 0.08).astype(int)
        x = rng.normal(size=(n, 2))
        x[:, 0] += 1.2 * y
        return x.astype(np.float32), y

    (x, y), (x_test, y_test) = sample(3000), sample(3000)
    recall = {}
    for weight in (None, "balanced"):
        pred = build_pipeline(30, 3, True, weight, 0, 1).fit(x, y).predict(x_test)
        recall[weight] = (pred[y_test == 1] == 1).mean()
    assert recall[None] < 0.2 < 0.5 < recall["balanced"]


def test_too_few_samples_per_facies(table: pd.DataFrame) -> None:
    rare = table.copy()
    rare.loc[:2, "facies"] = 9  # three picks of facies 9 cannot fill five folds
    with pytest.raises(InputError, match=r"facies \{9: 3\}"):
        train_forest(rare, ["amp", "freq"], CFG)


def test_bad_input_is_an_input_error(table: pd.DataFrame) -> None:
    with pytest.raises(InputError, match="missing_attr"):
        train_forest(table, ["amp", "missing_attr"], CFG)
    with pytest.raises(InputError, match="cv_scheme"):
        train_forest(table, ["amp"], CFG | {"cv_scheme": "spatial"})
    with pytest.raises(InputError, match="spatial blocks"):  # 30x20 in one 64x64 block: 1 group < 5 folds
        train_forest(table, ["amp"], CFG | {"block_size": 64})


def test_well_log_table_trains_with_wells_as_folds() -> None:
    rng = np.random.default_rng(5)
    n = 300
    gr = rng.normal(size=n)
    wells = pd.DataFrame(
        {
            "depth": np.tile(np.arange(50.0), 6),
            "well": np.repeat([f"W{i}" for i in range(6)], 50),
            "gr": gr.astype(np.float32),
            "rho": rng.normal(size=n).astype(np.float32),
            "facies": (gr > 0).astype(int),
        }
    )
    fitted = train_forest(wells, None, CFG | {"tree_counts": [5]})
    assert fitted.feature_names == ["gr", "rho"]
    assert fitted.importance.index[0] == "gr"
    assert (fitted.cv["n_test"] % 50 == 0).all()  # whole wells per fold


# ---------------------------------------------------------------- volume prediction

SHAPE = (6, 5, 7)  # one inline slab = 35 voxels


def test_plan_chunks_by_hand() -> None:
    # 70 voxels = two whole inline slabs per chunk; the last chunk holds what is left
    assert plan_chunks(SHAPE, 70) == [
        (slice(0, 2), slice(0, 5)),
        (slice(2, 4), slice(0, 5)),
        (slice(4, 6), slice(0, 5)),
    ]
    # 20 voxels < one slab: runs of 20 // 7 = 2 whole traces inside one inline
    plan = plan_chunks(SHAPE, 20)
    assert plan[:3] == [(slice(0, 1), slice(0, 2)), (slice(0, 1), slice(2, 4)), (slice(0, 1), slice(4, 5))]
    assert len(plan) == 18
    assert plan_chunks(SHAPE, 1)[0] == (slice(0, 1), slice(0, 1))  # at least one trace


@pytest.fixture(scope="module")
def survey(tmp_path_factory: pytest.TempPathFactory):
    """Two memmapped attribute volumes and a forest trained on voxels of the same distribution."""
    root = tmp_path_factory.mktemp("survey")
    rng = np.random.default_rng(11)
    volumes = {}
    for name in ("amp", "freq"):
        vol = np.lib.format.open_memmap(root / f"{name}.npy", mode="w+", dtype=np.float32, shape=SHAPE)
        vol[:] = rng.normal(size=SHAPE)
        vol.flush()
        volumes[name] = np.load(root / f"{name}.npy", mmap_mode="r")
    x = rng.normal(size=(400, 2)).astype(np.float32)
    y = np.digitize(x[:, 0] + 0.4 * x[:, 1], [-0.5, 0.5]) + 1
    model = build_pipeline(10, 5, True, "balanced", 0, 1).fit(x, y)
    return volumes, model


def flat_features(volumes: dict[str, np.ndarray]) -> np.ndarray:
    return np.column_stack([np.asarray(volumes[n]).reshape(-1) for n in ("amp", "freq")])


@pytest.mark.parametrize("chunk_voxels", [70, 20, 10_000])
def test_prediction_equals_a_single_predict(survey, tmp_path, chunk_voxels: int) -> None:
    volumes, model = survey
    out = tmp_path / "facies.npy"
    stats = predict_volume(model, volumes, ["amp", "freq"], out, chunk_voxels=chunk_voxels, progress=False)
    expected = model.predict(flat_features(volumes)).reshape(SHAPE)
    facies = np.load(out, mmap_mode="r")
    assert isinstance(facies, np.memmap) and facies.dtype == np.int8 and facies.shape == SHAPE
    np.testing.assert_array_equal(facies, expected)
    assert stats["voxels"] == 210 and stats["undefined_voxels"] == 0
    assert stats["chunks"] == len(plan_chunks(SHAPE, chunk_voxels))
    assert sum(stats["facies_counts"].values()) == 210
    assert stats["facies_counts"][2] == int((expected == 2).sum())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["facies.npy"]  # no temporary files left


def test_undefined_voxels_and_probabilities(survey, tmp_path) -> None:
    volumes, model = survey
    holey = {name: np.array(vol) for name, vol in volumes.items()}
    holey["amp"][0, 0, :3] = np.nan
    holey["freq"][5, 4, 6] = np.inf
    out, prob_dir = tmp_path / "out" / "facies.npy", tmp_path / "prob"
    stats = predict_volume(
        model, holey, ["amp", "freq"], out, chunk_voxels=20, probabilities_dir=prob_dir, progress=False
    )
    facies = np.load(out)
    undefined = np.zeros(SHAPE, dtype=bool)
    undefined[0, 0, :3] = undefined[5, 4, 6] = True
    np.testing.assert_array_equal(facies == -1, undefined)
    assert stats["undefined_voxels"] == 4
    expected = model.predict(np.nan_to_num(flat_features(holey), posinf=0.0)).reshape(SHAPE)
    np.testing.assert_array_equal(facies[~undefined], expected[~undefined])

    assert sorted(p.name for p in prob_dir.iterdir()) == ["probability_1.npy", "probability_2.npy", "probability_3.npy"]
    probs = np.stack([np.load(prob_dir / f"probability_{c}.npy") for c in (1, 2, 3)])
    assert probs.dtype == np.float32
    assert np.isnan(probs[:, undefined]).all()
    np.testing.assert_allclose(probs[:, ~undefined].sum(axis=0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(np.array([1, 2, 3])[probs[:, ~undefined].argmax(axis=0)], facies[~undefined])
    assert sorted(p.name for p in out.parent.iterdir()) == ["facies.npy"]


def test_prediction_input_errors(survey, tmp_path) -> None:
    volumes, model = survey
    with pytest.raises(InputError, match="velocity"):
        predict_volume(model, volumes, ["amp", "velocity"], tmp_path / "f.npy", progress=False)
    with pytest.raises(InputError, match="one grid"):
        bad = {"amp": volumes["amp"], "freq": np.zeros((6, 5, 8), np.float32)}
        predict_volume(model, bad, ["amp", "freq"], tmp_path / "f.npy", progress=False)
    with pytest.raises(InputError, match=r"0\.\.127"):
        predict_volume(model, volumes, ["amp", "freq"], tmp_path / "f.npy", classes=[1, 2, 300], progress=False)
    assert not list(tmp_path.iterdir())


def test_segy_output_goes_through_the_writer(survey, tmp_path) -> None:
    volumes, model = survey
    calls = []

    def fake_writer(template, data, out_path):
        calls.append((template, np.array(data), out_path))
        out_path.write_bytes(b"segy")

    out = tmp_path / "facies.npy"
    stats = predict_volume(
        model, volumes, ["amp", "freq"], out, segy_template=tmp_path / "in.sgy", writer=fake_writer, progress=False
    )
    ((template, data, written),) = calls
    assert template == tmp_path / "in.sgy" and written != tmp_path / "facies.sgy"  # written under a temporary name
    np.testing.assert_array_equal(data, np.load(out))
    assert stats["segy_path"] == str(tmp_path / "facies.sgy")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["facies.npy", "facies.sgy"]


def test_segy_output_with_the_real_writer(survey, tmp_path) -> None:
    segy = pytest.importorskip("overseer.seismic.data.segy")
    if not hasattr(segy, "write_segy_like"):
        pytest.skip("overseer.seismic.data.segy.write_segy_like is not there yet")
    segyio = pytest.importorskip("segyio")
    volumes, model = survey
    template = tmp_path / "template.sgy"
    segyio.tools.from_array(str(template), np.asarray(volumes["amp"]))
    out = tmp_path / "facies.npy"
    kw = {"segy_template": template, "segy_options": {"dtype": "int8"}, "progress": False}
    stats = predict_volume(model, volumes, ["amp", "freq"], out, **kw)
    with segyio.open(stats["segy_path"], ignore_geometry=True) as f:
        assert f.bin[segyio.BinField.Format] == 8  # 1-byte integers
        traces = segyio.tools.collect(f.trace[:])
    np.testing.assert_array_equal(traces.reshape(SHAPE), np.load(out))


# ---------------------------------------------------------------- well features, HGB, new params (issue 11)
def well_table(n_wells: int = 6, n: int = 40, seed: int = 0) -> pd.DataFrame:
    """Wells of beds (facies 0/1/2 in runs of 3..10 samples); gr follows facies, rows shuffled."""
    rng = np.random.default_rng(seed)
    parts = []
    for w in range(n_wells):
        facies = np.repeat(rng.integers(0, 3, n), rng.integers(3, 10, n))[:n]
        parts.append(
            pd.DataFrame({
                "well": f"W{w}", "depth": 2000 + 0.5 * np.arange(n), "facies": facies,
                "gr": (40 + 20 * facies + rng.normal(0, 12, n)).astype(np.float32),
                "pe": (3 + 0.3 * facies + rng.normal(0, 0.4, n)).astype(np.float32),
            })
        )  # fmt: skip
    return pd.concat(parts, ignore_index=True).sample(frac=1.0, random_state=seed).reset_index(drop=True)


WELL_CFG = {**CFG, "tree_counts": [5, 10], "folds": 3, "well_features": {"neighbours": 1, "gradients": True}}


@pytest.fixture(scope="module")
def well_result():
    return train_forest(well_table(), None, WELL_CFG)


def test_well_features_are_inside_the_pipeline(well_result) -> None:
    assert well_result.inputs == ["well", "depth", "gr", "pe"]
    assert list(well_result.pipeline.named_steps) == ["well_features", "scale", "forest"]
    assert well_result.feature_names == ["gr", "pe", "gr_above1", "gr_below1", "pe_above1", "pe_below1",
                                         "gr_gradient", "pe_gradient"]  # fmt: skip
    assert set(well_result.importance.index) == set(well_result.feature_names)
    assert well_result.pipeline.n_features_in_ == 4
    config = model_config(WELL_CFG, well_result, {"facies": ["a", "b", "c"], "inputs": None})
    assert config["features"] == well_result.inputs and config["smooth"] == {"window": 1}
    assert config["well_features"] == {"neighbours": 1, "gradients": True}


def test_well_features_are_refused_where_they_do_not_apply(table: pd.DataFrame) -> None:
    with pytest.raises(InputError, match=r"train_rf.well_features needs a well-log table"):
        train_forest(table, None, {**CFG, "well_features": {"neighbours": 1}})
    with pytest.raises(InputError, match=r"train_rf.well_features needs cv_scheme: blocked"):
        resolve_config({**CFG, "cv_scheme": "random", "well_features": {"gradients": True}})
    with pytest.raises(InputError, match=r"train_rf.well_features .*source 'volumes'"):
        check_source({"well_features": {"neighbours": 2}}, "volumes")
    check_source({"well_features": {"neighbours": 0, "gradients": False}}, "synthetic")  # off: fine anywhere
    check_source({"well_features": {"neighbours": 2}}, "well_logs")
    with pytest.raises(InputError, match=r"train_rf.hgb: unknown keys \['max_iters'\]"):
        resolve_config({"hgb": {"max_iters": [5]}})
    with pytest.raises(InputError, match=r"train_rf.smooth.window"):
        resolve_config({"smooth": {"window": 2}})


def test_defaults_change_nothing_for_picks(table: pd.DataFrame, result) -> None:
    assert list(result.pipeline.named_steps) == ["scale", "forest"] and result.inputs == result.feature_names
    assert isinstance(result.pipeline[-1], RandomForestClassifier) and result.estimator == "random_forest"


def test_hist_gradient_boosting_trains_and_predicts(table: pd.DataFrame) -> None:
    cfg = {**CFG, "estimator": "hist_gradient_boosting", "hgb": {"max_iter": [10, 20], "max_leaf_nodes": 7}}
    hgb = train_forest(table, None, cfg)
    assert isinstance(hgb.pipeline[-1], HistGradientBoostingClassifier) and hgb.estimator == "hist_gradient_boosting"
    assert sorted(hgb.cv["n_estimators"].unique()) == [10, 20] and hgb.best_n_estimators in (10, 20)
    assert hgb.pipeline[-1].max_iter == hgb.best_n_estimators and hgb.pipeline[-1].class_weight == "balanced"
    assert hgb.importance.index[0] in {"amp", "freq"} and np.isclose(hgb.importance.sum(), 1.0)
    assert hgb.summary()["cv_pooled_macro_f1"] > 0.6
    # warm-started CV over max_iter equals fresh fits of each
    conf = resolve_config(cfg)
    x, y, groups, _ = training_arrays(table, None, conf)
    together = cross_validate(x, y, groups, conf).table
    alone = cross_validate(x, y, groups, {**conf, "hgb": {**conf["hgb"], "max_iter": [20]}}).table
    np.testing.assert_allclose(together[together["n_estimators"] == 20]["macro_f1"], alone["macro_f1"])


@pytest.mark.parametrize("estimator", ["random_forest", "hist_gradient_boosting"])
def test_skops_round_trip_gives_identical_predictions(estimator: str, tmp_path) -> None:
    import skops.io

    from overseer.seismic.model_io import save_model

    cfg = {**WELL_CFG, "estimator": estimator, "hgb": {"max_iter": [10]}}
    trained = train_forest(well_table(), None, cfg)
    save_model(trained.pipeline, tmp_path / "model.skops")
    untrusted = skops.io.get_untrusted_types(file=tmp_path / "model.skops")
    assert [t for t in untrusted if not t.startswith("sklearn.")] == [
        "overseer.seismic.well_features.WellSequenceFeatures"
    ]
    loaded = skops.io.load(tmp_path / "model.skops", trusted=untrusted)
    new = well_table(n_wells=2, seed=5)
    x = model_matrix(new, trained.inputs)
    np.testing.assert_array_equal(loaded.predict_proba(x), trained.pipeline.predict_proba(x))


def test_model_io_loads_the_well_features_transformer(well_result, tmp_path) -> None:
    from overseer.seismic.model_io import load_model, save_model

    save_model(well_result.pipeline, tmp_path / "model.skops")
    load_model(tmp_path / "model.skops")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"well_features": {"neighbors": 1}},
            "train_rf.well_features.neighbors: unknown key; did you mean neighbours?",
        ),
        (
            {"well_features": {"neighbours": -1}},
            "train_rf.well_features.neighbours: must be auto or a whole number >= 0 (0: off), got -1",
        ),
        ({"well_features": {"gradients": "yes"}}, "train_rf.well_features.gradients: must be true, false or auto"),
        ({"smooth": {"window": 4}}, "train_rf.smooth.window: must be auto or an odd number of samples >= 1 (1: off)"),
        ({"smooth": {"window": 0}}, "train_rf.smooth.window: must be auto or an odd number of samples >= 1 (1: off)"),
        ({"smooth": {"window": "atuo"}}, "train_rf.smooth.window: must be auto or an odd number"),
        ({"estimator": "xgb"}, "train_rf.estimator: must be one of random_forest | hist_gradient_boosting"),
        ({"hgb": {"max_iter": [0]}}, "train_rf.hgb.max_iter[0]: must be >= 1, got 0"),
        ({"hgb": {"learning_rate": 0}}, "train_rf.hgb.learning_rate: must be > 0, got 0"),
        ({"hgb": {"max_leaf_nodes": 1}}, "train_rf.hgb.max_leaf_nodes: must be >= 2, got 1"),
    ],
)
def test_params_schema_of_the_new_keys(change: dict, message: str) -> None:
    from overseer import params

    problems = params.problems(("train_rf",), change, partial=True)
    assert len(problems) == 1 and problems[0].startswith(message), problems
    full = {"estimator": "hist_gradient_boosting", "hgb": dict(HGB_DEFAULTS), "smooth": {"window": 5},
            "well_features": {"neighbours": 2, "gradients": True}}  # fmt: skip
    assert params.problems(("train_rf",), full, partial=True) == []
    auto = {"smooth": {"window": "auto"}, "well_features": {"neighbours": "auto", "gradients": "auto"}}
    assert params.problems(("train_rf",), auto, partial=True) == []


# ---------------------------------------------------------------- issue 11 leftovers
def test_auto_reads_as_off_outside_train_rf_and_is_no_error_for_volumes(table: pd.DataFrame) -> None:
    auto = {"well_features": {"neighbours": "auto", "gradients": "auto"}, "smooth": {"window": "auto"}}
    conf = resolve_config({**CFG, **auto})
    assert conf["well_features"] == {"neighbours": 0, "gradients": False} and conf["smooth"] == {"window": 1}
    check_source(auto, "volumes")  # auto means off there: no error
    check_source(auto, "synthetic")
    assert list(train_forest(table, None, {**CFG, **auto}).pipeline.named_steps) == ["scale", "forest"]


@pytest.mark.parametrize("estimator", ["random_forest", "hist_gradient_boosting"])
def test_cross_validation_gives_out_of_fold_probabilities(table: pd.DataFrame, estimator: str) -> None:
    conf = resolve_config({**CFG, "tree_counts": [5, 10], "estimator": estimator, "hgb": {"max_iter": [5, 10]}})
    x, y, groups, inputs = training_arrays(table, None, conf)
    cv = cross_validate(x, y, groups, conf, inputs=inputs)
    for n in (5, 10):
        assert cv.proba[n].shape == (len(y), cv.classes.size)
        np.testing.assert_allclose(cv.proba[n].sum(axis=1), 1.0)
        np.testing.assert_array_equal(cv.proba[n].argmax(axis=1), cv.oof[n])  # the prediction is their argmax
    # the fold that tested each row is the fold of make_folds' splits
    for fold, (_, test) in enumerate(make_folds(y, groups, conf["folds"], "blocked", conf["seed"])):
        assert (cv.fold[test] == fold).all()
    # each fold's probabilities are what a model fitted on the other folds gives (predict equals argmax)
    train, test = make_folds(y, groups, conf["folds"], "blocked", conf["seed"])[0]
    codes = np.searchsorted(cv.classes, y)
    alone = build_pipeline(10, conf["max_depth"], estimator=estimator, random_state=conf["seed"], n_jobs=1,
                           class_weight=conf["class_weight"]).fit(x[train], codes[train])  # fmt: skip
    np.testing.assert_allclose(cv.proba[10][np.ix_(test, alone.classes_)], alone.predict_proba(x[test]))
    np.testing.assert_array_equal(cv.oof[10][test], alone.predict(x[test]))


def test_cv_report_carries_the_out_of_fold_confidence(result) -> None:
    confidence = result.cv_report.predictions["confidence"].to_numpy()
    assert not np.isnan(confidence).any() and ((confidence > 0) & (confidence <= 1)).all()
    np.testing.assert_allclose(confidence, result.oof_proba.max(axis=1))
    assert result.summary()["cv_pooled_macro_f1"] == result.cv_report.macro["f1"]


def test_one_cv_macro_f1_the_fold_mean_that_chose_the_tree_count(result) -> None:
    summary = result.summary()
    folds = result.cv[result.cv["n_estimators"] == result.best_n_estimators]
    assert summary["cv_macro_f1"] == summary["cv"][result.best_n_estimators]["macro_f1_mean"]
    assert summary["cv_macro_f1"] == pytest.approx(folds["macro_f1"].mean())
    assert summary["cv_macro_f1_std"] == pytest.approx(np.std(folds["macro_f1"]))
    assert summary["cv_accuracy"] == pytest.approx(folds["accuracy"].mean())
    assert summary["cv_macro_f1"] == max(v["macro_f1_mean"] for v in summary["cv"].values())


def test_gradient_boosting_fits_on_the_project_thread_setting(table: pd.DataFrame, monkeypatch) -> None:
    """HGB takes its threads from OpenMP (not n_jobs): every fit runs under n_jobs threads."""
    from sklearn.utils._openmp_helpers import _openmp_effective_n_threads

    seen: list[int] = []
    fit = HistGradientBoostingClassifier.fit

    def spy(self, *args, **kwargs):  # the real fit, after noting the threads it will use
        seen.append(_openmp_effective_n_threads())
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(HistGradientBoostingClassifier, "fit", spy)
    cfg = {**CFG, "folds": 2, "estimator": "hist_gradient_boosting", "hgb": {"max_iter": [3]}}
    for n_jobs in (1, 2):
        seen.clear()
        trained = train_forest(table, None, {**cfg, "n_jobs": n_jobs})
        assert seen == [n_jobs] * 3, seen  # 2 folds and the final fit
        assert trained.pipeline[-1].n_iter_ == 3
