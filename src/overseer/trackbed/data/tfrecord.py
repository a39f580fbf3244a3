"""Reading and writing TFRecord files: shards, pass-through of raw records, per-record tables."""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd
from tqdm import tqdm

from overseer.errors import InputError
from overseer.io import atomic_file
from overseer.trackbed.data.schema import CLASSES, FIELDS, decode_fields

TFRECORD_SUFFIXES = (".tfrecord", ".tfrecords", ".tfr")
#: ingest's table beside the prepared shards: where each prepared record came from
PROVENANCE_FILE = "provenance.csv"
PROVENANCE_COLUMNS = ("shard", "record", "source", "source_record", "image_filename")
DEFAULT_SOURCE = "default"  # the provenance ``source`` of records of the embedded default set
# TensorFlow's op decoration around a DataLossError message ("{{function_node ...}} ... [Op:...] name: ")
_TF_NOISE = (re.compile(r"\{\{.*?\}\}\s*"), re.compile(r"\s*\[Op:[^\]]*\].*$"))


def is_tfrecord_name(path: Path) -> bool:
    """``x.tfrecord``, ``x.tfrecords``, ``x.tfr`` and TensorFlow shard names ``x.tfrecord-00000-of-00004``."""
    return path.suffix in TFRECORD_SUFFIXES or ".tfrecord" in path.name


def list_tfrecords(source: str | os.PathLike) -> list[Path]:
    """TFRecord files of a file, a folder (its ``*.tfrecord*`` files) or a glob pattern."""
    text = os.fspath(source)
    path = Path(text)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and is_tfrecord_name(p))
    elif path.is_file():
        files = [path]
    else:
        files = sorted(Path(p) for p in glob.glob(text))
    if not files:
        raise InputError("no TFRecord files found (expected a file, a folder of *.tfrecord or a glob)", path=text)
    return files


def is_tfrecord_source(source: str | os.PathLike) -> bool:
    """True for a TFRecord file, a glob of them or a folder that holds them (not an image folder)."""
    path = Path(source)
    if path.is_file():
        return is_tfrecord_name(path)
    if path.is_dir():
        return any(p.is_file() and is_tfrecord_name(p) for p in path.iterdir())
    return bool(glob.glob(os.fspath(source)))


def iter_raw_records(path: str | os.PathLike) -> Iterator[tuple[int, bytes]]:
    """(record index, serialised bytes) of one TFRecord file.

    Corrupt framing (a bad CRC, a truncated file) raises ``InputError`` naming the file and the
    index of the first record that could not be read.
    """
    import tensorflow as tf

    index = 0
    iterator = iter(tf.data.TFRecordDataset(os.fspath(path)))
    while True:
        try:
            raw = next(iterator)
        except StopIteration:
            return
        except tf.errors.DataLossError as exc:
            raise InputError(f"corrupt TFRecord data ({_tf_message(exc)})", path=path, record=index) from None
        except (tf.errors.NotFoundError, tf.errors.PermissionDeniedError) as exc:
            raise InputError(f"cannot read TFRecord file ({exc.message})", path=path) from None
        yield index, raw.numpy()
        index += 1


def _tf_message(exc: Exception) -> str:
    """The first line of a TensorFlow error without its op decoration."""
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    for pattern in _TF_NOISE:
        message = pattern.sub("", message)
    return message.strip() or type(exc).__name__


def write_records(path: str | os.PathLike, records: Iterable[bytes]) -> Path:
    """Write serialised records, as they are, into one TFRecord file (atomically)."""
    import tensorflow as tf

    with atomic_file(path) as tmp, tf.io.TFRecordWriter(os.fspath(tmp)) as writer:
        for record in records:
            writer.write(record)
    return Path(path)


def write_shards(
    records: Iterable[bytes],
    out_dir: str | os.PathLike,
    prefix: str,
    total: int,
    shard_size: int,
) -> list[Path]:
    """Write ``total`` serialised records into ``<prefix>-00000-of-0000N.tfrecord`` shards.

    Each shard is written to a temporary file and renamed when complete.
    """
    import tensorflow as tf

    if total <= 0:
        raise ValueError(f"no records to write for {prefix}")
    if shard_size <= 0:
        raise ValueError(f"shard_size must be positive, got {shard_size}")
    n_shards = -(-total // shard_size)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{prefix}-{i:05d}-of-{n_shards:05d}.tfrecord" for i in range(n_shards)]
    iterator = iter(records)
    written = 0
    with tqdm(total=total, desc=f"write {prefix}", unit="rec", leave=False) as progress:
        for i, path in enumerate(paths):
            count = min(shard_size, total - i * shard_size)
            with atomic_file(path) as tmp, tf.io.TFRecordWriter(os.fspath(tmp)) as writer:
                for _ in range(count):
                    record = next(iterator, None)
                    if record is None:
                        raise ValueError(f"{prefix}: expected {total} records, got only {written}")
                    writer.write(record)
                    written += 1
                    progress.update(1)
    if written != total:
        raise ValueError(f"{prefix}: expected {total} records, wrote {written}")
    return paths


def write_provenance(path: str | os.PathLike, rows: Iterable[tuple]) -> Path:
    """Write the provenance table atomically: one CSV row per prepared record, in the order given.

    Each row is (``shard``: shard path relative to the prepared folder, ``record``: index in that
    shard, ``source``: the user's file or ``default``, ``source_record``: index in that file or
    None for an image file, ``image_filename``: the record's name or None).
    """
    table = pd.DataFrame(list(rows), columns=list(PROVENANCE_COLUMNS))
    table["record"] = table["record"].astype("int64")
    table["source_record"] = table["source_record"].astype("Int64")
    with atomic_file(path) as tmp:
        table.to_csv(tmp, index=False, lineterminator="\n")
    return Path(path)


def read_provenance(path: str | os.PathLike) -> pd.DataFrame | None:
    """The provenance table written by ingest (see :func:`write_provenance`), or None when it is
    absent or unreadable (then failures name the prepared shards only)."""
    target = Path(path)
    if not target.is_file():
        return None
    try:
        table = pd.read_csv(target, dtype=str, keep_default_na=False)
    except (ValueError, OSError, pd.errors.ParserError):
        return None
    if list(table.columns) != list(PROVENANCE_COLUMNS):
        return None
    table["record"] = pd.to_numeric(table["record"], errors="coerce").astype("Int64")
    table["source_record"] = pd.to_numeric(table["source_record"], errors="coerce").astype("Int64")
    names = table["image_filename"].astype(object)
    table["image_filename"] = names.where(names != "", None)
    return table


def record_table(files: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """One row per record: where it is and what its fields say, without decoding the image.

    Columns: ``file``, ``record``, ``parse_error`` (None or why the bytes are not an Example),
    ``image_filename``, ``height``, ``width``, ``depth``, ``label``, ``class_name``,
    ``image_bytes`` (len of ``image_raw``), ``expected_bytes`` (h*w*d) and
    ``expected_class_name`` (the name of ``label``). Missing fields are None. This is the table
    the validation suite checks.
    """
    rows = []
    for path in files:
        for index, raw in tqdm(iter_raw_records(path), desc=f"scan {Path(path).name}", unit="rec", leave=False):
            row: dict = {"file": os.fspath(path), "record": index, "parse_error": None}
            try:
                fields = decode_fields(raw)
            except ValueError as exc:
                row["parse_error"] = str(exc)
                fields = dict.fromkeys(FIELDS)
            image_raw = fields.pop("image_raw")
            row.update(
                image_filename=_text(fields["image_filename"]),
                height=fields["height"],
                width=fields["width"],
                depth=fields["depth"],
                label=fields["label"],
                class_name=_text(fields["class_name"]),
                image_bytes=None if image_raw is None else len(image_raw),
            )
            dims = (row["height"], row["width"], row["depth"])
            row["expected_bytes"] = None if None in dims else dims[0] * dims[1] * dims[2]
            label = row["label"]
            row["expected_class_name"] = CLASSES[label] if label is not None and 0 <= label < len(CLASSES) else None
            rows.append(row)
    columns = [
        "file", "record", "parse_error", "image_filename", "height", "width", "depth", "label",
        "class_name", "image_bytes", "expected_bytes", "expected_class_name",
    ]  # fmt: skip
    table = pd.DataFrame(rows, columns=columns)
    for col in ("height", "width", "depth", "label", "image_bytes", "expected_bytes"):
        table[col] = table[col].astype("Int64")
    return table


def _text(value: bytes | None) -> str | None:
    return None if value is None else value.decode("utf-8", errors="replace")
