"""export@cnn: the ``.keras`` model, a TensorFlow SavedModel, and an ONNX file checked to agree."""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path
from typing import Any

import keras
import numpy as np

from overseer.io import atomic_dir
from overseer.trackbed.data.schema import CLASSES


def onnx_predict(onnx_path: str | os.PathLike, images: np.ndarray) -> np.ndarray:
    """Class probabilities of float32 N×224×224×3 images in [0, 255] under ONNX Runtime (CPU)."""
    import onnxruntime as ort

    session = ort.InferenceSession(os.fspath(onnx_path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images.astype(np.float32)})[0]


def check_onnx(model: keras.Model, onnx_path: Path, images: np.ndarray, atol: float = 1e-4) -> dict[str, Any]:
    """Compare Keras and ONNX Runtime probabilities on the same images; raise if they disagree."""
    keras_probs = np.asarray(model.predict(images, verbose=0))
    onnx_probs = onnx_predict(onnx_path, images)
    max_abs = float(np.abs(keras_probs - onnx_probs).max())
    same_class = float((keras_probs.argmax(1) == onnx_probs.argmax(1)).mean())
    check = {"images": len(images), "max_abs_prob_diff": max_abs, "argmax_agreement": same_class, "atol": atol}
    if max_abs > atol or same_class < 1.0:
        raise RuntimeError(f"ONNX export disagrees with the Keras model: {check}")
    return check


def export_trackbed(
    model_path: str | os.PathLike, out_dir: str | os.PathLike, check_images: np.ndarray, config: dict[str, Any]
) -> dict[str, Any]:
    """Write ``model.keras``, ``saved_model/``, ``model.onnx``, ``classes.json`` and ``config.json``
    into ``out_dir`` (all or nothing) and return the ONNX agreement check."""
    model = keras.models.load_model(Path(model_path), compile=False)
    model.predict(check_images[:1], verbose=0)  # ONNX export needs a model that has been called
    with atomic_dir(out_dir) as tmp:
        model.save(tmp / "model.keras")
        # the converters print pages of graph details; keep the stage log readable
        with contextlib.redirect_stdout(io.StringIO()):
            model.export(os.fspath(tmp / "saved_model"), format="tf_saved_model", verbose=False)
            model.export(os.fspath(tmp / "model.onnx"), format="onnx", verbose=False)
        check = check_onnx(model, tmp / "model.onnx", check_images)
        (tmp / "classes.json").write_text(json.dumps(list(CLASSES), indent=2) + "\n")
        (tmp / "config.json").write_text(json.dumps({**config, "onnx_check": check}, indent=2, default=str) + "\n")
    return check


def pip_requirements() -> list[str]:
    """What a served copy needs: the exact TensorFlow and Keras that produced the model."""
    import tensorflow as tf

    return [f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"]


def check_images(files: list[Path], n: int) -> np.ndarray:
    """The first ``n`` held-out images as float32 N×224×224×3 in [0, 255]: the ONNX agreement set
    and the registry's input example."""
    from overseer.trackbed.pipeline import image_dataset

    return np.concatenate([batch[0].numpy() for batch in image_dataset(files, n).take(1)])
