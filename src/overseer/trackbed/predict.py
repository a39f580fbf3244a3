"""Classify images or TFRecord files with an exported trackbed model (ONNX Runtime, or Keras), or
with a logged MLflow model (``models:/NAME@champion``, ``runs:/…``, a folder holding ``MLmodel``)
through its pyfunc, exactly as a client of the registry or of ``mlflow models serve`` would."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from overseer.errors import InputError
from overseer.serving.pyfunc import is_model_uri, load_pyfunc
from overseer.trackbed.data.images import list_images, read_image
from overseer.trackbed.data.schema import CLASSES, IMAGE_SIZE, decode_fields, image_from_fields
from overseer.trackbed.data.tfrecord import is_tfrecord_source, iter_raw_records, list_tfrecords


def _checked_fields(raw: bytes) -> tuple[dict, str | None]:
    """Decoded fields and what is wrong with them for prediction (None when usable)."""
    try:
        fields = decode_fields(raw)
    except ValueError as exc:
        return {}, str(exc)
    missing = [key for key in ("image_filename", "image_raw", "height", "width", "depth") if fields[key] is None]
    if missing:
        return fields, f"missing field(s) {missing}"
    h, w, d = fields["height"], fields["width"], fields["depth"]
    if d not in (1, 3) or h <= 0 or w <= 0:
        return fields, f"expected height, width > 0 and depth 1 or 3, got {h}×{w}×{d}"
    if len(fields["image_raw"]) != h * w * d:
        return fields, f"image_raw holds {len(fields['image_raw'])} bytes, expected h*w*d = {h * w * d}"
    return fields, None


def _items(paths: Sequence[str | os.PathLike]) -> Iterator[tuple[str, np.ndarray, str | None]]:
    """(name, uint8 image, true class or None) of image files, image folders and TFRecord files."""
    for source in paths:
        path = Path(source)
        if is_tfrecord_source(path):
            for file in list_tfrecords(path):
                for index, raw in iter_raw_records(file):
                    fields, problem = _checked_fields(raw)
                    if problem:
                        raise InputError(f"not a valid trackbed record: {problem}", path=file, record=index)
                    label = fields["label"]
                    true = CLASSES[label] if label is not None and 0 <= label < len(CLASSES) else None
                    name = fields["image_filename"].decode(errors="replace")
                    yield f"{file}#{index}:{name}", image_from_fields(fields), true
        elif path.is_dir():
            files = list_images(path)
            if not files:
                raise InputError("no JPEG/PNG images or TFRecord files", path=path)
            for file in files:
                yield str(file), read_image(file), None
        elif path.is_file():
            yield str(path), read_image(path), None
        else:
            raise InputError("no such file or folder", path=path)


def _to_batch(images: list[np.ndarray]) -> np.ndarray:
    import tensorflow as tf

    from overseer.trackbed.pipeline import to_model_input

    arrays = [img[:, :, None] if img.ndim == 2 else img for img in images]
    return np.stack([to_model_input(tf.constant(a), IMAGE_SIZE).numpy() for a in arrays])


PRECISIONS = ("fp32", "int8")  # model.onnx | model.int8.onnx (export.cnn.quantize)


def load_predictor(model_dir: str | os.PathLike, precision: str = "fp32"):
    """A function images -> probabilities: ONNX Runtime (one session, reused) when ``model.onnx`` exists
    — or, with ``precision="int8"``, its int8 build ``model.int8.onnx`` — else Keras."""
    from overseer.trackbed.quantize import onnx_predictor

    folder = Path(model_dir)
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}", path=folder)
    if precision == "int8":
        if not (folder / "model.int8.onnx").exists():
            raise InputError("no model.int8.onnx (export with export.cnn.quantize: true)", path=folder)
        return onnx_predictor(folder / "model.int8.onnx")
    if (folder / "model.onnx").exists():
        return onnx_predictor(folder / "model.onnx")
    if (folder / "model.keras").exists():
        import keras

        model = keras.models.load_model(folder / "model.keras", compile=False)
        return lambda batch: np.asarray(model.predict(batch, verbose=0))
    raise InputError("no model.onnx or model.keras (run `dvc repro` to export one)", path=folder)


def is_mlflow_model(model: str | os.PathLike) -> bool:
    """True for an MLflow model URI or a local MLflow model folder (one holding ``MLmodel``)."""
    return is_model_uri(model) or (Path(model) / "MLmodel").is_file()


Classifier = Callable[[list[np.ndarray]], tuple[list[str], list[float]]]  # images -> (classes, confidences)


def _folder_classifier(folder: Path, precision: str) -> Classifier:
    """The export folder's predictor (one ONNX Runtime session for the whole call, or Keras)."""
    classes = json.loads((folder / "classes.json").read_text()) if (folder / "classes.json").exists() else CLASSES
    predictor = load_predictor(folder, precision)

    def classify(images: list[np.ndarray]) -> tuple[list[str], list[float]]:
        probs = predictor(_to_batch(images))
        return [classes[int(p.argmax())] for p in probs], [float(p.max()) for p in probs]

    return classify


def _pyfunc_classifier(model: str | os.PathLike, precision: str) -> Classifier:
    """An MLflow model loaded once; each batch goes through ``PyFuncModel.predict`` as a table of
    PNG-encoded images (lossless: the model decodes the very pixels read here)."""
    from overseer.serving.trackbed import IMAGE_COLUMN, encode_png

    if precision != "fp32":
        raise InputError(
            f"precision {precision!r} applies to an export folder; an MLflow model serves the ONNX file it was "
            "logged with (pass the export folder for model.int8.onnx)",
            path=model,
        )
    pyfunc = load_pyfunc(model)

    def classify(images: list[np.ndarray]) -> tuple[list[str], list[float]]:
        table = pyfunc.predict(pd.DataFrame({IMAGE_COLUMN: [encode_png(image) for image in images]}))
        return [str(name) for name in table["class"]], [float(c) for c in table["confidence"]]

    return classify


def predict(
    model_dir: str | os.PathLike, paths: Sequence[str | os.PathLike], batch_size: int = 32, precision: str = "fp32"
) -> pd.DataFrame:
    """One row per image: item, predicted class, confidence (and true class for TFRecords).

    ``model_dir``: an export folder (``model.onnx`` / ``model.keras``, ``classes.json``), or an MLflow
    model (:func:`is_mlflow_model`: ``models:/NAME@champion``, ``runs:/ID/model``, a folder with
    ``MLmodel``), loaded once and predicted through its pyfunc."""
    if is_mlflow_model(model_dir):
        classify = _pyfunc_classifier(model_dir, precision)
    else:
        classify = _folder_classifier(Path(model_dir), precision)
    rows: list[dict] = []
    batch: list[tuple[str, np.ndarray, str | None]] = []

    def flush() -> None:
        names, confidences = classify([image for _, image, _ in batch])
        for (item, _, true), name, confidence in zip(batch, names, confidences, strict=True):
            rows.append({"item": item, "class": name, "confidence": confidence, "true_class": true})
        batch.clear()

    for item in _items(paths):
        batch.append(item)
        if len(batch) == batch_size:
            flush()
    if batch:
        flush()
    table = pd.DataFrame(rows, columns=["item", "class", "confidence", "true_class"])
    table["true_class"] = table["true_class"].astype(object).where(table["true_class"].notna(), None)
    return table
