"""`overseer predict trackbed` against a tiny stand-in model with the real model's I/O contract.

The stand-in takes float32 N×224×224×3 in [0, 255] and returns a softmax over the five classes,
like the exported ResNet50V2 model, but has a few dozen weights, so that loading, predicting and
exporting it to ONNX take seconds.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from overseer.cli import main
from overseer.errors import InputError
from overseer.trackbed.data.schema import CLASSES, IMAGE_SIZE, encode_example
from overseer.trackbed.data.tfrecord import write_records
from overseer.trackbed.predict import load_predictor, predict


def _pixels(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Random pixels around a per-seed colour, so different images get different predictions."""
    rng = np.random.default_rng(seed)
    centre = rng.integers(30, 226, shape[2] if len(shape) == 3 else 1)
    noise = rng.integers(-30, 31, shape)
    return np.clip((centre if len(shape) == 3 else centre[0]) + noise, 0, 255).astype(np.uint8)


def _reference_input(image: np.ndarray) -> np.ndarray:
    """The documented contract: greyscale -> RGB, bilinear resize to 224², float32 in [0, 255]."""
    import tensorflow as tf

    rgb = np.repeat(image[:, :, None], 3, axis=2) if image.ndim == 2 else image
    resized = tf.image.resize(tf.constant(rgb), [IMAGE_SIZE, IMAGE_SIZE], method="bilinear").numpy()
    return resized.astype(np.float32)


def _write_raw(path: Path, records: list[bytes]) -> Path:
    return write_records(path, records)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import keras

    keras.utils.set_random_seed(11)
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), dtype="float32")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)  # [0, 255] -> [-1, 1] like the real model
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(len(CLASSES), activation="softmax")(keras.layers.Dense(8, activation="tanh")(x))
    model = keras.Model(inputs, outputs)
    folder = tmp_path_factory.mktemp("model")
    model.save(folder / "model.keras")
    (folder / "classes.json").write_text(json.dumps(list(CLASSES)))
    return folder


@pytest.fixture(scope="module")
def keras_model(model_dir: Path):
    import keras

    return keras.models.load_model(model_dir / "model.keras", compile=False)


@pytest.fixture
def png_folder(tmp_path: Path) -> dict[Path, np.ndarray]:
    """PNGs of different sizes, greyscale and RGB, one in a nested folder."""
    root = tmp_path / "pngs"
    images = {
        root / "a_grey.png": _pixels((16, 16), 1),
        root / "b_rgb.png": _pixels((24, 20, 3), 2),
        root / "c_wide.png": _pixels((12, 40, 3), 3),
        root / "sub" / "d_grey.png": _pixels((30, 18), 4),
        root / "e_rgb.PNG": _pixels((20, 24, 3), 5),
    }
    for path, image in images.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
    (root / "notes.txt").write_text("not an image")
    return images


def _expected(model, images: list[np.ndarray]) -> np.ndarray:
    return np.asarray(model.predict(np.stack([_reference_input(im) for im in images]), verbose=0))


def _check_rows(table: pd.DataFrame, probs: np.ndarray, classes: list[str] | tuple[str, ...] = CLASSES) -> None:
    assert list(table.columns) == ["item", "class", "confidence", "true_class"]
    assert len(table) == len(probs)
    assert set(table["class"]) <= set(CLASSES)
    assert ((table["confidence"] > 0) & (table["confidence"] <= 1)).all()
    assert table["class"].tolist() == [classes[i] for i in probs.argmax(1)]
    np.testing.assert_allclose(table["confidence"], probs.max(1), rtol=1e-5, atol=1e-6)


def test_predict_png_folder(model_dir: Path, keras_model, png_folder: dict[Path, np.ndarray]) -> None:
    root = next(iter(png_folder)).parent
    table = predict(model_dir, [root], batch_size=2)  # 2 + 2 + 1: a partial last batch
    files = sorted(png_folder)
    assert table["item"].tolist() == [str(p) for p in files]
    assert table["true_class"].isna().all()
    probs = _expected(keras_model, [png_folder[p] for p in files])
    _check_rows(table, probs)
    assert len(set(table["class"])) > 1  # the stand-in model does tell the images apart


def test_predict_files_in_given_order(model_dir: Path, keras_model, png_folder: dict[Path, np.ndarray]) -> None:
    files = list(png_folder)[::-1]
    table = predict(model_dir, files)
    assert table["item"].tolist() == [str(p) for p in files]
    _check_rows(table, _expected(keras_model, [png_folder[p] for p in files]))


def test_predict_tfrecord(model_dir: Path, keras_model, tmp_path: Path) -> None:
    images = [_pixels((16, 16, 3), 10), _pixels((20, 24), 11), _pixels((24, 20, 1), 12), _pixels((8, 30, 3), 13)]
    labels = [2, 0, 4, 1]
    records = [encode_example(f"img_{i}.png", images[i], label) for i, label in enumerate(labels)]
    path = _write_raw(tmp_path / "eval.tfrecord", records)
    table = predict(model_dir, [path], batch_size=3)
    assert table["item"].tolist() == [f"{path}#{i}:img_{i}.png" for i in range(4)]
    assert table["true_class"].tolist() == [CLASSES[label] for label in labels]
    flat = [im[:, :, 0] if im.ndim == 3 and im.shape[2] == 1 else im for im in images]
    _check_rows(table, _expected(keras_model, flat))

    png = tmp_path / "one.png"
    Image.fromarray(images[0]).save(png)
    mixed = predict(model_dir, [png, path])
    assert pd.isna(mixed["true_class"][0])
    assert mixed["true_class"].tolist()[1:] == [CLASSES[label] for label in labels]
    assert mixed["class"].tolist() == [table["class"][0], *table["class"]]


def test_predict_uses_classes_json(model_dir: Path, keras_model, png_folder: dict[Path, np.ndarray], tmp_path) -> None:
    other = tmp_path / "model"
    other.mkdir()
    shutil.copy(model_dir / "model.keras", other / "model.keras")
    names = list(reversed(CLASSES))
    (other / "classes.json").write_text(json.dumps(names))
    files = sorted(png_folder)
    table = predict(other, files)
    _check_rows(table, _expected(keras_model, [png_folder[p] for p in files]), classes=names)


def test_predict_errors(model_dir: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope.png"
    with pytest.raises(InputError, match="no such file or folder") as info:
        predict(model_dir, [missing])
    assert str(missing) in str(info.value)

    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("no images")
    with pytest.raises(InputError, match="no JPEG/PNG images") as info:
        predict(model_dir, [empty])
    assert str(empty) in str(info.value)

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    with pytest.raises(InputError, match="unreadable image") as info:
        predict(model_dir, [broken])
    assert str(broken) in str(info.value)

    no_model = tmp_path / "no_model"
    no_model.mkdir()
    with pytest.raises(InputError, match=r"no model\.onnx or model\.keras") as info:
        load_predictor(no_model)
    assert str(no_model) in str(info.value)


def test_predict_bad_tfrecords(model_dir: Path, tmp_path: Path) -> None:
    records = [encode_example(f"r{i}.png", _pixels((6, 6, 3), i), i) for i in range(3)]
    good = _write_raw(tmp_path / "good.tfrecord", records)
    cut = tmp_path / "cut.tfrecord"
    cut.write_bytes(good.read_bytes()[:-5])
    with pytest.raises(InputError, match="record 2") as info:
        predict(model_dir, [cut])
    assert str(cut) in str(info.value)

    short = _edit(records[1], image_raw=bytes(6 * 6 * 3 - 1))  # one byte short of height*width*depth
    bad = _write_raw(tmp_path / "short.tfrecord", [records[0], short])
    with pytest.raises(InputError, match="not a valid trackbed record") as info:
        predict(model_dir, [bad])
    assert str(bad) in str(info.value) and "record 1" in str(info.value)


def _edit(record: bytes, drop: str = "", image_raw: bytes | None = None, **ints: int) -> bytes:
    """``record`` with a field dropped, ``image_raw`` replaced and int fields overridden."""
    from tensorflow.core.example.example_pb2 import Example

    example = Example()
    example.ParseFromString(record)
    feature = example.features.feature
    if drop:
        del feature[drop]
    if image_raw is not None:
        feature["image_raw"].bytes_list.value[0] = image_raw
    for key, value in ints.items():
        feature[key].int64_list.value[0] = value
    return example.SerializeToString()


def test_predict_record_without_filename(model_dir: Path, tmp_path: Path) -> None:
    record = _edit(encode_example("x.png", _pixels((6, 6, 3), 0), 0), drop="image_filename")
    path = _write_raw(tmp_path / "nofilename.tfrecord", [record])
    with pytest.raises(InputError, match="record 0"):
        predict(model_dir, [path])


def test_predict_record_with_depth_4(model_dir: Path, tmp_path: Path) -> None:
    record = _edit(encode_example("x.png", _pixels((6, 6, 3), 0), 0), image_raw=bytes(6 * 6 * 4), depth=4)
    path = _write_raw(tmp_path / "rgba.tfrecord", [record])
    with pytest.raises(InputError, match="record 0"):
        predict(model_dir, [path])


def test_onnx_export_and_predict(model_dir: Path, keras_model, png_folder: dict[Path, np.ndarray], tmp_path) -> None:
    from overseer.trackbed.export import export_trackbed, onnx_predict

    files = sorted(png_folder)
    batch = np.stack([_reference_input(png_folder[p]) for p in files])
    out = tmp_path / "export"
    check = export_trackbed(model_dir / "model.keras", out, batch, {"note": "tiny"})
    written = {p.name for p in out.iterdir()}
    assert {"model.keras", "model.onnx", "saved_model", "classes.json", "config.json"} <= written
    assert check["images"] == len(files) and check["argmax_agreement"] == 1.0
    assert json.loads((out / "classes.json").read_text()) == list(CLASSES)
    assert json.loads((out / "config.json").read_text())["note"] == "tiny"

    keras_probs = np.asarray(keras_model.predict(batch, verbose=0))
    onnx_probs = onnx_predict(out / "model.onnx", batch)
    np.testing.assert_allclose(onnx_probs, keras_probs, atol=1e-5)

    onnx_table = predict(out, [next(iter(png_folder)).parent])  # model.onnx wins over model.keras
    keras_table = predict(model_dir, [next(iter(png_folder)).parent])
    assert onnx_table["class"].tolist() == keras_table["class"].tolist()
    np.testing.assert_allclose(onnx_table["confidence"], keras_table["confidence"], atol=1e-5)
    _check_rows(onnx_table, keras_probs)


def test_cli_predict(model_dir: Path, png_folder: dict[Path, np.ndarray], tmp_path: Path, capsys) -> None:
    png = next(iter(png_folder))
    csv = tmp_path / "out" / "pred.csv"
    assert main(["predict", "trackbed", str(png), "--model", str(model_dir), "--out", str(csv)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    table = pd.read_csv(csv)
    assert len(lines) == 1 and len(table) == 1
    item, cls, confidence = lines[0].split("\t")
    assert item == str(png) == table["item"][0] and cls == table["class"][0] and cls in CLASSES
    assert float(confidence) == pytest.approx(table["confidence"][0], abs=1e-3)
    assert table["true_class"].isna().all()
    assert [p.name for p in csv.parent.iterdir()] == ["pred.csv"]  # no temporary file left

    assert main(["predict", "trackbed", str(png.parent), "--model", str(model_dir)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(p) for p in sorted(png_folder)]
    assert all(line.count("\t") == 2 for line in lines)

    record = _write_raw(tmp_path / "r.tfrecord", [encode_example("r.png", _pixels((9, 9, 3), 7), 3)])
    assert main(["predict", "trackbed", str(record), "--model", str(model_dir), "--batch-size", "1"]) == 0
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert line.startswith(f"{record}#0:r.png\t") and line.endswith("\t(true STONE)")


def test_cli_predict_images_and_tfrecords(model_dir: Path, tmp_path: Path, capsys) -> None:
    png = tmp_path / "x.png"
    Image.fromarray(_pixels((8, 8, 3), 0)).save(png)
    record = _write_raw(tmp_path / "r.tfrecord", [encode_example("r.png", _pixels((9, 9, 3), 7), 3)])
    assert main(["predict", "trackbed", str(png), str(record), "--model", str(model_dir)]) == 0
    image_line, record_line = capsys.readouterr().out.strip().splitlines()
    assert record_line.endswith("\t(true STONE)")
    assert "(true" not in image_line


def test_cli_predict_errors(model_dir: Path, tmp_path: Path, capsys) -> None:
    missing = tmp_path / "missing.png"
    csv = tmp_path / "pred.csv"
    assert main(["predict", "trackbed", str(missing), "--model", str(model_dir), "--out", str(csv)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("overseer: error:") and str(missing) in captured.err
    assert not csv.exists()

    png = tmp_path / "x.png"
    Image.fromarray(_pixels((8, 8), 0)).save(png)
    assert main(["predict", "trackbed", str(png), "--model", str(tmp_path / "no_model")]) == 2
    assert str(tmp_path / "no_model") in capsys.readouterr().err
