"""evaluate@cnn: the shared report on the held-out evaluation file, from the model saved on disk."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tqdm import tqdm

from overseer.metrics import ClassificationReport, classification_report
from overseer.trackbed.data.schema import CLASSES
from overseer.trackbed.pipeline import image_dataset


def load_model(path: str | os.PathLike) -> keras.Model:
    """Load a saved ``.keras`` model for inference (as the notebook does: from disk, not memory)."""
    return keras.models.load_model(Path(path), compile=False)


def predict_tfrecords(
    model: keras.Model, files: Sequence[str | os.PathLike], batch_size: int = 32
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(true labels, class probabilities n×k, file names) for every record of ``files``."""
    labels, probs, names = [], [], []
    forward = tf.function(lambda images: model(images, training=False), reduce_retracing=True)
    with tqdm(desc="predict", unit="img") as progress:
        for images, batch_labels, batch_names in image_dataset(files, batch_size):
            probs.append(forward(images).numpy())
            labels.append(batch_labels.numpy())
            names.extend(n.decode() for n in batch_names.numpy())
            progress.update(int(images.shape[0]))
    return np.concatenate(labels).astype(np.int64), np.concatenate(probs), names


def evaluate_model(
    model_path: str | os.PathLike, eval_files: Sequence[str | os.PathLike], batch_size: int = 32
) -> ClassificationReport:
    """The full classification report of the saved model on the evaluation records."""
    y_true, probs, names = predict_tfrecords(load_model(model_path), eval_files, batch_size)
    y_pred = probs.argmax(axis=1)
    return classification_report(y_true, y_pred, CLASSES, confidence=probs.max(axis=1), item_ids=names)
