"""Score graph (paper §2.1): edges enumerated by hand, the silence pitfalls, features, candidates,
vectorised vs. a pairwise reference on random pieces, and pieces from plain arrays (MIDI input)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from overseer.engraving import schema
from overseer.engraving.data.graph import build_graph, chord_candidates, input_edges, node_features, voice_candidates
from overseer.engraving.data.labels import next_voice_onset, piece_from_arrays, piece_from_table, voice_truth
from overseer.engraving.data.scores import ScoreTable, table_from_arrays
from overseer.engraving.notation import TICKS_PER_QUARTER, quantize
from overseer.engraving.notation import bars as regular_bars


def edge_set(edges: np.ndarray) -> set[tuple[int, int]]:
    return set(map(tuple, edges.T.tolist()))


def test_four_notes_every_edge_by_hand() -> None:
    # 0: bass (0, 2); 1: (0, 1); 2: (1, 1); 3: (3, 1) after a gap at t = 2 where nothing sounds
    onset = np.array([0.0, 0.0, 1.0, 3.0])
    duration = np.array([2.0, 1.0, 1.0, 1.0])
    e = {r: edge_set(v) for r, v in input_edges(onset, duration).items()}
    assert e["onset"] == {(0, 1), (1, 0)}
    assert e["during"] == {(0, 2)}
    assert e["follow"] == {(1, 2)}
    assert e["silence"] == {(0, 3), (2, 3)}  # both notes ending at 2 lead to the next onset; note 3 leads nowhere
    assert e["rev_during"] == {(2, 0)}
    assert e["rev_follow"] == {(2, 1)}
    assert e["rev_silence"] == {(3, 0), (3, 2)}
    assert set(input_edges(onset, duration)) == set(schema.RELATIONS)
    for edges in input_edges(onset, duration).values():
        assert edges.dtype == np.int64 and edges.shape[0] == 2


def test_silence_needs_a_gap_in_all_voices_unless_rest_rule() -> None:
    # a held bass (0, 4) under a melody note (0, 1) and another (2, 1): no gap at t = 1
    onset = np.array([0.0, 0.0, 2.0])
    duration = np.array([4.0, 1.0, 1.0])
    assert edge_set(input_edges(onset, duration)["silence"]) == set()
    assert edge_set(input_edges(onset, duration, silence="rest")["silence"]) == {(1, 2)}
    with pytest.raises(ValueError, match="silence rule"):
        input_edges(onset, duration, silence="other")


def test_note_ending_after_last_onset_links_to_nothing() -> None:
    # piano_svsep's rule links note 1 (ends at 3, after the last onset 1) to every note: not ours
    onset = np.array([0.0, 0.0, 1.0])
    duration = np.array([1.0, 3.0, 1.0])
    for rule in ("gap", "rest"):
        assert edge_set(input_edges(onset, duration, silence=rule)["silence"]) == set()


def test_triplets_follow_exactly() -> None:
    onset = np.array([0.0, 1 / 3, 2 / 3, 1.0])
    duration = np.array([1 / 3, 1 / 3, 1 / 3, 1.0])
    assert edge_set(input_edges(onset, duration)["follow"]) == {(0, 1), (1, 2), (2, 3)}
    assert quantize(1 / 3 + 1 / 3) == quantize(2 / 3) == 2 * TICKS_PER_QUARTER // 3


def test_unsorted_or_zero_length_notes_are_refused() -> None:
    with pytest.raises(ValueError, match="sorted"):
        input_edges(np.array([1.0, 0.0]), np.array([1.0, 1.0]))
    with pytest.raises(ValueError, match="grace"):
        input_edges(np.array([0.0, 1.0]), np.array([1.0, 0.0]))


def test_candidates() -> None:
    onset = np.array([0.0, 0.0, 1.0, 2.0, 4.0])
    duration = np.array([2.0, 1.0, 1.0, 2.0, 1.0])
    bar = np.array([0, 0, 0, 0, 1])
    assert edge_set(voice_candidates(onset, duration, bar)) == {(0, 3), (1, 2), (1, 3), (2, 3)}
    assert edge_set(chord_candidates(onset)) == {(0, 1)}


def test_features() -> None:
    # 3/4 with a one-quarter pickup: bar 0 = [0, 1), bar 1 = [1, 4)
    bar_start, bar_dur = np.array([0.0, 1.0]), np.array([1.0, 3.0])
    onset, duration = np.array([0.0, 1.0, 2.5]), np.array([1.0, 1.5, 0.5])
    pitch = np.array([60, 67, 73])
    x = node_features(onset, duration, pitch, np.array([0, 1, 1]), bar_start, bar_dur, np.array([3, 3]), 4)
    assert x.shape == (3, schema.N_FEATURES) and x.dtype == np.float32
    assert x[:, :12].sum(axis=1).tolist() == [1, 1, 1] and x[2, 1] == 1  # C#
    np.testing.assert_allclose(x[:, 12], [4 / 9, 4 / 9, 5 / 9])
    np.testing.assert_allclose(x[:, 13], np.tanh(duration / 3.0), rtol=1e-6)
    np.testing.assert_allclose(x[:, 14], [2 / 3, 0.0, 0.5], rtol=1e-6)  # the pickup is the bar's last beat
    assert x[:, 15].tolist() == [0, 1, 0]
    # the log2 duration: its "octave" / 4 and its class as an angle (plain 0, triplet log2(4/3), ...)
    np.testing.assert_allclose(x[:, 16], np.log2(duration) / 4, rtol=1e-6)
    angle = 2 * np.pi * np.log2(duration)
    np.testing.assert_allclose(x[:, 17:19], np.c_[np.sin(angle), np.cos(angle)], atol=1e-6)


def _pairwise(on: list[int], off: list[int], bar: list[int]) -> dict[str, set[tuple[int, int]]]:
    """Reference: every definition tested on every pair (the benchmark's straightforward way)."""
    n = len(on)
    out: dict[str, set[tuple[int, int]]] = {k: set() for k in ("onset", "during", "follow", "silence", "vc", "cc")}
    for u in range(n):
        starts = any(on[w] == off[u] for w in range(n))
        across = any(on[w] < off[u] < off[w] for w in range(n))
        later = [on[w] for w in range(n) if on[w] > off[u]]
        for w in range(n):
            if u != w and on[w] == on[u]:
                out["onset"].add((u, w))
            if on[u] < on[w] < off[u]:
                out["during"].add((u, w))
            if on[w] == off[u]:
                out["follow"].add((u, w))
            if not starts and not across and later and on[w] == min(later):
                out["silence"].add((u, w))
            if bar[u] == bar[w] and off[u] <= on[w]:
                out["vc"].add((u, w))
            if on[u] == on[w] and u < w:
                out["cc"].add((u, w))
    return out


def _random_table(seed: int, n: int = 120) -> ScoreTable:
    """Random notes on a grid of twelfths (triplets and 16ths), with gaps, 2 staves x 2 voices."""
    rng = np.random.default_rng(seed)
    onset = np.sort(rng.integers(0, 40 * 12, size=n)) / 12.0
    duration = rng.choice([1, 2, 3, 4, 6, 12, 24], size=n) / 12.0
    pitch = rng.integers(36, 84, size=n)
    table, _ = table_from_arrays(onset, duration, pitch, ts_num=3, ts_den=4, split_at_barlines=False)
    table.staff = rng.integers(1, 3, size=n).astype(np.int16)
    table.voice = rng.integers(1, 3, size=n).astype(np.int16)
    return table


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_graph_equals_pairwise_reference(seed: int) -> None:
    t = _random_table(seed)
    graph = build_graph(t.onset, t.duration, t.pitch, t.bar, t.bar_start, t.bar_dur, t.ts_num, t.ts_den)
    on, off = quantize(t.onset).tolist(), quantize(t.onset + t.duration).tolist()
    ref = _pairwise(on, off, t.bar.tolist())
    for relation in ("onset", "during", "follow", "silence"):
        assert edge_set(graph[f"edges_{relation}"]) == ref[relation], relation
        assert edge_set(graph[f"edges_rev_{relation}"] if relation != "onset" else graph["edges_onset"]) == (
            {(w, u) for u, w in ref[relation]}
        )
    assert edge_set(graph["voice_cand"]) == ref["vc"]
    assert edge_set(graph["chord_cand"]) == ref["cc"]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_voice_truth_is_measurewise_next_onset_and_inside_candidates(seed: int) -> None:
    t = _random_table(seed)
    cand = voice_candidates(t.onset, t.duration, t.bar)
    y = voice_truth(t, cand)
    on, off = quantize(t.onset), quantize(t.onset + t.duration)
    # reference (piano_svsep's truth edges, per bar): all same-staff/voice notes at the first onset >= offset(u)
    truth = set()
    for u in range(t.n_notes):
        same = (t.bar == t.bar[u]) & (t.staff == t.staff[u]) & (t.voice == t.voice[u]) & (on >= off[u])
        if same.any():
            first = on[same].min()
            truth |= {(u, int(w)) for w in np.flatnonzero(same & (on == first))}
    assert truth, "the random piece should have voice edges"
    candidates = edge_set(cand)
    assert truth <= candidates
    assert edge_set(cand[:, y == 1]) == truth
    assert set(np.unique(y).tolist()) <= {0, 1}
    nxt = next_voice_onset(t)
    assert all(nxt[u] == on[w] for u, w in truth)


def test_unknown_voice_makes_its_bar_unknown() -> None:
    t = _random_table(0)
    t.voice[5] = -1
    cand = voice_candidates(t.onset, t.duration, t.bar)
    y = voice_truth(t, cand)
    in_bar = t.bar[cand[0]] == t.bar[5]
    assert (y[in_bar] == -1).all() and (y[~in_bar] >= 0).all()


def test_piece_from_arrays_splits_at_barlines_and_saves(tmp_path: Path) -> None:
    # 4/4: a note from beat 4 of bar 1 lasting 6 quarters crosses two barlines
    onset, duration, pitch = np.array([0.0, 3.0, 4.0]), np.array([3.0, 6.0, 1.0]), np.array([60, 64, 55])
    piece, source = piece_from_arrays(onset, duration, pitch)
    np.testing.assert_allclose(piece["onset"], [0.0, 3.0, 4.0, 4.0, 8.0])
    np.testing.assert_allclose(piece["duration"], [3.0, 1.0, 1.0, 4.0, 1.0])
    assert source.tolist() == [0, 1, 2, 1, 1]
    assert piece["tie_next"].tolist() == [False, True, False, True, False]
    assert piece["tie_prev"].tolist() == [False, False, False, True, True]
    assert piece["bar"].tolist() == [0, 0, 1, 1, 2]
    assert piece["bar_start"].tolist() == [0.0, 4.0, 8.0]
    for task in schema.NODE_TASKS:
        assert (piece[f"y_{task}"] == -1).all()
    assert (piece["y_voice"] == -1).all() and (piece["y_chord"] == -1).all()
    saved = schema.save_piece(tmp_path / "midi.npz", piece)
    loaded = schema.load_piece(saved)
    assert loaded["x"].shape == (5, schema.N_FEATURES)
    assert loaded["edges_follow"].shape[0] == 2


def test_regular_bars_with_pickup() -> None:
    bar_start, bar_dur, num, den = regular_bars(7.0, 3, 4, pickup=1.0)
    assert bar_start.tolist() == [0.0, 1.0, 4.0]
    assert bar_dur.tolist() == [1.0, 3.0, 3.0]
    assert num.tolist() == [3, 3, 3] and den.tolist() == [4, 4, 4]


def test_graph_of_a_table_is_deterministic() -> None:
    t = _random_table(3)
    a, b = piece_from_table(t), piece_from_table(t)
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_duration_classes_share_an_angle_across_octaves() -> None:
    from overseer.engraving.data.graph import duration_features

    f = duration_features(np.array([0.25, 0.5, 2.0, 1 / 3, 2 / 3, 1 / 6, 0.75, 1.5]))
    plain, triplet, dotted = f[:3, 1:], f[3:6, 1:], f[6:, 1:]
    np.testing.assert_allclose(plain, [[0.0, 1.0]] * 3, atol=1e-6)  # every binary value at angle 0
    np.testing.assert_allclose(triplet, triplet[[0, 0, 0]], atol=1e-6)  # triplets of any value: one angle
    np.testing.assert_allclose(dotted, dotted[[0, 0]], atol=1e-6)
    assert np.abs(triplet[0] - dotted[0]).max() > 0.5 and np.abs(triplet[0] - plain[0]).max() > 0.5
    assert f[:3, 0].tolist() == [-0.5, -0.25, 0.25]  # the "octave": log2(quarters) / 4
