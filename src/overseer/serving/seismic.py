"""The seismic facies model as an MLflow model that serves: attribute (or log) columns by name → facies.

:class:`SeismicFaciesModel` wraps an exported seismic model folder (``models/seismic/export``,
random forest, or ``models/seismic/gtm/export``, GTM), logged as the artifact ``export``. It loads
it once (:func:`overseer.seismic.predict.load_seismic_model`) and predicts with
:func:`overseer.seismic.predict.predict_frame`, the code ``overseer predict seismic`` runs for a table:

- **input**: a DataFrame with one column per attribute the model was trained on (its
  ``config.json`` ``features``), found **by name**: any order, other columns ignored. A missing
  attribute is an error naming it and the attributes the model needs; a value that is not a number
  or is missing (NaN, infinite, LAS's null -999.25) one naming the column and the row — the model
  needs every attribute at every sample, as for tables and volumes (fill or drop those rows).
  A well-log model (it records ingest's ``inputs``, uses well features or smooths per well) takes
  the well and depth columns too (:func:`overseer.seismic.predict.input_columns`).
- **output**: ``facies`` (the name of the most probable facies) and ``p_<facies>`` (its probability
  of each facies the model knows), one row per input row; a well-log model's output starts with
  ``well`` and ``depth`` (``predict_table``'s layout).

The signature lists the input columns (``double``; ``string`` for a well name or a categorical log)
and the outputs. MLflow (3.17) enforces it before :meth:`SeismicFaciesModel.predict` sees the input:
a missing column is an ``MlflowException`` ("Model is missing inputs [...]"; names are matched
exactly there), extra columns are dropped with a warning, the columns are put in the signature's
order, float32 and int32 become doubles but an int64 column is refused in-process ("Can not safely
convert int64 to float64": pass floats; over REST the server casts the JSON to the signature's types
first, so integers there are fine), and text in a ``double`` column is refused; NaN passes to our
check. :meth:`~SeismicFaciesModel.predict` relies on none of it (called directly, with the signature
gone or a newer MLflow): it finds its columns by name itself (ignoring case too), and raises
:class:`ServedInputError` — an ``InputError`` and an ``MlflowException`` (``INVALID_PARAMETER_VALUE``)
— so a served model answers bad input with HTTP 400 and the message naming the column and row.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from overseer.errors import InputError

ARTIFACT = "export"  # the artifact key of the exported model folder
EXAMPLE_ROWS = 3


class ServedInputError(InputError, MlflowException):
    """Bad input to the served model: an :class:`~overseer.errors.InputError` that is also an
    ``MlflowException`` (``INVALID_PARAMETER_VALUE``), so that ``mlflow models serve`` answers 400 with
    its message (naming the column and row) instead of a generic "unexpected error"."""

    def __init__(self, error: InputError) -> None:
        MlflowException.__init__(self, str(error), error_code=INVALID_PARAMETER_VALUE)
        self.path, self.record = error.path, error.record


class SeismicFaciesModel(mlflow.pyfunc.PythonModel):
    """``mlflow.pyfunc.PythonModel`` of an exported seismic model folder (artifact ``export``):
    attribute columns by name → ``facies`` (name) and ``p_<facies>`` (module notes). The loaded
    :class:`~overseer.seismic.predict.SeismicModel` is :attr:`model` (``unwrap_python_model().model``)."""

    def __init__(self) -> None:
        self.model: Any = None  # the SeismicModel, loaded by load_context (never pickled)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "model": None}

    def load_context(self, context: Any) -> None:
        """Load the export folder once (``load_seismic_model``: types checked, config checked)."""
        from overseer.seismic.predict import load_seismic_model

        self.model = load_seismic_model(context.artifacts[ARTIFACT])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """``facies`` and ``p_<facies>`` of every row of ``model_input`` (columns found by name);
        bad input is a :class:`ServedInputError` naming the column and row."""
        from overseer.seismic.predict import predict_frame

        if self.model is None:
            self.load_context(context)
        try:
            if not isinstance(model_input, pd.DataFrame):
                raise InputError(f"expected a table (DataFrame) of attribute columns, got {type(model_input).__name__}")
            return predict_frame(self.model, model_input)
        except InputError as error:
            raise ServedInputError(error) from None


def load_served_model(uri: str | os.PathLike) -> Any:
    """The :class:`~overseer.seismic.predict.SeismicModel` inside the MLflow model ``uri`` (a
    ``models:/…``/``runs:/…`` URI or a local folder with an ``MLmodel`` file) that
    :func:`log_seismic_model` logged, loaded once by its ``load_context``; anything else (another
    flavor, such as a version registered with the sklearn flavor) is an ``InputError``."""
    from overseer.seismic.predict import SeismicModel
    from overseer.serving.pyfunc import load_pyfunc

    pyfunc = load_pyfunc(uri)
    try:
        wrapped = pyfunc.unwrap_python_model()
    except MlflowException:  # not a PythonModel
        wrapped = None
    model = getattr(wrapped, "model", None)
    if not isinstance(model, SeismicModel):
        flavors = sorted(getattr(pyfunc.metadata, "flavors", None) or {})
        raise InputError(
            f"not an overseer seismic facies model (flavors {flavors}); register one with "
            "`dvc repro export@rf` (overseer.serving.seismic.log_seismic_model)",
            path=os.fspath(uri),
        )
    return model


# ---------------------------------------------------------------------------- logging
def pip_requirements() -> list[str]:
    """What the served model imports at load and predict time, pinned to the versions here: the
    scikit-learn and skops that read ``model.skops``
    (:func:`overseer.seismic.model_io.pip_requirements`), NumPy, pandas, tqdm (imported by
    ``overseer.seismic.predict``) and MLflow itself."""
    from importlib.metadata import version

    from overseer.seismic.model_io import pip_requirements as model_requirements

    pinned = list(model_requirements())
    for package in ("numpy", "pandas", "tqdm", "mlflow"):
        pinned.append(f"{package}=={version(package)}")
    return pinned


def signature(model: Any) -> Any:
    """The MLflow signature of a loaded :class:`~overseer.seismic.predict.SeismicModel`: one column
    per input (:func:`overseer.seismic.predict.input_columns`, by name), and the output columns
    (``well``/``depth`` for a well-log model, ``facies`` string, ``p_<facies>`` double)."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    from overseer.seismic.predict import PROBABILITY_PREFIX, input_columns, needs_well_and_depth_columns

    inputs = Schema([ColSpec(kind, name) for name, kind in input_columns(model).items()])
    outputs = [ColSpec("string", "well"), ColSpec("double", "depth")] if needs_well_and_depth_columns(model) else []
    outputs.append(ColSpec("string", "facies"))
    outputs += [ColSpec("double", f"{PROBABILITY_PREFIX}{name}") for name in model.class_names]
    return ModelSignature(inputs=inputs, outputs=Schema(outputs))


def _lookup(table: pd.DataFrame) -> dict[str, Any]:
    return {str(c).strip().casefold(): c for c in table.columns}


def example_rows(model: Any, table: pd.DataFrame, n: int = EXAMPLE_ROWS) -> pd.DataFrame:
    """``n`` real rows of ``table`` as the model's input (:func:`overseer.seismic.predict.input_columns`,
    in that order): from a table of those columns (found by name, case-insensitive), or from a
    training table (``data/prepared/seismic/train.parquet``: well-log models' categorical logs
    come back from their one-hot columns). Rows with a missing value are skipped; with a ``facies``
    column, one row of each of the first ``n`` facies. An ``InputError`` when a column is not there."""
    from overseer.seismic.predict import input_columns

    columns = input_columns(model)
    found = _lookup(table)
    inputs = model.inputs if model.inputs is not None and isinstance(model.inputs.get("logs"), list) else None
    frame: dict[str, Any] = {}
    missing: list[str] = []
    roles = {"well": "well", "depth": "depth", **((inputs or {}).get("columns") or {})}
    for name in columns:
        source = found.get(name.strip().casefold())
        if source is None and inputs is not None:  # a training table: role columns by role, one-hot levels
            role = next((r for r in ("well", "depth") if str(roles[r]) == name), None)
            source = found.get(role) if role else None
            if source is None and name in (inputs.get("categorical") or {}):
                frame[name] = _categorical_levels(table, inputs, name)
                continue
        if source is None:
            missing.append(name)
        else:
            frame[name] = table[source].to_numpy()
    if missing:
        raise InputError(f"the example table has no column for {missing}; the model needs {list(columns)}")
    rows = pd.DataFrame(frame, index=table.index)
    numbers = [c for c, kind in columns.items() if kind == "double"]
    ok = np.isfinite(rows[numbers].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)).all(axis=1)
    ok &= rows.notna().all(axis=1).to_numpy()
    chosen = np.flatnonzero(ok)
    facies = found.get("facies")
    if facies is not None and "facies" not in {n.casefold() for n in columns}:  # one row per facies first
        _, first = np.unique(table[facies].to_numpy()[chosen], return_index=True)
        picks = chosen[np.sort(first[:n])]
        chosen = np.r_[picks, np.setdiff1d(chosen, picks)]
    rows = rows.iloc[chosen[:n]].reset_index(drop=True)
    if rows.empty:
        raise InputError("the example table has no row with every input column filled")
    for name, kind in columns.items():
        rows[name] = rows[name].astype(str) if kind == "string" else rows[name].astype(np.float64)
    return rows


def _categorical_levels(table: pd.DataFrame, inputs: dict[str, Any], name: str) -> np.ndarray:
    """A categorical log's level per row, from its one-hot feature columns in an encoded training table."""
    features, logs = list(inputs["features"]), list(inputs["logs"])
    start = len(logs)
    for other, levels in inputs["categorical"].items():
        if other == name:
            hot = features[start : start + len(levels)]
            found = _lookup(table)
            absent = [h for h in hot if h.casefold() not in found]
            if absent:
                raise InputError(f"the example table has no column for {[name]} (nor its one-hot columns {absent})")
            codes = table[[found[h.casefold()] for h in hot]].to_numpy(dtype=np.float64).argmax(axis=1)
            return np.asarray(levels, dtype=object)[codes]
        start += len(levels)
    raise InputError(f"{name!r} is not a categorical log of the model")


def _default_example(model: Any) -> pd.DataFrame:
    """Example rows from the project's training table (as the stages run: from the repository root)."""
    from overseer.paths import SEISMIC_TRAIN_TABLE
    from overseer.seismic.predict import read_log_table

    if not Path(SEISMIC_TRAIN_TABLE).is_file():
        raise InputError(
            "no training table to take example rows from; pass example= (a table of the model's inputs)",
            path=SEISMIC_TRAIN_TABLE,
        )
    return example_rows(model, read_log_table(SEISMIC_TRAIN_TABLE))


def served_files(export_dir: str | os.PathLike) -> list[Path]:
    """The files of an export folder the served model carries: ``model.skops`` and the folder's JSON
    files (``config.json``, ``model.versions.json``, ``selection.json``/``evaluation.json``), not its
    subfolders and volumes (the forest's ``facies/``, the GTM's probability volumes)."""
    folder = Path(export_dir)
    return sorted(p for p in folder.iterdir() if p.is_file() and (p.name == "model.skops" or p.suffix == ".json"))


def log_seismic_model(export_dir: str | os.PathLike, registered_name: str, example: pd.DataFrame | None = None) -> Any:
    """Log the exported seismic model folder ``export_dir`` (forest or GTM) as a pyfunc
    :class:`SeismicFaciesModel` under the active MLflow run and register it as a new version of
    ``registered_name``; returns MLflow's ``ModelInfo``.

    The folder is loaded first (so a broken export fails here, not in serving); its
    :func:`served_files` become the artifact ``export``. The input example is 2–3 real rows
    (:func:`example_rows`) of ``example`` when given, else of the project's training table
    ``data/prepared/seismic/train.parquet`` (relative to the working directory); they are predicted
    here too, so the logged example is known to work. Signature: :func:`signature`; pip
    requirements: :func:`pip_requirements`; this package travels as ``code_paths``.
    """
    import shutil
    import tempfile

    from overseer.seismic.predict import load_seismic_model, predict_frame
    from overseer.serving.pyfunc import log_pyfunc

    folder = Path(export_dir)
    model = load_seismic_model(folder)
    rows = example_rows(model, example) if example is not None else _default_example(model)
    predict_frame(model, rows)  # the example predicts, or the export stops here
    with tempfile.TemporaryDirectory(prefix="seismic-served-") as tmp:
        staged = Path(tmp) / ARTIFACT
        staged.mkdir()
        for path in served_files(folder):
            shutil.copy2(path, staged / path.name)
        return log_pyfunc(
            SeismicFaciesModel,
            registered_name,
            artifacts={ARTIFACT: staged},
            signature=signature(model),
            input_example=rows,
            pip_requirements=pip_requirements(),
        )
