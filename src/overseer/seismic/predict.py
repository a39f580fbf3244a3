"""Facies of new wells and new surveys with an exported seismic model (``overseer predict seismic``).

An exported model folder (``models/seismic/export``, written by ``export@rf``) holds
``model.skops`` (the rfc3d pipeline, loaded once by :func:`load_seismic_model`) and ``config.json``:
``features`` (the attribute names in training order), ``facies`` (facies names; facies id = position)
and, for models trained since ingest recorded them, ``inputs`` (how ingest read the training data).
The model's classes are the facies ids it was trained on, so class ``c`` is called ``facies[c]``.
``--model`` may also name the MLflow model of an export (``models:/NAME@champion``, ``runs:/…`` or a
folder with an ``MLmodel`` file, :mod:`overseer.serving.seismic`): it is loaded through MLflow, as
a served copy is, and its :class:`SeismicModel` predicts tables and volumes as a folder's does.

**Tables of attribute columns** (what the served model takes): :func:`predict_frame` finds the
model's attributes by name (any order, other columns ignored) and returns ``facies`` and
``p_<facies>``; for a well-log model it is :func:`predict_table`.

**Well-log tables** (CSV or Parquet, one row per sample): the model's logs are found **by name** —
through ``overseer.seismic.data.well_logs.prepare_log_table`` when the model records its ``inputs``
and that function exists, else case-insensitively — so column order does not matter and other
columns are ignored. :func:`predict_table` returns ``well``, ``depth``, ``facies`` (the most probable
facies' name) and ``p_<facies>``, one probability column per facies the model knows.

**Attribute volumes** (SEG-Y or ``.npy``, all on one grid, one per feature: named by their file stem
or ``name=path``): :func:`predict_volumes` classifies every voxel in bounded-memory chunks
(:func:`overseer.seismic.predict_volume.predict_volume`) into an output folder, written as a whole or
not at all: ``facies.npy`` (int8 ids) or, for SEG-Y input, ``facies.sgy`` (the first SEG-Y input's
headers, inline/crossline numbers included; int16 samples), optionally ``p_<facies>.npy``/``.sgy``
(float32 probabilities), and ``facies.json``, the legend (id → name, files, sources, counts).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from overseer.errors import InputError
from overseer.io import atomic_dir, write_json
from overseer.seismic.well_features import (
    KEY_COLUMNS,
    check_window,
    model_matrix,
    needs_well_and_depth,
    smooth_per_well,
)

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
VOLUME_SUFFIXES = (".sgy", ".segy", ".npy")
SEGY_SUFFIXES = (".sgy", ".segy")
#: LAS's null value: a log sample that is missing (as ingest's well-log reader treats it)
LOG_NULL = -999.25
LEGEND = "facies.json"
LEGEND_FORMAT = "overseer-seismic-facies/1"
UNDEFINED = -1
PROBABILITY_PREFIX = "p_"


@dataclass(frozen=True)
class SeismicModel:
    """An exported seismic model, loaded once: the fitted pipeline and what ``config.json`` says of it."""

    estimator: Any  # the fitted scikit-learn pipeline (predict_proba, classes_)
    features: list[str]  # attribute names in training order (the model's input columns)
    facies: list[str]  # every facies name; facies id = position
    class_ids: list[int]  # the facies id of each probability column (the model's classes_)
    path: Path  # the model folder
    inputs: dict[str, Any] | None = None  # how ingest read the training data (config["inputs"]), if recorded
    config: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def class_names(self) -> list[str]:
        """The facies name of each probability column."""
        return [self.facies[c] for c in self.class_ids]


# ---------------------------------------------------------------------------- the model
def load_seismic_model(model_dir: str | os.PathLike) -> SeismicModel:
    """Load an exported seismic model: a folder, or an MLflow model of one.

    A folder (``models/seismic/export``): ``model_dir/model.skops`` (types checked,
    :func:`overseer.seismic.model_io.load_model`) and ``config.json``, checked to agree: the model
    takes ``len(features)`` attributes and its classes are facies ids that ``facies`` names.
    An MLflow model — a ``models:/NAME@champion`` / ``runs:/…`` URI or a local folder with an
    ``MLmodel`` file, logged by :func:`overseer.serving.seismic.log_seismic_model` — is loaded
    through MLflow (``mlflow.pyfunc.load_model``, the path a served copy takes), and its
    :class:`SeismicModel` is the one its ``load_context`` loaded. Anything missing or inconsistent
    is an ``InputError``."""
    from overseer.seismic.model_io import load_model
    from overseer.serving.pyfunc import is_model_uri

    if is_model_uri(model_dir) or (Path(model_dir) / "MLmodel").is_file():
        from overseer.serving.seismic import load_served_model

        return load_served_model(model_dir)
    folder = Path(model_dir)
    hint = "run `dvc repro export@rf` or pass --model"
    if not folder.is_dir():
        raise InputError(f"no exported seismic model folder here; {hint}", path=folder)
    if not (folder / "model.skops").is_file():
        raise InputError(f"no model.skops: not an exported seismic model; {hint}", path=folder)
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise InputError("no config.json beside model.skops (it names the features and facies)", path=folder)
    try:
        config = json.loads(config_path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"not readable JSON ({exc})", path=config_path) from None
    if not isinstance(config, dict):
        raise InputError("expected a JSON object with 'features' and 'facies'", path=config_path)
    features, facies = config.get("features"), config.get("facies")
    for key, value in (("features", features), ("facies", facies)):
        if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
            raise InputError(f"'{key}' must be a non-empty list of names, got {value!r}", path=config_path)
    if len(set(facies)) != len(facies):
        raise InputError(f"'facies' names must be unique, got {facies}", path=config_path)
    estimator = load_model(folder / "model.skops")
    n_in = getattr(estimator, "n_features_in_", None)
    if n_in is not None and int(n_in) != len(features):
        raise InputError(
            f"the model takes {n_in} attributes but 'features' lists {len(features)}: {features}", path=config_path
        )
    classes = np.asarray(getattr(estimator, "classes_", []))
    whole = classes.size and (
        np.issubdtype(classes.dtype, np.integer)
        or (np.issubdtype(classes.dtype, np.floating) and np.all(classes == np.round(classes)))
    )
    if not whole or classes.min() < 0 or classes.max() >= len(facies):
        raise InputError(
            f"the model's classes {classes.tolist()} are not facies ids 0..{len(facies) - 1} of 'facies' {facies}",
            path=config_path,
        )
    inputs = config.get("inputs")
    return SeismicModel(
        estimator=estimator,
        features=list(features),
        facies=list(facies),
        class_ids=[int(c) for c in classes],
        path=folder,
        inputs=dict(inputs) if isinstance(inputs, dict) else None,
        config=config,
    )


# ---------------------------------------------------------------------------- well-log tables
def is_table_path(path: str | os.PathLike) -> bool:
    """True for a file name that :func:`read_log_table` reads (.csv, .parquet)."""
    return Path(path).suffix.lower() in TABLE_SUFFIXES


def read_log_table(path: str | os.PathLike) -> pd.DataFrame:
    """A well-log table as the user wrote it, from CSV or Parquet (names and values untouched)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("well-log table not found", path=path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            table = pd.read_csv(path)
        elif suffix in (".parquet", ".pq"):
            table = pd.read_parquet(path)
        else:
            raise InputError(f"unsupported table type {path.suffix!r}; expected .csv or .parquet", path=path)
    except InputError:
        raise
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        what = "CSV" if suffix == ".csv" else "Parquet"
        raise InputError(f"not a readable {what} table ({exc})", path=path) from None
    if table.empty:
        raise InputError("the table has no rows", path=path)
    return table


def _record(table: pd.DataFrame, i: int, path: Path | None) -> str:
    """How a message names row ``i`` of ``table``: its file line for a CSV (header = line 1), else its row."""
    label = table.index[i]
    if path is not None and path.suffix.lower() == ".csv" and isinstance(label, int | np.integer):
        return f"line {int(label) + 2}"
    return f"row {label}"


def _find_columns(table: pd.DataFrame, names: Sequence[str], path: Path | None, what: str) -> dict[str, Any]:
    """Each of ``names`` → its column in ``table``: the same name, else the one column equal to it
    ignoring case. A name with no column (or two) is an ``InputError`` naming it and the file."""
    by_lower: dict[str, list[Any]] = {}
    for column in table.columns:
        by_lower.setdefault(str(column).strip().casefold(), []).append(column)
    found, missing = {}, []
    for name in names:
        if name in table.columns:
            found[name] = name
            continue
        candidates = by_lower.get(name.strip().casefold(), [])
        if len(candidates) > 1:
            raise InputError(f"columns {candidates} all match {what} {name!r} (names are case-insensitive)", path=path)
        if candidates:
            found[name] = candidates[0]
        else:
            missing.append(name)
    if missing:
        raise InputError(
            f"no column for {what} {missing}; the model needs {list(names)} (matched by name, any order, "
            f"case-insensitive); the table has {[str(c) for c in table.columns]}",
            path=path,
        )
    return found


def _plain(value: Any) -> Any:
    """A cell as a message shows it: NumPy scalars as Python values (``nan``, not ``np.float64(nan)``)."""
    return value.item() if isinstance(value, np.generic) else value


def _number_matrix(table: pd.DataFrame, columns: Mapping[str, Any], path: Path | None, what: str) -> np.ndarray:
    """The float64 matrix of ``table``'s ``columns`` (name → column, in the model's order). A value that
    is not a number, missing (empty, NaN, infinite) or LAS's null (-999.25) is an ``InputError`` naming
    the file, the line or row and the column: the model needs every ``what`` at every sample."""
    x = np.empty((len(table), len(columns)), dtype=np.float64)
    for j, (name, column) in enumerate(columns.items()):
        raw = table[column]
        values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64)
        text = ~raw.isna().to_numpy() & np.isnan(values)
        if text.any():
            i = int(np.flatnonzero(text)[0])
            raise InputError(
                f"{what} {name!r} (column {column!r}) must be a number, got {_plain(raw.iloc[i])!r}",
                path=path,
                record=_record(table, i, path),
            )
        bad = ~np.isfinite(values) | (values == LOG_NULL)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(
                f"{what} {name!r} (column {column!r}) is missing ({_plain(raw.iloc[i])!r}) in {int(bad.sum())} of "
                f"{len(values)} rows; the model needs every {what} at every sample: fill or drop those rows",
                path=path,
                record=_record(table, i, path),
            )
        x[:, j] = values
    return x


def _prepare(model: SeismicModel, table: pd.DataFrame, path: Path | None) -> pd.DataFrame:
    """``table`` after what ingest did to the training table (``prepare_log_table``), when the model
    records its ``inputs`` and that function exists; else ``table`` itself."""
    if model.inputs is None:
        return table
    try:
        from overseer.seismic.data import well_logs
    except ImportError:
        return table
    prepare = getattr(well_logs, "prepare_log_table", None)
    if prepare is None:
        return table
    return prepare(table, model.inputs, path=path)


def log_features(
    model: SeismicModel, table: pd.DataFrame, *, path: str | os.PathLike | None = None
) -> tuple[pd.DataFrame, np.ndarray]:
    """(``well``/``depth`` of every row, float32 feature matrix in the model's order) of a well-log table.

    ``table`` is prepared as ingest prepared training (see :func:`_prepare`), then its ``well`` and
    ``depth`` columns and the model's logs are found by name (case-insensitive). A log value that is
    not a number, missing or LAS's null (-999.25) is an ``InputError`` naming the file, line and column.
    """
    path = Path(path) if path is not None else None
    table = _prepare(model, table, path)
    keys = _find_columns(table, ["well", "depth"], path, "column")
    logs = (
        [f for f in model.features if f not in KEY_COLUMNS] if needs_well_and_depth(model.features) else model.features
    )
    x = _number_matrix(table, _find_columns(table, logs, path, "log"), path, "log")
    keys_frame = pd.DataFrame(
        {"well": table[keys["well"]].astype(str).str.strip().to_numpy(), "depth": table[keys["depth"]].to_numpy()}
    )
    if not needs_well_and_depth(model.features):
        return keys_frame, x.astype(np.float32)
    depth = pd.to_numeric(keys_frame["depth"], errors="coerce").to_numpy(dtype=np.float64)
    if not np.isfinite(depth).all():
        i = int(np.flatnonzero(~np.isfinite(depth))[0])
        raise InputError(
            f"depth (column {keys['depth']!r}) must be a number at every sample, got {table[keys['depth']].iloc[i]!r}; "
            "the model's well features follow depth",
            path=path,
            record=_record(table, i, path),
        )
    frame = pd.DataFrame(x, columns=logs).assign(well=keys_frame["well"], depth=depth)
    return keys_frame, model_matrix(frame, model.features)  # as training built it: well codes, depth, logs


def smooth_window(model: SeismicModel) -> int:
    """The post-hoc filter's window the model records (``config.json["smooth"]["window"]``; 1: none)."""
    smooth = model.config.get("smooth") or {}
    return check_window(smooth.get("window", 1)) if isinstance(smooth, dict) else 1


def predict_table(model: SeismicModel, table: pd.DataFrame, *, path: str | os.PathLike | None = None) -> pd.DataFrame:
    """Facies of every row of a well-log table: ``well``, ``depth``, ``facies`` (name of the most
    probable facies, as the forest's ``predict``, then the per-well running mode filter over depth
    the model records, :func:`overseer.seismic.well_features.smooth_per_well`) and ``p_<facies>``
    per facies the model knows (the model's probabilities, before the filter).
    ``path`` is the file the table came from (for messages). A model whose input starts with
    ``well`` and ``depth`` (``train_rf.well_features``) gets them with the logs."""
    keys, x = log_features(model, table, path=path)
    return facies_frame(model, model.estimator.predict_proba(x), keys)


def facies_frame(model: SeismicModel, proba: np.ndarray, keys: pd.DataFrame | None = None) -> pd.DataFrame:
    """The prediction table of the model's probabilities ``proba`` (rows × the model's classes):
    ``keys``' columns (``well``, ``depth``) when given, ``facies`` (the name of the most probable
    facies, then — with ``keys`` — the per-well running mode filter the model records) and
    ``p_<facies>`` per facies the model knows (before the filter)."""
    names = model.class_names
    out = keys.reset_index(drop=True) if keys is not None else pd.DataFrame(index=pd.RangeIndex(len(proba)))
    facies = np.asarray(names, dtype=object)[np.argmax(proba, axis=1)]
    window = smooth_window(model)
    if window > 1 and keys is not None:
        depth = pd.to_numeric(keys["depth"], errors="coerce").to_numpy(dtype=np.float64)
        facies = smooth_per_well(keys["well"].to_numpy(), depth, facies, window)
    out["facies"] = facies
    for k, name in enumerate(names):
        out[f"{PROBABILITY_PREFIX}{name}"] = proba[:, k]
    return out


def needs_well_and_depth_columns(model: SeismicModel) -> bool:
    """True for a well-log model that needs each row's ``well`` and ``depth``: it records ingest's
    ``inputs`` (a new table is prepared as ingest prepared training), its input starts with them
    (``train_rf.well_features``) or it smooths its facies per well over depth (``train_rf.smooth``)."""
    return model.inputs is not None or needs_well_and_depth(model.features) or smooth_window(model) > 1


def input_columns(model: SeismicModel) -> dict[str, str]:
    """The columns a table given to :func:`predict_frame` must have (name → ``"double"`` or
    ``"string"``), in the model's order. An attribute model: its ``features``. A well-log model
    (:func:`needs_well_and_depth_columns`): the well and depth columns, then the logs — for a model
    that records ``inputs``, the headers of its training file (role columns, logs, categorical)."""
    if model.inputs is not None and isinstance(model.inputs.get("logs"), list):
        roles = {"well": "well", "depth": "depth", **(model.inputs.get("columns") or {})}
        columns = {str(roles["well"]): "string", str(roles["depth"]): "double"}
        columns.update({str(log): "double" for log in model.inputs["logs"]})
        columns.update({str(name): "string" for name in model.inputs.get("categorical") or {}})
        return columns
    if needs_well_and_depth_columns(model):
        logs = [f for f in model.features if f not in KEY_COLUMNS]
        return {"well": "string", "depth": "double", **dict.fromkeys(logs, "double")}
    return dict.fromkeys(model.features, "double")


def attribute_matrix(model: SeismicModel, table: pd.DataFrame, *, path: str | os.PathLike | None = None) -> np.ndarray:
    """The float32 matrix (rows × ``model.features``, in the model's order) of a table of attribute
    columns: each feature is found **by name** (exactly, else ignoring case), so their order does
    not matter and other columns are ignored. A feature with no column is an ``InputError`` naming
    it and the ones the model needs; a value that is not a number or is missing (NaN, infinite,
    -999.25) one naming the column and row, as for well logs (:func:`log_features`) and volumes."""
    path = Path(path) if path is not None else None
    columns = _find_columns(table, model.features, path, "attribute")
    return _number_matrix(table, columns, path, "attribute").astype(np.float32)


def predict_frame(model: SeismicModel, table: pd.DataFrame, *, path: str | os.PathLike | None = None) -> pd.DataFrame:
    """Facies of every row of ``table`` — what the served model (:mod:`overseer.serving.seismic`) returns.

    A well-log model (:func:`needs_well_and_depth_columns`): :func:`predict_table` (``well``,
    ``depth``, ``facies``, ``p_<facies>``). An attribute model: ``facies`` and ``p_<facies>`` of the
    attribute columns found by name (:func:`attribute_matrix`), one row per input row, in order."""
    if needs_well_and_depth_columns(model):
        return predict_table(model, table, path=path)
    return facies_frame(model, model.estimator.predict_proba(attribute_matrix(model, table, path=path)))


def predict_tables(model: SeismicModel, paths: Sequence[str | os.PathLike], *, progress: bool = True) -> pd.DataFrame:
    """:func:`predict_table` of every well-log file in ``paths`` (CSV or Parquet), one table in order."""
    files = list(paths)
    parts = [
        predict_table(model, read_log_table(p), path=p)
        for p in tqdm(files, desc="predict well logs", unit="file", disable=not progress or len(files) < 2)
    ]
    return pd.concat(parts, ignore_index=True)


# ---------------------------------------------------------------------------- attribute volumes
def is_volume_argument(argument: str | os.PathLike) -> bool:
    """True for ``path`` or ``name=path`` naming a volume file (.sgy, .segy, .npy)."""
    return Path(split_volume_argument(str(argument))[1]).suffix.lower() in VOLUME_SUFFIXES


def split_volume_argument(argument: str) -> tuple[str, Path]:
    """(name, path) of ``name=path``, or of a bare path (its name: the file stem)."""
    name, sep, rest = str(argument).partition("=")
    if sep and name and os.sep not in name and "/" not in name and not Path(argument).exists():
        return name.strip(), Path(rest)
    path = Path(argument)
    return path.stem, path


def volume_sources(arguments: Sequence[str], features: Sequence[str]) -> tuple[dict[str, Path], list[str]]:
    """(feature → volume file, the names given that the model does not use) of ``name=path`` or bare
    path arguments. Names match features exactly, else ignoring case; a name given twice or a feature
    with no volume is an ``InputError``."""
    given: dict[str, Path] = {}
    for argument in arguments:
        name, path = split_volume_argument(argument)
        if name in given:
            raise InputError(
                f"two volumes are named {name!r} ({given[name]} and {path}); name them NAME=PATH", path=path
            )
        given[name] = path
    lower: dict[str, list[str]] = {}
    for name in given:
        lower.setdefault(name.casefold(), []).append(name)
    sources, missing = {}, []
    for feature in features:
        if feature in given:
            sources[feature] = given[feature]
        elif len(lower.get(feature.casefold(), [])) == 1:
            sources[feature] = given[lower[feature.casefold()][0]]
        else:
            missing.append(feature)
    if missing:
        raise InputError(
            f"no attribute volume for {missing}: the model needs {list(features)}, one volume each, named by "
            f"file stem or NAME=PATH; given {sorted(given)}"
        )
    used = {str(p) for p in sources.values()}
    ignored = [name for name, p in given.items() if str(p) not in used]
    return sources, ignored


def _safe(name: str) -> str:
    """A facies name as part of a file name."""
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", name) or "_"


def probability_file_names(model: SeismicModel, suffix: str) -> dict[int, str]:
    """Facies id → ``p_<name><suffix>``, made unique with the id where two names look alike in a file name."""
    stems = {c: f"{PROBABILITY_PREFIX}{_safe(n)}" for c, n in zip(model.class_ids, model.class_names, strict=True)}
    counts = pd.Series(list(stems.values())).str.casefold().value_counts()
    return {c: (f"{s}_{c}" if counts[s.casefold()] > 1 else s) + suffix for c, s in stems.items()}


def check_out_dir(out_dir: str | os.PathLike) -> Path:
    """``out_dir`` if a prediction may go there: absent, empty, or an earlier prediction (it has our
    legend), which it replaces. Anything else would be replaced too, so it is an ``InputError``."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InputError("the output folder is a file; choose a new --out folder", path=out)
    if out.is_dir() and any(out.iterdir()):
        legend = out / LEGEND
        try:
            ours = json.loads(legend.read_text()).get("format") == LEGEND_FORMAT
        except (OSError, ValueError, AttributeError):
            ours = False
        if not ours:
            raise InputError(
                "the output folder exists and is not an earlier facies prediction; it would be replaced "
                "as a whole, so choose a new or empty --out folder",
                path=out,
            )
    return out


def _grids(
    sources: Mapping[str, Path], iline_byte: int, xline_byte: int
) -> tuple[dict[str, np.ndarray | None], Any, Path | None]:
    """(feature → memory-mapped .npy or None for SEG-Y (read later), the shared grid, the SEG-Y template)."""
    from overseer.seismic.data.segy import segy_grid
    from overseer.seismic.data.volumes import check_same_grid, read_volume

    for path in sources.values():
        if Path(path).suffix.lower() not in VOLUME_SUFFIXES:
            raise InputError(f"unsupported volume file type {path.suffix!r}; expected .sgy, .segy or .npy", path=path)
    segy = [Path(p) for p in sources.values() if Path(p).suffix.lower() in SEGY_SUFFIXES]
    template = segy[0] if segy else None
    hint = segy_grid(template, iline_byte, xline_byte) if template is not None else None
    arrays: dict[str, np.ndarray | None] = {}
    grids = {}
    for feature, path in sources.items():
        if path.suffix.lower() in SEGY_SUFFIXES:
            grids[str(path)] = hint if path == template else segy_grid(path, iline_byte, xline_byte)
            arrays[feature] = None
        else:
            arrays[feature], grids[str(path)] = read_volume(path)
            if hint is not None:  # an .npy has no geometry of its own: it lies on the SEG-Y inputs' grid
                if tuple(arrays[feature].shape) != hint.shape:
                    raise InputError(
                        f"volumes must share one grid, but this array's shape {tuple(arrays[feature].shape)} is not "
                        f"that of {template} ({hint.describe()})",
                        path=path,
                    )
                grids[str(path)] = hint
    return arrays, check_same_grid(grids), template


def _read_segy_inputs(
    arrays: dict[str, np.ndarray | None], sources: Mapping[str, Path], grid: Any, folder: Path, ilb: int, xlb: int
) -> dict[str, np.ndarray]:
    """The SEG-Y inputs read into float32 ``.npy`` memory maps in ``folder`` (never whole in memory)."""
    from overseer.seismic.data.segy import read_segy

    volumes = {}
    for k, (feature, array) in enumerate(arrays.items()):
        if array is None:
            folder.mkdir(exist_ok=True)
            target = np.lib.format.open_memmap(folder / f"{k}.npy", mode="w+", dtype=np.float32, shape=grid.shape)
            read_segy(sources[feature], ilb, xlb, out=target)
            target.flush()
            array = target
        volumes[feature] = array
    return volumes


def _require_finite(volumes: Mapping[str, np.ndarray], sources: Mapping[str, Path], grid: Any, progress: bool) -> None:
    from overseer.seismic.data.volumes import describe_nonfinite, nonfinite_report

    for feature, volume in tqdm(volumes.items(), desc="check volumes", unit="volume", disable=not progress):
        report = nonfinite_report(volume)
        if report["nonfinite"]:
            raise InputError(
                f"attribute {feature!r}: {describe_nonfinite(report, grid)}; the model needs a finite value "
                "of every attribute at every voxel: fill or mask those voxels",
                path=sources[feature],
            )


def predict_volumes(
    model: SeismicModel,
    sources: Mapping[str, str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    probabilities: bool = False,
    chunk_voxels: int | None = None,
    n_jobs: int | None = None,
    progress: bool = True,
    iline_byte: int | None = None,
    xline_byte: int | None = None,
) -> dict[str, Any]:
    """Classify every voxel of the attribute volumes ``sources`` (feature name → SEG-Y or .npy file,
    see :func:`volume_sources`) into the folder ``out_dir``, which is written whole or not at all
    (it must be new, empty or an earlier prediction: :func:`check_out_dir`).

    The volumes must share one grid (a SEG-Y file's headers give it; .npy volumes take the SEG-Y
    inputs' grid) and be finite everywhere; the first volume that is not is an ``InputError`` naming
    its file and first bad voxel. Prediction runs in chunks of about ``chunk_voxels`` voxels with
    ``n_jobs`` workers (:func:`overseer.seismic.predict_volume.predict_volume`); SEG-Y inputs are
    first copied into memory maps inside the (temporary) output folder. Output in the inputs' format:
    ``facies.npy`` (int8 facies ids) for .npy inputs, ``facies.sgy`` (int16, the first SEG-Y input's
    headers) when any input is SEG-Y; with ``probabilities``, ``p_<facies>.npy``/``.sgy`` (float32);
    always the legend ``facies.json``. ``iline_byte``/``xline_byte``: the SEG-Y header bytes of the
    inline/crossline numbers (default: as the model's ``inputs`` record, else 189/193).

    Returns the final paths (``facies_path``, ``probability_paths`` by facies name, ``legend_path``)
    and the prediction's numbers (``voxels``, ``facies_counts`` by name, ``seconds``, ``chunks``).
    """
    from overseer.seismic.predict_volume import CHUNK_VOXELS, predict_volume, write_facies_segy

    inputs = model.inputs or {}
    ilb = int(iline_byte if iline_byte is not None else inputs.get("iline_byte", 189))
    xlb = int(xline_byte if xline_byte is not None else inputs.get("xline_byte", 193))
    sources = {f: Path(sources[f]) for f in model.features if f in sources}
    missing = [f for f in model.features if f not in sources]
    if missing:
        raise InputError(f"no attribute volume for {missing}: the model needs {model.features}")
    out = check_out_dir(out_dir)
    arrays, grid, template = _grids(sources, ilb, xlb)
    as_segy = template is not None
    suffix = ".sgy" if as_segy else ".npy"
    p_names = probability_file_names(model, suffix)
    with atomic_dir(out) as tmp:
        volumes = _read_segy_inputs(arrays, sources, grid, tmp / "_inputs", ilb, xlb)
        _require_finite(volumes, sources, grid, progress)
        stats = predict_volume(
            model.estimator, volumes, model.features, tmp / "facies.npy",
            int(chunk_voxels or CHUNK_VOXELS), probabilities_dir=tmp / "_probabilities" if probabilities else None,
            classes=model.class_ids, n_jobs=n_jobs, progress=progress,
        )  # fmt: skip
        del volumes
        written = {int(c): Path(p) for c, p in stats["probability_paths"].items()}
        if as_segy:
            options = {"iline_byte": ilb, "xline_byte": xlb}
            steps = [(tmp / "facies.npy", tmp / "facies.sgy", "int16")]
            steps += [(written[c], tmp / p_names[c], "float32") for c in written]
            for npy, target, dtype in tqdm(steps, desc="write SEG-Y", unit="volume", disable=not progress):
                write_facies_segy(npy, template, target, segy_options={**options, "dtype": dtype})
                npy.unlink()
        else:
            for c, npy in written.items():
                os.replace(npy, tmp / p_names[c])
        for leftover in ("_inputs", "_probabilities"):
            shutil.rmtree(tmp / leftover, ignore_errors=True)
        by_name = dict(zip(model.class_ids, model.class_names, strict=True))
        legend = {
            "format": LEGEND_FORMAT,
            "facies_volume": f"facies{suffix}",
            "dtype": "int16" if as_segy else "int8",
            "undefined": UNDEFINED,
            "facies": [
                {"id": c, "name": by_name[c], "probability": p_names[c] if c in written else None}
                for c in model.class_ids
            ],
            "features": {f: str(p) for f, p in sources.items()},
            "segy_template": str(template) if as_segy else None,
            "model": str(model.path),
            "shape": list(grid.shape),
            "grid": grid.describe(),
            "facies_counts": {by_name[int(c)]: int(n) for c, n in stats["facies_counts"].items()},
        }
        write_json(tmp / LEGEND, legend)
    return {
        "out_dir": out,
        "facies_path": out / f"facies{suffix}",
        "probability_paths": {by_name[c]: out / p_names[c] for c in written},
        "legend_path": out / LEGEND,
        "format": "segy" if as_segy else "npy",
        "voxels": stats["voxels"],
        "facies_counts": legend["facies_counts"],
        "seconds": stats["seconds"],
        "chunks": stats["chunks"],
        "grid": grid.describe(),
    }
