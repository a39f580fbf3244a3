"""The notebook's model: ResNet50V2 backbone (frozen, average pooling) + a small MLP head.

The backbone and the head are separate Keras models joined into one: the head can then be
trained on backbone embeddings computed once (the backbone is frozen, so its output per image
never changes) and the joined model is exactly the notebook's ``Input -> ResNet50V2 -> Flatten ->
Dropout(0.3) -> Dense 64/32/16 relu -> Dense 5 softmax``.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from overseer.deterministic import KERAS_EPOCH, renumber, write_zip
from overseer.io import atomic_file
from overseer.repo import file_digest
from overseer.trackbed.data.schema import CLASSES, IMAGE_SIZE

log = logging.getLogger(__name__)
EMBEDDING_DIM = 2048  # ResNet50V2 with global average pooling


@dataclass(frozen=True)
class Backbone:
    model: keras.Model  # float32 RGB [0, 255] -> 2048-d embedding
    weights_used: str  # what was actually loaded: "imagenet", "file:<path> md5:<...>" or "none (random init)"
    weights_requested: str


def _resnet(weights: str | None, image_size: int) -> keras.Model:
    return keras.applications.ResNet50V2(
        include_top=False, weights=weights, input_shape=(image_size, image_size, 3), pooling="avg"
    )


def build_backbone(weights: str = "imagenet", image_size: int = IMAGE_SIZE, download_timeout: float = 20.0) -> Backbone:
    """ResNet50V2 with ``preprocess_input`` (x / 127.5 - 1) built in, frozen.

    ``weights``: "imagenet" (Keras cache or download), a local ``.h5``/``.weights.h5`` file, or
    "none". When ImageNet weights cannot be had (offline, no cache) the backbone falls back to a
    seeded random initialisation and says so loudly; ``weights_used`` records what happened.
    """
    requested = str(weights)
    if requested.lower() in ("none", "null", "random", ""):
        base, used = _resnet(None, image_size), "none (random init)"
    elif requested == "imagenet":
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(download_timeout)
        try:
            base, used = _resnet("imagenet", image_size), "imagenet"
        except Exception as exc:  # noqa: BLE001 - any download/cache failure leads to the same fallback
            log.warning(
                "\n" + "!" * 78 + "\n!! ImageNet weights for ResNet50V2 are NOT available (%s).\n"
                "!! Falling back to a RANDOMLY INITIALISED frozen backbone: accuracy will be far below\n"
                "!! what pretrained features give. Put the Keras weights file in ~/.keras/models/ or set\n"
                "!! train_cnn.weights to a local weights file.\n" + "!" * 78,
                str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__,
            )
            base, used = _resnet(None, image_size), "none (random init; imagenet unavailable)"
        finally:
            socket.setdefaulttimeout(previous)
    else:
        path = Path(requested)
        if not path.is_file():
            raise FileNotFoundError(f"train_cnn.weights: weights file {path} does not exist")
        base = _resnet(None, image_size)
        base.load_weights(os.fspath(path))
        used = f"file:{path} md5:{file_digest(path)}"
    base.trainable = False
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="resnet_v2_preprocess")(inputs)
    # training=False keeps BatchNormalization in inference mode even while fine-tuning
    outputs = base(x, training=False)
    return Backbone(keras.Model(inputs, outputs, name="backbone"), used, requested)


def build_head(
    n_classes: int = len(CLASSES),
    dropout: float = 0.3,
    units: Sequence[int] = (64, 32, 16),
    input_dim: int = EMBEDDING_DIM,
    feature_mean: np.ndarray | None = None,
    feature_var: np.ndarray | None = None,
) -> keras.Model:
    """[Standardise ->] Flatten -> Dropout -> Dense relu layers -> softmax, on a backbone embedding.

    With ``feature_mean``/``feature_var`` (per-dimension statistics of the training embeddings) a
    fixed ``Normalization`` layer comes first. Not in the notebook: there, ImageNet features have a
    usable scale; random-init features (the offline fallback) are ~1e-2 and the notebook's
    Adam(1e-4) head barely moves in 30 epochs (measured on the default set: held-out macro-F1
    0.35 without, 0.93 with standardisation). ``train_cnn.standardize_embeddings`` switches it.
    """
    inputs = keras.Input((input_dim,), name="embedding")
    x = inputs
    if feature_mean is not None:
        # (x - mean) / std as constant scale and offset: exported to ONNX as constants (a
        # Normalization layer's variables became extra ONNX inputs under tf2onnx)
        std = np.sqrt(np.asarray(feature_var, dtype=np.float64))
        scale, offset = (1.0 / std).astype(np.float32), (-np.asarray(feature_mean) / std).astype(np.float32)
        x = keras.layers.Rescaling(scale=scale, offset=offset, name="standardize")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dropout(dropout)(x)
    for i, n in enumerate(units):
        x = keras.layers.Dense(int(n), activation="relu", name=f"dense_{i}")(x)
    outputs = keras.layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="head")


def join(backbone: keras.Model, head: keras.Model) -> keras.Model:
    """image -> class probabilities: the model that is saved, evaluated and exported."""
    inputs = keras.Input(backbone.input_shape[1:], name="image")
    return keras.Model(inputs, head(backbone(inputs)), name="trackbed_resnet50v2")


LOSSES = ("categorical_crossentropy", "focal")  # train_cnn.loss (params types.CnnLoss)


def training_loss(loss: str = "categorical_crossentropy", focal_gamma: float = 2.0) -> str | keras.losses.Loss:
    """``train_cnn.loss``: the notebook's categorical cross-entropy, or focal cross-entropy
    (Lin et al.: ``-alpha (1 - p)^gamma log p``, which down-weights the images already classified
    well). ``alpha`` stays Keras's 0.25: for a one-hot target it is one constant over all classes,
    i.e. a scale of the loss that Adam does not see; class balance is ``train_cnn.class_weight``'s job."""
    if loss == "categorical_crossentropy":
        return "categorical_crossentropy"  # as before: the same compiled config as the notebook's
    if loss == "focal":
        return keras.losses.CategoricalFocalCrossentropy(gamma=float(focal_gamma))
    raise ValueError(f"train_cnn.loss: must be one of {', '.join(LOSSES)}, got {loss!r}")


def compile_for_training(
    model: keras.Model, learning_rate: float, decay_steps: int = 10_000, decay_rate: float = 0.9,
    loss: str = "categorical_crossentropy", focal_gamma: float = 2.0,
) -> keras.Model:  # fmt: skip
    """Adam with exponential learning-rate decay and categorical cross-entropy, as in the notebook
    (or focal cross-entropy: :func:`training_loss`)."""
    schedule = keras.optimizers.schedules.ExponentialDecay(
        initial_learning_rate=float(learning_rate), decay_steps=int(decay_steps), decay_rate=float(decay_rate)
    )
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=schedule),
        loss=training_loss(loss, focal_gamma),
        metrics=[keras.metrics.CategoricalAccuracy(name="categorical_accuracy")],
    )
    return model


AUGMENT_LAYERS = (
    keras.layers.RandomFlip, keras.layers.RandomRotation, keras.layers.RandomBrightness, keras.layers.RandomContrast,
)  # fmt: skip


def build_augmentation(
    flip: bool = True, rotation: float = 0.05, brightness: float = 0.1, contrast: float = 0.1,
    seed: int = 0, image_size: int = IMAGE_SIZE,
) -> keras.Model:  # fmt: skip
    """``train_cnn.augment``: random horizontal flip, rotation (``rotation`` × 2π either way,
    reflected border), brightness shift and contrast change (``brightness``/``contrast`` as
    fractions, on [0, 255] images, clipped to it), each seeded from ``seed``; a factor of 0 (or
    ``flip: false``) leaves that layer out.

    Keras's random preprocessing layers transform only when called with ``training=True``
    (``fit``); ``predict``/``training=False`` passes the images through unchanged. The training
    code still keeps them out of every model it returns or saves (:func:`with_augmentation`)."""
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = inputs
    if flip:
        x = keras.layers.RandomFlip("horizontal", seed=seed, name="random_flip")(x)
    if rotation > 0:
        x = keras.layers.RandomRotation(float(rotation), fill_mode="reflect", seed=seed + 1, name="random_rotation")(x)
    if brightness > 0:
        x = keras.layers.RandomBrightness(
            float(brightness), value_range=(0, 255), seed=seed + 2, name="random_brightness"
        )(x)
    if contrast > 0:
        x = keras.layers.RandomContrast(float(contrast), value_range=(0, 255), seed=seed + 3, name="random_contrast")(x)
    if x is inputs:
        x = keras.layers.Identity(name="no_augmentation")(x)
    return keras.Model(inputs, x, name="augment")


def with_augmentation(model: keras.Model, augmentation: keras.Model) -> keras.Model:
    """``image -> augmentation -> model``, the model to *fit* when fine-tuning with augmentation: it
    shares ``model``'s layers and weights, so fitting it trains ``model``, which is what is kept,
    saved and exported (it has no augmentation layer in it)."""
    inputs = keras.Input(model.input_shape[1:], name="image")
    return keras.Model(inputs, model(augmentation(inputs)), name=f"{model.name}_augmented")


def augmentation_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every random augmentation layer in ``model``, nested models included."""
    found = []
    for layer in model.layers:
        if isinstance(layer, AUGMENT_LAYERS):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found.extend(augmentation_layers(layer))
    return found


def model_card(train_cfg: dict, weights_used: str) -> dict:
    """``config.json`` beside a trained model: how it was trained and what input it expects."""
    return {
        "train_cnn": train_cfg,
        "classes": list(CLASSES),
        "weights_used": weights_used,
        "input": {"shape": [IMAGE_SIZE, IMAGE_SIZE, 3], "dtype": "float32", "range": [0, 255], "channels": "RGB"},
    }


def deterministic_keras(src: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Copy the ``.keras`` archive ``src`` to ``dest`` without what varies between two saves of
    the same model: ``metadata.json``'s ``date_saved`` becomes :data:`KERAS_EPOCH` (the key stays:
    ``keras.saving.KerasFileEditor`` shows it), the ``shared_object_id`` values in ``config.json``
    (``id()`` of objects shared between layers, e.g. one dtype policy) become 1, 2, ... in order of
    appearance, and member times a fixed date. ``keras.models.load_model`` reads it as before."""
    import zipfile

    with zipfile.ZipFile(src) as archive:
        metadata = json.loads(archive.read("metadata.json"))
        config = json.loads(archive.read("config.json"))
    if "date_saved" in metadata:
        metadata["date_saved"] = KERAS_EPOCH
    renumber(config, "shared_object_id")
    # Keras writes both with a plain json.dumps
    replace = {"metadata.json": json.dumps(metadata).encode(), "config.json": json.dumps(config).encode()}
    return write_zip(src, dest, replace=replace)


def save_keras(model: keras.Model, path: str | os.PathLike) -> Path:
    """``model.save(path)`` as a ``.keras`` file, atomically and byte-deterministic (the same
    weights always give the same bytes: :func:`deterministic_keras`)."""
    with tempfile.TemporaryDirectory(prefix="overseer-keras-") as work, atomic_file(path, suffix=".keras") as tmp:
        raw = Path(work) / "model.keras"
        model.save(raw)
        deterministic_keras(raw, tmp)
    return Path(path)
