"""params.yaml schema: the repository's file passes unchanged; each mistake is one line naming its key path."""

from __future__ import annotations

import ast
import copy
import importlib.util
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml

from overseer import params as schema
from overseer.cli import main
from overseer.errors import InputError
from overseer.params import schema as sections
from overseer.params import types as value_types
from overseer.stage import load_params

ROOT = Path(__file__).resolve().parents[2]
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
# every section a stage reads (stages/*.py: stage.load_params(...)), and the tune section
STAGE_SECTIONS = [
    *[("ingest", f) for f in ("trackbed", "seismic", "engraving")],
    *[("validate", f) for f in ("trackbed", "seismic", "engraving")],
    ("select_attributes",), ("train_rf",), ("train_cnn",), ("train_gnn",),
    *[("evaluate", m) for m in ("cnn", "rf", "gnn")],
    *[("export", m) for m in ("cnn", "rf", "gnn")],
]  # fmt: skip


def at(params: dict, path: tuple[str, ...]) -> Any:
    for key in path:
        params = params[key]
    return params


def problem(path: tuple[str, ...], change: Callable[[dict], Any]) -> str:
    """The InputError message of the repository's section at ``path`` after ``change``."""
    section = copy.deepcopy(at(PARAMS, path))
    change(section)
    with pytest.raises(InputError) as caught:
        schema.check_section(path, section)
    return str(caught.value)


# --- the repository's params.yaml --------------------------------------------------------------------


@pytest.mark.parametrize("path", [*STAGE_SECTIONS, ("tune",), ()], ids=lambda p: ".".join(p) or "whole file")
def test_the_repositorys_params_pass_and_come_back_unchanged(path: tuple[str, ...]) -> None:
    section = at(copy.deepcopy(PARAMS), path)
    before = copy.deepcopy(section)
    assert schema.check_section(path, section) is section
    assert section == before


@pytest.mark.parametrize("path", STAGE_SECTIONS, ids=lambda p: ".".join(p))
def test_load_params_gives_the_stages_what_yaml_gives(path: tuple[str, ...], monkeypatch, tmp_path: Path) -> None:
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    assert load_params(*path) == at(PARAMS, path)


def test_reading_is_pyyamls_safe_load() -> None:
    assert schema.read_params(ROOT / "params.yaml") == PARAMS


def test_the_integration_tests_tiny_params_pass() -> None:
    spec = importlib.util.spec_from_file_location("integration_conftest", ROOT / "tests/integration/conftest.py")
    conftest = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = conftest  # dataclasses with string annotations look their module up there
    try:
        spec.loader.exec_module(conftest)
    finally:
        del sys.modules[spec.name]
    params = copy.deepcopy(PARAMS)
    for keys, value in conftest.TINY.items():
        conftest.set_param(params, keys, value)
    assert schema.problems((), params) == []


# --- the issue's mistakes ---------------------------------------------------------------------------------


def set_(**values: Any) -> Callable[[dict], None]:
    return lambda section: section.update(values)


MISTAKES = [
    # the issue's cases
    ("train_rf", set_(max_dpth=5), "train_rf.max_dpth: unknown key; did you mean max_depth?"),
    ("train_cnn", set_(epochs=-1), "train_cnn.epochs: must be >= 1, got -1"),
    ("train_gnn", set_(window=0), "train_gnn.window: must be >= 1, got 0"),
    ("train_gnn", set_(lr="fast"), "train_gnn.lr: must be a number, got 'fast'"),
    ("select_attributes", set_(max_clusters=0), "select_attributes.max_clusters: must be >= 1, got 0"),
    ("ingest.seismic", set_(facies="background"), "ingest.seismic.facies: must be a list, got 'background'"),
    # lists, choices, types
    ("ingest.seismic", set_(facies=["salt", "salt"]), "ingest.seismic.facies: must not repeat items, got 'salt'"),
    ("ingest.seismic", set_(facies=["salt", ""]), "ingest.seismic.facies[1]: must not be empty"),
    ("train_rf", set_(cv_scheme="rand"), "train_rf.cv_scheme: must be one of blocked | random, got 'rand'; did you"),
    ("train_rf", set_(max_features="auto"), "train_rf.max_features: must be sqrt, log2, a fraction in (0, 1], a"),
    ("train_rf", set_(class_weight="weighted"), "train_rf.class_weight: must be balanced, balanced_subsample or null"),
    ("train_rf", set_(normalise="true"), "train_rf.normalise: must be true or false, got 'true'"),
    ("train_cnn", set_(val_fraction=1.0), "train_cnn.val_fraction: must be a fraction in (0, 1), got 1.0"),
    ("train_cnn", set_(batch_size=32.0), "train_cnn.batch_size: must be a whole number, got 32.0"),
    ("train_cnn", lambda s: s.pop("epochs"), "train_cnn.epochs: missing key"),
    ("train_cnn", lambda s: s["fine_tune"].update(epochs=None), "train_cnn.fine_tune.epochs: must be a whole number"),
    ("train_gnn", set_(conv_aggr="avg"), "train_gnn.conv_aggr: must be one of mean | sum | add | max | min | mul"),
    ("train_gnn", set_(dropout="5e-1"), "train_gnn.dropout: must be a number, got '5e-1' (a string to PyYAML: write"),
    ("train_gnn", set_(hidden=255), "train_gnn.hidden: must be even with bidirectional: true"),
    ("ingest.seismic", set_(missing_logs="skip"), "ingest.seismic.missing_logs: must be one of error | drop"),
    ("ingest.seismic", set_(source="volumes"), "ingest.seismic.volumes: missing key; needed with source: volumes"),
    (
        "ingest.engraving",
        set_(silence="rests"),
        "ingest.engraving.silence: must be one of gap | rest, got 'rests'; did",
    ),
    ("ingest.engraving", set_(split={"validation": 0.5, "test": 0.5}), "ingest.engraving.split: validation + test"),
    (
        "ingest.trackbed",
        lambda s: s.pop("default"),
        "ingest.trackbed.default: missing key; needed with source: default",
    ),
    ("ingest", set_(seismc={}), "ingest.seismc: unknown key; did you mean seismic?"),
    ("export.gnn", set_(formats=["musicxml", "pdf"]), "export.gnn.formats[1]: must be one of musicxml | mei, got"),
    (
        "evaluate.gnn",
        set_(key_change_penalty="-1"),
        "evaluate.gnn.key_change_penalty: must be auto or a number >= 0 (0: the key per bar), got '-1'",
    ),
    ("evaluate.gnn", set_(key_change_penalty="abc"), "evaluate.gnn.key_change_penalty: must be auto or a number >= 0"),
    ("tune", lambda s: s["rf"].update(heartbeat_seconds=0), "tune.rf.heartbeat_seconds: must be >= 1, got 0"),
    ("tune", lambda s: s["rf"]["pruner"].update(n_startup=3), "tune.rf.pruner.n_startup: unknown key; did you mean"),
    ("", set_(trian_rf={}), "trian_rf: unknown key; did you mean train_rf?"),
]


@pytest.mark.parametrize(("path", "change", "line"), MISTAKES, ids=[m[2].split(":")[0] for m in MISTAKES])
def test_each_mistake_names_its_key_path_and_what_is_allowed(path: str, change: Callable, line: str) -> None:
    assert problem(tuple(path.split(".")) if path else (), change).startswith(f"params.yaml: {line}")


def test_every_problem_of_a_section_is_one_line_of_one_error() -> None:
    message = problem(("train_gnn",), lambda s: s.update(window=0, lr="fast", pair_mode="diff", epochz=3))
    assert message.splitlines() == [
        "params.yaml: train_gnn.pair_mode: must be one of cat | cat_diff, got 'diff'; did you mean cat_diff?",
        "params.yaml: train_gnn.lr: must be a number, got 'fast'",
        "params.yaml: train_gnn.window: must be >= 1, got 0",
        "params.yaml: train_gnn.epochz: unknown key; did you mean epochs?",
    ]


def test_values_the_code_converts_may_be_yaml_12_numbers() -> None:
    # `dvc exp run -S train_cnn.learning_rate=3e-4` writes 3e-4, which PyYAML reads as a string; float() takes it
    section = {**PARAMS["train_cnn"], "learning_rate": "3e-4", "decay_rate": 1}
    assert schema.check_section(("train_cnn",), section)["learning_rate"] == "3e-4"
    assert "must be > 0, got 0.0" in problem(("train_cnn",), lambda s: s.update(learning_rate="0e-4"))


def test_keys_the_library_defaults_may_be_left_out_but_not_set_to_null() -> None:
    assert schema.check_section(("train_gnn",), {"epochs": 3}) == {"epochs": 3}
    assert "train_gnn.epochs: must be a whole number, got null" in problem(
        ("train_gnn",), lambda s: s.update(epochs=None)
    )


def test_an_unknown_section_path_suggests_the_nearest() -> None:
    with pytest.raises(InputError, match=r"ingest\.trackbd: unknown params section; did you mean trackbed\?"):
        schema.check_section(("ingest", "trackbd"), {})


def test_library_choices_agree_with_the_schema() -> None:
    from overseer.seismic import forest

    fields = sections.TrainRf.model_fields
    assert set(get_args(value_types.CvScheme)) == set(forest.SCHEMES)
    assert {*value_types.ClassWeights, None} == set(forest.CLASS_WEIGHTS)
    assert set(forest.DEFAULTS) <= set(fields)
    assert not set(forest.RUN_OPTIONS) & set(fields)  # run-time settings (overseer.settings), not params

    def constant(module: str, name: str) -> Any:  # read, not imported: no torch / partitura here
        base = ROOT / "src/overseer" / module
        tree = ast.parse(next(p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()).read_text())
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and node.name == name:
                return node
            target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
            if target is not None and ast.unparse(target) == name:
                return node.value
        raise AssertionError(f"no {name} in {module}")

    assert set(get_args(value_types.Silence)) == set(
        ast.literal_eval(constant("engraving/data/graph", "SILENCE_RULES"))
    )
    assert set(get_args(value_types.ExportFormat)) == set(ast.literal_eval(constant("engraving/export", "FORMATS")))
    ingest_defaults = constant("engraving/data/ingest", "DEFAULTS")
    assert {ast.literal_eval(k) for k in ingest_defaults.keys} == set(sections.IngestEngraving.model_fields)
    train_defaults = {ast.literal_eval(k) for k in constant("engraving/train", "DEFAULTS").keys if k is not None}
    model_config = constant("engraving/model", "ModelConfig")
    architecture = {n.target.id for n in model_config.body if isinstance(n, ast.AnnAssign)} - {"in_features"}
    assert train_defaults | architecture == set(sections.TrainGnn.model_fields)
    run_options = {ast.literal_eval(k) for k in constant("engraving/train", "RUN_OPTIONS").keys}
    assert run_options == {"threads", "progress"} and not run_options & set(sections.TrainGnn.model_fields)


# --- reading the file -----------------------------------------------------------------------------------------


def test_a_yaml_syntax_error_names_its_line_not_a_pyyaml_traceback(tmp_path: Path) -> None:
    path = tmp_path / "params.yaml"
    path.write_text("train_rf:\n  max_depth: 5\n  tree_counts: [50, 100\nevaluate: {}\n")
    with pytest.raises(InputError) as caught:
        load_params("train_rf", params_file=path)
    assert str(caught.value).startswith(f"{path}, line 4 column 9: expected ',' or ']'")
    assert "flow sequence that starts on line 3" in str(caught.value)
    path.write_text("train_rf:\n  max_depth: 5\n  max_depth: 6\n")
    with pytest.raises(InputError, match=r"line 3 column 3: duplicate key 'max_depth'"):
        schema.read_params(path)


def test_load_params_refuses_a_bad_section(tmp_path: Path) -> None:
    params = copy.deepcopy(PARAMS)
    params["train_gnn"]["window"] = 0
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.raises(InputError) as caught:
        load_params("train_gnn", params_file=path)
    assert str(caught.value) == f"{path}: train_gnn.window: must be >= 1, got 0"
    assert caught.value.path == path
    assert load_params("train_rf", params_file=path) == PARAMS["train_rf"]  # only the requested section is checked


def test_tune_checks_the_tuned_section_before_any_trial(tmp_path: Path) -> None:
    from overseer.tuning.study import tune

    params = copy.deepcopy(PARAMS)
    params["train_rf"]["max_dpth"] = 5
    params["tune"]["rf"]["heartbeat_seconds"] = "30"
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.raises(InputError) as caught:
        tune("rf", params_file=path, trials=1)
    assert str(caught.value).splitlines() == [
        f"{path}: train_rf.max_dpth: unknown key; did you mean max_depth?",
        f"{path}: tune.rf.heartbeat_seconds: must be a whole number, got '30'",
    ]
    assert not (tmp_path / "optuna.db").exists()


def test_tuning_judges_only_the_keys_present() -> None:
    # tests/unit/test_tuning.py tunes a train_rf of three keys; forest.DEFAULTS fills in the rest
    assert schema.problems(("train_rf",), {"max_depth": 12, "max_features": "sqrt", "seed": 0}, partial=True) == []
    assert schema.problems(("train_rf",), {"max_depth": 12}) == [
        "train_rf.features: missing key",
        "train_rf.probabilities: missing key",
    ]


# --- overseer check -------------------------------------------------------------------------------------------


def write(root: Path, params: dict) -> None:
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def test_check_passes_the_repositorys_params(tmp_path: Path, monkeypatch, capsys) -> None:
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.chdir(tmp_path)
    assert main(["check"]) == 0
    assert capsys.readouterr().out.strip() == f"params.yaml: ok ({len(PARAMS)} sections)"


def test_check_finds_missing_data_sources(tmp_path: Path, monkeypatch, capsys) -> None:
    params = copy.deepcopy(PARAMS)
    seismic = params["ingest"]["seismic"]
    seismic.update(source="volumes", volumes={"coherence": "data/raw/seismic/coherence.sgy"}, picks="picks.csv")
    params["train_cnn"]["weights"] = "weights/resnet.h5"
    params["ingest"]["trackbed"]["source"] = "data/raw/trackbed/*.tfrecord"
    params["ingest"]["engraving"]["test_source"] = "data/raw/engraving/test"  # checked beside the default corpus
    (tmp_path / "picks.csv").write_text("inline,crossline,sample,facies\n")
    write(tmp_path, params)
    monkeypatch.chdir(tmp_path)
    assert main(["check"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "overseer: error: params.yaml: ingest.trackbed.source: "
        "no image folder or TFRecord file(s) at data/raw/trackbed/*.tfrecord",
        "params.yaml: ingest.seismic.volumes.coherence: no volume at data/raw/seismic/coherence.sgy",
        "params.yaml: ingest.engraving.test_source: no test score folder at data/raw/engraving/test",
        "params.yaml: train_cnn.weights: no weights file at weights/resnet.h5 "
        "(imagenet, none or the path of a weights file)",
    ]
    (tmp_path / "data/raw/trackbed").mkdir(parents=True)
    (tmp_path / "data/raw/trackbed/a.tfrecord").write_bytes(b"")
    (tmp_path / "data/raw/seismic").mkdir(parents=True)
    (tmp_path / "data/raw/seismic/coherence.sgy").write_bytes(b"")
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights/resnet.h5").write_bytes(b"")
    (tmp_path / "data/raw/engraving/test").mkdir(parents=True)
    assert main(["check"]) == 0


def test_check_names_where_a_moved_key_went(tmp_path: Path, capsys) -> None:
    params = copy.deepcopy(PARAMS)
    params["train_gnn"]["progress"] = False
    write(tmp_path, params)
    path = tmp_path / "params.yaml"
    assert main(["check", "--params", str(path)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"overseer: error: {path}: train_gnn.progress: is a run-time setting now, not a param (it cannot change "
        "results): remove it from params.yaml; to keep false, set OVERSEER_PROGRESS=0 or progress: false in "
        "overseer.local.yaml",
    ]


def test_check_reports_a_bad_key_and_a_bad_file(tmp_path: Path, capsys) -> None:
    params = copy.deepcopy(PARAMS)
    params["train_rf"]["max_dpth"] = 5
    params["select_attributes"]["max_clusters"] = 0
    write(tmp_path, params)
    path = tmp_path / "params.yaml"
    assert main(["check", "--params", str(path)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"overseer: error: {path}: select_attributes.max_clusters: must be >= 1, got 0",
        f"{path}: train_rf.max_dpth: unknown key; did you mean max_depth?",
    ]
    path.write_text("train_rf:\n  max_depth: 5\n   seed: 0\n")
    assert main(["check", "--params", str(path)]) == 2
    assert f"{path}, line 3 column 8: mapping values are not allowed here" in capsys.readouterr().err
    assert main(["check", "--params", str(tmp_path / "nowhere.yaml")]) == 2
    assert "cannot read the params file" in capsys.readouterr().err


def test_the_key_change_penalty_is_auto_or_a_number() -> None:
    for value in ("auto", 0, 4, 2.5, "3e-1"):
        section = {**PARAMS["evaluate"]["gnn"], "key_change_penalty": value}
        assert schema.check_section(("evaluate", "gnn"), section)["key_change_penalty"] == value
    for value in (-1, True, float("inf"), None, "Auto"):
        assert "evaluate.gnn.key_change_penalty: must be auto or a number >= 0" in problem(
            ("evaluate", "gnn"), set_(key_change_penalty=value)
        )
