"""GX validation of the trackbed TFRecord contract on tiny synthetic records (8x8 images)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from overseer.errors import InputError
from overseer.trackbed.data.schema import CLASSES, encode_example
from overseer.trackbed.data.tfrecord import write_records, write_shards
from overseer.validation import (
    ValidationFailed,
    format_failures,
    gx_expectations,
    run_suite,
    validate_and_report,
)
from overseer.validation.trackbed import validate_trackbed

SIDE = 8


def _image(seed: int, depth: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (SIDE, SIDE, depth), dtype=np.uint8)


def _good(prefix: str, per_class: int = 2) -> list[bytes]:
    """``per_class`` valid records of every class, filenames ``<prefix>_<i>.png``."""
    n = per_class * len(CLASSES)
    return [encode_example(f"{prefix}_{i}.png", _image(i), i % len(CLASSES)) for i in range(n)]


def _example(drop: tuple[str, ...] = (), **overrides: object) -> bytes:
    """A hand-built Example: a valid 8x8x3 GRAS record with fields overridden or dropped."""
    from tensorflow.core.example.example_pb2 import Example

    fields: dict[str, object] = {
        "image_filename": b"crafted.png",
        "image_raw": _image(99).tobytes(),
        "class_name": b"GRAS",
        "height": SIDE,
        "width": SIDE,
        "depth": 3,
        "label": CLASSES.index("GRAS"),
    }
    fields.update(overrides)
    example = Example()
    feature = example.features.feature
    for key, value in fields.items():
        if key in drop:
            continue
        if isinstance(value, bytes):
            feature[key].bytes_list.value.append(value)
        else:
            feature[key].int64_list.value.append(int(value))
    return example.SerializeToString()


def _write_raw(path: Path, records: list[bytes]) -> Path:
    return write_records(path, records)


@pytest.fixture
def train_files(tmp_path: Path) -> list[Path]:
    records = _good("train")
    return write_shards(records, tmp_path / "train", "train", total=len(records), shard_size=len(records))


def _validate_bad(tmp_path: Path, train_files: list[Path], records: list[bytes]) -> tuple[str, Path]:
    """Validate a clean train split plus an eval file of ``records``; return the error and eval path."""
    eval_file = _write_raw(tmp_path / "eval" / "eval-00000-of-00001.tfrecord", records)
    report_dir = tmp_path / "report"
    with pytest.raises(ValidationFailed) as info:
        validate_and_report(validate_trackbed({"train": train_files, "eval": [eval_file]}, 1), report_dir)
    assert (report_dir / "validation.md").is_file()
    assert (report_dir / "validation.json").is_file()
    assert isinstance(info.value, InputError)
    return str(info.value), eval_file


def _failing_lines(message: str) -> list[str]:
    return [line for line in message.splitlines()[1:] if not line.startswith("full report:")]


def test_clean_set_passes_and_report_mentions_every_expectation(tmp_path: Path, train_files: list[Path]) -> None:
    eval_records = _good("eval", per_class=1)
    eval_files = write_shards(eval_records, tmp_path / "eval", "eval", total=len(eval_records), shard_size=3)
    report_dir = tmp_path / "report"
    report = validate_trackbed({"train": train_files, "eval": eval_files}, 1)
    validate_and_report(report, report_dir)
    results = report.results
    assert [r.suite_name for r in results] == ["trackbed_records", "trackbed_class_counts"]
    assert all(r.success and not r.failures for r in results)
    assert results[0].details["records_per_split"] == {"train": 10, "eval": 5}
    assert results[1].details["records_per_split_class"]["eval"] == dict.fromkeys(CLASSES, 1)

    markdown = (report_dir / "validation.md").read_text()
    report = json.loads((report_dir / "validation.json").read_text())
    assert "PASSED" in markdown and report["success"] is True
    assert report["summary"]["records_per_split_class"]["train"] == dict.fromkeys(CLASSES, 2)
    descriptions = [c["description"] for suite in report["suites"] for c in suite["checks"]]
    for expected in (
        "expect_column_values_to_be_null(parse_error)",
        "expect_column_values_to_not_be_null(image_filename)",
        "expect_column_values_to_not_be_null(image_bytes)",
        "expect_column_values_to_not_be_null(height)",
        "expect_column_values_to_not_be_null(width)",
        "expect_column_values_to_not_be_null(depth)",
        "expect_column_values_to_not_be_null(label)",
        "expect_column_values_to_not_be_null(class_name)",
        "expect_column_values_to_be_between(label, min_value=0, max_value=4)",
        "expect_column_pair_values_to_be_equal(class_name, expected_class_name)",
        "expect_column_values_to_be_between(height, min_value=1)",
        "expect_column_values_to_be_between(width, min_value=1)",
        "expect_column_values_to_be_between(depth, min_value=1)",
        "expect_column_values_to_be_in_set(depth, value_set={1, 3})",
        "expect_column_pair_values_to_be_equal(image_bytes, expected_bytes)",
        "expect_compound_columns_to_be_unique(split, image_filename)",
        "expect_column_values_to_be_between(count, min_value=1)",
    ):
        assert expected in descriptions
        assert expected in markdown


@pytest.mark.parametrize(
    ("bad", "expectation", "values"),
    [
        (_example(drop=("height",)), "expect_column_values_to_not_be_null(height)", "height=None"),
        (
            _example(drop=("image_raw",)),
            "expect_column_values_to_not_be_null(image_bytes)",
            "image_bytes=None",
        ),
        (_example(label=7), "expect_column_values_to_be_between(label, min_value=0, max_value=4)", "label=7"),
        (
            _example(class_name=b"STONE"),
            "expect_column_pair_values_to_be_equal(class_name, expected_class_name)",
            "class_name=STONE, expected_class_name=GRAS",
        ),
        (
            _example(image_raw=b"\x00" * 100),
            "expect_column_pair_values_to_be_equal(image_bytes, expected_bytes)",
            "image_bytes=100, expected_bytes=192",
        ),
        (
            _example(depth=2, image_raw=b"\x00" * SIDE * SIDE * 2),
            "expect_column_values_to_be_in_set(depth, value_set={1, 3})",
            "depth=2",
        ),
        (
            _example(width=0, image_raw=b""),
            "expect_column_values_to_be_between(width, min_value=1)",
            "width=0",
        ),
    ],
    ids=["missing-field", "missing-image", "label-range", "class-name", "image-bytes", "depth-2", "width-0"],
)
def test_bad_record_is_named_once(
    tmp_path: Path, train_files: list[Path], bad: bytes, expectation: str, values: str
) -> None:
    message, eval_file = _validate_bad(tmp_path, train_files, [*_good("eval", per_class=1)[:3], bad])
    lines = _failing_lines(message)
    # the defect is reported exactly once, naming file, record index, expectation and offending values
    assert lines[0] == f"{eval_file}, record 3: {expectation} failed ({values})"
    assert not any(f"{eval_file}, record 3" in line for line in lines[1:])
    assert "trackbed_records" in message


def test_garbage_bytes_reported_once_as_parse_error(tmp_path: Path, train_files: list[Path]) -> None:
    records = _good("eval", per_class=1)
    records.insert(2, b"this is not a tf.train.Example \xff\xff\xfe")
    message, eval_file = _validate_bad(tmp_path, train_files, records)
    lines = [line for line in _failing_lines(message) if f"{eval_file}, record 2" in line]
    assert len(lines) == 1
    assert "expect_column_values_to_be_null(parse_error) failed" in lines[0]
    assert "not a tf.train.Example" in lines[0]
    assert "class_counts" not in message  # every class still has a record


def test_duplicate_filenames_within_split(tmp_path: Path, train_files: list[Path]) -> None:
    records = _good("eval", per_class=1)
    records.append(encode_example("eval_1.png", _image(5), 0))
    message, eval_file = _validate_bad(tmp_path, train_files, records)
    expectation = (
        "expect_compound_columns_to_be_unique(split, image_filename) failed (split=eval, image_filename=eval_1.png)"
    )
    assert f"{eval_file}, record 1: {expectation}" in message
    assert f"{eval_file}, record 5: {expectation}" in message


def test_same_filename_in_two_splits_is_fine(tmp_path: Path, train_files: list[Path]) -> None:
    eval_records = _good("train", per_class=1)  # same names as train, another split
    eval_file = _write_raw(tmp_path / "eval" / "eval.tfrecord", eval_records)
    validate_and_report(validate_trackbed({"train": train_files, "eval": [eval_file]}, 1), tmp_path / "report")


def test_too_few_records_of_a_class(tmp_path: Path, train_files: list[Path]) -> None:
    records = [r for i, r in enumerate(_good("eval", per_class=2)) if i != CLASSES.index("STONE")]
    eval_file = _write_raw(tmp_path / "eval" / "eval.tfrecord", records)  # STONE once, the others twice
    report_dir = tmp_path / "report"
    with pytest.raises(ValidationFailed) as info:
        validate_and_report(validate_trackbed({"train": train_files, "eval": [eval_file]}, 2), report_dir)
    text = str(info.value)
    expected = "expect_column_values_to_be_between(count, min_value=2) failed (count=1)"
    assert f"split eval, class_name STONE: {expected}" in text
    assert "class_name ASPHALT" not in text and "split train" not in text
    assert "trackbed_class_counts" in text and "trackbed_records" not in text
    report = json.loads((report_dir / "validation.json").read_text())
    assert report["success"] is False
    assert report["summary"]["records_per_split_class"]["eval"]["STONE"] == 1


def test_missing_split_class_counts_zero(tmp_path: Path, train_files: list[Path]) -> None:
    with pytest.raises(ValidationFailed) as info:
        validate_and_report(validate_trackbed({"train": train_files, "eval": []}, 1), tmp_path / "report")
    for name in CLASSES:
        assert f"split eval, class_name {name}: expect_column_values_to_be_between(count" in str(info.value)


def test_corrupt_framing_raises_input_error_and_writes_report(tmp_path: Path, train_files: list[Path]) -> None:
    good = _write_raw(tmp_path / "eval" / "eval.tfrecord", _good("eval", per_class=1))
    data = good.read_bytes()
    good.write_bytes(data[:-5])  # truncate the last record
    with pytest.raises(InputError, match=r"eval\.tfrecord, record 4"):
        validate_and_report(validate_trackbed({"train": train_files, "eval": [good]}, 1), tmp_path / "report")
    report = json.loads((tmp_path / "report" / "validation.json").read_text())
    assert report["success"] is False and "record 4" in report["notes"][0]


def test_run_suite_handles_nullable_ints_and_missing_columns() -> None:
    gxe = gx_expectations()
    table = pd.DataFrame(
        {
            "file": ["a.tfrecord"] * 3,
            "record": [0, 1, 2],
            "x": pd.array([1, None, 5], dtype="Int64"),
            "y": pd.array([1, 2, 6], dtype="Int64"),
        }
    )
    expectations = [
        gxe.ExpectColumnPairValuesToBeEqual(column_A="x", column_B="y"),
        gxe.ExpectColumnValuesToNotBeNull(column="no_such_column"),
    ]
    result = run_suite(table, expectations, "nullable")
    assert not result.success and result.evaluated == 2 and result.successful == 0
    pair, missing = result.failures
    assert pair.exception is None and pair.unexpected_count == 2  # NA vs 2 is a mismatch, not a crash
    assert pair.rows[0] == {"file": "a.tfrecord", "record": 1, "x": None, "y": 2}
    assert missing.exception is not None
    text = format_failures(result, limit=2)
    assert text.splitlines()[0] == (
        "a.tfrecord, record 1: expect_column_pair_values_to_be_equal(x, y) failed (x=None, y=2)"
    )
    assert text.splitlines()[-1].startswith("... (1 more lines")
