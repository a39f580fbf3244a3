"""Great Expectations suites for the trackbed TFRecord contract (see ``overseer.trackbed.data.schema``).

Two suites run on every split's records:

* ``trackbed_records``, one row per record (``record_table``): the bytes are an Example, every
  field is present, label in range, class_name agrees with label, positive sizes, depth 1 or 3,
  ``len(image_raw) == height*width*depth`` and image filenames unique within a split;
* ``trackbed_class_counts``, one row per (split, class): at least ``min_per_class`` records.

Failing records are named by the user's file they came from, their index in it and their
``image_filename`` (from ingest's provenance table beside the prepared shards), then by the
prepared shard and index; shards without a provenance table are named by shard and index only.

A record whose bytes are not an Example fails only ``parse_error`` (the field expectations are
restricted to parsed records), so it is reported once. A missing field fails only its not-null
expectation (pair expectations skip rows with a missing side). The report is written whether
or not validation passes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from overseer.errors import InputError
from overseer.trackbed.data.schema import CLASSES
from overseer.trackbed.data.tfrecord import DEFAULT_SOURCE, PROVENANCE_FILE, read_provenance, record_table
from overseer.validation.core import (
    ValidationReport,
    gx_column,
    gx_expectations,
    run_suite,
)

RECORD_SUITE = "trackbed_records"
CLASS_COUNT_SUITE = "trackbed_class_counts"
REPORT_TITLE = "Trackbed TFRecord validation"
# record_table columns that must be present in a parsed record (image_bytes is len(image_raw))
REQUIRED_COLUMNS = ("image_filename", "image_bytes", "height", "width", "depth", "label", "class_name")
DEPTHS = (1, 3)
# columns added from the provenance table: the user's file, the record's index in it, its name
SOURCE_COLUMNS = ("source", "source_record", "source_image_filename")


def record_expectations(classes: Sequence[str] = CLASSES) -> list:
    """The record-level expectations on a ``record_table`` with an added ``split`` column."""
    gxe = gx_expectations()
    parsed = gx_column("parse_error").is_null()
    expectations: list = [gxe.ExpectColumnValuesToBeNull(column="parse_error")]
    expectations += [gxe.ExpectColumnValuesToNotBeNull(column=col, row_condition=parsed) for col in REQUIRED_COLUMNS]
    expectations += [
        gxe.ExpectColumnValuesToBeBetween(
            column="label", min_value=0, max_value=len(classes) - 1, row_condition=parsed
        ),
        gxe.ExpectColumnPairValuesToBeEqual(
            column_A="class_name",
            column_B="expected_class_name",
            ignore_row_if="either_value_is_missing",
            row_condition=parsed,
        ),
    ]
    expectations += [
        gxe.ExpectColumnValuesToBeBetween(column=col, min_value=1, row_condition=parsed)
        for col in ("height", "width", "depth")
    ]
    expectations += [
        gxe.ExpectColumnValuesToBeInSet(column="depth", value_set=list(DEPTHS), row_condition=parsed),
        gxe.ExpectColumnPairValuesToBeEqual(
            column_A="image_bytes",
            column_B="expected_bytes",
            ignore_row_if="either_value_is_missing",
            row_condition=parsed,
        ),
        gxe.ExpectCompoundColumnsToBeUnique(
            column_list=["split", "image_filename"],
            ignore_row_if="any_value_is_missing",
            row_condition=parsed,
        ),
    ]
    return expectations


def class_count_expectations(min_per_class: int) -> list:
    """The expectation on the per-(split, class) count table."""
    gxe = gx_expectations()
    return [gxe.ExpectColumnValuesToBeBetween(column="count", min_value=min_per_class)]


def split_record_table(splits: Mapping[str, Sequence[Path]], classes: Sequence[str] = CLASSES) -> pd.DataFrame:
    """``record_table`` of every split with a leading ``split`` column.

    ``expected_class_name`` is recomputed from ``classes`` (the name of ``label``, None when the
    label is missing or out of range).
    """
    tables = []
    for split, files in splits.items():
        table = record_table(files)
        table.insert(0, "split", split)
        tables.append(table)
    table = pd.concat(tables, ignore_index=True) if tables else record_table([]).assign(split=None)
    table["expected_class_name"] = [
        classes[label] if not pd.isna(label) and 0 <= int(label) < len(classes) else None for label in table["label"]
    ]
    origins = list(_origins(table))
    table["source"] = pd.Series([o[0] for o in origins], index=table.index, dtype=object)
    table["source_record"] = pd.array([o[1] for o in origins], dtype="Int64")
    table["source_image_filename"] = pd.Series([o[2] for o in origins], index=table.index, dtype=object)
    return table


def _provenance_lookup(prepared: Path) -> dict[tuple[str, int], tuple]:
    """(shard relative to ``prepared``, index) -> (source, source record, image_filename)."""
    table = read_provenance(prepared / PROVENANCE_FILE)
    if table is None:
        return {}
    return {
        (shard, int(record)): (source, None if pd.isna(index) else int(index), name)
        for shard, record, source, index, name in table.itertuples(index=False)
        if not pd.isna(record)
    }


def _origins(table: pd.DataFrame) -> Iterator[tuple]:
    """Per row of a record table: where ingest read it (source, source record, image_filename),
    from the provenance table of the shard's prepared folder; Nones where none is known."""
    lookups: dict[Path, dict] = {}
    unknown = (None, None, None)
    for file, record, name in zip(table["file"], table["record"], table["image_filename"], strict=True):
        shard = Path(file)
        prepared = shard.parent.parent
        if prepared not in lookups:
            lookups[prepared] = _provenance_lookup(prepared)
        origin = lookups[prepared].get((f"{shard.parent.name}/{shard.name}", int(record)), unknown)
        if not (_missing(origin[2]) or _missing(name) or origin[2] == name):
            origin = unknown  # a stale table: that position now holds another image
        yield origin


def _missing(value: object) -> bool:
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def locate_record(row: Mapping[str, Any]) -> str:
    """How a failing record is named: ``<source file>, record <i> (image_filename '<name>'; prepared
    <shard>, record <j>)``; ``<shard>, record <j>`` when its source is not known."""
    prepared = f"{row.get('file')}, record {row.get('record')}"
    source = row.get("source")
    if _missing(source):
        return prepared
    where = "the embedded default set" if source == DEFAULT_SOURCE else str(source)
    if not _missing(row.get("source_record")):
        where += f", record {int(row['source_record'])}"
    name = row.get("source_image_filename")
    named = "no image_filename" if _missing(name) else f"image_filename {str(name)!r}"
    return f"{where} ({named}; prepared {prepared})"


def class_count_table(table: pd.DataFrame, splits: Sequence[str], classes: Sequence[str] = CLASSES) -> pd.DataFrame:
    """One row per (split, class) with the number of parsed records of that label, zeros included."""
    valid = table[table["parse_error"].isna() & table["expected_class_name"].notna()]
    counts = valid.groupby(["split", "expected_class_name"]).size()
    rows = [
        {"split": split, "class_name": name, "count": int(counts.get((split, name), 0))}
        for split in splits
        for name in classes
    ]
    return pd.DataFrame(rows, columns=["split", "class_name", "count"])


def validate_trackbed(
    splits: Mapping[str, Sequence[Path]],
    min_per_class: int,
    classes: Sequence[str] = CLASSES,
) -> ValidationReport:
    """Validate the TFRecord files of each split; return the report (its ``raise_for_failures``
    names file, record and expectation of the first failures: the user's source file, record and
    image_filename where ingest's provenance table knows them, see ``locate_record``).

    ``splits`` maps a split name (train, val, test) to its TFRecord files. Unreadable TFRecord
    framing gives a report with the ``InputError`` of ``iter_raw_records`` as its note.
    """
    if not splits:
        raise InputError("no splits to validate")
    try:
        table = split_record_table(splits, classes)
    except InputError as exc:
        return ValidationReport(REPORT_TITLE, [], notes=[f"could not read records: {exc}"])
    if table["source"].notna().any():
        id_columns, locate = (*SOURCE_COLUMNS, "file", "record"), locate_record
    else:
        id_columns, locate = ("file", "record"), None
    records = run_suite(table, record_expectations(classes), RECORD_SUITE, id_columns=id_columns, locate=locate)
    records.details = _record_details(table, splits)
    count_table = class_count_table(table, list(splits), classes)
    counts = run_suite(
        count_table,
        class_count_expectations(min_per_class),
        CLASS_COUNT_SUITE,
        id_columns=("split", "class_name"),
    )
    counts.details = {
        "min_per_class": min_per_class,
        "records_per_split_class": {
            split: {row.class_name: int(row.count) for row in group.itertuples()}
            for split, group in count_table.groupby("split", sort=False)
        },
    }
    results = [records, counts]
    summary = {
        "records_per_split": records.details["records_per_split"],
        "records_per_split_class": counts.details["records_per_split_class"],
        "min_per_class": min_per_class,
    }
    return ValidationReport(REPORT_TITLE, results, summary=summary)


def _record_details(table: pd.DataFrame, splits: Mapping[str, Sequence[Path]]) -> dict[str, Any]:
    per_split = table.groupby("split", sort=False).size()
    return {
        "records_per_split": {split: int(per_split.get(split, 0)) for split in splits},
        "unparseable_records": int(table["parse_error"].notna().sum()),
        "files_per_split": {split: [os.fspath(f) for f in files] for split, files in splits.items()},
    }
