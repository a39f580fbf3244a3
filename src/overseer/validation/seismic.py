"""Great Expectations suites for the seismic voxel schema (see ``overseer.seismic.data.ingest``).

Three suites run on the prepared data:

* ``seismic_volumes``, one row per stored volume: float32, the shape of the grid, finite values
  (a fraction ``max_nonfinite_fraction`` of undefined voxels may be allowed), unique names; a
  failing volume is named by the user's file it was read from (the store's manifest keeps it),
  its first non-finite voxel in survey numbers and their count, then the stored ``.npy``;
* ``seismic_rows``, one row per picked voxel or log sample (train and holdout together, ``file``
  and ``row`` naming where it is): facies in the declared set, picks inside the grid, no voxel
  picked twice, every candidate attribute finite;
* ``seismic_facies_counts``, one row per (split, facies, by name): at least ``min_per_facies``
  rows to train on (enough for ``max_clusters`` Gaussian clusters and 5-fold cross-validation), at
  least one held out — unless nothing is held out: an empty ``holdout.parquet`` is the user's
  choice (``ingest.seismic.holdout.fraction: 0``, every well or pick trains) and evaluate@rf then
  cross-validates over wells (or blocks) instead.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from overseer.seismic.data.grid import Grid
from overseer.seismic.data.volumes import describe_voxel, load_volumes, nonfinite_report, volume_sources
from overseer.validation.core import (
    ValidationReport,
    gx_column,
    gx_expectations,
    run_suite,
)

REPORT_TITLE = "Seismic voxel validation"
SPLIT_FILES = {"train": "train.parquet", "holdout": "holdout.parquet"}
FINITE_LIMIT = 3.0e38  # float32's largest finite value is 3.4e38: a bound that fails only ±inf
# columns that name a volume in a failure: the stored file, the user's file, where it is not finite
VOLUME_ID_COLUMNS = ("file", "source", "nonfinite_voxels", "voxels", "first_nonfinite")


def volume_table(prepared: Path, grid: Grid) -> pd.DataFrame:
    """Per volume: stored file, the user's file (``source``), name, dtype, shape (and the grid's),
    fraction and count of non-finite voxels and the first of them in survey numbers (scanned a
    slab of inlines at a time)."""
    volumes, _ = load_volumes(prepared / "volumes")
    sources = volume_sources(prepared / "volumes")
    rows = []
    for name, volume in volumes.items():
        counts = nonfinite_report(volume)
        rows.append(
            {
                "file": str(prepared / "volumes" / f"{name}.npy"),
                "source": sources.get(name),
                "nonfinite_voxels": counts["nonfinite"],
                "voxels": counts["voxels"],
                "first_nonfinite": None if counts["first"] is None else describe_voxel(grid, counts["first"]),
                "name": name,
                "dtype": str(volume.dtype),
                "shape": "×".join(map(str, volume.shape)),
                "grid_shape": "×".join(map(str, grid.shape)),
                "nonfinite_fraction": counts["nonfinite"] / max(1, counts["voxels"]),
            }
        )
    return pd.DataFrame(rows)


def locate_volume(row: Mapping[str, Any]) -> str:
    """How a failing volume is named: ``<user's file>, <first non-finite voxel> (first of <n>
    non-finite voxels of <N>; stored as <prepared .npy>)``, parts left out where not known."""
    stored, source = row.get("file"), row.get("source")
    where = str(source or stored)
    details = []
    if row.get("first_nonfinite"):
        where += f", {row['first_nonfinite']}"
        details.append(f"first of {row.get('nonfinite_voxels')} non-finite voxels of {row.get('voxels')}")
    if source:
        details.append(f"stored as {stored}")
    return f"{where} ({'; '.join(details)})" if details else where


def row_table(prepared: Path) -> pd.DataFrame:
    """Train and holdout rows with ``file`` and ``row`` columns that name them in a failure."""
    parts = []
    for split, name in SPLIT_FILES.items():
        frame = pd.read_parquet(prepared / name)
        frame.insert(0, "row", np.arange(len(frame)))
        frame.insert(0, "file", str(prepared / name))
        frame.insert(0, "split", split)
        parts.append(frame)
    return pd.concat(parts, ignore_index=True)


def facies_count_table(rows: pd.DataFrame, facies: Sequence[str]) -> pd.DataFrame:
    """Rows per (split, facies), facies by name (a failure names them so), zeros included."""
    counts = rows.groupby(["split", "facies"]).size()
    return pd.DataFrame(
        [
            {"split": split, "facies": name, "count": int(counts.get((split, i), 0))}
            for split in SPLIT_FILES
            for i, name in enumerate(facies)
        ]
    )


def row_expectations(meta: Mapping[str, Any], grid: Grid | None) -> list:
    gxe = gx_expectations()
    out: list = [gxe.ExpectColumnValuesToBeInSet(column="facies", value_set=list(range(len(meta["facies"]))))]
    for column in ("facies", *meta["attributes"]):
        out.append(gxe.ExpectColumnValuesToNotBeNull(column=column))
    for column in meta["attributes"]:
        out.append(gxe.ExpectColumnValuesToBeBetween(column=column, min_value=-FINITE_LIMIT, max_value=FINITE_LIMIT))
    if grid is not None:  # picks on volumes (not well logs)
        out += [
            gxe.ExpectColumnValuesToBeInSet(column="inline", value_set=grid.inlines.tolist()),
            gxe.ExpectColumnValuesToBeInSet(column="crossline", value_set=grid.crosslines.tolist()),
            gxe.ExpectColumnValuesToBeBetween(column="sample", min_value=0, max_value=grid.n_samples - 1),
            gxe.ExpectCompoundColumnsToBeUnique(column_list=["inline", "crossline", "sample"]),
        ]
    else:
        out += [gxe.ExpectCompoundColumnsToBeUnique(column_list=["well", "depth"])]
    return out


def validate_seismic(prepared: str | Path, min_per_facies: int, max_nonfinite_fraction: float) -> ValidationReport:
    """Run the three suites on ``prepared`` (ingest@seismic's folder) and return the report; its
    ``raise_for_failures`` names file, row and expectation of the failures."""
    prepared = Path(prepared)
    meta = json.loads((prepared / "meta.json").read_text())
    grid = Grid.from_json(meta["grid"]) if meta.get("grid") else None
    gxe = gx_expectations()
    results = []
    if meta["has_volumes"]:
        volumes = volume_table(prepared, grid)
        volume_checks = [
            gxe.ExpectColumnValuesToBeInSet(column="dtype", value_set=["float32"]),
            gxe.ExpectColumnPairValuesToBeEqual(column_A="shape", column_B="grid_shape"),
            gxe.ExpectColumnValuesToBeBetween(
                column="nonfinite_fraction", min_value=0.0, max_value=float(max_nonfinite_fraction)
            ),
            gxe.ExpectColumnValuesToBeUnique(column="name"),
        ]
        results.append(
            run_suite(volumes, volume_checks, "seismic_volumes", id_columns=VOLUME_ID_COLUMNS, locate=locate_volume)
        )
    rows = row_table(prepared)
    results.append(run_suite(rows, row_expectations(meta, grid), "seismic_rows", id_columns=("file", "row")))
    counts = facies_count_table(rows, meta["facies"])
    holdout_rows = int((rows["split"] == "holdout").sum())
    count_checks = [
        gxe.ExpectColumnValuesToBeBetween(
            column="count", min_value=int(min_per_facies), row_condition=gx_column("split") == "train"
        ),
    ]
    if holdout_rows:  # held-out wells/blocks must show every facies; none at all (holdout.fraction 0) is allowed
        count_checks.append(
            gxe.ExpectColumnValuesToBeBetween(
                column="count", min_value=1, row_condition=gx_column("split") == "holdout"
            )
        )
    results.append(run_suite(counts, count_checks, "seismic_facies_counts", id_columns=("split", "facies")))
    summary = {
        "rows_per_split_facies": {
            split: {row.facies: row.count for row in part.itertuples()} for split, part in counts.groupby("split")
        },
        "attributes": meta["attributes"],
        "min_per_facies": int(min_per_facies),
        "holdout_rows": holdout_rows,  # 0: holdout.fraction 0, evaluate@rf cross-validates over wells/blocks
    }
    return ValidationReport(REPORT_TITLE, results, summary=summary)
