"""The trackbed TFRecord contract: one ``tf.train.Example`` per image.

Fields: ``image_filename`` (bytes), ``image_raw`` (raw uint8 bytes, height*width*depth of them,
row-major HWC), ``height``, ``width``, ``depth`` (int64, depth 1 or 3), ``label`` (int64, 0..4)
and ``class_name`` (bytes, the name of ``label`` in ``CLASSES``).

Encoding and decoding use the protobuf classes directly, so that a record is checked field by
field and a bad one can be named, without TensorFlow's graph-mode parser in between.
"""

from __future__ import annotations

from typing import Any

import numpy as np

CLASSES: tuple[str, ...] = ("ASPHALT", "BALLAST", "GRAS", "STONE", "ERROR")
IMAGE_SIZE = 224  # ResNet50V2 input side
BYTES_FIELDS = ("image_filename", "image_raw", "class_name")
INT_FIELDS = ("height", "width", "depth", "label")
FIELDS = BYTES_FIELDS + INT_FIELDS


def _example_cls() -> Any:
    # tf.train.Example without importing all of TensorFlow's Python API at module import
    from tensorflow.core.example.example_pb2 import Example

    return Example


def encode_example(filename: str, image: np.ndarray, label: int) -> bytes:
    """Serialise one image (H×W or H×W×C uint8, C in {1, 3}) as a ``tf.train.Example``."""
    if image.dtype != np.uint8:
        raise ValueError(f"{filename}: image must be uint8, got {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3):
        raise ValueError(f"{filename}: image must be H×W, H×W×1 or H×W×3, got shape {image.shape}")
    if not 0 <= label < len(CLASSES):
        raise ValueError(f"{filename}: label {label} outside 0..{len(CLASSES) - 1}")
    h, w, d = image.shape
    example = _example_cls()()
    feature = example.features.feature
    feature["image_filename"].bytes_list.value.append(filename.encode())
    feature["image_raw"].bytes_list.value.append(np.ascontiguousarray(image).tobytes())
    feature["class_name"].bytes_list.value.append(CLASSES[label].encode())
    for key, value in (("height", h), ("width", w), ("depth", d), ("label", label)):
        feature[key].int64_list.value.append(int(value))
    return example.SerializeToString(deterministic=True)  # map order fixed: same image, same bytes


def decode_fields(raw: bytes) -> dict[str, Any]:
    """Parse a serialised Example into a dict of its contract fields.

    A field that is absent, of the wrong kind or not single-valued maps to None; a record that is
    not an Example at all raises ``ValueError``. Nothing is checked beyond that: validation does.
    """
    from google.protobuf.message import DecodeError

    example = _example_cls()()
    try:
        example.ParseFromString(raw)
    except DecodeError as exc:
        raise ValueError(f"not a tf.train.Example ({exc})") from exc
    feature = example.features.feature
    out: dict[str, Any] = {}
    for key in BYTES_FIELDS:
        values = feature[key].bytes_list.value if key in feature else []
        out[key] = bytes(values[0]) if len(values) == 1 else None
    for key in INT_FIELDS:
        values = feature[key].int64_list.value if key in feature else []
        out[key] = int(values[0]) if len(values) == 1 else None
    return out


def image_from_fields(fields: dict[str, Any]) -> np.ndarray:
    """The H×W×D uint8 image of decoded fields (the caller has validated sizes)."""
    h, w, d = fields["height"], fields["width"], fields["depth"]
    return np.frombuffer(fields["image_raw"], dtype=np.uint8).reshape(h, w, d)
