"""The trackbed classifier as an MLflow model: encoded images in, class and probabilities out.

What a client sends (the model's signature): a table with one column ``image`` of MLflow type
``binary``, one encoded JPEG or PNG image per row. In process that is a ``pandas.DataFrame`` (or
a dict ``{"image": [...]}``) of ``bytes``; over REST (``mlflow models serve``) the column travels
base64-encoded and MLflow's scoring server decodes it before the model sees it::

    {"dataframe_split": {"columns": ["image"], "data": [["iVBORw0KGgo..."]]}}
    {"dataframe_records": [{"image": "iVBORw0KGgo..."}]}

Base64 text that reaches the model undecoded (a ``str`` cell, or the ``{"inputs": {"image":
[...]}}`` REST form, which MLflow does not decode) is decoded here: a cell that is ``str``, or
bytes beginning like base64 of a PNG or JPEG signature, which raw image bytes never do.

What comes back: one row per image, ``class`` (the class name), ``confidence`` (its probability)
and ``p_<CLASS>`` for every class in ``classes.json`` order (ASPHALT, BALLAST, GRAS, STONE, ERROR).

A batch of decoded images (uint8 or float N×H×W×3 in [0, 255], N×H×W greyscale) cannot go through
``PyFuncModel.predict``: the signature is column-based, and MLflow turns an array input into a
DataFrame before the model is called (a 4-d array fails there; a column signature cannot describe
it, and ``params`` only take scalars and 1-d lists). Call the model object itself instead::

    loaded = mlflow.pyfunc.load_model("models:/trackbed-resnet50v2@champion")
    table = loaded.unwrap_python_model().predict_batch(images)  # or .predict(None, images)

which skips MLflow's schema check and nothing else (same session, preprocessing and output).

Preprocessing is :func:`to_model_input` in NumPy: greyscale to RGB, bilinear resize to the ONNX
input's side with half-pixel centres (what ``tf.image.resize`` does, so the same as
``overseer.trackbed.pipeline.to_model_input``), float32 in [0, 255]. Bytes are decoded like
image files (:mod:`overseer.trackbed.data.images`: EXIF orientation, alpha dropped, longer side
at most 1024 px). Loading and predicting import ONNX Runtime, NumPy, pandas and Pillow, never
TensorFlow; :func:`pip_requirements` pins exactly those.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import warnings
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

from overseer.errors import InputError
from overseer.trackbed.data.schema import CLASSES, IMAGE_SIZE

IMAGE_COLUMN = "image"
BATCH_SIZE = 32  # images per ONNX Runtime call (rows are decoded one batch at a time)
EXAMPLE_IMAGES = 2  # rows of the logged input example
BASE64_SIGNATURES = (b"iVBORw0KGgo", b"/9j/")  # how base64 text of a PNG / a JPEG begins
#: distributions the served model imports (``mlflow`` itself is added by MLflow)
REQUIREMENTS = ("onnxruntime", "numpy", "pandas", "pillow", "cloudpickle")


class ImageInputError(InputError, MlflowException):
    """A row that is not a readable image, named by its index: an :class:`InputError` for our CLI,
    and an ``INVALID_PARAMETER_VALUE`` ``MlflowException`` so that ``mlflow models serve`` answers
    400 with this message rather than its generic "unexpected error"."""

    def __init__(self, message: str, *, row: int | None = None) -> None:
        text = message if row is None else f"row {row} of column {IMAGE_COLUMN!r}: {message}"
        InputError.__init__(self, text)
        MlflowException.__init__(self, text, error_code=INVALID_PARAMETER_VALUE)
        self.record = row


# ---------------------------------------------------------------------------- preprocessing


def _axis_weights(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lower index, upper index, weight of upper) per output position, half-pixel centres,
    in float32 like TensorFlow's ``ResizeBilinear``."""
    scale = np.float32(n_in) / np.float32(n_out)
    position = (np.arange(n_out, dtype=np.float32) + np.float32(0.5)) * scale - np.float32(0.5)
    floor = np.floor(position)
    lower = np.maximum(floor, 0).astype(np.intp)
    upper = np.minimum(np.ceil(position), n_in - 1).astype(np.intp)
    return lower, upper, (position - floor).astype(np.float32)


def resize_bilinear(image: np.ndarray, size: int) -> np.ndarray:
    """H×W×C image -> float32 ``size``×``size``×C, as ``tf.image.resize(image, [size, size])``
    (bilinear, half-pixel centres, no antialiasing)."""
    pixels = np.asarray(image, dtype=np.float32)
    y0, y1, wy = _axis_weights(pixels.shape[0], size)
    x0, x1, wx = _axis_weights(pixels.shape[1], size)
    wx = wx[None, :, None]
    rows0, rows1 = pixels[y0], pixels[y1]
    top = rows0[:, x0] + (rows0[:, x1] - rows0[:, x0]) * wx
    bottom = rows1[:, x0] + (rows1[:, x1] - rows1[:, x0]) * wx
    return top + (bottom - top) * wy[:, None, None]


def to_model_input(image: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """One H×W, H×W×1 or H×W×3 image (uint8, or float in [0, 255]) -> float32 ``size``²×3 RGB."""
    pixels = np.asarray(image)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 3) or 0 in pixels.shape:
        raise InputError(f"expected an H×W, H×W×1 or H×W×3 image, got shape {pixels.shape}")
    if pixels.shape[2] == 1:
        pixels = np.repeat(pixels, 3, axis=2)
    return resize_bilinear(pixels, size)


def images_to_batch(images: np.ndarray | Sequence[np.ndarray], size: int = IMAGE_SIZE) -> np.ndarray:
    """Float32 N×``size``²×3 model input of N images (an N×H×W[×C] array or a list of images of
    any sizes), checked to be in [0, 255]."""
    batch = [to_model_input(image, size) for image in images]
    if not batch:
        return np.zeros((0, size, size, 3), np.float32)
    out = np.stack(batch)
    if not np.isfinite(out).all() or out.min() < 0 or out.max() > 255:
        raise InputError(
            f"image values must be in [0, 255] (uint8, or float pixel values), got [{out.min()}, {out.max()}]"
        )
    return out


def _raw_bytes(data: Any, row: int | None) -> bytes:
    """The encoded image of one cell: bytes as they are; base64 text (``str``, or bytes that open
    with the base64 form of the PNG/JPEG signature) decoded, for clients that send the REST form
    in process or through ``{"inputs": ...}``, which MLflow does not base64-decode."""
    if isinstance(data, bytearray | memoryview):
        data = bytes(data)
    if isinstance(data, str):
        data = data.encode("ascii", errors="replace")
    elif not isinstance(data, bytes):
        raise ImageInputError(f"expected encoded image bytes, got {type(data).__name__}", row=row)
    elif not data.lstrip().startswith(BASE64_SIGNATURES):
        return data
    try:
        return base64.b64decode(data)
    except ValueError as exc:  # binascii.Error
        raise ImageInputError(f"text that is not base64 of a JPEG or PNG image ({exc})", row=row) from None


def decode_image(data: bytes | str, row: int | None = None) -> np.ndarray:
    """Encoded JPEG/PNG bytes (or their base64 text) -> uint8 H×W or H×W×3, decoded like an image
    file (:func:`overseer.trackbed.data.images.read_image`); :class:`ImageInputError` naming ``row``
    when they are not a readable image."""
    from PIL import Image

    from overseer.trackbed.data import images

    raw = _raw_bytes(data, row)
    if not raw:
        raise ImageInputError("empty image (0 bytes); expected a JPEG or PNG image", row=row)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # MAX_PIXELS decides
        try:
            array = images.decode_image(io.BytesIO(raw), images.MAX_SIDE)
        except Image.DecompressionBombError as exc:
            raise ImageInputError(f"image too large ({exc})", row=row) from None
        except InputError as exc:
            raise ImageInputError(str(exc), row=row) from None
        except images.DECODE_ERRORS as exc:
            reason = re.sub(r" ?<_io\.BytesIO object at 0x[0-9a-fA-F]+>", "", str(exc))
            raise ImageInputError(f"not a readable JPEG or PNG image ({reason})", row=row) from None
    if array.size == 0:
        raise ImageInputError("image has no pixels", row=row)
    return array


def encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of one H×W, H×W×1 or H×W×3 image: uint8 as is, float (in [0, 255]) rounded."""
    from PIL import Image

    pixels = np.asarray(image)
    if pixels.dtype != np.uint8:
        pixels = np.clip(np.rint(pixels.astype(np.float64)), 0, 255).astype(np.uint8)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


# ---------------------------------------------------------------------------- the model


class TrackbedModel(mlflow.pyfunc.PythonModel):
    """The exported ONNX classifier behind ``mlflow.pyfunc``: one ONNX Runtime session, opened by
    :meth:`load_context` (or :meth:`load`) on the ``model`` artifact, class names from ``classes``."""

    def __init__(self) -> None:
        self.classes: list[str] = list(CLASSES)
        self._session: Any = None
        self._input_name = ""
        self._size = IMAGE_SIZE

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_session": None}  # a session is opened where the model is loaded

    def load_context(self, context: Any) -> None:
        """Open the session on ``context.artifacts["model"]``; read ``context.artifacts["classes"]``."""
        self.load(context.artifacts["model"], context.artifacts.get("classes"))

    def load(self, onnx_path: str | os.PathLike, classes_path: str | os.PathLike | None = None) -> TrackbedModel:
        """Open the ONNX Runtime session (CPU) and read the class names; returns ``self``."""
        import onnxruntime as ort

        from overseer.trackbed.quantize import session_options

        if classes_path is not None:
            self.classes = [str(name) for name in json.loads(Path(classes_path).read_text())]
        self._session = ort.InferenceSession(
            os.fspath(onnx_path), session_options(), providers=["CPUExecutionProvider"]
        )
        model_input = self._session.get_inputs()[0]
        self._input_name = model_input.name
        side = model_input.shape[1] if len(model_input.shape) == 4 else None
        self._size = side if isinstance(side, int) and side > 0 else IMAGE_SIZE
        return self

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Classify the encoded images (bytes, or base64 text) in ``model_input["image"]``: a
        DataFrame or a dict of lists, as ``PyFuncModel.predict`` passes them on. Called on the
        model object itself (``loaded.unwrap_python_model()``), a plain list of bytes works too,
        and an image array goes to :meth:`predict_batch`. ``params`` are not used."""
        if isinstance(model_input, np.ndarray) and model_input.dtype != object:
            return self.predict_batch(model_input)
        column = self._image_column(model_input)
        frames = [
            self._table(self._probabilities(self._decoded(column[start : start + BATCH_SIZE], start)))
            for start in range(0, len(column), BATCH_SIZE)
        ]
        return pd.concat(frames, ignore_index=True) if frames else self._table(np.zeros((0, len(self.classes))))

    def predict_batch(self, images: np.ndarray | Sequence[np.ndarray]) -> pd.DataFrame:
        """Classify decoded images: uint8 or float (in [0, 255]) N×H×W×3, N×H×W×1 or N×H×W
        (any H×W: resized like the encoded ones), or a list of such images."""
        probabilities = [
            self._probabilities(images_to_batch(images[start : start + BATCH_SIZE], self._size))
            for start in range(0, len(images), BATCH_SIZE)
        ]
        return self._table(np.concatenate(probabilities) if probabilities else np.zeros((0, len(self.classes))))

    # ------------------------------------------------------------------------ helpers

    @staticmethod
    def _image_column(model_input: Any) -> list[Any]:
        if isinstance(model_input, pd.DataFrame):
            if IMAGE_COLUMN not in model_input.columns:
                raise ImageInputError(f"expected a column {IMAGE_COLUMN!r}, got columns {list(model_input.columns)}")
            return model_input[IMAGE_COLUMN].tolist()
        if isinstance(model_input, dict) and IMAGE_COLUMN in model_input:
            return list(model_input[IMAGE_COLUMN])
        return list(model_input)

    def _decoded(self, rows: list[Any], start: int) -> np.ndarray:
        return images_to_batch([decode_image(data, start + i) for i, data in enumerate(rows)], self._size)

    def _probabilities(self, batch: np.ndarray) -> np.ndarray:
        if self._session is None:
            raise RuntimeError("TrackbedModel: no ONNX session (load it with mlflow.pyfunc.load_model or .load())")
        return np.asarray(self._session.run(None, {self._input_name: batch})[0], dtype=np.float64)

    def _table(self, probabilities: np.ndarray) -> pd.DataFrame:
        best = probabilities.argmax(axis=1) if len(probabilities) else np.zeros(0, np.intp)
        table = pd.DataFrame(
            {
                "class": pd.Series([self.classes[int(i)] for i in best], dtype=object),
                "confidence": probabilities.max(axis=1) if len(probabilities) else np.zeros(0),
            }
        )
        for k, name in enumerate(self.classes):
            table[f"p_{name}"] = probabilities[:, k]
        return table


# ---------------------------------------------------------------------------- logging


def output_columns(classes: Sequence[str] = CLASSES) -> list[str]:
    """``class``, ``confidence``, then ``p_<CLASS>`` per class: the columns :meth:`TrackbedModel.predict` returns."""
    return ["class", "confidence", *(f"p_{name}" for name in classes)]


def signature(classes: Sequence[str] = CLASSES) -> Any:
    """``image`` (binary) in; ``class`` (string), ``confidence`` and ``p_<CLASS>`` (double) out."""
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema

    outputs = [ColSpec(DataType.string, "class")] + [ColSpec(DataType.double, c) for c in output_columns(classes)[1:]]
    return ModelSignature(inputs=Schema([ColSpec(DataType.binary, IMAGE_COLUMN)]), outputs=Schema(outputs))


def pip_requirements() -> list[str]:
    """Exact versions of what loading and predicting import: ONNX Runtime, NumPy, pandas, Pillow
    (and cloudpickle, which unpickles the model object). No TensorFlow."""
    return [f"{name}=={metadata.version(name)}" for name in REQUIREMENTS]


def default_example_images(n: int = EXAMPLE_IMAGES) -> list[bytes]:
    """``n`` images of the embedded default evaluation set (:mod:`overseer.trackbed.data.synthetic`)
    as PNG bytes: an input example when the caller has no held-out images at hand."""
    from itertools import islice

    from overseer.trackbed.data.synthetic import generate

    return [encode_png(item.image) for item in islice(generate("eval", 1, seed=0), n)]


def log_trackbed_model(
    export_dir: str | os.PathLike, registered_name: str, example_images: list[bytes] | None = None
) -> Any:
    """Log the export folder's ``model.onnx`` (with ``classes.json`` and ``config.json``) as a
    :class:`TrackbedModel` under the active MLflow run and register it as a new version of
    ``registered_name``; returns MLflow's ``ModelInfo``.

    ``example_images``: encoded JPEG/PNG images (:func:`encode_png` of held-out arrays); the first
    two become the input example (default: :func:`default_example_images`). The signature is
    :func:`signature` of the folder's classes; pip requirements :func:`pip_requirements`."""
    from overseer.serving.pyfunc import log_pyfunc

    folder = Path(export_dir)
    onnx_path, classes_path = folder / "model.onnx", folder / "classes.json"
    for path in (onnx_path, classes_path):
        if not path.is_file():
            raise InputError(f"no {path.name} in the export folder (run export@cnn)", path=folder)
    classes = json.loads(classes_path.read_text())
    examples = list(example_images)[:EXAMPLE_IMAGES] if example_images else default_example_images()
    for index, data in enumerate(examples):
        try:
            decode_image(data)
        except InputError as exc:  # a broken example fails here, not deep inside MLflow
            raise InputError(f"example_images[{index}]: {exc}") from None
    artifacts = {"model": onnx_path, "classes": classes_path}
    if (folder / "config.json").is_file():
        artifacts["config"] = folder / "config.json"
    return log_pyfunc(
        TrackbedModel,
        registered_name,
        artifacts=artifacts,
        signature=signature(classes),
        input_example=pd.DataFrame({IMAGE_COLUMN: examples}),
        pip_requirements=pip_requirements(),
    )
