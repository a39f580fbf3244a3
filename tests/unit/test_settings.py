"""Run-time settings (overseer.settings): variable beats local file beats default; bad values and moved
params keys are one InputError line each, naming the variable or the file and key and what is allowed."""

from __future__ import annotations

import ast
import copy
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from overseer import settings as run_settings
from overseer.errors import InputError
from overseer.params import check_params_file
from overseer.settings import LOCAL_FILE, SETTINGS, Settings, load_settings, local_settings_file
from overseer.stage import load_params, run

ROOT = Path(__file__).resolve().parents[2]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
# the values params.yaml held before the keys moved: the defaults must not change a run
OLD_PARAMS = {
    "progress": True,
    "torch_threads": 1,
    "n_jobs": 2,
    "chunk_voxels": 2_000_000,
    "cache_dir": ".cache/engraving",
    "tf_strategy": "auto",  # never a param; its default changes nothing on a machine without two GPUs
}
NO_FILE = "/nonexistent/overseer.local.yaml"


def local_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / LOCAL_FILE
    path.write_text(text)
    return path


def error(environ: dict[str, str], file: str | Path = NO_FILE) -> str:
    with pytest.raises(InputError) as caught:
        load_settings(environ, file)
    return str(caught.value)


# --- where a value comes from ----------------------------------------------------------------------------


def test_the_defaults_are_the_old_params_values() -> None:
    settings = load_settings({}, NO_FILE)
    assert settings.model_dump() == OLD_PARAMS
    assert {settings.source(key) for key in SETTINGS} == {"default"}


def test_variable_beats_file_beats_default(tmp_path: Path) -> None:
    path = local_file(tmp_path, "progress: false\nn_jobs: 4\nchunk_voxels: 1000\n")
    settings = load_settings({"OVERSEER_N_JOBS": "3", "OVERSEER_CACHE_DIR": "none"}, path)
    assert settings.model_dump() == {
        "progress": False,  # file
        "torch_threads": 1,  # default
        "n_jobs": 3,  # variable over file
        "chunk_voxels": 1000,  # file
        "cache_dir": None,  # variable
        "tf_strategy": "auto",  # default
    }
    assert settings.source("n_jobs") == "OVERSEER_N_JOBS" and settings.source("cache_dir") == "OVERSEER_CACHE_DIR"
    assert settings.source("progress") == str(path) and settings.source("torch_threads") == "default"


def test_an_empty_variable_is_unset_and_an_empty_file_is_no_settings(tmp_path: Path) -> None:
    path = local_file(tmp_path, "# nothing here yet\n")
    assert load_settings({"OVERSEER_PROGRESS": "", "OVERSEER_N_JOBS": "  "}, path).model_dump() == OLD_PARAMS


@pytest.mark.parametrize(
    ("name", "text", "key", "value"),
    [
        *[("OVERSEER_PROGRESS", t, "progress", False) for t in ("0", "false", "No", "OFF")],
        *[("OVERSEER_PROGRESS", t, "progress", True) for t in ("1", "true", "yes", "On")],
        ("OVERSEER_TORCH_THREADS", "0", "torch_threads", 0),
        ("OVERSEER_N_JOBS", "-1", "n_jobs", -1),
        ("OVERSEER_N_JOBS", "none", "n_jobs", None),
        ("OVERSEER_CHUNK_VOXELS", "5_000_000", "chunk_voxels", 5_000_000),
        ("OVERSEER_CACHE_DIR", "/scratch/cache", "cache_dir", "/scratch/cache"),
        ("OVERSEER_CACHE_DIR", "NULL", "cache_dir", None),
    ],
)
def test_how_a_variable_reads(name: str, text: str, key: str, value: Any) -> None:
    assert getattr(load_settings({name: text}, NO_FILE), key) == value


def test_the_local_file_lives_at_the_repository_root_also_for_dvc_temporary_workspaces(tmp_path: Path) -> None:
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    workspace = tmp_path / ".dvc" / "tmp" / "exps" / "run" / "abc123"
    workspace.mkdir(parents=True)
    assert local_settings_file(workspace) == tmp_path / LOCAL_FILE
    assert local_settings_file(tmp_path) == tmp_path / LOCAL_FILE


def test_the_local_file_is_git_ignored_and_no_dvc_dependency() -> None:
    assert LOCAL_FILE in (ROOT / ".gitignore").read_text().splitlines()
    assert LOCAL_FILE not in (ROOT / "dvc.yaml").read_text()


def test_tags_name_each_value_and_where_it_came_from(tmp_path: Path) -> None:
    path = local_file(tmp_path, "cache_dir: null\n")
    settings = load_settings({"OVERSEER_PROGRESS": "0"}, path)
    assert settings.tags("progress", "cache_dir", "n_jobs") == {
        "setting.progress": "false",
        "setting.progress.from": "OVERSEER_PROGRESS",
        "setting.cache_dir": "null",
        "setting.cache_dir.from": str(path),
        "setting.n_jobs": "2",
        "setting.n_jobs.from": "default",
    }


# --- bad values ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("OVERSEER_PROGRESS", "maybe", "OVERSEER_PROGRESS: must be 1 or 0 (true/false, yes/no, on/off), got 'maybe'"),
        ("OVERSEER_TORCH_THREADS", "1.5", "OVERSEER_TORCH_THREADS: must be a whole number, got '1.5'"),
        ("OVERSEER_TORCH_THREADS", "-1", "OVERSEER_TORCH_THREADS: must be >= 0, got -1"),
        ("OVERSEER_N_JOBS", "0", "OVERSEER_N_JOBS: must be a whole number other than 0 (-1: all cores) or null, got 0"),
        ("OVERSEER_N_JOBS", "all", "OVERSEER_N_JOBS: must be a whole number or none, got 'all'"),
        ("OVERSEER_CHUNK_VOXELS", "0", "OVERSEER_CHUNK_VOXELS: must be >= 1, got 0"),
        ("OVERSEER_CHUNK_VOXELS", "2e6", "OVERSEER_CHUNK_VOXELS: must be a whole number, got '2e6'"),
    ],
)
def test_a_bad_variable_names_itself_and_what_is_allowed(name: str, text: str, message: str) -> None:
    assert error({name: text}) == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("progress: 'no'\n", "progress: must be true or false, got 'no'"),
        ("torch_threads: 2.0\n", "torch_threads: must be a whole number, got 2.0"),
        ("n_jobs: 0\n", "n_jobs: must be a whole number other than 0 (-1: all cores) or null, got 0"),
        ("chunk_voxels: '2000000'\n", "chunk_voxels: must be a whole number, got '2000000'"),
        ("cache_dir: ''\n", "cache_dir: must not be empty"),
        ("progres: false\n", "progres: unknown key; did you mean progress?"),
        ("train_gnn: {progress: false}\n", "train_gnn: unknown key; known keys: progress, torch_threads, n_jobs"),
    ],
)
def test_a_bad_file_value_names_the_file_and_key_and_what_is_allowed(tmp_path: Path, text: str, message: str) -> None:
    path = local_file(tmp_path, text)
    assert error({}, path).startswith(f"{path}: {message}")


def test_every_problem_is_one_line_of_one_error_even_where_a_variable_overrides_the_file(tmp_path: Path) -> None:
    path = local_file(tmp_path, "n_jobs: 0\nchunk_voxels: -5\n")
    with pytest.raises(InputError) as caught:
        load_settings({"OVERSEER_N_JOBS": "2", "OVERSEER_PROGRESS": "2"}, path)
    assert str(caught.value).splitlines() == [
        "OVERSEER_PROGRESS: must be 1 or 0 (true/false, yes/no, on/off), got '2'",
        f"{path}: n_jobs: must be a whole number other than 0 (-1: all cores) or null, got 0",
        f"{path}: chunk_voxels: must be >= 1, got -5",
    ]
    assert caught.value.path == path


def test_a_broken_local_file_names_its_line(tmp_path: Path) -> None:
    path = local_file(tmp_path, "progress: false\n  n_jobs: 2\n")
    assert error({}, path).startswith(f"{path}, line 2 column 9: mapping values are not allowed here")
    path = local_file(tmp_path, "progress: false\nprogress: true\n")
    assert "line 2 column 1: duplicate key 'progress'" in error({}, path)
    path = local_file(tmp_path, "- progress\n")
    assert error({}, path) == f"{path}: must be a mapping of settings (key: value), got ['progress']"


def test_a_stage_exits_2_with_the_message(capsys, monkeypatch) -> None:
    monkeypatch.setenv("OVERSEER_CHUNK_VOXELS", "lots")
    monkeypatch.setattr(run_settings, "local_settings_file", lambda root=None: Path(NO_FILE))
    with pytest.raises(SystemExit) as caught:
        run(load_settings)
    assert caught.value.code == 2
    assert capsys.readouterr().err == "error: OVERSEER_CHUNK_VOXELS: must be a whole number, got 'lots'\n"


def test_an_unknown_overseer_variable_is_a_warning_with_the_nearest_name(caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="overseer.settings"):
        assert load_settings({"OVERSEER_PROGRES": "0"}, NO_FILE).progress is True
    assert "OVERSEER_PROGRES is no Overseer setting and is ignored; did you mean OVERSEER_PROGRESS?" in caplog.text


# --- the keys that left params.yaml ----------------------------------------------------------------------

MOVED = [
    (("train_gnn",), "progress", False, "to keep false, set OVERSEER_PROGRESS=0 or progress: false in"),
    (("train_gnn",), "threads", 2, "to keep 2, set OVERSEER_TORCH_THREADS=2 or torch_threads: 2 in"),
    (("train_rf",), "n_jobs", -1, "to keep -1, set OVERSEER_N_JOBS=-1 or n_jobs: -1 in"),
    (("train_rf",), "chunk_voxels", 500_000, "to keep 500000, set OVERSEER_CHUNK_VOXELS=500000 or chunk_voxels:"),
    (("ingest", "engraving"), "cache_dir", None, "to keep null, set OVERSEER_CACHE_DIR=none or cache_dir: null in"),
]


def test_the_moved_keys_are_the_settings_and_params_yaml_has_none_of_them() -> None:
    moved = {s.moved_from for s in SETTINGS.values() if s.moved_from is not None}
    assert moved == {".".join((*p, k)) for p, k, *_ in MOVED}
    for path, key, *_ in MOVED:
        section = PARAMS
        for part in path:
            section = section[part]
        assert key not in section


@pytest.mark.parametrize(("path", "key", "value", "hint"), MOVED, ids=[".".join((*m[0], m[1])) for m in MOVED])
def test_a_params_file_with_a_moved_key_says_where_it_went(
    tmp_path: Path, path: tuple[str, ...], key: str, value: Any, hint: str
) -> None:
    params = copy.deepcopy(PARAMS)
    section = params
    for part in path:
        section = section[part]
    section[key] = value
    file = tmp_path / "params.yaml"
    file.write_text(yaml.safe_dump(params, sort_keys=False))
    name = ".".join((*path, key))
    with pytest.raises(InputError) as caught:
        load_params(*path, params_file=file)
    message = str(caught.value)
    assert message.startswith(
        f"{file}: {name}: is a run-time setting now, not a param (it cannot change results): "
        f"remove it from params.yaml; {hint}"
    )
    assert message.endswith(f" in {LOCAL_FILE}") and "\n" not in message
    with pytest.raises(InputError, match=f"{name}: is a run-time setting now"):
        check_params_file(file)


def test_the_moved_message_for_the_old_default_and_for_a_value_the_setting_refuses() -> None:
    from overseer.params import problems

    assert problems(("train_gnn",), {"progress": True}) == [
        "train_gnn.progress: is a run-time setting now, not a param (it cannot change results): remove it from "
        "params.yaml (true is the default; to change it, set OVERSEER_PROGRESS or progress in overseer.local.yaml)"
    ]
    assert problems(("train_rf",), {"features": "selected", "probabilities": False, "n_jobs": 0}) == [
        "train_rf.n_jobs: is a run-time setting now, not a param (it cannot change results): remove it from "
        "params.yaml and set OVERSEER_N_JOBS or n_jobs in overseer.local.yaml"
    ]


# --- the library keeps run-time options out of what it records ------------------------------------------


def _constant(module: str, name: str) -> Any:
    """A module-level constant, read from the source (no torch / partitura import here)."""
    tree = ast.parse((ROOT / "src/overseer" / f"{module}.py").read_text())
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        if target is not None and ast.unparse(target) == name:
            return ast.literal_eval(node.value)
    raise AssertionError(f"no {name} in {module}")


def test_the_defaults_agree_with_the_library() -> None:
    from overseer.seismic import forest, predict_volume

    defaults = Settings()
    assert defaults.n_jobs == forest.RUN_OPTIONS["n_jobs"]
    assert defaults.chunk_voxels == predict_volume.CHUNK_VOXELS
    train_options = _constant("engraving/train", "RUN_OPTIONS")
    assert (defaults.torch_threads, defaults.progress) == (train_options["threads"], train_options["progress"])
    assert defaults.cache_dir == _constant("engraving/data/ingest", "CACHE_DIR")


def test_the_forest_does_not_record_n_jobs_and_predicts_alike_with_any(tmp_path: Path) -> None:
    import pandas as pd

    from overseer.seismic.forest import train_forest
    from overseer.seismic.predict_volume import predict_volume

    rng = np.random.default_rng(0)
    il, xl = np.meshgrid(np.arange(16), np.arange(12), indexing="ij")
    amp, freq = rng.normal(size=il.size), rng.normal(size=il.size)
    table = pd.DataFrame({
        "inline": il.ravel(), "crossline": xl.ravel(), "sample": 0,
        "facies": np.digitize(amp + 0.4 * freq, [-0.5, 0.5]) + 1,
        "amp": amp.astype(np.float32), "freq": freq.astype(np.float32),
    })  # fmt: skip
    cfg = {"tree_counts": [4, 8], "max_depth": 4, "folds": 3, "block_size": 4}
    one, two = (train_forest(table, None, {**cfg, "n_jobs": n}) for n in (1, 2))
    assert one.pipeline[-1].n_jobs is None and two.pipeline[-1].n_jobs is None
    assert one.pipeline[-1].get_params() == two.pipeline[-1].get_params()
    assert one.cv.equals(two.cv)
    volumes = {name: rng.normal(size=(6, 5, 7)).astype(np.float32) for name in ("amp", "freq")}
    out = {}
    for n_jobs, chunk in ((None, 10_000), (2, 35)):
        path = tmp_path / f"facies_{n_jobs}.npy"
        stats = predict_volume(one.pipeline, volumes, ["amp", "freq"], path, chunk, progress=False, n_jobs=n_jobs)
        out[n_jobs] = np.load(path)
        assert stats["chunks"] >= 1
    np.testing.assert_array_equal(out[None], out[2])


def test_train_gnn_keeps_threads_and_progress_out_of_its_cfg(caplog) -> None:
    pytest.importorskip("torch_geometric")
    from overseer.engraving.train import resolve_cfg, run_options

    cfg = {"epochs": 3, "threads": 2, "progress": False}
    with caplog.at_level(logging.WARNING, logger="overseer.engraving.train"):
        resolved = resolve_cfg(cfg)
    assert "threads" not in resolved and "progress" not in resolved and resolved["epochs"] == 3
    assert "ignores unknown" not in caplog.text
    assert run_options(cfg) == {"threads": 2, "progress": False}
    assert run_options({"epochs": 3}) == {"threads": 1, "progress": True}


def test_the_tf_strategy_is_a_word_from_its_list() -> None:
    assert load_settings({"OVERSEER_TF_STRATEGY": "Mirrored"}, NO_FILE).tf_strategy == "mirrored"
    message = error({"OVERSEER_TF_STRATEGY": "horovod"})
    assert message == "OVERSEER_TF_STRATEGY: must be one of auto | default | mirrored, got 'horovod'"
