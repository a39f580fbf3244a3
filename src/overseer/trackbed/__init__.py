"""Trackbed surface classification: TFRecord I/O, tf.data pipeline, ResNet50V2 transfer learning."""

from overseer.trackbed.data.schema import CLASSES, IMAGE_SIZE

__all__ = ["CLASSES", "IMAGE_SIZE"]
