"""MLflow conventions: one experiment per family, one run per stage execution.

Every run carries the stage's params as DVC tracks them, the git commit, the DVC experiment
name when there is one and the content digests of the stage's input data (from ``dvc.lock``
where an upstream stage recorded them). The default store is ``sqlite:///<repo>/mlflow.db``
with an absolute path, so that runs from DVC's temporary experiment workspaces
(``.dvc/tmp/exps/...``) land in the same store; ``MLFLOW_TRACKING_URI`` overrides it.

Lineage (which execution, which context: ``overseer.lineage``; the MLflow side here):

- The stage runs of one pipeline execution (``dvc repro``, ``dvc exp run``; the key is
  ``overseer.lineage.pipeline_key``) nest under one parent run per family experiment, found by its
  tag ``overseer.pipeline`` or created (``<family>/pipeline [<exp or commit>]``,
  ``overseer.stage = pipeline``). The parent is marked FINISHED at once and its end time moves on
  with each child (FAILED once a child failed), so the UI never shows it running for ever.
- The parent collects each child's params (names are namespaced, ``train_rf.n_estimators``; the
  params a stage logs itself get the stage's prefix, ``export.rf.features``). MLflow params are
  immutable: a name already logged with the same value is skipped, one with another value keeps
  its first value (logged at debug). The evaluate stages send their held-out metrics with
  ``log_to_pipeline``: comparing parent runs shows training params beside held-out metrics.
- Each input path is logged with ``mlflow.log_inputs`` as a ``MetaDataset`` (name: the path,
  digest: the DVC md5, source: the local file or folder, schema: a table's columns), beside the
  ``input.md5.*`` tags.
- ``log_model_metrics`` puts held-out metrics on a logged model's page (MLflow 3 ``LoggedModel``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from overseer.errors import InputError
from overseer.lineage import (
    PARENT_TAG,
    PIPELINE_SOURCE_TAG,
    PIPELINE_STAGE,
    PIPELINE_STAGES_TAG,
    PIPELINE_TAG,
    PipelineKey,
    pipeline_key,
    stage_prefix,
    table_columns,
)
from overseer.lineage import input_context as dataset_context
from overseer.repo import file_digest, git_commit, repo_root

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.data.dataset import Dataset
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import Run
    from mlflow.types import Schema

__all__ = [
    "FAMILIES",
    "MlflowClient",
    "Run",
    "experiment_id",
    "log_model_metrics",
    "log_to_pipeline",
    "open_store",
    "stage_run",
]

log = logging.getLogger(__name__)
# MLflow caps a param value at 6000 characters; params here are short scalars and lists
MAX_PARAM_CHARS = 6000
MAX_DIGEST_CHARS = 36  # the store's dataset digest column (a DVC folder md5 "<32 hex>.dir" fills it)

FAMILIES = ("trackbed", "seismic", "engraving")


def tracking_uri(root: str | os.PathLike | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` when set, else the sqlite store at the repository root."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{repo_root(root) / 'mlflow.db'}"


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``: the names DVC and MLflow both show."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def stage_params(stage: str, params_file: str | os.PathLike = "params.yaml") -> dict[str, Any]:
    """The params a stage declares, as DVC tracks them (``dvc.api.params_show``).

    Outside a DVC repository (a library call, a test) this falls back to the whole params file.
    """
    try:
        import dvc.api

        return dict(dvc.api.params_show(stages=[stage]))
    except Exception as exc:  # noqa: BLE001 - any DVC failure means "not a DVC run"
        log.debug("dvc.api.params_show failed for %s: %s", stage, exc)
        path = Path(params_file)
        return yaml.safe_load(path.read_text()) if path.exists() else {}


def input_digests(paths: Iterable[str | os.PathLike], root: str | os.PathLike | None = None) -> dict[str, str]:
    """Content digest per input path: the md5 ``dvc.lock`` recorded for the upstream output when
    there is one, else computed here (a stage run outside ``dvc repro``)."""
    base = repo_root(root) if root is None else Path(root)
    recorded: dict[str, str] = {}
    lock = Path(os.getcwd()) / "dvc.lock"
    if lock.exists():
        stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {})
        for entry in stages.values():
            for out in entry.get("outs", []):
                recorded[out["path"]] = out.get("md5", "")
    digests = {}
    for path in paths:
        key = Path(path).as_posix()
        if recorded.get(key):
            digests[key] = recorded[key]
        elif Path(path).exists():
            digests[key] = file_digest(path)
        elif (base / key).exists():
            digests[key] = file_digest(base / key)
    return digests


def experiment_id(family: str, root: str | os.PathLike | None = None) -> str:
    """The id of ``family``'s experiment in the store of ``root`` (default: this repository), created
    (with its artifact root) when new."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri(root))
    experiment = mlflow.get_experiment_by_name(family)
    if experiment is not None:
        return experiment.experiment_id
    artifact_root = None
    if not tracking_uri(root).startswith(("http://", "https://", "databricks")):
        # A database URI (sqlite, postgresql, ...) has no artifact server: MLflow would put artifacts
        # under the working directory, which is DVC's temporary one in queued runs. Keep them beside
        # the repository, by absolute path, whatever the working directory.
        artifact_root = (repo_root(root) / "mlartifacts" / family).as_uri()
    try:
        return mlflow.create_experiment(family, artifact_location=artifact_root)
    except Exception:  # noqa: BLE001 - a concurrent stage created it first
        return mlflow.get_experiment_by_name(family).experiment_id


def changed_params(mlflow: Any, experiment: str, stage: str, params: Mapping[str, Any]) -> dict[str, str]:
    """The params whose values differ from the last finished run of ``stage`` (all of them for a first run:
    nothing to compare with gives an empty dict)."""
    try:
        last = mlflow.search_runs(
            experiment_ids=[experiment],
            filter_string=f"tags.`overseer.stage` = '{stage}' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
            output_format="list",
        )
    except Exception as exc:  # noqa: BLE001 - a name is not worth failing a stage for
        log.debug("no previous run of %s: %s", stage, exc)
        return {}
    if not last:
        return {}
    before = last[0].data.params
    return {k: str(v)[:MAX_PARAM_CHARS] for k, v in params.items() if str(v)[:MAX_PARAM_CHARS] != before.get(k)}


def run_label(family: str, stage: str, version: str, changed: Mapping[str, str], limit: int = 3) -> str:
    """``family/stage [exp or commit] a=1 b=2``: what MLflow's run list shows, so runs say what changed."""
    name = f"{family}/{stage} [{version}]"
    if changed:
        shown = [f"{k.split('.')[-1]}={v}" for k, v in list(changed.items())[:limit]]
        name += " " + " ".join(shown) + (f" +{len(changed) - limit}" if len(changed) > limit else "")
    return name[:250]


@contextlib.contextmanager
def stage_run(
    family: str,
    stage: str,
    inputs: Iterable[str | os.PathLike] = (),
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
    *,
    input_context: str | Mapping[str, str] | None = None,
) -> Iterator[Any]:
    """An MLflow run for one stage execution, with params, commit, experiment name and digests.

    Inside a pipeline execution (``overseer.lineage.pipeline_key``) the run is nested under the
    family's parent run of that execution, which receives the stage's params. Each input is also
    logged as an MLflow dataset (digest: the DVC md5) with ``input_context``: one context for all
    inputs, or one per path (by default from the stage: ``evaluate`` -> ``evaluation``,
    ``train_*`` -> ``training``, see ``overseer.lineage.input_context``).

    Yields the active ``mlflow`` module so the stage can log metrics and artifacts.
    """
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    client = mlflow.MlflowClient()
    family_experiment = experiment_id(family)
    dvc_exp = os.environ.get("DVC_EXP_NAME")
    params = flatten(stage_params(stage))
    commit = git_commit()
    version = dvc_exp or (commit[:7] if commit else "workspace")
    changed = changed_params(mlflow, family_experiment, stage, params)
    name = run_name or run_label(family, stage, version, changed)
    run_tags = {
        "overseer.family": family,
        "overseer.stage": stage,
        "git.commit": commit or "none",
        "dvc.experiment": dvc_exp or "workspace",
        "overseer.changed": ", ".join(f"{k}={v}" for k, v in changed.items())[:5000] or "nothing",
    }
    run_tags.update(tags or {})
    digests = input_digests(inputs)
    run_tags.update({f"input.md5.{path}": digest for path, digest in digests.items()})
    key = pipeline_key()
    parent_id = None
    if key is not None:
        shared = {k: run_tags[k] for k in ("git.commit", "dvc.experiment")}
        if os.environ.get("DVC_EXP_BASELINE_REV"):
            shared["dvc.baseline"] = os.environ["DVC_EXP_BASELINE_REV"]
        parent_id = pipeline_parent(client, family_experiment, family, key, label=key.label or version, tags=shared)
        run_tags.update({PIPELINE_TAG: key.key, PIPELINE_SOURCE_TAG: key.source})
    logged = {k: str(v)[:MAX_PARAM_CHARS] for k, v in params.items()}
    with mlflow.start_run(
        experiment_id=family_experiment, run_name=name, tags=run_tags, parent_run_id=parent_id
    ) as run:
        mlflow.log_params(logged)
        log_datasets(mlflow, digests, stage, input_context)
        if parent_id:
            push_params(client, parent_id, logged)
        failed = True
        try:
            yield mlflow
            failed = False
        finally:
            if parent_id:
                try:
                    child_finished(client, parent_id, run.info.run_id, stage, logged, failed=failed)
                except Exception as exc:  # noqa: BLE001 - the parent's bookkeeping must not fail a stage
                    log.warning("could not update pipeline run %s: %s", parent_id, exc)


def log_model_metrics(
    model_id: str,
    metrics: Mapping[str, float],
    dataset: Dataset | str | os.PathLike | None = None,
) -> None:
    """Attach ``metrics`` (held-out scores) to the logged model ``model_id`` (``ModelInfo.model_id``),
    so the model's page in MLflow shows them; they are also logged to the run that logs them.

    The run is the active one, else the model's source run. ``dataset`` is the data they were measured
    on: an MLflow dataset, or an input path (a dataset named by the path, digest from ``dvc.lock`` as
    ``stage_run`` logs it).
    """
    import mlflow

    if isinstance(dataset, str | os.PathLike):
        path = Path(dataset).as_posix()
        digest = input_digests([path]).get(path, "unknown")
        dataset = input_dataset(path, digest)
    active = mlflow.active_run()
    if active is None:
        mlflow.set_tracking_uri(tracking_uri())
    run_id = active.info.run_id if active else mlflow.MlflowClient().get_logged_model(model_id).source_run_id
    mlflow.log_metrics({k: float(v) for k, v in metrics.items()}, model_id=model_id, dataset=dataset, run_id=run_id)


# -- lineage: the pipeline parent run ------------------------------------------------------------


def _find_parents(client: MlflowClient, experiment_id: str, key: str) -> list[Run]:
    """The live parent runs of ``key`` in ``experiment_id``, oldest first."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{PIPELINE_TAG}` = '{key}' and tags.`overseer.stage` = '{PIPELINE_STAGE}'",
        order_by=["attributes.start_time ASC"],
        max_results=50,
    )
    return sorted(runs, key=lambda r: (r.info.start_time or 0, r.info.run_id))


def pipeline_parent(
    client: MlflowClient,
    experiment_id: str,
    family: str,
    key: PipelineKey,
    *,
    label: str,
    tags: Mapping[str, str] | None = None,
) -> str:
    """The run id of ``key``'s parent run in ``experiment_id``, created when there is none.

    A new parent is named ``<family>/pipeline [<label>]``, tagged with the key, ``tags`` (commit,
    DVC experiment) and ``overseer.stage = pipeline``, and marked FINISHED at once. Two stages that
    create one at the same moment both end on the oldest (the other is deleted).
    """
    found = _find_parents(client, experiment_id, key.key)
    if found:
        return found[0].info.run_id
    run_tags = {
        **(tags or {}),
        "overseer.family": family,
        "overseer.stage": PIPELINE_STAGE,
        PIPELINE_TAG: key.key,
        PIPELINE_SOURCE_TAG: key.source,
    }
    created = client.create_run(experiment_id, tags=run_tags, run_name=f"{family}/pipeline [{label}]"[:250])
    run_id = created.info.run_id
    client.set_terminated(run_id, status="FINISHED")
    found = _find_parents(client, experiment_id, key.key)
    if found and found[0].info.run_id != run_id:  # another stage won the race
        client.delete_run(run_id)
        return found[0].info.run_id
    return run_id


def push_params(client: MlflowClient, parent_id: str, params: Mapping[str, Any]) -> dict[str, str]:
    """Log ``params`` to the parent run, skipping names it already has; returns what was logged.

    A name already logged with another value keeps its first value (MLflow params are immutable);
    the conflict is logged at debug.
    """
    from mlflow.entities import Param

    existing = client.get_run(parent_id).data.params
    new: dict[str, str] = {}
    for name, value in params.items():
        text = str(value)[:MAX_PARAM_CHARS]
        if name not in existing:
            new[name] = text
        elif existing[name] != text:
            log.debug("pipeline run %s keeps %s=%r, not %r", parent_id, name, existing[name], text)
    items = list(new.items())
    for start in range(0, len(items), 100):  # MLflow's batch limit on params
        client.log_batch(parent_id, params=[Param(k, v) for k, v in items[start : start + 100]])
    return new


def child_finished(
    client: MlflowClient,
    parent_id: str,
    child_id: str,
    stage: str,
    declared: Mapping[str, Any],
    *,
    failed: bool,
) -> None:
    """After a child run: move the parent's end time on (FAILED when the child failed, and from then
    on), add the stage to its stage list and push the params the stage logged itself, named
    ``<stage prefix><name>`` (``export@rf`` logs ``features``: ``export.rf.features``)."""
    parent = client.get_run(parent_id)
    stages = [s for s in parent.data.tags.get(PIPELINE_STAGES_TAG, "").split(",") if s]
    if stage not in stages:
        client.set_tag(parent_id, PIPELINE_STAGES_TAG, ",".join([*stages, stage])[:5000])
    prefix = stage_prefix(stage)
    extra = {
        (name if name.startswith(prefix) else prefix + name): value
        for name, value in client.get_run(child_id).data.params.items()
        if name not in declared
    }
    if extra:
        push_params(client, parent_id, extra)
    status = "FAILED" if failed or parent.info.status == "FAILED" else "FINISHED"
    client.set_terminated(parent_id, status=status, end_time=int(time.time() * 1000))


def log_heldout(mlflow: Any, metrics: Mapping[str, float]) -> None:
    """An evaluate stage's held-out metrics: on its run and on its pipeline parent (:func:`log_to_pipeline`),
    so that comparing pipeline runs shows training params next to held-out scores."""
    mlflow.log_metrics(dict(metrics))
    log_to_pipeline(mlflow, metrics=metrics)


def log_to_pipeline(
    mlflow: Any,
    metrics: Mapping[str, float] | None = None,
    params: Mapping[str, Any] | None = None,
    prefix: str | None = None,
) -> str | None:
    """Log ``metrics`` (and ``params``) of the active stage run to its pipeline parent run.

    ``mlflow`` is what ``stage_run`` yields. Metric names get ``prefix``, by default the stage's
    namespace (``evaluate@rf`` -> ``evaluate.rf.eval_accuracy``: two evaluate stages of one family
    do not overwrite each other); ``prefix=""`` keeps them as they are. Params keep their names
    (see :func:`push_params`). Returns the parent's run id; None, logging nothing, when the run has
    no pipeline parent (a stage run outside DVC) or no run is active.
    """
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    active = mlflow.active_run()
    if active is None:
        return None
    client = MlflowClient()
    tags = client.get_run(active.info.run_id).data.tags
    parent_id = tags.get(PARENT_TAG)
    if not parent_id or not tags.get(PIPELINE_TAG):
        return None
    prefix = stage_prefix(tags.get("overseer.stage", "stage")) if prefix is None else prefix
    now = int(time.time() * 1000)
    batch = [Metric(f"{prefix}{k}", float(v), now, 0) for k, v in (metrics or {}).items()]
    for start in range(0, len(batch), 1000):  # MLflow's batch limit on metrics
        client.log_batch(parent_id, metrics=batch[start : start + 1000])
    if params:
        push_params(client, parent_id, params)
    return parent_id


# -- lineage: input datasets ------------------------------------------------------------------------


def table_schema(path: str | os.PathLike) -> Schema | None:
    """The MLflow schema (column names and types) of a CSV/TSV or Parquet file, None for anything
    else (``overseer.lineage.table_columns``: cheap, never the whole table)."""
    from mlflow.types import ColSpec, DataType, Schema

    columns = table_columns(path)
    return Schema([ColSpec(DataType[kind], name) for name, kind in columns]) if columns else None


def _local_source(uri: str) -> Any:
    """MLflow's local file-system dataset source for ``uri`` (the registered "local" source type)."""
    from mlflow.data.dataset_source_registry import get_registered_sources, resolve_dataset_source

    for source in get_registered_sources():
        if source._get_source_type() == "local":
            return source(uri)
    return resolve_dataset_source(uri)  # pragma: no cover - MLflow registers a local source


def input_dataset(path: str | os.PathLike, digest: str, root: str | os.PathLike | None = None) -> MetaDataset:
    """A dataset for one input: name = ``path`` as given (relative to the repository), digest =
    ``digest`` (the DVC md5), source = the file or folder by absolute path under the repository
    root (not DVC's temporary workspace), schema = :func:`table_schema` for a table."""
    from mlflow.data.meta_dataset import MetaDataset

    target = Path(path)
    absolute = target if target.is_absolute() else repo_root(root) / target
    schema = table_schema(target if target.exists() else absolute)
    source = _local_source(str(absolute))
    return MetaDataset(source, name=target.as_posix()[:500], digest=digest[:MAX_DIGEST_CHARS], schema=schema)


def log_datasets(
    mlflow: Any,
    digests: Mapping[str, str],
    stage: str,
    contexts: str | Mapping[str, str] | None = None,
) -> list[MetaDataset]:
    """Log one dataset per input path (``digests``: path -> DVC md5) to the active run, each with
    its ``mlflow.data.context`` (``overseer.lineage.input_context``); returns them."""
    datasets = [input_dataset(path, digest) for path, digest in digests.items()]
    if datasets:
        mlflow.log_inputs(
            datasets=datasets,
            contexts=[dataset_context(stage, d.name, contexts) for d in datasets],
            tags_list=[None] * len(datasets),
        )
    return datasets


def numeric(values: Mapping[str, Any]) -> dict[str, float]:
    """The entries of ``values`` MLflow can log as metrics (numbers; strings and lists left out)."""
    return {k: v for k, v in values.items() if isinstance(v, int | float)}


def log_history(mlflow: Any, history: Any, step: str = "epoch", skip: Iterable[str] = ("phase",)) -> None:
    """Log a per-epoch history table (one row per ``step``) as metric curves."""
    left_out = {step, *skip}
    for row in history.to_dict("records"):
        mlflow.log_metrics({k: float(v) for k, v in row.items() if k not in left_out}, step=int(row[step]))


def epoch_logger(mlflow: Any) -> Callable[[int, Mapping[str, float]], None]:
    """A training loop's ``on_epoch(epoch, metrics)`` callback that logs the metrics at that step."""

    def on_epoch(epoch: int, metrics: Mapping[str, float]) -> None:
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if k != "epoch"}, step=epoch)

    return on_epoch


def log_run_time(mlflow: Any, stage: str, values: Mapping[str, Any]) -> None:
    """Log a stage's run-time values (``io.split_run_time``) to its run and to ``reports/runtime/<stage>.json``."""
    from overseer.io import write_run_time

    mlflow.log_metrics({k.replace("@", "_"): float(v) for k, v in numeric(values).items()})
    write_run_time(stage, values)


def log_artifacts(mlflow: Any, paths: Iterable[str | os.PathLike], artifact_path: str | None = None) -> None:
    """Log files and folders that exist; skip those that do not."""
    for path in paths:
        target = Path(path)
        if target.is_dir():
            mlflow.log_artifacts(str(target), artifact_path=artifact_path)
        elif target.is_file():
            mlflow.log_artifact(str(target), artifact_path=artifact_path)


def log_params(client: MlflowClient, run_id: str, params: Mapping[str, Any]) -> None:
    """Log ``params`` (flat names) to ``run_id`` in one batch, values cut to MLflow's limit."""
    from mlflow.entities import Param

    client.log_batch(run_id, params=[Param(k, str(v)[:MAX_PARAM_CHARS]) for k, v in params.items()])


def open_store(uri: str | None = None) -> tuple[MlflowClient, str]:
    """An ``MlflowClient`` on ``uri`` (default: ``tracking_uri()``), checked readable.

    A local store (sqlite file, file store folder) must exist: MLflow would otherwise create an
    empty one. Any failure to read the store is an ``InputError``.
    """
    from mlflow import MlflowClient

    uri = uri or tracking_uri()
    local = _local_store_path(uri)
    if local is not None and not local.exists():
        raise InputError(f"no tracking store at {local} (run a stage first, or pass --tracking-uri)")
    try:
        client = MlflowClient(tracking_uri=uri)
        client.search_experiments(max_results=1)
    except Exception as exc:  # any store failure (driver, network, schema)
        raise InputError(f"cannot read the tracking store {uri}: {exc}") from exc
    return client, uri


def _local_store_path(uri: str) -> Path | None:
    """The file or folder behind a local tracking URI, None for a remote one."""
    if uri.startswith("sqlite:"):
        path = uri.removeprefix("sqlite:").removeprefix("///").split("?", 1)[0]
        if path in ("", "//", ":memory:"):
            raise InputError(f"{uri}: not a sqlite file store")
        return Path(path)
    if uri.startswith("file:"):
        return Path(uri.removeprefix("file:").removeprefix("//"))
    if "://" not in uri and not uri.startswith(("databricks", "uc:")):
        return Path(uri)
    return None
