"""tf.data input pipeline: TFRecord -> (image, label, filename).

Images come out as float32 RGB 224×224 in [0, 255]; the model itself applies ResNet50V2's
``preprocess_input`` scaling to [-1, 1] (a ``Rescaling`` layer), so every consumer of an exported
model — evaluation, ``overseer predict``, ONNX Runtime — feeds the same thing. The notebook
divided by 255 instead, which is not what ResNet50V2's ImageNet weights were trained on.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import tensorflow as tf

from overseer.trackbed.data.schema import IMAGE_SIZE

FEATURE_SPEC = {
    "image_filename": tf.io.FixedLenFeature([], tf.string),
    "image_raw": tf.io.FixedLenFeature([], tf.string),
    "height": tf.io.FixedLenFeature([], tf.int64),
    "width": tf.io.FixedLenFeature([], tf.int64),
    "depth": tf.io.FixedLenFeature([], tf.int64),
    "label": tf.io.FixedLenFeature([], tf.int64),
    "class_name": tf.io.FixedLenFeature([], tf.string),
}


def to_model_input(image: tf.Tensor, image_size: int = IMAGE_SIZE) -> tf.Tensor:
    """uint8 H×W×{1,3} -> float32 ``image_size``² RGB in [0, 255] (bilinear resize)."""
    image = tf.cond(tf.equal(tf.shape(image)[-1], 1), lambda: tf.image.grayscale_to_rgb(image), lambda: image)
    image = tf.image.resize(image, [image_size, image_size], method="bilinear")
    return tf.ensure_shape(tf.cast(image, tf.float32), [image_size, image_size, 3])


def decode_record(serialized: tf.Tensor, image_size: int = IMAGE_SIZE) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """One serialised Example -> (image, label, filename)."""
    fields = tf.io.parse_single_example(serialized, FEATURE_SPEC)
    shape = tf.stack([fields["height"], fields["width"], fields["depth"]])
    image = tf.reshape(tf.io.decode_raw(fields["image_raw"], tf.uint8), tf.cast(shape, tf.int32))
    return to_model_input(image, image_size), tf.cast(fields["label"], tf.int32), fields["image_filename"]


def image_dataset(
    files: Sequence[str | os.PathLike],
    batch_size: int,
    image_size: int = IMAGE_SIZE,
    shuffle_seed: int | None = None,
    shuffle_buffer: int = 640,
) -> tf.data.Dataset:
    """Batched (images, labels, filenames) of the TFRecord files, in file order unless shuffled."""
    dataset = tf.data.TFRecordDataset([os.fspath(f) for f in files])
    if shuffle_seed is not None:
        dataset = dataset.shuffle(shuffle_buffer, seed=shuffle_seed, reshuffle_each_iteration=True)
    dataset = dataset.map(lambda s: decode_record(s, image_size), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)
