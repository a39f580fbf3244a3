"""train_cnn under a MirroredStrategy: two logical CPU devices stand in for two GPUs.

TensorFlow fixes its logical devices when it first initialises, so the mirrored run happens in a
fresh interpreter (the script below) that splits the CPU in two before anything else.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import tensorflow as tf

from overseer.trackbed.distribute import replica_batches, replicated_forward, training_strategy

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

    from overseer.trackbed.data.ingest import ingest_trackbed
    from overseer.trackbed.data.tfrecord import list_tfrecords
    from overseer.trackbed.distribute import training_strategy
    from overseer.trackbed.model import build_backbone
    from overseer.trackbed.train import embed, train_cnn

    out = Path(sys.argv[1])
    cfg = {"source": "default", "shard_size": 100, "seed": 5, "default": {"train_per_class": 2, "eval_per_class": 1}}
    ingest_trackbed(cfg, out / "trackbed")
    files = list_tfrecords(out / "trackbed" / "train")
    mirrored = training_strategy("mirrored", ["/cpu:0", "/cpu:1"])
    tf.keras.utils.set_random_seed(3)
    with mirrored.scope():
        backbone = build_backbone("none").model
    x_mirrored, y_mirrored, names_mirrored = embed(backbone, files, 3, mirrored)  # 10 images: batches 3,3,3,1
    x_plain, y_plain, names_plain = embed(backbone, files, 3)
    train = {
        "weights": "none", "learning_rate": 1e-3, "batch_size": 4, "epochs": 1, "early_stopping_patience": 6,
        "val_fraction": 0.3, "decay_steps": 10000, "decay_rate": 0.9, "dropout": 0.3, "head_units": [8],
        "standardize_embeddings": True, "seed": 5,
        "fine_tune": {"enabled": True, "unfreeze_from": "conv5_block3", "learning_rate": 1e-5, "epochs": 1},
    }
    result = train_cnn(train, files, out / "work", mirrored)
    probs = result.model.predict(np.zeros((2, 224, 224, 3), np.float32), verbose=0)
    print(json.dumps({
        "replicas": mirrored.num_replicas_in_sync,
        "max_abs_diff": float(np.abs(x_mirrored - x_plain).max()),
        "scale": float(np.abs(x_plain).max()),
        "same_order": names_mirrored == names_plain and bool((y_mirrored == y_plain).all()),
        "phases": list(result.history["phase"]),
        "val_loss_finite": bool(np.isfinite(result.history["val_loss"]).all()),
        "probs_sum": probs.sum(axis=1).tolist(),
        "variable": type(result.model.weights[0].value).__name__,
    }))
    """
)


@pytest.fixture(scope="module")
def mirrored_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("mirrored")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(out)], env=env, capture_output=True, text=True, timeout=600
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_mirrored_embedding_pass_splits_batches_in_order_and_equals_one_replica(mirrored_run: dict) -> None:
    assert mirrored_run["replicas"] == 2
    assert mirrored_run["same_order"]
    assert mirrored_run["max_abs_diff"] <= 1e-4 * max(1.0, mirrored_run["scale"])


def test_train_cnn_trains_and_fine_tunes_under_a_mirrored_strategy(mirrored_run: dict) -> None:
    assert mirrored_run["phases"] == ["head", "fine_tune"]
    assert mirrored_run["val_loss_finite"]
    assert mirrored_run["probs_sum"] == pytest.approx([1.0, 1.0], abs=1e-5)
    assert "Mirrored" in mirrored_run["variable"]  # the model's variables live on both replicas


def test_auto_is_the_default_strategy_without_two_gpus() -> None:
    if len(tf.config.list_logical_devices("GPU")) >= 2:
        pytest.skip("this machine has two GPUs: auto mirrors")
    assert training_strategy("auto") is tf.distribute.get_strategy()
    assert training_strategy("default") is tf.distribute.get_strategy()
    with pytest.raises(ValueError, match="tf_strategy: expected one of auto, default, mirrored, got 'ring'"):
        training_strategy("ring")


def test_one_replica_forwards_the_batch_as_it_is() -> None:
    images = tf.reshape(tf.range(12, dtype=tf.float32), (4, 3))
    out = replicated_forward(tf.distribute.get_strategy(), lambda x: x * 2.0, images)
    assert out.numpy().tolist() == (images * 2.0).numpy().tolist()


def test_batches_split_evenly_over_the_replicas() -> None:
    data = tf.data.Dataset.range(9)
    assert [int(b.shape[0]) for b in replica_batches(data, 9, 4, 1, "images")] == [4, 4, 1]  # one replica: as is
    assert [int(b.shape[0]) for b in replica_batches(data, 9, 4, 2, "images")] == [4, 4]  # the odd one left out
    assert [int(b.shape[0]) for b in replica_batches(data, 9, 5, 2, "images")] == [4, 4]  # batch 5 -> 4
    assert [int(b.shape[0]) for b in replica_batches(tf.data.Dataset.range(10), 10, 4, 2, "images")] == [4, 4, 2]
    with pytest.raises(ValueError, match="1 validation images cannot be split over 2 replicas"):
        replica_batches(tf.data.Dataset.range(1), 1, 4, 2, "validation images")
