"""Run an Optuna study for one model: checked space, resumable storage, nested MLflow runs, write-back.

* Storage is ``sqlite:///<repo>/optuna.db`` by default; a PostgreSQL URL lets several worker
  processes (one machine or many) share one study. Re-running with the same study name continues
  it: finished trials live in the storage, so a killed run loses none of them. A trial a killed
  worker left RUNNING is marked failed when the next run opens the study (``fail_dead_trials``):
  at once where the worker ran on this machine and its process is gone, after the storage
  heartbeat's grace period where it ran elsewhere. A live worker's trial is never failed.
* The sampler is TPE seeded per trial from (seed, trial number) (``TrialSeededTPE``): a resumed
  study continues the search instead of replaying the configurations it already tried, the
  search is deterministic for a given study history, and workers sharing a study draw apart.
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
import socket
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import yaml
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

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
WORKER_ATTR = "overseer.worker"  # the machine and process running a trial: tells a dead worker's trials
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


def open_storage(url: str, heartbeat: int = 30) -> optuna.storages.RDBStorage:
    """An RDB storage with a heartbeat (stale RUNNING trials of killed workers become FAIL).

    A running trial records a heartbeat every ``heartbeat`` seconds; one whose last heartbeat is
    more than 3 × ``heartbeat`` old is stale (the slack covers a slow database and a busy worker,
    so a live worker's trial is never taken for dead). An unreachable or malformed URL is an
    InputError before any trial runs.
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


def trial_seed(seed: int, number: int) -> int:
    """The sampler seed of trial ``number`` of a study seeded ``seed`` (a 32-bit int, well mixed)."""
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


class TrialSeededTPE(optuna.samplers.BaseSampler):
    """Optuna's TPE sampler with a random stream per trial, seeded from (seed, trial number).

    A ``TPESampler(seed=seed)`` restarts its stream in every process: a resumed study (or a second
    worker) draws its first trials from the same stream again, and TPE's ``n_startup_trials``
    are plain random draws, so they repeat the configurations already tried. Here trial N's draws
    come from ``trial_seed(seed, N)`` and the study's trials so far: new trial numbers draw new
    configurations, and the same history gives the same search.
    """

    def __init__(self, seed: int = 0, **tpe: Any) -> None:
        self.seed = seed
        self._tpe = tpe
        self._samplers: dict[int, optuna.samplers.TPESampler] = {}

    def _sampler(self, trial: FrozenTrial) -> optuna.samplers.TPESampler:
        sampler = self._samplers.get(trial.number)
        if sampler is None:
            sampler = optuna.samplers.TPESampler(seed=trial_seed(self.seed, trial.number), **self._tpe)
            self._samplers[trial.number] = sampler
        return sampler

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self._sampler(trial).infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._sampler(trial).sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self._sampler(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._sampler(trial).before_trial(study, trial)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self._sampler(trial).after_trial(study, trial, state, values)
        self._samplers.pop(trial.number, None)

    def reseed_rng(self) -> None:
        """Nothing to do: parallel trials have distinct numbers, hence distinct streams already."""


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
        sampler=TrialSeededTPE(seed),
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


def worker_identity() -> dict[str, Any]:
    """This machine and process, as recorded with each trial it runs.

    The machine is the host name plus the PID namespace (containers sharing a host name have their
    own PIDs); the process is its PID plus, where /proc tells it, its start time, so that a PID the
    system has since given to another process is not taken for the worker.
    """
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    stat = _proc_stat(os.getpid())
    return {
        "machine": f"{socket.gethostname()} {namespace}".strip(),
        "pid": os.getpid(),
        "started": stat[19] if stat else None,
    }


def _proc_stat(pid: int) -> list[str] | None:
    """Fields 3… of /proc/<pid>/stat (state, …, start time at [19]); None where there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()  # the name in parentheses may hold spaces


def _worker_is_gone(worker: Any) -> bool:
    """True when ``worker`` (a trial's WORKER_ATTR) ran on this machine and its process has ended."""
    if not isinstance(worker, dict) or worker.get("machine") != worker_identity()["machine"]:
        return False  # another machine (or no record): only its heartbeat can tell
    pid = worker.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # a process of another user has that PID
    stat = _proc_stat(pid)
    if stat is None:
        return not Path("/proc/self/stat").exists()  # no /proc here: os.kill said it is alive
    if stat[0] in ("Z", "X"):
        return True  # ended, not yet reaped by its parent
    return worker.get("started") not in (None, stat[19])  # the PID now belongs to another process


def fail_dead_trials(study: optuna.Study, on_fail: Callable[[FrozenTrial], None] = lambda trial: None) -> list[int]:
    """Mark FAIL the RUNNING trials of workers that are gone; return the numbers failed at once.

    Called when a run opens the study, before it runs a trial. A trial whose worker ran on this
    machine and whose process has ended is failed at once (a killed local run, whatever the
    storage), and ``on_fail`` gets it. Trials of other machines' workers are failed only when
    their heartbeat is stale (older than the storage's grace period, see ``open_storage``;
    Optuna checks that again before every trial, calling the storage's
    ``heartbeat_stale_trial_callback``): a live worker keeps its heartbeat fresh, so a shared
    study never loses a trial that is still running.
    """
    failed = []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get(WORKER_ATTR)
        if not _worker_is_gone(worker):
            continue
        try:
            study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker ended it first
        log.warning(
            "study %s: trial %d was left running by process %s, which is gone; marked failed",
            study.study_name, trial.number, worker["pid"],
        )  # fmt: skip
        failed.append(trial.number)
        on_fail(trial)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    return failed


def _end_trial_run(client: Any, trial: FrozenTrial) -> None:
    """The MLflow run of a trial that was failed for its dead worker ends FAILED too."""
    run_id = trial.user_attrs.get("mlflow_run_id")
    if run_id:
        client.set_tag(run_id, "optuna.state", "fail")
        client.set_terminated(run_id, "FAILED")


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
        trial.set_user_attr(WORKER_ATTR, worker_identity())
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
    store = open_storage(url, heartbeat)
    study = load_study(
        store, name, model, dims, int(settings.get("seed", 0)), settings.get("pruner", {}), current_values(params, dims)
    )

    family_experiment = experiment_id(model.family, root)
    client, _ = open_store(tracking_uri(root))
    # trials failed for a dead worker (here, or by the heartbeat before each trial) end their MLflow run
    store.heartbeat_stale_trial_callback = lambda _study, trial: _end_trial_run(client, trial)
    fail_dead_trials(study, lambda trial: _end_trial_run(client, trial))
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
