"""The model: preprocessing inside, backbone/head split equivalent to the notebook's joined model."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from overseer.trackbed import model as trackbed_model
from overseer.trackbed.model import build_backbone, build_head, compile_for_training, join
from overseer.trackbed.train import unfreeze_top

SIZE = 64  # ResNet50V2 accepts inputs down to 32×32; small keeps the tests fast


@pytest.fixture(scope="module")
def backbone() -> trackbed_model.Backbone:
    keras.utils.set_random_seed(0)
    return build_backbone("none", image_size=SIZE)


def test_preprocessing_is_resnet_v2_preprocess_input(backbone) -> None:
    images = np.random.default_rng(0).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
    scaling = backbone.model.get_layer("resnet_v2_preprocess")
    expected = keras.applications.resnet_v2.preprocess_input(images.copy())
    np.testing.assert_allclose(np.asarray(scaling(images)), expected, atol=1e-6)
    assert np.asarray(scaling(images)).min() >= -1.0 and np.asarray(scaling(images)).max() <= 1.0


def test_backbone_is_frozen_and_records_weights(backbone) -> None:
    assert backbone.weights_used == "none (random init)"
    assert not backbone.model.trainable_weights


def test_offline_imagenet_falls_back_loudly(monkeypatch, caplog) -> None:
    real = keras.applications.ResNet50V2

    def offline(*args, weights=None, **kwargs):
        if weights == "imagenet":
            raise Exception("URL fetch failure: Name or service not known")  # what Keras raises offline
        return real(*args, weights=weights, **kwargs)

    monkeypatch.setattr(keras.applications, "ResNet50V2", offline)
    result = build_backbone("imagenet", image_size=SIZE)
    assert result.weights_used == "none (random init; imagenet unavailable)"
    assert result.weights_requested == "imagenet"
    assert "NOT available" in caplog.text


def test_local_weights_file_is_loaded_and_recorded(tmp_path: Path, backbone) -> None:
    resnet = next(layer for layer in backbone.model.layers if isinstance(layer, keras.Model))
    path = tmp_path / "resnet.weights.h5"
    resnet.save_weights(path)
    loaded = build_backbone(str(path), image_size=SIZE)
    assert loaded.weights_used.startswith(f"file:{path} md5:")
    images = np.random.default_rng(1).uniform(0, 255, (2, SIZE, SIZE, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded.model.predict(images, verbose=0), backbone.model.predict(images, verbose=0))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_backbone(str(tmp_path / "missing.h5"), image_size=SIZE)


def test_head_on_embeddings_trains_exactly_like_the_joined_model(backbone) -> None:
    """One optimisation step on cached embeddings == one step of the notebook's image loop."""
    rng = np.random.default_rng(2)
    images = rng.uniform(0, 255, (8, SIZE, SIZE, 3)).astype(np.float32)
    labels = keras.utils.to_categorical(rng.integers(0, 5, 8), 5)
    embeddings = backbone.model.predict(images, verbose=0)

    keras.utils.set_random_seed(3)
    head_a = build_head(dropout=0.0)  # dropout masks are random: switch it off to compare exactly
    head_b = build_head(dropout=0.0)
    head_b.set_weights(head_a.get_weights())
    joined = join(backbone.model, head_b)
    compile_for_training(head_a, 1e-3)
    compile_for_training(joined, 1e-3)
    head_a.train_on_batch(embeddings, labels)
    joined.train_on_batch(images, labels)
    for a, b in zip(head_a.get_weights(), head_b.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(joined.predict(images, verbose=0), head_a.predict(embeddings, verbose=0), atol=1e-5)


def test_standardisation_is_part_of_the_head() -> None:
    mean, var = np.full(4, 2.0, np.float32), np.full(4, 4.0, np.float32)
    head = build_head(input_dim=4, units=(3,), feature_mean=mean, feature_var=var, dropout=0.0)
    standardize = head.get_layer("standardize")
    np.testing.assert_allclose(np.asarray(standardize(np.array([[4.0, 2.0, 0.0, 6.0]], np.float32))), [[1, 0, -1, 2]])


def test_unfreeze_top_stage_keeps_batchnorm_frozen(backbone) -> None:
    keras.utils.set_random_seed(0)
    fresh = build_backbone("none", image_size=SIZE)
    model = join(fresh.model, build_head())
    count = unfreeze_top(model, "conv5_block3")
    resnet = next(layer for layer in fresh.model.layers if isinstance(layer, keras.Model))
    trainable = [layer for layer in resnet.layers if layer.trainable]
    assert count == len(trainable) > 0
    assert all(layer.name.startswith(("conv5_block3", "post", "avg_pool")) for layer in trainable)
    assert any(layer.trainable_weights for layer in trainable)
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in trainable)
    with pytest.raises(ValueError, match="no ResNet50V2 layer named conv9"):
        unfreeze_top(model, "conv9")
