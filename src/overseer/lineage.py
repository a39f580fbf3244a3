"""Lineage: which pipeline execution a stage run belongs to, and what its inputs look like.

Pure helpers (no MLflow here: ``overseer.tracking`` makes the MLflow calls, see its
``stage_run``, ``log_to_pipeline`` and ``log_model_metrics``).

**Pipeline key.** Every stage is its own process started by DVC. The stage runs of one pipeline
execution (one ``dvc repro``, one ``dvc exp run``) share a key (:func:`pipeline_key`):

1. ``OVERSEER_PIPELINE_ID`` when set (a wrapper, a Makefile, a scheduler names the execution),
2. else the DVC experiment (``DVC_EXP_NAME``, set by ``dvc exp run``, also in queued and
   ``--temp`` runs) together with the nearest ancestor ``dvc`` process when one is found (a rerun
   under the same name, ``-f``, is another execution),
3. else the nearest ancestor ``dvc`` process (host, pid and start time): one ``dvc repro``,
4. else none: a stage run outside DVC is a top-level run, as it always was.

Per family experiment, the parent run of a key is found by its tag ``overseer.pipeline`` or
created (``<family>/pipeline [<exp or commit>]``, tag ``overseer.stage = pipeline``); children
carry ``mlflow.parentRunId`` and the key. Names on the parent are namespaced by stage
(:func:`stage_prefix`).

**Inputs.** Each input path is an MLflow dataset whose context comes from the stage
(:func:`input_context`) and, for a CSV or Parquet file, whose schema comes from
:func:`table_columns`: the Parquet footer or the first rows of the CSV, never the whole table.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import psutil

__all__ = [
    "ENV_PIPELINE_ID",
    "PARENT_TAG",
    "PIPELINE_STAGE",
    "PIPELINE_TAG",
    "PipelineKey",
    "dvc_ancestor",
    "input_context",
    "pipeline_key",
    "stage_prefix",
    "table_columns",
]

log = logging.getLogger(__name__)

ENV_PIPELINE_ID = "OVERSEER_PIPELINE_ID"
PIPELINE_TAG = "overseer.pipeline"  # the key, on the parent and on every child
PIPELINE_SOURCE_TAG = "overseer.pipeline.source"  # env | dvc-exp | dvc-process
PIPELINE_STAGES_TAG = "overseer.pipeline.stages"  # the parent's children, by stage, in order
PIPELINE_STAGE = "pipeline"  # the parent's ``overseer.stage``
PARENT_TAG = "mlflow.parentRunId"
SCHEMA_ROWS = 100  # rows of a CSV read to infer its column types
TABLE_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": ",", ".tsv": "\t"}
# Default dataset context per stage (the part before '@'); others: "training".
STAGE_CONTEXTS = {"ingest": "source", "validate": "validation", "evaluate": "evaluation", "export": "export"}
_KEY_UNSAFE = re.compile(r"[^\w.:@/\-+]")


# -- the pipeline key ---------------------------------------------------------------------------


@dataclass(frozen=True)
class PipelineKey:
    """What names one pipeline execution: ``key`` (the tag value), ``source`` (``env``,
    ``dvc-exp`` or ``dvc-process``) and ``label`` (for the parent's run name; empty: the caller
    shows the commit)."""

    key: str
    source: str
    label: str = ""


def _is_dvc(process: psutil.Process) -> bool:
    """Whether ``process`` is a ``dvc`` command (the entry-point script, or ``python -m dvc``)."""
    import psutil

    try:
        args = process.cmdline()
        name = process.name()
    except (psutil.Error, OSError):
        return False
    if Path(name).stem == "dvc":
        return True
    head = args[:3]
    if any(Path(arg).name in ("dvc", "dvc.exe") for arg in head):
        return True
    return any(a == "-m" and b == "dvc" for a, b in itertools.pairwise(head))


def dvc_ancestor(process: psutil.Process | None = None) -> psutil.Process | None:
    """The nearest ancestor of ``process`` (default: this one) that is a ``dvc`` command, or None."""
    import psutil

    try:
        start = process or psutil.Process()
        parents = start.parents()
    except (psutil.Error, OSError) as exc:
        log.debug("cannot walk the process tree: %s", exc)
        return None
    return next((p for p in parents if _is_dvc(p)), None)


def _process_id(process: psutil.Process) -> str | None:
    """``dvc:<host>:<pid>:<start ms>``: a process, unique across hosts and pid reuse."""
    import psutil

    try:
        started = int(process.create_time() * 1000)
    except (psutil.Error, OSError):
        return None
    return f"dvc:{socket.gethostname()}:{process.pid}:{started}"


def pipeline_key(environ: Mapping[str, str] | None = None, process: psutil.Process | None = None) -> PipelineKey | None:
    """The key of the pipeline execution this process belongs to, or None outside any (see the
    module notes for the order). ``environ`` defaults to ``os.environ``; ``process``, the nearest
    ``dvc`` ancestor, is looked up when not given."""
    env = os.environ if environ is None else environ
    explicit = (env.get(ENV_PIPELINE_ID) or "").strip()
    if explicit:
        return PipelineKey(_safe(f"env:{explicit}"), "env", explicit)
    dvc = process if process is not None else dvc_ancestor()
    owner = _process_id(dvc) if dvc is not None else None
    experiment = (env.get("DVC_EXP_NAME") or "").strip()
    if experiment:
        key = f"exp:{experiment}" + (f"/{owner}" if owner else "")
        return PipelineKey(_safe(key), "dvc-exp", experiment)
    if owner:
        return PipelineKey(_safe(owner), "dvc-process")
    return None


def _safe(key: str) -> str:
    """A key fit for a tag value and a search filter (no quotes), at most 250 characters."""
    return _KEY_UNSAFE.sub("_", key)[:250]


def stage_prefix(stage: str) -> str:
    """``evaluate@rf`` -> ``evaluate.rf.``: a stage's namespace in the parent's params and metrics
    (MLflow names allow no ``@``)."""
    return stage.replace("@", ".") + "."


# -- datasets -----------------------------------------------------------------------------------


def input_context(stage: str, path: str, contexts: str | Mapping[str, str] | None = None) -> str:
    """The ``mlflow.data.context`` of one input: from ``contexts`` (one for all, or per path), else
    the stage's default (``evaluate`` -> ``evaluation``, ``train_*`` -> ``training``, ...)."""
    if isinstance(contexts, str):
        return contexts
    if contexts:
        by_path = {Path(k).as_posix(): v for k, v in contexts.items()}
        if path in by_path:
            return by_path[path]
    return STAGE_CONTEXTS.get(stage.split("@", 1)[0], "training")


def _type_name(arrow_type: object) -> str:
    """The MLflow ``DataType`` name of a pyarrow type (``string`` for anything without a close match)."""
    import pyarrow as pa

    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    checks = [
        (pa.types.is_boolean, "boolean"),
        (lambda t: pa.types.is_signed_integer(t) and t.bit_width <= 32, "integer"),
        (pa.types.is_integer, "long"),
        (lambda t: pa.types.is_float32(t) or pa.types.is_float16(t), "float"),
        (lambda t: pa.types.is_floating(t) or pa.types.is_decimal(t), "double"),
        (lambda t: pa.types.is_binary(t) or pa.types.is_large_binary(t), "binary"),
        (lambda t: pa.types.is_timestamp(t) or pa.types.is_date(t), "datetime"),
    ]
    return next((name for check, name in checks if check(arrow_type)), "string")


def table_columns(path: str | os.PathLike) -> list[tuple[str, str]] | None:
    """(column name, MLflow type name) of a CSV/TSV or Parquet file; None for anything else, or
    for a table that cannot be read (logged as a warning).

    Cheap: a Parquet file's footer, the first :data:`SCHEMA_ROWS` rows of a CSV.
    """
    target = Path(path)
    kind = TABLE_SUFFIXES.get(target.suffix.lower())
    if kind is None or not target.is_file():
        return None
    try:
        import pyarrow as pa

        if kind == "parquet":
            import pyarrow.parquet as pq

            arrow = pq.read_schema(target)
        else:
            import pandas as pd

            arrow = pa.Schema.from_pandas(pd.read_csv(target, sep=kind, nrows=SCHEMA_ROWS), preserve_index=False)
    except Exception as exc:  # noqa: BLE001 - a schema is an extra: the dataset is logged without it
        log.warning("no schema for %s: %s", target, exc)
        return None
    return [(str(f.name), _type_name(f.type)) for f in arrow if not str(f.name).startswith("__")] or None
