"""The volume-wide seismic steps as Dask array graphs: the same numbers as the single-process path,
on local threads, a ``LocalCluster`` or any running Dask cluster.

- :func:`open_volumes` opens a volume store — memory-mapped ``.npy`` (small surveys) or Zarr
  (:mod:`overseer.seismic.data.zarr_store`, large ones) — as Dask arrays of one chunking.
- :func:`kuwahara` is :func:`overseer.seismic.data.kuwahara.kuwahara3d` over chunks with
  ``map_overlap`` (halo = the filter radius, mirrored edges as the filter's own), with the whole
  volume's centre, so each chunk computes exactly what the whole volume would.
- :func:`classify` is the voxel classification of :func:`overseer.seismic.predict_volume.predict_volume`
  (facies = id of the most probable class, -1 where an attribute is not finite) with
  ``map_blocks``; the model goes to each worker once (``Client.scatter(broadcast=True)``). It
  serves the forest (rfc3d) and the GTM projection alike (any ``predict_proba``).
- :func:`store_results` writes result arrays as ``.npy``, Zarr or SEG-Y, each under a temporary
  name renamed when every chunk is done: a failing chunk (a NaN tile under the filter, a task
  that raises after ``distributed``'s retries) leaves no partial output.
- :func:`dask_scheduler` chooses where graphs run: ``seismic.dask.scheduler`` in params, else the
  ``DASK_SCHEDULER_ADDRESS`` variable; ``null``: Dask's threaded scheduler; ``local``: a
  ``LocalCluster``; an address (``tcp://host:8786``): that cluster (dask-jobqueue, dask-kubernetes…).
  :func:`use_dask` says when a stage takes this path at all: a Zarr store, or a scheduler named.

No scheduler of our own: Dask builds, ships and retries every task.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np

from overseer.errors import InputError
from overseer.io import atomic_dir, atomic_file
from overseer.seismic.data.grid import Grid
from overseer.seismic.data.kuwahara import kuwahara_chunked
from overseer.seismic.data.volumes import load_volumes
from overseer.seismic.data.zarr_store import DEFAULT_CHUNKS, chunk_shape, is_zarr_store, open_zarr_store

SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"
LOCAL = "local"
UNDEFINED = -1


# ---------------------------------------------------------------------------- where graphs run
def scheduler_address(configured: str | None = None) -> str | None:
    """``seismic.dask.scheduler`` when set, else ``$DASK_SCHEDULER_ADDRESS`` (empty counts as unset);
    None: the threaded scheduler of this process."""
    return configured or os.environ.get(SCHEDULER_ENV) or None


@contextlib.contextmanager
def dask_scheduler(
    configured: str | None = None, *, n_workers: int = 2, memory_limit: str | int = "auto"
) -> Iterator[Any]:
    """Run the graphs computed inside on the chosen scheduler (:func:`scheduler_address`); yields
    the ``distributed.Client`` (None for threads). ``local`` starts a ``LocalCluster`` of
    ``n_workers`` single-threaded worker processes with ``memory_limit`` each, closed on exit."""
    address = scheduler_address(configured)
    if address is None:
        with dask.config.set(scheduler="threads"):
            yield None
        return
    from distributed import Client, LocalCluster

    with contextlib.ExitStack() as stack:
        if address == LOCAL:
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=n_workers, threads_per_worker=1, processes=True,
                    memory_limit=memory_limit, dashboard_address=None,
                )
            )  # fmt: skip
            client = stack.enter_context(Client(cluster))
        else:
            try:
                client = stack.enter_context(Client(address, timeout="30s"))
            except OSError as exc:
                raise InputError(
                    f"seismic.dask.scheduler / {SCHEDULER_ENV}: no Dask scheduler answers at {address!r} ({exc})"
                ) from None
        yield client


def use_dask(volumes_dir: str | os.PathLike | None, dask: Mapping[str, Any] | None = None) -> bool:
    """Whether a volume-wide step takes the Dask path: ``volumes_dir`` is a Zarr store (a large
    survey), or a scheduler is named (``seismic.dask.scheduler``, else ``$DASK_SCHEDULER_ADDRESS``).
    The forest's prediction (train_rf) and the GTM projection (train_gtm) decide alike."""
    if volumes_dir is not None and is_zarr_store(volumes_dir):
        return True
    return scheduler_address((dask or {}).get("scheduler")) is not None


@contextlib.contextmanager
def params_scheduler(dask: Mapping[str, Any] | None) -> Iterator[Any]:
    """:func:`dask_scheduler` as the ``seismic.dask`` params say (``scheduler``; ``workers`` and
    ``memory_limit`` for ``local``, default 2 workers and Dask's ``auto``)."""
    dask = dict(dask or {})
    workers = dask.get("workers") if dask.get("workers") is not None else 2
    memory = dask.get("memory_limit") if dask.get("memory_limit") is not None else "auto"
    with dask_scheduler(dask.get("scheduler"), n_workers=int(workers), memory_limit=memory) as client:
        yield client


def _client() -> Any:
    """The distributed client the current graph runs on, or None (threads)."""
    try:
        from distributed import get_client

        return get_client()
    except (ImportError, ValueError):
        return None


# ---------------------------------------------------------------------------- reading
class NpyFile:
    """A ``.npy`` file by path, sliced through a fresh read-only memory map: a picklable array-like
    for :func:`dask.array.from_array` (a memmap object would travel to workers as its data)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = str(path)
        header = np.load(self.path, mmap_mode="r")
        self.shape, self.dtype, self.ndim = header.shape, header.dtype, header.ndim

    def __getitem__(self, index: Any) -> np.ndarray:
        return np.array(np.load(self.path, mmap_mode="r")[index])


def open_volumes(
    in_dir: str | os.PathLike, names: Sequence[str] | None = None, chunks: Sequence[int] | None = None
) -> tuple[dict[str, da.Array], Grid]:
    """The volumes of a store (Zarr or ``.npy``; all, or ``names`` in order) as float32 Dask arrays
    and the grid: one reader for both. ``chunks`` default: the Zarr store's own chunks, else
    :data:`~overseer.seismic.data.zarr_store.DEFAULT_CHUNKS`."""
    if is_zarr_store(in_dir):
        arrays, grid, _ = open_zarr_store(in_dir, names)
        out = {n: da.from_zarr(a) for n, a in arrays.items()}
        if chunks is not None:
            out = {n: a.rechunk(chunk_shape(grid.shape, chunks)) for n, a in out.items()}
        return out, grid
    maps, grid = load_volumes(in_dir, names)
    block = chunk_shape(grid.shape, chunks or DEFAULT_CHUNKS)
    return {n: da.from_array(NpyFile(m.filename), chunks=block, name=f"npy-{n}-{Path(m.filename).stat().st_mtime_ns}")
            for n, m in maps.items()}, grid  # fmt: skip


# ---------------------------------------------------------------------------- steps
def kuwahara(volume: da.Array, radius: int, centre: float | None = None) -> da.Array:
    """The 3-D adaptive Kuwahara filter over chunks with ``map_overlap``
    (:func:`overseer.seismic.data.kuwahara.kuwahara_chunked`): the whole-volume filter's values."""
    return kuwahara_chunked(volume, radius, centre)


def _classify_block(*blocks: np.ndarray, model: Any, ids: np.ndarray, with_proba: bool) -> np.ndarray:
    """Facies (and probabilities) of one chunk, exactly as ``predict_volume`` classifies a chunk."""
    shape = blocks[0].shape
    x = np.stack([np.asarray(b, dtype=np.float32).reshape(-1) for b in blocks], axis=1)
    ok = np.isfinite(x).all(axis=1)
    labels = np.full(x.shape[0], UNDEFINED, dtype=np.int8)
    proba = np.full((x.shape[0], ids.size), np.nan, dtype=np.float32)
    if ok.any():
        p = model.predict_proba(x if ok.all() else x[ok])
        labels[ok] = ids[np.argmax(p, axis=1)]
        proba[ok] = p
    if not with_proba:
        return labels.reshape(shape)
    return np.concatenate([labels[:, None].astype(np.float32), proba], axis=1).reshape(*shape, 1 + ids.size)


def classify(
    model: Any, volumes: Sequence[da.Array], classes: Sequence[int] | None = None, *, probabilities: bool = False
) -> tuple[da.Array, list[da.Array]]:
    """The facies volume (int8, -1 undefined) and, with ``probabilities``, one float32 volume per
    class (NaN undefined) of ``model.predict_proba`` on the stacked ``volumes`` (the model's
    feature order), chunk by chunk with ``map_blocks``. On a distributed client the model is
    scattered to every worker once; chunks of all volumes must agree."""
    from overseer.seismic.predict_volume import _class_ids

    ids = _class_ids(model, classes)
    arrays = [v.rechunk(volumes[0].chunks) for v in volumes]
    client = _client()
    shipped = client.scatter(model, broadcast=True, hash=False) if client is not None else model
    fn = partial(_classify_block, ids=ids, with_proba=probabilities)
    if not probabilities:
        facies = da.map_blocks(lambda *b, model: fn(*b, model=model), *arrays, model=shipped, dtype=np.int8)
        return facies, []
    stacked = da.map_blocks(
        lambda *b, model: fn(*b, model=model), *arrays, model=shipped, dtype=np.float32,
        new_axis=3, chunks=(*arrays[0].chunks, (1 + ids.size,)),
    )  # fmt: skip
    return stacked[..., 0].astype(np.int8), [stacked[..., 1 + k] for k in range(ids.size)]


# ---------------------------------------------------------------------------- writing
def _write_npy_block(block: np.ndarray, *, path: str, block_info: Any = None) -> np.ndarray:
    location = tuple(slice(a, b) for a, b in block_info[0]["array-location"])
    target = np.load(path, mmap_mode="r+")
    target[location] = block
    target.flush()
    return np.ones((1,) * block.ndim, dtype=bool)


def _npy_task(array: da.Array, tmp: Path, dtype: str) -> da.Array:
    """Tasks writing ``array``'s chunks into the ``.npy`` at ``tmp`` (created here), each through its
    own memory map: a shared file system is all the workers need."""
    stored = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=array.shape)
    del stored
    return array.astype(dtype).map_blocks(
        partial(_write_npy_block, path=str(tmp)), dtype=bool, chunks=tuple((1,) * len(c) for c in array.chunks)
    )


def store_results(
    outputs: Mapping[str | os.PathLike, da.Array],
    *,
    dtypes: Mapping[str | os.PathLike, str] | None = None,
    extra: Sequence[Any] = (),
    segy_template: str | os.PathLike | None = None,
    segy_options: Mapping[str, Any] | None = None,
) -> list[Any]:
    """Compute and write every ``path → array`` in one graph, by suffix: ``.npy`` (workers write
    their chunks into one memory-mapped file), ``.zarr`` (a Zarr array) or ``.sgy``/``.segy`` (the
    ``.npy`` beside it is computed, then turned into SEG-Y like ``segy_template`` by
    :func:`overseer.seismic.predict_volume.write_facies_segy`). ``dtypes``: per path, default float32.
    ``extra``: more Dask values computed in the same pass (e.g. counts); their results are returned.

    Every target is written under a temporary name beside it and renamed only when the whole
    graph succeeded: a failure leaves each target as it was (absent, or the previous file), and
    removes the folders it made for them."""
    from overseer.seismic.predict_volume import write_facies_segy

    dtypes = {Path(k): v for k, v in (dtypes or {}).items()}
    created = _missing_folders(Path(raw) for raw in outputs)
    try:
        results = _store(outputs, dtypes, extra, segy_template)
    except BaseException:
        for folder in created:  # folders made for the targets (probabilities/): gone again when empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    for npy, path in results[1]:  # after the .npy files are in place; each SEG-Y is written atomically too
        write_facies_segy(npy, segy_template, path, segy_options=segy_options)
    return list(results[0])


def _missing_folders(paths: Iterable[Path]) -> list[Path]:
    """The folders above ``paths`` that do not exist yet, deepest first."""
    missing = set()
    for path in paths:
        folder = path.absolute().parent
        while not folder.exists():
            missing.add(folder)
            folder = folder.parent
    return sorted(missing, key=lambda f: len(f.parts), reverse=True)


def _store(
    outputs: Mapping[str | os.PathLike, da.Array], dtypes: Mapping[Path, str], extra: Sequence[Any],
    segy_template: str | os.PathLike | None,
) -> tuple[Sequence[Any], list[tuple[Path, Path]]]:  # fmt: skip
    """:func:`store_results`' one graph: the extra values computed and the (``.npy``, SEG-Y) pairs to convert."""
    with contextlib.ExitStack() as stack:
        tasks, segy = [], []
        for raw, array in outputs.items():
            path = Path(raw)
            dtype = dtypes.get(path, "float32")
            suffix = path.suffix.lower()
            if suffix in (".sgy", ".segy"):
                if segy_template is None:
                    raise InputError(f"{path}: SEG-Y output needs the input's SEG-Y as template")
                npy = path.with_suffix(".npy")
                tasks.append(_npy_task(array, stack.enter_context(atomic_file(npy)), dtype))
                segy.append((npy, path))
            elif suffix == ".npy":
                tasks.append(_npy_task(array, stack.enter_context(atomic_file(path)), dtype))
            elif suffix == ".zarr":
                tmp = stack.enter_context(atomic_dir(path))
                tasks.append(da.to_zarr(array.astype(dtype), str(tmp), overwrite=True, compute=False))
            else:
                raise ValueError(f"output must be .npy, .zarr, .sgy or .segy, got {path.name}")
        results = dask.compute(*tasks, *extra)
    return results[len(tasks) :], segy


# ---------------------------------------------------------------------------- the whole prediction
def predict_volume_dask(
    model: Any,
    volumes: Mapping[str, da.Array],
    feature_names: Sequence[str],
    out_path: str | os.PathLike,
    *,
    probabilities_dir: str | os.PathLike | None = None,
    classes: Sequence[int] | None = None,
    segy_template: str | os.PathLike | None = None,
    segy_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """:func:`~overseer.seismic.predict_volume.predict_volume` as one Dask graph: the same facies
    volume ``out_path`` (int8 ``.npy`` or ``.zarr``), ``probability_<id>`` volumes (float32), SEG-Y
    beside it with ``segy_template``, and the same stats (``engine`` is the model's own
    ``predict_proba``: ``"sklearn"``). Run it inside :func:`dask_scheduler`."""
    from overseer.seismic.predict_volume import _check_inputs, _class_ids

    arrays, shape = _check_inputs(volumes, feature_names, model)
    ids = _class_ids(model, classes)
    out_path = Path(out_path)
    start = time.perf_counter()
    facies, probs = classify(model, arrays, ids, probabilities=probabilities_dir is not None)
    outputs: dict[Path, da.Array] = {out_path: facies}
    prob_paths = {}
    for c, p in zip(ids.tolist(), probs, strict=False):
        prob_paths[int(c)] = Path(probabilities_dir) / f"probability_{c}{out_path.suffix}"  # type: ignore[arg-type]
        outputs[prob_paths[int(c)]] = p
    counts = [(facies == c).sum() for c in [UNDEFINED, *ids.tolist()]]
    results = store_results(outputs, dtypes={out_path: "int8"}, extra=counts)
    seconds = time.perf_counter() - start
    stats: dict[str, Any] = {
        "voxels": int(np.prod(shape)), "undefined_voxels": int(results[0]), "seconds": seconds,
        "voxels_per_second": int(np.prod(shape)) / seconds if seconds > 0 else float("inf"),
        "chunks": int(np.prod(facies.numblocks)), "engine": "sklearn", "compile_seconds": 0.0,
        "shape": list(shape), "facies_counts": {int(c): int(n) for c, n in zip(ids.tolist(), results[1:], strict=True)},
        "out_path": str(out_path), "probability_paths": {c: str(p) for c, p in prob_paths.items()},
    }  # fmt: skip
    if segy_template is not None and out_path.suffix == ".npy":
        from overseer.seismic.predict_volume import write_facies_segy

        stats["segy_path"] = str(write_facies_segy(out_path, segy_template, segy_options=segy_options))
    return stats
