"""Great Expectations suites for the trackbed TFRecord contract (see ``overseer.trackbed.data.schema``).

Two suites run on every split's records:

* ``trackbed_records``, one row per record (``record_table``): the bytes are an Example, every
  field is present, label in range, class_name agrees with label, positive sizes, depth 1 or 3,
  ``len(image_raw) == height*width*depth`` and image filenames unique within a split;
* ``trackbed_class_counts``, one row per (split, class): at least ``min_per_class`` records.

A record whose bytes are not an Example fails only ``parse_error`` (the field expectations are
restricted to parsed records), so it is reported once. A missing field fails only its not-null
expectation (pair expectations skip rows with a missing side). The report is written whether
or not validation passes.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from overseer.errors import InputError
from overseer.trackbed.data.schema import CLASSES
from overseer.trackbed.data.tfrecord import record_table
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
    return table


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
    names file, record and expectation of the first failures).

    ``splits`` maps a split name (train, val, test) to its TFRecord files. Unreadable TFRecord
    framing gives a report with the ``InputError`` of ``iter_raw_records`` as its note.
    """
    if not splits:
        raise InputError("no splits to validate")
    try:
        table = split_record_table(splits, classes)
    except InputError as exc:
        return ValidationReport(REPORT_TITLE, [], notes=[f"could not read records: {exc}"])
    records = run_suite(table, record_expectations(classes), RECORD_SUITE, id_columns=("file", "record"))
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
