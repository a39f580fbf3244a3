"""train_cnn on a handful of real default images: head on embeddings, then fine-tuning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from overseer.trackbed.data.ingest import ingest_trackbed
from overseer.trackbed.data.tfrecord import list_tfrecords
from overseer.trackbed.train import train_cnn

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
