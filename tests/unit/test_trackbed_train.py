"""train_cnn on a few real default images (head on embeddings, fine-tuning); train_head on tiny embeddings."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from overseer.trackbed.data.ingest import ingest_trackbed
from overseer.trackbed.data.tfrecord import list_tfrecords
from overseer.trackbed.train import set_determinism, train_cnn, train_head

CFG = {
    "weights": "none",
    "learning_rate": 1e-3,
    "batch_size": 8,
    "epochs": 2,
    "early_stopping_patience": 6,
    "val_fraction": 0.25,
    "decay_steps": 10000,
    "decay_rate": 0.9,
    "dropout": 0.3,
    "head_units": [16, 8],
    "standardize_embeddings": True,
    "seed": 5,
    "fine_tune": {"enabled": True, "unfreeze_from": "conv5_block3", "learning_rate": 1e-5, "epochs": 1},
}


@pytest.fixture(scope="module")
def train_files(tmp_path_factory) -> list[Path]:
    out = tmp_path_factory.mktemp("prepared")
    cfg = {"source": "default", "shard_size": 100, "seed": 5, "default": {"train_per_class": 4, "eval_per_class": 1}}
    ingest_trackbed(cfg, out / "trackbed")
    return list_tfrecords(out / "trackbed" / "train")


def test_train_then_fine_tune(train_files: list[Path], tmp_path: Path) -> None:
    result = train_cnn(CFG, train_files, tmp_path)
    history = result.history
    assert list(history["phase"]) == ["head", "head", "fine_tune"]
    assert list(history["epoch"]) == [1, 2, 3]
    assert result.n_train + result.n_val == 20 and result.n_val == 5  # one per class held for validation
    summary = result.summary()
    assert summary["weights_used"] == "none (random init)"
    assert summary["best_val_loss"] == pytest.approx(history["val_loss"].min())
    assert {"seconds_embed", "seconds_fit_head", "seconds_fine_tune"} <= set(summary)
    probs = result.model.predict(np.zeros((1, 224, 224, 3), np.float32), verbose=0)
    assert probs.shape == (1, 5) and probs.sum() == pytest.approx(1.0, abs=1e-5)


def test_same_seed_same_model(train_files: list[Path], tmp_path: Path) -> None:
    cfg = {**CFG, "fine_tune": {"enabled": False}}
    first = train_cnn(cfg, train_files, tmp_path / "a")
    second = train_cnn(cfg, train_files, tmp_path / "b")
    for a, b in zip(first.model.get_weights(), second.model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


HEAD_CFG = {**CFG, "learning_rate": 3e-2, "epochs": 6, "early_stopping_patience": 2, "head_units": [8]}


def tiny_embeddings() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(5), 6)
    x = (rng.normal(0, 0.02, (30, 2048)) + 0.01 * y[:, None] * (np.arange(2048) % 5 == 0)).astype(np.float32)
    val = np.arange(30) % 6 == 0
    return x[~val], y[~val], x[val], y[val]


def test_head_per_epoch_callback_sees_every_epoch_and_changes_nothing(tmp_path: Path) -> None:
    x_train, y_train, x_val, y_val = tiny_embeddings()
    set_determinism(5)
    plain, plain_history = train_head(x_train, y_train, x_val, y_val, HEAD_CFG, tmp_path / "a", verbose=0)
    seen: list[tuple[int, int]] = []
    set_determinism(5)
    watched, history = train_head(
        x_train, y_train, x_val, y_val, HEAD_CFG, tmp_path / "b", verbose=0,
        on_epoch=lambda epoch, head: seen.append((epoch, len(head.predict(x_val, verbose=0)))),
    )  # fmt: skip
    assert seen == [(epoch, len(x_val)) for epoch in range(len(history))]
    pd.testing.assert_frame_equal(history, plain_history)
    for a, b in zip(plain.get_weights(), watched.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    # the head that comes back has the best epoch's weights (its validation loss is the history's minimum)
    probs = watched.predict(x_val, verbose=0)
    loss = float(keras.losses.categorical_crossentropy(keras.utils.to_categorical(y_val, 5), probs).numpy().mean())
    assert loss == pytest.approx(history["val_loss"].min(), rel=1e-4)


def test_an_exception_from_the_epoch_callback_ends_the_fit(tmp_path: Path) -> None:
    x_train, y_train, x_val, y_val = tiny_embeddings()
    epochs: list[int] = []

    def stop(epoch: int, head: keras.Model) -> None:
        epochs.append(epoch)
        raise KeyboardInterrupt  # any exception, e.g. optuna.TrialPruned

    with pytest.raises(KeyboardInterrupt):
        train_head(x_train, y_train, x_val, y_val, HEAD_CFG, tmp_path, on_epoch=stop, verbose=0)
    assert epochs == [0]
