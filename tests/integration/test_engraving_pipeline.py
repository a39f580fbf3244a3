"""`dvc repro` of the engraving chain end to end on the music21 default corpus, with a tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import partitura
import pytest
from conftest import make_project, run, serve_model

pytestmark = pytest.mark.slow

TINY_GNN = {
    ("train_gnn", "hidden"): 16,
    ("train_gnn", "layers"): 1,
    ("train_gnn", "gru_layers"): 1,
    ("train_gnn", "epochs"): 2,
    ("train_gnn", "window"): 100,
    ("train_gnn", "batch_windows"): 4,
    ("export", "gnn", "pieces"): 1,
    ("export", "gnn", "pages"): 1,
}


def test_engraving_chain(tmp_path: Path) -> None:
    root, env = make_project(tmp_path, TINY_GNN)
    result = run(["dvc", "repro", "export@gnn", "evaluate@gnn"], root, env)
    ran = {line.split("'")[1] for line in result.stdout.splitlines() if line.startswith("Running stage")}
    assert ran == {"ingest@engraving", "validate@engraving", "train_gnn", "evaluate@gnn", "export@gnn"}

    index = json.loads((root / "data/prepared/engraving/index.json").read_text())
    splits = {p["split"] for p in index["pieces"]}
    assert splits == {"train", "validation", "test"} and not index["skipped"]
    assert "PASSED" in (root / "reports/engraving/validation/validation.md").read_text()

    train = json.loads((root / "reports/engraving/train/metrics.json").read_text())
    assert train["epochs_run"] == 2 and train["n_val"] >= 1

    # evaluation on the held-out (test) pieces only, in the paper's Table 1 shape
    metrics = json.loads((root / "reports/engraving/eval/metrics.json").read_text())
    test_pieces = [p for p in index["pieces"] if p["split"] == "test"]
    assert metrics["n_pieces"] == len(test_pieces)
    assert metrics["post_processed"]["n_notes"] == sum(p["n_notes"] for p in test_pieces)
    for key in ("voice_f1", "chord_f1", "acc_staff", "acc_spelling", "acc_duration"):
        assert 0.0 <= metrics["post_processed"][key] <= 1.0
    table = (root / "reports/engraving/eval/table1.md").read_text()
    assert "Voice F1" in table and "EngravingGNN (paper, DCML Romantic)" in table
    assert (root / "reports/engraving/eval/tasks/staff/confusion_matrix.csv").exists()

    # export: the model, an engraved held-out piece that partitura reads back, an SVG page, a registry version
    exported = root / "models/engraving/export"
    assert {"model.pt", "config.json"} <= {p.name for p in exported.iterdir()}
    (piece_dir,) = list((exported / "engraved").iterdir())
    musicxml = piece_dir / f"{piece_dir.name}.musicxml"
    assert partitura.load_score(str(musicxml)).note_array().size > 0
    assert (piece_dir / f"{piece_dir.name}.mei").exists()
    assert (piece_dir / "page-1.svg").read_text().lstrip().startswith(("<?xml", "<svg"))
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    (version,) = client.search_model_versions("name = 'engraving-gnn'")
    assert client.get_run(version.run_id).data.tags["overseer.stage"] == "export@gnn"

    # `overseer engrave` with the exported model on a MIDI file (the engraved piece, played back)
    out = root / "engraved"
    midi = root / "piece.mid"
    partitura.save_score_midi(partitura.load_score(str(musicxml)), str(midi))
    cli = run([str(Path(env["PATH"].split(":")[0]) / "overseer"), "engrave", str(midi), "--out", str(out)], root, env)
    assert "engraved" in cli.stdout
    assert (out / "piece.musicxml").exists() and (out / "piece.mei").exists()


def test_engraving_model_serves(tmp_path: Path) -> None:
    """A tiny EngravingGNN logged with ``log_engraving_model`` answers `mlflow models serve` requests:
    a base64 MusicXML score in (``dataframe_split``), engraved MusicXML out; a bad score is a 400 naming its row."""
    import base64
    import os
    import sys

    import torch

    from overseer.engraving.model import EngravingGNN, ModelConfig
    from overseer.engraving.train import save_model
    from overseer.serving.engraving import EXAMPLE_MUSICXML, log_engraving_model

    torch.manual_seed(0)
    save_model(EngravingGNN(ModelConfig(hidden=16, layers=1, gru_layers=1, dropout=0.0)), tmp_path / "model")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    try:
        experiment = mlflow.create_experiment("serving", artifact_location=(tmp_path / "artifacts").as_uri())
        with mlflow.start_run(experiment_id=experiment):
            log_engraving_model(tmp_path / "model", "engraving-served")
    finally:
        mlflow.set_tracking_uri(previous)  # None: unset again
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"}
    with serve_model("models:/engraving-served/1", env, tmp_path) as post:
        if post is None:
            pytest.skip("no TCP port can be bound here")
        score = base64.b64encode(EXAMPLE_MUSICXML.encode()).decode("ascii")
        answer = post({"dataframe_split": {"columns": ["score", "format"], "data": [[score, "musicxml"]]},
                       "params": {"threshold": 0.6}})  # fmt: skip
        (row,) = answer["predictions"]
        assert row["musicxml"].lstrip().startswith("<?xml") and "<score-partwise" in row["musicxml"]
        assert row["n_notes"] == len(json.loads(row["notes"])) == 11
        bad = base64.b64encode(b"not a MIDI file").decode("ascii")
        with pytest.raises(AssertionError, match=r"400.*row 1 \(mid\): not a Standard MIDI File"):
            post({"dataframe_split": {"columns": ["score", "format"], "data": [[score, "musicxml"], [bad, "mid"]]}})
