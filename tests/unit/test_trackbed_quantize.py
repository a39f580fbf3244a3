"""The int8 build of the exported trackbed model: written, deterministic, checked against fp32.

A tiny stand-in (16×16 images, two convolutions, a Dense softmax head) keeps the ONNX export and
the static quantization to seconds; the images differ in colour so that the classes do not hang
on rounding.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from overseer.trackbed import quantize
from overseer.trackbed.data.schema import CLASSES, encode_example
from overseer.trackbed.data.tfrecord import write_records

SIZE = 16
DISAGREES = "int8 model disagrees with the fp32 ONNX model"


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 255, (32, 1, 1, 3))
    return np.clip(base + rng.normal(0, 20, (32, SIZE, SIZE, 3)), 0, 255).astype(np.float32)


@pytest.fixture(scope="module")
def fp32_path(tmp_path_factory: pytest.TempPathFactory, images: np.ndarray) -> Path:
    import keras

    from overseer.trackbed.export import export_onnx

    keras.utils.set_random_seed(5)
    inputs = keras.Input((SIZE, SIZE, 3), dtype="float32", name="image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(len(CLASSES), activation="softmax")(x)
    model = keras.Model(inputs, outputs)
    model.predict(images[:1], verbose=0)  # ONNX export needs a model that has been called
    return export_onnx(model, tmp_path_factory.mktemp("fp32") / "model.onnx")


@pytest.fixture(scope="module")
def int8_path(fp32_path: Path, images: np.ndarray) -> Path:
    return quantize.quantize_onnx(fp32_path, fp32_path.with_name("model.int8.onnx"), images[:16])


def test_the_int8_file_quantizes_the_convolutions_and_keeps_the_head_fp32(fp32_path: Path, int8_path: Path) -> None:
    import onnx

    fp32, int8 = onnx.load(fp32_path), onnx.load(int8_path)
    onnx.checker.check_model(int8)
    assert [v.name for v in int8.graph.input] == [v.name for v in fp32.graph.input]
    assert [v.name for v in int8.graph.output] == [v.name for v in fp32.graph.output]
    ops = [n.op_type for n in int8.graph.node]
    assert ops.count("QuantizeLinear") >= 2 and ops.count("DequantizeLinear") >= 4
    int8_weights = [t for t in int8.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    assert len(int8_weights) == 2  # both convolutions' weights, per output channel
    # the head stays float: Dense and softmax read float values, the probabilities are not quantized
    producer = {out: n.op_type for n in int8.graph.node for out in n.output}
    head = [n for n in int8.graph.node if n.op_type in ("MatMul", "Gemm", "Softmax")]
    assert head and all(producer.get(name) != "DequantizeLinear" for n in head for name in n.input)
    assert producer[int8.graph.output[0].name] == "Softmax"


def test_the_same_model_and_images_give_the_same_bytes(fp32_path: Path, int8_path: Path, images: np.ndarray) -> None:
    again = quantize.quantize_onnx(fp32_path, fp32_path.with_name("again.int8.onnx"), images[:16])
    assert again.read_bytes() == int8_path.read_bytes()
    batches = quantize.quantize_onnx(fp32_path, fp32_path.with_name("batches.onnx"), [images[:8], images[8:16]])
    assert batches.read_bytes() == int8_path.read_bytes()  # batches of the same images: same ranges


def test_check_passes_on_a_faithful_build(fp32_path: Path, int8_path: Path, images: np.ndarray) -> None:
    quantize.clear_sessions()
    check = quantize.check_quantized(fp32_path, int8_path, images)
    assert not quantize._SESSIONS  # a one-off check caches no session
    assert check["images"] == len(images)
    assert check["argmax_agreement"] >= quantize.MIN_AGREEMENT
    assert 0.0 <= check["max_abs_prob_diff"] < 0.2
    assert check["fp32_bytes"] == fp32_path.stat().st_size and check["int8_bytes"] == int8_path.stat().st_size


def test_check_raises_when_the_agreement_required_cannot_be_met(
    fp32_path: Path, int8_path: Path, images: np.ndarray
) -> None:
    with pytest.raises(RuntimeError, match=DISAGREES):
        quantize.check_quantized(fp32_path, int8_path, images, min_agreement=1.01)


def test_check_raises_on_a_tampered_build(fp32_path: Path, int8_path: Path, images: np.ndarray, tmp_path: Path) -> None:
    import onnx
    from onnx import numpy_helper

    model = onnx.load(int8_path)
    gemm = next(n for n in model.graph.node if n.op_type in ("Gemm", "MatMul"))
    weights = next(t for t in model.graph.initializer if t.name == gemm.input[1])
    weights.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(weights), weights.name))  # logits reversed
    tampered = tmp_path / "tampered.onnx"
    tampered.write_bytes(model.SerializeToString())
    with pytest.raises(RuntimeError, match=DISAGREES) as err:
        quantize.check_quantized(fp32_path, tampered, images)
    assert "'argmax_agreement': 1.0" not in str(err.value)


def test_the_calibration_reader_yields_batches_of_model_inputs() -> None:
    from onnxruntime.quantization import CalibrationDataReader

    x = np.zeros((10, SIZE, SIZE, 3), np.float64)
    reader = quantize.calibration_reader(x, "image", batch_size=4)
    assert isinstance(reader, CalibrationDataReader) and len(reader) == 3
    for _ in range(2):  # rewind starts again
        batches = list(iter(reader.get_next, None))
        assert [b["image"].shape for b in batches] == [(4, SIZE, SIZE, 3), (4, SIZE, SIZE, 3), (2, SIZE, SIZE, 3)]
        assert all(b["image"].dtype == np.float32 for b in batches)
        reader.rewind()


def test_calibration_images_are_a_seeded_sample_of_the_training_records(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    shapes = [(20, 24, 3), (18, 18, 1), (30, 10, 3)]
    records = [
        encode_example(f"t{i}.png", rng.integers(0, 256, shapes[i % 3], dtype=np.uint8), i % len(CLASSES))
        for i in range(12)
    ]
    files = [write_records(tmp_path / "a.tfrecord", records[:7]), write_records(tmp_path / "b.tfrecord", records[7:])]
    picked = quantize.calibration_images(files, 5, seed=3, image_size=SIZE)
    assert picked.shape == (5, SIZE, SIZE, 3) and picked.dtype == np.float32
    assert 0.0 <= picked.min() and picked.max() <= 255.0
    np.testing.assert_array_equal(picked, quantize.calibration_images(files, 5, seed=3, image_size=SIZE))
    everything = quantize.calibration_images(files, 100, seed=3, image_size=SIZE)
    assert everything.shape == (12, SIZE, SIZE, 3)  # fewer records than asked for: all of them, in file order
    expected = np.sort(np.random.default_rng(3).choice(12, 5, replace=False))
    np.testing.assert_array_equal(picked, everything[expected])


def test_sessions_are_built_once_per_file_and_agree_with_a_fresh_one(
    fp32_path: Path, images: np.ndarray, tmp_path: Path
) -> None:
    from overseer.trackbed.export import onnx_predict

    quantize.clear_sessions()
    assert quantize.cached_session(fp32_path, threads=1) is quantize.cached_session(fp32_path, threads=1)
    predictor = quantize.onnx_predictor(fp32_path, threads=1)
    np.testing.assert_allclose(predictor(images), onnx_predict(fp32_path, images), atol=1e-6)
    assert predictor(images[:0]).shape == (0, len(CLASSES))
    copy = shutil.copy(fp32_path, tmp_path / "copy.onnx")
    first = quantize.cached_session(copy, threads=1)
    os.utime(copy, ns=(0, 0))  # the file changed on disk (its mtime): a new session
    assert quantize.cached_session(copy, threads=1) is not first
