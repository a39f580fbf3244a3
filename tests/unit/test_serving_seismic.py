"""The seismic facies model as an MLflow pyfunc (``overseer.serving.seismic``): columns by name, facies names.

A tiny rfc3d forest and a tiny GTM are exported as ``export@rf``/``export@gtm`` write them
(``model.skops`` + ``config.json``), logged with ``log_seismic_model`` into a sqlite store of this
module's own (never the repository's ``mlflow.db``) and loaded back from the registry as a client
would: ``mlflow.pyfunc.load_model("models:/NAME/1")``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import mlflow
import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException

from overseer.errors import InputError
from overseer.seismic.forest import build_pipeline
from overseer.seismic.gtm import GTMClassifier
from overseer.seismic.model_io import save_model
from overseer.seismic.predict import (
    SeismicModel,
    input_columns,
    load_seismic_model,
    predict_frame,
    predict_table,
    predict_tables,
)
from overseer.serving.seismic import SeismicFaciesModel, example_rows, log_seismic_model, pip_requirements

FEATURES = ["GR", "RHOB", "DT"]
FACIES = ["shale", "sand", "salt"]
PROBABILITIES = [f"p_{name}" for name in FACIES]
CENTRES = np.array([[80.0, 2.4, 90.0], [40.0, 2.2, 70.0], [20.0, 2.1, 67.0]])


def _training(seed: int = 0, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    x = CENTRES[y] + rng.normal(0, [15.0, 0.1, 8.0], (n, 3))
    return x.astype(np.float32), y.astype(np.int32)


def _export(folder: Path, model: object) -> Path:
    folder.mkdir(parents=True)
    save_model(model, folder / "model.skops")
    (folder / "config.json").write_text(json.dumps({"features": FEATURES, "facies": FACIES, "inputs": None}))
    (folder / "facies").mkdir()  # what the exports hold besides the model: volumes, not for serving
    np.save(folder / "facies" / "facies.npy", np.zeros((2, 2, 2), np.int8))
    np.save(folder / "probability_0.npy", np.zeros((2, 2, 2), np.float32))
    return folder


def _forest(folder: Path) -> Path:
    x, y = _training()
    pipeline = build_pipeline(12, max_depth=5, normalise=True, class_weight="balanced", random_state=0, n_jobs=1)
    pipeline.fit(x, y)
    pipeline.set_params(forest__n_jobs=None)
    return _export(folder, pipeline)


def _gtm(folder: Path) -> Path:
    x, y = _training(3, 400)
    y = np.where(np.random.default_rng(1).random(len(y)) < 0.3, y, -1)  # a few picks, the rest unlabelled
    return _export(folder, GTMClassifier(grid=(6, 6), rbf_grid=(3, 3), max_iter=30, tol=1e-3).fit(x, y))


def _rows(seed: int = 1, n: int = 30) -> pd.DataFrame:
    x, _ = _training(seed, n)
    return pd.DataFrame(x.astype(np.float64), columns=FEATURES)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Both exports logged and registered (``facies-rf``, ``facies-gtm``, version 1) in a sqlite store here."""
    base = tmp_path_factory.mktemp("serving-seismic")
    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(f"sqlite:///{base}/mlflow.db")
    try:
        rf, gtm = _forest(base / "rf" / "export"), _gtm(base / "gtm" / "export")
        x, y = _training(7, 40)
        table = pd.DataFrame(x, columns=FEATURES).assign(facies=y, inline=1)  # a training table: extra columns
        # artifacts under base too: a sqlite store's default artifact root is ./mlruns in the working directory
        experiment = mlflow.create_experiment("serving-seismic", artifact_location=(base / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment):
            infos = {
                "rf": log_seismic_model(rf, "facies-rf", table),
                "gtm": log_seismic_model(gtm, "facies-gtm", table),
            }
        yield {"base": base, "rf": rf, "gtm": gtm, "infos": infos, "experiment": experiment}
    finally:
        mlflow.set_tracking_uri(None)
        if before is not None:
            os.environ["MLFLOW_TRACKING_URI"] = before


@pytest.fixture(scope="module")
def served(store: dict) -> dict:
    return {kind: mlflow.pyfunc.load_model(f"models:/facies-{kind}/1") for kind in ("rf", "gtm")}


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OVERSEER_PROGRESS", "0")


# ---------------------------------------------------------------------------- columns by name
@pytest.mark.parametrize("kind", ["rf", "gtm"])
def test_reversed_columns_predict_the_same_facies_names(served: dict, kind: str) -> None:
    """The issue's bug: the sklearn-flavor model took reversed columns by position and predicted wrong."""
    rows = _rows()
    model = served[kind]
    ordered = model.predict(rows)
    reversed_ = model.predict(rows[FEATURES[::-1]])
    with_extra = model.predict(rows.assign(inline=7.0, xline=3.0)[["xline", *FEATURES[::-1], "inline"]])
    pd.testing.assert_frame_equal(reversed_, ordered)
    pd.testing.assert_frame_equal(with_extra, ordered)
    assert set(ordered["facies"]) <= set(FACIES) and ordered["facies"].nunique() > 1
    estimator = model.unwrap_python_model().model.estimator
    by_position = estimator.predict(rows[FEATURES[::-1]].to_numpy(np.float32))
    assert (np.asarray(FACIES, dtype=object)[by_position] != ordered["facies"].to_numpy()).any()  # it matters


def test_our_own_matching_holds_without_mlflows_enforcement(served: dict) -> None:
    """``predict`` called directly (no signature in front of it): names in any order and any case."""
    python_model = served["rf"].unwrap_python_model()
    rows = _rows()
    expected = served["rf"].predict(rows)
    mixed = rows[FEATURES[::-1]].rename(columns={"GR": "gr"}).assign(extra="x")
    pd.testing.assert_frame_equal(python_model.predict(None, mixed), expected)


def test_a_missing_column_is_an_error_naming_it(served: dict) -> None:
    rows = _rows().drop(columns="RHOB")
    with pytest.raises(MlflowException, match=r"missing inputs \['RHOB'\]"):  # MLflow's signature check
        served["rf"].predict(rows)
    with pytest.raises(InputError, match=r"no column for attribute \['RHOB'\]; the model needs \['GR', 'RHOB', 'DT'\]"):
        served["rf"].unwrap_python_model().predict(None, rows)  # ours, where no signature checks first


def test_bad_values_are_errors_naming_column_and_row(served: dict) -> None:
    python_model = served["rf"].unwrap_python_model()
    rows = _rows(n=4)
    text = rows.astype(object)
    text.loc[2, "DT"] = "high"
    with pytest.raises(InputError, match=r"record row 2: attribute 'DT' \(column 'DT'\) must be a number, got 'high'"):
        python_model.predict(None, text)
    with pytest.raises(MlflowException, match="DT"):  # MLflow refuses text in a double column first
        served["rf"].predict(text)
    missing = rows.copy()
    missing.loc[1, "GR"] = np.nan
    for predict in (served["rf"].predict, lambda frame: python_model.predict(None, frame)):
        with pytest.raises(
            InputError, match=r"record row 1: attribute 'GR' .*is missing \(nan\) in 1 of 4 rows"
        ) as err:
            predict(missing)  # NaN passes MLflow's check; missing samples are refused, as predict_table does
        assert isinstance(err.value, MlflowException) and err.value.error_code == "INVALID_PARAMETER_VALUE"  # 400


# ---------------------------------------------------------------------------- outputs
@pytest.mark.parametrize("kind", ["rf", "gtm"])
def test_outputs_are_facies_names_and_the_probabilities_of_predict_table(store: dict, served: dict, kind: str) -> None:
    rows = _rows()
    out = served[kind].predict(rows)
    assert list(out.columns) == ["facies", *PROBABILITIES]
    folder_model = load_seismic_model(store[kind])
    logs = rows.assign(well="A-1", depth=1000.0 + np.arange(len(rows)))
    table = predict_table(folder_model, logs)
    np.testing.assert_allclose(out[PROBABILITIES].to_numpy(), table[PROBABILITIES].to_numpy())
    assert out["facies"].tolist() == table["facies"].tolist()
    np.testing.assert_allclose(out[PROBABILITIES].sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("kind", ["rf", "gtm"])
def test_signature_input_example_and_requirements(store: dict, served: dict, kind: str) -> None:
    info = store["infos"][kind]
    assert info.registered_model_version == 1
    signature = served[kind].metadata.signature
    assert [(c.name, c.type.name) for c in signature.inputs.inputs] == [(f, "double") for f in FEATURES]
    assert [(c.name, c.type.name) for c in signature.outputs.inputs] == [
        ("facies", "string"), *[(p, "double") for p in PROBABILITIES]
    ]  # fmt: skip
    local = Path(mlflow.artifacts.download_artifacts(f"models:/facies-{kind}/1"))
    example = mlflow.models.Model.load(local).load_input_example(local)
    assert list(example.columns) == FEATURES and len(example) == 3
    assert served[kind].predict(example)["facies"].nunique() > 1  # one row of each facies of the table
    requirements = (local / "requirements.txt").read_text().split()
    assert set(pip_requirements()) <= set(requirements)
    assert any(r.startswith("scikit-learn==") for r in requirements) and any(
        r.startswith("skops==") for r in requirements
    )
    assert (local / "code" / "overseer" / "serving" / "seismic.py").is_file()  # our code travels with it
    carried = sorted(p.name for p in (local / "artifacts" / "export").iterdir())
    assert carried == ["config.json", "model.skops", "model.versions.json"]  # not the export's volumes


# ---------------------------------------------------------------------------- overseer predict seismic --model URI
def test_load_seismic_model_takes_a_registry_uri_or_mlflow_folder(store: dict, tmp_path: Path) -> None:
    logs = _rows(seed=4).assign(well="W", depth=np.arange(30.0))
    logs.to_csv(tmp_path / "w.csv", index=False)
    expected = predict_tables(load_seismic_model(store["rf"]), [tmp_path / "w.csv"], progress=False)
    from_uri = load_seismic_model("models:/facies-rf/1")
    assert isinstance(from_uri, SeismicModel) and from_uri.features == FEATURES
    pd.testing.assert_frame_equal(predict_tables(from_uri, [tmp_path / "w.csv"], progress=False), expected)
    folder = mlflow.artifacts.download_artifacts("models:/facies-rf/1", dst_path=str(tmp_path / "mlflow-model"))
    pd.testing.assert_frame_equal(predict_tables(load_seismic_model(folder), [tmp_path / "w.csv"]), expected)


def test_a_model_uri_that_is_not_ours_is_an_input_error(store: dict) -> None:
    from sklearn.dummy import DummyClassifier

    with mlflow.start_run(experiment_id=store["experiment"]):
        mlflow.sklearn.log_model(
            DummyClassifier().fit([[0.0]], [0]),
            name="model",
            registered_model_name="dummy",
            pip_requirements=["scikit-learn"],
        )
    with pytest.raises(InputError, match=r"models:/dummy/1: not an overseer seismic facies model \(flavors"):
        load_seismic_model("models:/dummy/1")
    with pytest.raises(InputError, match="cannot load the MLflow model"):
        load_seismic_model("models:/no-such-model/1")


# ---------------------------------------------------------------------------- well-log models
def test_a_well_log_model_takes_its_training_files_headers() -> None:
    """A model that records ingest's ``inputs``: its input is the training file's columns (role columns
    by their headers, a categorical log as text); the example rows come from the encoded training table."""
    features = ["GR", "RHOB", "Formation:A", "Formation:B"]
    rng = np.random.default_rng(0)
    encoded = pd.DataFrame({
        "well": np.repeat(["W1", "W2"], 40), "depth": np.tile(np.arange(40.0), 2), "facies": rng.integers(0, 2, 80),
        "GR": rng.normal(50, 10, 80), "RHOB": rng.normal(2.3, 0.1, 80), "Formation:A": np.tile([1.0, 0.0], 40),
    }).assign(**{"Formation:B": lambda t: 1.0 - t["Formation:A"]})  # fmt: skip
    pipeline = build_pipeline(5, max_depth=3, normalise=False, class_weight=None, random_state=0, n_jobs=1)
    pipeline.fit(encoded[features].to_numpy(np.float32), encoded["facies"])
    inputs = {
        "columns": {"well": "Well Name", "depth": "Depth", "facies": "Facies"}, "drop": [],
        "categorical": {"Formation": ["A", "B"]}, "logs": ["GR", "RHOB"], "features": features,
        "facies": {"names": ["SS", "SH"], "codes": None}, "missing": "error", "na_values": ["-999.25"],
    }  # fmt: skip
    model = SeismicModel(pipeline, features, ["SS", "SH"], [0, 1], Path("."), inputs=inputs, config={})
    columns = input_columns(model)
    assert columns == {
        "Well Name": "string",
        "Depth": "double",
        "GR": "double",
        "RHOB": "double",
        "Formation": "string",
    }
    example = example_rows(model, encoded)
    assert list(example.columns) == list(columns) and len(example) == 3
    source = encoded.set_index("GR").loc[example["GR"]]  # the training rows the example came from
    assert example["Formation"].tolist() == [["A", "B"][int(b)] for b in source["Formation:B"]]
    assert example["Well Name"].tolist() == source["well"].tolist()
    out = predict_frame(model, example.iloc[:, ::-1])
    assert list(out.columns) == ["well", "depth", "facies", "p_SS", "p_SH"]
    expected = pipeline.predict_proba(source.reset_index()[features].to_numpy(np.float32))
    np.testing.assert_allclose(out[["p_SS", "p_SH"]].to_numpy(), expected)


def test_an_attribute_model_without_an_example_table_asks_for_one(store: dict, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no data/prepared/seismic/train.parquet here
    with pytest.raises(InputError, match="pass example="):
        log_seismic_model(store["rf"], "never-registered")
    with pytest.raises(InputError, match=r"the example table has no column for \['DT'\]"):
        example_rows(load_seismic_model(store["rf"]), _rows().drop(columns="DT"))


def test_the_python_model_pickles_without_its_loaded_model(store: dict) -> None:
    import cloudpickle

    python_model = SeismicFaciesModel()
    python_model.load_context(SimpleNamespace(artifacts={"export": str(store["rf"])}))
    assert isinstance(python_model.model, SeismicModel)
    assert cloudpickle.loads(cloudpickle.dumps(python_model)).model is None
