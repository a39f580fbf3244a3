"""train_cnn: the notebook's best configuration, trained on backbone embeddings computed once.

With a frozen backbone (BatchNormalization in inference mode) the backbone output per image is
a constant, so training the head on cached embeddings is the same optimisation problem as the
notebook's loop, which recomputes the backbone forward pass for every image in every epoch.
The end-to-end path (``fit_on_images``) remains for fine-tuning the top ResNet stage and for the
benchmark that compares the two.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from tqdm import tqdm

from overseer.splits import stratified_split
from overseer.trackbed.data.schema import CLASSES
from overseer.trackbed.model import build_backbone, build_head, compile_for_training, join
from overseer.trackbed.pipeline import decode_record, image_dataset

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    model: keras.Model
    history: pd.DataFrame  # one row per epoch: epoch, phase, loss, categorical_accuracy, val_...
    weights_used: str
    n_train: int
    n_val: int
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """Validation-set numbers only: the held-out evaluation set is evaluate@cnn's job."""
        best = self.history.loc[self.history["val_loss"].idxmin()]
        return {
            "n_train": self.n_train,
            "n_val": self.n_val,
            "epochs_run": len(self.history),
            "best_epoch": int(best["epoch"]),
            "best_val_loss": float(best["val_loss"]),
            "best_val_categorical_accuracy": float(best["val_categorical_accuracy"]),
            "weights_used": self.weights_used,
            **{f"seconds_{k}": round(v, 2) for k, v in self.timings.items()},
        }


def set_determinism(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and ask TensorFlow for deterministic kernels."""
    keras.utils.set_random_seed(int(seed))
    tf.config.experimental.enable_op_determinism()
    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised
            pass


def embed(
    backbone: keras.Model, files: Sequence[str | os.PathLike], batch_size: int
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Backbone embeddings (float32, n×2048), labels and file names of every record, in file order."""
    features, labels, names = [], [], []
    forward = tf.function(lambda images: backbone(images, training=False), reduce_retracing=True)
    with tqdm(desc="backbone embeddings", unit="img") as progress:
        for images, batch_labels, batch_names in image_dataset(files, batch_size):
            features.append(forward(images).numpy().astype(np.float32))
            labels.append(batch_labels.numpy())
            names.extend(n.decode() for n in batch_names.numpy())
            progress.update(int(images.shape[0]))
    return np.concatenate(features), np.concatenate(labels).astype(np.int64), names


def _one_hot(labels: np.ndarray) -> np.ndarray:
    return keras.utils.to_categorical(labels, num_classes=len(CLASSES)).astype(np.float32)


EpochCallback = Callable[[int, keras.Model], None]


class _OnEpoch(keras.callbacks.Callback):
    """Calls ``on_epoch(epoch, model)`` (epoch from 0, the weights of that epoch) after every epoch."""

    def __init__(self, on_epoch: EpochCallback) -> None:
        super().__init__()
        self.on_epoch = on_epoch

    def on_epoch_end(self, epoch: int, logs: Mapping[str, float] | None = None) -> None:
        self.on_epoch(epoch, self.model)


def _callbacks(
    cfg: Mapping[str, Any], checkpoint: Path, on_epoch: EpochCallback | None = None
) -> list[keras.callbacks.Callback]:
    return [
        keras.callbacks.ModelCheckpoint(os.fspath(checkpoint), monitor="val_loss", save_best_only=True),
        keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=int(cfg["early_stopping_patience"]), restore_best_weights=True
        ),
        *([] if on_epoch is None else [_OnEpoch(on_epoch)]),
    ]


def _history(fit: keras.callbacks.History, phase: str, first_epoch: int = 1) -> pd.DataFrame:
    frame = pd.DataFrame(fit.history)
    frame.insert(0, "phase", phase)
    frame.insert(0, "epoch", np.arange(first_epoch, first_epoch + len(frame)))
    return frame


def train_head(
    x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
    cfg: Mapping[str, Any], workdir: Path, *, on_epoch: EpochCallback | None = None, verbose: int = 2,
) -> tuple[keras.Model, pd.DataFrame]:  # fmt: skip
    """Fit the head on embeddings with the notebook's optimiser and callbacks; return the head with
    the best-``val_loss`` weights, reloaded from the checkpoint on disk, and its history.

    The one definition of how the head is built, standardised, compiled and fit (train_cnn and the
    tuning objective both call it). ``on_epoch(epoch, head)`` runs after every epoch (from 0, the
    head with that epoch's weights); an exception it raises (a pruned trial) ends the fit and
    propagates. ``verbose`` is Keras's (2: one line per epoch).
    """
    stats = {}
    if cfg.get("standardize_embeddings", False):
        # a floor keeps dimensions that are constant over the training set finite
        stats = {"feature_mean": x_train.mean(axis=0), "feature_var": np.maximum(x_train.var(axis=0), 1e-12)}
    head = build_head(dropout=float(cfg["dropout"]), units=cfg["head_units"], **stats)
    compile_for_training(head, cfg["learning_rate"], cfg["decay_steps"], cfg["decay_rate"])
    checkpoint = workdir.resolve() / "head_best.keras"
    fit = head.fit(
        x_train, _one_hot(y_train),
        validation_data=(x_val, _one_hot(y_val)),
        batch_size=int(cfg["batch_size"]), epochs=int(cfg["epochs"]), shuffle=True,
        callbacks=_callbacks(cfg, checkpoint, on_epoch), verbose=verbose,
    )  # fmt: skip
    best = keras.models.load_model(checkpoint, compile=False)
    return best, _history(fit, "head")


def image_split_datasets(
    files: Sequence[str | os.PathLike], is_val: np.ndarray, batch_size: int, seed: int
) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """(image, one-hot) train and validation datasets of the records, split by ``is_val`` (file order)."""
    mask = tf.constant(is_val)

    def pick(want_val: bool, shuffle: bool) -> tf.data.Dataset:
        data = tf.data.TFRecordDataset([os.fspath(f) for f in files]).enumerate()
        data = data.filter(lambda i, _: tf.equal(tf.gather(mask, i), want_val)).map(lambda _, s: s)
        if shuffle:
            data = data.shuffle(640, seed=seed, reshuffle_each_iteration=True)

        data = data.map(decode_record, num_parallel_calls=tf.data.AUTOTUNE)
        data = data.map(lambda im, lab, _: (im, tf.one_hot(lab, len(CLASSES))))
        return data.batch(batch_size).prefetch(tf.data.AUTOTUNE)

    return pick(False, True), pick(True, False)


def unfreeze_top(model: keras.Model, from_layer_prefix: str) -> int:
    """Make the ResNet layers from the first one named ``from_layer_prefix*`` trainable (BatchNorm
    layers stay frozen); return how many layers were unfrozen."""
    resnet = next(layer for layer in model.get_layer("backbone").layers if isinstance(layer, keras.Model))
    resnet.trainable = True
    unfrozen, seen = 0, False
    for layer in resnet.layers:
        seen = seen or layer.name.startswith(from_layer_prefix)
        layer.trainable = seen and not isinstance(layer, keras.layers.BatchNormalization)
        unfrozen += int(layer.trainable)
    if not seen:
        raise ValueError(f"train_cnn.fine_tune.unfreeze_from: no ResNet50V2 layer named {from_layer_prefix}*")
    return unfrozen


def fit_on_images(
    model: keras.Model, files: Sequence[str | os.PathLike], is_val: np.ndarray, cfg: Mapping[str, Any],
    epochs: int, learning_rate: float, workdir: Path, phase: str, first_epoch: int = 1,
) -> pd.DataFrame:  # fmt: skip
    """The notebook's loop: every epoch runs images through the whole model (backbone included)."""
    train_ds, val_ds = image_split_datasets(files, is_val, int(cfg["batch_size"]), int(cfg["seed"]))
    compile_for_training(model, learning_rate, cfg["decay_steps"], cfg["decay_rate"])
    fit = model.fit(
        train_ds, validation_data=val_ds, epochs=int(epochs),
        callbacks=_callbacks(cfg, workdir.resolve() / f"{phase}_best.keras"), verbose=2, shuffle=False,
    )  # fmt: skip
    return _history(fit, phase, first_epoch)


def train_cnn(cfg: Mapping[str, Any], train_files: Sequence[str | os.PathLike], workdir: Path) -> TrainResult:
    """Embeddings once -> head on embeddings -> joined model (-> optional fine-tuning)."""
    set_determinism(int(cfg["seed"]))
    workdir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    backbone = build_backbone(str(cfg["weights"]))
    x, y, _ = embed(backbone.model, train_files, int(cfg["batch_size"]))
    timings["embed"] = time.perf_counter() - start
    is_val = stratified_split(y, float(cfg["val_fraction"]), int(cfg["seed"]))

    start = time.perf_counter()
    head, history = train_head(x[~is_val], y[~is_val], x[is_val], y[is_val], cfg, workdir)
    timings["fit_head"] = time.perf_counter() - start
    model = join(backbone.model, head)

    fine = cfg.get("fine_tune") or {}
    if fine.get("enabled"):
        start = time.perf_counter()
        n = unfreeze_top(model, str(fine["unfreeze_from"]))
        log.info("fine-tuning %d ResNet50V2 layers from %s*", n, fine["unfreeze_from"])
        more = fit_on_images(
            model, train_files, is_val, cfg, int(fine["epochs"]), float(fine["learning_rate"]), workdir,
            "fine_tune", first_epoch=len(history) + 1,
        )  # fmt: skip
        history = pd.concat([history, more], ignore_index=True)
        timings["fine_tune"] = time.perf_counter() - start
        model.trainable = False  # saved for inference
    return TrainResult(model, history, backbone.weights_used, int((~is_val).sum()), int(is_val.sum()), timings)
