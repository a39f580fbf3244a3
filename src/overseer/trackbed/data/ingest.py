"""ingest@trackbed: train and evaluation TFRecord shards from the default set, image folders or
users' TFRecord files (whose records pass through byte for byte), and a provenance table that
names, for every prepared record, the user's file and record it came from."""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from overseer.errors import InputError
from overseer.io import atomic_dir
from overseer.repo import repo_root
from overseer.splits import stratified_split
from overseer.trackbed.data import synthetic
from overseer.trackbed.data.images import IMAGE_SUFFIXES, read_image, scan_image_folder
from overseer.trackbed.data.schema import CLASSES, decode_fields, encode_example
from overseer.trackbed.data.tfrecord import (
    DEFAULT_SOURCE,
    PROVENANCE_FILE,
    is_tfrecord_source,
    iter_raw_records,
    list_tfrecords,
    write_provenance,
    write_shards,
)

SPLITS = ("train", "eval")

#: where a record came from: (source file or "default", index in that file or None, image_filename)
Origin = tuple[str, int | None, str | None]


class _Source:
    """A set of records to write: labels, where each came from and a lazy iterator of serialised
    Examples (``make(i)`` is record ``i``)."""

    def __init__(self, labels: list[int], make: Any, origins: list[Origin]):
        self.labels = labels
        self.origins = origins
        self._make = make

    def records(self, order: np.ndarray) -> Iterator[bytes]:
        return (self._make(int(i)) for i in order)


def source_label(path: str | os.PathLike) -> str:
    """``path`` as the provenance table and messages show it: relative to the repository root
    when it lies inside it, else as given (POSIX separators)."""
    target = Path(path)
    if target.is_absolute():
        with contextlib.suppress(ValueError):
            return target.resolve().relative_to(repo_root()).as_posix()
    return target.as_posix()


def _folder_source(root: str | os.PathLike) -> _Source:
    items = scan_image_folder(root)
    base = Path(root)
    names = [path.relative_to(base).as_posix() for path, _ in items]

    def make(i: int) -> bytes:
        path, label = items[i]
        return encode_example(names[i], read_image(path), label)

    folder = source_label(base)
    origins: list[Origin] = [((Path(folder) / name).as_posix(), None, name) for name in names]
    return _Source([label for _, label in items], make, origins)


def _tfrecord_source(source: str | os.PathLike) -> _Source:
    """Raw records of users' TFRecord files; labels read from each record for splitting/counting."""
    raws: list[bytes] = []
    labels: list[int] = []
    origins: list[Origin] = []
    for path in list_tfrecords(source):
        label_of = source_label(path)
        for index, raw in iter_raw_records(path):
            try:
                fields = decode_fields(raw)
            except ValueError as exc:
                raise InputError(str(exc), path=path, record=index) from None
            label = fields["label"]
            if label is None or not 0 <= label < len(CLASSES):
                raise InputError(f"label {label} is not an int64 in 0..{len(CLASSES) - 1}", path=path, record=index)
            name = fields["image_filename"]
            raws.append(raw)
            labels.append(label)
            origins.append((label_of, index, None if name is None else name.decode("utf-8", errors="replace")))
    if not raws:
        raise InputError("no records in the TFRecord file(s) (empty file?)", path=source)
    return _Source(labels, raws.__getitem__, origins)


def _default_source(split: str, cfg: Mapping[str, Any], seed: int) -> _Source:
    images = list(synthetic.generate(split, int(cfg[f"{split}_per_class"]), seed))
    return _Source(
        [im.label for im in images],
        lambda i: encode_example(images[i].filename, images[i].image, images[i].label),
        [(DEFAULT_SOURCE, i, im.filename) for i, im in enumerate(images)],
    )


def _open(source: str | os.PathLike, key: str) -> _Source:
    """The records of ``source`` (params key ``key``): TFRecord files or an image folder."""
    path = Path(source)
    if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        raise InputError(
            f"{key} is a single image; give a folder with one sub-folder per class {list(CLASSES)} or TFRecord files",
            path=source,
        )
    if path.is_file() or is_tfrecord_source(source):  # any other file is read as TFRecord
        return _tfrecord_source(source)
    if path.is_dir():
        return _folder_source(source)
    raise InputError(
        f"{key} not found (expected an image folder, a TFRecord file or folder, or a glob of TFRecord files)",
        path=source,
    )


def _check_split_sizes(orders: Mapping[str, np.ndarray], source: str, fraction: float) -> None:
    """Both splits need records: a tiny source held out by ``eval_fraction`` may leave one empty."""
    for split, order in orders.items():
        if len(order) == 0:
            total = sum(len(o) for o in orders.values())
            raise InputError(
                f"{total} records: holding out eval_fraction={fraction:g} of each class leaves no {split} "
                "records; add records (at least two of a class) or give ingest.trackbed.eval_source",
                path=source,
            )


def _provenance_rows(
    origins: list[Origin], order: np.ndarray, shards: list[Path], split: str, shard_size: int
) -> Iterator[tuple]:
    """Provenance rows of one split: prepared shard and index, then where the record came from."""
    for position, item in enumerate(order):
        shard = shards[position // shard_size]
        yield (f"{split}/{shard.name}", position % shard_size, *origins[int(item)])


def ingest_trackbed(cfg: Mapping[str, Any], out_dir: str | os.PathLike) -> dict[str, Any]:
    """Write ``out_dir/train`` and ``out_dir/eval`` TFRecord shards and ``out_dir/provenance.csv``;
    return the ingest report.

    ``cfg``: ``source`` ("default", an image folder, a TFRecord file/folder/glob),
    ``eval_source`` (optional, same kinds; otherwise ``eval_fraction`` of ``source`` is held out,
    stratified by class), ``shard_size``, ``seed`` and ``default`` (per-class counts of the
    embedded set). The provenance table names, per prepared record, the user's file, the record's
    index in it and its ``image_filename``, so that validation can name them. The whole folder
    appears only when every shard is complete.
    """
    seed = int(cfg.get("seed", 0))
    source = str(cfg.get("source", "default"))
    eval_source = cfg.get("eval_source")
    if source == "default":
        splits = {split: _default_source(split, cfg["default"], seed) for split in SPLITS}
        orders = {split: np.arange(len(splits[split].labels)) for split in SPLITS}
    elif eval_source:
        splits = {
            "train": _open(source, "ingest.trackbed.source"),
            "eval": _open(eval_source, "ingest.trackbed.eval_source"),
        }
        orders = {s: np.random.default_rng([seed, i]).permutation(len(splits[s].labels)) for i, s in enumerate(SPLITS)}
    else:
        whole = _open(source, "ingest.trackbed.source")
        labels = np.asarray(whole.labels)
        fraction = float(cfg.get("eval_fraction", 0.2))
        held_out = stratified_split(labels, fraction, seed)
        rng = np.random.default_rng(seed)
        splits = {"train": whole, "eval": whole}
        orders = {
            "train": rng.permutation(np.flatnonzero(~held_out)),
            "eval": rng.permutation(np.flatnonzero(held_out)),
        }
        _check_split_sizes(orders, source, fraction)

    shard_size = int(cfg["shard_size"])
    report: dict[str, Any] = {"source": source, "eval_source": eval_source, "splits": {}}
    provenance: list[tuple] = []
    with atomic_dir(out_dir) as tmp:
        for split in SPLITS:
            order = orders[split]
            labels = [splits[split].labels[i] for i in order]
            shards = write_shards(
                splits[split].records(order), tmp / split, split, total=len(order), shard_size=shard_size
            )
            provenance.extend(_provenance_rows(splits[split].origins, order, shards, split, shard_size))
            counts = Counter(CLASSES[label] for label in labels)
            report["splits"][split] = {
                "records": len(order),
                "shards": len(shards),
                "per_class": {name: counts.get(name, 0) for name in CLASSES},
            }
        write_provenance(tmp / PROVENANCE_FILE, provenance)
    return report
