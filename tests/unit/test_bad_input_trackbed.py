"""Bad trackbed input: every message names the user's file and record, and nothing half-written stays.

Validation failures name the user's source TFRecord file, the record's index in it and its
``image_filename`` (through ingest's provenance table), then the prepared shard; ingest failures
name the source file (and record) and leave neither the output nor a temporary folder behind.
Records are 8×8 images, so the whole module takes seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from overseer.errors import InputError
from overseer.trackbed.data.ingest import ingest_trackbed
from overseer.trackbed.data.schema import CLASSES, decode_fields, encode_example
from overseer.trackbed.data.tfrecord import (
    PROVENANCE_COLUMNS,
    PROVENANCE_FILE,
    iter_raw_records,
    list_tfrecords,
    read_provenance,
    write_records,
)
from overseer.validation.core import ValidationFailed, validate_and_report
from overseer.validation.trackbed import locate_record, validate_trackbed

SIDE = 8
PAIR = "expect_column_pair_values_to_be_equal"


def _records(n: int, prefix: str = "img") -> list[bytes]:
    rng = np.random.default_rng(1)
    return [
        encode_example(f"{prefix}{i}.png", rng.integers(0, 255, (SIDE, SIDE, 3), dtype=np.uint8), i % 5)
        for i in range(n)
    ]


def _edit(record: bytes, **fields: object) -> bytes:
    """``record`` with int64 or bytes fields overwritten (a tensorflow Example, as users write them)."""
    from tensorflow.core.example.example_pb2 import Example

    example = Example.FromString(record)
    for key, value in fields.items():
        feature = example.features.feature[key]
        if isinstance(value, bytes):
            feature.bytes_list.value[0] = value
        else:
            feature.int64_list.value[0] = int(value)
    return example.SerializeToString()


def _broken_source(path: Path) -> Path:
    """20 records, three broken: 3 names the wrong class, 7 claims height 9, 11 holds too few bytes."""
    records = _records(20)
    records[3] = _edit(records[3], class_name=b"GRAS")  # label 3 is STONE
    records[7] = _edit(records[7], height=SIDE + 1)
    records[11] = _edit(records[11], image_raw=b"\x00" * 10)
    return write_records(path, records)


def _splits(prepared: Path) -> dict[str, list[Path]]:
    return {split: list_tfrecords(prepared / split) for split in ("train", "eval")}


def _where(prepared: Path, name: bytes) -> tuple[Path, int]:
    """The prepared shard and index that hold the record named ``name`` (ingest shuffles)."""
    return next(
        (shard, index)
        for split in ("train", "eval")
        for shard in list_tfrecords(prepared / split)
        for index, raw in iter_raw_records(shard)
        if decode_fields(raw)["image_filename"] == name
    )


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _validate(prepared: Path, report_dir: Path) -> str:
    with pytest.raises(ValidationFailed) as info:
        validate_and_report(validate_trackbed(_splits(prepared), 1), report_dir)
    assert isinstance(info.value, InputError)
    assert _entries(report_dir) == ["validation.json", "validation.md"]  # the report, nothing half-written
    return str(info.value)


# --- validation names the user's file, record and image_filename ----------------------------------


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A broken source file ingested with a held-out split, then validated once."""
    root = tmp_path_factory.mktemp("broken")
    source = _broken_source(root / "raw" / "mine.tfrecord")
    prepared = root / "prepared"
    ingest_trackbed({"source": str(source), "eval_fraction": 0.25, "shard_size": 4, "seed": 5}, prepared)
    report_dir = root / "report"
    with pytest.raises(ValidationFailed) as info:
        validate_and_report(validate_trackbed(_splits(prepared), 1), report_dir)
    return {"source": source, "prepared": prepared, "report": report_dir, "message": str(info.value)}


@pytest.mark.parametrize(
    ("record", "expectation", "values"),
    [
        (3, f"{PAIR}(class_name, expected_class_name)", "class_name=GRAS, expected_class_name=STONE"),
        (7, f"{PAIR}(image_bytes, expected_bytes)", "image_bytes=192, expected_bytes=216"),
        (11, f"{PAIR}(image_bytes, expected_bytes)", "image_bytes=10, expected_bytes=192"),
    ],
    ids=["class-name", "height", "image-raw-bytes"],
)
def test_validation_names_source_file_record_and_image_filename(
    broken: dict, record: int, expectation: str, values: str
) -> None:
    shard, index = _where(broken["prepared"], f"img{record}.png".encode())
    location = (
        f"{broken['source']}, record {record} (image_filename 'img{record}.png'; prepared {shard}, record {index})"
    )
    line = f"{location}: {expectation} failed ({values})"
    assert line in broken["message"].splitlines()
    assert f"  - {location}: {values}" in (broken["report"] / "validation.md").read_text()


def test_validation_report_keeps_its_format_and_the_source_in_json(broken: dict) -> None:
    message = broken["message"]
    assert message.splitlines()[0] == "data validation failed: 2 expectation(s) failed in suite(s) trackbed_records"
    assert message.splitlines()[-1] == f"full report: {broken['report'] / 'validation.md'}"
    report = json.loads((broken["report"] / "validation.json").read_text())
    suite = report["suites"][0]
    assert suite["id_columns"] == ["source", "source_record", "source_image_filename", "file", "record"]
    rows = [row for failure in suite["failures"] for row in failure["rows"]]
    height = next(row for row in rows if row["source_record"] == 7)
    shard, index = _where(broken["prepared"], b"img7.png")
    assert height == {
        "source": str(broken["source"]),
        "source_record": 7,
        "source_image_filename": "img7.png",
        "file": str(shard),
        "record": index,
        "image_bytes": 192,
        "expected_bytes": 216,
    }
    markdown = (broken["report"] / "validation.md").read_text()
    assert "**Result: FAILED** (15 of 17 expectations passed)" in markdown


def test_provenance_table_maps_every_prepared_record_to_its_source(broken: dict) -> None:
    prepared = broken["prepared"]
    table = read_provenance(prepared / PROVENANCE_FILE)
    assert list(table.columns) == list(PROVENANCE_COLUMNS) and len(table) == 20
    assert sorted(table["source_record"]) == list(range(20))
    assert set(table["source"]) == {str(broken["source"])}
    for row in table.itertuples(index=False):
        raws = dict(iter_raw_records(prepared / row.shard))
        assert decode_fields(raws[row.record])["image_filename"].decode() == row.image_filename
        assert row.image_filename == f"img{row.source_record}.png"
    assert _entries(prepared) == ["eval", PROVENANCE_FILE, "train"]
    assert all(p.suffix == ".tfrecord" for split in ("train", "eval") for p in (prepared / split).iterdir())


def test_eval_source_records_are_named_in_their_own_file(tmp_path: Path) -> None:
    train = write_records(tmp_path / "raw" / "train.tfrecord", _records(10, "t"))
    records = _records(10, "e")
    records[6] = _edit(records[6], height=SIDE + 2)
    held_out = write_records(tmp_path / "raw" / "eval-part2.tfrecord", records)
    prepared = tmp_path / "prepared"
    ingest_trackbed({"source": str(train), "eval_source": str(held_out), "shard_size": 3, "seed": 0}, prepared)
    message = _validate(prepared, tmp_path / "report")
    shard, index = _where(prepared, b"e6.png")
    assert shard.parent.name == "eval"
    assert f"{held_out}, record 6 (image_filename 'e6.png'; prepared {shard}, record {index}): " in message
    assert str(train) not in message


def test_record_index_counts_within_each_source_file(tmp_path: Path) -> None:
    folder = tmp_path / "raw"
    records = _records(20)
    records[13] = _edit(records[13], height=SIDE + 1)
    write_records(folder / "part-a.tfrecord", records[:10])
    second = write_records(folder / "part-b.tfrecord", records[10:])
    prepared = tmp_path / "prepared"
    ingest_trackbed({"source": str(folder), "eval_fraction": 0.25, "shard_size": 100, "seed": 1}, prepared)
    message = _validate(prepared, tmp_path / "report")
    assert f"{second}, record 3 (image_filename 'img13.png'; prepared " in message


def test_without_provenance_the_prepared_shard_is_named(tmp_path: Path) -> None:
    """Shards not written by ingest (or a stale table) keep the ``<shard>, record <n>`` form."""
    prepared = tmp_path / "prepared"
    source = _broken_source(tmp_path / "mine.tfrecord")
    ingest_trackbed({"source": str(source), "eval_fraction": 0.25, "shard_size": 100, "seed": 5}, prepared)
    table = pd.read_csv(prepared / PROVENANCE_FILE)
    table["image_filename"] = "someone-else.png"  # stale: the positions now hold other images
    table.to_csv(prepared / PROVENANCE_FILE, index=False)
    shard, index = _where(prepared, b"img7.png")
    message = _validate(prepared, tmp_path / "report")
    assert f"\n{shard}, record {index}: {PAIR}(image_bytes, expected_bytes) failed" in message
    assert str(source) not in message


def test_locate_record_forms() -> None:
    prepared = {"file": "data/prepared/trackbed/train/train-00000-of-00001.tfrecord", "record": 4}
    image = {
        "source": "data/raw/trackbed/images/GRAS/a.png",
        "source_record": None,
        "source_image_filename": "GRAS/a.png",
    }
    assert locate_record({**prepared, **image}) == (
        "data/raw/trackbed/images/GRAS/a.png (image_filename 'GRAS/a.png'; "
        "prepared data/prepared/trackbed/train/train-00000-of-00001.tfrecord, record 4)"
    )
    default = {"source": "default", "source_record": 12, "source_image_filename": "default/train/x.png"}
    assert locate_record({**prepared, **default}).startswith(
        "the embedded default set, record 12 (image_filename 'default/train/x.png'; prepared "
    )
    nameless = {"source": "a.tfrecord", "source_record": 2, "source_image_filename": None}
    assert locate_record({**prepared, **nameless}).startswith("a.tfrecord, record 2 (no image_filename; prepared ")
    assert locate_record({**prepared, "source": None}) == f"{prepared['file']}, record 4"


def test_image_folder_and_default_provenance(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    rng = np.random.default_rng(0)
    for cls in ("GRAS", "stone"):
        for i in range(3):
            (folder / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 255, (5, 6, 3), dtype=np.uint8)).save(folder / cls / f"{i}.png")
    ingest_trackbed({"source": str(folder), "eval_fraction": 0.3, "shard_size": 10, "seed": 0}, tmp_path / "out")
    table = read_provenance(tmp_path / "out" / PROVENANCE_FILE)
    assert table["source_record"].isna().all()
    assert sorted(table["image_filename"]) == sorted(f"{c}/{i}.png" for c in ("GRAS", "stone") for i in range(3))
    assert all(row.source == str(folder / row.image_filename) for row in table.itertuples())

    cfg = {"source": "default", "default": {"train_per_class": 1, "eval_per_class": 1}, "shard_size": 4, "seed": 0}
    ingest_trackbed(cfg, tmp_path / "default")
    table = read_provenance(tmp_path / "default" / PROVENANCE_FILE)
    assert set(table["source"]) == {"default"} and len(table) == 2 * len(CLASSES)
    assert all(name.startswith("default/") for name in table["image_filename"])


def test_ingest_stays_byte_deterministic_with_provenance(tmp_path: Path) -> None:
    source = write_records(tmp_path / "in.tfrecord", _records(15))
    cfg = {"source": str(source), "eval_fraction": 0.2, "shard_size": 4, "seed": 9}
    ingest_trackbed(cfg, tmp_path / "a")
    ingest_trackbed(cfg, tmp_path / "b")
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


# --- ingest rejects bad sources by name, leaving nothing behind -----------------------------------


def _reject(tmp_path: Path, cfg: dict) -> str:
    """Ingest ``cfg`` into ``tmp_path/parent/out``: it must raise ``InputError`` and leave the parent empty."""
    parent = tmp_path / "parent"
    parent.mkdir()
    with pytest.raises(InputError) as info:
        ingest_trackbed({"eval_fraction": 0.2, "shard_size": 4, "seed": 0, **cfg}, parent / "out")
    assert _entries(parent) == [], "neither the output nor a temporary folder"
    return str(info.value)


def test_text_file_named_tfrecord(tmp_path: Path) -> None:
    source = tmp_path / "notes.tfrecord"
    source.write_text("these are my notes, not a TFRecord file\n" * 3)
    message = _reject(tmp_path, {"source": str(source)})
    assert message.startswith(f"{source}, record 0: corrupt TFRecord data (corrupted record at 0")
    assert "{{function_node" not in message and "[Op:" not in message


def test_garbage_record_in_source(tmp_path: Path) -> None:
    records = _records(6)
    records[4] = b"\xff\xfe definitely not an Example"
    source = write_records(tmp_path / "in.tfrecord", records)
    message = _reject(tmp_path, {"source": str(source)})
    assert message.startswith(f"{source}, record 4: not a tf.train.Example")


def test_truncated_source_names_the_record(tmp_path: Path) -> None:
    good = write_records(tmp_path / "good.tfrecord", _records(6))
    source = tmp_path / "cut.tfrecord"
    source.write_bytes(good.read_bytes()[:-7])
    message = _reject(tmp_path, {"source": str(source)})
    assert message.startswith(f"{source}, record 5: corrupt TFRecord data (truncated record")


def test_label_out_of_range_in_eval_source(tmp_path: Path) -> None:
    train = write_records(tmp_path / "train.tfrecord", _records(10))
    records = _records(5, "e")
    records[2] = _edit(records[2], label=9)
    held_out = write_records(tmp_path / "eval.tfrecord", records)
    message = _reject(tmp_path, {"source": str(train), "eval_source": str(held_out)})
    assert message.startswith(f"{held_out}, record 2: label 9 is not an int64 in 0..4")


def test_empty_tfrecord_file(tmp_path: Path) -> None:
    source = tmp_path / "empty.tfrecord"
    source.write_bytes(b"")
    message = _reject(tmp_path, {"source": str(source)})
    assert message == f"{source}: no records in the TFRecord file(s) (empty file?)"


def test_too_few_records_to_hold_out(tmp_path: Path) -> None:
    source = write_records(tmp_path / "one.tfrecord", _records(1))
    message = _reject(tmp_path, {"source": str(source)})
    assert message.startswith(f"{source}: 1 records: holding out eval_fraction=0.2 of each class leaves no eval")


def test_tfrecord_without_suffix_is_read_as_tfrecord(tmp_path: Path) -> None:
    source = write_records(tmp_path / "export.bin", _records(10))
    report = ingest_trackbed({"source": str(source), "eval_fraction": 0.2, "shard_size": 4, "seed": 0}, tmp_path / "o")
    assert report["splits"]["train"]["records"] + report["splits"]["eval"]["records"] == 10


def test_single_image_file_as_source(tmp_path: Path) -> None:
    image = tmp_path / "photo.jpg"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(image)
    message = _reject(tmp_path, {"source": str(image)})
    assert message.startswith(f"{image}: ingest.trackbed.source is a single image; give a folder")


def test_missing_source(tmp_path: Path) -> None:
    message = _reject(tmp_path, {"source": str(tmp_path / "nowhere"), "eval_source": str(tmp_path / "x")})
    assert message.startswith(f"{tmp_path / 'nowhere'}: ingest.trackbed.source not found")


def test_empty_image_folder(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    (folder / "GRAS").mkdir(parents=True)
    (folder / "GRAS" / "readme.txt").write_text("photos go here")
    message = _reject(tmp_path, {"source": str(folder)})
    assert message.startswith(f"{folder}: no JPEG/PNG images in class sub-folders")


def test_unreadable_image_in_folder(tmp_path: Path) -> None:
    folder = tmp_path / "images"
    for cls in ("GRAS", "STONE"):
        (folder / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.full((4, 4), 40 * i, np.uint8)).save(folder / cls / f"{i}.png")
    (folder / "STONE" / "9.jpg").write_bytes(b"\xff\xd8 not really a JPEG")
    message = _reject(tmp_path, {"source": str(folder)})
    assert message.startswith(f"{folder / 'STONE' / '9.jpg'}: unreadable image")


def test_sources_inside_the_repository_are_named_relative_to_it(tmp_path: Path, monkeypatch) -> None:
    repo = tmp_path / "repo"
    (repo / "data" / "raw").mkdir(parents=True)
    (repo / "dvc.yaml").write_text("stages: {}\n")
    source = write_records(repo / "data" / "raw" / "mine.tfrecord", _records(10))
    monkeypatch.chdir(repo)
    ingest_trackbed({"source": str(source), "eval_fraction": 0.2, "shard_size": 5, "seed": 0}, repo / "prepared")
    table = read_provenance(repo / "prepared" / PROVENANCE_FILE)
    assert set(table["source"]) == {"data/raw/mine.tfrecord"}
