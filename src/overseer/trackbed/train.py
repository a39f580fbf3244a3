"""train_cnn: the notebook's best configuration, trained on backbone embeddings computed once.

With a frozen backbone (BatchNormalization in inference mode) the backbone output per image is
a constant, so training the head on cached embeddings is the same optimisation problem as the
notebook's loop, which recomputes the backbone forward pass for every image in every epoch.
The end-to-end path (``fit_on_images``) remains for fine-tuning the top ResNet stage and for the
benchmark that compares the two.

Imbalance and augmentation (issue 16), all off by default:

* ``class_weight: balanced`` -- scikit-learn's ``compute_class_weight("balanced")`` over the
  training split's labels, as Keras ``class_weight`` in both fits (the validation loss, which
  early stopping and the checkpoint watch, stays unweighted). A class with no training image gets
  no weight (a warning names it): no training row needs one, and the other classes are weighted
  as if it did not exist -- the same as ``class_weight: none`` trains on such a file.
* ``loss: focal`` -- ``keras.losses.CategoricalFocalCrossentropy(gamma=focal_gamma)`` in both
  fits (``model.training_loss``); the reported ``val_loss`` is then the focal loss.
* ``augment`` -- with ``enabled: true``, fine-tuning fits ``image -> random flip/rotation/
  brightness/contrast -> model`` (``model.with_augmentation``) and keeps ``model``, so the saved
  and exported model has no augmentation layer; the head on embeddings gets ``copies`` augmented
  copies of every training image, each embedded once (validation images are never augmented).
  Quick check on the default set (random-init backbone, params.yaml's config): ``copies: 2``
  raised the 30-epoch validation macro-F1 from 0.917 to 0.969 (best val loss 0.252 -> 0.110), but
  the unaugmented head trained for as many optimiser steps (60 epochs) also reaches 0.969 (val loss
  0.140): most of the gain is the extra steps, a little (val loss) the augmentation. Off by default.
  ``class_weight: balanced`` changes nothing on that balanced set (every weight 1); ``loss: focal``
  gave 0.935.
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
from sklearn.utils.class_weight import compute_class_weight
from tqdm import tqdm

from overseer.splits import stratified_split
from overseer.trackbed.data.schema import CLASSES, IMAGE_SIZE
from overseer.trackbed.distribute import replica_batches, replicated_forward
from overseer.trackbed.model import (
    build_augmentation,
    build_backbone,
    build_head,
    compile_for_training,
    join,
    with_augmentation,
)
from overseer.trackbed.pipeline import FEATURE_SPEC, decode_record, image_dataset

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    model: keras.Model
    history: pd.DataFrame  # one row per epoch: epoch, phase, loss, categorical_accuracy, val_...
    weights_used: str
    n_train: int
    n_val: int
    timings: dict[str, float] = field(default_factory=dict)
    n_augmented: int = 0  # augmented training embeddings beside the n_train originals (augment.copies)

    def summary(self) -> dict[str, Any]:
        """Validation-set numbers only: the held-out evaluation set is evaluate@cnn's job."""
        best = self.history.loc[self.history["val_loss"].idxmin()]
        return {
            "n_train": self.n_train,
            "n_val": self.n_val,
            "n_train_augmented": self.n_augmented,
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
    backbone: keras.Model,
    files: Sequence[str | os.PathLike],
    batch_size: int,
    strategy: tf.distribute.Strategy | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Backbone embeddings (float32, n×2048), labels and file names of every record, in file order.

    Under a multi-replica ``strategy`` each batch is split across the replicas
    (:func:`~overseer.trackbed.distribute.replicated_forward`)."""
    strategy = strategy or tf.distribute.get_strategy()
    features, labels, names = [], [], []
    forward = tf.function(lambda images: backbone(images, training=False), reduce_retracing=True)
    with tqdm(desc="backbone embeddings", unit="img") as progress:
        for images, batch_labels, batch_names in image_dataset(files, batch_size):
            features.append(replicated_forward(strategy, forward, images).numpy().astype(np.float32))
            labels.append(batch_labels.numpy())
            names.extend(n.decode() for n in batch_names.numpy())
            progress.update(int(images.shape[0]))
    return np.concatenate(features), np.concatenate(labels).astype(np.int64), names


CLASS_WEIGHTS = ("none", "balanced")  # train_cnn.class_weight (params types.CnnClassWeight)
AUGMENT_DEFAULTS = {"flip": True, "rotation": 0.05, "brightness": 0.1, "contrast": 0.1, "copies": 0}


def class_weights(labels: np.ndarray, mode: str | None = "none") -> dict[int, float] | None:
    """Keras ``class_weight`` for ``train_cnn.class_weight``: None for "none" (or null); for
    "balanced" ``n / (k * count)`` per class present (scikit-learn's ``compute_class_weight``,
    k the number of classes present: the mean weight per training row is 1). A class absent from
    ``labels`` gets no entry (a warning names it): no row needs one (Keras reads a missing class as
    1.0)."""
    mode = "none" if mode is None else str(mode)
    if mode == "none":
        return None
    if mode != "balanced":
        raise ValueError(f"train_cnn.class_weight: must be one of {', '.join(CLASS_WEIGHTS)}, got {mode!r}")
    labels = np.asarray(labels, dtype=np.int64)
    present = np.unique(labels)
    absent = [name for i, name in enumerate(CLASSES) if i not in present]
    if absent:
        log.warning(
            "train_cnn.class_weight: balanced: no training image of %s; weighting the %d classes present only",
            ", ".join(absent), len(present),
        )  # fmt: skip
    weights = compute_class_weight("balanced", classes=present, y=labels)
    return {int(c): float(w) for c, w in zip(present, weights, strict=True)}


def augment_settings(cfg: Mapping[str, Any]) -> dict[str, Any] | None:
    """``train_cnn.augment`` with its defaults filled in, or None when it is not enabled."""
    augment = cfg.get("augment") or {}
    if not augment.get("enabled"):
        return None
    return {key: augment.get(key, default) for key, default in AUGMENT_DEFAULTS.items()}


def _augmentation(settings: Mapping[str, Any], seed: int, image_size: int) -> keras.Model:
    layers = {k: settings[k] for k in ("flip", "rotation", "brightness", "contrast")}
    return build_augmentation(**layers, seed=int(seed), image_size=image_size)


def record_labels(files: Sequence[str | os.PathLike]) -> np.ndarray:
    """The labels of every record, in file order (no image decoded)."""
    spec = {"label": FEATURE_SPEC["label"]}
    data = tf.data.TFRecordDataset([os.fspath(f) for f in files]).map(lambda s: tf.io.parse_single_example(s, spec))
    return np.array([int(r["label"]) for r in data.as_numpy_iterator()], dtype=np.int64)


def _records(files: Sequence[str | os.PathLike], keep: np.ndarray) -> tf.data.Dataset:
    """The serialised records whose file-order position is True in ``keep``."""
    mask = tf.constant(np.asarray(keep, dtype=bool))
    data = tf.data.TFRecordDataset([os.fspath(f) for f in files]).enumerate()
    return data.filter(lambda i, _: tf.gather(mask, i)).map(lambda _, s: s)


def embed_augmented(
    backbone: keras.Model, files: Sequence[str | os.PathLike], keep: np.ndarray, batch_size: int,
    augmentation: keras.Model, copies: int,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Embeddings (float32) and labels of ``copies`` augmented copies of the records selected by
    ``keep`` (file order; the training split): copy after copy, each image in file order, every
    copy drawn afresh from ``augmentation``'s seeded layers."""
    image_size = int(backbone.input_shape[1])

    @tf.function(reduce_retracing=True)
    def forward(images: tf.Tensor) -> tf.Tensor:
        return backbone(augmentation(images, training=True), training=False)

    features, labels = [], []
    with tqdm(desc="augmented embeddings", unit="img") as progress:
        for _ in range(int(copies)):
            data = _records(files, keep).map(
                lambda s: decode_record(s, image_size), num_parallel_calls=tf.data.AUTOTUNE
            )
            for images, batch_labels, _names in data.batch(batch_size).prefetch(tf.data.AUTOTUNE):
                features.append(forward(images).numpy().astype(np.float32))
                labels.append(batch_labels.numpy())
                progress.update(int(images.shape[0]))
    if not features:
        return np.zeros((0, int(backbone.output_shape[-1])), np.float32), np.zeros(0, np.int64)
    return np.concatenate(features), np.concatenate(labels).astype(np.int64)


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


def _loss(cfg: Mapping[str, Any]) -> dict[str, Any]:
    return {"loss": cfg.get("loss") or "categorical_crossentropy", "focal_gamma": float(cfg.get("focal_gamma", 2.0))}


def train_head(
    x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
    cfg: Mapping[str, Any], workdir: Path, *, on_epoch: EpochCallback | None = None, verbose: int = 2,
) -> tuple[keras.Model, pd.DataFrame]:  # fmt: skip
    """Fit the head on embeddings with the notebook's optimiser and callbacks; return the head with
    the best-``val_loss`` weights, reloaded from the checkpoint on disk, and its history.

    The one definition of how the head is built, standardised, compiled and fit (train_cnn and the
    tuning objective both call it). ``on_epoch(epoch, head)`` runs after every epoch (from 0, the
    head with that epoch's weights); an exception it raises (a pruned trial) ends the fit and
    propagates. ``verbose`` is Keras's (2: one line per epoch). ``cfg``'s ``class_weight`` (over
    ``y_train``) and ``loss``/``focal_gamma`` apply; ``x_train`` may hold augmented copies
    (:func:`embed_augmented`), and the standardisation statistics are then theirs too.
    """
    stats = {}
    if cfg.get("standardize_embeddings", False):
        # a floor keeps dimensions that are constant over the training set finite
        stats = {"feature_mean": x_train.mean(axis=0), "feature_var": np.maximum(x_train.var(axis=0), 1e-12)}
    head = build_head(dropout=float(cfg["dropout"]), units=cfg["head_units"], **stats)
    compile_for_training(head, cfg["learning_rate"], cfg["decay_steps"], cfg["decay_rate"], **_loss(cfg))
    checkpoint = workdir.resolve() / "head_best.keras"
    fit = head.fit(
        x_train, _one_hot(y_train),
        validation_data=(x_val, _one_hot(y_val)),
        batch_size=int(cfg["batch_size"]), epochs=int(cfg["epochs"]), shuffle=True,
        class_weight=class_weights(y_train, cfg.get("class_weight")),
        callbacks=_callbacks(cfg, checkpoint, on_epoch), verbose=verbose,
    )  # fmt: skip
    best = keras.models.load_model(checkpoint, compile=False)
    return best, _history(fit, "head")


def image_split_datasets(
    files: Sequence[str | os.PathLike], is_val: np.ndarray, batch_size: int, seed: int, image_size: int = IMAGE_SIZE
) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """(image, one-hot) train and validation datasets of the records, split by ``is_val`` (file order)."""
    is_val = np.asarray(is_val, dtype=bool)
    replicas = tf.distribute.get_strategy().num_replicas_in_sync  # the strategy whose scope we are in

    def pick(want_val: bool, shuffle: bool) -> tf.data.Dataset:
        keep = is_val if want_val else ~is_val
        data = _records(files, keep)
        if shuffle:
            data = data.shuffle(640, seed=seed, reshuffle_each_iteration=True)

        data = data.map(lambda s: decode_record(s, image_size), num_parallel_calls=tf.data.AUTOTUNE)
        data = data.map(lambda im, lab, _: (im, tf.one_hot(lab, len(CLASSES))))
        what = "validation images" if want_val else "training images"
        return replica_batches(data, int(keep.sum()), batch_size, replicas, what).prefetch(tf.data.AUTOTUNE)

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
    """The notebook's loop: every epoch runs images through the whole model (backbone included).

    ``cfg``'s ``class_weight`` (over the training split's labels), ``loss``/``focal_gamma`` and
    ``augment`` apply. With augmentation the fit runs on
    :func:`~overseer.trackbed.model.with_augmentation`'s wrapper, which trains ``model``'s own
    weights and leaves ``model`` (what is saved and exported) free of augmentation layers."""
    image_size = int(model.input_shape[1])
    train_ds, val_ds = image_split_datasets(files, is_val, int(cfg["batch_size"]), int(cfg["seed"]), image_size)
    weights = None
    if (cfg.get("class_weight") or "none") != "none":
        weights = class_weights(record_labels(files)[~np.asarray(is_val, dtype=bool)], cfg.get("class_weight"))
    augment = augment_settings(cfg)
    fitted = model if augment is None else with_augmentation(model, _augmentation(augment, cfg["seed"], image_size))
    compile_for_training(fitted, learning_rate, cfg["decay_steps"], cfg["decay_rate"], **_loss(cfg))
    fit = fitted.fit(
        train_ds, validation_data=val_ds, epochs=int(epochs), class_weight=weights,
        callbacks=_callbacks(cfg, workdir.resolve() / f"{phase}_best.keras"), verbose=2, shuffle=False,
    )  # fmt: skip
    return _history(fit, phase, first_epoch)


def train_cnn(
    cfg: Mapping[str, Any],
    train_files: Sequence[str | os.PathLike],
    workdir: Path,
    strategy: tf.distribute.Strategy | None = None,
) -> TrainResult:
    """Embeddings once -> head on embeddings -> joined model (-> optional fine-tuning).

    Every model is built and compiled in ``strategy``'s scope (default: TensorFlow's default
    strategy; :func:`~overseer.trackbed.distribute.training_strategy` picks one for the machine)."""
    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        return _train_cnn(cfg, train_files, workdir, strategy)


def _train_cnn(
    cfg: Mapping[str, Any], train_files: Sequence[str | os.PathLike], workdir: Path, strategy: tf.distribute.Strategy
) -> TrainResult:
    set_determinism(int(cfg["seed"]))
    workdir.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    start = time.perf_counter()
    backbone = build_backbone(str(cfg["weights"]))
    x, y, _ = embed(backbone.model, train_files, int(cfg["batch_size"]), strategy)
    timings["embed"] = time.perf_counter() - start
    is_val = stratified_split(y, float(cfg["val_fraction"]), int(cfg["seed"]))

    x_train, y_train = x[~is_val], y[~is_val]
    augment = augment_settings(cfg)
    if augment is not None and int(augment["copies"]) > 0:
        start = time.perf_counter()
        augmentation = _augmentation(augment, cfg["seed"], int(backbone.model.input_shape[1]))
        x_aug, y_aug = embed_augmented(
            backbone.model, train_files, ~is_val, int(cfg["batch_size"]), augmentation, int(augment["copies"])
        )
        x_train, y_train = np.concatenate([x_train, x_aug]), np.concatenate([y_train, y_aug])
        timings["embed_augmented"] = time.perf_counter() - start

    start = time.perf_counter()
    head, history = train_head(x_train, y_train, x[is_val], y[is_val], cfg, workdir)
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
    n_train, n_val = int((~is_val).sum()), int(is_val.sum())
    return TrainResult(model, history, backbone.weights_used, n_train, n_val, timings, len(x_train) - n_train)
