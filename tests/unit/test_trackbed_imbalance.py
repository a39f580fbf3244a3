"""train_cnn's imbalance and augmentation options (issue 16): balanced class weights, focal loss,
augmentation that trains but never reaches the saved or exported model.

Embeddings-like features (2048 columns, class signal in two of them) stand in for the backbone's
output; tiny 32×32 models stand in for ResNet50V2 where images are needed.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import get_args

import keras
import numpy as np
import pytest

from overseer.params import types as value_types
from overseer.trackbed import model as trackbed_model
from overseer.trackbed import train as trackbed_train
from overseer.trackbed.data.ingest import ingest_trackbed
from overseer.trackbed.data.tfrecord import list_tfrecords
from overseer.trackbed.model import (
    augmentation_layers,
    build_augmentation,
    build_head,
    compile_for_training,
    join,
    save_keras,
    with_augmentation,
)
from overseer.trackbed.train import (
    class_weights,
    embed_augmented,
    fit_on_images,
    record_labels,
    set_determinism,
    train_head,
)

SIZE = 32
HEAD_CFG = {
    "learning_rate": 1e-2, "batch_size": 32, "epochs": 20, "early_stopping_patience": 20, "decay_steps": 10000,
    "decay_rate": 0.9, "dropout": 0.0, "head_units": [16], "standardize_embeddings": False, "seed": 0,
}  # fmt: skip


def test_the_params_choices_are_the_codes() -> None:
    assert set(get_args(value_types.CnnClassWeight)) == set(trackbed_train.CLASS_WEIGHTS)
    assert set(get_args(value_types.CnnLoss)) == set(trackbed_model.LOSSES)


# --- class weights ------------------------------------------------------------------------------------


def test_balanced_weights_are_sklearns_and_none_is_none() -> None:
    labels = np.array([0] * 90 + [1] * 5 + [2] * 5)
    weights = class_weights(labels, "balanced")
    assert weights == pytest.approx({0: 100 / (3 * 90), 1: 100 / (3 * 5), 2: 100 / (3 * 5)})
    assert class_weights(labels, "none") is None and class_weights(labels, None) is None
    with pytest.raises(ValueError, match="must be one of none, balanced"):
        class_weights(labels, "inverse")


def test_a_class_absent_from_training_gets_no_weight_and_is_named(caplog: pytest.LogCaptureFixture) -> None:
    labels = np.array([0, 0, 1, 2, 3])  # no ERROR (4)
    with caplog.at_level(logging.WARNING):
        weights = class_weights(labels, "balanced")
    assert set(weights) == {0, 1, 2, 3} and weights[1] == pytest.approx(5 / 4)
    assert "no training image of ERROR" in caplog.text


def features(counts: list[int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Five overlapping classes on a circle in two of 2048 columns (the rest zero)."""
    y = np.repeat(np.arange(5), counts)
    angle = np.arange(5) * 2 * np.pi / 5
    x = np.zeros((len(y), 2048), np.float32)
    x[:, 0] = 1.5 * np.cos(angle)[y] + rng.normal(0, 1, len(y))
    x[:, 1] = 1.5 * np.sin(angle)[y] + rng.normal(0, 1, len(y))
    return x, y


def test_balanced_class_weights_raise_the_minority_recall(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x_train, y_train = features([76, 76, 76, 76, 16], rng)  # ERROR: 5 % of the training rows
    x_val, y_val = features([19, 19, 19, 19, 4], rng)
    x_test, y_test = features([200] * 5, rng)
    recall = {}
    for mode in ("none", "balanced"):
        set_determinism(0)
        head, _ = train_head(
            x_train, y_train, x_val, y_val, {**HEAD_CFG, "class_weight": mode}, tmp_path / mode, verbose=0
        )
        predicted = head.predict(x_test, verbose=0).argmax(axis=1)
        recall[mode] = float((predicted[y_test == 4] == 4).mean())
    # measured over four data/initialisation seeds: none 0.08-0.34, balanced 0.62-0.66
    assert recall["balanced"] >= recall["none"] + 0.2, recall


# --- focal loss ---------------------------------------------------------------------------------------


def test_focal_loss_is_compiled_with_its_gamma() -> None:
    head = compile_for_training(build_head(input_dim=4, units=(3,)), 1e-3, loss="focal", focal_gamma=3.0)
    assert isinstance(head.loss, keras.losses.CategoricalFocalCrossentropy) and head.loss.gamma == 3.0
    assert compile_for_training(build_head(input_dim=4, units=(3,)), 1e-3).loss == "categorical_crossentropy"
    with pytest.raises(ValueError, match=r"train_cnn\.loss"):
        compile_for_training(build_head(input_dim=4, units=(3,)), 1e-3, loss="hinge")


def test_the_head_trains_on_the_focal_loss(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    x_train, y_train = features([20] * 5, rng)
    x_val, y_val = features([5] * 5, rng)
    cfg = {**HEAD_CFG, "epochs": 4, "loss": "focal", "focal_gamma": 3.0, "class_weight": "balanced"}
    set_determinism(0)
    head, history = train_head(x_train, y_train, x_val, y_val, cfg, tmp_path, verbose=0)
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    # the reported validation loss is the focal loss (gamma 3) of the returned, best, head
    probs = head.predict(x_val, verbose=0)
    focal = keras.losses.CategoricalFocalCrossentropy(gamma=3.0)(keras.utils.to_categorical(y_val, 5), probs)
    cross_entropy = keras.losses.CategoricalCrossentropy()(keras.utils.to_categorical(y_val, 5), probs)
    assert float(focal) == pytest.approx(history["val_loss"].min(), rel=1e-4)
    assert float(cross_entropy) != pytest.approx(history["val_loss"].min(), rel=1e-2)


# --- augmentation -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def train_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("prepared")
    cfg = {"source": "default", "shard_size": 100, "seed": 5, "default": {"train_per_class": 4, "eval_per_class": 1}}
    ingest_trackbed(cfg, out / "trackbed")
    return list_tfrecords(out / "trackbed" / "train")


def tiny_backbone() -> keras.Model:
    """A stand-in for build_backbone(...).model: [0, 255] SIZE² RGB -> 8-d embedding, named "backbone"."""
    inputs = keras.Input((SIZE, SIZE, 3), name="image")
    x = keras.layers.Rescaling(1 / 127.5, offset=-1.0)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    return keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(x), name="backbone")


def test_augmentation_is_inactive_at_inference() -> None:
    keras.utils.set_random_seed(0)
    images = np.random.default_rng(0).uniform(0, 255, (4, SIZE, SIZE, 3)).astype(np.float32)
    augmentation = build_augmentation(seed=3, image_size=SIZE)
    assert len(augmentation_layers(augmentation)) == 4
    np.testing.assert_array_equal(augmentation.predict(images, verbose=0), images)
    np.testing.assert_array_equal(np.asarray(augmentation(images, training=False)), images)
    assert np.abs(np.asarray(augmentation(images, training=True)) - images).max() > 1.0
    model = join(tiny_backbone(), build_head(input_dim=8, units=(4,)))
    wrapped = with_augmentation(model, augmentation)
    np.testing.assert_array_equal(wrapped.predict(images, verbose=0), model.predict(images, verbose=0))
    assert not augmentation_layers(model) and len(augmentation_layers(wrapped)) == 4
    assert len(augmentation_layers(build_augmentation(False, 0.0, 0.0, 0.1, image_size=SIZE))) == 1
    np.testing.assert_array_equal(
        build_augmentation(False, 0, 0, 0, image_size=SIZE).predict(images, verbose=0), images
    )


def test_augmented_copies_of_the_training_images_only(train_files: list[Path]) -> None:
    keras.utils.set_random_seed(0)
    backbone = tiny_backbone()
    identity = build_augmentation(False, 0, 0, 0, image_size=SIZE)
    labels = record_labels(train_files)
    _, all_labels = embed_augmented(backbone, train_files, np.ones(len(labels), bool), 8, identity, 1)
    np.testing.assert_array_equal(all_labels, labels)  # file order
    keep = np.arange(len(labels)) % 4 != 0  # the "training split"
    runs = [
        embed_augmented(backbone, train_files, keep, 8, build_augmentation(seed=7, image_size=SIZE), copies=2)
        for _ in range(2)
    ]
    (x_aug, y_aug), (again, _) = runs
    assert x_aug.shape == (2 * keep.sum(), 8) and x_aug.dtype == np.float32
    np.testing.assert_array_equal(y_aug, np.tile(labels[keep], 2))
    np.testing.assert_array_equal(x_aug, again)  # seeded
    first, second = x_aug[: keep.sum()], x_aug[keep.sum() :]
    assert not np.allclose(first, second)  # each copy drawn afresh
    plain, _ = embed_augmented(backbone, train_files, keep, 8, identity, 1)
    assert not np.allclose(first, plain)
    assert embed_augmented(backbone, train_files, keep, 8, build_augmentation(image_size=SIZE), 0)[0].shape == (0, 8)


def test_fine_tuning_with_augmentation_keeps_it_out_of_the_saved_and_exported_model(
    train_files: list[Path], tmp_path: Path
) -> None:
    from overseer.splits import stratified_split
    from overseer.trackbed import export

    keras.utils.set_random_seed(0)
    model = join(tiny_backbone(), build_head(input_dim=8, units=(4,)))
    is_val = stratified_split(record_labels(train_files), 0.25, 5)
    cfg = {
        **HEAD_CFG, "batch_size": 8, "seed": 5, "early_stopping_patience": 3,
        "class_weight": "balanced", "loss": "focal", "augment": {"enabled": True},
    }  # fmt: skip
    before = model.get_weights()
    history = fit_on_images(model, train_files, is_val, cfg, 2, 1e-2, tmp_path, "fine_tune")
    assert list(history["phase"]) == ["fine_tune"] * 2
    # the augmented wrapper trained the model's own weights, and the model has no augmentation in it
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights(), strict=True))
    assert not augmentation_layers(model)

    images = np.random.default_rng(2).uniform(0, 255, (4, SIZE, SIZE, 3)).astype(np.float32)
    first, second = save_keras(model, tmp_path / "a.keras"), save_keras(model, tmp_path / "b.keras")
    assert first.read_bytes() == second.read_bytes()
    loaded = keras.models.load_model(first, compile=False)
    assert not augmentation_layers(loaded)
    np.testing.assert_allclose(loaded.predict(images, verbose=0), model.predict(images, verbose=0), atol=1e-6)
    check = export.export_trackbed(first, tmp_path / "export", images, {"note": "augmented fine-tuning"})
    assert check["argmax_agreement"] == 1.0


def test_train_cnn_wires_all_three(train_files: list[Path], tmp_path: Path) -> None:
    """ResNet50V2 (random init) end to end: augmented copies for the head, with balanced weights and
    focal loss (fine-tuning with all three: the test above, on a tiny model)."""
    cfg = {
        "weights": "none", "learning_rate": 1e-3, "batch_size": 8, "epochs": 1, "early_stopping_patience": 6,
        "val_fraction": 0.25, "decay_steps": 10000, "decay_rate": 0.9, "dropout": 0.3, "head_units": [8],
        "standardize_embeddings": True, "seed": 5, "class_weight": "balanced", "loss": "focal", "focal_gamma": 2.0,
        "augment": {"enabled": True, "copies": 1}, "fine_tune": {"enabled": False},
    }  # fmt: skip
    result = trackbed_train.train_cnn(cfg, train_files, tmp_path)
    assert result.n_train == 15 and result.n_augmented == 15
    summary = result.summary()
    assert summary["n_train_augmented"] == 15 and "seconds_embed_augmented" in summary
    assert list(result.history["phase"]) == ["head"]
    assert not augmentation_layers(result.model)


def test_the_schema_knows_the_new_keys() -> None:
    from overseer import params as schema
    from overseer.errors import InputError

    base = {
        "weights": "none", "learning_rate": 1e-3, "batch_size": 8, "epochs": 1, "early_stopping_patience": 6,
        "val_fraction": 0.25, "decay_steps": 10000, "decay_rate": 0.9, "dropout": 0.3, "head_units": [8], "seed": 5,
    }  # fmt: skip
    good = {
        **base, "class_weight": "balanced", "loss": "focal", "focal_gamma": 0.5,
        "augment": {"enabled": True, "flip": False, "rotation": 0.1, "brightness": 0.0, "contrast": 0.2, "copies": 3},
    }  # fmt: skip
    schema.check_section(("train_cnn",), good)
    schema.check_section(("train_cnn",), {**base, "class_weight": None})
    for change, key in [
        ({"class_weight": "balanced_subsample"}, "train_cnn.class_weight"),
        ({"loss": "hinge"}, "train_cnn.loss"),
        ({"focal_gamma": -1.0}, "train_cnn.focal_gamma"),
        ({"augment": {"copies": -1}}, "train_cnn.augment.copies"),
        ({"augment": {"rotation": 2.0}}, "train_cnn.augment.rotation"),
        ({"augment": {"mixup": True}}, "train_cnn.augment.mixup"),
    ]:
        with pytest.raises(InputError, match=key.replace(".", r"\.")):
            schema.check_section(("train_cnn",), {**base, **change})
