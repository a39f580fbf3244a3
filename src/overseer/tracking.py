"""MLflow conventions: one experiment per family, one run per stage execution.

Every run carries the stage's params as DVC tracks them, the git commit, the DVC experiment
name when there is one and the content digests of the stage's input data (from ``dvc.lock``
where an upstream stage recorded them). The default store is ``sqlite:///<repo>/mlflow.db``
with an absolute path, so that runs from DVC's temporary experiment workspaces
(``.dvc/tmp/exps/...``) land in the same store; ``MLFLOW_TRACKING_URI`` overrides it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from overseer.errors import InputError
from overseer.repo import file_digest, git_commit, repo_root

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

__all__ = ["FAMILIES", "MlflowClient", "Run", "experiment_id", "open_store", "register_model", "stage_run"]

log = logging.getLogger(__name__)
# MLflow caps a param value at 6000 characters; params here are short scalars and lists
MAX_PARAM_CHARS = 6000

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
) -> Iterator[Any]:
    """An MLflow run for one stage execution, with params, commit, experiment name and digests.

    Yields the active ``mlflow`` module so the stage can log metrics and artifacts.
    """
    import mlflow

    mlflow.set_tracking_uri(tracking_uri())
    family_experiment = experiment_id(family)
    dvc_exp = os.environ.get("DVC_EXP_NAME")
    params = flatten(stage_params(stage))
    commit = git_commit()
    changed = changed_params(mlflow, family_experiment, stage, params)
    name = run_name or run_label(family, stage, dvc_exp or (commit[:7] if commit else "workspace"), changed)
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
    with mlflow.start_run(experiment_id=family_experiment, run_name=name, tags=run_tags):
        mlflow.log_params({k: str(v)[:MAX_PARAM_CHARS] for k, v in params.items()})
        yield mlflow


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


def register_model(
    flavor: str,
    model: Any,
    name: str,
    pip_requirements: Iterable[str],
    example: tuple[Any, Any] | None = None,
    **flavor_options: Any,
) -> int:
    """Log ``model`` to the active run with MLflow's ``flavor`` (``tensorflow``, ``sklearn``,
    ``pytorch``) and register it as a new version of ``name``; returns the version number.

    Every family registers through here: explicit pip requirements, a signature inferred from
    ``example`` (input, output) when given, and the version recorded as the run's tag
    ``registered_model_version``.
    """
    import importlib

    import mlflow
    from mlflow.models import infer_signature

    if example is not None:
        flavor_options["signature"] = infer_signature(*example)
    log_model = importlib.import_module(f"mlflow.{flavor}").log_model
    info = log_model(
        model, name="model", registered_model_name=name, pip_requirements=list(pip_requirements), **flavor_options
    )
    version = int(info.registered_model_version)
    mlflow.set_tag("registered_model_version", str(version))
    return version
