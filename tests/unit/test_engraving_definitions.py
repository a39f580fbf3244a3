"""One definition per label and metric: the voice successor shared by truth, evaluation and validation,
and the post-processed scoring path pinned by oracle predictions (F1 exactly 1, not just in [0, 1])."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from engraving_fakes import fake_piece
from engraving_truth import N, noisy, oracle, regular_bars, rich_piece, truth_piece, two_voice_bar

from overseer.engraving import schema
from overseer.engraving.data.graph import voice_candidates
from overseer.engraving.data.labels import NO_SUCCESSOR, successor_onset, voice_successors, voice_truth
from overseer.engraving.data.scores import table_from_arrays
from overseer.engraving.evaluate import labels_from_postprocessed, voice_links
from overseer.engraving.notation import quantize
from overseer.engraving.postprocess import postprocess
from overseer.engraving.scoring import TABLE1_COLUMNS, score_pieces
from overseer.validation.engraving import voice_coverage_table

PIECES = {"two_voice_bar": two_voice_bar, "rich_piece": rich_piece}


def edge_set(edges: np.ndarray) -> set[tuple[int, int]]:
    return set(map(tuple, np.asarray(edges).reshape(2, -1).T.tolist()))


def _reference(onset, duration, bar, staff, voice, *, next_chord: bool) -> set[tuple[int, int]]:
    """Pairwise statement of the rule: the notes of u's (bar, staff, voice) at its first onset >= offset(u)
    (the truth rule) or > onset(u) (the next chord)."""
    on, off = quantize(onset), quantize(np.asarray(onset) + np.asarray(duration))
    out = set()
    for u in range(on.size):
        later = on > on[u] if next_chord else on >= off[u]
        same = (bar == bar[u]) & (staff == staff[u]) & (voice == voice[u]) & later
        if same.any():
            out |= {(u, int(w)) for w in np.flatnonzero(same & (on == on[same].min()))}
    return out


def test_truth_rule_and_next_chord_rule_by_hand() -> None:
    # one voice: a chord of a half note (0) and a quarter (1) at beat 1, a quarter (2) at beat 2, a half (3) at 3
    onset = np.array([0.0, 0.0, 1.0, 2.0])
    duration = np.array([2.0, 1.0, 1.0, 2.0])
    bar, staff, voice = np.zeros(4, int), np.ones(4, int), np.ones(4, int)
    # truth: each chord note looks for its own next onset at or after its end
    truth = voice_successors(onset, bar, staff, voice, duration=duration)
    assert edge_set(truth) == {(0, 3), (1, 2), (2, 3)}
    # next chord: the whole chord at beat 1 links to beat 2
    assert edge_set(voice_successors(onset, bar, staff, voice)) == {(0, 2), (1, 2), (2, 3)}
    assert edge_set(voice_links(onset, bar, staff, voice)) == {(0, 2), (1, 2), (2, 3)}
    ticks = quantize(onset)
    assert successor_onset(onset, bar, staff, voice, duration=duration).tolist() == [
        ticks[3],
        ticks[2],
        ticks[3],
        NO_SUCCESSOR,
    ]
    # another bar, staff or voice is never a successor
    for other in (np.array([0, 0, 0, 1]), np.array([1, 1, 1, 2])):
        assert (0, 3) not in edge_set(voice_successors(onset, other, staff, voice, duration=duration))
        assert (2, 3) not in edge_set(voice_successors(onset, bar, other, voice, duration=duration))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_both_rules_equal_their_pairwise_statement(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 80
    onset = np.sort(rng.integers(0, 24 * 12, n)) / 12.0
    duration = rng.choice([1, 2, 3, 4, 6, 12], n) / 12.0
    bar, staff, voice = (onset // 3).astype(int), rng.integers(1, 3, n), rng.integers(1, 3, n)
    for next_chord in (False, True):
        got = voice_successors(onset, bar, staff, voice, duration=None if next_chord else duration)
        assert edge_set(got) == _reference(onset, duration, bar, staff, voice, next_chord=next_chord)
        assert np.array_equal(got, got[:, np.lexsort((got[1], got[0]))])  # sorted by u, then w


def test_voice_truth_is_the_successor_rule_on_the_candidates() -> None:
    rng = np.random.default_rng(4)
    onset = np.sort(rng.integers(0, 30 * 4, 90)) / 4.0
    duration = rng.choice([1, 2, 4, 8], 90) / 4.0
    table, _ = table_from_arrays(onset, duration, rng.integers(40, 80, 90), split_at_barlines=False)
    table.staff = rng.integers(1, 3, table.n_notes).astype(np.int16)
    table.voice = rng.integers(1, 3, table.n_notes).astype(np.int16)
    cand = voice_candidates(table.onset, table.duration, table.bar)
    y = voice_truth(table, cand)
    true = voice_successors(table.onset, table.bar, table.staff, table.voice, duration=table.duration)
    assert edge_set(true) <= edge_set(cand)  # every true edge is a candidate
    assert edge_set(cand[:, y == 1]) == edge_set(true)


@pytest.mark.parametrize("name", PIECES)
def test_fixture_truth_is_the_successor_rule(name: str) -> None:
    """``truth_piece`` states the truth pairwise, independently of the library: the same edges."""
    piece = PIECES[name]()
    true = voice_successors(piece["onset"], piece["bar"], piece["y_staff"], piece["voice"], duration=piece["duration"])
    assert edge_set(piece["voice_cand"][:, piece["y_voice"] == 1]) == edge_set(true)


@pytest.mark.parametrize("make", [two_voice_bar, rich_piece, lambda: fake_piece(60, seed=3)])
def test_on_post_processed_voices_the_two_rules_agree(make) -> None:
    """Post-processed voices tile their bars, so the next chord is the first onset at or after the end."""
    piece = make()
    for pred in (oracle(piece), noisy(piece, np.random.default_rng(0))):
        res = postprocess(dict(piece), pred)
        links = voice_links(piece["onset"], piece["bar"], res["staff"], res["voice"])
        by_end = voice_successors(piece["onset"], piece["bar"], res["staff"], res["voice"], duration=piece["duration"])
        assert edge_set(links) == edge_set(by_end)


def test_voice_coverage_rows_are_the_notes_with_a_successor() -> None:
    notes = [N(0, 2, 60), N(0, 1, 64), N(1, 1, 65), N(2, 2, 67), N(0, 4, 48, staff=2, voice=5), N(3, 1, 72, voice=2)]
    piece = truth_piece(notes, regular_bars(1))
    table = voice_coverage_table(Path("p"), piece)
    # successors: 60 -> 67, 64 -> 65, 65 -> 67; the whole note, the last note and the lone voice 2 have none
    pitch = piece["pitch"]
    assert sorted(pitch[table["note"]].tolist()) == [60, 64, 65]
    assert table["true_voice_edge_out"].all()
    nxt = successor_onset(piece["onset"], piece["bar"], piece["y_staff"], piece["voice"], duration=piece["duration"])
    assert table["note"].tolist() == np.flatnonzero(nxt != NO_SUCCESSOR).tolist()
    piece["y_staff"][pitch == 60] = -1  # unknown staff: not checked
    assert sorted(pitch[voice_coverage_table(Path("p"), piece)["note"]].tolist()) == [64, 65]


@pytest.mark.parametrize("name", PIECES)
def test_oracle_predictions_score_one_after_post_processing(name: str) -> None:
    piece = PIECES[name]()
    labels = labels_from_postprocessed(piece, postprocess(dict(piece), oracle(piece)))
    m = score_pieces([labels], [piece])
    assert m["voice_f1"] == 1.0
    for key in TABLE1_COLUMNS.values():
        if key != "chord_f1":
            assert m[key] == 1.0, key
    if (piece["y_chord"] == 1).any():
        assert m["chord_f1"] == 1.0
    else:  # rich_piece: no two notes of one onset share a staff and voice, and none is predicted
        assert np.isnan(m["chord_f1"])


def test_a_wrong_engraving_scores_below_one() -> None:
    piece = two_voice_bar()
    res = postprocess(dict(piece), oracle(piece))
    wrong = dict(res, voice=np.where(res["staff"] == 1, 1, res["voice"]))  # staff 1's two voices merged
    wrong["chord"] = np.zeros_like(res["chord"])  # and every note in one chord
    m = score_pieces([labels_from_postprocessed(piece, wrong)], [piece])
    assert m["voice_f1"] < 1.0 and m["voice_precision"] < 1.0
    assert m["chord_f1"] < 1.0 and m["chord_recall"] == 1.0
    assert 0 < m["chord_precision"] < 1.0
    staff = dict(res, staff=3 - res["staff"])
    assert score_pieces([labels_from_postprocessed(piece, staff)], [piece])["acc_staff"] == 0.0
    assert set(schema.NODE_TASKS) <= set(labels_from_postprocessed(piece, res))


def test_successors_in_a_pickup_bar_before_time_zero() -> None:
    """A pickup starts at negative times (quarters before the first full bar): found like any other."""
    onset, duration = np.array([-1.0, -0.5, 0.0, 1.0]), np.array([0.5, 0.5, 1.0, 1.0])
    bar, staff, voice = np.array([0, 0, 1, 1]), np.ones(4, int), np.ones(4, int)
    ticks = quantize(onset)
    assert successor_onset(onset, bar, staff, voice, duration=duration).tolist() == [
        ticks[1], NO_SUCCESSOR, ticks[3], NO_SUCCESSOR
    ]  # fmt: skip
    assert voice_successors(onset, bar, staff, voice, duration=duration).tolist() == [[0, 2], [1, 3]]
    assert voice_successors(onset, bar, staff, voice).tolist() == [[0, 2], [1, 3]]
