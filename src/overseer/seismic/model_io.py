"""Saving and loading the facies classifier with skops (no pickle: loading checks every type).

skops names the arrays in its zip after Python object ids (``<id(obj)>.npy``, ``"__id__"`` in
``schema.json``) and stamps each member with the time of the save, and a tree's node array carries
uninitialised padding bytes; :func:`save_model` renumbers the ids in order of appearance, zeros the
padding and fixes the times, so the same forest always gives the same bytes.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

from overseer.deterministic import renumber, walk_dicts, write_zip
from overseer.errors import InputError
from overseer.io import atomic_file, write_json

# modules whose types a saved pipeline may contain (scikit-learn estimators and NumPy arrays)
TRUSTED_PREFIXES = ("sklearn.", "numpy.", "builtins.", "collections.")
TRUSTED_TYPES = (  # our own pipeline steps
    "overseer.seismic.well_features.WellSequenceFeatures",
    "overseer.seismic.gtm.GTMClassifier",
    "overseer.seismic.gtm.GTM",
)


def versions() -> dict[str, str]:
    """The library versions a saved model depends on (its version note)."""
    import numpy
    import sklearn
    import skops

    return {"scikit-learn": sklearn.__version__, "skops": skops.__version__, "numpy": numpy.__version__}


def pip_requirements() -> list[str]:
    """What a served copy needs: the scikit-learn and skops that wrote the model."""
    found = versions()
    return [f"scikit-learn=={found['scikit-learn']}", f"skops=={found['skops']}"]


SCHEMA = "schema.json"


def deterministic_skops(data: bytes, dest: str | os.PathLike) -> Path:
    """Write the ``.skops`` archive ``data`` (``skops.io.dumps``) to ``dest`` without what varies
    between two dumps of the same object: member ``<id>.npy``/``<uuid>.bin`` files become
    ``<n>.npy``/``<n>.bin`` (``n`` by first mention in ``schema.json``), every ``"__id__"`` its
    rank of first appearance, uninitialised padding inside structured arrays zeros, and member
    times a fixed date. ``skops.io.load`` reads it as before."""
    import zipfile

    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        members = set(archive.namelist())
        schema = json.loads(archive.read(SCHEMA))
        replace = {n: fixed for n in members if n.endswith(".npy") and (fixed := _zero_padding(archive.read(n)))}
    renumber(schema, "__id__")
    rename: dict[str, str] = {}

    def rename_file(node: dict) -> None:
        name = node.get("file")
        if isinstance(name, str) and name in members:
            if name not in rename:
                rename[name] = f"{len(rename) + 1}{Path(name).suffix}"
            node["file"] = rename[name]

    walk_dicts(schema, rename_file)
    replace[SCHEMA] = json.dumps(schema, indent=2).encode()  # skops' own layout: json.dumps(state, indent=2)
    return write_zip(data, dest, rename=rename, replace=replace)


def _zero_padding(npy: bytes) -> bytes | None:
    """The ``.npy`` file ``npy`` again with the padding bytes of its structured dtype zeroed, or
    ``None`` when there is no padding. A tree's node array (``sklearn.tree._tree.Tree`` state) is a
    C struct: 57 bytes of fields in 64, the rest whatever the allocator left there."""
    import numpy as np

    array = np.load(io.BytesIO(npy), allow_pickle=False)
    dtype = array.dtype
    if dtype.names is None or sum(dtype.fields[n][0].itemsize for n in dtype.names) == dtype.itemsize:
        return None
    clean = np.zeros(array.shape, dtype=dtype)
    for name in dtype.names:  # field by field: a whole-record copy would carry the padding over
        clean[name] = array[name]
    out = io.BytesIO()
    np.save(out, clean, allow_pickle=False)  # as skops writes it
    return out.getvalue()


def save_model(model: Any, path: str | os.PathLike) -> Path:
    """Write ``model`` as a ``.skops`` file (byte-deterministic: :func:`deterministic_skops`) and
    its version note ``<name>.versions.json`` beside it."""
    import skops.io

    target = Path(path)
    with atomic_file(target, suffix=".skops") as tmp:
        deterministic_skops(skops.io.dumps(model), tmp)
    write_json(target.with_suffix(".versions.json"), versions())
    return target


def trusted_types(path: str | os.PathLike) -> list[str]:
    """The types skops does not trust by default in ``path``, all from scikit-learn/NumPy (the
    forest's tree storage) or our own well-sequence features step; a type from elsewhere is refused."""
    import skops.io

    target = Path(path)
    if not target.is_file():
        raise InputError("model file not found", path=target)
    untrusted = skops.io.get_untrusted_types(file=target)
    foreign = [t for t in untrusted if not t.startswith(TRUSTED_PREFIXES) and t not in TRUSTED_TYPES]
    if foreign:
        raise InputError(f"refusing to load types outside scikit-learn/NumPy: {foreign}", path=target)
    return list(untrusted)


def load_model(path: str | os.PathLike) -> Any:
    """Load a ``.skops`` model written by :func:`save_model` (types checked by :func:`trusted_types`)."""
    import skops.io

    return skops.io.load(Path(path), trusted=trusted_types(path))
