"""ingest@trackbed: train and evaluation TFRecord shards from the default set, image folders or
users' TFRecord files (whose records pass through byte for byte)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from overseer.errors import InputError
from overseer.io import atomic_dir
from overseer.splits import stratified_split
from overseer.trackbed.data import synthetic
from overseer.trackbed.data.images import read_image, scan_image_folder
from overseer.trackbed.data.schema import CLASSES, decode_fields, encode_example
from overseer.trackbed.data.tfrecord import is_tfrecord_source, iter_raw_records, list_tfrecords, write_shards

SPLITS = ("train", "eval")


class _Source:
    """A set of records to write: a count, labels and a lazy iterator of serialised Examples."""

    def __init__(self, labels: list[int], make: Any):
        self.labels = labels
        self._make = make

    def records(self, order: np.ndarray) -> Iterator[bytes]:
        return (self._make(int(i)) for i in order)


def _folder_source(root: str | os.PathLike) -> _Source:
    items = scan_image_folder(root)
    base = Path(root)

    def make(i: int) -> bytes:
        path, label = items[i]
        return encode_example(path.relative_to(base).as_posix(), read_image(path), label)

    return _Source([label for _, label in items], make)


def _tfrecord_source(source: str | os.PathLike) -> _Source:
    """Raw records of users' TFRecord files; labels read from each record for splitting/counting."""
    raws: list[bytes] = []
    labels: list[int] = []
    for path in list_tfrecords(source):
        for index, raw in iter_raw_records(path):
            try:
                label = decode_fields(raw)["label"]
            except ValueError as exc:
                raise InputError(str(exc), path=path, record=index) from None
            if label is None or not 0 <= label < len(CLASSES):
                raise InputError(f"label {label} is not an int64 in 0..{len(CLASSES) - 1}", path=path, record=index)
            raws.append(raw)
            labels.append(label)
    return _Source(labels, raws.__getitem__)


def _default_source(split: str, cfg: Mapping[str, Any], seed: int) -> _Source:
    images = list(synthetic.generate(split, int(cfg[f"{split}_per_class"]), seed))
    return _Source(
        [im.label for im in images], lambda i: encode_example(images[i].filename, images[i].image, images[i].label)
    )


def _open(source: str | os.PathLike) -> _Source:
    return _tfrecord_source(source) if is_tfrecord_source(source) else _folder_source(source)


def ingest_trackbed(cfg: Mapping[str, Any], out_dir: str | os.PathLike) -> dict[str, Any]:
    """Write ``out_dir/train`` and ``out_dir/eval`` TFRecord shards; return the ingest report.

    ``cfg``: ``source`` ("default", an image folder, a TFRecord file/folder/glob),
    ``eval_source`` (optional, same kinds; otherwise ``eval_fraction`` of ``source`` is held out,
    stratified by class), ``shard_size``, ``seed`` and ``default`` (per-class counts of the
    embedded set). The whole folder appears only when every shard is complete.
    """
    seed = int(cfg.get("seed", 0))
    source = str(cfg.get("source", "default"))
    eval_source = cfg.get("eval_source")
    if source == "default":
        splits = {split: _default_source(split, cfg["default"], seed) for split in SPLITS}
        orders = {split: np.arange(len(splits[split].labels)) for split in SPLITS}
    elif eval_source:
        splits = {"train": _open(source), "eval": _open(eval_source)}
        orders = {s: np.random.default_rng([seed, i]).permutation(len(splits[s].labels)) for i, s in enumerate(SPLITS)}
    else:
        whole = _open(source)
        labels = np.asarray(whole.labels)
        held_out = stratified_split(labels, float(cfg.get("eval_fraction", 0.2)), seed)
        rng = np.random.default_rng(seed)
        splits = {"train": whole, "eval": whole}
        orders = {
            "train": rng.permutation(np.flatnonzero(~held_out)),
            "eval": rng.permutation(np.flatnonzero(held_out)),
        }

    report: dict[str, Any] = {"source": source, "eval_source": eval_source, "splits": {}}
    with atomic_dir(out_dir) as tmp:
        for split in SPLITS:
            order = orders[split]
            labels = [splits[split].labels[i] for i in order]
            shards = write_shards(
                splits[split].records(order), tmp / split, split, total=len(order), shard_size=int(cfg["shard_size"])
            )
            counts = Counter(CLASSES[label] for label in labels)
            report["splits"][split] = {
                "records": len(order),
                "shards": len(shards),
                "per_class": {name: counts.get(name, 0) for name in CLASSES},
            }
    return report
