"""Trackbed data: the TFRecord contract, shards, image folders, ingest, the default set and splits.

Everything runs on tiny images (a few to a few dozen pixels a side) so that the whole file takes
seconds; the default set is generated at 32×32 except where ingest fixes the size.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from overseer.errors import InputError
from overseer.splits import stratified_split
from overseer.trackbed.data import synthetic
from overseer.trackbed.data.images import read_image, scan_image_folder
from overseer.trackbed.data.ingest import ingest_trackbed
from overseer.trackbed.data.schema import CLASSES, decode_fields, encode_example, image_from_fields
from overseer.trackbed.data.tfrecord import (
    is_tfrecord_source,
    iter_raw_records,
    list_tfrecords,
    record_table,
    write_records,
    write_shards,
)

GRAS, BALLAST, STONE = CLASSES.index("GRAS"), CLASSES.index("BALLAST"), CLASSES.index("STONE")


def _pixels(shape: tuple[int, ...], seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _smooth(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """A smooth gradient image (survives JPEG nearly unchanged)."""
    h, w = shape[:2]
    base = np.add.outer(np.arange(h) * 3, np.arange(w) * 3) + 10 + 5 * seed
    if len(shape) == 3:
        base = np.stack([base + 30 * c for c in range(shape[2])], axis=2)
    return np.clip(base, 0, 255).astype(np.uint8)


def _write_raw(path: Path, records: list[bytes]) -> Path:
    return write_records(path, records)


def _read_dir(folder: Path) -> list[bytes]:
    return [raw for file in sorted(folder.glob("*.tfrecord")) for _, raw in iter_raw_records(file)]


def _records(n: int, seed: int = 0, side: int = 6) -> list[bytes]:
    """``n`` valid records, labels cycling through the classes, alternating RGB and greyscale."""
    return [
        encode_example(f"r{seed}_{i}.png", _pixels((side, side + 1, 3 if i % 2 else 1), seed * 1000 + i), i % 5)
        for i in range(n)
    ]


def _save(path: Path, image: np.ndarray | Image.Image, **kwargs: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (image if isinstance(image, Image.Image) else Image.fromarray(image)).save(path, **kwargs)
    return path


# --- schema ----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(6, 5), (6, 5, 1), (6, 5, 3)], ids=["HxW", "HxWx1", "HxWx3"])
def test_encode_decode_round_trip(shape: tuple[int, ...]) -> None:
    image = _pixels(shape, 1)
    fields = decode_fields(encode_example("a/b.png", image, STONE))
    depth = 3 if len(shape) == 3 and shape[2] == 3 else 1
    assert fields == {
        "image_filename": b"a/b.png",
        "image_raw": image.tobytes(),
        "class_name": b"STONE",
        "height": 6,
        "width": 5,
        "depth": depth,
        "label": STONE,
    }
    restored = image_from_fields(fields)
    assert restored.dtype == np.uint8 and restored.shape == (6, 5, depth)
    np.testing.assert_array_equal(restored, image.reshape(6, 5, depth))


def test_encode_non_contiguous_image() -> None:
    image = _pixels((8, 10, 3), 2)[::2, ::-1]  # a strided view
    restored = image_from_fields(decode_fields(encode_example("v.png", image, 0)))
    np.testing.assert_array_equal(restored, image)


@pytest.mark.parametrize(
    ("image", "label", "match"),
    [
        (np.zeros((4, 4, 3), np.float32), 0, "uint8"),
        (np.zeros((4, 4, 3), np.uint16), 0, "uint8"),
        (np.zeros((4, 4, 4), np.uint8), 0, "shape"),
        (np.zeros((4, 4, 2), np.uint8), 0, "shape"),
        (np.zeros(16, np.uint8), 0, "shape"),
        (np.zeros((2, 4, 4, 3), np.uint8), 0, "shape"),
        (np.zeros((4, 4), np.uint8), 5, "label 5"),
        (np.zeros((4, 4), np.uint8), -1, "label -1"),
    ],
)
def test_encode_rejects(image: np.ndarray, label: int, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        encode_example("bad.png", image, label)
    assert "bad.png" in str(info.value)


def test_decode_fields_missing_and_garbage() -> None:
    full = decode_fields(encode_example("x", np.zeros((1, 1), np.uint8), 0))
    assert decode_fields(b"") == dict.fromkeys(full)  # an empty Example: every field missing
    with pytest.raises(ValueError, match=r"not a tf\.train\.Example"):
        decode_fields(b"\xff\xff\xff not protobuf")


# --- TFRecord files --------------------------------------------------------------------------


def test_write_shards_names_counts_and_order(tmp_path: Path) -> None:
    records = _records(7)
    paths = write_shards(iter(records), tmp_path / "out", "train", total=7, shard_size=3)
    assert [p.name for p in paths] == [f"train-{i:05d}-of-00003.tfrecord" for i in range(3)]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [p.name for p in paths]  # no temp files left
    per_shard = [[raw for _, raw in iter_raw_records(p)] for p in paths]
    assert [len(s) for s in per_shard] == [3, 3, 1]
    assert [raw for shard in per_shard for raw in shard] == records
    assert [i for i, _ in iter_raw_records(paths[0])] == [0, 1, 2]


def test_write_shards_single_shard_and_empty(tmp_path: Path) -> None:
    records = _records(4)
    (path,) = write_shards(records, tmp_path, "eval", total=4, shard_size=100)
    assert path.name == "eval-00000-of-00001.tfrecord"
    assert [raw for _, raw in iter_raw_records(path)] == records
    with pytest.raises(ValueError, match="no records"):
        write_shards([], tmp_path, "none", total=0, shard_size=3)


def test_list_tfrecords_file_folder_glob(tmp_path: Path) -> None:
    a = _write_raw(tmp_path / "d" / "b.tfrecord", _records(1))
    b = _write_raw(tmp_path / "d" / "a.tfrecords", _records(1))
    c = _write_raw(tmp_path / "d" / "c.tfr", _records(1))
    (tmp_path / "d" / "notes.txt").write_text("not a record file")
    assert list_tfrecords(a) == [a]
    assert list_tfrecords(tmp_path / "d") == [b, a, c]
    assert list_tfrecords(os.fspath(tmp_path / "d" / "*.tfrecord*")) == [b, a]
    assert is_tfrecord_source(a) and is_tfrecord_source(tmp_path / "d")
    assert is_tfrecord_source(os.fspath(tmp_path / "d" / "*.tfr"))


def test_folder_of_tf_style_shard_names_is_a_tfrecord_source(tmp_path: Path) -> None:
    shard = _write_raw(tmp_path / "d" / "train.tfrecord-00000-of-00001", _records(2))
    assert list_tfrecords(tmp_path / "d") == [shard]
    assert is_tfrecord_source(tmp_path / "d")  # else ingest/predict treat the folder as an image folder


@pytest.mark.parametrize("where", ["missing.tfrecord", "empty_dir", "no_match_*.tfrecord"])
def test_list_tfrecords_nothing_found(tmp_path: Path, where: str) -> None:
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "empty_dir" / "x.png").write_bytes(b"")
    target = os.fspath(tmp_path / where)
    with pytest.raises(InputError, match="no TFRecord files") as info:
        list_tfrecords(target)
    assert target in str(info.value)
    assert not is_tfrecord_source(target)


def _framed_offsets(records: list[bytes]) -> list[int]:
    """Byte offset of every record in a TFRecord file: 8 length + 4 CRC + data + 4 CRC each."""
    offsets, at = [], 0
    for record in records:
        offsets.append(at)
        at += 16 + len(record)
    return offsets


def test_truncated_tfrecord_names_file_and_record(tmp_path: Path) -> None:
    records = _records(5)
    good = _write_raw(tmp_path / "good.tfrecord", records)
    bad = tmp_path / "truncated.tfrecord"
    bad.write_bytes(good.read_bytes()[:-3])
    seen = []
    with pytest.raises(InputError) as info:
        for index, raw in iter_raw_records(bad):
            seen.append((index, raw))
    assert [raw for _, raw in seen] == records[:4]
    assert str(bad) in str(info.value) and "record 4" in str(info.value)
    assert info.value.record == 4 and "corrupt" in str(info.value)


@pytest.mark.parametrize("victim", [0, 2])
def test_flipped_byte_names_file_and_record(tmp_path: Path, victim: int) -> None:
    records = _records(5)
    good = _write_raw(tmp_path / "good.tfrecord", records)
    data = bytearray(good.read_bytes())
    assert len(data) == sum(16 + len(r) for r in records)
    data[_framed_offsets(records)[victim] + 12 + len(records[victim]) // 2] ^= 0xFF  # middle of its payload
    bad = tmp_path / "flipped.tfrecord"
    bad.write_bytes(bytes(data))
    with pytest.raises(InputError) as info:
        list(iter_raw_records(bad))
    assert str(bad) in str(info.value) and f"record {victim}" in str(info.value)
    with pytest.raises(InputError, match=f"record {victim}"):
        record_table([good, bad])


def test_record_table_columns_and_values(tmp_path: Path) -> None:
    from tensorflow.core.example.example_pb2 import Example

    missing = Example()  # a 3×4×3 image, no depth and no label
    feature = missing.features.feature
    feature["image_filename"].bytes_list.value.append(b"nodepth.png")
    feature["image_raw"].bytes_list.value.append(bytes(36))
    feature["class_name"].bytes_list.value.append(b"GRAS")
    feature["height"].int64_list.value.append(3)
    feature["width"].int64_list.value.append(4)
    good = [encode_example("g.png", _pixels((3, 4), 0), BALLAST), encode_example("c.png", _pixels((5, 2, 3), 0), 4)]
    path = _write_raw(tmp_path / "t.tfrecord", [*good, missing.SerializeToString(), b"\xff\xff garbage"])

    table = record_table([path])
    assert list(table.columns) == [
        "file", "record", "parse_error", "image_filename", "height", "width", "depth", "label",
        "class_name", "image_bytes", "expected_bytes", "expected_class_name",
    ]  # fmt: skip
    assert table["record"].tolist() == [0, 1, 2, 3] and set(table["file"]) == {os.fspath(path)}
    first, second, third, fourth = (table.iloc[i] for i in range(4))
    assert first["image_filename"] == "g.png" and first["class_name"] == "BALLAST" and first["label"] == BALLAST
    assert (first["height"], first["width"], first["depth"]) == (3, 4, 1)
    assert first["image_bytes"] == first["expected_bytes"] == 12
    assert first["expected_class_name"] == "BALLAST" and pd.isna(first["parse_error"])
    assert second["image_bytes"] == second["expected_bytes"] == 30 and second["expected_class_name"] == "ERROR"
    assert third["image_bytes"] == 36 and third["class_name"] == "GRAS"
    assert pd.isna(third["depth"]) and pd.isna(third["label"])
    assert pd.isna(third["expected_bytes"]) and pd.isna(third["expected_class_name"])
    assert "not a tf.train.Example" in fourth["parse_error"]
    assert all(pd.isna(fourth[c]) for c in ("image_filename", "height", "label", "image_bytes", "expected_bytes"))
    for col in ("height", "width", "depth", "label", "image_bytes", "expected_bytes"):
        assert str(table[col].dtype) == "Int64"


# --- image folders ---------------------------------------------------------------------------


@pytest.fixture
def image_folder(tmp_path: Path) -> tuple[Path, dict[str, tuple[int, np.ndarray]]]:
    """Class folders in mixed case with PNG/JPEG, greyscale, RGB, RGBA and palette images.

    Returns the root and, per relative path, (label, the pixels read_image must return; for JPEG
    the pixels that were compressed)."""
    root = tmp_path / "images"
    expected: dict[str, tuple[int, np.ndarray]] = {}
    for i in range(4):
        rgb = _pixels((16, 16 + i, 3), i)
        expected[_save(root / "gras" / f"g{i}.png", rgb).relative_to(root).as_posix()] = (GRAS, rgb)
        grey = _pixels((20 + i, 24), 10 + i)
        expected[_save(root / "stone" / f"s{i}.PNG", grey).relative_to(root).as_posix()] = (STONE, grey)
        jpeg = _smooth((24, 20, 3), i)
        expected[_save(root / "Ballast" / f"b{i}.jpg", jpeg, quality=95).relative_to(root).as_posix()] = (
            BALLAST,
            jpeg,
        )
    rgba = _pixels((12, 14, 4), 20)
    expected["stone/nested/rgba.png"] = (STONE, rgba[:, :, :3])
    _save(root / "stone" / "nested" / "rgba.png", rgba)
    palette = Image.fromarray(_pixels((10, 9, 3), 21)).quantize(colors=16)
    expected["gras/palette.png"] = (GRAS, np.asarray(palette.convert("RGB")))
    _save(root / "gras" / "palette.png", palette)
    grey_jpeg = _smooth((16, 16), 5)
    expected["Ballast/grey.jpeg"] = (BALLAST, grey_jpeg)
    _save(root / "Ballast" / "grey.jpeg", grey_jpeg, quality=95)
    (root / "gras" / "readme.txt").write_text("ignored")
    (root / ".hidden").mkdir()  # hidden folders are not classes
    return root, expected


def test_scan_image_folder_mixed_case(image_folder: tuple[Path, dict]) -> None:
    root, expected = image_folder
    items = scan_image_folder(root)
    assert {p.relative_to(root).as_posix(): label for p, label in items} == {k: v[0] for k, v in expected.items()}
    assert [p for p, _ in items] == sorted(p for p, _ in items)
    assert Counter(label for _, label in items) == {GRAS: 5, STONE: 5, BALLAST: 5}


def test_read_image_modes(image_folder: tuple[Path, dict]) -> None:
    root, expected = image_folder
    for rel, (_, pixels) in expected.items():
        image = read_image(root / rel)
        assert image.dtype == np.uint8 and image.shape == pixels.shape, rel
        if rel.lower().endswith(".png"):
            np.testing.assert_array_equal(image, pixels, err_msg=rel)
        else:  # lossy, but close on a smooth image
            assert np.abs(image.astype(int) - pixels).mean() < 3, rel


def test_read_image_bilevel(tmp_path: Path) -> None:
    bits = _pixels((9, 11), 3) > 127
    path = _save(tmp_path / "bits.png", Image.fromarray(bits).convert("1"))
    np.testing.assert_array_equal(read_image(path), np.where(bits, 255, 0).astype(np.uint8))


def test_read_image_16_bit_greyscale_keeps_content(tmp_path: Path) -> None:
    wide = (np.arange(16 * 16, dtype=np.uint16).reshape(16, 16) * 257).astype(np.uint16)
    path = _save(tmp_path / "g16.png", wide)
    image = read_image(path)
    np.testing.assert_allclose(image.astype(int), wide.astype(int) // 257, atol=1)


def test_scan_image_folder_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    with pytest.raises(InputError, match="image folder not found") as info:
        scan_image_folder(missing)
    assert str(missing) in str(info.value)

    empty = tmp_path / "empty"
    (empty / "GRAS").mkdir(parents=True)
    with pytest.raises(InputError, match="no JPEG/PNG images") as info:
        scan_image_folder(empty)
    assert str(empty) in str(info.value)

    one = tmp_path / "one"
    _save(one / "gras" / "a.png", _pixels((4, 4), 0))
    _save(one / "GRAS" / "b.png", _pixels((4, 4), 1))  # same class, other case
    with pytest.raises(InputError, match=r"only one class \(GRAS\)") as info:
        scan_image_folder(one)
    assert str(one) in str(info.value)

    unknown = tmp_path / "unknown"
    _save(unknown / "gras" / "a.png", _pixels((4, 4), 0))
    _save(unknown / "gravel" / "b.png", _pixels((4, 4), 1))
    with pytest.raises(InputError, match="unknown class folder 'gravel'") as info:
        scan_image_folder(unknown)
    assert str(unknown / "gravel") in str(info.value)


@pytest.mark.parametrize("content", [b"this is not a jpeg", b"", b"\xff\xd8\xff\xe0" + bytes(40)])
def test_read_image_corrupt(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "broken.jpg"
    path.write_bytes(content)
    with pytest.raises(InputError, match="unreadable image") as info:
        read_image(path)
    assert str(path) in str(info.value)


def test_read_image_truncated_png(tmp_path: Path) -> None:
    path = _save(tmp_path / "cut.png", _pixels((32, 32, 3), 4))
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(InputError) as info:
        read_image(path)
    assert str(path) in str(info.value)


# --- ingest ----------------------------------------------------------------------------------


def _decode_dir(folder: Path) -> list[dict]:
    return [decode_fields(raw) for raw in _read_dir(folder)]


def test_ingest_image_folder_split(image_folder: tuple[Path, dict], tmp_path: Path) -> None:
    root, expected = image_folder
    out = tmp_path / "out"
    cfg = {"source": str(root), "eval_fraction": 0.4, "shard_size": 4, "seed": 3}
    report = ingest_trackbed(cfg, out)

    train, evaluation = _decode_dir(out / "train"), _decode_dir(out / "eval")
    assert report["splits"]["train"]["records"] == len(train) == 9
    assert report["splits"]["eval"]["records"] == len(evaluation) == 6
    assert report["splits"]["train"]["shards"] == 3 and report["splits"]["eval"]["shards"] == 2
    assert len(list((out / "train").iterdir())) == 3
    for split, records in (("train", train), ("eval", evaluation)):
        counts = Counter(f["class_name"].decode() for f in records)
        assert report["splits"][split]["per_class"] == {name: counts.get(name, 0) for name in CLASSES}
        assert set(counts) == {"GRAS", "STONE", "BALLAST"}  # stratified: every class in both splits
    for name in ("GRAS", "STONE", "BALLAST"):
        assert report["splits"]["train"]["per_class"][name] + report["splits"]["eval"]["per_class"][name] == 5
        assert report["splits"]["eval"]["per_class"][name] == 2

    train_names = {f["image_filename"].decode() for f in train}
    eval_names = {f["image_filename"].decode() for f in evaluation}
    assert not train_names & eval_names
    assert train_names | eval_names == set(expected)
    for fields in train + evaluation:
        rel = fields["image_filename"].decode()
        label, pixels = expected[rel]
        assert fields["label"] == label and fields["class_name"] == CLASSES[label].encode()
        restored = image_from_fields(fields)
        np.testing.assert_array_equal(restored, read_image(root / rel).reshape(restored.shape))
        if rel.lower().endswith(".png"):
            np.testing.assert_array_equal(restored.reshape(pixels.shape), pixels)

    again = ingest_trackbed(cfg, tmp_path / "again")  # deterministic by seed
    assert again == report
    assert _read_dir(tmp_path / "again" / "eval") == _read_dir(out / "eval")


def test_ingest_tfrecord_pass_through(tmp_path: Path) -> None:
    from tensorflow.core.example.example_pb2 import Example

    extra = Example()  # a record with an extra field: it must come through untouched
    extra.ParseFromString(encode_example("extra.png", _pixels((5, 5, 3), 9), GRAS))
    extra.features.feature["camera"].bytes_list.value.append(b"cam-7")
    train_records = [*_records(9, seed=1), extra.SerializeToString()]
    eval_records = _records(6, seed=2)
    _write_raw(tmp_path / "src" / "train-a.tfrecord", train_records[:4])
    _write_raw(tmp_path / "src" / "train-b.tfrecord", train_records[4:])
    eval_file = _write_raw(tmp_path / "eval.tfrecord", eval_records)

    out = tmp_path / "out"
    cfg = {"source": str(tmp_path / "src"), "eval_source": str(eval_file), "shard_size": 4, "seed": 0}
    report = ingest_trackbed(cfg, out)
    assert Counter(_read_dir(out / "train")) == Counter(train_records)
    assert Counter(_read_dir(out / "eval")) == Counter(eval_records)
    assert report["splits"]["train"]["records"] == 10 and report["splits"]["train"]["shards"] == 3
    assert report["splits"]["eval"]["per_class"] == {"ASPHALT": 2, "BALLAST": 1, "GRAS": 1, "STONE": 1, "ERROR": 1}
    assert report["eval_source"] == str(eval_file)


def test_ingest_tfrecord_split_without_eval_source(tmp_path: Path) -> None:
    records = _records(20, seed=4)  # 4 per class
    source = _write_raw(tmp_path / "all.tfrecord", records)
    out = tmp_path / "out"
    report = ingest_trackbed({"source": str(source), "eval_fraction": 0.25, "shard_size": 50, "seed": 1}, out)
    train, evaluation = _read_dir(out / "train"), _read_dir(out / "eval")
    assert Counter(train + evaluation) == Counter(records)
    assert not set(train) & set(evaluation)
    assert report["splits"]["eval"]["per_class"] == dict.fromkeys(CLASSES, 1)
    assert report["splits"]["train"]["per_class"] == dict.fromkeys(CLASSES, 3)


def test_ingest_tfrecord_bad_label(tmp_path: Path) -> None:
    from tensorflow.core.example.example_pb2 import Example

    bad = Example()
    bad.ParseFromString(encode_example("x.png", _pixels((2, 2), 0), 0))
    bad.features.feature["label"].int64_list.value[0] = 7
    source = _write_raw(tmp_path / "in.tfrecord", [*_records(3), bad.SerializeToString()])
    with pytest.raises(InputError, match="label 7") as info:
        ingest_trackbed({"source": str(source), "shard_size": 10}, tmp_path / "out")
    assert str(source) in str(info.value) and "record 3" in str(info.value)
    assert not (tmp_path / "out").exists()


def test_ingest_default_source(tmp_path: Path) -> None:
    cfg = {"source": "default", "default": {"train_per_class": 2, "eval_per_class": 1}, "shard_size": 4, "seed": 0}
    report = ingest_trackbed(cfg, tmp_path / "out")
    assert report["splits"]["train"]["per_class"] == dict.fromkeys(CLASSES, 2)
    assert report["splits"]["eval"]["per_class"] == dict.fromkeys(CLASSES, 1)
    assert report["splits"]["train"]["shards"] == 3 and report["splits"]["eval"]["shards"] == 2
    for split, n in (("train", 10), ("eval", 5)):
        fields = _decode_dir(tmp_path / "out" / split)
        assert len(fields) == n
        assert sorted(f["label"] for f in fields) == sorted(list(range(5)) * (n // 5))
        assert all((f["height"], f["width"], f["depth"]) == (224, 224, 3) for f in fields)
        assert all(f["image_filename"].decode().startswith(f"default/{split}/") for f in fields)


def _entries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_ingest_failure_leaves_nothing(image_folder: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = image_folder
    broken = root / "stone" / "zz_broken.jpg"
    broken.write_bytes(b"garbage, not a JPEG")
    parent = tmp_path / "models"
    parent.mkdir()
    with pytest.raises(InputError, match="unreadable image") as info:
        ingest_trackbed({"source": str(root), "eval_fraction": 0.2, "shard_size": 2, "seed": 0}, parent / "out")
    assert str(broken) in str(info.value)
    assert _entries(parent) == []  # neither the output nor a temporary folder


def test_ingest_replaces_existing_only_on_success(image_folder: tuple[Path, dict], tmp_path: Path) -> None:
    root, _ = image_folder
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("previous run")
    broken = root / "gras" / "zz_broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    cfg = {"source": str(root), "eval_fraction": 0.2, "shard_size": 100, "seed": 0}
    with pytest.raises(InputError, match=r"zz_broken\.png"):
        ingest_trackbed(cfg, out)
    assert _entries(out) == ["old.txt"] and (out / "old.txt").read_text() == "previous run"
    assert _entries(tmp_path) == ["images", "out"]

    broken.unlink()
    ingest_trackbed(cfg, out)
    assert _entries(out) == ["eval", "provenance.csv", "train"]
    assert _entries(tmp_path) == ["images", "out"]  # the old folder is gone, no temporaries


# --- the default set -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def default_sets() -> dict[str, list[synthetic.SyntheticImage]]:
    return {
        "train": list(synthetic.generate("train", 2, 5, size=32)),
        "eval": list(synthetic.generate("eval", 2, 5, size=32)),
    }


def test_synthetic_shapes_labels_names(default_sets: dict[str, list[synthetic.SyntheticImage]]) -> None:
    for split, images in default_sets.items():
        assert len(images) == 10
        assert sorted(im.label for im in images) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
        for im in images:
            assert im.image.dtype == np.uint8 and im.image.shape == (32, 32, 3)
            assert im.filename.startswith(f"default/{split}/{CLASSES[im.label]}/")
            assert im.image.std() > 0  # not a blank frame
        assert len({im.filename for im in images}) == 10


def test_synthetic_deterministic_and_splits_differ(default_sets: dict[str, list[synthetic.SyntheticImage]]) -> None:
    again = list(synthetic.generate("train", 2, 5, size=32))
    assert [im.filename for im in again] == [im.filename for im in default_sets["train"]]
    for a, b in zip(again, default_sets["train"], strict=True):
        assert a.label == b.label
        np.testing.assert_array_equal(a.image, b.image)
    other_seed = list(synthetic.generate("train", 2, 6, size=32))
    assert any(not np.array_equal(a.image, b.image) for a, b in zip(other_seed, again, strict=True))
    for t in default_sets["train"]:
        for e in default_sets["eval"]:
            assert not np.array_equal(t.image, e.image)
    with pytest.raises(ValueError, match="split"):
        next(synthetic.generate("test", 1, 0, size=32))


def test_quadrant_eval_only_bottom_right() -> None:
    # 10×14 image whose pixels are their quadrant index (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right)
    image = np.zeros((10, 14), dtype=np.uint8)
    image[:5, 7:], image[5:, :7], image[5:, 7:] = 1, 2, 3
    rng = np.random.default_rng(0)
    for _ in range(20):
        crop = synthetic._quadrant(image, "eval", rng)
        assert crop.shape == (5, 7) and np.all(crop == synthetic.EVAL_QUADRANT)
    seen = set()
    for _ in range(300):
        crop = synthetic._quadrant(image, "train", rng)
        assert crop.shape == (5, 7) and np.unique(crop).size == 1
        seen.add(int(crop[0, 0]))
    assert seen == {0, 1, 2}
    assert synthetic.EVAL_QUADRANT == 3


# --- stratified split ------------------------------------------------------------------------


def test_stratified_split_fractions() -> None:
    labels = np.array([0] * 10 + [1] * 5 + [2] * 2 + [3] * 1 + [4] * 20)
    rng = np.random.default_rng(1)
    labels = labels[rng.permutation(labels.size)]
    held = stratified_split(labels, 0.2, seed=4)
    assert held.dtype == bool and held.shape == labels.shape
    per_class = {c: (int(held[labels == c].sum()), int((~held[labels == c]).sum())) for c in range(5)}
    assert per_class == {0: (2, 8), 1: (1, 4), 2: (1, 1), 3: (0, 1), 4: (4, 16)}
    np.testing.assert_array_equal(held, stratified_split(labels, 0.2, seed=4))
    assert any(not np.array_equal(held, stratified_split(labels, 0.2, seed=s)) for s in range(5, 10))
    big = stratified_split(labels, 0.9, seed=0)  # at least one kept per class
    assert all((~big[labels == c]).sum() >= 1 for c in range(5))
    assert stratified_split(labels.tolist(), 0.2, seed=4).tolist() == held.tolist()


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_stratified_split_rejects_fraction(fraction: float) -> None:
    with pytest.raises(ValueError, match="fraction"):
        stratified_split(np.array([0, 0, 1, 1]), fraction, seed=0)
