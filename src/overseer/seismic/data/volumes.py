"""Attribute volumes: read SEG-Y or .npy, check they share one grid, and keep them as a compact,
memory-mapped store.

A volume store is a folder, written atomically as a whole::

    <name>.npy      one float32 (inline, crossline, sample) array per volume
    grid.json       the shared grid (Grid.to_json)
    manifest.json   format, and per volume: name, file, dtype, shape, bytes, non-finite counts
                    (and the first non-finite voxel), the user's file it was read from (source)

float32 halves the memory of float64 and is what SEG-Y stores; ``load_volumes`` maps the files
(``np.load(mmap_mode="r")``), so only the voxels a step touches are read into memory.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from overseer.errors import InputError
from overseer.io import atomic_dir, atomic_file, write_json
from overseer.seismic.data.grid import Grid
from overseer.seismic.data.segy import read_segy, write_segy, write_segy_like

log = logging.getLogger(__name__)

STORE_FORMAT = "overseer-volumes/1"
MANIFEST = "manifest.json"
GRID_FILE = "grid.json"
SEGY_SUFFIXES = (".sgy", ".segy")
#: a volume name (it names a file of the store)
VOLUME_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
#: bytes per slab when streaming through a volume (copies, finite checks): bounds extra memory
_SLAB_BYTES = 64 * 2**20
_KINDS = (("nan", "NaN"), ("posinf", "+inf"), ("neginf", "-inf"))


def _slab_step(shape: tuple[int, ...], itemsize: int = 4) -> int:
    return max(1, _SLAB_BYTES // max(1, int(np.prod(shape[1:])) * itemsize))


class _NonFinite:
    """Running counts of NaN, +inf and -inf voxels over slabs of inlines, and the first of them."""

    def __init__(self) -> None:
        self.counts = {"nan": 0, "posinf": 0, "neginf": 0}
        self.first: list[int] | None = None

    def add(self, slab: np.ndarray, start: int) -> None:
        """Count one slab whose first inline is ``start`` (float; other dtypes are always finite)."""
        if slab.dtype.kind != "f":
            return
        nan, inf = np.isnan(slab), np.isinf(slab)
        n_nan, n_inf = int(np.count_nonzero(nan)), int(np.count_nonzero(inf))
        if not n_nan + n_inf:
            return
        n_pos = int(np.count_nonzero(inf & (slab > 0)))
        self.counts["nan"] += n_nan
        self.counts["posinf"] += n_pos
        self.counts["neginf"] += n_inf - n_pos
        if self.first is None:
            flat = int(np.argmax((nan | inf).reshape(-1)))  # the first True in storage order
            index = np.unravel_index(flat, slab.shape)
            self.first = [int(index[0]) + start, *(int(i) for i in index[1:])]

    def report(self, voxels: int) -> dict[str, Any]:
        return {**self.counts, "nonfinite": sum(self.counts.values()), "voxels": voxels, "first": self.first}


def nonfinite_report(volume: np.ndarray) -> dict[str, Any]:
    """Counts of NaN, +inf and -inf voxels (and their sum, ``nonfinite``, and ``voxels``) and the
    0-based (inline, crossline, sample) index of the first non-finite voxel in storage order
    (``first``, None when all are finite), computed a slab of inlines at a time so a memory-mapped
    volume is never loaded whole."""
    tally = _NonFinite()
    if volume.dtype.kind == "f":
        step = _slab_step(volume.shape, volume.dtype.itemsize)
        for start in range(0, volume.shape[0], step):
            tally.add(np.asarray(volume[start : start + step]), start)
    return tally.report(int(volume.size))


def has_geometry(grid: Grid) -> bool:
    """False for the placeholder grid of .npy volumes without survey geometry (``Grid.regular`` of
    the shape: lines numbered from 0, 1 ms samples), whose numbers are only array indices."""
    return not grid.same_as(Grid.regular(grid.shape))


def describe_voxel(grid: Grid, index: Sequence[int]) -> str:
    """A voxel (0-based index) in the survey's own words: ``inline 503, crossline 21, sample 5 at
    20 ms``; on a grid without geometry, its array indices (``inline index 3, crossline index 1,
    sample 5``, see :func:`has_geometry`)."""
    i, j, k = (int(v) for v in index)
    if not has_geometry(grid):
        return f"inline index {i}, crossline index {j}, sample {k}"
    time = grid.sample_start_ms + k * grid.sample_interval_ms
    return f"inline {int(grid.inlines[i])}, crossline {int(grid.crosslines[j])}, sample {k} at {time:g} ms"


def describe_nonfinite(report: Mapping[str, Any], grid: Grid) -> str:
    """One line of a :func:`nonfinite_report`: how many voxels are not finite, of which kinds, the
    first of them in survey numbers."""
    kinds = ", ".join(f"{label} {report[key]}" for key, label in _KINDS if report[key])
    text = f"{report['nonfinite']} non-finite voxels of {report['voxels']} ({kinds})"
    if report.get("first") is not None:
        text += f", the first at {describe_voxel(grid, report['first'])}"
    return text


def check_same_grid(named_grids: Mapping[str, Grid]) -> Grid:
    """The one grid shared by all named volumes; an ``InputError`` names the first two that differ
    and how (lines, sample count, time axis)."""
    if not named_grids:
        raise ValueError("no grids to compare")
    items = list(named_grids.items())
    first_name, first = items[0]
    for name, grid in items[1:]:
        diff = first.difference(grid)
        if diff is not None:
            raise InputError(
                f"volumes must share one grid, but {first_name} and {name} differ: {diff} "
                f"({first_name}: {first.describe()}; {name}: {grid.describe()})",
                path=name,
            )
    return first


# ---------------------------------------------------------------------------- reading inputs
def read_volume(
    path: str | os.PathLike,
    grid_hint: Grid | None = None,
    iline_byte: int = 189,
    xline_byte: int = 193,
) -> tuple[np.ndarray, Grid]:
    """One volume as float32 (inline, crossline, sample) and its grid.

    ``.sgy``/``.segy``: read with :func:`read_segy` (its headers give the grid; ``grid_hint`` is not
    used). ``.npy``: memory-mapped when already float32 (else converted in memory); the grid is
    ``grid_hint`` (its shape must match) or :meth:`Grid.regular` of the array's shape.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in SEGY_SUFFIXES:
        return read_segy(path, iline_byte, xline_byte)
    if suffix != ".npy":
        raise InputError(f"unsupported volume file type {path.suffix!r}; expected .sgy, .segy or .npy", path=path)
    if not path.is_file():
        raise InputError("volume file not found", path=path)
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise InputError(f"not a readable .npy array ({exc}); truncated file?", path=path) from None
    if array.ndim != 3:
        raise InputError(f"expected a 3-D (inline, crossline, sample) array, got shape {array.shape}", path=path)
    if array.dtype.kind not in "iuf":
        raise InputError(f"expected a real numeric array, got dtype {array.dtype}", path=path)
    if array.dtype != np.float32:
        log.info("%s: converting %s to float32 in memory", path, array.dtype)
        array = np.asarray(array, dtype=np.float32)
    if grid_hint is None:
        grid = Grid.regular(array.shape)
    elif grid_hint.shape != array.shape:
        raise InputError(f"array shape {array.shape} does not match the given grid {grid_hint.describe()}", path=path)
    else:
        grid = grid_hint
    return array, grid


def read_volumes(
    paths: Mapping[str, str | os.PathLike],
    grid_hint: Grid | None = None,
    iline_byte: int = 189,
    xline_byte: int = 193,
) -> tuple[dict[str, np.ndarray], Grid]:
    """Several named volumes (name → file), checked to share one grid (:func:`check_same_grid`)."""
    volumes, grids = {}, {}
    for name, path in paths.items():
        volumes[name], grids[str(path)] = read_volume(path, grid_hint, iline_byte, xline_byte)
    return volumes, check_same_grid(grids)


# ---------------------------------------------------------------------------- the store
def save_volumes(
    out_dir: str | os.PathLike,
    volumes: Mapping[str, np.ndarray],
    grid: Grid,
    *,
    sources: Mapping[str, str] | None = None,
) -> None:
    """Write ``volumes`` (name → array of ``grid.shape``) as float32 ``<name>.npy`` files with
    ``grid.json`` and ``manifest.json``, atomically as one folder (it replaces ``out_dir``).

    ``sources`` (name → the user's file it was read from) go into the manifest, so that later
    messages name the user's file. Copies go a slab of inlines at a time, so memory-mapped inputs
    are never loaded whole; non-finite voxels are counted on the way (a warning names the source,
    their count and the first of them).
    """
    if not volumes:
        raise ValueError("no volumes to save")
    for name, volume in volumes.items():
        if not VOLUME_NAME.match(name):
            raise ValueError(f"volume name {name!r} must be letters, digits, '_', '.', '+', '-' (it names a file)")
        if tuple(volume.shape) != grid.shape:
            raise InputError(f"volume {name!r} has shape {tuple(volume.shape)}, the grid {grid.shape}", path=out_dir)
    sources = dict(sources or {})
    entries = []
    with atomic_dir(out_dir) as tmp:
        for name, volume in volumes.items():
            target = tmp / f"{name}.npy"
            counts = _copy_to_npy(volume, target, grid.shape)
            if counts["nonfinite"]:
                where = sources.get(name) or f"volume {name!r}"
                log.warning("%s: %s", where, describe_nonfinite(counts, grid))
            entries.append(
                {
                    "name": name,
                    "file": target.name,
                    "source": sources.get(name),
                    "dtype": "float32",
                    "shape": list(grid.shape),
                    "bytes": target.stat().st_size,
                    "nonfinite": counts,
                }
            )
        write_json(tmp / GRID_FILE, grid.to_json())
        write_json(tmp / MANIFEST, {"format": STORE_FORMAT, "grid_file": GRID_FILE, "volumes": entries})
    log.info("saved %d volumes on %s to %s", len(entries), grid.describe(), out_dir)


def _copy_to_npy(volume: np.ndarray, target: Path, shape: tuple[int, int, int]) -> dict[str, Any]:
    """Copy ``volume`` as float32 into a new ``.npy`` a slab at a time; return its non-finite report."""
    stored = np.lib.format.open_memmap(target, mode="w+", dtype=np.float32, shape=shape)
    tally = _NonFinite()
    step = _slab_step(shape)
    for start in range(0, shape[0], step):
        slab = np.asarray(volume[start : start + step], dtype=np.float32)
        stored[start : start + step] = slab
        tally.add(slab, start)
    stored.flush()
    del stored  # close the map before the folder is renamed
    return tally.report(int(np.prod(shape)))


def volume_sources(in_dir: str | os.PathLike) -> dict[str, str | None]:
    """Name → the user's file each volume of a store was read from (None: generated, or unknown)."""
    from overseer.seismic.data.zarr_store import is_zarr_store, open_zarr_store

    if is_zarr_store(in_dir):
        return {entry["name"]: entry.get("source") for entry in open_zarr_store(in_dir)[2].get("volumes", [])}
    manifest = _read_json(Path(in_dir) / MANIFEST, "a volume store (no manifest.json; written by save_volumes?)")
    entries = manifest.get("volumes", []) if isinstance(manifest, dict) else []
    return {entry["name"]: entry.get("source") for entry in entries if isinstance(entry, dict) and "name" in entry}


def load_volumes(
    in_dir: str | os.PathLike, names: Sequence[str] | None = None, mmap: bool = True
) -> tuple[dict[str, np.ndarray], Grid]:
    """Volumes (all, or ``names`` in that order) and the grid of a store written by
    :func:`save_volumes`; memory-mapped read-only (``np.memmap``) unless ``mmap`` is False.

    A Zarr store (:func:`overseer.seismic.data.zarr_store.save_volumes_zarr`, large surveys) opens
    as read-only ``zarr.Array`` s, which slice and gather voxels as memory maps do (in memory with
    ``mmap`` False); :func:`overseer.seismic.dask_volume.open_volumes` opens either as Dask arrays."""
    from overseer.seismic.data.zarr_store import is_zarr_store, open_zarr_store

    base = Path(in_dir)
    if is_zarr_store(base):
        arrays, grid, _ = open_zarr_store(base, names)
        return ({n: a for n, a in arrays.items()} if mmap else {n: a[:] for n, a in arrays.items()}), grid
    manifest = _read_json(base / MANIFEST, "a volume store (no manifest.json; written by save_volumes?)")
    if not isinstance(manifest, dict) or manifest.get("format") != STORE_FORMAT:
        raise InputError(f"not a volume store manifest (expected format {STORE_FORMAT!r})", path=base / MANIFEST)
    grid = Grid.from_json(_read_json(base / GRID_FILE, "the store's grid"), path=base / GRID_FILE)
    entries = {entry["name"]: entry for entry in manifest.get("volumes", [])}
    wanted = list(entries) if names is None else list(names)
    unknown = [name for name in wanted if name not in entries]
    if unknown:
        raise InputError(f"no volume named {unknown}; the store has {sorted(entries)}", path=base / MANIFEST)
    volumes = {}
    for name in wanted:
        path = base / entries[name]["file"]
        try:
            array = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise InputError(f"unreadable volume {name!r} ({exc}); truncated or missing?", path=path) from None
        if array.dtype != np.float32 or array.shape != grid.shape:
            raise InputError(
                f"volume {name!r} is {array.dtype} {array.shape}; the store's grid needs float32 {grid.shape}",
                path=path,
            )
        volumes[name] = array
    return volumes, grid


def _read_json(path: Path, what: str) -> object:
    if not path.is_file():
        raise InputError(f"missing: expected {what}", path=path)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"invalid JSON ({exc})", path=path) from None


# ---------------------------------------------------------------------------- writing results
def write_volume(
    out_path: str | os.PathLike,
    data: np.ndarray,
    grid: Grid,
    *,
    template: str | os.PathLike | None = None,
    iline_byte: int = 189,
    xline_byte: int = 193,
    dtype: str = "float32",
) -> Path:
    """Write a result volume (e.g. the facies volume) atomically, by ``out_path``'s suffix:
    ``.sgy``/``.segy`` with the ``template`` SEG-Y's geometry and headers when given (the input
    was SEG-Y), else a fresh SEG-Y from ``grid``; ``.npy`` as ``dtype``."""
    out_path = Path(out_path)
    data = np.asarray(data)
    if data.shape != grid.shape:
        raise InputError(f"data of shape {data.shape} does not fit the grid {grid.describe()}", path=out_path)
    suffix = out_path.suffix.lower()
    if suffix in SEGY_SUFFIXES:
        if template is not None:
            return write_segy_like(template, data, out_path, iline_byte, xline_byte, dtype=dtype)
        return write_segy(data, grid, out_path, iline_byte, xline_byte, dtype=dtype)
    if suffix != ".npy":
        raise ValueError(f"output must be .sgy, .segy or .npy, got {out_path.name}")
    with atomic_file(out_path, suffix=".npy") as tmp:
        np.save(tmp, data.astype(dtype, copy=False))
    return out_path
