"""Attribute volumes of large surveys as chunked Zarr (format 3) arrays, and SEG-Y → Zarr ingest.

The memory-mapped ``.npy`` store (:mod:`overseer.seismic.data.volumes`) serves small surveys; a
real 3-D survey (10^9–10^10 voxels per attribute, tens to hundreds of GiB) is written here as
one Zarr group, a folder written atomically as a whole::

    zarr.json        the group; its attributes hold ``format``, ``grid`` (Grid.to_json), per volume
                     its source file, and the SEG-Y headers (textual + binary) of the input
    <name>/          one float32 (inline, crossline, sample) array per volume, chunked

Chunks are blocks of inlines × crosslines × all samples (traces stay whole, as SEG-Y stores
them), so SEG-Y is read trace-block by trace-block with segyio (:func:`segy_to_zarr`): one
chunk row of inlines at a time, never the whole cube.

Why not MDIO (``multidimio``), the field's format for this: version 1.1.3 (the newest that installs
on Python 3.11) pins ``fsspec<2026.2.0`` while DVC's S3 plugin here needs fsspec 2026.9.0, and it
reads SEG-Y with its own ``segy`` library instead of segyio (whose header handling the rest of the
pipeline shares). Plain Zarr v3 with segyio gives the same chunked, cloud-readable arrays; an MDIO
reader can open the arrays through zarr once the pins agree.
"""

from __future__ import annotations

import operator
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from tqdm.auto import tqdm

from overseer.errors import InputError
from overseer.io import atomic_dir
from overseer.seismic.data.grid import Grid
from overseer.seismic.data.segy import _geometry, _open_segy
from overseer.seismic.data.volumes import VOLUME_NAME

ZARR_FORMAT = "overseer-zarr-volumes/1"
ZARR_GROUP_FILE = "zarr.json"
#: default chunk: 64 × 64 traces of all samples (float32: 16 KiB per sample row … 64 MiB at 4096 samples)
DEFAULT_CHUNKS = (64, 64, -1)


def is_zarr_store(path: str | os.PathLike) -> bool:
    """True when ``path`` is a folder written by :func:`save_volumes_zarr` (a Zarr group)."""
    return (Path(path) / ZARR_GROUP_FILE).is_file()


def chunk_shape(shape: Sequence[int], chunks: Sequence[int] = DEFAULT_CHUNKS) -> tuple[int, int, int]:
    """``chunks`` with -1 (whole axis) resolved and clipped to ``shape``; an error names a bad entry."""
    if len(chunks) != 3:
        raise InputError(f"seismic.dask.chunks: expected 3 numbers (inline, crossline, sample), got {list(chunks)}")
    out = []
    for n, c in zip(shape, chunks, strict=True):
        if int(c) != -1 and int(c) < 1:
            raise InputError(f"seismic.dask.chunks: each entry must be positive or -1 (whole axis), got {list(chunks)}")
        out.append(int(n) if int(c) == -1 else min(int(c), int(n)))
    return out[0], out[1], out[2]


def segy_headers(path: str | os.PathLike) -> dict[str, Any]:
    """The textual header(s) (decoded, 3200 bytes each) and the binary header fields of a SEG-Y file:
    the metadata a result needs to be written back as SEG-Y like its input."""
    with _open_segy(path) as f:
        text = [bytes(f.text[i]).decode("latin-1") for i in range(1 + f.ext_headers)]  # segyio gives ASCII
        binary = {str(k): int(v) for k, v in dict(f.bin).items()}
    return {"source": str(path), "text": text, "binary": binary}


def _check_names(volumes: Mapping[str, Any], grid: Grid, out_dir: Any) -> None:
    for name, volume in volumes.items():
        if not VOLUME_NAME.match(name):
            raise ValueError(f"volume name {name!r} must be letters, digits, '_', '.', '+', '-' (it names a folder)")
        if tuple(volume.shape) != grid.shape:
            raise InputError(f"volume {name!r} has shape {tuple(volume.shape)}, the grid {grid.shape}", path=out_dir)


def save_volumes_zarr(
    out_dir: str | os.PathLike,
    volumes: Mapping[str, Any],
    grid: Grid,
    *,
    sources: Mapping[str, str] | None = None,
    segy: Mapping[str, Any] | None = None,
    chunks: Sequence[int] = DEFAULT_CHUNKS,
) -> Path:
    """Write ``volumes`` (name → array of ``grid.shape``: numpy, memmap, Zarr or Dask) as float32
    Zarr arrays of one group, atomically (it replaces ``out_dir``). A ``.sgy``/``.segy`` path as a
    volume is read trace-block by trace-block (:func:`segy_to_zarr`); ``segy`` (see
    :func:`segy_headers`) goes into the group's attributes."""
    if not volumes:
        raise ValueError("no volumes to save")
    block = chunk_shape(grid.shape, chunks)
    arrays = {k: v for k, v in volumes.items() if not isinstance(v, str | os.PathLike)}
    _check_names(arrays, grid, out_dir)
    with atomic_dir(out_dir) as tmp:
        group = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        for name, volume in volumes.items():
            target = group.create_array(name, shape=grid.shape, chunks=block, dtype="float32", fill_value=np.nan)
            if isinstance(volume, str | os.PathLike):
                segy_to_zarr(volume, target, grid)
            else:
                _copy_rows(volume, target)
        group.attrs.update(
            {
                "format": ZARR_FORMAT,
                "grid": grid.to_json(),
                "volumes": [{"name": n, "source": (sources or {}).get(n)} for n in volumes],
                "segy": dict(segy) if segy else None,
            }
        )
    return Path(out_dir)


def _copy_rows(volume: Any, target: zarr.Array) -> None:
    """Copy a chunk row of inlines at a time (a Dask array is stored by Dask itself)."""
    if hasattr(volume, "dask"):
        volume.astype(np.float32).rechunk(target.chunks).store(target, lock=False)
        return
    step = target.chunks[0]
    for start in range(0, target.shape[0], step):
        target[start : start + step] = np.asarray(volume[start : start + step], dtype=np.float32)


def segy_to_zarr(
    path: str | os.PathLike, target: zarr.Array, grid: Grid | None = None, iline_byte: int = 189, xline_byte: int = 193
) -> Grid:
    """Read a post-stack SEG-Y file into the Zarr array ``target`` one chunk row of inlines at a
    time (``target.chunks[0]`` inlines × all crosslines × all samples in memory). Traces may come in
    any order (geometry from the trace headers, as :func:`overseer.seismic.data.segy.read_segy`);
    runs of consecutive traces are read as one segyio slice (:class:`SegyVolume`). Returns the
    file's grid, which must equal ``grid`` when given."""
    volume = SegyVolume(path, iline_byte, xline_byte)
    file_grid = volume.grid
    if grid is not None and file_grid.difference(grid) is not None:
        raise InputError(f"grid differs from the survey's: {file_grid.difference(grid)}", path=path)
    if tuple(target.shape) != file_grid.shape:
        raise ValueError(f"target shape {target.shape} is not the file's grid {file_grid.shape}")
    step = target.chunks[0]
    for start in tqdm(range(0, file_grid.shape[0], step), desc=f"zarr {Path(path).name}", unit="row"):
        stop = min(start + step, file_grid.shape[0])
        target[start:stop] = volume.read(slice(start, stop), slice(None))
    return file_grid


class SegyVolume:
    """A post-stack SEG-Y file as a read-only float32 (inline, crossline, sample) array whose samples
    are read only where it is sliced: the ingest of a large survey never holds a whole volume.

    The geometry comes from the trace headers once (traces in any order, as
    :func:`overseer.seismic.data.segy.read_segy`); a slice reads the traces of its inline ×
    crossline window (runs of consecutive traces as one segyio read), an integer-array gather (the
    picks) only the traces it touches. It slices as a memory map does, so
    :func:`dask.array.from_array`, :func:`save_volumes_zarr` and the training table read it
    block by block; it pickles as the path and the trace map, so Dask workers can read it too."""

    def __init__(self, path: str | os.PathLike, iline_byte: int = 189, xline_byte: int = 193) -> None:
        self.path = Path(path)
        self.iline_byte, self.xline_byte = int(iline_byte), int(xline_byte)
        with _open_segy(self.path) as f:
            self.grid, il_idx, xl_idx = _geometry(f, self.path, self.iline_byte, self.xline_byte)
        self.shape: tuple[int, int, int] = self.grid.shape
        self.dtype, self.ndim = np.dtype(np.float32), 3
        self.size = int(np.prod(self.shape))
        self.nbytes = 4 * self.size
        # trace number of each (inline, crossline) cell: _geometry checked every cell has one trace
        self.traces = np.empty(self.shape[:2], dtype=np.int64)
        self.traces[il_idx, xl_idx] = np.arange(il_idx.size)

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        stat = self.path.stat()
        return ("segy-volume", str(self.path.resolve()), stat.st_size, stat.st_mtime_ns, self.iline_byte,
                self.xline_byte)  # fmt: skip

    def read_traces(self, numbers: np.ndarray) -> np.ndarray:
        """The traces numbered ``numbers`` (any order) as float32 rows × samples."""
        numbers = np.asarray(numbers, dtype=np.int64).reshape(-1)
        out = np.empty((numbers.size, self.shape[2]), dtype=np.float32)
        if not numbers.size:
            return out
        order = np.argsort(numbers, kind="stable")
        ordered = numbers[order]
        breaks = np.flatnonzero(np.diff(ordered) != 1) + 1  # runs of consecutive traces: one read per run
        with _open_segy(self.path) as f:
            for run in np.split(np.arange(ordered.size), breaks):
                first, last = int(ordered[run[0]]), int(ordered[run[-1]])
                try:
                    data = f.trace.raw[first : last + 1]
                except (RuntimeError, OSError, ValueError) as exc:
                    why = f"cannot read traces {first}..{last} ({exc}); truncated file?"
                    raise InputError(why, path=self.path) from None
                out[order[run]] = np.asarray(data, dtype=np.float32).reshape(run.size, self.shape[2])
        return out

    def read(self, inlines: slice, crosslines: slice) -> np.ndarray:
        """The float32 block of an inline × crossline window (unit-step slices) and all samples."""
        cells = self.traces[inlines, crosslines]
        return self.read_traces(cells).reshape(*cells.shape, self.shape[2])

    def __getitem__(self, index: Any) -> np.ndarray:
        index = index if isinstance(index, tuple) else (index,)
        if any(isinstance(i, np.ndarray | list) for i in index):
            return self._gather(index)
        if any(i is Ellipsis for i in index):
            at = next(k for k, i in enumerate(index) if i is Ellipsis)
            index = (*index[:at], *(slice(None),) * (4 - len(index)), *index[at + 1 :])
        index = (*index, *(slice(None),) * (3 - len(index)))
        if len(index) != 3:
            raise IndexError(f"too many indices for a 3-D volume: {index}")
        (w0, l0), (w1, l1) = (_window(i, n) for i, n in zip(index[:2], self.shape[:2], strict=True))
        block = self.read(w0, w1)[:, l1]
        return block[l0][..., index[2]]

    def _gather(self, index: tuple[Any, ...]) -> np.ndarray:
        """Voxels at integer coordinate arrays on all three axes (``volume[il, xl, s]``, as picks are gathered)."""
        if len(index) != 3:
            raise IndexError("a gather from a SEG-Y volume needs integer arrays on all three axes")
        il, xl, s = np.broadcast_arrays(*(np.asarray(i) for i in index))
        if any(a.dtype.kind not in "iu" for a in (il, xl, s)):
            raise IndexError("a gather from a SEG-Y volume needs integer arrays on all three axes")
        cells = self.traces[il, xl]  # IndexError outside the grid, as numpy's
        unique, inverse = np.unique(cells.reshape(-1), return_inverse=True)
        return self.read_traces(unique)[inverse.reshape(cells.shape), s]


def _window(index: Any, n: int) -> tuple[slice, Any]:
    """A basic index of one axis as a unit-step window to read and the index within that window."""
    if isinstance(index, slice):
        start, stop, step = index.indices(n)
        if step == 1:
            return slice(start, max(start, stop)), slice(None)
        rows = np.arange(start, stop, step)
        low = int(rows.min()) if rows.size else 0
        return slice(low, int(rows.max()) + 1 if rows.size else 0), rows - low
    k = operator.index(index)
    if not -n <= k < n:
        raise IndexError(f"index {k} is out of bounds for an axis of size {n}")
    k %= n
    return slice(k, k + 1), 0


def open_zarr_store(
    in_dir: str | os.PathLike, names: Sequence[str] | None = None
) -> tuple[dict[str, zarr.Array], Grid, dict[str, Any]]:
    """The (read-only) Zarr arrays (all, or ``names`` in that order), the grid and the group's
    attributes of a store written by :func:`save_volumes_zarr`."""
    base = Path(in_dir)
    if not is_zarr_store(base):
        raise InputError("missing: expected a Zarr volume store (zarr.json; written by save_volumes_zarr?)", path=base)
    group = zarr.open_group(str(base), mode="r")
    attrs = dict(group.attrs)
    if attrs.get("format") != ZARR_FORMAT:
        raise InputError(f"not a Zarr volume store (expected format {ZARR_FORMAT!r})", path=base / ZARR_GROUP_FILE)
    grid = Grid.from_json(attrs["grid"], path=base / ZARR_GROUP_FILE)
    known = [entry["name"] for entry in attrs.get("volumes", [])]
    wanted = known if names is None else list(names)
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise InputError(f"no volume named {unknown}; the store has {sorted(known)}", path=base / ZARR_GROUP_FILE)
    arrays = {}
    for name in wanted:
        array = group[name]
        if array.dtype != np.float32 or tuple(array.shape) != grid.shape:
            raise InputError(
                f"volume {name!r} is {array.dtype} {array.shape}; the grid needs float32 {grid.shape}", path=base / name
            )
        arrays[name] = array
    return arrays, grid, attrs


def segy_text_header(attrs: Mapping[str, Any]) -> list[str] | None:
    """The input's textual SEG-Y header(s) kept in a store's attributes (None: not from SEG-Y)."""
    segy = attrs.get("segy") or {}
    return list(segy.get("text") or []) or None
