"""ingest@seismic: attribute volumes on one grid, a training table and a held-out table.

Sources: the embedded synthetic survey (``source: default``; its truth is written beside the
data), or the user's attribute volumes (SEG-Y or .npy) with picks (a CSV of points or a folder of
polygon files), or a well-log table instead of picks. Optional 3D adaptive Kuwahara filtering of
the attributes comes before extraction. A survey stored as Zarr (``store: zarr``, or ``auto`` above
8 GiB) reads its SEG-Y volumes trace block by trace block, never whole (:func:`_read_attributes`).

The held-out table is split off here, once, by spatial blocks of inlines (picks) or by whole
wells (logs: ``holdout.wells`` names them, else a ``fraction`` of the wells is drawn):
neighbouring voxels are correlated, so a random voxel split would leak. Nothing downstream —
attribute selection, cross-validation, model choice — ever sees it; only evaluate@rf does.
``fraction: 0`` (and no named wells) holds nothing out: ``holdout.parquet`` is then an empty
table with the training table's columns.

Well logs are read as they come (:mod:`overseer.seismic.data.well_logs`: named columns, facies
codes, categorical and dropped columns, repeated depths); what was applied is recorded as
``inputs`` in ``meta.json`` so that prediction applies the same to new wells.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from overseer.errors import InputError
from overseer.io import atomic_dir, write_json
from overseer.repo import repo_root
from overseer.seismic.data.grid import Grid
from overseer.seismic.data.picks import (
    TABLE_COLUMNS,
    read_picks_csv,
    read_polygons,
    save_training_table,
    training_table,
)
from overseer.seismic.data.segy import segy_grid
from overseer.seismic.data.volumes import (
    SEGY_SUFFIXES,
    VOLUME_NAME,
    check_same_grid,
    describe_nonfinite,
    describe_voxel,
    nonfinite_report,
    read_volume,
    save_volumes,
)
from overseer.seismic.data.well_logs import FaciesCodes, load_well_logs

log = logging.getLogger(__name__)
AMPLITUDE = "amplitude"  # stored beside the attributes for plots; never a candidate attribute


def holdout_mask(groups: np.ndarray, facies: np.ndarray, fraction: float, seed: int, tries: int = 200) -> np.ndarray:
    """Rows whose group (inline block or well) is held out: about ``fraction`` of the groups,
    drawn with ``seed`` so that every facies keeps rows on both sides."""
    unique = np.unique(groups)
    if unique.size < 2:
        raise InputError(f"only one spatial block/well ({unique[0]!r}): nothing to hold out for evaluation")
    n_out = min(unique.size - 1, max(1, round(fraction * unique.size)))
    rng = np.random.default_rng(seed)
    all_facies = np.unique(facies)
    for _ in range(tries):
        chosen = rng.choice(unique, size=n_out, replace=False)
        mask = np.isin(groups, chosen)
        if np.array_equal(np.unique(facies[mask]), all_facies) and np.array_equal(np.unique(facies[~mask]), all_facies):
            return mask
    raise InputError(
        f"cannot hold out {n_out} of {unique.size} blocks/wells so that every facies is on both sides; "
        "pick facies in more places, change ingest.seismic.holdout.block_size, or its seed"
    )


def holdout_wells_mask(
    wells: np.ndarray, named: Sequence[str], facies: np.ndarray, facies_names: Sequence[str], path: Any = None
) -> np.ndarray:
    """Rows of the wells ``named`` (``ingest.seismic.holdout.wells``; matched as written, else
    case-insensitively): every named well must exist and every facies keep training rows."""
    known = list(dict.fromkeys(str(w) for w in wells))
    folded = {w.strip().lower(): w for w in known}
    chosen = []
    for name in named:
        well = str(name) if str(name) in known else folded.get(str(name).strip().lower())
        if well is None:
            raise InputError(
                f"ingest.seismic.holdout.wells: no well {name!r} in the well logs; wells: {known}", path=path
            )
        chosen.append(well)
    mask = np.isin(wells.astype(str), chosen)
    if mask.all():
        raise InputError(
            f"ingest.seismic.holdout.wells holds out every well ({known}); leave some to train on", path=path
        )
    present = np.unique(facies)
    untrained = [facies_names[f] for f in present if not np.any(facies[~mask] == f)]
    if untrained:
        raise InputError(
            f"ingest.seismic.holdout.wells {chosen}: facies {untrained} occur only in those wells, so nothing "
            "could learn them; hold out other wells",
            path=path,
        )
    unseen = [facies_names[f] for f in present if not np.any(facies[mask] == f)]
    if unseen:
        log.warning("held-out wells %s have no rows of facies %s: evaluation cannot score them", chosen, unseen)
    return mask


def _default_survey(cfg: Mapping[str, Any]) -> dict[str, Any]:
    from overseer.seismic.data.attributes import candidate_attributes
    from overseer.seismic.data.synthetic import FACIES, make_survey, noise_attributes, synthetic_picks, truth

    shape = tuple(int(n) for n in cfg["shape"])
    seed = int(cfg["seed"])
    survey = make_survey(shape=shape, seed=seed, noise=float(cfg["noise"]), dt_ms=float(cfg["dt_ms"]))
    attributes = candidate_attributes(survey.amplitude, dt_ms=survey.dt_ms)
    attributes.update(noise_attributes(shape, seed=seed + 1))
    # survey numbering as a real survey has it: inlines from 100, crosslines from 300
    grid = Grid.regular(shape, inline_start=100, crossline_start=300, sample_interval_ms=survey.dt_ms)
    picks = synthetic_picks(survey.facies, seed=seed)
    il, xl, s = (picks[c].to_numpy(np.int64) for c in ("inline", "crossline", "sample"))
    picks = pd.DataFrame(
        {
            "inline": grid.inlines[il],
            "crossline": grid.crosslines[xl],
            "sample": s,
            "il_idx": il,
            "xl_idx": xl,
            "s_idx": s,
            "facies": picks["facies"].to_numpy(np.int32),
        }
    ).astype(np.int32)
    return {
        "attributes": attributes,
        "amplitude": survey.amplitude,
        "grid": grid,
        "picks": picks,
        "facies_names": list(FACIES),
        "truth": truth(survey, attributes),
        "facies_model": survey.facies,
        "segy_template": None,
    }


def source_label(path: str | os.PathLike) -> str:
    """``path`` as the manifest and messages show it: relative to the repository root when it lies
    inside it, else as given (POSIX separators)."""
    target = Path(path)
    if target.is_absolute():
        with contextlib.suppress(ValueError):
            return target.resolve().relative_to(repo_root()).as_posix()
    return target.as_posix()


def _check_names(paths: Mapping[str, Any]) -> None:
    """Attribute names become file and column names: letters, digits, ``_.+-``, no table column."""
    for name, path in paths.items():
        if not VOLUME_NAME.match(str(name)):
            raise InputError(
                f"ingest.seismic.volumes: attribute name {name!r} must be letters, digits, '_', '.', '+', '-' "
                "(it names a file)",
                path=path,
            )
        if name in TABLE_COLUMNS or name == AMPLITUDE:
            reserved = [*TABLE_COLUMNS, AMPLITUDE]
            raise InputError(
                f"ingest.seismic.volumes: attribute name {name!r} is reserved ({reserved}); rename that attribute",
                path=path,
            )


def _survey_grid(files: list[Any], iline_byte: int, xline_byte: int) -> Grid | None:
    """The grid of the first SEG-Y file (headers only): the geometry of .npy volumes beside it."""
    segy = [p for p in files if Path(p).suffix.lower() in SEGY_SUFFIXES]
    return segy_grid(segy[0], iline_byte, xline_byte) if segy else None


def _open_volume(path: str | os.PathLike, grid_hint: Grid | None, iline_byte: int, xline_byte: int) -> tuple[Any, Grid]:
    """One volume without reading its samples: SEG-Y as a
    :class:`~overseer.seismic.data.zarr_store.SegyVolume` (its traces are read block by block where
    it is sliced), ``.npy`` as :func:`read_volume` gives it (memory-mapped when float32)."""
    if not _is_segy(path):
        return read_volume(path, grid_hint, iline_byte, xline_byte)
    from overseer.seismic.data.zarr_store import SegyVolume

    volume = SegyVolume(path, iline_byte, xline_byte)
    return volume, volume.grid


def _read_attributes(cfg: Mapping[str, Any], paths: Mapping[str, Any]) -> tuple[dict[str, Any], Grid, Any]:
    """The attribute volumes, their shared grid and the amplitude volume (None without one).

    The files are opened first without reading samples (:func:`_open_volume`); then a survey bound
    for a Zarr store (``ingest.seismic.store``: zarr, or auto above :data:`AUTO_ZARR_BYTES`) keeps its
    SEG-Y volumes so: the picks, the Kuwahara filter and the store read them trace block by trace
    block, never a whole volume. A ``.npy`` store reads each SEG-Y volume whole, as it always has."""
    ilb, xlb = int(cfg["iline_byte"]), int(cfg["xline_byte"])
    files = [*paths.values(), *([cfg["amplitude"]] if cfg.get("amplitude") else [])]
    hint = _survey_grid(files, ilb, xlb)
    opened, grids = {}, {}
    for name, path in paths.items():
        opened[name], grids[str(path)] = _open_volume(path, hint, ilb, xlb)
    grid = check_same_grid(grids)
    blockwise = store_kind(cfg, opened) == "zarr"
    if not blockwise:  # a small survey: SEG-Y read whole (.npy files stay as opened: the same call)
        opened = {n: read_volume(paths[n], grid, ilb, xlb)[0] if _is_segy(paths[n]) else v for n, v in opened.items()}
    amplitude = None
    if cfg.get("amplitude"):
        amplitude, amp_grid = (_open_volume if blockwise else read_volume)(cfg["amplitude"], grid, ilb, xlb)
        check_same_grid({str(next(iter(paths.values()))): grid, str(cfg["amplitude"]): amp_grid})
    return opened, grid, amplitude


def _is_segy(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in SEGY_SUFFIXES


def _read_logs(cfg: Mapping[str, Any], facies: FaciesCodes) -> tuple[pd.DataFrame, dict[str, Any], dict[str, Any]]:
    """The well-log training table, its recorded ``inputs`` and the repeated-depth count."""
    logs = load_well_logs(
        cfg["well_logs"],
        facies=facies,
        columns=cfg.get("columns") or {},
        categorical=cfg.get("categorical") or (),
        drop=cfg.get("drop") or (),
        missing=str(cfg.get("missing_logs") or "error"),
        duplicates=str(cfg.get("duplicates") or "error"),
    )
    return logs.table, logs.inputs, logs.duplicates


def _read_picks(path: str | os.PathLike, grid: Grid, facies: FaciesCodes) -> pd.DataFrame:
    """Picks with facies ids 0..M-1: names (or ids) of a list, or the integer codes of a mapping."""
    reader = read_polygons if Path(path).is_dir() else read_picks_csv
    if facies.codes is None:
        return reader(path, grid, list(facies.names))
    text = [c for c in facies.codes if not isinstance(c, int)]
    if text:
        raise InputError(
            f"ingest.seismic.facies: picks name facies by id or name, so a mapping's codes must be integers, got {text}"
        )
    picks = reader(path, grid, dict(zip(facies.codes, facies.names, strict=True)))
    position = {code: i for i, code in enumerate(facies.codes)}
    picks["facies"] = picks["facies"].map(position).astype(np.int32)
    return picks


def _user_data(cfg: Mapping[str, Any]) -> dict[str, Any]:
    facies = FaciesCodes.from_param(cfg["facies"])
    facies_names = list(facies.names)
    paths = dict(cfg.get("volumes") or {})
    data: dict[str, Any] = {"facies_names": facies_names, "truth": None, "facies_model": None, "amplitude": None}
    data["sources"] = {name: source_label(path) for name, path in paths.items()}
    if paths:
        _check_names(paths)
        attributes, grid, amplitude = _read_attributes(cfg, paths)
        if amplitude is not None:
            data["amplitude"] = amplitude
            data["sources"][AMPLITUDE] = source_label(cfg["amplitude"])
        segy = [p for p in paths.values() if Path(p).suffix.lower() in SEGY_SUFFIXES]
        data.update(attributes=attributes, grid=grid, segy_template=str(segy[0]) if segy else None)
    else:
        data.update(attributes={}, grid=None, segy_template=None)
    if cfg.get("well_logs"):
        data["logs"], data["inputs"], data["duplicates"] = _read_logs(cfg, facies)
        return data
    if not paths:
        raise InputError("ingest.seismic: give attribute `volumes` with `picks`, or a `well_logs` table")
    picks_path = cfg.get("picks")
    if not picks_path:
        raise InputError("ingest.seismic.picks: a picks CSV or a folder of polygon files is required with volumes")
    data["picks"] = _read_picks(picks_path, data["grid"], facies)
    return data


def _check_source(cfg: Mapping[str, Any]) -> None:
    """Keys that the chosen source would silently ignore are errors."""
    if cfg["source"] == "default" and cfg.get("well_logs"):
        raise InputError(
            f"ingest.seismic.well_logs is {cfg['well_logs']!r} but source is default (the synthetic survey, which "
            "would ignore it): set source: volumes to train on the well logs, or well_logs: null"
        )
    if (cfg.get("holdout") or {}).get("wells") and not (cfg["source"] != "default" and cfg.get("well_logs")):
        raise InputError(
            "ingest.seismic.holdout.wells names held-out wells, but there are no well_logs (picks are held out by "
            "blocks of inlines: holdout.block_size, holdout.fraction)"
        )


def _require_finite(attributes: Mapping[str, np.ndarray], grid: Grid, sources: Mapping[str, str], why: str) -> None:
    """An ``InputError`` naming the user's file, the first non-finite voxel and their count, for
    the first volume that is not finite everywhere (scanned a slab at a time)."""
    for name, volume in attributes.items():
        report = nonfinite_report(volume)
        if report["nonfinite"]:
            raise InputError(f"attribute {name!r}: {describe_nonfinite(report, grid)}; {why}", path=sources.get(name))


def _check_picked_finite(
    attributes: Mapping[str, np.ndarray], picks: pd.DataFrame, grid: Grid, sources: Mapping[str, str]
) -> None:
    """Every attribute must be finite at every picked voxel: else an ``InputError`` naming the
    user's file, the first such picked voxel, how many there are and the volume's non-finite count.

    Reads only the picked voxels (in storage order) unless one is not finite.
    """
    index = [picks[c].to_numpy(np.intp) for c in ("il_idx", "xl_idx", "s_idx")]
    inside = np.logical_and.reduce([(v >= 0) & (v < n) for v, n in zip(index, grid.shape, strict=True)])
    index = [values[inside] for values in index]  # picks outside the grid: training_table names them
    order = np.lexsort(index[::-1])  # storage order: inline, then crossline, then sample
    ordered = tuple(values[order] for values in index)
    for name, volume in attributes.items():
        values = np.asarray(volume[ordered])
        bad = ~np.isfinite(values)
        if not bad.any():
            continue
        first = int(np.flatnonzero(bad)[0])
        voxel = describe_voxel(grid, [values_[first] for values_ in ordered])
        raise InputError(
            f"attribute {name!r} is {values[first]} at the picked voxel {voxel}; {int(bad.sum())} of "
            f"{values.size} picked voxels are not finite, and the volume has "
            f"{describe_nonfinite(nonfinite_report(volume), grid)}. Fill or mask those voxels, or pick "
            "elsewhere",
            path=sources.get(name),
        )


def _scratch(out_dir: str | os.PathLike) -> Path:
    """Where a Zarr survey's filtered attributes wait until they are copied into the store."""
    return Path(out_dir).parent / f".{Path(out_dir).name}.kuwahara.zarr"


def _kuwahara(attributes: Mapping[str, np.ndarray], radius: int, scratch: Path | None = None) -> dict[str, Any]:
    """The filtered attributes: in one piece, or (a Zarr store) chunk by chunk as a Dask graph of the
    same values (:func:`overseer.seismic.data.kuwahara.kuwahara_chunked`) written to the Zarr folder ``scratch``,
    whose arrays are returned (they slice and gather picks as memory maps do)."""
    from overseer.seismic.data.kuwahara import kuwahara3d

    if scratch is not None:
        import dask.array as da

        from overseer.seismic.data.kuwahara import kuwahara_chunked
        from overseer.seismic.data.zarr_store import DEFAULT_CHUNKS, chunk_shape, open_zarr_store, save_volumes_zarr

        grid = Grid.regular(next(iter(attributes.values())).shape)
        block = chunk_shape(grid.shape, DEFAULT_CHUNKS)
        filtered = {n: kuwahara_chunked(da.from_array(v, chunks=block), radius) for n, v in attributes.items()}
        save_volumes_zarr(scratch, filtered, grid)  # computed chunk by chunk as it is stored
        return dict(open_zarr_store(scratch)[0])
    return {name: kuwahara3d(np.asarray(v), radius=radius) for name, v in tqdm(attributes.items(), desc="kuwahara")}


#: ``ingest.seismic.store: auto`` writes Zarr above this many bytes of float32 attribute volumes
AUTO_ZARR_BYTES = 8 * 2**30


def store_kind(cfg: Mapping[str, Any], attributes: Mapping[str, Any]) -> str:
    """``npy`` or ``zarr``: ``ingest.seismic.store``, with ``auto`` by the attribute volumes' size
    (:data:`AUTO_ZARR_BYTES`; the default survey stays a memory-mapped ``.npy`` store)."""
    kind = str(cfg.get("store") or "auto")
    if kind != "auto":
        return kind
    total = sum(4 * int(np.prod(v.shape)) for v in attributes.values())
    return "zarr" if total > AUTO_ZARR_BYTES else "npy"


def _save_store(path: Path, kind: str, stored: Mapping[str, Any], data: Mapping[str, Any]) -> None:
    """The prepared volumes as the chosen store; Zarr keeps the input's SEG-Y headers as metadata."""
    if kind == "npy":
        save_volumes(path, stored, data["grid"], sources=data.get("sources", {}))
        return
    from overseer.seismic.data.zarr_store import save_volumes_zarr, segy_headers

    template = data["segy_template"]
    segy = segy_headers(template) if template else None
    save_volumes_zarr(path, stored, data["grid"], sources=data.get("sources", {}), segy=segy)


def ingest_seismic(cfg: Mapping[str, Any], out_dir: str | os.PathLike) -> dict[str, Any]:
    """Write ``volumes/`` (float32 memory-mappable store), ``train.parquet``, ``holdout.parquet`` and
    ``meta.json`` (+ ``truth.json`` for the synthetic survey) into ``out_dir``, all or nothing."""
    _check_source(cfg)
    data = _default_survey(cfg["default"]) if cfg["source"] == "default" else _user_data(cfg)
    attributes = data["attributes"]
    sources = data.get("sources", {})
    kuwahara = cfg.get("kuwahara") or {}
    if kuwahara.get("enabled") and attributes:
        why = "the Kuwahara filter (ingest.seismic.kuwahara.enabled) needs finite volumes; fill them or switch it off"
        _require_finite(attributes, data["grid"], sources, why)
        scratch = _scratch(out_dir) if store_kind(cfg, attributes) == "zarr" else None
        attributes = _kuwahara(attributes, int(kuwahara["radius"]), scratch)
    store = store_kind(cfg, attributes) if attributes else "npy"
    hold = cfg["holdout"]
    fraction = float(hold["fraction"])
    if "logs" in data:
        table = data["logs"]
        groups, split_by = table["well"].to_numpy(), "well"
        candidates = list(data["inputs"]["features"])
    else:
        _check_picked_finite(attributes, data["picks"], data["grid"], sources)
        table = training_table(attributes, data["picks"])
        groups, split_by = (
            table["inline"].to_numpy() // int(hold["block_size"]),
            f"blocks of {hold['block_size']} inlines",
        )
        candidates = list(attributes)
    facies_ids = table["facies"].to_numpy()
    if hold.get("wells"):
        held = holdout_wells_mask(groups, hold["wells"], facies_ids, data["facies_names"], path=cfg.get("well_logs"))
    elif fraction == 0:
        log.info("ingest.seismic.holdout.fraction is 0: every %s trains, holdout.parquet is empty", split_by)
        held = np.zeros(len(table), dtype=bool)
    else:
        held = holdout_mask(groups, facies_ids, fraction, int(hold["seed"]))

    counts = {
        split: {data["facies_names"][f]: int(n) for f, n in part["facies"].value_counts().sort_index().items()}
        for split, part in (("train", table[~held]), ("holdout", table[held]))
    }
    holdout = {"split_by": split_by, "fraction": fraction, "seed": int(hold["seed"])}
    if "logs" in data:
        holdout["wells"] = sorted(set(groups[held].astype(str)))
    meta = {
        "source": "synthetic" if cfg["source"] == "default" else ("well_logs" if "logs" in data else "volumes"),
        "facies": data["facies_names"],
        "attributes": candidates,
        "has_volumes": bool(attributes),
        "has_amplitude": data["amplitude"] is not None,
        "segy_template": data["segy_template"],
        "iline_byte": int(cfg["iline_byte"]),
        "xline_byte": int(cfg["xline_byte"]),
        "grid": data["grid"].to_json() if data["grid"] is not None else None,
        "holdout": holdout,
        "kuwahara": bool(kuwahara.get("enabled")),
        # well logs: what prediction must apply to a new table (well_logs.prepare_log_table); else null
        "inputs": data.get("inputs"),
    }
    with atomic_dir(out_dir) as tmp:
        if attributes:
            stored = dict(attributes)
            if data["amplitude"] is not None:
                stored[AMPLITUDE] = data["amplitude"]
            if data["facies_model"] is not None:
                stored["true_facies"] = data["facies_model"].astype(np.float32)
            _save_store(tmp / "volumes", store, stored, data)
        save_training_table(table[~held].reset_index(drop=True), tmp / "train.parquet")
        save_training_table(table[held].reset_index(drop=True), tmp / "holdout.parquet")
        write_json(tmp / "meta.json", meta)
        if data["truth"] is not None:
            write_json(tmp / "truth.json", data["truth"])
    shutil.rmtree(_scratch(out_dir), ignore_errors=True)  # the chunked filter's output, now copied
    report = {"source": meta["source"], "attributes": candidates, "rows": counts, "holdout": meta["holdout"]}
    if "duplicates" in data:
        report["duplicates"] = data["duplicates"]
    return report
