"""Byte-deterministic model files: the same trained object saved twice gives the same bytes.

DVC hashes every output; a model file whose bytes change on each save (a save date, zip member
times, Python object ids used as names) would invalidate every downstream stage of a forced
re-run and leave ``git status`` dirty after a fresh ``make run``. The savers of each family write
their library's file as usual and then pass it through the helpers here, which change only what
varies and nothing the library's loader reads:

* :func:`write_zip` copies a zip archive member by member (same order, same compression) with
  every timestamp fixed to :data:`ZIP_EPOCH` and fixed permission bits, renaming or replacing
  the members it is told to;
* :func:`renumber` replaces run-time object ids in a JSON tree (``id(obj)`` that skops and Keras
  write as memo keys) by their order of first appearance, so shared references still match.
"""

from __future__ import annotations

import io
import os
import shutil
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

# the earliest time a zip header can hold (what ``zipfile.ZipFile.open(name, "w")`` writes too)
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
# the same instant in Keras' ``date_saved`` notation
KERAS_EPOCH = "1980-01-01@00:00:00"
_MODE = 0o100644  # a regular file, rw-r--r--
_CHUNK = 1 << 20


def write_zip(
    src: str | os.PathLike | bytes,
    dest: str | os.PathLike,
    *,
    rename: Mapping[str, str] | None = None,
    replace: Mapping[str, bytes] | None = None,
) -> Path:
    """Copy the zip ``src`` (a path or the archive's bytes) to ``dest`` with fixed member metadata.

    Members keep their order and compression; ``rename`` maps old to new names and ``replace``
    (keyed by the old name) gives new contents. Timestamps become :data:`ZIP_EPOCH`, permissions
    0644 (Unix), and extra fields and comments are dropped, so two archives with the same members
    and contents are byte-identical. ``dest`` must differ from ``src``.
    """
    rename = dict(rename or {})
    replace = dict(replace or {})
    source = io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else Path(src)
    target = Path(dest)
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        names = [info.filename for info in zin.infolist()]
        missing = (set(rename) | set(replace)) - set(names)
        if missing:
            raise KeyError(f"not members of the archive: {sorted(missing)}")
        new_names = [rename.get(n, n) for n in names]
        if len(set(new_names)) != len(new_names):
            raise ValueError("renaming would give two members the same name")
        for info, new_name in zip(zin.infolist(), new_names, strict=True):
            out = zipfile.ZipInfo(new_name, date_time=ZIP_EPOCH)
            out.compress_type = info.compress_type
            out.create_system = 3  # Unix, whatever the host: the bytes must not depend on it
            out.external_attr = _MODE << 16
            if info.filename in replace:
                zout.writestr(out, replace[info.filename])
                continue
            with zin.open(info) as fin, zout.open(out, "w", force_zip64=info.file_size >= zipfile.ZIP64_LIMIT) as fout:
                shutil.copyfileobj(fin, fout, _CHUNK)
    return target


def renumber(tree: Any, key: str, start: int = 1) -> dict[int, int]:
    """Replace every integer under ``key`` in the JSON ``tree`` (in place) by its rank of first
    appearance (``start``, ``start + 1``, ...); equal ids stay equal. Returns old -> new."""
    mapping: dict[int, int] = {}

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            for k, value in node.items():
                if k == key and isinstance(value, int) and not isinstance(value, bool):
                    node[k] = mapping.setdefault(value, start + len(mapping))
                else:
                    visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(tree)
    return mapping


def walk_dicts(tree: Any, visit: Callable[[dict], None]) -> None:
    """Call ``visit`` on every dict of the JSON ``tree``, parents before children, in document order."""
    if isinstance(tree, dict):
        visit(tree)
        for value in tree.values():
            walk_dicts(value, visit)
    elif isinstance(tree, list):
        for value in tree:
            walk_dicts(value, visit)
