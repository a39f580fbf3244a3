"""Facies of every voxel of a survey, chunk by chunk, with bounded memory (rfc3d's output volume).

The attribute volumes (float32, (inline, crossline, sample), usually ``np.memmap``) are read in
chunks of whole inline slabs sized to about ``chunk_voxels`` voxels (or, when one inline slab is
larger than that, runs of whole traces inside one inline). Each chunk becomes a float32 feature
matrix of ``chunk_voxels`` × n_attributes, is classified, and is written into an int8 ``.npy``
memory map; the full feature matrix is never built, so heap memory is bounded by the chunk size
and a volume much larger than RAM only passes through the page cache.

Undefined voxels — any attribute NaN or infinite — get facies **-1** and probability NaN.
Facies ids must therefore be integers in 0..127. Every output is written under a temporary name
beside its target and renamed when the whole volume is done, so a failed run leaves nothing
half-written. When the input came from SEG-Y, ``segy_template`` turns the finished ``.npy``
volume into a SEG-Y file with the template's geometry and headers (the ``.npy`` is kept).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from joblib import parallel_config
from tqdm import tqdm

from overseer.errors import InputError
from overseer.io import atomic_file
from overseer.seismic.compiled_forest import ENGINES, verified_predictor
from overseer.seismic.forest import thread_limit

UNDEFINED = -1
CHUNK_VOXELS = 2_000_000  # the default chunk (overseer.settings: chunk_voxels / OVERSEER_CHUNK_VOXELS)


def plan_chunks(shape: tuple[int, int, int], chunk_voxels: int) -> list[tuple[slice, slice]]:
    """(inline slice, crossline slice) of every chunk, in file (C) order.

    Whole inline slabs, as many per chunk as fit in ``chunk_voxels`` (at least one), when one slab
    fits; otherwise runs of whole traces within one inline, as many as fit (at least one trace).
    Every chunk is a contiguous byte range of a C-ordered volume.
    """
    n_il, n_xl, n_s = (int(v) for v in shape)
    if int(chunk_voxels) < 1:
        raise InputError(f"chunk_voxels must be positive, got {chunk_voxels}")
    slab = n_xl * n_s
    if slab <= chunk_voxels:
        step = max(1, int(chunk_voxels) // max(slab, 1))
        return [(slice(i, min(i + step, n_il)), slice(0, n_xl)) for i in range(0, n_il, step)]
    step = max(1, int(chunk_voxels) // max(n_s, 1))
    return [(slice(i, i + 1), slice(x, min(x + step, n_xl))) for i in range(n_il) for x in range(0, n_xl, step)]


def _check_inputs(
    volumes: Mapping[str, np.ndarray], feature_names: Sequence[str], model: Any
) -> tuple[list[np.ndarray], tuple[int, int, int]]:
    names = list(feature_names)
    missing = [n for n in names if n not in volumes]
    if missing:
        raise InputError(f"no attribute volume for {missing}; the volumes given are {sorted(volumes)}")
    arrays = [volumes[n] for n in names]
    shapes = {n: tuple(a.shape) for n, a in zip(names, arrays, strict=True)}
    if any(len(s) != 3 for s in shapes.values()):
        raise InputError(f"attribute volumes must be 3-D (inline, crossline, sample); got shapes {shapes}")
    if len(set(shapes.values())) != 1:
        raise InputError(f"attribute volumes must share one grid; got shapes {shapes}")
    expected = getattr(model, "n_features_in_", None)
    if expected is not None and int(expected) != len(names):
        raise InputError(f"the model was trained on {expected} attributes but {len(names)} were given: {names}")
    return arrays, shapes[names[0]]


def _class_ids(model: Any, classes: Sequence[Any] | None) -> np.ndarray:
    """Facies id of each probability column, checked to fit the int8 output beside -1."""
    ids = np.asarray(model.classes_ if classes is None else classes)
    if ids.ndim != 1 or ids.size == 0:
        raise InputError(f"classes must be a non-empty list of facies ids, got {ids!r}")
    if not np.issubdtype(ids.dtype, np.integer):
        if not (np.issubdtype(ids.dtype, np.floating) and np.all(ids == np.round(ids))):
            raise InputError(f"facies ids must be integers (the volume is int8), got {ids.tolist()}")
    if ids.min() < 0 or ids.max() > 127:
        raise InputError(f"facies ids must lie in 0..127 (int8 volume, -1 = undefined), got {ids.tolist()}")
    n_proba = len(getattr(model, "classes_", ids))
    if ids.size != n_proba:
        raise InputError(f"{ids.size} classes given but the model predicts {n_proba}")
    return ids.astype(np.int8)


def predict_volume(
    model: Any,
    volumes: Mapping[str, np.ndarray],
    feature_names: Sequence[str],
    out_path: str | os.PathLike,
    chunk_voxels: int = CHUNK_VOXELS,
    probabilities_dir: str | os.PathLike | None = None,
    classes: Sequence[Any] | None = None,
    *,
    segy_template: str | os.PathLike | None = None,
    segy_path: str | os.PathLike | None = None,
    segy_options: Mapping[str, Any] | None = None,
    writer: Callable[..., Any] | None = None,
    progress: bool = True,
    n_jobs: int | None = None,
    engine: str = "auto",
) -> dict[str, Any]:
    """Classify every voxel and write the facies volume ``out_path`` (int8 ``.npy``, -1 = undefined).

    ``model`` is a fitted classifier with ``predict_proba`` and ``classes_`` (the rfc3d pipeline);
    ``volumes`` maps attribute names to 3-D arrays of one shape, stacked in ``feature_names``
    order (the model's training order). ``classes`` are the facies ids of the model's probability
    columns (default ``model.classes_``); a voxel's facies is the id of its most probable class,
    exactly as ``RandomForestClassifier.predict``. With ``probabilities_dir``, one float32 volume
    per facies, ``probability_<id>.npy``, is written there too.

    With ``segy_template`` (the SEG-Y file the attributes came from), the finished volume is also
    written as SEG-Y to ``segy_path`` (default: ``out_path`` with suffix ``.sgy``) by ``writer``
    (default ``overseer.seismic.data.segy.write_segy_like(template, data, out_path, **segy_options)``;
    options such as the header bytes of the template's inline/crossline numbers or the sample
    ``dtype`` — float32 by default, ``"int8"`` keeps the facies ids exactly in a quarter of the space).

    ``chunk_voxels`` and ``n_jobs`` change the memory and time a prediction takes, never its result:
    ``n_jobs`` (joblib workers, -1: all cores) applies where the model leaves its own unset (a forest
    from ``train_forest``), and caps the OpenMP threads of the whole prediction
    (:func:`overseer.seismic.forest.thread_limit`: HistGradientBoosting's ``predict_proba``);
    None: as the model says.

    ``engine`` says what computes the probabilities (:mod:`overseer.seismic.compiled_forest`):
    ``"auto"`` (default) — the forest compiled for ONNX Runtime, checked against scikit-learn on
    the first chunk's voxels (and copies of them put on split thresholds) before it is used, with
    scikit-learn's facies on every voxel and probabilities within ~1e-7 of its own; a model that is
    not a forest classifier, a missing onnxruntime or any disagreement in the check falls back to
    scikit-learn (the last two with a ``CompiledForestWarning``); ``"compiled"`` — the same, and a
    model that does not compile warns too; ``"sklearn"`` — the model's own ``predict_proba``. The
    compiled forest uses ``n_jobs`` threads (None: the forest's ``n_jobs``, else 1).

    Returns ``voxels``, ``undefined_voxels``, ``seconds``, ``voxels_per_second``, ``chunks``,
    ``facies_counts``, ``engine`` (``"onnxruntime"`` or ``"sklearn"``), ``compile_seconds``
    (compiling and checking the forest) and the paths written.
    """
    if engine not in ENGINES:
        raise InputError(f"engine must be one of {list(ENGINES)}, got {engine!r}")
    arrays, shape = _check_inputs(volumes, feature_names, model)
    ids = _class_ids(model, classes)
    out_path = Path(out_path)
    if out_path.suffix != ".npy":
        raise InputError(f"the facies volume is written as .npy; got {out_path}")
    plan = plan_chunks(shape, chunk_voxels)
    n_voxels = int(np.prod(shape))
    counts = np.zeros(ids.size, dtype=np.int64)
    undefined = 0
    prob_paths: dict[int, Path] = {}
    predictor: Any = None  # chosen on the first chunk with defined voxels
    used, compile_seconds = "sklearn", 0.0
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        # Targets are renamed in reverse order of entering: probabilities first, the facies volume last.
        tmp = stack.enter_context(atomic_file(out_path))
        if n_jobs is not None:
            stack.enter_context(parallel_config(n_jobs=n_jobs))
        # HistGradientBoosting predicts with OpenMP threads, which ignore joblib: every core unless capped
        stack.enter_context(thread_limit(n_jobs))
        facies = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.int8, shape=shape)
        probs = []
        if probabilities_dir is not None:
            prob_dir = Path(probabilities_dir)
            for c in ids.tolist():
                prob_paths[c] = prob_dir / f"probability_{c}.npy"
                ptmp = stack.enter_context(atomic_file(prob_paths[c]))
                probs.append(np.lib.format.open_memmap(ptmp, mode="w+", dtype=np.float32, shape=shape))
        n_feat = len(arrays)
        with tqdm(total=n_voxels, desc="predict facies", unit="vox", unit_scale=True, disable=not progress) as bar:
            for il, xl in plan:
                block = (il.stop - il.start, xl.stop - xl.start, shape[2])
                n = block[0] * block[1] * block[2]
                x = np.empty((n, n_feat), dtype=np.float32)
                for j, volume in enumerate(arrays):
                    x[:, j] = np.asarray(volume[il, xl, :]).reshape(-1)
                ok = np.isfinite(x).all(axis=1)
                n_ok = int(ok.sum())
                labels = np.full(n, UNDEFINED, dtype=np.int8)
                proba = None
                if n_ok:
                    rows = x if n_ok == n else x[ok]
                    if predictor is None:
                        t0 = time.perf_counter()
                        predictor, used = verified_predictor(model, rows, engine=engine, n_jobs=n_jobs)
                        compile_seconds = time.perf_counter() - t0
                    proba = predictor.predict_proba(rows)
                    del rows
                    best = np.argmax(proba, axis=1)
                    labels[ok] = ids[best]
                    counts += np.bincount(best, minlength=ids.size)
                undefined += n - n_ok
                facies[il, xl, :] = labels.reshape(block)
                for k, p_vol in enumerate(probs):
                    column = np.full(n, np.nan, dtype=np.float32)
                    if proba is not None:
                        column[ok] = proba[:, k]
                    p_vol[il, xl, :] = column.reshape(block)
                del x, proba
                bar.update(n)
        # Flush and unmap before the atomic renames.
        for vol in (facies, *probs):
            vol.flush()
        del facies, probs
    seconds = time.perf_counter() - start

    stats: dict[str, Any] = {
        "voxels": n_voxels,
        "undefined_voxels": int(undefined),
        "seconds": seconds,
        "voxels_per_second": n_voxels / seconds if seconds > 0 else float("inf"),
        "chunks": len(plan),
        "engine": used,
        "compile_seconds": compile_seconds,
        "shape": list(shape),
        "facies_counts": {int(c): int(k) for c, k in zip(ids.tolist(), counts, strict=True)},
        "out_path": str(out_path),
        "probability_paths": {int(c): str(p) for c, p in prob_paths.items()},
    }
    if segy_template is not None:
        stats["segy_path"] = str(write_facies_segy(out_path, segy_template, segy_path, writer, segy_options))
    return stats


def write_facies_segy(
    npy_path: str | os.PathLike,
    segy_template: str | os.PathLike,
    segy_path: str | os.PathLike | None = None,
    writer: Callable[..., Any] | None = None,
    segy_options: Mapping[str, Any] | None = None,
) -> Path:
    """Write the finished ``.npy`` facies volume as SEG-Y with ``segy_template``'s geometry and headers.

    ``writer(template_path, data, out_path, **segy_options)`` defaults to
    ``overseer.seismic.data.segy.write_segy_like``,
    imported only here; it writes to a temporary path that is renamed on success.
    """
    if writer is None:
        from overseer.seismic.data.segy import write_segy_like

        writer = write_segy_like
    npy_path = Path(npy_path)
    target = Path(segy_path) if segy_path is not None else npy_path.with_suffix(".sgy")
    data = np.load(npy_path, mmap_mode="r")
    with atomic_file(target) as tmp:
        writer(segy_template, data, tmp, **dict(segy_options or {}))
    return target


def predict_prepared_survey(
    model: Any,
    volumes_dir: Path,
    meta: Mapping[str, Any],
    features: Sequence[str],
    out_dir: Path,
    cfg: Mapping[str, Any],
    *,
    chunk_voxels: int = CHUNK_VOXELS,
    n_jobs: int | None = None,
    dask: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Classify every voxel of ingest@seismic's prepared volumes into ``out_dir`` (``facies.npy``,
    probability volumes when ``cfg["probabilities"]``, SEG-Y with the input's headers when the
    survey came as SEG-Y) in chunks of about ``chunk_voxels`` voxels with ``n_jobs`` workers (run-time
    settings: see :func:`predict_volume`); returns the numeric prediction stats. A well-log survey
    has no volume: ``out_dir`` then says so in ``NO_VOLUME.txt`` and the stats are None.

    A Zarr store (a large survey), or a Dask scheduler in ``dask`` (``seismic.dask``: scheduler,
    workers, memory_limit, chunks) or ``$DASK_SCHEDULER_ADDRESS``, runs the same classification as
    one Dask graph (:func:`overseer.seismic.dask_volume.predict_volume_dask`): the same facies."""
    from overseer.seismic.data.volumes import load_volumes

    if not meta["has_volumes"]:
        (out_dir / "NO_VOLUME.txt").write_text("trained on well logs: no attribute volume to classify\n")
        return None
    from overseer.seismic.dask_volume import use_dask

    if use_dask(volumes_dir, dask):
        return _predict_dask(model, volumes_dir, meta, features, out_dir, cfg, dict(dask or {}))
    volumes, _ = load_volumes(volumes_dir, names=features)
    stats = predict_volume(
        model, volumes, features, out_dir / "facies.npy", int(chunk_voxels),
        probabilities_dir=out_dir / "probabilities" if cfg["probabilities"] else None,
        segy_template=meta["segy_template"],
        segy_options={"iline_byte": meta["iline_byte"], "xline_byte": meta["xline_byte"], "dtype": "int16"},
        n_jobs=n_jobs,
    )  # fmt: skip
    return {k: v for k, v in stats.items() if not isinstance(v, str | Path)}


def _predict_dask(
    model: Any, volumes_dir: Path, meta: Mapping[str, Any], features: Sequence[str], out_dir: Path,
    cfg: Mapping[str, Any], dask: Mapping[str, Any],
) -> dict[str, Any]:  # fmt: skip
    """:func:`predict_prepared_survey` on the Dask scheduler that ``dask`` (``seismic.dask``) names."""
    from overseer.seismic.dask_volume import open_volumes, params_scheduler, predict_volume_dask

    with params_scheduler(dask):
        volumes, _ = open_volumes(volumes_dir, names=features, chunks=dask.get("chunks"))
        stats = predict_volume_dask(
            model, volumes, features, out_dir / "facies.npy",
            probabilities_dir=out_dir / "probabilities" if cfg["probabilities"] else None,
            segy_template=meta["segy_template"],
            segy_options={"iline_byte": meta["iline_byte"], "xline_byte": meta["xline_byte"], "dtype": "int16"},
        )  # fmt: skip
    return {k: v for k, v in stats.items() if not isinstance(v, str | Path)}
