"""`overseer predict seismic`: facies of new wells (tables) and new surveys (volumes) with an exported model.

The model is a tiny rfc3d pipeline (``forest.build_pipeline``) trained here on three made-up logs,
saved with ``model_io.save_model`` beside a ``config.json`` without ``inputs`` (as models trained
before ingest recorded them), so the CLI's own name matching is what is tested.
"""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import segyio

from overseer.cli import main
from overseer.errors import InputError
from overseer.seismic.data.grid import Grid
from overseer.seismic.data.segy import read_segy, write_segy
from overseer.seismic.forest import build_pipeline
from overseer.seismic.model_io import save_model
from overseer.seismic.predict import (
    LEGEND,
    SeismicModel,
    load_seismic_model,
    predict_table,
    predict_tables,
    predict_volumes,
    volume_sources,
)
from overseer.seismic.predict_volume import predict_volume
from overseer.seismic.well_features import model_matrix, smooth_per_well

FEATURES = ["GR", "RHOB", "DT"]
FACIES = ["shale", "sand", "salt"]
SHAPE = (4, 5, 6)


def _training(seed: int = 0, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    centres = np.array([[80.0, 2.4, 90.0], [40.0, 2.2, 70.0], [20.0, 2.1, 67.0]])
    x = centres[y] + rng.normal(0, [15.0, 0.1, 8.0], (n, 3))
    return x.astype(np.float32), y.astype(np.int32)


def _export(folder: Path, x: np.ndarray, y: np.ndarray, **config: object) -> Path:
    pipeline = build_pipeline(12, max_depth=5, normalise=True, class_weight="balanced", random_state=0, n_jobs=1)
    pipeline.fit(x, y)
    pipeline.set_params(forest__n_jobs=None)
    folder.mkdir(parents=True, exist_ok=True)
    save_model(pipeline, folder / "model.skops")
    (folder / "config.json").write_text(json.dumps({"features": FEATURES, "facies": FACIES, **config}))
    return folder


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _export(tmp_path_factory.mktemp("model") / "export", *_training())


@pytest.fixture(scope="module")
def model(model_dir: Path):
    return load_seismic_model(model_dir)


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVERSEER_PROGRESS", "0")


def _logs(n: int = 25, seed: int = 1) -> pd.DataFrame:
    x, _ = _training(seed, n)
    table = pd.DataFrame(x, columns=FEATURES)
    table.insert(0, "depth", 1000.0 + 0.5 * np.arange(n))
    table.insert(0, "well", ["A-1"] * (n // 2) + ["B-2"] * (n - n // 2))
    table["caliper"] = 8.5  # not a model log: ignored
    return table


def _volumes(seed: int = 2) -> dict[str, np.ndarray]:
    x, _ = _training(seed, int(np.prod(SHAPE)))
    return {name: x[:, j].reshape(SHAPE).copy() for j, name in enumerate(FEATURES)}


def _per_voxel(model, volumes: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    x = np.stack([volumes[f].reshape(-1) for f in FEATURES], axis=1)
    return model.estimator.predict(x).reshape(SHAPE), model.estimator.predict_proba(x)


# ---------------------------------------------------------------------------- tables
def test_table_prediction_is_the_models_predict_proba_with_facies_names(model) -> None:
    table = _logs()
    out = predict_table(model, table, path="logs.csv")
    expected = model.estimator.predict_proba(table[FEATURES].to_numpy(np.float32))
    assert list(out.columns) == ["well", "depth", "facies", "p_shale", "p_sand", "p_salt"]
    np.testing.assert_allclose(out[["p_shale", "p_sand", "p_salt"]].to_numpy(), expected)
    assert out["facies"].tolist() == [FACIES[c] for c in model.estimator.predict(table[FEATURES].to_numpy())]
    assert out["well"].tolist() == table["well"].tolist() and out["depth"].tolist() == table["depth"].tolist()
    np.testing.assert_allclose(out.filter(like="p_").sum(axis=1), 1.0)


def test_table_columns_are_matched_by_name_in_any_order_and_case(model) -> None:
    table = _logs()
    reference = predict_table(model, table)
    reordered = table[table.columns[::-1]].rename(columns={"GR": "gr", "well": "WELL", "depth": "Depth"})
    pd.testing.assert_frame_equal(predict_table(model, reordered), reference)


def test_csv_and_parquet_files(model, tmp_path: Path) -> None:
    table = _logs()
    table.to_csv(tmp_path / "a.csv", index=False)
    table.iloc[::-1].to_parquet(tmp_path / "b.parquet", index=False)
    out = predict_tables(model, [tmp_path / "a.csv", tmp_path / "b.parquet"], progress=False)
    assert len(out) == 2 * len(table)
    first, second = out.iloc[: len(table)], out.iloc[len(table) :].iloc[::-1].reset_index(drop=True)
    pd.testing.assert_frame_equal(first, second, check_exact=False)


def test_missing_log_names_it_and_the_file(model, tmp_path: Path) -> None:
    path = tmp_path / "logs.csv"
    _logs().drop(columns=["RHOB"]).to_csv(path, index=False)
    with pytest.raises(InputError, match=r"logs\.csv.*no column for log \['RHOB'\]"):
        predict_tables(model, [path])
    _logs().drop(columns=["well"]).to_csv(path, index=False)
    with pytest.raises(InputError, match=r"no column for column \['well'\]"):
        predict_tables(model, [path])


def test_missing_and_text_values_name_the_line(model, tmp_path: Path) -> None:
    path = tmp_path / "logs.csv"
    table = _logs()
    table.loc[3, "DT"] = -999.25
    table.to_csv(path, index=False)
    with pytest.raises(InputError, match=r"logs\.csv, record line 5: log 'DT' .*missing"):
        predict_tables(model, [path])
    table = _logs().astype({"GR": object})
    table.loc[0, "GR"] = "high"
    table.to_csv(path, index=False)
    with pytest.raises(InputError, match=r"record line 2: log 'GR' .*must be a number, got 'high'"):
        predict_tables(model, [path])


def test_model_classes_name_their_facies_ids(tmp_path: Path) -> None:
    x, y = _training()
    keep = y != 1  # no sand picked: the model's classes are ids 0 and 2
    folder = _export(tmp_path / "model", x[keep], y[keep])
    model = load_seismic_model(folder)
    assert model.class_ids == [0, 2] and model.class_names == ["shale", "salt"]
    out = predict_table(model, _logs())
    assert [c for c in out.columns if c.startswith("p_")] == ["p_shale", "p_salt"]
    assert set(out["facies"]) <= {"shale", "salt"}


def test_a_bad_model_folder_is_an_input_error(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no model\.skops"):
        load_seismic_model(tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.skops").write_bytes((model_dir / "model.skops").read_bytes())
    (bad / "config.json").write_text(json.dumps({"features": FEATURES[:2], "facies": FACIES}))
    with pytest.raises(InputError, match="takes 3 attributes"):
        load_seismic_model(bad)
    (bad / "config.json").write_text(json.dumps({"features": FEATURES, "facies": FACIES[:2]}))
    with pytest.raises(InputError, match=r"not facies ids 0\.\.1"):
        load_seismic_model(bad)


def test_recorded_inputs_go_through_prepare_log_table(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With ``inputs`` in config.json, ingest's own preparation runs first (here a stand-in)."""
    import overseer.seismic.data as data_package

    calls = []

    def prepare_log_table(table: pd.DataFrame, inputs: dict, *, path: object) -> pd.DataFrame:
        calls.append((inputs, path))
        return table.rename(columns=inputs["rename"])

    fake = types.ModuleType("overseer.seismic.data.well_logs")
    fake.prepare_log_table = prepare_log_table
    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    monkeypatch.setattr(data_package, "well_logs", fake, raising=False)
    model = load_seismic_model(model_dir)
    model = type(model)(**{**model.__dict__, "inputs": {"rename": {"gamma": "GR"}}})
    table = _logs()
    out = predict_table(model, table.rename(columns={"GR": "gamma"}), path="x.csv")
    assert calls == [({"rename": {"gamma": "GR"}}, Path("x.csv"))]
    pd.testing.assert_frame_equal(out, predict_table(load_seismic_model(model_dir), table))


# ---------------------------------------------------------------------------- volumes
def _save_npy(folder: Path, volumes: dict[str, np.ndarray]) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    for name, volume in volumes.items():
        np.save(folder / f"{name}.npy", volume)
    return [str(folder / f"{name}.npy") for name in volumes]


GRID = Grid.regular(SHAPE, inline_start=100, crossline_start=20, crossline_step=2, sample_interval_ms=4.0)


def _save_segy(folder: Path, volumes: dict[str, np.ndarray]) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    return [str(write_segy(v, GRID, folder / f"{name}.sgy")) for name, v in volumes.items()]


def test_npy_volumes_give_the_per_voxel_prediction(model, tmp_path: Path) -> None:
    volumes = _volumes()
    sources, ignored = volume_sources(_save_npy(tmp_path / "in", volumes)[::-1], FEATURES)
    assert ignored == []
    result = predict_volumes(model, sources, tmp_path / "out", probabilities=True, chunk_voxels=7, progress=False)
    labels, proba = _per_voxel(model, volumes)
    facies = np.load(tmp_path / "out" / "facies.npy")
    assert facies.dtype == np.int8
    np.testing.assert_array_equal(facies, labels)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "facies.json", "facies.npy", "p_salt.npy", "p_sand.npy", "p_shale.npy",
    ]  # fmt: skip
    stack = np.stack([np.load(result["probability_paths"][name]) for name in FACIES], axis=-1)
    assert stack.dtype == np.float32
    np.testing.assert_allclose(stack.reshape(-1, 3), proba, rtol=1e-6)
    np.testing.assert_allclose(stack.sum(axis=-1), 1.0, rtol=1e-5)
    legend = json.loads((tmp_path / "out" / LEGEND).read_text())
    assert [(f["id"], f["name"]) for f in legend["facies"]] == list(enumerate(FACIES))
    assert sum(legend["facies_counts"].values()) == np.prod(SHAPE)


def _openmp_threads() -> list[int]:
    from threadpoolctl import threadpool_info

    return [int(pool["num_threads"]) for pool in threadpool_info() if pool["user_api"] == "openmp"]


class _ThreadRecorder:
    """A fitted two-facies 'model' whose predict_proba records the OpenMP thread counts it runs under
    (HistGradientBoosting's predict_proba takes its threads from OpenMP, not from joblib)."""

    classes_ = np.array([0, 1])
    n_features_in_ = len(FEATURES)

    def __init__(self) -> None:
        self.seen: list[list[int]] = []

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        self.seen.append(_openmp_threads())
        p = (x[:, 0] > 50).astype(np.float64)
        return np.stack([1 - p, p], axis=1)


@pytest.mark.parametrize("n_jobs", [1, None])
def test_volume_prediction_runs_under_the_n_jobs_thread_limit(tmp_path: Path, n_jobs: int | None) -> None:
    import sklearn.ensemble  # noqa: F401  (loads scikit-learn's OpenMP runtime, as a trained model does)

    before = _openmp_threads()
    if not before:
        pytest.skip("no OpenMP runtime loaded")
    recorder = _ThreadRecorder()
    stats = predict_volume(
        recorder, _volumes(), FEATURES, tmp_path / "facies.npy", chunk_voxels=40, engine="sklearn", progress=False,
        n_jobs=n_jobs,
    )  # fmt: skip
    assert stats["chunks"] == len(recorder.seen) == SHAPE[0]  # every chunk (an inline) recorded
    assert recorder.seen == [[1] * len(before) if n_jobs == 1 else before] * SHAPE[0]  # None: no cap
    assert _openmp_threads() == before  # the limit ends with the prediction


def test_volumes_named_explicitly_and_extra_volumes_ignored(model, tmp_path: Path) -> None:
    volumes = _volumes()
    paths = _save_npy(tmp_path / "in", {f"v{j}": volumes[f] for j, f in enumerate(FEATURES)})
    extra = _save_npy(tmp_path / "extra", {"noise": volumes["GR"]})
    args = [f"{f.lower()}={p}" for f, p in zip(FEATURES, paths, strict=True)] + extra
    sources, ignored = volume_sources(args, FEATURES)
    assert ignored == ["noise"]
    predict_volumes(model, sources, tmp_path / "out", progress=False)
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "facies.npy"), _per_voxel(model, volumes)[0])


def test_segy_volumes_keep_the_inputs_headers(model, tmp_path: Path) -> None:
    volumes = _volumes()
    sources, _ = volume_sources(_save_segy(tmp_path / "in", volumes), FEATURES)
    predict_volumes(model, sources, tmp_path / "out", probabilities=True, chunk_voxels=11, progress=False)
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == [
        "facies.json",
        "facies.sgy",
        "p_salt.sgy",
        "p_sand.sgy",
        "p_shale.sgy",
    ]
    facies, grid = read_segy(out / "facies.sgy")
    labels, proba = _per_voxel(model, volumes)
    np.testing.assert_array_equal(facies, labels)
    assert grid.same_as(GRID)
    with (
        segyio.open(out / "facies.sgy", ignore_geometry=True) as f,
        segyio.open(sources["GR"], ignore_geometry=True) as t,
    ):
        for field in (segyio.TraceField.INLINE_3D, segyio.TraceField.CROSSLINE_3D, segyio.TraceField.CDP):
            np.testing.assert_array_equal(f.attributes(field)[:], t.attributes(field)[:])
        assert f.attributes(segyio.TraceField.INLINE_3D)[:].min() == 100
    stack = np.stack([read_segy(out / f"p_{name}.sgy")[0] for name in FACIES], axis=-1)
    np.testing.assert_allclose(stack.reshape(-1, 3), proba, rtol=1e-6)
    np.testing.assert_allclose(stack.sum(axis=-1), 1.0, rtol=1e-5)


def test_npy_beside_segy_takes_its_grid(model, tmp_path: Path) -> None:
    volumes = _volumes()
    args = _save_segy(tmp_path / "in", {"GR": volumes["GR"]}) + _save_npy(
        tmp_path / "in", {k: volumes[k] for k in FEATURES[1:]}
    )
    sources, _ = volume_sources(args, FEATURES)
    result = predict_volumes(model, sources, tmp_path / "out", progress=False)
    assert result["format"] == "segy"
    np.testing.assert_array_equal(read_segy(result["facies_path"])[0], _per_voxel(model, volumes)[0])


def test_bad_volumes_are_input_errors_and_leave_nothing(model, tmp_path: Path) -> None:
    volumes = _volumes()
    out = tmp_path / "out"
    paths = _save_npy(tmp_path / "in", volumes)
    with pytest.raises(InputError, match=r"no attribute volume for \['DT'\]"):
        volume_sources(paths[:2], FEATURES)
    sources, _ = volume_sources(paths, FEATURES)

    (tmp_path / "small").mkdir()
    np.save(tmp_path / "small" / "DT.npy", volumes["DT"][:3])
    wrong = {**sources, "DT": tmp_path / "small" / "DT.npy"}
    with pytest.raises(InputError, match=r"DT\.npy: volumes must share one grid.*inlines 4 .* vs 3"):
        predict_volumes(model, wrong, out, progress=False)
    assert not out.exists()

    holed = volumes["RHOB"].copy()
    holed[1, 2, 3] = np.nan
    np.save(tmp_path / "holed.npy", holed)
    with pytest.raises(
        InputError,
        match=r"holed\.npy: attribute 'RHOB': 1 non-finite voxels .*inline index 1, crossline index 2, sample 3",
    ):
        predict_volumes(model, {**sources, "RHOB": tmp_path / "holed.npy"}, out, progress=False)
    assert not out.exists()

    segy = dict(volume_sources(_save_segy(tmp_path / "segy", volumes), FEATURES)[0])
    with pytest.raises(InputError, match=r"DT\.npy: volumes must share one grid.*\(3, 5, 6\).*GR\.sgy"):
        predict_volumes(model, {**segy, "DT": tmp_path / "small" / "DT.npy"}, out, progress=False)
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no temporaries


def test_an_earlier_prediction_survives_a_failed_one(model, tmp_path: Path) -> None:
    volumes = _volumes()
    sources, _ = volume_sources(_save_npy(tmp_path / "in", volumes), FEATURES)
    out = tmp_path / "out"
    predict_volumes(model, sources, out, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    np.save(tmp_path / "nan.npy", np.full(SHAPE, np.nan, np.float32))
    with pytest.raises(InputError, match="non-finite"):
        predict_volumes(model, {**sources, "GR": tmp_path / "nan.npy"}, out, probabilities=True, progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="not an earlier facies prediction"):
        predict_volumes(model, sources, foreign, progress=False)
    assert (foreign / "notes.txt").read_text() == "keep me"


# ---------------------------------------------------------------------------- the CLI
def test_cli_table_to_csv_and_stdout(model, model_dir: Path, tmp_path: Path, capsys) -> None:
    table = _logs()
    table.to_csv(tmp_path / "logs.csv", index=False)
    csv = tmp_path / "facies.csv"
    assert main(["predict", "seismic", "--model", str(model_dir), str(tmp_path / "logs.csv"), "--out", str(csv)]) == 0
    written = pd.read_csv(csv)
    pd.testing.assert_frame_equal(written, predict_table(model, table), check_exact=False)
    assert "25 samples of 2 wells" in capsys.readouterr().out
    assert main(["predict", "seismic", "--model", str(model_dir), str(tmp_path / "logs.csv")]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines()[0] == "well,depth,facies,p_shale,p_sand,p_salt"
    assert len(captured.out.splitlines()) == 26


def test_cli_volumes_load_the_model_once(model_dir: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    import overseer.seismic.model_io as model_io

    loads = []
    real = model_io.load_model
    monkeypatch.setattr(model_io, "load_model", lambda path: loads.append(path) or real(path))
    monkeypatch.setenv("OVERSEER_CHUNK_VOXELS", "10")  # 12 chunks
    paths = _save_segy(tmp_path / "in", _volumes())
    out = tmp_path / "pred"
    argv = ["predict", "seismic", *paths, "--model", str(model_dir), "--out", str(out), "--probabilities"]
    assert main(argv) == 0
    assert len(loads) == 1
    printed = capsys.readouterr().out
    assert f"predicted {np.prod(SHAPE)} voxels" in printed and str(out / "facies.sgy") in printed
    assert (out / "p_sand.sgy").is_file()


def _bad_input(case: str, folder: Path) -> list[Path | str]:
    """The PATH arguments of one bad-input case, written into ``folder``."""
    logs = folder / "logs.csv"
    if case == "missing log":
        _logs().drop(columns=["DT"]).to_csv(logs, index=False)
        return [logs]
    if case == "header only":
        logs.write_text("well,depth,GR,RHOB,DT\n")
        return [logs]
    if case == "missing volume":
        return _save_npy(folder, {k: v for k, v in _volumes().items() if k != "GR"})
    if case in ("nan voxel", "grid differs"):
        volumes = _volumes()
        volumes["DT"] = (
            volumes["DT"][:, :4] if case == "grid differs" else np.where(volumes["DT"] > 80, np.nan, volumes["DT"])
        )
        return _save_segy(folder, {k: volumes[k] for k in FEATURES[:2]}) + _save_npy(folder, {"DT": volumes["DT"]})
    if case == "tables and volumes":
        _logs().to_csv(logs, index=False)
        return [*_save_npy(folder, _volumes()), logs]
    return [folder / {"absent table": "absent.parquet", "unknown type": "notes.txt"}[case]]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing log", "logs.csv: no column for log ['DT']"),
        ("header only", "logs.csv: the table has no rows"),
        ("absent table", "absent.parquet: well-log table not found"),
        ("unknown type", "notes.txt: expected well-log tables"),
        ("missing volume", "no attribute volume for ['GR']"),
        ("nan voxel", "DT.npy: attribute 'DT': "),
        ("grid differs", "DT.npy: volumes must share one grid"),
        ("tables and volumes", "not both"),
    ],
)
def test_cli_bad_input_exits_2_without_traceback(
    model_dir: Path, tmp_path: Path, capsys, case: str, expected: str
) -> None:
    paths = [str(p) for p in _bad_input(case, tmp_path)]
    out = tmp_path / "result"
    assert main(["predict", "seismic", "--model", str(model_dir), *paths, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("overseer: error: ") and expected in err and "Traceback" not in err
    assert not out.exists()


def test_cli_without_a_model_exits_2(tmp_path: Path, capsys) -> None:
    _logs().to_csv(tmp_path / "logs.csv", index=False)
    assert main(["predict", "seismic", str(tmp_path / "logs.csv"), "--model", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "none: no exported seismic model folder" in err and "Traceback" not in err


def test_two_volumes_with_one_name_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"two volumes are named 'GR'.*name them NAME=PATH"):
        volume_sources([str(tmp_path / "a" / "GR.npy"), str(tmp_path / "b" / "GR.sgy")], FEATURES)


# ---------------------------------------------------------------------------- well features and smoothing
def _well_model(smooth: int) -> SeismicModel:
    """A model trained by train_forest with well features, as its config.json describes it (built
    here, not loaded: model_io does not trust the transformer yet, see test_seismic_forest)."""
    from overseer.seismic.forest import model_config, train_forest

    x, y = _training(0, 240)
    table = pd.DataFrame(x, columns=FEATURES).assign(
        well=np.repeat(["W1", "W2", "W3", "W4"], 60), depth=np.tile(1000.0 + 0.5 * np.arange(60), 4), facies=y
    )
    cfg = {"tree_counts": [8], "max_depth": 5, "folds": 2, "n_jobs": 1,
           "well_features": {"neighbours": 1, "gradients": True}, "smooth": {"window": smooth}}  # fmt: skip
    result = train_forest(table, FEATURES, cfg)
    config = model_config(cfg, result, {"facies": FACIES, "inputs": None})
    return SeismicModel(result.pipeline, config["features"], FACIES, [int(c) for c in result.pipeline.classes_],
                        Path("."), None, config)  # fmt: skip


@pytest.mark.parametrize("window", [1, 5])
def test_table_prediction_applies_the_training_features_and_smoothing(window: int) -> None:
    model = _well_model(window)
    assert model.features == ["well", "depth", *FEATURES]
    table = _logs(40)
    out = predict_table(model, table)
    proba = model.estimator.predict_proba(model_matrix(table, model.features))
    np.testing.assert_allclose(out[[f"p_{f}" for f in model.class_names]].to_numpy(), proba)
    raw = np.asarray(model.class_names, dtype=object)[proba.argmax(axis=1)]
    expected = smooth_per_well(table["well"], table["depth"], raw, window)
    assert out["facies"].tolist() == list(expected)
    # rows in another order, columns renamed: the same facies per sample
    shuffled = table.sample(frac=1.0, random_state=3).rename(columns={"well": "WELL", "depth": "Depth"})
    again = predict_table(model, shuffled)
    assert again["facies"].tolist() == out.loc[shuffled.index, "facies"].tolist()


def test_a_well_feature_model_needs_a_numeric_depth() -> None:
    model = _well_model(1)
    table = _logs(10).astype({"depth": object})
    table.loc[3, "depth"] = "deep"
    with pytest.raises(InputError, match=r"depth .* must be a number"):
        predict_table(model, table, path="logs.csv")
