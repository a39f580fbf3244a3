"""Well-log tables as they come: a CSV of (well, depth, logs..., facies) read with params only.

The columns are named by ``ingest.seismic.columns`` (``{well: ..., depth: ..., facies: ...}``,
defaults ``well``, ``depth``, ``facies``), matched case-insensitively and ignoring surrounding
spaces, so a column headed ``Well Name`` is ``columns: {well: well name}``. Every other column is a
numeric log (a float32 feature) unless it is declared:

* ``categorical: [Formation]``: a text column one-hot encoded into float32 features named
  ``Formation:<level>`` (one per level seen in training, sorted; characters other than letters,
  digits, ``_ . -`` and spaces become ``_``, as MLflow metric names allow);
* ``drop: [...]``: columns left out (they may hold anything, missing cells included).

A text column declared as neither is an ``InputError`` that names it and both keys.

**Facies** (:class:`FaciesCodes`, from ``ingest.seismic.facies``): a list of names means the file
holds those **names** (case-insensitive; facies id = position in the list, from 0) and an integer
code in the file is an error (it would otherwise be read one place off); a mapping from the
file's codes to names (``{1: SS, 2: CSiS, ...}``) means the file holds those **codes** (id =
position in the mapping), and a code not in it is an error naming the file, line and the mapping.

**Missing values** (empty cells, ``NaN``/``NA``, LAS's null ``-999.25``) in any column used:
``missing: error`` names the first line and column, ``drop`` drops those rows with a warning.

**Repeated (well, depth)** (``duplicates``): ``error`` names both lines; ``first`` keeps the first
row; ``mean`` averages the numeric logs, and the facies (and categorical values) of the repeated
rows must agree, else the lines are named.

What ingest applied is recorded as ``inputs`` (:func:`load_well_logs` ``.inputs``, written to
``meta.json`` and copied into the model's ``config.json``) so that :func:`prepare_log_table` can
apply exactly the same to a new table::

    {"columns": {"well": "Well Name", "depth": "Depth", "facies": "Facies"},  # the file's headers
     "drop": ["RELPOS"], "categorical": {"Formation": ["A1 LM", "A1 SH"]},
     "logs": ["GR", "ILD_log10", "NM_M"],
     "features": ["GR", "ILD_log10", "NM_M", "Formation:A1 LM", "Formation:A1 SH"],
     "facies": {"names": ["SS", "CSiS"], "codes": [1, 2]},   # codes null: the file names them
     "missing": "error", "na_values": ["-999.25"]}
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from overseer.errors import InputError

log = logging.getLogger(__name__)

#: ingest.seismic.duplicates: what a repeated (well, depth) does
DUPLICATES = ("error", "first", "mean")
#: ingest.seismic.missing_logs: what a row with a missing value does
MISSING = ("error", "drop")
#: cells read as missing besides empty ones and NaN/NA (LAS's null value)
NA_VALUES = ("-999.25",)
#: the roles of ingest.seismic.columns and their default column names
DEFAULT_COLUMNS = {"well": "well", "depth": "depth", "facies": "facies"}
#: between a categorical column's name and its level in a one-hot feature name
LEVEL_SEPARATOR = ":"
_UNSAFE = re.compile(r"[^\w.\- ]")  # MLflow metric names (importance_<feature>) allow [\w.\- :/]


def _norm(name: Any) -> str:
    """A column name as it is matched: case-insensitive, surrounding spaces ignored."""
    return str(name).strip().lower()


class _Lines:
    """Row labels for messages: the file line of the row with DataFrame index ``i`` (header = line 1)."""

    def __init__(self, index: Any):
        self.index = np.asarray(index)

    def __getitem__(self, i: int) -> str:
        return self.line(self.index[i])

    @staticmethod
    def line(index_value: Any) -> str:
        return f"line {int(index_value) + 2}" if isinstance(index_value, int | np.integer) else f"row {index_value}"


def _integer(text: str) -> int | None:
    """The integer a cell spells (``3``, ``3.0``, ``+3``), else None."""
    try:
        number = float(text)
    except (TypeError, ValueError):
        return None
    return int(number) if np.isfinite(number) and number == int(number) else None


# ---------------------------------------------------------------------------- facies
def _code(value: Any) -> int | str:
    if isinstance(value, bool):
        raise InputError(f"ingest.seismic.facies: a facies code must be a number or text, got {value!r}")
    if isinstance(value, int | np.integer):
        return int(value)
    text = str(value).strip()
    number = _integer(text) if re.fullmatch(r"[-+]?\d+", text) else None
    return number if number is not None else text


@dataclass(frozen=True)
class FaciesCodes:
    """The declared facies: ``names`` in id order (id = position, from 0) and, when the file holds
    codes, ``codes[i]`` the file's code of facies ``i`` (``None``: the file holds the names)."""

    names: tuple[str, ...]
    codes: tuple[int | str, ...] | None = None

    def __post_init__(self) -> None:
        if not self.names:
            raise InputError("ingest.seismic.facies: no facies declared")
        lowered = [_norm(n) for n in self.names]
        if "" in lowered:
            raise InputError(f"ingest.seismic.facies: a facies name is empty ({list(self.names)})")
        repeated = sorted({n for n in self.names if lowered.count(_norm(n)) > 1})
        if repeated:
            raise InputError(
                f"ingest.seismic.facies: facies names must be unique (case-insensitive), {repeated} repeat "
                "(two codes for one facies would merge them; recode the file or drop one)"
            )
        if self.codes is not None:
            if len(self.codes) != len(self.names):
                raise InputError("ingest.seismic.facies: as many codes as names are needed")
            keys = [c if isinstance(c, int) else _norm(c) for c in self.codes]
            if len(set(keys)) != len(keys):
                raise InputError(f"ingest.seismic.facies: facies codes must be unique, got {list(self.codes)}")

    @classmethod
    def from_param(cls, facies: Any) -> FaciesCodes:
        """From ``ingest.seismic.facies`` (a list of names or a mapping code → name) or from its
        recorded form ``{"names": [...], "codes": [...] | null}``."""
        if isinstance(facies, FaciesCodes):
            return facies
        if isinstance(facies, Mapping) and set(facies) == {"names", "codes"}:
            codes = facies["codes"]
            return cls(
                tuple(str(n).strip() for n in facies["names"]),
                None if codes is None else tuple(_code(c) for c in codes),
            )
        if isinstance(facies, Mapping):
            return cls(tuple(str(n).strip() for n in facies.values()), tuple(_code(c) for c in facies))
        if facies is None or isinstance(facies, str) or not isinstance(facies, Sequence | np.ndarray):
            raise InputError(
                f"ingest.seismic.facies: a list of facies names or a mapping code: name is needed, got {facies!r}"
            )
        return cls(tuple(str(n).strip() for n in facies))

    def declared(self) -> str:
        """The declared set as messages show it: ``SS, CSiS`` or ``1=SS, 2=CSiS``."""
        if self.codes is None:
            return ", ".join(self.names)
        return ", ".join(f"{c}={n}" for c, n in zip(self.codes, self.names, strict=True))

    def to_json(self) -> dict[str, Any]:
        """The recorded form (JSON keys would turn integer codes into strings, so two lists)."""
        return {"names": list(self.names), "codes": None if self.codes is None else list(self.codes)}

    def resolve(self, text: str) -> int | None:
        """The facies id of one (stripped) cell, or None when it is not declared."""
        if self.codes is None:
            return {_norm(n): i for i, n in enumerate(self.names)}.get(_norm(text))
        number = _integer(text)
        by_code = {(c if isinstance(c, int) else _norm(c)): i for i, c in enumerate(self.codes)}
        if number is not None and number in by_code:
            return by_code[number]
        return by_code.get(_norm(text))

    def why_unknown(self, text: str, column: str) -> str:
        """Why a cell of the facies column ``column`` is refused, and what was declared."""
        if self.codes is None:
            if _integer(text) is not None:
                example = ", ".join(f"{i + 1}: {n}" for i, n in enumerate(self.names[:2]))
                return (
                    f"facies {text!r} in column {column!r} is an integer code, but ingest.seismic.facies declares "
                    f"names only ({self.declared()}): the file must hold those names, or map its codes to names, "
                    f"e.g. facies: {{{example}, ...}}"
                )
            return f"unknown facies {text!r} in column {column!r}; ingest.seismic.facies declares {self.declared()}"
        hint = ""
        if self.resolve_name(text) is not None:
            hint = " (the file names facies here: declare facies as a list of names, or code every row)"
        return f"unknown facies code {text!r} in column {column!r}; ingest.seismic.facies maps {self.declared()}{hint}"

    def resolve_name(self, text: str) -> int | None:
        return {_norm(n): i for i, n in enumerate(self.names)}.get(_norm(text))

    def ids(self, cells: pd.Series, *, path: Any, column: str) -> np.ndarray:
        """int32 facies ids of a column of (stripped) cells; a missing cell is -1; an undeclared one
        an ``InputError`` naming the file, its line and the declared set."""
        codes, uniques = pd.factorize(cells, use_na_sentinel=True)
        resolved = np.empty(len(uniques) + 1, dtype=np.int32)
        resolved[-1] = -1  # factorize's sentinel -1 indexes the last slot
        for k, value in enumerate(uniques):
            i = self.resolve(str(value))
            if i is None:
                row = _Lines(cells.index)[int(np.flatnonzero(codes == k)[0])]
                raise InputError(self.why_unknown(str(value), column), path=path, record=row)
            resolved[k] = i
        return resolved[codes]


def _integer_ids(cells: pd.Series, *, path: Any, column: str) -> np.ndarray:
    """Facies ids as the file has them (no facies declared: the library's legacy reading)."""
    values = pd.to_numeric(cells.astype(object), errors="coerce").to_numpy(np.float64, na_value=np.nan)
    bad = cells.notna().to_numpy() & ~((values == np.rint(values)) & (values >= 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InputError(
            f"facies {cells.iloc[i]!r} in column {column!r} is not an integer id",
            path=path,
            record=_Lines(cells.index)[i],
        )
    return np.where(np.isnan(values), -1, values).astype(np.int32)


# ---------------------------------------------------------------------------- cells
def read_log_table(path: str | os.PathLike, na_values: Sequence[str] = NA_VALUES) -> pd.DataFrame:
    """A well-log CSV as text cells (stripped; missing cells NA), headers stripped and in their case;
    blank lines are dropped but the index keeps the file's numbering (line = index + 2)."""
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", path=path)
    try:
        frame = pd.read_csv(path, dtype=str, skip_blank_lines=False, skipinitialspace=True, na_values=list(na_values))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"not a readable CSV file ({exc})", path=path) from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return _text_cells(frame.loc[~frame.isna().all(axis=1)], na_values)


def _text_cells(frame: pd.DataFrame, na_values: Sequence[str]) -> pd.DataFrame:
    """Every column as stripped text (numbers as Python writes them), empty and ``na_values`` cells NA."""
    out = {}
    for column in frame.columns:
        cells = frame[column].astype("string").str.strip()
        out[str(column).strip()] = cells.mask(cells.isin(list(na_values)) | (cells == ""))
    return pd.DataFrame(out, index=frame.index)


def _header(frame: pd.DataFrame, path: Any) -> dict[str, str]:
    """Matched name → the file's column name; two columns that match alike are an ``InputError``."""
    lookup: dict[str, str] = {}
    for column in frame.columns:
        key = _norm(column)
        if key in lookup:
            raise InputError(
                f"columns {lookup[key]!r} and {column!r} differ only in case or surrounding spaces "
                "(columns are matched case-insensitively); rename one",
                path=path,
            )
        lookup[key] = column
    return lookup


def _numbers(cells: pd.Series, column: str, path: Any, *, text_hint: bool) -> np.ndarray:
    """float64 values of a column of text cells; a cell that is not a finite number is an
    ``InputError`` naming the line (and, for a log, the keys that declare a text column)."""
    values = pd.to_numeric(cells.astype(object), errors="coerce").to_numpy(np.float64, na_value=np.nan)
    bad = ~np.isfinite(values) & cells.notna().to_numpy()
    if not bad.any():
        return values
    i = int(np.flatnonzero(bad)[0])
    message = f"column {column!r}: {cells.iloc[i]!r} is not a finite number"
    if text_hint:
        present = int(cells.notna().sum())
        if bad.sum() * 2 >= present:
            examples = ", ".join(repr(v) for v in pd.unique(cells[bad])[:3])
            message += (
                f"; it holds text ({int(bad.sum())} of {present} values, e.g. {examples}): declare it "
                f"ingest.seismic.categorical: [{column}] to one-hot encode it, or ingest.seismic.drop: [{column}]"
            )
        else:
            message += (
                f" (if {column!r} is a text column, declare it in ingest.seismic.categorical or ingest.seismic.drop)"
            )
    raise InputError(message, path=path, record=_Lines(cells.index)[i])


def _drop_missing(frame: pd.DataFrame, columns: Sequence[str], policy: str, path: Any) -> pd.DataFrame:
    """``frame`` without rows missing a value in ``columns`` (``drop``), or an ``InputError`` (``error``)."""
    if policy not in MISSING:
        raise ValueError(f"missing must be one of {MISSING}, got {policy!r}")
    is_missing = frame[list(columns)].isna().to_numpy()
    if not is_missing.any():
        return frame
    if policy == "error":
        i, j = np.argwhere(is_missing)[0]
        raise InputError(
            f"missing value in column {columns[j]!r} (ingest.seismic.missing_logs: drop drops such rows)",
            path=path,
            record=_Lines(frame.index)[int(i)],
        )
    rows = is_missing.any(axis=1)
    per_column = {c: int(n) for c, n in zip(columns, is_missing.sum(axis=0), strict=True) if n}
    log.warning("%s: dropped %d of %d rows with missing values %s", path, int(rows.sum()), len(frame), per_column)
    if rows.all():
        raise InputError("every row has a missing value", path=path)
    return frame.loc[~rows]


def one_hot_name(column: str, level: str) -> str:
    """The feature name of one level of a categorical column: ``Formation:A1 SH``."""
    return f"{column}{LEVEL_SEPARATOR}{_UNSAFE.sub('_', level)}"


def _one_hot_names(column: str, levels: Sequence[str], path: Any) -> list[str]:
    names = [one_hot_name(column, level) for level in levels]
    for k, name in enumerate(names):
        if names.index(name) != k:
            raise InputError(
                f"categorical column {column!r}: levels {levels[names.index(name)]!r} and {levels[k]!r} give one "
                f"feature name {name!r}; make them differ in letters or digits",
                path=path,
            )
    return names


# ---------------------------------------------------------------------------- encoding
def _find(lookup: Mapping[str, str], name: str, what: str, path: Any) -> str:
    try:
        return lookup[_norm(name)]
    except KeyError:
        raise InputError(f"{what}: no column {name!r}; found {list(lookup.values())}", path=path) from None


def _encode(frame: pd.DataFrame, inputs: Mapping[str, Any], path: Any, *, training: bool) -> pd.DataFrame:
    """The table of ``frame`` (text cells) as ``inputs`` describe it: ``well``, ``depth``, ``facies``
    (when the frame has the facies column; -1 where a new table's cell is empty) and the features."""
    lookup = _header(frame, path)
    roles = {**DEFAULT_COLUMNS, **(inputs.get("columns") or {})}
    well = _find(lookup, roles["well"], "the well column (ingest.seismic.columns.well)", path)
    depth = _find(lookup, roles["depth"], "the depth column (ingest.seismic.columns.depth)", path)
    facies = lookup.get(_norm(roles["facies"]))
    if training and facies is None:
        _find(lookup, roles["facies"], "the facies column (ingest.seismic.columns.facies)", path)
    logs = [lookup.get(_norm(name)) for name in inputs["logs"]]
    categorical = [(lookup.get(_norm(name)), name, list(levels)) for name, levels in inputs["categorical"].items()]
    absent = [n for n, c in zip(inputs["logs"], logs, strict=True) if c is None]
    absent += [name for column, name, _ in categorical if column is None]
    if absent:
        raise InputError(
            f"missing columns {absent} (the model's inputs: logs {list(inputs['logs'])}, categorical "
            f"{list(inputs['categorical'])}); found {list(frame.columns)}",
            path=path,
        )
    used = [well, depth, *([facies] if training else []), *logs, *(column for column, _, _ in categorical)]
    frame = _drop_missing(frame, used, inputs.get("missing", "error"), path)
    if frame.empty:
        raise InputError("no rows (the file has a header only)", path=path)
    table = pd.DataFrame(
        {"well": frame[well].astype(str).to_numpy(), "depth": _numbers(frame[depth], depth, path, text_hint=False)},
        index=frame.index,
    )
    if facies is not None:
        spec = inputs.get("facies")
        cells = frame[facies]
        ids = (
            _integer_ids(cells, path=path, column=facies)
            if spec is None
            else FaciesCodes.from_param(spec).ids(cells, path=path, column=facies)
        )
        table["facies"] = ids
    features: dict[str, np.ndarray] = {}
    for recorded, column in zip(inputs["logs"], logs, strict=True):
        features[recorded] = _numbers(frame[column], column, path, text_hint=True).astype(np.float32)
    for column, recorded, levels in categorical:
        codes = pd.Categorical(frame[column].to_numpy(dtype=object), categories=levels).codes
        if (codes < 0).any():
            i = int(np.flatnonzero(codes < 0)[0])
            raise InputError(
                f"column {column!r}: level {frame[column].iloc[i]!r} was not seen in training; known levels "
                f"{levels} (ingest.seismic.categorical)",
                path=path,
                record=_Lines(frame.index)[i],
            )
        for k, name in enumerate(_one_hot_names(recorded, levels, path)):
            features[name] = (codes == k).astype(np.float32)
    expected = inputs.get("features")
    if expected is not None and list(features) != list(expected):
        raise ValueError(f"inputs: features {list(expected)} do not follow from logs and categorical {list(features)}")
    return pd.concat([table, pd.DataFrame(features, index=frame.index)], axis=1)


def prepare_log_table(table: pd.DataFrame, inputs: Mapping[str, Any], *, path: str | os.PathLike) -> pd.DataFrame:
    """A NEW well-log table encoded exactly as ingest encoded the training table (``inputs``: what
    ingest recorded in ``meta.json`` and the model's ``config.json``, see the module notes).

    Columns are matched by ``inputs['columns']`` and the recorded log and categorical names
    case-insensitively, in any order; dropped and unknown columns are ignored; categorical
    columns are one-hot encoded with the recorded levels (an unseen level is an ``InputError``
    naming ``path``, the line, the column and the known levels); missing values follow
    ``inputs['missing']``. Returns ``well``, ``depth``, ``facies`` (only when the table has the
    facies column: ids as in training, -1 for an empty cell) and every feature column
    (``inputs['features']``, float32), indexed as ``table`` (line = index + 2 for a table read
    with :func:`read_log_table`). Repeated (well, depth) rows are kept as they are.
    """
    cells = _text_cells(table, inputs.get("na_values", NA_VALUES))
    return _encode(cells, inputs, path, training=False)


# ---------------------------------------------------------------------------- training
@dataclass
class WellLogs:
    """A well-log training table and what was applied to make it."""

    table: pd.DataFrame  # well, depth (float64), facies (int32), features (float32); RangeIndex
    inputs: dict[str, Any]  # for prepare_log_table (module notes)
    duplicates: dict[str, Any] = field(default_factory=dict)  # policy, repeated depths, rows merged away

    @property
    def features(self) -> list[str]:
        return list(self.inputs["features"])


def _learn_inputs(
    frame: pd.DataFrame,
    columns: Mapping[str, str],
    categorical: Sequence[str],
    drop: Sequence[str],
    path: Any,
) -> dict[str, Any]:
    """The file's role columns, dropped and categorical columns, and its logs (the other columns)."""
    lookup = _header(frame, path)
    unknown_roles = sorted(set(columns) - set(DEFAULT_COLUMNS))
    if unknown_roles:
        raise InputError(f"ingest.seismic.columns: unknown roles {unknown_roles}; known: {list(DEFAULT_COLUMNS)}")
    roles = {**DEFAULT_COLUMNS, **columns}
    absent = [name for name in roles.values() if _norm(name) not in lookup]
    if absent:
        raise InputError(
            f"missing columns {absent} (ingest.seismic.columns: {roles}; matched case-insensitively); "
            f"found {list(frame.columns)}",
            path=path,
        )
    actual = {role: lookup[_norm(name)] for role, name in roles.items()}
    if len(set(actual.values())) < len(actual):
        raise InputError(f"ingest.seismic.columns name one column for two roles: {roles}", path=path)
    dropped = [_find(lookup, name, "ingest.seismic.drop", path) for name in drop]
    cats = [_find(lookup, name, "ingest.seismic.categorical", path) for name in categorical]
    for name in (*dropped, *cats):
        if name in actual.values():
            raise InputError(f"column {name!r} is the {_role(actual, name)} column; it cannot be dropped or one-hot")
    both = sorted(set(dropped) & set(cats))
    if both:
        raise InputError(f"columns {both} are both in ingest.seismic.drop and ingest.seismic.categorical", path=path)
    logs = [c for c in frame.columns if c not in (*actual.values(), *dropped, *cats)]
    reserved = [c for c in [*logs, *cats] if _norm(c) in DEFAULT_COLUMNS]
    if reserved:
        raise InputError(
            f"column {reserved[0]!r} would be a feature, but its name is the prepared table's "
            f"{_norm(reserved[0])} column; rename it or list it in ingest.seismic.drop",
            path=path,
        )
    if not logs and not cats:
        raise InputError(
            "no log columns besides well, depth and facies (and ingest.seismic.drop)",
            path=path,
        )
    return {
        "columns": actual,
        "drop": dropped,
        "categorical": {c: [] for c in cats},
        "logs": logs,
        "features": None,
    }


def _role(actual: Mapping[str, str], name: str) -> str:
    return next(role for role, column in actual.items() if column == name)


def load_well_logs(
    path: str | os.PathLike,
    *,
    facies: Any = None,
    columns: Mapping[str, str] | None = None,
    categorical: Sequence[str] = (),
    drop: Sequence[str] = (),
    missing: str = "error",
    duplicates: str = "error",
    na_values: Sequence[str] = NA_VALUES,
) -> WellLogs:
    """A well-log training table from a CSV, as the module notes describe, with the ``inputs`` that
    :func:`prepare_log_table` repeats on new tables and a count of repeated depths.

    ``facies``: ``ingest.seismic.facies`` (a list of names or a mapping code → name) or ``None``
    (the file's integer ids as they are). Bad cells are ``InputError`` s naming the file and line.
    """
    if duplicates not in DUPLICATES:
        raise ValueError(f"duplicates must be one of {DUPLICATES}, got {duplicates!r}")
    if missing not in MISSING:
        raise ValueError(f"missing must be one of {MISSING}, got {missing!r}")
    path = Path(path)
    spec = None if facies is None else FaciesCodes.from_param(facies)
    frame = read_log_table(path, na_values)
    inputs = _learn_inputs(frame, dict(columns or {}), list(categorical), list(drop), path)
    if frame.empty:
        raise InputError("no rows (the file has a header only)", path=path)
    # an undeclared text column is named as such before its empty cells are
    for column in inputs["logs"]:
        _numbers(frame[column], column, path, text_hint=True)
    used = [*inputs["columns"].values(), *inputs["logs"], *inputs["categorical"]]
    frame = _drop_missing(frame, used, missing, path)
    inputs["categorical"] = {c: sorted(frame[c].astype(str).unique()) for c in inputs["categorical"]}
    names = [name for c, levels in inputs["categorical"].items() for name in _one_hot_names(c, levels, path)]
    clash = sorted(set(names) & set(inputs["logs"]))
    if clash:
        raise InputError(f"one-hot features {clash} have the names of log columns; rename those logs", path=path)
    inputs.update(
        features=[*inputs["logs"], *names],
        facies=None if spec is None else spec.to_json(),
        missing=missing,
        na_values=list(na_values),
    )
    table = _encode(frame, inputs, path, training=True)
    table, report = resolve_log_duplicates(table, duplicates, inputs, path=path, facies=spec)
    return WellLogs(table.reset_index(drop=True), inputs, report)


def read_well_logs(
    path: str | os.PathLike,
    facies_col: str = "facies",
    well_col: str = "well",
    depth_col: str = "depth",
    *,
    missing: str = "error",
    facies_names: Any = None,
    na_values: Sequence[str] = NA_VALUES,
    categorical: Sequence[str] = (),
    drop: Sequence[str] = (),
    duplicates: str = "error",
) -> pd.DataFrame:
    """A well-log training table from CSV: ``well``, ``depth`` (float64), ``facies`` (int32) and
    every other column as a float32 feature (:func:`load_well_logs` ``.table``; ``facies_names``:
    names or a mapping code → name, else the file's integer ids)."""
    columns = {"well": well_col, "depth": depth_col, "facies": facies_col}
    return load_well_logs(
        path,
        facies=facies_names,
        columns=columns,
        categorical=categorical,
        drop=drop,
        missing=missing,
        duplicates=duplicates,
        na_values=na_values,
    ).table


# ---------------------------------------------------------------------------- repeated depths
def _facies_name(facies: FaciesCodes | None, i: int) -> str:
    return facies.names[i] if facies is not None else f"facies {i}"


def resolve_log_duplicates(
    table: pd.DataFrame,
    policy: str,
    inputs: Mapping[str, Any],
    *,
    path: Any = None,
    facies: FaciesCodes | None = None,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """One row per (well, depth) following ``policy`` (:data:`DUPLICATES`), and what it did:
    ``{"policy", "repeated_depths", "rows_removed"}``. ``table``'s index gives the file lines."""
    keys = ["well", "depth"]
    repeated = table.duplicated(subset=keys, keep=False).to_numpy()
    report = {"policy": policy, "repeated_depths": 0, "rows_removed": 0}
    if not repeated.any():
        return table, report
    later = table.duplicated(subset=keys, keep="first").to_numpy()
    report.update(
        repeated_depths=int(table.loc[repeated, keys].drop_duplicates().shape[0]), rows_removed=int(later.sum())
    )
    group = table.groupby(keys, sort=False).ngroup().to_numpy()
    first = pd.Series(np.arange(len(table))).groupby(group).transform("min").to_numpy()  # per row: its depth's first
    lines = _Lines(table.index)

    def where(position: int) -> tuple[str, str, str]:
        row = table.iloc[position]
        return f"well {row['well']!r} depth {row['depth']:g}", lines[first[position]], lines[position]

    if policy == "error":
        second = int(np.flatnonzero(later)[0])
        at, first_line, _ = where(second)
        raise InputError(
            f"well {table['well'].iloc[second]!r} has depth {table['depth'].iloc[second]:g} twice ({first_line}); "
            f"{report['repeated_depths']} (well, depth) pairs repeat (ingest.seismic.duplicates: first keeps the "
            "first row, mean averages the logs)",
            path=path,
            record=lines[second],
        )
    facies_ids = table["facies"].to_numpy()
    differs = later & (facies_ids != facies_ids[first])
    if policy == "first":
        if differs.any():
            k = int(np.flatnonzero(differs)[0])
            at, first_line, line = where(k)
            log.warning(
                "%s: %d repeated rows disagree on facies with the first row of their depth, e.g. %s: %s (%s) and "
                "%s (%s); the first row is kept",
                path, int(differs.sum()), at, _facies_name(facies, facies_ids[first[k]]), first_line,
                _facies_name(facies, facies_ids[k]), line,
            )  # fmt: skip
        log.warning("%s: %d repeated (well, depth) rows dropped, the first kept", path, report["rows_removed"])
        return table.loc[~later], report
    # mean: facies and categorical values must agree within a depth
    if differs.any():
        k = int(np.flatnonzero(differs)[0])
        at, first_line, line = where(k)
        raise InputError(
            f"{at} is repeated with facies {_facies_name(facies, facies_ids[first[k]])} ({first_line}) and "
            f"{_facies_name(facies, facies_ids[k])} ({line}); ingest.seismic.duplicates: mean needs them to agree "
            f"({int(differs.sum())} repeated rows disagree)",
            path=path,
            record=line,
        )
    for column, levels in inputs["categorical"].items():
        names = _one_hot_names(column, levels, path)
        level = table[names].to_numpy().argmax(axis=1)
        clash = later & (level != level[first])
        if clash.any():
            k = int(np.flatnonzero(clash)[0])
            at, first_line, line = where(k)
            raise InputError(
                f"{at} is repeated with {column} {levels[level[first[k]]]!r} ({first_line}) and "
                f"{levels[level[k]]!r} ({line}); ingest.seismic.duplicates: mean needs them to agree",
                path=path,
                record=line,
            )
    logs = list(inputs["logs"])
    kept = table.loc[~later].copy()
    if logs:
        means = table.groupby(group, sort=False)[logs].mean()  # float32 logs, averaged per depth
        kept[logs] = means.loc[group[~later]].to_numpy(dtype=np.float32)
    log.warning(
        "%s: %d repeated (well, depth) rows averaged into %d", path, int(repeated.sum()), report["repeated_depths"]
    )
    return kept, report
