"""The trackbed MLflow model: encoded images in, the ONNX export's classes and probabilities out.

A tiny stand-in with the real model's I/O contract (float32 N×224×224×3 in [0, 255] -> softmax over
the five classes, a few dozen weights) is exported to ONNX, logged with ``log_trackbed_model`` into
this module's own sqlite MLflow store (never the repository's), and loaded back from the registry.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from overseer.errors import InputError
from overseer.serving import trackbed as serving
from overseer.trackbed.data.schema import CLASSES, IMAGE_SIZE, encode_example
from overseer.trackbed.data.tfrecord import write_records

NAME = "trackbed-test"
URI = f"models:/{NAME}/1"


def _pixels(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Random pixels around a per-seed colour, so that different images get different predictions."""
    rng = np.random.default_rng(seed)
    centre = rng.integers(30, 226, shape[2] if len(shape) == 3 else 1)
    noise = rng.integers(-30, 31, shape)
    return np.clip((centre if len(shape) == 3 else centre[0]) + noise, 0, 255).astype(np.uint8)


def _encoded(image: np.ndarray, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An export folder with what serving reads: ``model.onnx``, ``classes.json``, ``config.json``."""
    import keras

    from overseer.trackbed.export import export_onnx

    keras.utils.set_random_seed(5)
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3), dtype="float32")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(len(CLASSES), activation="softmax")(keras.layers.Dense(8, activation="tanh")(x))
    model = keras.Model(inputs, outputs)
    model.predict(np.zeros((1, IMAGE_SIZE, IMAGE_SIZE, 3), np.float32), verbose=0)
    folder = tmp_path_factory.mktemp("export")
    export_onnx(model, folder / "model.onnx")
    (folder / "classes.json").write_text(json.dumps(list(CLASSES)))
    (folder / "config.json").write_text(json.dumps({"note": "tiny"}))
    return folder


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    """Decoded images of several sizes and kinds: RGB larger and smaller than 224², greyscale."""
    return [_pixels((300, 200, 3), 1), _pixels((96, 128, 3), 2), _pixels((240, 180), 3), _pixels((224, 224, 3), 4)]


@pytest.fixture(scope="module")
def logged(export_dir: Path, images: list[np.ndarray], tmp_path_factory: pytest.TempPathFactory):
    """``log_trackbed_model`` into this module's sqlite store; yields the ``ModelInfo``."""
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    root = tmp_path_factory.mktemp("mlflow")
    mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
    try:
        experiment = mlflow.create_experiment("serving", artifact_location=(root / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment):
            info = serving.log_trackbed_model(export_dir, NAME, [serving.encode_png(images[0]), _encoded(images[1])])
        yield info
    finally:
        mlflow.set_tracking_uri(previous)  # None: unset again


@pytest.fixture(scope="module")
def loaded(logged):
    return mlflow.pyfunc.load_model(URI)


def _onnx_reference(export_dir: Path, decoded: list[np.ndarray]) -> np.ndarray:
    """The export's own path: TensorFlow preprocessing (``_to_batch``) and a plain ONNX Runtime session."""
    from overseer.trackbed.export import onnx_predict
    from overseer.trackbed.predict import _to_batch

    return onnx_predict(export_dir / "model.onnx", _to_batch(decoded))


@pytest.mark.parametrize("shape", [(300, 200, 3), (96, 128, 3), (224, 224, 3), (7, 500, 1), (1, 1, 3)])
def test_numpy_preprocessing_matches_tensorflow_resize(shape: tuple[int, ...]) -> None:
    import tensorflow as tf

    image = _pixels(shape, 7)
    expected = tf.image.resize(tf.constant(np.repeat(image, 3 // shape[2], axis=2)), [IMAGE_SIZE] * 2).numpy()
    got = serving.to_model_input(image)
    assert got.dtype == np.float32 and got.shape == (IMAGE_SIZE, IMAGE_SIZE, 3)
    np.testing.assert_allclose(got, expected, atol=2e-3)


def test_registered_model_predicts_the_onnx_export(loaded, export_dir: Path, images: list[np.ndarray]) -> None:
    table = loaded.predict(
        pd.DataFrame({"image": [_encoded(images[0]), _encoded(images[1], "JPEG"), *map(_encoded, images[2:])]})
    )
    assert list(table.columns) == ["class", "confidence", *(f"p_{c}" for c in CLASSES)]
    # JPEG is lossy: the reference sees what the model decoded
    decoded = [images[0], np.asarray(Image.open(io.BytesIO(_encoded(images[1], "JPEG")))), *images[2:]]
    reference = _onnx_reference(export_dir, decoded)
    np.testing.assert_allclose(table[[f"p_{c}" for c in CLASSES]].to_numpy(), reference, atol=1e-5)
    assert table["class"].tolist() == [CLASSES[i] for i in reference.argmax(1)]
    np.testing.assert_allclose(table["confidence"], reference.max(1), atol=1e-5)
    assert len(set(table["class"])) > 1  # the images are told apart


def test_signature_input_example_and_requirements(logged) -> None:
    from mlflow.models import Model

    model = Model.load(URI)
    assert model.signature.inputs.to_dict() == [{"type": "binary", "name": "image", "required": True}]
    assert model.signature.outputs.input_names() == ["class", "confidence", *(f"p_{c}" for c in CLASSES)]
    example = model.load_input_example(mlflow.artifacts.download_artifacts(URI))
    assert list(example.columns) == ["image"] and len(example) == 2
    assert all(serving.decode_image(data).ndim in (2, 3) for data in example["image"])
    requirements = Path(mlflow.pyfunc.get_model_dependencies(URI)).read_text().split()
    names = {line.split("==")[0].lower() for line in requirements}
    assert {"mlflow", "onnxruntime", "numpy", "pandas", "pillow"} <= names
    assert not names & {"tensorflow", "keras", "tf2onnx", "onnx"}


def test_bad_bytes_name_the_row(loaded, images: list[np.ndarray]) -> None:
    frame = pd.DataFrame({"image": [_encoded(images[0]), b"\x89PNG but not really", b""]})
    with pytest.raises(InputError, match=r"row 1 of column 'image': not a readable JPEG or PNG image"):
        loaded.predict(frame)
    with pytest.raises(InputError, match=r"row 0 of column 'image': empty image"):
        loaded.predict(frame.iloc[2:])


def test_a_batch_array_goes_to_the_model_object(loaded, images: list[np.ndarray]) -> None:
    from mlflow.exceptions import MlflowException

    batch = np.stack([images[0][:96, :128], images[1]])  # N×96×128×3
    model = loaded.unwrap_python_model()
    via_bytes = loaded.predict(pd.DataFrame({"image": [serving.encode_png(image) for image in batch]}))
    for array in (batch, batch.astype(np.float32)):
        pd.testing.assert_frame_equal(model.predict_batch(array), via_bytes)
        pd.testing.assert_frame_equal(model.predict(None, array), via_bytes)
    with pytest.raises((MlflowException, ValueError)):  # the column signature takes no 4-d array
        loaded.predict(batch)
    with pytest.raises(InputError, match=r"\[0, 255\]"):
        model.predict_batch(batch.astype(np.float32) / 127.5 - 1.0)


def test_overseer_predict_through_the_registry_matches_the_folder(
    logged, export_dir: Path, images: list[np.ndarray], tmp_path: Path
) -> None:
    from overseer.trackbed.predict import predict

    files = []
    for i, image in enumerate(images):
        files.append(tmp_path / f"img_{i}.png")
        files[-1].write_bytes(_encoded(image))
    records = write_records(tmp_path / "two.tfrecord", [encode_example(f"r{i}.png", images[i], i) for i in (0, 3)])
    by_folder = predict(export_dir, [*files, records], batch_size=3)
    by_registry = predict(URI, [*files, records], batch_size=3)
    pd.testing.assert_frame_equal(by_registry.drop(columns="confidence"), by_folder.drop(columns="confidence"))
    np.testing.assert_allclose(by_registry["confidence"], by_folder["confidence"], atol=1e-5)
    assert by_registry["true_class"].tolist()[-2:] == [CLASSES[0], CLASSES[3]]
    with pytest.raises(InputError, match="int8"):
        predict(URI, files, precision="int8")


def test_a_served_copy_imports_no_tensorflow(logged, images: list[np.ndarray], tmp_path: Path) -> None:
    script = textwrap.dedent(f"""
        import json, sys, mlflow, pandas as pd
        model = mlflow.pyfunc.load_model({URI!r})
        table = model.predict(pd.DataFrame({{"image": [open({os.fspath(tmp_path / "a.png")!r}, "rb").read()]}}))
        heavy = sorted({{m.split(".")[0] for m in sys.modules}} & {{"tensorflow", "keras", "tf2onnx", "torch"}})
        print(json.dumps([table["class"][0], heavy]))
    """)
    (tmp_path / "a.png").write_bytes(_encoded(images[0]))
    env = {**os.environ, "MLFLOW_TRACKING_URI": mlflow.get_tracking_uri()}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    name, heavy = json.loads(result.stdout.strip().splitlines()[-1])
    assert name in CLASSES and heavy == []


def test_log_refuses_a_folder_without_onnx_and_broken_examples(export_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"no model\.onnx"):
        serving.log_trackbed_model(tmp_path, NAME)
    with pytest.raises(InputError, match=r"example_images\[1\]"):
        serving.log_trackbed_model(export_dir, NAME, [serving.encode_png(_pixels((8, 8, 3), 0)), b"junk"])


def test_base64_text_is_decoded_too(loaded, images: list[np.ndarray]) -> None:
    import base64

    data = _encoded(images[0])
    expected = loaded.predict(pd.DataFrame({"image": [data]}))
    for text in (base64.b64encode(data).decode(), base64.encodebytes(data), base64.b64encode(data)):
        pd.testing.assert_frame_equal(loaded.predict(pd.DataFrame({"image": [text]})), expected)
    pd.testing.assert_frame_equal(loaded.predict({"image": [data]}), expected)
    with pytest.raises(InputError, match=r"row 0 of column 'image': text that is not base64"):
        loaded.predict(pd.DataFrame({"image": ["iVBORw0KGgo!!"]}))
