"""The paper's §3.2 metrics on hand-computed cases, micro-averaging, Table 1 and the reports."""

from __future__ import annotations

import numpy as np
import pytest
from engraving_fakes import fake_piece

from overseer.engraving import schema
from overseer.engraving.scoring import (
    PAPER_ROW,
    TABLE1_COLUMNS,
    F1Counts,
    accuracy_counts,
    chord_counts,
    duration_counts,
    homophonic_counts,
    homophonic_f1,
    labels_from_predictions,
    reports,
    score_pieces,
    table1,
    table_markdown,
    voice_counts,
)


def edges(*pairs: tuple[int, int]) -> np.ndarray:
    return np.array(pairs, dtype=np.int64).T.reshape(2, -1)


def test_homophonic_f1_by_hand() -> None:
    # truth: chord {0, 1} -> note 2 -> chord {3, 4}. Out-degrees 0:1, 1:1, 2:2, so the weights are
    # 1, 1, 1/2, 1/2 and the true set weighs 3. Prediction 0->2, 2->3, 1->3: out-degrees all 1.
    true = edges((0, 2), (1, 2), (2, 3), (2, 4))
    pred = edges((0, 2), (2, 3), (1, 3))
    c = homophonic_counts(pred, true)
    assert (c.matched_pred, c.total_pred) == (2.0, 3.0)  # precision 2/3
    assert (c.matched_true, c.total_true) == (1.5, 3.0)  # recall (1 + 1/2) / 3 = 1/2
    assert c.precision == pytest.approx(2 / 3)
    assert c.recall == pytest.approx(0.5)
    assert homophonic_f1(pred, true) == pytest.approx(4 / 7)  # 2 * (2/3) * (1/2) / (7/6)


def test_homophonic_weights_come_from_each_sets_own_out_degrees() -> None:
    # predicting the true chord-to-chord links fully is perfect; a duplicate edge counts once
    true = edges((0, 2), (0, 3), (1, 2), (1, 3))
    assert homophonic_f1(np.concatenate([true, true[:, :1]], axis=1), true) == pytest.approx(1.0)
    # predicting only 0->2 and 1->3: each predicted source has out-degree 1 (precision 1), recall 1/2
    c = homophonic_counts(edges((0, 2), (1, 3)), true)
    assert (c.precision, c.recall) == (1.0, 0.5)


def test_empty_sets_give_zero_not_nan() -> None:
    c = homophonic_counts(np.zeros((2, 0), dtype=np.int64), edges((0, 1)))
    assert (c.precision, c.recall, c.f1) == (0.0, 0.0, 0.0)


def test_voice_counts_drop_unknown_candidates() -> None:
    cand = edges((0, 1), (0, 2), (1, 3))
    y = np.array([1, -1, 1])
    c = voice_counts(edges((0, 1), (0, 2), (1, 3)), cand, y)  # (0, 2) is unknown: ignored
    assert c.f1 == pytest.approx(1.0)


def test_chord_f1_over_candidates_in_either_order() -> None:
    cand = edges((0, 1), (0, 2), (1, 2), (3, 4))
    y = np.array([1, 0, 0, -1])
    pred = edges((1, 0), (2, 1), (4, 3))  # (0,1) TP, (1,2) FP, (3,4) unknown; (0,2) TN
    c = chord_counts(pred, cand, y)
    assert (c.matched_pred, c.total_pred, c.total_true) == (1.0, 2.0, 1.0)
    assert c.f1 == pytest.approx(2 * 0.5 * 1.0 / 1.5)


def test_masked_and_joint_duration_accuracy() -> None:
    assert accuracy_counts(np.array([0, 1, 2, 2]), np.array([0, 2, -1, 2])) == (2, 3)
    truth = {"note_type": np.array([3, 3, 4, -1]), "dots": np.array([0, 1, 0, 0]), "tuplet": np.array([0, 0, 1, 0])}
    pred = {"note_type": np.array([3, 3, 4, 3]), "dots": np.array([0, 0, 0, 0]), "tuplet": np.array([0, 0, 1, 0])}
    # note 0 all right, note 1 dots wrong, note 2 all right, note 3 unlabelled note type: 2 of 3
    assert duration_counts(pred, truth) == (2, 3)


def _perfect_labels(piece: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    labels = {t: np.maximum(piece[f"y_{t}"], 0) for t in schema.NODE_TASKS}
    for kind in schema.EDGE_TASKS:
        labels[f"{kind}_edges"] = piece[f"{kind}_cand"][:, piece[f"y_{kind}"] == 1]
    return labels


def test_perfect_labels_score_one() -> None:
    pieces = [fake_piece(40, seed=1), fake_piece(30, seed=2)]
    m = score_pieces([_perfect_labels(p) for p in pieces], pieces)
    for col in TABLE1_COLUMNS.values():
        assert m[col] == pytest.approx(1.0), col
    assert m["n_notes"] == 70


def test_micro_averaging_pools_counts() -> None:
    a, b = fake_piece(40, seed=1), fake_piece(60, seed=2)
    la, lb = _perfect_labels(a), _perfect_labels(b)
    lb["staff"] = 1 - lb["staff"]  # every labelled staff of b wrong
    na, nb = (a["y_staff"] >= 0).sum(), (b["y_staff"] >= 0).sum()
    m = score_pieces([la, lb], [a, b])
    assert m["acc_staff"] == pytest.approx(na / (na + nb))  # not the mean of 1 and 0


def test_f1_counts_add() -> None:
    assert (F1Counts(1, 2, 1, 4) + F1Counts(1, 2, 3, 4)).recall == pytest.approx(0.5)


def test_labels_from_predictions_and_reports() -> None:
    piece = fake_piece(30, seed=5)
    n, c, k = 30, piece["voice_cand"].shape[1], piece["chord_cand"].shape[1]
    rng = np.random.default_rng(0)
    pred = {f"logits_{t}": rng.normal(size=(n, len(cl))).astype(np.float32) for t, cl in schema.NODE_TASKS.items()}
    pred["p_voice"] = rng.random(c).astype(np.float32)
    pred["p_chord"] = rng.random(k).astype(np.float32)
    labels = labels_from_predictions(pred, piece)
    assert labels["voice_edges"].shape == (2, int((pred["p_voice"] >= 0.5).sum()))
    rep = reports([labels], [piece], piece_names=["p"])
    assert set(rep) == set(schema.NODE_TASKS) | set(schema.EDGE_TASKS)
    assert rep["staff"].confusion.sum() == (piece["y_staff"] >= 0).sum()
    assert rep["chord"].confusion.sum() == (piece["y_chord"] >= 0).sum()
    m = score_pieces([labels], [piece])
    assert rep["staff"].accuracy == pytest.approx(m["acc_staff"])
    assert rep["chord"].per_class.loc["yes", "f1"] == pytest.approx(m["chord_f1"])


def test_table1_has_the_papers_columns_and_reference_row() -> None:
    frame = table1({"ours": {"voice_f1": 0.9, "acc_staff": 0.5}})
    assert list(frame.columns) == list(TABLE1_COLUMNS)
    assert frame.loc["ours", "Voice F1"] == 90.0
    assert np.isnan(frame.loc["ours", "Chord F1"])
    assert frame.loc[PAPER_ROW].tolist() == [90.6, 81.1, 91.9, 93.5, 50.5, 73.6, 100.0, 90.0, 83.3]
    md = table_markdown(frame)
    assert md.splitlines()[0].startswith("| Model | Voice F1 |")
    assert "| ours | 90.0 | - |" in md


def test_a_prediction_outside_the_classes_is_wrong_but_has_no_confusion_cell() -> None:
    """Post-processing writes tuplet -1 for a generic ratio (a 7-tuplet, say): no class, so never right."""
    piece = fake_piece(40, seed=3, unknown=0.0)
    pred = {f"logits_{t}": np.eye(len(c), dtype=np.float32)[piece[f"y_{t}"]] for t, c in schema.NODE_TASKS.items()}
    pred["p_voice"] = (piece["y_voice"] == 1).astype(np.float32)
    pred["p_chord"] = (piece["y_chord"] == 1).astype(np.float32)
    labels = labels_from_predictions(pred, piece)
    labels["tuplet"] = labels["tuplet"].copy()
    labels["tuplet"][:4] = -1
    assert score_pieces([labels], [piece])["acc_tuplet"] == pytest.approx(36 / 40)
    report = reports([labels], [piece])["tuplet"]
    assert int(report.confusion.sum()) == 36


def test_no_true_and_no_predicted_edge_is_undefined_not_zero() -> None:
    empty = np.zeros((2, 0), dtype=np.int64)
    nothing = F1Counts()
    assert not nothing.defined
    assert all(np.isnan(v) for v in (nothing.precision, nothing.recall, nothing.f1))
    # a candidate labelled 0, correctly not predicted: undefined; predicted: a false positive, F1 0
    cand, y = edges((0, 1)), np.array([0])
    assert np.isnan(chord_counts(empty, cand, y).f1)
    fp = chord_counts(edges((1, 0)), cand, y)
    assert (fp.precision, fp.recall, fp.f1) == (0.0, 0.0, 0.0)
    assert np.isnan(voice_counts(empty, cand, y).f1)
    assert voice_counts(edges((0, 1)), cand, y).f1 == 0.0
    assert homophonic_counts(empty, edges((0, 1))).f1 == 0.0  # a missed true edge stays 0


def test_an_undefined_piece_is_left_out_of_the_micro_average() -> None:
    solo = fake_piece(30, seed=4, unknown=0.0)
    solo["y_chord"] = np.zeros_like(solo["y_chord"])  # no two notes of one onset in one voice
    solo["y_voice"] = np.zeros_like(solo["y_voice"])
    perfect = _perfect_labels(solo)
    m = score_pieces([perfect], [solo])
    assert np.isnan(m["chord_f1"]) and np.isnan(m["voice_f1"])  # predicted perfectly: undefined, not 0
    assert m["acc_staff"] == 1.0
    other = fake_piece(40, seed=5)
    lab = _perfect_labels(other)
    lab["chord_edges"] = lab["chord_edges"][:, : lab["chord_edges"].shape[1] // 2]  # half the chord links
    alone, pooled = score_pieces([lab], [other]), score_pieces([lab, perfect], [other, solo])
    assert 0 < alone["chord_f1"] < 1
    for key in ("chord_f1", "chord_precision", "chord_recall", "voice_f1"):
        assert pooled[key] == pytest.approx(alone[key]), key
    md = table_markdown(table1({"x": m}, reference=False))
    assert "| x | - | - | 100.0 |" in md


# --- evaluate@gnn's key report (issue 13) -------------------------------------------------------------------


def _flipping_key_piece(seed: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A piece in D major (12 bars of four quarters) and oracle predictions whose key says G in 3 bars."""
    from engraving_truth import N, oracle, regular_bars, truth_piece

    piece = truth_piece([N(4.0 * b + q, 1.0, 74, key=2) for b in range(12) for q in range(4)], regular_bars(12))
    pred = oracle(piece)
    flipped = np.random.default_rng(seed).choice(12, size=3, replace=False)
    note_bars = piece["bar"]
    logits = np.zeros((note_bars.size, len(schema.KEY_FIFTHS)), dtype=np.float32)
    logits[np.arange(note_bars.size), np.where(np.isin(note_bars, flipped), 8, 9)] = 3.0  # G (1), else D (2)
    logits[::4, 9] = 3.5  # one note per bar says D everywhere: raw accuracy between per-bar and smoothed
    return piece, {**pred, "logits_key": logits}


def test_evaluation_reports_key_accuracy_raw_per_bar_and_sequence_smoothed() -> None:
    from overseer.engraving.evaluate import choose_key_penalty, evaluate_pieces

    pairs = [_flipping_key_piece(seed) for seed in range(4)]
    preds = {id(p): q for p, q in pairs}
    pieces = [p for p, _ in pairs]

    def predict(piece):
        return preds[id(piece)]

    choice = choose_key_penalty("auto", pieces[:2], predict, progress=False)  # "validation": the first two
    assert choice.penalty == max(choice.accuracy) and choice.accuracy[choice.penalty] == 1.0  # ties: the largest
    assert choose_key_penalty(2, pieces, predict).penalty == 2.0  # a number: as it is, nothing predicted
    assert choose_key_penalty("0", pieces, predict).penalty == 0 and not choose_key_penalty(0, [], predict).accuracy
    evaluation = evaluate_pieces(pieces[2:], ["a", "b"], predict, key_change_penalty=choice, progress=False)
    key = evaluation.artifacts["metrics.json"]["key"]
    assert key["per_bar"] == pytest.approx(9 / 12) and key["raw"] == pytest.approx((36 + 3) / 48)
    assert key["sequence"] == 1.0 and key["penalty"] == choice.penalty
    assert key["changes_sequence"] == 0 and key["changes_true"] == 0 and key["changes_per_bar"] > 0
    assert evaluation.post["acc_key"] == key["sequence"]  # Table 1's post-processed Key Acc: the smoothed one
    assert all(isinstance(v, float) for v in key.values())  # numbers only
    csv = evaluation.artifacts["key_penalty.csv"].splitlines()
    assert csv[0] == "penalty,accuracy,changes_per_piece,chosen" and len(csv) == 1 + len(choice.accuracy)
    per_bar = evaluate_pieces(pieces[2:], ["a", "b"], predict, progress=False)  # no penalty: the paper's per bar
    assert per_bar.key["sequence"] == per_bar.key["per_bar"] == per_bar.post["acc_key"] and per_bar.key["penalty"] == 0
    assert "key_penalty.csv" not in per_bar.artifacts
