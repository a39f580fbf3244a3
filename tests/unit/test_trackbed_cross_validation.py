"""Cross-validation of the trackbed head: groups (shards, provenance sources and sub-folders,
stratified fallback), folds, one backbone pass, fold scores against a hand-run of train_head."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

from overseer.io import write_artifacts
from overseer.metrics import classification_report
from overseer.splits import stratified_split
from overseer.trackbed import train as train_module
from overseer.trackbed.cross_validation import (
    assign_folds,
    cross_validate_head,
    cross_validate_trackbed,
    embed_once,
    fold_groups,
)
from overseer.trackbed.data.ingest import ingest_trackbed
from overseer.trackbed.data.schema import CLASSES
from overseer.trackbed.data.tfrecord import PROVENANCE_FILE, list_tfrecords
from overseer.trackbed.model import Backbone
from overseer.trackbed.train import set_determinism, train_head

CFG = {
    "weights": "none",
    "learning_rate": 3e-2,
    "batch_size": 8,
    "epochs": 3,
    "early_stopping_patience": 2,
    "val_fraction": 0.25,
    "decay_steps": 10000,
    "decay_rate": 0.9,
    "dropout": 0.3,
    "head_units": [8],
    "standardize_embeddings": True,
    "seed": 5,
    "fine_tune": {"enabled": False},
}


def records(shards: int, per_shard: int) -> pd.DataFrame:
    return pd.DataFrame(
        [(f"train/train-{s:05d}-of-{shards:05d}.tfrecord", r) for s in range(shards) for r in range(per_shard)],
        columns=["shard", "record"],
    )


def provenance(table: pd.DataFrame, source: list[str], source_record: list, names: list) -> pd.DataFrame:
    out = table.copy()
    out["source"], out["image_filename"] = source, names
    out["source_record"] = pd.array(source_record, dtype="Int64")
    return out[["shard", "record", "source", "source_record", "image_filename"]]


def test_groups_are_shards_when_there_are_enough() -> None:
    table = records(shards=4, per_shard=3)
    grouping = fold_groups(table, None, k=3)
    assert grouping.kind == "shards" and grouping.n_groups == 4
    assert list(grouping.groups[:4]) == ["train/train-00000-of-00004.tfrecord"] * 3 + [
        "train/train-00001-of-00004.tfrecord"
    ]


def test_groups_are_provenance_sources_with_few_shards() -> None:
    table = records(shards=1, per_shard=6)
    files = [f"data/raw/part{i % 3}.tfrecord" for i in range(6)]
    prov = provenance(table, files, list(range(6)), [f"img{i}.png" for i in range(6)])
    grouping = fold_groups(table, prov, k=3)
    assert grouping.kind == "sources" and list(grouping.groups) == files


def test_groups_are_sub_folders_of_an_image_folder_never_class_folders() -> None:
    table = records(shards=1, per_shard=6)
    names = [f"{CLASSES[i % 2]}/site_{i % 3}/x{i}.png" for i in range(6)]
    prov = provenance(table, [f"data/raw/photos/{n}" for n in names], [None] * 6, names)
    grouping = fold_groups(table, prov, k=3)
    assert grouping.kind == "folders"
    assert list(grouping.groups) == [f"data/raw/photos:site_{i % 3}" for i in range(6)]
    with pytest.raises(ValueError, match=r"by sources: .*1 sources"):  # one image folder is one source
        fold_groups(table, prov, k=3, by="sources")


def test_fallback_to_stratified_folds_says_so() -> None:
    table = records(shards=1, per_shard=5)
    names = [f"default/train/{c}/{c.lower()}_0001.png" for c in CLASSES]  # the embedded default set
    default = provenance(table, ["default"] * 5, list(range(5)), names)
    for prov in (default, None):
        grouping = fold_groups(table, prov, k=3)
        assert grouping.kind == "stratified" and grouping.groups is None
        assert "stratified 3 folds of images" in grouping.note and "1 shards" in grouping.note
    with pytest.raises(ValueError, match="by shards"):
        fold_groups(table, None, k=3, by="shards")


@pytest.mark.parametrize("n_groups", [None, 3, 7])
def test_every_image_held_out_exactly_once_and_groups_stay_whole(n_groups: int | None) -> None:
    labels = np.repeat(np.arange(5), 6)
    groups = None if n_groups is None else np.array([f"g{i % n_groups}" for i in range(labels.size)], dtype=object)
    folds = assign_folds(labels, groups, k=3, seed=0)
    assert folds.shape == labels.shape and set(folds) == {0, 1, 2}  # each image in one fold, no fold empty
    if groups is not None:
        assert all(len(set(folds[groups == g])) == 1 for g in set(groups))
        if n_groups == 3:
            assert len({(g, f) for g, f in zip(groups, folds, strict=True)}) == 3  # one group per fold
    else:
        assert all(np.bincount(labels[folds == f], minlength=5).min() == 2 for f in range(3))  # stratified


def tiny_embeddings() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(5), 8)
    x = (rng.normal(0, 0.02, (40, 2048)) + 0.01 * y[:, None] * (np.arange(2048) % 5 == 0)).astype(np.float32)
    return x, y, np.array([f"g{i % 4}" for i in range(40)], dtype=object)


def test_fold_scores_equal_a_hand_run_and_summary_is_mean_and_std(tmp_path: Path) -> None:
    x, y, groups = tiny_embeddings()
    result = cross_validate_head(x, y, groups, CFG, k=2, seed=3, workdir=tmp_path / "cv")
    folds = result.folds
    assert list(folds["fold"]) == [0, 1] and folds["n_groups"].tolist() == [2, 2]
    assert (folds["n_train"] + folds["n_val"] + folds["n_test"] == 40).all() and folds["n_test"].sum() == 40
    assert sorted(result.predictions["item"].astype(int)) == list(range(40))  # each image predicted once

    # fold 0 by hand: train_cnn's head on the other fold, its stratified validation split, the same seed
    fold = result.predictions["fold"].to_numpy()
    train, test = np.flatnonzero(fold != 0), np.flatnonzero(fold == 0)
    set_determinism(CFG["seed"])
    is_val = stratified_split(y[train], CFG["val_fraction"], CFG["seed"])
    fit, val = train[~is_val], train[is_val]
    head, _ = train_head(x[fit], y[fit], x[val], y[val], CFG, tmp_path / "hand", verbose=0)
    report = classification_report(
        y[test], head.predict(x[test], batch_size=CFG["batch_size"], verbose=0).argmax(axis=1), CLASSES
    )
    assert folds.loc[0, "macro_f1"] == report.macro["f1"] and folds.loc[0, "accuracy"] == report.accuracy

    summary = result.summary()
    scores = folds["macro_f1"].to_numpy()
    assert summary["macro_f1"]["mean"] == pytest.approx((scores[0] + scores[1]) / 2)
    assert summary["macro_f1"]["std"] == pytest.approx(abs(scores[0] - scores[1]) / 2)  # ddof=0
    assert summary["per_fold_macro_f1"] == scores.tolist() and summary["n_images"] == 40
    assert result.flat_metrics()["cv_accuracy_std"] == pytest.approx(np.std(folds["accuracy"]))


def fake_backbone() -> Backbone:
    """224×224×3 -> 2048 in a few thousand multiply-adds: colour means through a seeded dense layer."""
    inputs = keras.Input((224, 224, 3))
    x = keras.layers.AveragePooling2D(56)(inputs)
    x = keras.layers.Dense(2048, kernel_initializer=keras.initializers.RandomNormal(seed=0))(keras.layers.Flatten()(x))
    return Backbone(keras.Model(inputs, x, name="fake_backbone"), "fake", "fake")


@pytest.fixture(scope="module")
def prepared(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("prepared") / "trackbed"
    cfg = {"source": "default", "shard_size": 5, "seed": 5, "default": {"train_per_class": 3, "eval_per_class": 1}}
    ingest_trackbed(cfg, out)
    return out


def test_trackbed_embeds_once_caches_and_holds_out_shards(
    prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real_embed = train_module.embed

    def counting_embed(*args, **kwargs):
        calls.append(1)
        return real_embed(*args, **kwargs)

    monkeypatch.setattr(train_module, "embed", counting_embed)
    monkeypatch.setattr("overseer.trackbed.model.build_backbone", lambda weights: fake_backbone())
    files = list_tfrecords(prepared / "train")
    assert len(files) == 3  # 15 images in shards of 5
    result = cross_validate_trackbed(CFG, files, prepared / PROVENANCE_FILE, tmp_path / "work", k=3)
    assert calls == [1] and result.run_time["cache"] == "miss" and result.weights_used == "fake"
    assert result.grouping.kind == "shards" and len(result.folds) == 3
    assert result.folds["held_out"].tolist() == [f"train/{f.name}" for f in files]  # one shard per fold
    assert (result.folds["n_test"] == 5).all() and len(result.predictions) == 15

    again = cross_validate_trackbed(CFG, files, prepared / PROVENANCE_FILE, tmp_path / "work", k=3)
    assert calls == [1] and again.run_time["cache"] == "hit"  # embeddings from the cache, no backbone
    pd.testing.assert_frame_equal(again.folds, result.folds)

    written = write_artifacts(tmp_path / "report", result.artifacts())
    assert sorted(written) == [
        "cv_evaluation.json", "cv_folds.csv", "cv_macro_f1.png", "cv_predictions.csv", "cv_summary.json"
    ]  # fmt: skip
    # numbers only in the metrics file (DVC tabulates every string); the words beside it
    summary = json.loads(written["cv_summary.json"].read_text())
    assert not [k for k, v in summary.items() if isinstance(v, str)] and "weights_used" not in summary
    described = json.loads(written["cv_evaluation.json"].read_text())
    assert described["grouping"] == "shards" and described["weights_used"] == "fake"
    assert pd.read_csv(written["cv_folds.csv"])["macro_f1"].tolist() == pytest.approx(result.folds["macro_f1"].tolist())


def test_augmented_copies_embedded_once_and_fit_only_with_their_training_images(
    prepared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real_embed, real_augmented = train_module.embed, train_module.embed_augmented
    monkeypatch.setattr(train_module, "embed", lambda *a, **kw: calls.append("embed") or real_embed(*a, **kw))
    monkeypatch.setattr(
        train_module, "embed_augmented", lambda *a, **kw: calls.append("augmented") or real_augmented(*a, **kw)
    )
    cfg = {**CFG, "augment": {"enabled": True, "rotation": 0.0, "copies": 1}}
    files = list_tfrecords(prepared / "train")
    result = cross_validate_trackbed(cfg, files, None, tmp_path, k=3, backbone=fake_backbone())
    assert calls == ["embed", "augmented"]
    assert (result.folds["n_augmented"] == result.folds["n_train"]).all()  # one copy of each fitted image
    cached = embed_once(cfg, files, tmp_path, backbone=fake_backbone())
    assert calls == ["embed", "augmented"] and cached.cached and cached.augmented.x.shape == (15, 2048)
    np.testing.assert_array_equal(cached.augmented.source, np.arange(15))
