"""Saving and loading the facies classifier with skops (no pickle: loading checks every type)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from overseer.errors import InputError
from overseer.io import atomic_file, write_json

# modules whose types a saved pipeline may contain (scikit-learn estimators and NumPy arrays)
TRUSTED_PREFIXES = ("sklearn.", "numpy.", "builtins.", "collections.")


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


def save_model(model: Any, path: str | os.PathLike) -> Path:
    """Write ``model`` as a ``.skops`` file and its version note ``<name>.versions.json`` beside it."""
    import skops.io

    target = Path(path)
    with atomic_file(target, suffix=".skops") as tmp:
        skops.io.dump(model, tmp)
    write_json(target.with_suffix(".versions.json"), versions())
    return target


def trusted_types(path: str | os.PathLike) -> list[str]:
    """The types skops does not trust by default in ``path``, all from scikit-learn/NumPy (the
    forest's tree storage); a type from elsewhere is refused."""
    import skops.io

    target = Path(path)
    if not target.is_file():
        raise InputError("model file not found", path=target)
    untrusted = skops.io.get_untrusted_types(file=target)
    foreign = [t for t in untrusted if not t.startswith(TRUSTED_PREFIXES)]
    if foreign:
        raise InputError(f"refusing to load types outside scikit-learn/NumPy: {foreign}", path=target)
    return list(untrusted)


def load_model(path: str | os.PathLike) -> Any:
    """Load a ``.skops`` model written by :func:`save_model` (types checked by :func:`trusted_types`)."""
    import skops.io

    return skops.io.load(Path(path), trusted=trusted_types(path))
