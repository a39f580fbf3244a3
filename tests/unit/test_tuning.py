"""overseer tune: spaces, studies (resume, pruning, changed space, bad storage), MLflow nesting, write-back."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from well_tables import layered_wells

from overseer import paths
from overseer.errors import InputError
from overseer.seismic import well_choice
from overseer.seismic.feature_choice import choose_features
from overseer.seismic.forest import cross_validate, resolve_config, train_forest, training_arrays
from overseer.seismic.well_choice import train_with_choice, without_auto
from overseer.tuning import objectives
from overseer.tuning.objectives import TunedModel, prepare_rf, score_rf, with_auto
from overseer.tuning.space import parse_space, suggest
from overseer.tuning.study import WORKER_ATTR, load_study, tune, worker_identity
from overseer.tuning.writeback import already_written, render, write_best

PARAMS = """\
# a params file in the project's style
train_rf:                  # random forest
  max_depth: 12            # depth of the trees
  max_features: sqrt
  seed: 0
other:
  keep: null               # stays null

tune:
  toy:
    seed: 1
    pruner: {n_startup_trials: 1, n_warmup_steps: 0}
    heartbeat_seconds: 1
    space:
      train_rf.max_depth: {type: int, low: 2, high: 20}
      train_rf.max_features: {type: categorical, choices: [sqrt, log2]}
"""


def toy_score(data: dict, cfg: dict, report) -> float:
    """A known optimum: depth 9 with sqrt; reports three 'epochs' so pruning has something to judge."""
    data["calls"] += 1
    value = -abs(cfg["max_depth"] - 9) / 10 + (0.1 if cfg["max_features"] == "sqrt" else 0.0)
    for step in range(3):
        report(step, value * (step + 1) / 3)
    return value


@pytest.fixture
def shared() -> dict:
    """What the toy model's prepare and score see: call counters."""
    return {"calls": 0, "prepared": 0}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared: dict) -> Path:
    (tmp_path / "params.yaml").write_text(PARAMS)
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")  # marks the repository root
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)

    def prepare(params, root):
        shared["prepared"] += 1
        return shared

    monkeypatch.setitem(
        objectives.MODELS,
        "toy",
        TunedModel("toy", "seismic", "train_rf", "val_macro_f1", "maximize", prepare, toy_score),
    )
    return tmp_path


def run_tune(project: Path, **kw):
    return tune("toy", params_file=project / "params.yaml", **kw)


def test_resume_continues_the_study_under_one_parent_run(project: Path) -> None:
    first = run_tune(project, trials=3)
    second = run_tune(project, trials=2)
    assert len(second.study.trials) == 5
    assert second.parent_run_id == first.parent_run_id
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("seismic").experiment_id])
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == first.parent_run_id]
    assert len(children) == 5
    assert {r.data.tags["optuna.trial"] for r in children} == {"0", "1", "2", "3", "4"}
    child = next(r for r in children if r.data.tags["optuna.state"] == "complete")
    assert set(child.data.params) >= {"train_rf.max_depth", "train_rf.max_features"}
    history = client.get_metric_history(child.info.run_id, "val_macro_f1")
    assert [m.step for m in history] == [0, 1, 2]
    # the best trial is now the trained configuration
    best = second.study.best_trial
    params = yaml.safe_load((project / "params.yaml").read_text())
    assert params["train_rf"]["max_depth"] == best.params["train_rf.max_depth"]
    assert params["train_rf"]["max_features"] == best.params["train_rf.max_features"]
    summary = yaml.safe_load((second.report_dir / "summary.json").read_text())
    assert summary["trials"] == 5 and summary["best_trial"] == best.number
    assert (second.report_dir / "optimization_history.png").stat().st_size > 1000
    assert (second.report_dir / "trials.csv").exists()


def test_write_back_keeps_comments_and_layout(project: Path) -> None:
    start = PARAMS.replace("max_depth: 12 ", "max_depth: 20 ")  # a poor baseline: tuning finds better
    (project / "params.yaml").write_text(start)
    result = run_tune(project, trials=2)
    assert result.study.best_trial.params["train_rf.max_depth"] != 20
    before, after = start.splitlines(), (project / "params.yaml").read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    note = f"tuned: study toy trial {result.study.best_trial.number}"
    assert 1 <= len(changed) <= 2
    for old, new in changed:
        assert old.split(":")[0] == new.split(":")[0] and note in new
    depth_line = next(line for line in after if "max_depth:" in line)
    assert "# depth of the trees | tuned:" in depth_line  # the line's own comment is kept
    assert "  keep: null               # stays null" in after


def test_write_back_is_idempotent_and_replaces_an_older_note(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(PARAMS)
    assert write_best(path, {"train_rf.max_depth": 7}, "s", 3) is True
    assert write_best(path, {"train_rf.max_depth": 7}, "s", 3) is False
    assert already_written(path.read_text(), {"train_rf.max_depth": 7}, "s", 3)
    text = render(path.read_text(), {"train_rf.max_depth": 5}, "s2", 1)
    line = next(line for line in text.splitlines() if "max_depth" in line)
    assert line.count("tuned:") == 1 and "study s2 trial 1" in line and "depth of the trees" in line


def test_a_changed_space_is_refused_before_any_trial(project: Path, shared: dict) -> None:
    run_tune(project, trials=1)
    text = (project / "params.yaml").read_text().replace("high: 20", "high: 30")
    (project / "params.yaml").write_text(text)
    calls = shared["calls"]
    with pytest.raises(InputError, match=r"was started .* with the space"):
        run_tune(project, trials=1)
    assert shared["calls"] == calls
    run_tune(project, trials=1, study_name="fresh")  # a new study name is the way out


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("{type: int, low: 5, high: 5}", "empty range"),
        ("{type: float, low: 1, high: two}", "must be a finite number"),
        ("{type: integer, low: 1, high: 2}", "'type' must be one of"),
        ("{type: float, low: 0, high: 1, log: true}", "log-scale range needs low > 0"),
        ("{type: categorical, choices: []}", "non-empty list"),
        ("{type: int, low: 1.5, high: 4}", "integer bounds"),
        ("[1, 2]", "expected a mapping"),
    ],
)
def test_bad_spaces_are_clear_errors_before_any_trial(project: Path, shared: dict, spec: str, message: str) -> None:
    text = (project / "params.yaml").read_text()
    text = text.replace("{type: int, low: 2, high: 20}", spec)
    (project / "params.yaml").write_text(text)
    with pytest.raises(InputError, match=message) as err:
        run_tune(project, trials=1)
    assert "tune.toy.space.train_rf.max_depth" in str(err.value)
    assert shared["prepared"] == 0


def test_space_paths_must_exist_in_the_model_section() -> None:
    params = yaml.safe_load(PARAMS)
    params["tune"]["toy"]["space"]["train_rf.n_trees"] = {"type": "int", "low": 1, "high": 3}
    with pytest.raises(InputError, match=r"params\.yaml has no 'train_rf\.n_trees'"):
        parse_space(params, "toy", "train_rf")
    params = yaml.safe_load(PARAMS)
    params["tune"]["toy"]["space"]["other.keep"] = {"type": "categorical", "choices": [1]}
    with pytest.raises(InputError, match=r"live under 'train_rf\.'"):
        parse_space(params, "toy", "train_rf")


def test_unknown_model_and_unreachable_storage(project: Path, shared: dict) -> None:
    with pytest.raises(InputError, match=r"unknown model 'svm'; tunable models: .*rf.*cnn.*gnn"):
        tune("svm", params_file=project / "params.yaml")
    with pytest.raises(InputError, match=r"cannot open the Optuna storage postgresql://me:\*\*\*@127.0.0.1:9/x") as err:
        run_tune(project, trials=1, storage="postgresql://me:secret@127.0.0.1:9/x")
    assert "secret" not in str(err.value)
    assert shared["prepared"] == 0


def test_poor_trials_are_pruned_and_marked(project: Path) -> None:
    result = run_tune(project, trials=12)
    states = [t.state for t in result.study.trials]
    assert TrialState.PRUNED in states
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs(
        [client.get_experiment_by_name("seismic").experiment_id], "tags.`optuna.state` = 'pruned'"
    )
    assert len(runs) == states.count(TrialState.PRUNED)
    assert all(r.info.status == "KILLED" for r in runs)


def draws(trials: list) -> list[tuple]:
    return [(t.params["train_rf.max_depth"], t.params["train_rf.max_features"]) for t in trials]


def test_a_resumed_study_draws_new_configurations(project: Path) -> None:
    # TPE's first trials are random draws: a sampler restarted from the seed alone replays them
    text = (project / "params.yaml").read_text().replace("high: 20", "high: 100000")
    (project / "params.yaml").write_text(text)
    first = run_tune(project, trials=3, write_back=False).study.trials
    resumed = run_tune(project, trials=2, write_back=False).study.trials[3:]
    assert len(first) == 3 and len(resumed) == 2
    assert not set(draws(resumed)) & set(draws(first[1:]))  # trial 0 is the baseline


def test_the_search_is_decided_by_seed_and_study_history() -> None:
    params = yaml.safe_load(PARAMS)
    dims = parse_space(params, "toy", "train_rf")
    model = TunedModel("toy", "seismic", "train_rf", "m", "maximize", None, None)

    def objective(trial: optuna.Trial) -> float:
        cfg = {path.removeprefix("train_rf."): value for path, value in suggest(trial, dims).items()}
        return toy_score({"calls": 0}, cfg, lambda step, value: None)

    def search(seed: int) -> list[tuple]:
        storage = optuna.storages.InMemoryStorage()
        for _ in range(2):  # a run, then its resumption with a new sampler (a new process)
            study = load_study(storage, "s", model, dims, seed, {})
            study.optimize(objective, n_trials=6)
        return draws(study.trials)  # past TPE's 10 random startup trials: TPE proper draws the last two

    assert search(1) == search(1)
    assert search(1) != search(2)


WORKER = """
import os, signal, sys
from overseer.tuning import objectives
from overseer.tuning.objectives import TunedModel
from overseer.tuning.study import tune

def score(data, cfg, report):
    if data["n"] >= 2:  # the third trial: the worker dies mid-trial, as under kill -9
        os.kill(os.getpid(), signal.SIGKILL)
    data["n"] += 1
    return float(cfg["max_depth"])

objectives.MODELS["toy"] = TunedModel("toy", "seismic", "train_rf", "m", "maximize", lambda p, r: {"n": 0}, score)
tune("toy", trials=10, params_file=sys.argv[1])
"""


def long_heartbeat(project: Path) -> None:
    """A heartbeat so slow that no trial here can go stale by waiting: what fails one is the run itself."""
    text = (project / "params.yaml").read_text().replace("heartbeat_seconds: 1", "heartbeat_seconds: 600")
    (project / "params.yaml").write_text(text)


def test_a_killed_run_loses_no_finished_trial_and_its_running_trial_fails_when_the_next_run_opens(
    project: Path,
) -> None:
    long_heartbeat(project)
    script = project / "worker.py"
    script.write_text(textwrap.dedent(WORKER))
    worker = subprocess.run([sys.executable, str(script), str(project / "params.yaml")], cwd=project)
    assert worker.returncode == -signal.SIGKILL
    storage = f"sqlite:///{project / 'optuna.db'}"
    left = optuna.load_study(study_name="toy", storage=storage).trials
    assert [t.state for t in left] == [TrialState.COMPLETE] * 2 + [TrialState.RUNNING]

    opened = run_tune(project, trials=0)  # opens the study, runs nothing
    states = [t.state for t in opened.study.trials]
    assert states == [TrialState.COMPLETE] * 2 + [TrialState.FAIL]  # finished before the kill: kept
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    killed = client.get_run(left[2].user_attrs["mlflow_run_id"])
    assert killed.info.status == "FAILED" and killed.data.tags["optuna.state"] == "fail"

    result = run_tune(project, trials=2)
    finished = (TrialState.COMPLETE, TrialState.PRUNED)
    assert len(result.study.trials) == 5 and all(t.state in finished for t in result.study.trials[3:])


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used with Study.optimize")
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_trials_of_live_workers_keep_running_and_a_stale_heartbeat_fails(project: Path) -> None:
    # a shared store: one worker alive on this machine, one alive elsewhere, one elsewhere that died
    long_heartbeat(project)
    run_tune(project, trials=1)
    url = f"sqlite:///{project / 'optuna.db'}"
    storage = optuna.storages.RDBStorage(url, heartbeat_interval=600)
    study = optuna.load_study(study_name="toy", storage=storage)
    client = MlflowClient(f"sqlite:///{project / 'mlflow.db'}")
    run_id = client.create_run(client.get_experiment_by_name("seismic").experiment_id).info.run_id
    here, elsewhere, dead = study.ask(), study.ask(), study.ask()
    here.set_user_attr(WORKER_ATTR, worker_identity())  # this very process: alive
    for trial in (elsewhere, dead):
        trial.set_user_attr(WORKER_ATTR, {"machine": "worker-2.internal", "pid": 4242, "started": "1"})
        storage.record_heartbeat(trial._trial_id)
    dead.set_user_attr("mlflow_run_id", run_id)
    with sqlite3.connect(project / "optuna.db") as db:  # its last heartbeat: long ago
        db.execute(
            "UPDATE trial_heartbeats SET heartbeat = '2000-01-01 00:00:00' WHERE trial_id = ?", (dead._trial_id,)
        )

    result = run_tune(project, trials=1)
    states = {t.number: t.state for t in result.study.trials}
    assert states[here.number] == states[elsewhere.number] == TrialState.RUNNING
    assert states[dead.number] == TrialState.FAIL
    assert states[max(states)] in (TrialState.COMPLETE, TrialState.PRUNED)  # the new trial ran
    assert client.get_run(run_id).info.status == "FAILED"


def test_a_baseline_that_stays_best_leaves_params_yaml_byte_for_byte(project: Path) -> None:
    # params.yaml already trains the toy optimum, with the note of the study that found it
    text = (project / "params.yaml").read_text()
    text = text.replace(
        "  max_depth: 12            # depth of the trees",
        "  max_depth: 9  # depth of the trees | tuned: study old trial 4",
    )
    (project / "params.yaml").write_text(text)
    before = (project / "params.yaml").read_bytes()
    result = run_tune(project, trials=2)
    best = result.study.best_trial
    assert best.number == 0 and best.user_attrs["overseer.baseline"] is True
    assert result.written is False
    assert (project / "params.yaml").read_bytes() == before


def rf_table() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    n = 400
    table = pd.DataFrame(
        {
            "inline": rng.integers(0, 40, n),
            "crossline": rng.integers(0, 40, n),
            "sample": rng.integers(0, 50, n),
            "facies": rng.integers(0, 2, n),
        }
    )
    table["a"] = table["facies"] + rng.normal(0, 0.5, n)
    table["b"] = rng.normal(0, 1, n)
    return table


RF_CFG = {"tree_counts": [5, 10], "folds": 3, "block_size": 8, "max_depth": 4, "n_jobs": 1}


def test_rf_objective_is_blocked_cv_macro_f1_reported_per_fold() -> None:
    seen: list[tuple[int, float]] = []
    value = score_rf({"table": rf_table(), "features": ["a", "b"]}, RF_CFG, lambda s, v: seen.append((s, v)))
    assert [s for s, _ in seen] == [0, 1, 2]
    assert value == pytest.approx(seen[-1][1])
    assert 0.6 < value <= 1.0  # attribute a separates the facies


def test_rf_objective_is_train_rfs_cv_at_the_largest_tree_count() -> None:
    # the same folds and forests as train_rf: the mean of train_forest's per-fold macro-F1 at 10 trees
    table = rf_table()
    seen: list[tuple[int, float]] = []
    value = score_rf({"table": table, "features": ["a", "b"]}, RF_CFG, lambda s, v: seen.append((s, v)))
    cv = train_forest(table, ["a", "b"], RF_CFG).cv
    per_fold = cv[cv["n_estimators"] == 10].sort_values("fold")["macro_f1"].to_numpy()
    assert value == float(np.mean(per_fold))
    assert [v for _, v in seen] == [float(np.mean(per_fold[: i + 1])) for i in range(3)]


def test_a_pruned_rf_trial_stops_after_the_fold_that_pruned_it() -> None:
    steps: list[int] = []

    def report(step: int, value: float) -> None:
        steps.append(step)
        raise optuna.TrialPruned(f"step {step}")

    with pytest.raises(optuna.TrialPruned, match="step 0"):
        score_rf({"table": rf_table(), "features": ["a", "b"]}, RF_CFG, report)
    assert steps == [0]


# --- rf on well logs: train_rf's auto well features / smoothing, resolved once per study
WELL_LOGS = ["gr", "pe", "Formation:A"]
WELL_CFG = {
    "features": "all", "tree_counts": [10], "folds": 3, "n_jobs": 1, "max_depth": 8,
    "well_features": {"neighbours": "auto", "gradients": "auto"}, "smooth": {"window": "auto"},
}  # fmt: skip
AUTO_KEYS = ["well_features.neighbours", "well_features.gradients", "smooth.window"]


def prepared_root(root: Path, table: pd.DataFrame, source: str = "well_logs") -> Path:
    """What ingest@seismic leaves for tuning: the training table and meta.json."""
    (root / paths.SEISMIC_TRAIN_TABLE).parent.mkdir(parents=True)
    table.to_parquet(root / paths.SEISMIC_TRAIN_TABLE)
    (root / paths.SEISMIC_META).write_text(json.dumps({"attributes": WELL_LOGS, "source": source}))
    return root


def tuning_params(cfg: dict, space: dict | None = None) -> dict:
    return {
        "train_rf": cfg,
        "tune": {"rf": {"space": space or {"train_rf.max_depth": {"type": "int", "low": 2, "high": 9}}}},
    }


def _no_choice(*args, **kwargs):
    raise AssertionError("the auto choice ran")


@pytest.fixture(scope="module")
def logs() -> pd.DataFrame:
    return layered_wells(shuffle=False)


def test_prepare_rf_resolves_auto_as_train_rf_does(logs: pd.DataFrame, tmp_path: Path) -> None:
    data = prepare_rf(tuning_params(WELL_CFG), prepared_root(tmp_path, logs))
    # train_rf's stage: choose_features, then train_with_choice on the chosen attributes
    chosen = choose_features("all", None, WELL_LOGS, logs, WELL_CFG)
    expected = train_with_choice(logs, chosen.features, WELL_CFG, "well_logs").resolved
    assert data["features"] == chosen.features == WELL_LOGS
    assert data["auto"] == {k: expected[k.split(".")[0]][k.split(".")[1]] for k in AUTO_KEYS}
    trial = with_auto(WELL_CFG, data["auto"])  # a trial that tunes none of them
    assert {k: trial[k] for k in ("well_features", "smooth")} == {k: expected[k] for k in ("well_features", "smooth")}
    assert expected["well_features"]["neighbours"] > 0  # these beds reward neighbours: auto is not off here
    # the trial scores the resolved model: train_rf's CV of it (one-hot column passed through), not the off one
    seen: list[tuple[int, float]] = []
    value = score_rf(data, WELL_CFG, lambda s, v: seen.append((s, v)))
    conf = resolve_config(expected)
    x, y, groups, inputs = training_arrays(logs, WELL_LOGS, conf)
    folds = cross_validate(x, y, groups, conf, inputs=inputs).table.sort_values("fold")["macro_f1"]
    assert value == pytest.approx(float(folds.mean())) and len(seen) == WELL_CFG["folds"]
    off = score_rf({**data, "auto": {}}, WELL_CFG, lambda s, v: None)
    assert off == score_rf(data, without_auto(WELL_CFG), lambda s, v: None) != value


def test_tuned_auto_keys_keep_the_trials_values(logs: pd.DataFrame, tmp_path: Path, monkeypatch) -> None:
    space = {
        "train_rf.well_features.neighbours": {"type": "categorical", "choices": [0, 1, 2]},
        "train_rf.well_features.gradients": {"type": "categorical", "choices": [False, True]},
    }
    cfg = {**WELL_CFG, "smooth": {"window": 3}}
    monkeypatch.setattr(well_choice, "train_with_choice", _no_choice)  # every auto key tuned: nothing to choose
    assert prepare_rf(tuning_params(cfg, space), prepared_root(tmp_path, logs))["auto"] == {}
    trial = {**WELL_CFG, "well_features": {"neighbours": 2, "gradients": "auto"}}
    resolved = with_auto(trial, {"well_features.neighbours": 1, "well_features.gradients": True, "smooth.window": 5})
    assert resolved["well_features"] == {"neighbours": 2, "gradients": True} and resolved["smooth"] == {"window": 5}
    assert trial["well_features"]["gradients"] == "auto"  # the trial's own params are not changed


def test_auto_is_off_for_volumes_without_a_choice(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(well_choice, "train_with_choice", _no_choice)
    table = rf_table().rename(columns={"a": "gr", "b": "pe"}).assign(**{"Formation:A": 0.0})
    data = prepare_rf(tuning_params(WELL_CFG), prepared_root(tmp_path, table, source="volumes"))
    assert data["auto"] == {"well_features.neighbours": 0, "well_features.gradients": False, "smooth.window": 1}


def test_the_smoothing_window_is_not_tunable() -> None:
    params = tuning_params(WELL_CFG, {"train_rf.smooth.window": {"type": "categorical", "choices": [1, 3]}})
    with pytest.raises(InputError, match=r"tune\.rf\.space\.train_rf\.smooth\.window: not tunable: .*every value"):
        parse_space(params, "rf", "train_rf")


CNN_CFG = {
    "learning_rate": 3e-2, "batch_size": 8, "epochs": 6, "early_stopping_patience": 2, "decay_steps": 10000,
    "decay_rate": 0.9, "dropout": 0.3, "head_units": [8], "standardize_embeddings": True, "seed": 5,
}  # fmt: skip


@pytest.fixture(scope="module")
def embeddings() -> dict:
    """Tiny stand-ins for backbone embeddings: 40 images, 5 classes, a weak class signal."""
    from overseer.splits import stratified_split

    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(5), 8)
    x = (rng.normal(0, 0.02, (40, 2048)) + 0.01 * y[:, None] * (np.arange(2048) % 5 == 0)).astype(np.float32)
    return {"x": x, "y": y, "is_val": stratified_split(y, 0.25, 5)}


def test_cnn_objective_is_train_heads_validation_macro_f1(embeddings: dict, tmp_path: Path) -> None:
    # score_cnn trains through train_cnn's own train_head: the same seeded head, the same best weights
    from overseer.metrics import classification_report
    from overseer.trackbed.data.schema import CLASSES
    from overseer.trackbed.train import set_determinism, train_head

    seen: list[tuple[int, float]] = []
    value = objectives.score_cnn(embeddings, CNN_CFG, lambda s, v: seen.append((s, v)))
    x, y, is_val = embeddings["x"], embeddings["y"], embeddings["is_val"]
    set_determinism(CNN_CFG["seed"])
    head, history = train_head(x[~is_val], y[~is_val], x[is_val], y[is_val], CNN_CFG, tmp_path, verbose=0)
    pred = head.predict(x[is_val], verbose=0).argmax(axis=1)
    assert value == classification_report(y[is_val], pred, list(CLASSES)).macro["f1"]
    assert [s for s, _ in seen] == list(range(len(history)))


def test_a_pruned_cnn_trial_ends_the_fit(embeddings: dict) -> None:
    steps: list[int] = []

    def report(step: int, value: float) -> None:
        steps.append(step)
        if step == 1:
            raise optuna.TrialPruned("epoch 1")

    with pytest.raises(optuna.TrialPruned, match="epoch 1"):
        objectives.score_cnn(embeddings, CNN_CFG, report)
    assert steps == [0, 1]
