"""What the three served models share: log + register a ``PythonModel``, load one back.

``log_pyfunc`` logs to the active MLflow run with this package as ``code_paths`` (the served model
imports ``overseer`` from its own copy, not from an installed checkout), the signature and input
example given, and explicit pip requirements; it registers the result as a new version of ``name``.
``load_pyfunc`` opens an MLflow model from a ``models:/…`` / ``runs:/…`` URI or a local MLflow
model folder (one holding an ``MLmodel`` file).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from overseer.errors import InputError

PACKAGE = Path(__file__).resolve().parents[1]  # src/overseer: copied into every logged model
MODEL_URI_SCHEMES = ("models:/", "runs:/", "mlflow-artifacts:/", "s3://", "gs://", "file:")


def model_code(model_class: type) -> str:
    """The "model from code" file MLflow runs when it loads a model of ``model_class`` (which takes no
    arguments and loads everything in ``load_context``): import it from our package, ``set_model`` an instance."""
    return (
        "from mlflow.models import set_model\n\n"
        f"from {model_class.__module__} import {model_class.__qualname__}\n\n"
        f"set_model({model_class.__qualname__}())\n"
    )


def log_pyfunc(
    model_class: type,
    name: str,
    *,
    artifacts: Mapping[str, str | os.PathLike],
    signature: Any,
    input_example: Any,
    pip_requirements: Iterable[str],
) -> Any:
    """Log a ``model_class`` (a ``mlflow.pyfunc.PythonModel``) under the active run as ``model`` and
    register it as a new version of ``name``; returns MLflow's ``ModelInfo`` (``model_id``,
    ``registered_model_version``, ``model_uri``).

    The model is logged as code (:func:`model_code`; MLflow's "models from code"), not as a pickled
    instance: loading it runs a three-line file of ours, never unpickles an object."""
    import tempfile

    import mlflow

    with tempfile.TemporaryDirectory(prefix="overseer-model-code-") as tmp:
        code = Path(tmp) / f"{model_class.__module__.rsplit('.', 1)[-1]}_model.py"
        code.write_text(model_code(model_class))
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=os.fspath(code),
            artifacts={key: os.fspath(path) for key, path in artifacts.items()},
            code_paths=[os.fspath(PACKAGE)],
            signature=signature,
            input_example=input_example,
            pip_requirements=list(pip_requirements),
            registered_model_name=name,
        )


def is_model_uri(text: str | os.PathLike) -> bool:
    """True for an MLflow model URI (``models:/NAME@champion``, ``runs:/ID/model``, …), not a plain folder."""
    return str(text).startswith(MODEL_URI_SCHEMES)


def load_pyfunc(uri_or_folder: str | os.PathLike) -> Any:
    """``mlflow.pyfunc.load_model`` of a model URI or a local MLflow model folder, failures as
    :class:`InputError` naming what was asked for."""
    import mlflow

    text = os.fspath(uri_or_folder)
    if not is_model_uri(text) and not (Path(text) / "MLmodel").is_file():
        raise InputError("not an MLflow model (no MLmodel file) and not a models:/ or runs:/ URI", path=text)
    try:
        return mlflow.pyfunc.load_model(text)
    except Exception as exc:  # registry lookups, missing aliases, unreadable artifacts
        raise InputError(f"cannot load the MLflow model: {str(exc).splitlines()[0]}", path=text) from exc
