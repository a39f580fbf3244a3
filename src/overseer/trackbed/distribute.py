"""Which ``tf.distribute`` strategy trains the trackbed CNN, and a forward pass split across its replicas.

``train_cnn`` builds, embeds, trains the head and fine-tunes under one strategy
(:func:`training_strategy`): on one CPU or one GPU TensorFlow's default strategy (nothing changes),
with two or more GPUs a ``MirroredStrategy`` over all of them — synchronous data parallelism, each
replica a copy of the model, gradients all-reduced every step (NCCL on GPUs). Keras' ``fit`` splits
every global batch across the replicas by itself once the model is built and compiled in the
strategy's scope; the embedding pass is a plain inference loop, so :func:`replicated_forward` splits
each batch itself (in order, so embeddings, labels and file names stay aligned).

Why not shard the embedding pass over Dask workers: one ResNet50V2 forward is ~4 GFLOP per image; a
data set that is too slow for the GPUs of one machine is one whose TFRecords would be sharded by
file anyway, and every worker would need its own copy of TensorFlow and the weights — ``dvc exp run
--queue`` over disjoint shard lists does that with no new code. See ``docs/scaling-out.md``.

The strategy is a run-time setting (``tf_strategy`` / ``OVERSEER_TF_STRATEGY``: auto | default |
mirrored), not a param: it changes how fast a model trains, not which model (up to the
floating-point order of the all-reduce).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import tensorflow as tf

log = logging.getLogger(__name__)

STRATEGIES = ("auto", "default", "mirrored")


def training_strategy(kind: str = "auto", devices: list[str] | None = None) -> tf.distribute.Strategy:
    """The strategy for ``kind``: ``default`` (TensorFlow's no-op strategy), ``mirrored``
    (``MirroredStrategy`` over ``devices``, default every GPU; on a machine without GPUs, the CPU),
    or ``auto``: mirrored where two or more GPUs are visible, else default."""
    if kind not in STRATEGIES:
        raise ValueError(f"tf_strategy: expected one of {', '.join(STRATEGIES)}, got {kind!r}")
    gpus = tf.config.list_logical_devices("GPU")
    if kind == "default" or (kind == "auto" and len(gpus) < 2 and devices is None):
        return tf.distribute.get_strategy()
    strategy = tf.distribute.MirroredStrategy(devices)
    log.info("trackbed: MirroredStrategy over %d replicas (%s)", strategy.num_replicas_in_sync, devices or "GPUs")
    return strategy


def replicated_forward(
    strategy: tf.distribute.Strategy, forward: Callable[[tf.Tensor], tf.Tensor], images: tf.Tensor
) -> tf.Tensor:
    """``forward(images)``, with the batch split in order across the strategy's replicas and the
    outputs gathered back in the same order (one call of ``forward`` where there is one replica, or
    fewer images than replicas: an empty part would not pass TensorFlow's batch-norm kernels)."""
    n = strategy.num_replicas_in_sync
    if n == 1 or int(images.shape[0]) < n:
        return forward(images)
    bounds = np.linspace(0, int(images.shape[0]), n + 1).astype(int)  # contiguous, as even as can be

    def part(context: tf.distribute.experimental.ValueContext) -> tf.Tensor:
        i = context.replica_id_in_sync_group
        return images[bounds[i] : bounds[i + 1]]

    per_replica = strategy.experimental_distribute_values_from_function(part)
    return strategy.gather(strategy.run(forward, args=(per_replica,)), axis=0)


def replica_batches(data: tf.data.Dataset, count: int, batch_size: int, replicas: int, what: str) -> tf.data.Dataset:
    """``data`` (``count`` elements, already shuffled where it should be) in batches that split evenly
    over ``replicas``: one batch of ``batch_size`` per step on one replica, unchanged.

    Keras gives each replica an equal share of every global batch; TensorFlow's kernels refuse an
    empty share and an unequal one (checked on CPU replicas). So with R > 1 replicas the batch size
    is rounded down to a multiple of R (at least R) and the last ``count % R`` elements of each
    epoch are left out (with shuffling, different ones each epoch), with a warning."""
    if replicas <= 1:
        return data.batch(batch_size)
    size = max(replicas, batch_size - batch_size % replicas)
    usable = int(count) - int(count) % replicas
    if usable == 0:
        raise ValueError(
            f"train_cnn: {count} {what} cannot be split over {replicas} replicas; "
            "use more images or OVERSEER_TF_STRATEGY=default"
        )
    if size != batch_size:
        log.warning("train_cnn: batch %d -> %d to split evenly over %d replicas", batch_size, size, replicas)
    if usable < count:
        log.warning("train_cnn: %d of %d %s left out of each epoch (not divisible by %d replicas)",
                    count - usable, count, what, replicas)  # fmt: skip
    return data.take(usable).batch(size)
