"""Run an Optuna study for one model: checked space, resumable storage, nested MLflow runs, write-back.

* Storage is ``sqlite:///<repo>/optuna.db`` by default; a PostgreSQL URL lets several worker
  processes (one machine or many) share one study. Re-running with the same study name continues
  it: finished trials live in the storage, so a killed run loses none of them. Trials a killed
  worker left RUNNING are marked failed by the storage heartbeat when the next worker starts.
* The space is stored with the study; resuming with a different space is refused before any
  trial runs (the old trials would not be comparable).
* MLflow: one parent run per study (its id is kept in the study, so every worker and every resumed
  run nests under the same parent) and one child run per trial with its params, its
  intermediate scores as a metric history and its final value. Optuna's own MLflow callback is
  deprecated; this logs with the MLflow client directly.
* At the end the best trial is written into params.yaml (``writeback``) and plots of the study go
  to ``reports/tuning/<model>/<study>/``.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
import yaml

from overseer.errors import InputError
from overseer.params import load_tuning_params
from overseer.repo import git_commit, repo_root
from overseer.tracking import experiment_id, flatten, log_params, open_store, tracking_uri
from overseer.tuning.objectives import TunedModel, get_model
from overseer.tuning.space import Dimension, describe, get_path, parse_space, set_path, suggest
from overseer.tuning.writeback import write_best

log = logging.getLogger(__name__)

SPACE_ATTR = "overseer.space"
PARENT_ATTR = "overseer.mlflow_parent_run"
DEFAULT_PRUNER = {"n_startup_trials": 3, "n_warmup_steps": 1}


@dataclass
class TuneResult:
    study: optuna.Study
    model: TunedModel
    best_values: dict[str, Any]
    written: bool
    report_dir: Path
    parent_run_id: str

    def summary(self) -> dict[str, Any]:
        trials = self.study.get_trials(deepcopy=False)
        states = [t.state.name.lower() for t in trials]
        best = self.study.best_trial
        return {
            "study": self.study.study_name,
            "model": self.model.name,
            "metric": self.model.metric,
            "direction": self.model.direction,
            "trials": len(trials),
            **{f"trials_{s}": states.count(s) for s in sorted(set(states))},
            "best_trial": best.number,
            "best_value": best.value,
            "best_params": self.best_values,
            "params_written": self.written,
            "mlflow_parent_run": self.parent_run_id,
        }


def default_storage(root: Path) -> str:
    return f"sqlite:///{root / 'optuna.db'}"


def open_storage(url: str, heartbeat: int = 30) -> optuna.storages.BaseStorage:
    """An RDB storage with a heartbeat (stale RUNNING trials of killed workers become FAIL).

    An unreachable or malformed URL is an InputError before any trial runs.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.storages.RDBStorage(url, heartbeat_interval=heartbeat, grace_period=3 * heartbeat)
    except Exception as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot open the Optuna storage {_redact(url)}: {reason}") from exc


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        cred, host = rest.rsplit("@", 1)
        return f"{scheme}://{cred.split(':', 1)[0]}:***@{host}"
    return url


def load_study(
    storage: optuna.storages.BaseStorage,
    name: str,
    model: TunedModel,
    dims: list[Dimension],
    seed: int,
    pruner: Mapping,
    current: Mapping[str, Any] | None = None,
) -> optuna.Study:
    """Create the study or continue it; a study started with another space or direction is refused."""
    study = optuna.create_study(
        study_name=name,
        storage=storage,
        direction=model.direction,
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(**{**DEFAULT_PRUNER, **dict(pruner)}),
    )
    if study.direction.name.lower() != model.direction:
        raise InputError(
            f"study {name!r} optimises {study.direction.name.lower()}, {model.name} needs {model.direction}"
        )
    space = describe(dims)
    recorded = study.user_attrs.get(SPACE_ATTR)
    if recorded is None:
        study.set_user_attr(SPACE_ATTR, space)
        study.set_user_attr("overseer.model", model.name)
        if current:  # trial 0 is the configuration params.yaml trains now: the baseline to beat
            study.enqueue_trial(current, user_attrs={"overseer.baseline": True}, skip_if_exists=True)
    elif recorded != space or study.user_attrs.get("overseer.model") != model.name:
        raise InputError(
            f"study {name!r} was started for {study.user_attrs.get('overseer.model')} with the space "
            f"{recorded}; params.yaml now declares {space} for {model.name}. Trials from different spaces "
            "are not comparable: start a new study (--study NEW_NAME) or restore the old space"
        )
    return study


def current_values(params: Mapping[str, Any], dims: list[Dimension]) -> dict[str, Any]:
    """The values params.yaml holds for the space's paths, where they lie inside the space."""
    values = {}
    for d in dims:
        value = get_path(params, d.path)
        if d.kind == "categorical":
            inside = value in d.choices
        else:
            inside = isinstance(value, int | float) and not isinstance(value, bool) and d.low <= value <= d.high
        if not inside:
            return {}  # a partial baseline would be filled in at random: no baseline then
        values[d.path] = value
    return values


def _parent_run(client: Any, study: optuna.Study, experiment_id: str, model: TunedModel) -> str:
    """The study's MLflow parent run: created by the first worker, reused by the others and on resume."""
    existing = study.user_attrs.get(PARENT_ATTR)
    if existing:
        return existing
    run = client.create_run(
        experiment_id,
        run_name=f"{model.family}/tune {model.name} [{study.study_name}]",
        tags={
            "overseer.family": model.family,
            "overseer.stage": "tune",
            "overseer.model": model.name,
            "optuna.study": study.study_name,
            "git.commit": git_commit() or "none",
        },
    )
    study.set_user_attr(PARENT_ATTR, run.info.run_id)
    winner = optuna.load_study(study_name=study.study_name, storage=study._storage).user_attrs[PARENT_ATTR]
    if winner != run.info.run_id:  # another worker registered its parent at the same moment
        client.delete_run(run.info.run_id)
    return winner


def _objective(model: TunedModel, params: Mapping[str, Any], dims: list[Dimension], data: Any, client: Any,
               experiment_id: str, parent: str) -> Any:  # fmt: skip
    def objective(trial: optuna.Trial) -> float:
        values = suggest(trial, dims)
        cfg = yaml.safe_load(yaml.safe_dump(dict(params)))  # a deep copy of plain data
        for path, value in values.items():
            set_path(cfg, path, value)
        run = client.create_run(
            experiment_id,
            run_name=f"{model.family}/tune {model.name} trial {trial.number}",
            tags={
                "mlflow.parentRunId": parent,
                "overseer.family": model.family,
                "overseer.stage": "tune",
                "optuna.study": trial.study.study_name,
                "optuna.trial": str(trial.number),
            },
        )
        run_id = run.info.run_id
        trial.set_user_attr("mlflow_run_id", run_id)
        section = flatten(cfg[model.section], f"{model.section}.")
        log_params(client, run_id, section)

        def report(step: int, value: float) -> None:
            client.log_metric(run_id, model.metric, value, step=step)
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at step {step} ({model.metric}={value:.4f})")

        try:
            value = model.score(data, cfg[model.section], report)
        except optuna.TrialPruned:
            client.set_tag(run_id, "optuna.state", "pruned")
            client.set_terminated(run_id, "KILLED")
            raise
        except BaseException:
            client.set_tag(run_id, "optuna.state", "fail")
            client.set_terminated(run_id, "FAILED")
            raise
        client.log_metric(run_id, f"{model.metric}_final", value)
        client.set_tag(run_id, "optuna.state", "complete")
        client.set_terminated(run_id, "FINISHED")
        return value

    return objective


def tune(
    model_name: str,
    *,
    trials: int | None = 20,
    timeout: float | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    params_file: str | os.PathLike = "params.yaml",
    write_back: bool = True,
    reports: str | os.PathLike = "reports/tuning",
) -> TuneResult:
    """Run (or continue) a study for ``model_name`` and make its best trial the trained configuration."""
    model = get_model(model_name)
    params_path = Path(params_file)
    if not params_path.exists():
        raise InputError("no params.yaml here; run from the repository root or pass --params", path=params_path)
    params = load_tuning_params(params_path, model.name, model.section)  # checked before any trial
    dims = parse_space(params, model.name, model.section)
    settings = params["tune"][model.name]
    if trials is not None and int(trials) < 0:
        raise InputError(f"--trials must be 0 or more, got {trials}")
    root = repo_root(params_path.resolve().parent)
    url = storage or settings.get("storage") or default_storage(root)
    name = study_name or settings.get("study") or f"{model.name}"
    heartbeat = int(settings.get("heartbeat_seconds", 30))
    study = load_study(
        open_storage(url, heartbeat), name, model, dims, int(settings.get("seed", 0)), settings.get("pruner", {}),
        current_values(params, dims),
    )  # fmt: skip

    family_experiment = experiment_id(model.family, root)
    client, _ = open_store(tracking_uri(root))
    parent = _parent_run(client, study, family_experiment, model)
    if trials != 0 or timeout:
        data = model.prepare(params, root)
        study.optimize(
            _objective(model, params, dims, data, client, family_experiment, parent),
            n_trials=trials,
            timeout=timeout,
            catch=(),
            gc_after_trial=True,
        )
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if not complete:
        raise InputError(f"study {name!r} has no complete trial yet; run more trials")
    best = study.best_trial
    best_values = {d.path: best.params[d.path] for d in dims}
    client.log_metric(parent, f"best_{model.metric}", float(best.value))
    client.set_tag(parent, "optuna.best_trial", str(best.number))
    client.set_terminated(parent, "FINISHED")
    written = write_best(params_path, best_values, name, best.number) if write_back else False
    from overseer.tuning.plots import write_study_report

    report_dir = Path(root / reports / model.name / name)
    result = TuneResult(study, model, best_values, written, report_dir, parent)
    write_study_report(study, report_dir, result.summary())
    return result
