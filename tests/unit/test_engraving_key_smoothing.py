"""Key smoothing over a piece (issue 13): Viterbi over bars with a change penalty, on hand-made sequences."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from overseer.engraving import schema
from overseer.engraving.key_smoothing import (
    N_KEYS,
    KeyItem,
    bar_scores,
    choose_penalty,
    key_accuracy,
    n_changes,
    smooth_key_sequence,
    viterbi,
)
from overseer.engraving.postprocess import smooth_key

C, G, D, F = (schema.KEY_FIFTHS.index(f) for f in (0, 1, 2, -1))


def notes_for(bar_keys: list[int], per_bar: int = 4, confidence: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """(key logits, bar) of ``per_bar`` notes per bar, each predicting its bar's key (-1: an empty bar)."""
    logits, bars = [], []
    for b, k in enumerate(bar_keys):
        if k < 0:
            continue
        row = np.zeros(N_KEYS)
        row[k] = confidence
        logits += [row] * per_bar
        bars += [b] * per_bar
    return np.array(logits).reshape(-1, N_KEYS), np.array(bars, dtype=np.int64)


def smooth(bar_keys: list[int], penalty: float, **kw: object) -> list[int]:
    logits, bar = notes_for(bar_keys)
    return smooth_key_sequence(logits, bar, len(bar_keys), penalty, **kw).tolist()


def brute_force(scores: np.ndarray, penalty: float) -> float:
    return max(
        sum(scores[b, k] for b, k in enumerate(path)) - penalty * sum(a != b for a, b in itertools.pairwise(path))
        for path in itertools.product(range(scores.shape[1]), repeat=scores.shape[0])
    )


def test_a_single_flicker_is_removed() -> None:
    keys = [C] * 6 + [G] + [C] * 6
    assert smooth(keys, 0.0) == keys  # per bar: the flicker stays
    assert smooth(keys, 1.0) == [C] * 13  # two changes cost 2 > the one bar it wins
    assert smooth(keys, 0.4) == keys  # below half a bar per change it is kept


def test_a_real_modulation_with_enough_bars_is_kept() -> None:
    keys = [C] * 8 + [G] * 6 + [C] * 8
    assert smooth(keys, 2.0) == keys  # 6 bars of G win over 2 changes x 2
    assert smooth(keys, 4.0) == [C] * 22  # 2 x 4 > 6: one key
    final = [F] * 8 + [D] * 3  # a change at the end costs one penalty only
    assert smooth(final, 2.0) == final and smooth(final, 3.5) == [F] * 11


def test_penalty_zero_is_the_per_bar_argmax_and_inf_one_key() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(60, N_KEYS)) * 2
    bar = np.sort(rng.integers(0, 12, size=60))
    scores, has = bar_scores(logits, bar, 12)
    assert viterbi(scores, 0.0).tolist() == np.argmax(scores, axis=1).tolist()
    one = smooth_key_sequence(logits, bar, 12, float("inf"))
    assert n_changes(one) == 0 and one[0] == np.argmax(scores[has].sum(axis=0))


@pytest.mark.parametrize("penalty", [0.0, 0.3, 0.7, 1.5, 5.0])
def test_viterbi_finds_the_best_path(penalty: float) -> None:
    rng = np.random.default_rng(int(penalty * 10))
    for _ in range(5):
        scores = rng.random((6, 3))
        path = viterbi(scores, penalty)
        value = scores[np.arange(6), path].sum() - penalty * n_changes(path)
        assert value == pytest.approx(brute_force(scores, penalty))


def test_empty_bars_keep_the_previous_key() -> None:
    assert smooth([-1, C, -1, -1, G, G, G, G, -1], 1.0) == [C, C, C, C, G, G, G, G, G]
    assert smooth([-1, -1, -1], 1.0) == [C, C, C]  # no notes: C major, as post-processing
    assert smooth([-1, D, D], 0.0) == [D, D, D]


def test_per_bar_votes_are_post_processings_smooth_key() -> None:
    rng = np.random.default_rng(4)
    for seed in range(5):
        logits = rng.normal(size=(80, N_KEYS)) * (1 + seed)
        bar = np.sort(rng.integers(0, 20, size=80))
        chord = np.repeat(np.arange(40), 2)  # pairs of notes pooled
        expected = smooth_key(logits, chord, bar, 21)
        assert np.array_equal(smooth_key_sequence(logits, bar, 21, 0.0, chord=chord), expected)


def test_the_log_probability_emission_and_bad_input() -> None:
    keys = [C] * 5 + [G] + [C] * 5
    assert smooth(keys, 0.0, emission="logprob") == keys
    assert smooth(keys, 10.0, emission="logprob") == [C] * 11
    with pytest.raises(ValueError, match="emission"):
        smooth(keys, 1.0, emission="mean")
    with pytest.raises(ValueError, match="penalty"):
        viterbi(np.zeros((3, 2)), -1.0)


def item(true: list[int], predicted: list[int]) -> KeyItem:
    logits, bar = notes_for(predicted)
    y = np.repeat(np.array(true, dtype=np.int16), 4)
    return KeyItem(logits, bar, len(true), y)


def test_accuracy_raw_per_bar_and_sequence() -> None:
    predicted = [C] * 6 + [G] + [C] * 6
    logits, bar = notes_for(predicted)
    logits[0] = np.eye(N_KEYS)[D] * 3  # one note of bar 0 off: the bar's majority is still C
    items = [KeyItem(logits, bar, 13, np.full(bar.size, C, dtype=np.int16))]
    acc = key_accuracy(items, 1.0)
    assert acc.raw == pytest.approx(1 - 5 / 52) and acc.per_bar == pytest.approx(48 / 52) and acc.sequence == 1.0
    assert (acc.changes_per_bar, acc.changes_sequence, acc.true_changes, acc.notes) == (2, 0, 0, 52)
    assert acc.as_dict()["acc_key_sequence"] == 1.0


def test_the_penalty_is_chosen_on_validation_pieces() -> None:
    flicker = item([C] * 10, [C] * 4 + [G] + [C] * 5)  # wants a penalty > 0.5
    modulation = item([C] * 5 + [G] * 3, [C] * 5 + [G] * 3)  # a change at the end: wants a penalty < 3
    choice = choose_penalty([flicker, modulation], candidates=[0.0, 0.25, 1.0, 2.0, 4.0, float("inf")])
    assert choice.penalty == 2.0  # the plateau 1..2: ties go to the larger penalty (fewer changes)
    assert choice.accuracy[1.0] == choice.accuracy[2.0] == 1.0
    assert choice.accuracy[0.0] < 1.0 and choice.accuracy[4.0] < 1.0
    assert choice.changes[0.0] == 3 and choice.changes[1.0] == 1 and choice.changes[float("inf")] == 0
    assert choose_penalty([flicker, modulation]).penalty == 2.0  # the default candidates: finite, JSON-safe
    rows = choice.table()  # key_penalty.csv: accuracy and mean key changes per piece, per candidate
    assert [r["penalty"] for r in rows] == [0.0, 0.25, 1.0, 2.0, 4.0, float("inf")]
    assert rows[0]["changes_per_piece"] == 1.5 and [r["chosen"] for r in rows] == [0, 0, 0, 1, 0, 0]
    with pytest.raises(ValueError, match="candidate"):
        choose_penalty([flicker], candidates=[])


def test_one_key_wins_over_a_plateau_of_one_key_pieces() -> None:
    """Pieces in one key whose bars flicker: every penalty past the flicker is as accurate; the largest is chosen."""
    pieces = [item([D] * 12, [D] * 3 + [G] + [D] * 4 + [G] + [D] * 3), item([F] * 8, [F] * 2 + [C] + [F] * 5)]
    choice = choose_penalty(pieces, candidates=[0.0, 1.0, 4.0, 16.0])
    assert choice.accuracy[0.0] < 1.0 and choice.accuracy[1.0] == choice.accuracy[16.0] == 1.0
    assert choice.penalty == 16.0 and choice.changes[16.0] == 0
