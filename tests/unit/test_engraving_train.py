"""train_gnn on tiny fake pieces: masking, determinism, early stopping, callbacks, save/load, overfitting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from engraving_fakes import fake_piece

from overseer.engraving import schema
from overseer.engraving.dataset import piece_to_data
from overseer.engraving.model import EngravingGNN, ModelConfig
from overseer.engraving.predict import predict_piece
from overseer.engraving.scoring import homophonic_counts, labels_from_predictions, score_pieces
from overseer.engraving.train import (
    StopTraining,
    evaluate_graphs,
    load_model,
    save_model,
    task_losses,
    total_loss,
    train_gnn,
)

TINY = {
    "hidden": 16,
    "layers": 2,
    "gru_layers": 1,
    "epochs": 2,
    "window": 40,
    "batch_windows": 4,
    "progress": False,
    "seed": 7,
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def pieces() -> tuple[list[dict], list[dict]]:
    return [fake_piece(60, seed=s) for s in range(3)], [fake_piece(40, seed=10)]


def test_a_fully_unknown_task_adds_zero_loss_and_no_nan() -> None:
    piece = fake_piece(40, seed=1)
    for name in ("y_key", "y_chord"):
        piece[name] = np.full_like(piece[name], schema.UNKNOWN)
    data = piece_to_data(piece)
    model = EngravingGNN(ModelConfig(hidden=16, gru_layers=1))
    losses = task_losses(model(data), data)
    assert losses["key"] == (0.0, 0) and losses["chord"][1] == 0
    assert float(losses["chord"][0].detach()) == 0.0
    loss = total_loss(losses)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert model.node_heads["key"].mlp[-1].weight.grad.abs().sum() == 0  # no signal from an unlabelled task


def test_training_is_seeded(pieces) -> None:
    train, val = pieces
    a = train_gnn(train, val, TINY)
    b = train_gnn(train, val, TINY)
    cols = ["train_loss", "val_loss", "val_f1_voice"]
    assert np.array_equal(a.history[cols].to_numpy(), b.history[cols].to_numpy())
    c = train_gnn(train, val, {**TINY, "seed": 8})
    assert not np.array_equal(a.history[cols].to_numpy(), c.history[cols].to_numpy())


def test_metrics_reach_the_callback(pieces) -> None:
    train, val = pieces
    seen: list[tuple[int, dict]] = []
    result = train_gnn(train, val, TINY, on_epoch=lambda e, m: seen.append((e, m)))
    assert [e for e, _ in seen] == [1, 2]
    keys = seen[0][1].keys()
    for task in (*schema.NODE_TASKS, *schema.EDGE_TASKS):
        assert f"train_loss_{task}" in keys and f"val_loss_{task}" in keys
    for name in ("train_loss", "val_loss", "val_acc_staff", "val_acc_duration", "val_f1_voice", "notes_per_s"):
        assert np.isfinite(seen[0][1][name]), name
    assert result.summary()["epochs_run"] == 2


def test_early_stopping_restores_the_best_weights(pieces) -> None:
    train, val = pieces
    cfg = {**TINY, "epochs": 12, "patience": 2, "lr": 0.05, "dropout": 0.0}
    result = train_gnn(train, val, cfg)
    hist = result.history
    best = int(hist.loc[hist["val_loss"].idxmin(), "epoch"])
    assert result.best_epoch == best
    assert result.stopped == "early_stopping" and len(hist) == best + 2  # patience 2 after the best
    again = evaluate_graphs(result.model, [piece_to_data(p) for p in val], torch.device("cpu"))
    assert again["val_loss"] == pytest.approx(hist["val_loss"].min(), rel=1e-5)


def test_stop_training_from_the_callback_and_other_errors_propagate(pieces) -> None:
    train, val = pieces

    def stop(epoch: int, metrics: dict) -> None:
        raise StopTraining

    result = train_gnn(train, val, {**TINY, "epochs": 5}, on_epoch=stop)
    assert result.stopped == "callback" and len(result.history) == 1

    def prune(epoch: int, metrics: dict) -> None:
        raise RuntimeError("pruned")

    with pytest.raises(RuntimeError, match="pruned"):
        train_gnn(train, val, TINY, on_epoch=prune)


def test_save_load_round_trip_predicts_identically(pieces, tmp_path: Path) -> None:
    train, val = pieces
    result = train_gnn(train, [], {**TINY, "epochs": 1})
    paths = save_model(result, tmp_path / "model")
    assert paths["weights"].exists() and paths["config"].exists()
    loaded = load_model(tmp_path / "model")
    a, b = predict_piece(result.model, val[0]), predict_piece(loaded, val[0])
    assert set(a) == {f"logits_{t}" for t in schema.NODE_TASKS} | {"p_voice", "p_chord"}
    for key in a:
        assert a[key].dtype == np.float32
        np.testing.assert_array_equal(a[key], b[key])
    assert a["p_voice"].shape == (val[0]["voice_cand"].shape[1],)
    assert a["logits_spelling"].shape == (40, len(schema.SPELLINGS))


def test_windowed_prediction_of_a_long_piece(pieces) -> None:
    model = EngravingGNN(ModelConfig(hidden=16, gru_layers=1)).eval()
    piece = pieces[0][0]
    whole = predict_piece(model, piece)
    same = predict_piece(model, piece, max_notes=60)  # no window needed
    windowed = predict_piece(model, piece, max_notes=25, overlap=10)
    for key in whole:
        np.testing.assert_array_equal(whole[key], same[key])
        assert windowed[key].shape == whole[key].shape and np.isfinite(windowed[key]).all()


def test_tiny_model_overfits_one_piece() -> None:
    piece = fake_piece(50, seed=2)
    cfg = {**TINY, "epochs": 40, "lr": 1e-2, "dropout": 0.0, "window": 50, "patience": 0, "weight_decay": 0.0}
    result = train_gnn([piece], [], cfg)
    loss = result.history["train_loss"].to_numpy()
    assert loss[-1] < 0.25 * loss[0]


@pytest.mark.parametrize("threshold", [0.5, 0.3, 0.0])
def test_evaluate_graphs_is_scoring_on_the_same_outputs(threshold: float) -> None:
    """The quick validation metrics are ``scoring``'s on what ``predict_piece`` gives, micro-averaged."""
    torch.manual_seed(3)
    model = EngravingGNN(ModelConfig(hidden=16, layers=2, gru_layers=1))
    pieces = [fake_piece(50, seed=s) for s in (20, 21, 22)]
    got = evaluate_graphs(model, [piece_to_data(p) for p in pieces], torch.device("cpu"), threshold=threshold)
    assert model.training  # the mode is restored
    labels = [labels_from_predictions(predict_piece(model, p), p, threshold) for p in pieces]
    want = score_pieces(labels, pieces)
    for task in schema.NODE_TASKS:
        assert got[f"val_acc_{task}"] == pytest.approx(want[f"acc_{task}"]), task
    assert got["val_acc_duration"] == pytest.approx(want["acc_duration"])
    assert got["val_f1_voice"] == pytest.approx(want["voice_f1"])
    assert got["val_f1_chord"] == pytest.approx(want["chord_f1"])
    assert 0.0 < got["val_f1_voice"] < 1.0 and np.isfinite(got["val_loss"])


def test_evaluate_graphs_default_threshold_is_logit_zero() -> None:
    """p >= 0.5 is today's logit >= 0: voice F1 recomputed from the logits by hand."""
    torch.manual_seed(5)
    model = EngravingGNN(ModelConfig(hidden=16, layers=2, gru_layers=1)).eval()
    piece = fake_piece(60, seed=23)
    data = piece_to_data(piece)
    got = evaluate_graphs(model, [data], torch.device("cpu"))
    with torch.no_grad():
        logit = model(data)["logit_voice"].numpy()
    cand, y = piece["voice_cand"], piece["y_voice"]
    hand = homophonic_counts(cand[:, (logit >= 0) & (y >= 0)], cand[:, y == 1]).f1
    assert got["val_f1_voice"] == pytest.approx(hand)
    everything = evaluate_graphs(model, [data], torch.device("cpu"), threshold=0.0)
    assert everything["val_f1_voice"] == pytest.approx(homophonic_counts(cand[:, y >= 0], cand[:, y == 1]).f1)
    assert everything["val_loss"] == pytest.approx(got["val_loss"])  # the threshold moves metrics, not losses
