"""Training data: picked voxels (a CSV of points, or polygons drawn on slices, as AASPI's
define_training_data produces them), the training table extracted from the attribute volumes at
those voxels. Well-log tables, the alternative training table, are read in
:mod:`overseer.seismic.data.well_logs` (:func:`read_well_logs` here forwards there).

Facies are given as ``facies_names``: a sequence (facies id = position, from 0) or a mapping
id → name. Picks may name a facies by id or by name (case-insensitive).

**Pick CSV**: columns ``inline``, ``crossline``, ``facies`` and either ``sample`` (0-based sample
index) or ``time_ms`` (rounded to the nearest sample); ``iline``/``il``, ``xline``/``xl`` and
``time``/``twt`` are accepted as aliases; column names are case-insensitive.

**Polygon files**: one CSV per facies, named ``<facies>.csv`` (or ``polygon_<facies>.csv``), with
several polygons each. Columns ``polygon`` (an id, one per polygon), ``slice`` (``inline``,
``crossline`` or ``time``), ``slice_value`` (the inline number, crossline number or time in ms of
the slice) and ``x``, ``y``: the vertices, in order, in the slice's survey coordinates:

=========  ================  ================
slice      x                 y
=========  ================  ================
inline     crossline number  time (ms)
crossline  inline number     time (ms)
time       inline number     crossline number
=========  ================  ================

A voxel is picked when its centre lies inside a polygon or on its edge (``skimage.draw.polygon``);
the facies is the union of its polygons. Vertices must lie within the grid.

**Duplicate picks** (one voxel picked twice): with the same facies they are dropped with a
warning (overlapping polygons are expected); with different facies they are an ``InputError``
naming both rows, because the label of that voxel is ambiguous.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from overseer.errors import InputError
from overseer.io import atomic_file
from overseer.seismic.data.grid import Grid

log = logging.getLogger(__name__)

FaciesNames = Sequence[str] | Mapping[int, str]

#: the columns of a normalised pick table (survey coordinates, 0-based indices, facies id)
PICK_COLUMNS = ("inline", "crossline", "sample", "il_idx", "xl_idx", "s_idx", "facies")
#: the coordinate columns of a training table, before one float32 column per attribute
TABLE_COLUMNS = ("inline", "crossline", "sample", "facies")
_PICK_ALIASES = {
    "inline": ("inline", "iline", "il"),
    "crossline": ("crossline", "xline", "xl"),
    "sample": ("sample",),
    "time_ms": ("time_ms", "time", "twt"),
    "facies": ("facies",),
}
_POLYGON_COLUMNS = ("polygon", "slice", "slice_value", "x", "y")
#: per slice kind: the survey axes of its x and y coordinates
_SLICE_AXES = {"inline": ("crossline", "time"), "crossline": ("inline", "time"), "time": ("inline", "crossline")}


class _LineLabels:
    """Row labels for messages: the file line of DataFrame row ``i`` (header = line 1)."""

    def __init__(self, index: Any):
        self.index = np.asarray(index)

    def __len__(self) -> int:
        return self.index.size

    def __getitem__(self, i: int) -> str:
        return f"line {int(self.index[i]) + 2}"


# ---------------------------------------------------------------------------- shared helpers
def facies_lookup(facies_names: FaciesNames) -> dict[int, str]:
    """Facies id → name from a sequence (ids 0..M-1) or a mapping; names must be unique."""
    if isinstance(facies_names, Mapping):
        lookup = {int(k): str(v) for k, v in facies_names.items()}
    elif isinstance(facies_names, str):
        raise TypeError("facies_names must be a sequence of names or a mapping id → name, not one string")
    else:
        lookup = {i: str(name) for i, name in enumerate(facies_names)}
    if not lookup:
        raise ValueError("no facies names given")
    lowered = [name.strip().lower() for name in lookup.values()]
    if len(set(lowered)) != len(lowered):
        raise ValueError(f"facies names must be unique (case-insensitive), got {list(lookup.values())}")
    return lookup


def _known(lookup: dict[int, str]) -> str:
    return ", ".join(f"{i}={name}" for i, name in lookup.items())


def _facies_ids(raw: pd.Series, lookup: dict[int, str], path: Any, labels: _LineLabels) -> np.ndarray:
    """int32 facies ids of a column of ids or names (each distinct value is resolved once)."""
    by_name = {name.strip().lower(): i for i, name in lookup.items()}
    values = raw.astype("string").str.strip()
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    if (codes < 0).any():
        raise InputError("missing facies", path=path, record=labels[int(np.flatnonzero(codes < 0)[0])])
    resolved = np.empty(len(uniques), dtype=np.int32)
    for k, value in enumerate(uniques):
        number = pd.to_numeric(value, errors="coerce")
        if pd.notna(number) and float(number) == int(number) and int(number) in lookup:
            resolved[k] = int(number)
        elif value.lower() in by_name:
            resolved[k] = by_name[value.lower()]
        else:
            row = labels[int(np.flatnonzero(codes == k)[0])]
            raise InputError(f"unknown facies {value!r}; expected one of {_known(lookup)}", path=path, record=row)
    return resolved[codes]


def _read_csv(path: str | os.PathLike, na_values: Sequence[str] = (), lower: bool = True) -> pd.DataFrame:
    """A CSV as strings (values are parsed column by column, so errors can name the cell), column
    names stripped (and lower-cased); blank lines are kept as empty rows and dropped here, so
    index + 2 is the file line."""
    path = Path(path)
    if not path.is_file():
        raise InputError("file not found", path=path)
    try:
        frame = pd.read_csv(path, dtype=str, skip_blank_lines=False, skipinitialspace=True, na_values=list(na_values))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"not a readable CSV file ({exc})", path=path) from None
    frame.columns = [str(c).strip().lower() if lower else str(c).strip() for c in frame.columns]
    return frame.loc[~frame.isna().all(axis=1)]


def _numeric(frame: pd.DataFrame, column: str, path: Any, labels: _LineLabels) -> np.ndarray:
    """float64 values of ``column``; a missing or non-numeric cell is an ``InputError`` naming it."""
    raw = frame[column]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isfinite(values)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        cell = raw.iloc[i]
        what = "missing value" if pd.isna(cell) else f"{cell!r} is not a finite number"
        raise InputError(f"column {column!r}: {what}", path=path, record=labels[i])
    return values


def _voxel_keys(picks: pd.DataFrame, shape: tuple[int, int, int]) -> np.ndarray:
    il, xl, s = (picks[c].to_numpy(np.int64) for c in ("il_idx", "xl_idx", "s_idx"))
    return (il * shape[1] + xl) * shape[2] + s


def resolve_duplicates(
    picks: pd.DataFrame,
    shape: tuple[int, int, int],
    *,
    path: Any = None,
    labels: Sequence[Any] | None = None,
    facies_names: FaciesNames | None = None,
) -> pd.DataFrame:
    """Picks without duplicate voxels: repeats with the same facies are dropped (first kept) with a
    warning; one voxel with two facies is an ``InputError`` naming both rows (``labels[i]``, else
    the DataFrame index) and both facies (by name when ``facies_names`` are given)."""
    keys = _voxel_keys(picks, shape)
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    repeat = np.zeros(keys.size, dtype=bool)
    repeat[1:] = sorted_keys[1:] == sorted_keys[:-1]
    if not repeat.any():
        return picks
    facies = picks["facies"].to_numpy()[order]
    clash = repeat & np.r_[False, facies[1:] != facies[:-1]]
    if clash.any():
        j = int(np.flatnonzero(clash)[0])
        first, second = int(order[j - 1]), int(order[j])
        name = (lambda i: labels[i]) if labels is not None else (lambda i: f"row {picks.index[i]}")
        row = picks.iloc[second]
        a, b = int(picks["facies"].iloc[first]), int(row["facies"])
        lookup = facies_lookup(facies_names) if facies_names is not None else {}
        named = f", that is {lookup.get(a, a)} and {lookup.get(b, b)}" if lookup else ""
        raise InputError(
            f"voxel inline {row['inline']} crossline {row['crossline']} sample {row['sample']} is picked as facies "
            f"{a} ({name(first)}) and facies {b} ({name(second)}){named}; "
            f"{np.unique(sorted_keys[clash]).size} voxels have conflicting picks",
            path=path,
            record=name(second),
        )
    drop = np.zeros(keys.size, dtype=bool)
    drop[order[repeat]] = True
    warn_text = f"{path}: " if path is not None else ""
    log.warning("%sdropped %d duplicate picks (same voxel, same facies)", warn_text, int(drop.sum()))
    return picks.loc[~drop]


def _pick_frame(
    grid: Grid, il_idx: np.ndarray, xl_idx: np.ndarray, s_idx: np.ndarray, facies: np.ndarray
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "inline": grid.inlines[il_idx].astype(np.int32),
            "crossline": grid.crosslines[xl_idx].astype(np.int32),
            "sample": s_idx.astype(np.int32),
            "il_idx": il_idx.astype(np.int32),
            "xl_idx": xl_idx.astype(np.int32),
            "s_idx": s_idx.astype(np.int32),
            "facies": facies.astype(np.int32),
        }
    )


# ---------------------------------------------------------------------------- point picks
def read_picks_csv(path: str | os.PathLike, grid: Grid, facies_names: FaciesNames) -> pd.DataFrame:
    """Picked voxels from a CSV (see the module notes) as a table with :data:`PICK_COLUMNS`.

    Missing columns, non-numeric cells, positions outside ``grid`` and unknown facies are
    ``InputError`` s naming the file and line; duplicates follow :func:`resolve_duplicates`.
    """
    lookup = facies_lookup(facies_names)
    frame = _read_csv(path)
    columns = {}
    for canonical, aliases in _PICK_ALIASES.items():
        found = [c for c in aliases if c in frame.columns]
        if found:
            columns[canonical] = found[0]
    missing = [c for c in ("inline", "crossline", "facies") if c not in columns]
    if missing or ("sample" not in columns and "time_ms" not in columns):
        need = [*missing, *([] if "sample" in columns or "time_ms" in columns else ["sample or time_ms"])]
        raise InputError(f"missing columns {need}; found {list(frame.columns)}", path=path)
    if "sample" in columns and "time_ms" in columns:
        log.info("%s: both sample and time columns; using sample", path)
    if frame.empty:
        raise InputError("no picks (the file has a header only)", path=path)
    labels = _LineLabels(frame.index)
    inline, crossline = (_numeric(frame, columns[c], path, labels) for c in ("inline", "crossline"))
    vertical = "sample" if "sample" in columns else "time_ms"
    values = _numeric(frame, columns[vertical], path, labels)
    facies = _facies_ids(frame[columns["facies"]], lookup, path, labels)
    il_idx, xl_idx, s_idx = grid.index_of(inline, crossline, **{vertical: values}, path=path, rows=labels)
    picks = _pick_frame(grid, il_idx, xl_idx, s_idx, facies)
    picks = resolve_duplicates(picks, grid.shape, path=path, labels=labels, facies_names=lookup)
    return picks.reset_index(drop=True)


# ---------------------------------------------------------------------------- polygons
def _polygon_files(path_or_dir: str | os.PathLike | Sequence[str | os.PathLike]) -> list[Path]:
    if isinstance(path_or_dir, str | os.PathLike):
        base = Path(path_or_dir)
        if base.is_dir():
            files = sorted(p for p in base.glob("*.csv") if not p.name.startswith("."))
            if not files:
                raise InputError("no polygon files (<facies>.csv) in the folder", path=base)
            return files
        return [base]
    return [Path(p) for p in path_or_dir]


def _facies_of_file(path: Path, lookup: dict[int, str]) -> int:
    by_name = {name.strip().lower(): i for i, name in lookup.items()}
    stem = path.stem.strip().lower()
    for candidate in (stem, stem.removeprefix("polygon_")):
        if candidate in by_name:
            return by_name[candidate]
    raise InputError(
        f"polygon file names facies {stem!r}; expected <facies>.csv with facies {_known(lookup)}", path=path
    )


def _plane_index(grid: Grid, kind: str, plane: float, path: Path, row: str) -> int:
    """0-based index of an inline/crossline number or a time (nearest sample) of a slice."""
    il, xl, t = [grid.inlines[0]], [grid.crosslines[0]], None
    if kind == "inline":
        il = [plane]
    elif kind == "crossline":
        xl = [plane]
    else:
        t = [plane]
    indices = grid.index_of(il, xl, sample=None if t else [0], time_ms=t, path=path, rows=[row])
    return int(indices[("inline", "crossline", "time").index(kind)][0])


def _rasterise(frame: pd.DataFrame, grid: Grid, path: Path, labels: _LineLabels) -> tuple[np.ndarray, ...]:
    """(il_idx, xl_idx, s_idx) of the voxels inside the polygons of one file."""
    from skimage.draw import polygon as draw_polygon

    kinds = frame["slice"].astype("string").str.strip().str.lower()
    bad_kind = ~kinds.isin(list(_SLICE_AXES)).fillna(False).to_numpy(dtype=bool)
    if bad_kind.any():
        i = int(np.flatnonzero(bad_kind)[0])
        value = frame["slice"].iloc[i]
        raise InputError(f"slice {value!r} must be one of {list(_SLICE_AXES)}", path=path, record=labels[i])
    slice_value, x, y = (_numeric(frame, c, path, labels) for c in ("slice_value", "x", "y"))
    polygon_ids = frame["polygon"].astype("string").str.strip()
    if polygon_ids.isna().any():
        raise InputError("missing polygon id", path=path, record=labels[int(np.flatnonzero(polygon_ids.isna())[0])])
    out: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    # one iteration per polygon (a handful per file); the voxels of each are found vectorised
    for polygon_id, rows in frame.groupby(polygon_ids.to_numpy(), sort=False).indices.items():
        first = labels[int(rows[0])]
        kind_values, plane_values = kinds.iloc[rows].unique(), np.unique(slice_value[rows])
        if kind_values.size != 1 or plane_values.size != 1:
            raise InputError(
                f"polygon {polygon_id!r} must lie on one slice, found {list(kind_values)} at {plane_values.tolist()}",
                path=path,
                record=first,
            )
        if rows.size < 3:
            raise InputError(
                f"polygon {polygon_id!r} has {rows.size} vertices; needs at least 3", path=path, record=first
            )
        kind, plane = str(kind_values[0]), float(plane_values[0])
        plane_index = _plane_index(grid, kind, plane, path, first)
        coords = []
        for axis, values in zip(_SLICE_AXES[kind], (x[rows], y[rows]), strict=True):
            low, high = grid.extent(axis)
            outside = (values < low) | (values > high)
            if outside.any():
                i = int(rows[np.flatnonzero(outside)[0]])
                raise InputError(
                    f"polygon {polygon_id!r} vertex {axis} {float(values[np.flatnonzero(outside)[0]]):g} is outside "
                    f"the grid ({axis} {low:g}..{high:g})",
                    path=path,
                    record=labels[i],
                )
            coords.append(grid.fractional_index(axis, values))
        sizes = [grid.shape[("inline", "crossline", "time").index(axis)] for axis in _SLICE_AXES[kind]]
        rr, cc = draw_polygon(coords[0], coords[1], shape=tuple(sizes))
        if rr.size == 0:
            log.warning("%s: polygon %r encloses no voxel centre", path, polygon_id)
        fixed = np.full(rr.size, plane_index, dtype=np.intp)
        if kind == "inline":
            out.append((fixed, rr, cc))
        elif kind == "crossline":
            out.append((rr, fixed, cc))
        else:
            out.append((rr, cc, fixed))
    return tuple(np.concatenate([part[k] for part in out]).astype(np.intp) for k in range(3))


def read_polygons(
    path_or_dir: str | os.PathLike | Sequence[str | os.PathLike], grid: Grid, facies_names: FaciesNames
) -> pd.DataFrame:
    """Voxels inside the polygons of one file, a list of files, or every ``*.csv`` in a folder (see
    the module notes for the format), as a table with :data:`PICK_COLUMNS`. Polygons of one facies
    are united; a voxel in polygons of two facies is an ``InputError`` naming both files."""
    lookup = facies_lookup(facies_names)
    parts, sources = [], []
    for path in _polygon_files(path_or_dir):
        facies = _facies_of_file(path, lookup)
        frame = _read_csv(path)
        missing = [c for c in _POLYGON_COLUMNS if c not in frame.columns]
        if missing:
            raise InputError(f"missing columns {missing}; found {list(frame.columns)}", path=path)
        if frame.empty:
            raise InputError("no polygon vertices (the file has a header only)", path=path)
        il_idx, xl_idx, s_idx = _rasterise(frame, grid, path, _LineLabels(frame.index))
        part = _pick_frame(grid, il_idx, xl_idx, s_idx, np.full(il_idx.size, facies))
        parts.append(part.drop_duplicates(subset=["il_idx", "xl_idx", "s_idx"]))
        sources.extend([path.name] * len(parts[-1]))
        log.info("%s: facies %s, %d voxels", path, lookup[facies], len(parts[-1]))
    picks = pd.concat(parts, ignore_index=True)
    # a voxel inside polygons of two facies: report both files (resolve_duplicates names the rows)
    picks = resolve_duplicates(
        picks,
        grid.shape,
        path=Path(path_or_dir) if isinstance(path_or_dir, str | os.PathLike) else None,
        labels=[f"polygon file {name}" for name in sources],
        facies_names=lookup,
    )
    return picks.sort_values(["facies", "il_idx", "xl_idx", "s_idx"], kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------------------- training table
def training_table(volumes: Mapping[str, np.ndarray], picks: pd.DataFrame, *, nonfinite: str = "error") -> pd.DataFrame:
    """One row per picked voxel: ``inline``, ``crossline``, ``sample``, ``facies`` and one float32
    column per volume, gathered with fancy indexing (memory-mapped volumes read only those voxels).

    Duplicate picks follow :func:`resolve_duplicates`. A non-finite attribute value at a picked
    voxel is an ``InputError`` naming the attribute and voxel (``nonfinite="error"``) or drops the
    row with a warning (``nonfinite="drop"``).
    """
    if nonfinite not in ("error", "drop"):
        raise ValueError(f"nonfinite must be 'error' or 'drop', got {nonfinite!r}")
    if not volumes:
        raise ValueError("no volumes to extract from")
    shapes = {name: tuple(v.shape) for name, v in volumes.items()}
    shape = next(iter(shapes.values()))
    if len(set(shapes.values())) > 1 or len(shape) != 3:
        raise InputError(f"volumes must share one 3-D grid, got shapes {shapes}")
    clashes = [name for name in volumes if name in TABLE_COLUMNS]
    if clashes:
        raise ValueError(f"attribute names {clashes} clash with the table's coordinate columns")
    missing = [c for c in PICK_COLUMNS if c not in picks.columns]
    if missing:
        raise ValueError(f"picks lack columns {missing} (read them with read_picks_csv or read_polygons)")
    index = [picks[c].to_numpy(np.int64) for c in ("il_idx", "xl_idx", "s_idx")]
    outside = np.zeros(len(picks), dtype=bool)
    for values, n in zip(index, shape, strict=True):
        outside |= (values < 0) | (values >= n)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise InputError(f"pick index outside the volumes' shape {shape} (picks for another grid?)", record=i)
    picks = resolve_duplicates(picks, shape)
    index = [picks[c].to_numpy(np.intp) for c in ("il_idx", "xl_idx", "s_idx")]
    # gather in storage order: a memory-mapped volume is then read front to back
    order = np.argsort((index[0] * shape[1] + index[1]) * shape[2] + index[2], kind="stable")
    ordered = [values[order] for values in index]
    table = picks[list(TABLE_COLUMNS)].reset_index(drop=True).copy()
    keep = np.ones(len(table), dtype=bool)
    for name, volume in volumes.items():
        column = np.empty(len(table), dtype=np.float32)
        column[order] = np.asarray(volume[ordered[0], ordered[1], ordered[2]], dtype=np.float32)
        bad = ~np.isfinite(column)
        if bad.any() and nonfinite == "error":
            row = table.iloc[int(np.flatnonzero(bad)[0])]
            raise InputError(
                f"attribute {name!r} is not finite at {int(bad.sum())} picked voxels, the first at inline "
                f"{row['inline']} crossline {row['crossline']} sample {row['sample']} (nonfinite='drop' drops them)"
            )
        keep &= ~bad
        table[name] = column
    if not keep.all():
        log.warning("dropped %d picked voxels with non-finite attribute values", int((~keep).sum()))
        table = table.loc[keep].reset_index(drop=True)
    return table


def save_training_table(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write a training table as parquet, atomically."""
    with atomic_file(path, suffix=".parquet") as tmp:
        table.to_parquet(tmp, index=False)
    return Path(path)


# ---------------------------------------------------------------------------- well logs
def read_well_logs(path: str | os.PathLike, *args: Any, **kwargs: Any) -> pd.DataFrame:
    """A well-log training table from CSV: :func:`overseer.seismic.data.well_logs.read_well_logs`
    (kept here for its callers; well-log reading lives in :mod:`overseer.seismic.data.well_logs`)."""
    from overseer.seismic.data.well_logs import read_well_logs as read

    return read(path, *args, **kwargs)
