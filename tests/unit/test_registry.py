"""Issue 14: registered versions say what they are (tags, model card, alias ``challenger``) and
``promote`` moves ``champion`` only to a version at least as good on held-out data."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from mlflow import MlflowClient

from overseer import registry
from overseer.errors import InputError
from overseer.io import write_json
from overseer.model_card import CARD_FILE, known_limits, model_card

NAME = "seismic-facies-rf"


def classification_report(f1: float, accuracy: float = 0.8) -> dict:
    """A held-out report shaped like overseer.metrics' (the fields the registry reads)."""
    return {
        "evaluation": "held-out picks",
        "accuracy": accuracy,
        "n_items": 338,
        "macro": {"precision": 0.79, "recall": 0.83, "f1": f1},
        "weighted": {"f1": f1 + 0.01},
        "per_class": {"salt": {"support": 139, "f1": 0.87}, "mtd": {"support": 95, "f1": 0.78}},
        "probabilities": {"log_loss": 1.36, "ece": 0.09},
        "versus_forest": {"accuracy": {"gtm": 0.7}},  # not a section of the spec: left out
    }


ENGRAVING_REPORT = {
    "n_pieces": 3,
    "post_processed": {
        "voice_f1": 0.70,
        "chord_f1": 0.72,
        "acc_staff": 0.75,
        "acc_spelling": 0.73,
        "acc_key": 0.28,
        "acc_stem": 0.50,
        "acc_octave_shift": 1.0,
        "acc_clef": 0.77,
        "acc_duration": 0.99,
        "acc_dots": 0.99,
        "n_notes": 3074.0,
    },
    "raw": {"voice_f1": 0.78},
}


def sqlite_client(path: Path) -> MlflowClient:
    return MlflowClient(tracking_uri=f"sqlite:///{path}", registry_uri=f"sqlite:///{path}")


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty sqlite store with MLflow's schema, made once: creating the tables takes seconds."""
    path = tmp_path_factory.mktemp("store") / "mlflow.db"
    template = sqlite_client(path)
    template.search_experiments(max_results=1)
    template.search_registered_models(max_results=1)
    return path


@pytest.fixture
def client(empty_store: Path, tmp_path: Path) -> MlflowClient:
    """A fresh sqlite store per test under tmp_path (never the repository's mlflow.db)."""
    shutil.copyfile(empty_store, tmp_path / "mlflow.db")
    return sqlite_client(tmp_path / "mlflow.db")


def new_version(client: MlflowClient, tmp_path: Path, f1: float | None, accuracy: float = 0.8) -> int:
    """Register a version of NAME (any folder will do as its source), tagged with held-out ``f1``."""
    try:
        client.get_registered_model(NAME)
    except Exception:  # noqa: BLE001 - first version
        client.create_registered_model(NAME)
    source = tmp_path / "artifacts"
    source.mkdir(exist_ok=True)
    version = int(client.create_model_version(NAME, source=str(source)).version)
    if f1 is not None:
        heldout = registry.heldout_metrics("rf", classification_report(f1, accuracy))
        registry.annotate_version(client, NAME, version, registry.version_tags({}, heldout, "macro.f1"), None)
    return version


def test_heldout_metrics_are_flat_numbers_primary_first() -> None:
    heldout = registry.heldout_metrics("rf", classification_report(0.8))
    assert next(iter(heldout)) == "heldout.macro.f1"
    assert heldout["heldout.accuracy"] == 0.8
    assert heldout["heldout.per_class.salt.f1"] == 0.87
    assert heldout["heldout.probabilities.ece"] == 0.09
    assert "heldout.per_class.salt.support" not in heldout
    assert not any(k.startswith("heldout.versus_forest") for k in heldout)
    assert all(isinstance(v, float) for v in heldout.values())


def test_engraving_primary_is_the_mean_of_table1_columns() -> None:
    heldout = registry.heldout_metrics("gnn", ENGRAVING_REPORT)
    table1 = [0.70, 0.72, 0.75, 0.73, 0.28, 0.50, 1.0, 0.77, 0.99]
    assert next(iter(heldout)) == "heldout.table1_mean"
    assert heldout["heldout.table1_mean"] == pytest.approx(sum(table1) / len(table1))
    assert heldout["heldout.post_processed.acc_key"] == 0.28  # each column kept
    assert "heldout.raw.voice_f1" not in heldout
    broken = {"post_processed": {k: v for k, v in ENGRAVING_REPORT["post_processed"].items() if k != "acc_key"}}
    with pytest.raises(InputError, match=r"post_processed\.acc_key"):
        registry.heldout_metrics("gnn", broken)
    with pytest.raises(InputError, match=r"macro\.f1"):
        registry.heldout_metrics("cnn", {"accuracy": 0.9})


def test_version_tags_carry_lineage_and_valid_keys() -> None:
    run_tags = {
        "git.commit": "abc123",
        "dvc.experiment": "brisk-lark",
        "overseer.family": "seismic",
        "overseer.changed": "nothing",  # run bookkeeping, not version lineage
        "input.md5.models/seismic/train": "d41d8.dir",
        "input.md5.data/odd name(1).csv": "ff00",
    }
    tags = registry.version_tags(run_tags, {"heldout.macro.f1": 0.8016025980183524}, "macro.f1")
    assert tags["git.commit"] == "abc123"
    assert tags["dvc.experiment"] == "brisk-lark"
    assert tags["input.md5.models/seismic/train"] == "d41d8.dir"
    assert tags["input.md5.data/odd name_1_.csv"] == "ff00"  # parentheses are not valid in MLflow keys
    assert float(tags["heldout.macro.f1"]) == 0.8016025980183524  # exact, so promotion compares exactly
    assert tags["overseer.primary_metric"] == "macro.f1"
    assert "overseer.changed" not in tags


def test_annotate_sets_tags_description_and_challenger(client: MlflowClient, tmp_path: Path) -> None:
    first = new_version(client, tmp_path, None)
    second = new_version(client, tmp_path, None)
    for version in (first, second):
        registry.annotate_version(client, NAME, version, {"git.commit": f"c{version}"}, f"# card {version}")
    got = client.get_model_version(NAME, str(second))
    assert got.tags["git.commit"] == "c2"
    assert got.description == "# card 2"
    assert got.aliases == ["challenger"]
    assert client.get_model_version(NAME, str(first)).aliases == []  # the alias moved
    registry.annotate_version(client, NAME, first, {}, "x" * 6000)
    assert len(client.get_model_version(NAME, str(first)).description) <= registry.MAX_DESCRIPTION_CHARS


def test_promote_first_version_then_refuse_worse_unless_forced(client: MlflowClient, tmp_path: Path) -> None:
    new_version(client, tmp_path, 0.80)
    assert registry.current_champion(client, NAME) is None
    first = registry.promote(client, "rf", name=NAME)  # default: the challenger
    assert (first.version, first.previous, first.promoted) == (1, None, True)
    assert "champion none → version 1" in first.message and "0.8000" in first.message
    assert int(registry.current_champion(client, NAME).version) == 1

    worse = new_version(client, tmp_path, 0.75, accuracy=0.7)
    with pytest.raises(InputError, match=r"worse than champion version 1: held-out macro\.f1 0\.7500 < 0\.8000"):
        registry.promote(client, "rf", worse, name=NAME)
    assert int(registry.current_champion(client, NAME).version) == 1  # unchanged
    forced = registry.promote(client, "seismic", worse, force=True, name=NAME)  # family seismic → rf
    assert forced.forced and forced.previous == 1
    assert "champion version 1 → version 2 (forced)" in forced.message
    assert "macro.f1 (held out, primary): 0.8000 → 0.7500 (-0.0500)" in forced.message
    assert "accuracy: 0.8000 → 0.7000 (-0.1000)" in forced.message  # other held-out metrics that changed
    assert forced.changes["accuracy"] == (0.8, 0.7)
    assert "per_class.salt.f1" not in forced.changes  # unchanged ones are not listed
    assert "forced" in client.get_model_version(NAME, "2").tags["overseer.promotion"]

    better = new_version(client, tmp_path, 0.85)
    result = registry.promote(client, "rf", name=NAME)
    assert (result.version, result.previous, result.forced) == (better, 2, False)
    again = registry.promote(client, "rf", better, name=NAME)
    assert not again.promoted and "already is champion" in again.message


def test_promote_user_errors(client: MlflowClient, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="unknown model or family 'lidar'"):
        registry.promote(client, "lidar", name=NAME)
    with pytest.raises(InputError, match="no registered model"):
        registry.promote(client, "rf", name=NAME)
    untagged = new_version(client, tmp_path, None)
    with pytest.raises(InputError, match="no challenger"):
        registry.promote(client, "rf", name=NAME)
    with pytest.raises(InputError, match="has no version 7"):
        registry.promote(client, "rf", 7, name=NAME)
    with pytest.raises(InputError, match=r"no held-out metric tag heldout\.macro\.f1"):
        registry.promote(client, "rf", untagged, name=NAME)
    with pytest.raises(InputError, match="positive version"):
        registry.promote(client, "rf", 0, name=NAME)


def test_family_names_and_registered_names(tmp_path: Path) -> None:
    assert [registry.resolve_model(f) for f in ("trackbed", "seismic", "engraving")] == ["cnn", "rf", "gnn"]
    assert [registry.resolve_model(k) for k in registry.MODELS] == list(registry.MODELS)
    repo = Path(__file__).resolve().parents[2]
    assert registry.registered_name("engraving", repo / "params.yaml") == "engraving-gnn"
    assert registry.registered_name("gtm", repo / "params.yaml") == "seismic-facies-gtm"


def test_model_card_has_numbers_limits_and_serving() -> None:
    heldout = registry.heldout_metrics("gnn", ENGRAVING_REPORT)
    training = {"n_train": 11, "n_val": 3, "epochs_run": 31, "timings": {"train": 1.0}}
    inputs = {"models/engraving/train": "0123abcd.dir"}
    card = model_card("gnn", "engraving-gnn", 4, heldout, training, inputs, primary="table1_mean")
    assert card.startswith("# engraving-gnn — version 4\n")
    assert f"| **table1_mean** | **{heldout['heldout.table1_mean']:.4f}** |" in card
    assert "| post_processed.acc_key | 0.2800 |" in card
    assert "| n_train | 11 |" in card and "timings" not in card
    assert "`0123abcd.dir`" in card
    assert "key head weak: held-out acc_key 0.280" in card
    assert "piano scores only" in card
    assert 'mlflow.pyfunc.load_model("models:/engraving-gnn@champion")' in card
    assert "mlflow models serve -m models:/engraving-gnn@champion --env-manager local" in card
    without = model_card("gnn", "engraving-gnn", None, heldout, training, inputs, primary="table1_mean")
    assert "version 4" not in without and "models:/engraving-gnn/" not in without  # same bytes on re-export
    limits = known_limits("cnn", {}, {"classes": ["ASPHALT", "ERROR"], "weights_used": "none (random init)"})
    assert any("fixed to the 2 it was trained on (ASPHALT, ERROR)" in limit for limit in limits)
    assert any("not pretrained" in limit for limit in limits)


def test_annotate_export_tags_describes_aliases_and_writes_card(client: MlflowClient, tmp_path: Path) -> None:
    spec = registry.MODELS["rf"]
    write_json(tmp_path / spec.metrics_file, classification_report(0.8016))
    write_json(tmp_path / spec.model_dir / "config.json", {"features": ["glcm_entropy"], "facies": ["salt", "mtd"]})
    write_json(tmp_path / spec.train_report, {"best_n_estimators": 200})
    version = new_version(client, tmp_path, None)
    out = tmp_path / "models/seismic/export"
    run_tags = {"git.commit": "abc", "dvc.experiment": "workspace", "input.md5.models/seismic/train": "aa.dir"}
    done = registry.annotate_export(client, "rf", NAME, version, run_tags, out, root=tmp_path)
    got = client.get_model_version(NAME, str(version))
    assert got.aliases == ["challenger"]
    assert got.tags["heldout.macro.f1"] == repr(0.8016)
    assert got.tags["input.md5.models/seismic/train"] == "aa.dir"
    assert got.description.startswith(f"# {NAME} — version {version}")
    card = (out / CARD_FILE).read_text()
    assert done["card"] == out / CARD_FILE and "version" not in card.splitlines()[0]
    assert "| best_n_estimators | 200 |" in card and "glcm_entropy" in card and "`aa.dir`" in card
    assert registry.promote(client, "rf", name=NAME).version == version
