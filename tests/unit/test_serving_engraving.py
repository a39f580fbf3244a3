"""The engraving MLflow model: score bytes (MusicXML, MIDI) in, engraved MusicXML and per-note predictions out.

A tiny untrained EngravingGNN is saved with ``train.save_model``, logged with ``log_engraving_model``
into this module's own sqlite MLflow store (never the repository's) and loaded back from the registry.
"""

from __future__ import annotations

import base64
import io
import json
import os
import warnings
from pathlib import Path

import engraving_scores as es
import mido
import mlflow
import pandas as pd
import partitura
import pytest

from overseer.cli import main
from overseer.serving import engraving as serving

NAME = "engraving-test"
URI = f"models:/{NAME}/1"
TPQ = 480

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _midi_bytes(notes: list[tuple[int, int, int]]) -> bytes:
    """A type-0 4/4 MIDI file of (onset, duration, pitch) notes in ticks of 1/TPQ quarter."""
    mid = mido.MidiFile(ticks_per_beat=TPQ)
    track = mido.MidiTrack()
    mid.tracks.append(track)
    track.append(mido.MetaMessage("time_signature", numerator=4, denominator=4, time=0))
    events = sorted([(on, 1, p) for on, _, p in notes] + [(on + d, 0, p) for on, d, p in notes])
    now = 0
    for tick, kind, pitch in events:
        track.append(mido.Message("note_on", note=pitch, velocity=64 * kind, time=tick - now))
        now = tick
    buffer = io.BytesIO()
    mid.save(file=buffer)
    return buffer.getvalue()


MIDI_NOTES = [(0, TPQ, 72), (TPQ, TPQ, 74), (2 * TPQ, 2 * TPQ, 76), (0, 4 * TPQ, 48), (0, 4 * TPQ, 55)]


def _count_notes(text: str | bytes, suffix: str = ".musicxml", folder: Path | None = None) -> int:
    """Notes partitura reads from a score (tied parts as one)."""
    path = Path(folder) / f"score{suffix}"
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return int(sum(p.note_array().size for p in partitura.load_score(str(path)).parts))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny untrained EngravingGNN saved as the train and export stages save it (plus a stray file)."""
    import torch

    from overseer.engraving.model import EngravingGNN, ModelConfig
    from overseer.engraving.train import save_model

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("trained") / "model"
    save_model(EngravingGNN(ModelConfig(hidden=16, layers=1, gru_layers=1, dropout=0.0)), folder)
    (folder / "engraved").mkdir()  # an export folder holds engraved pieces: never logged with the model
    (folder / "engraved" / "big.svg").write_text("<svg/>")
    return folder


@pytest.fixture(scope="module")
def logged(model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """``log_engraving_model`` into this module's sqlite store (default example); yields the ``ModelInfo``."""
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    root = tmp_path_factory.mktemp("mlflow")
    mlflow.set_tracking_uri(f"sqlite:///{root}/mlflow.db")
    try:
        experiment = mlflow.create_experiment("serving", artifact_location=(root / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment):
            info = serving.log_engraving_model(model_dir, NAME)
        yield info
    finally:
        mlflow.set_tracking_uri(previous)  # None: unset again


@pytest.fixture(scope="module")
def loaded(logged):
    return mlflow.pyfunc.load_model(URI)


def test_registered_model_engraves_musicxml_and_midi(loaded, tmp_path: Path) -> None:
    score = es.piano_two_staves().encode()
    frame = pd.DataFrame({"score": [score, _midi_bytes(MIDI_NOTES)], "format": ["musicxml", "mid"]})
    table = loaded.predict(frame)
    assert list(table.columns) == list(serving.OUTPUT_COLUMNS) and len(table) == 2

    # MusicXML: the engraved score reads back with the input's notes (tied parts count once)
    assert _count_notes(table["musicxml"][0], folder=tmp_path) == _count_notes(score, folder=tmp_path)
    notes = json.loads(table["notes"][0])
    assert len(notes) == table["n_notes"][0] == 18  # noteheads: the tied D5 is two (schema), no grace note
    assert set(notes[0]) == set(serving.NOTE_FIELDS)
    assert all(isinstance(n["pitch"], int) and isinstance(n["spelling"], str) for n in notes)
    assert sorted((n["onset"], n["pitch"]) for n in notes) == [(n["onset"], n["pitch"]) for n in notes]
    assert {n["staff"] for n in notes} <= {1, 2} and all(n["voice"] >= 1 for n in notes)
    assert all(n["clef"] in ("G", "F", "C") and n["stem"] in ("up", "down", "none") for n in notes)
    assert table["warnings"][0] == ""

    # MIDI: every note written, in the notes JSON with its pitch and onset
    assert _count_notes(table["musicxml"][1], folder=tmp_path) == len(MIDI_NOTES)
    midi_notes = json.loads(table["notes"][1])
    assert sorted((n["onset"], n["pitch"]) for n in midi_notes) == sorted((on / TPQ, p) for on, _, p in MIDI_NOTES)


def test_default_example_and_params(loaded, tmp_path: Path) -> None:
    example = serving.input_example()
    table = loaded.predict(example, params={"threshold": 0.9, "min_clef_run": 1})
    assert table["n_notes"][0] == len(json.loads(table["notes"][0])) == 11
    assert _count_notes(table["musicxml"][0], folder=tmp_path) == 11
    with pytest.raises(Exception, match="threshold"):
        loaded.predict(example, params={"threshold": 1.5})


def test_format_guessed_when_not_given(loaded) -> None:
    table = loaded.predict(pd.DataFrame({"score": [_midi_bytes(MIDI_NOTES), serving.EXAMPLE_MUSICXML.encode()]}))
    assert table["n_notes"].tolist() == [len(MIDI_NOTES), 11]


def test_bad_score_names_the_row(loaded) -> None:
    good = serving.EXAMPLE_MUSICXML.encode()
    frame = pd.DataFrame({"score": [good, b"not a MIDI file"], "format": ["musicxml", "mid"]})
    with pytest.raises(serving.ScoreError, match=r"^row 1 \(mid\): not a Standard MIDI File") as info:
        loaded.predict(frame)
    message = str(info.value)
    assert "\n" not in message and "/tmp" not in message and "overseer-engrave-" not in message
    assert info.value.get_http_status_code() == 400
    with pytest.raises(serving.ScoreError, match=r"^row 0 \(pdf\): format 'pdf'"):
        loaded.predict(pd.DataFrame({"score": [good], "format": ["pdf"]}))
    with pytest.raises(serving.ScoreError, match=r"^row 0 \(musicxml\): .*(XML|parse|Syntax)"):
        loaded.predict(pd.DataFrame({"score": [b"<score-partwise><part"], "format": ["musicxml"]}))


def test_signature_input_example_and_requirements(logged) -> None:
    from mlflow.models import Model

    model = Model.load(URI)
    assert model.signature.inputs.to_dict() == [
        {"type": "binary", "name": "score", "required": True},
        {"type": "string", "name": "format", "required": False},
    ]
    assert model.signature.outputs.input_names() == list(serving.OUTPUT_COLUMNS)
    assert {p.name: p.default for p in model.signature.params} == serving.PARAM_DEFAULTS
    local = Path(mlflow.artifacts.download_artifacts(URI))
    example = model.load_input_example(str(local))
    assert list(example.columns) == ["score", "format"] and example["format"].tolist() == ["musicxml"]
    data = example["score"][0]
    data = data if isinstance(data, bytes) else base64.b64decode(data)
    assert data.decode().lstrip().startswith("<?xml") and b"<score-partwise" in data
    # only the trained model's files are logged, not the export folder's engraved pieces
    assert sorted(p.name for p in (local / "artifacts" / "model").iterdir()) == ["config.json", "model.pt"]
    requirements = Path(mlflow.pyfunc.get_model_dependencies(URI)).read_text().split()
    pins = dict(line.split("==") for line in requirements if "==" in line)
    assert {"mlflow", "torch", "torch-geometric", "partitura", "mido", "numpy", "pandas", "scipy"} <= set(pins)
    assert "+" not in pins["torch"]  # no local build tag (+cpu)


def test_model_predict_fn_loads_a_registered_model(logged, tmp_path: Path) -> None:
    from overseer.engraving import engrave as eg
    from overseer.engraving.model import EngravingGNN

    model = mlflow.pyfunc.load_model(URI).unwrap_python_model().model
    assert isinstance(model, EngravingGNN) and not model.training
    path = es.write(tmp_path, "score.musicxml", es.piano_two_staves())
    result = eg.engrave(path, URI, tmp_path / "out", pages=0)
    assert result["musicxml"].is_file() and result["mei"].is_file()  # MEI export from the unwrapped model
    assert _count_notes(result["musicxml"].read_bytes(), folder=tmp_path) == _count_notes(
        path.read_bytes(), folder=tmp_path
    )
    with pytest.raises(eg.InputError, match="cannot load the MLflow model"):
        eg.model_predict_fn(f"models:/{NAME}/7")


def test_cli_engrave_and_predict_with_a_model_uri(logged, tmp_path: Path, capsys) -> None:
    score = es.write(tmp_path / "in", "sonata.musicxml", es.piano_two_staves())
    midi = tmp_path / "in" / "etude.mid"
    midi.write_bytes(_midi_bytes(MIDI_NOTES))
    assert main(["engrave", str(score), "--model", URI, "--out", str(tmp_path / "engraved"), "--pages", "0"]) == 0
    assert (tmp_path / "engraved" / "sonata.musicxml").is_file()

    assert main(["predict", "engraving", str(tmp_path / "in"), "--model", URI, "--out", str(tmp_path / "pred")]) == 0
    written = sorted(p.name for p in (tmp_path / "pred").iterdir())
    assert written == ["etude.musicxml", "sonata.musicxml"]
    assert _count_notes((tmp_path / "pred" / "etude.musicxml").read_bytes(), folder=tmp_path) == len(MIDI_NOTES)

    (tmp_path / "in" / "broken.mid").write_bytes(b"MThd")
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "engraving", str(tmp_path / "in"), "--model", URI, "--out", str(tmp_path / "pred2")])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert "skipped" in err and "broken.mid" in err and "Traceback" not in err


def test_trained_folder_through_the_same_predict(model_dir: Path, loaded) -> None:
    frame = serving.input_example()
    direct = serving.engraving_predictor(model_dir)(frame)
    assert direct["musicxml"][0] == loaded.predict(frame)["musicxml"][0]
    with pytest.raises(serving.InputError, match=r"no config\.json"):
        serving.engraving_predictor(model_dir / "engraved")


def test_cli_check_model_accepts_uris_and_refuses_empty_folders(tmp_path: Path) -> None:
    from overseer.cli import _check_model

    _check_model("models:/anything@champion")  # never loads: a bad URI is reported when it is used
    with pytest.raises(serving.InputError, match=r"no config\.json, no MLmodel"):
        _check_model(str(tmp_path))


def test_the_key_change_penalty_param_defaults_to_the_model_folders(logged, model_dir: Path, tmp_path: Path) -> None:
    import shutil

    from mlflow.models import Model

    from overseer.engraving.engrave import model_key_change_penalty, write_postprocess_settings
    from overseer.engraving.key_smoothing import DEFAULT_KEY_CHANGE_PENALTY

    assert serving._options(None)["key_change_penalty"] == DEFAULT_KEY_CHANGE_PENALTY
    assert serving._options({}, key_change_penalty=7.0)["key_change_penalty"] == 7.0  # the model's
    assert serving._options({"key_change_penalty": 0.0}, key_change_penalty=7.0)["key_change_penalty"] == 0.0
    with pytest.raises(Exception, match=r"key_change_penalty -1\.0: expected a number >= 0"):
        serving._options({"key_change_penalty": -1.0})
    folder = tmp_path / "export"
    shutil.copytree(model_dir, folder)
    write_postprocess_settings(folder, 16.0)  # what export@gnn writes beside the model
    assert model_key_change_penalty(folder) == 16.0
    assert model_key_change_penalty(model_dir) == DEFAULT_KEY_CHANGE_PENALTY  # no postprocess.json
    with mlflow.start_run(experiment_id=mlflow.get_experiment_by_name("serving").experiment_id):
        info = serving.log_engraving_model(folder, NAME + "-keyed")
    signature = Model.load(info.model_uri).signature
    assert {p.name: p.default for p in signature.params}["key_change_penalty"] == 16.0
    assert mlflow.pyfunc.load_model(info.model_uri).unwrap_python_model().key_change_penalty == 16.0
    table = serving.engraving_predictor(folder)(serving.input_example(), {"key_change_penalty": 0.0})
    assert table["n_notes"][0] == 11
    (folder / "postprocess.json").write_text('{"key_change_penalty": -2}')
    with pytest.raises(serving.InputError, match="key_change_penalty must be a number >= 0"):
        model_key_change_penalty(folder)
