"""Trackbed surface classification: TFRecord I/O, tf.data pipeline, ResNet50V2 transfer learning."""
