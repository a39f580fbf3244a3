"""MLflow conventions: one experiment per family, one run per stage execution.

Every run carries the stage's params as DVC tracks them, the git commit, the DVC experiment
name when there is one and the content digests of the stage's input data (from ``dvc.lock``
where an upstream stage recorded them). The default store is ``sqlite:///<repo>/mlflow.db``
with an absolute path, so that runs from DVC's temporary experiment workspaces
(``.dvc/tmp/exps/...``) land in the same store; ``MLFLOW_TRACKING_URI`` overrides it.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

FAMILIES = ("trackbed", "seismic", "engraving")


def repo_root(start: str | os.PathLike | None = None) -> Path:
    """The user's repository root, also from inside a DVC temporary experiment workspace."""
    here = Path(start or os.getcwd()).resolve()
    parts = here.parts
    # dvc exp run --temp / --queue runs in <repo>/.dvc/tmp/exps/<...>: the store lives in <repo>
    for i in range(len(parts) - 1):
        if parts[i] == ".dvc" and parts[i + 1] == "tmp":
            return Path(*parts[:i])
    for candidate in (here, *here.parents):
        if (candidate / "dvc.yaml").exists() or (candidate / ".git").exists():
            return candidate
    return here


def tracking_uri(root: str | os.PathLike | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` when set, else the sqlite store at the repository root."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{repo_root(root) / 'mlflow.db'}"


def git_commit(root: str | os.PathLike | None = None) -> str | None:
    """The checked-out commit, or None outside git (or before the first commit)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root or os.getcwd(), capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


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


def file_digest(path: str | os.PathLike) -> str:
    """md5 of a file, or of a folder's sorted (relative path, file md5) list, as DVC hashes content."""
    target = Path(path)
    if target.is_file():
        digest = hashlib.md5()
        with target.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    entries = sorted(p for p in target.rglob("*") if p.is_file())
    digest = hashlib.md5()
    for entry in entries:
        digest.update(f"{entry.relative_to(target).as_posix()}:{file_digest(entry)}\n".encode())
    return digest.hexdigest() + ".dir"


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


def _experiment_id(mlflow: Any, family: str) -> str:
    experiment = mlflow.get_experiment_by_name(family)
    if experiment is not None:
        return experiment.experiment_id
    artifact_root = None
    if not tracking_uri().startswith(("http://", "https://", "databricks")):
        # A database URI (sqlite, postgresql, ...) has no artifact server: MLflow would put artifacts
        # under the working directory, which is DVC's temporary one in queued runs. Keep them beside
        # the repository, by absolute path, whatever the working directory.
        artifact_root = (repo_root() / "mlartifacts" / family).as_uri()
    try:
        return mlflow.create_experiment(family, artifact_location=artifact_root)
    except Exception:  # noqa: BLE001 - a concurrent stage created it first
        return mlflow.get_experiment_by_name(family).experiment_id


def changed_params(mlflow: Any, experiment_id: str, stage: str, params: Mapping[str, Any]) -> dict[str, str]:
    """The params whose values differ from the last finished run of ``stage`` (all of them for a first run:
    nothing to compare with gives an empty dict)."""
    try:
        last = mlflow.search_runs(
            experiment_ids=[experiment_id],
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
    return {k: str(v)[:6000] for k, v in params.items() if str(v)[:6000] != before.get(k)}


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
    experiment_id = _experiment_id(mlflow, family)
    dvc_exp = os.environ.get("DVC_EXP_NAME")
    params = flatten(stage_params(stage))
    commit = git_commit()
    changed = changed_params(mlflow, experiment_id, stage, params)
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
    with mlflow.start_run(experiment_id=experiment_id, run_name=name, tags=run_tags):
        # MLflow caps a param value at 6000 characters; params here are short scalars and lists
        mlflow.log_params({k: str(v)[:6000] for k, v in params.items()})
        yield mlflow


def log_artifacts(mlflow: Any, paths: Iterable[str | os.PathLike], artifact_path: str | None = None) -> None:
    """Log files and folders that exist; skip those that do not."""
    for path in paths:
        target = Path(path)
        if target.is_dir():
            mlflow.log_artifacts(str(target), artifact_path=artifact_path)
        elif target.is_file():
            mlflow.log_artifact(str(target), artifact_path=artifact_path)
