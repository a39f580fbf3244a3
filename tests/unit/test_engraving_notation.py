"""The engraving vocabulary (notation): tables derived from the schema's class names, spelling, symbols, times, bars."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from overseer.engraving import notation as nt
from overseer.engraving import schema

# --- tables derived from schema.NODE_TASKS -----------------------------------------------------------------


def test_clef_tables_follow_the_class_names():
    clefs = schema.NODE_TASKS["clef"]
    assert list(nt.CLEF_CLASS) == list(clefs) and [nt.CLEF_CLASS[c] for c in clefs] == list(range(len(clefs)))
    assert list(nt.CLEF_LINES) == list(clefs) and nt.CLEF_LINES == {"G": 2, "F": 4, "C": 3}
    assert [clefs[nt.DEFAULT_CLEF[s]] for s in (1, 2)] == ["G", "F"]


def test_stem_tables_follow_the_class_names():
    stems = schema.NODE_TASKS["stem"]
    assert len(nt.STEM_DIRECTIONS) == len(stems) and stems[nt.STEM_NONE] == "none"
    assert nt.STEM_DIRECTIONS[nt.STEM_NONE] is None
    assert {d: stems[i] for d, i in nt.STEM_CLASS.items()} == {"up": "up", "down": "down"}


def test_octave_shift_tables_follow_the_class_names():
    names = schema.NODE_TASKS["octave_shift"]
    assert sorted(nt.OTTAVA) == [i for i, name in enumerate(names) if name != "none"]
    assert {names[i]: m for i, m in nt.OTTAVA.items()} == {
        "8va": ("down", 8, "above"),  # MusicXML: an 8va shifts the written notes down
        "8vb": ("up", 8, "below"),
        "15ma": ("down", 15, "above"),
    }
    assert {names[c]: key for key, c in nt.OCTAVE_SHIFT_CLASS.items()} == {
        "8va": ("down", 8),
        "8vb": ("up", 8),
        "15ma": ("down", 15),
    }


def test_symbol_tables_follow_the_class_names():
    assert len(nt.BASE_VALUE) == len(schema.NOTE_TYPES)
    assert nt.BASE_VALUE[schema.NOTE_TYPES.index("quarter")] == 1
    assert nt.BASE_VALUE[schema.NOTE_TYPES.index("128th")] == Fraction(1, 32)
    assert dict(zip(schema.NODE_TASKS["tuplet"], nt.TUPLET_RATIO, strict=True)) == {
        "none": (1, 1),
        "3": (3, 2),
        "5": (5, 4),
    }
    t, *_, value = nt.symbol_table()
    assert t.size == len(schema.NOTE_TYPES) * len(schema.NODE_TASKS["dots"]) * len(schema.NODE_TASKS["tuplet"])
    assert value.min() > 0


# --- spelling ----------------------------------------------------------------------------------------------


def test_plain_spellings():
    sharps = [schema.SPELLINGS[nt.default_spelling(p, 0)] for p in range(60, 72)]
    flats = [schema.SPELLINGS[nt.default_spelling(p, -2)] for p in range(60, 72)]
    assert sharps == ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
    assert flats == ["C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B"]


def test_pitch_consistent_spellings_and_octaves():
    ok = nt.pitch_consistent_spellings(np.array([60, 61]))
    assert ok.shape == (2, len(schema.SPELLINGS))
    assert {schema.SPELLINGS[s] for s in np.flatnonzero(ok[0])} == {"C", "B#", "Dbb"}
    assert {schema.SPELLINGS[s] for s in np.flatnonzero(ok[1])} == {"C#", "Db", "Bx"}
    assert nt.spelled_pitch(schema.SPELLINGS.index("Cb"), 59) == ("C", -1, 4)
    assert nt.spelled_pitch(schema.SPELLINGS.index("B#"), 60) == ("B", 1, 3)
    with pytest.raises(ValueError, match="does not fit"):
        nt.spelled_pitch(schema.SPELLINGS.index("D"), 60)


def test_key_signature_alterations():
    assert nt.FLAT_ORDER == "BEADGCF"
    assert [nt.key_alter(s, 2) for s in "FCG"] == [1, 1, 0]
    assert [nt.key_alter(s, -3) for s in "BEAD"] == [-1, -1, -1, 0]
    assert nt.key_alter("F", 0) == 0


# --- symbols and times -------------------------------------------------------------------------------------


def test_symbol_values():
    q = schema.NOTE_TYPES.index("quarter")
    assert nt.symbol_value(q, 1) == Fraction(3, 2) and nt.symbol_value(q, 2) == Fraction(7, 4)
    assert nt.symbol_value(schema.NOTE_TYPES.index("eighth"), 0, 3, 2) == Fraction(1, 3)
    assert nt.is_single_symbol(np.array([1.5, 1 / 3, 1.25])).tolist() == [True, True, True]
    assert nt.is_single_symbol(np.array([1.5, 1 / 3, 1.25]), simple=True).tolist() == [True, True, False]
    assert nt.generic_symbol(Fraction(1, 7)) == (schema.NOTE_TYPES.index("16th"), 0, 7, 4)


def test_snapping_restores_rounded_triplets():
    assert nt.snap_times(np.array([43 / 256, 0.3])).tolist() == [1 / 6, 0.3]


def _bars_of_triplets(drift: float) -> dict[str, np.ndarray]:
    """Two 2/4 bars of triplet eighths, every time shifted by ``drift`` quarters; one grace note."""
    onset = np.concatenate([np.arange(6) / 3, 2 + np.arange(6) / 3]) + drift
    return {
        "onset": onset, "duration": np.full(12, 1 / 3), "bar": np.repeat([0, 1], 6),
        "bar_start": np.array([0.0, 2.0]) + drift, "bar_dur": np.array([2.0, 2.0]),
        "grace_onset": np.array([2 + 2 / 3 + drift]),
    }  # fmt: skip


def test_times_are_snapped_within_their_bar_so_a_constant_drift_keeps_triplets_writable():
    on_grid = nt.notated_piece(_bars_of_triplets(0.0))
    drifted = nt.notated_piece(_bars_of_triplets(-1 / 160))  # off the grid by more than SNAP_TOL
    # absolute snapping alone would give 1/3 +- 1/480 here, which no symbol writes
    assert np.allclose(drifted["duration"], 1 / 3, rtol=0, atol=1e-12)
    assert np.allclose(on_grid["duration"], 1 / 3, rtol=0, atol=1e-12)
    assert np.allclose(
        drifted["onset"] - drifted["bar_start"][drifted["bar"]],
        on_grid["onset"] - on_grid["bar_start"][on_grid["bar"]],
        rtol=0,
        atol=1e-12,
    )
    assert drifted["grace_onset"][0] - drifted["bar_start"][1] == pytest.approx(2 / 3, abs=1e-12)
    on_grid_before = nt.snap_times(_bars_of_triplets(0.0)["onset"])  # absolute snapping, as before
    assert np.allclose(on_grid["onset"], on_grid_before, rtol=0, atol=1e-12)


def test_pickup_beats_count_from_the_end_of_the_bar():
    starts, durs, nums, dens = nt.bars(4.0, 3, 4, pickup=1.0)
    grid = {"bar_start": starts, "bar_dur": durs, "ts_num": nums, "ts_den": dens}
    assert nt.bar_grid(grid, 0) == (0, 1, -2, 1)
    assert nt.bar_grid(grid, 1) == (1, 4, 1, 1)


def test_rests_respect_beats():
    q, origin = Fraction(1), Fraction(0)
    span = nt.notate_span(Fraction(1, 2), Fraction(2), origin, q)
    assert [(float(t), float(v), schema.NOTE_TYPES[k]) for t, v, k, *_ in span] == [
        (0.5, 0.5, "eighth"),
        (1.0, 1.0, "quarter"),
    ]
    # a gap to the end of a beat is written shortest first: 16th, eighth
    span = nt.notate_span(Fraction(1, 4), Fraction(1), origin, q)
    assert [float(v) for _, v, *_ in span] == [0.25, 0.5]
    # the rest of a triplet beat is a triplet quarter
    ((_, value, k, dots, actual, normal),) = nt.notate_span(Fraction(1, 3), Fraction(1), origin, q)
    assert (value, schema.NOTE_TYPES[k], dots, actual, normal) == (Fraction(2, 3), "quarter", 0, 3, 2)
    # a whole 6/8 bar (dotted-quarter beats) is one dotted half, never a double dot
    ((_, value, k, dots, *_),) = nt.notate_span(Fraction(0), Fraction(3), origin, Fraction(3, 2))
    assert (schema.NOTE_TYPES[k], dots) == ("half", 1)
    assert all(d <= 1 for *_, d, _, _ in nt.notate_span(Fraction(0), Fraction(7, 4), origin, Fraction(2)))


# --- bars -----------------------------------------------------------------------------------------------


def _rows(bar_arrays):
    return [tuple(x.item() for x in row) for row in zip(*bar_arrays, strict=True)]


def test_bars_of_one_signature():
    assert _rows(nt.bars(8.0)) == [(0.0, 4.0, 4, 4), (4.0, 4.0, 4, 4)]
    assert _rows(nt.bars(8.5)) == [(0.0, 4.0, 4, 4), (4.0, 4.0, 4, 4), (8.0, 4.0, 4, 4)]
    assert _rows(nt.bars(0.0)) == [(0.0, 4.0, 4, 4)]  # at least one bar
    starts, durs, nums, dens = nt.bars(3.0, 6, 8)
    assert (starts.dtype, durs.dtype, nums.dtype, dens.dtype) == (np.float64, np.float64, np.int16, np.int16)


def test_bars_with_a_pickup():
    assert _rows(nt.bars(7.0, 3, 4, pickup=1.0)) == [(0.0, 1.0, 3, 4), (1.0, 3.0, 3, 4), (4.0, 3.0, 3, 4)]
    assert _rows(nt.bars(0.5, 3, 4, pickup=1.0)) == [(0.0, 1.0, 3, 4)]


def test_bars_follow_signature_changes():
    # a change inside a bar cuts that bar short; one at 0 replaces the default
    starts, durs, nums, dens = nt.bars(10.0, changes=[(0.0, 3, 4), (4.0, 2, 4)])
    assert starts.tolist() == [0.0, 3.0, 4.0, 6.0, 8.0] and durs.tolist() == [3.0, 1.0, 2.0, 2.0, 2.0]
    assert nums.tolist() == [3, 3, 2, 2, 2] and dens.tolist() == [4, 4, 4, 4, 4]


def test_bars_with_a_pickup_and_a_signature_change():
    rows = _rows(nt.bars(16.0, 3, 4, pickup=1.0, changes=[(13.0, 6, 8)]))
    assert rows == [
        (0.0, 1.0, 3, 4),
        (1.0, 3.0, 3, 4),
        (4.0, 3.0, 3, 4),
        (7.0, 3.0, 3, 4),
        (10.0, 3.0, 3, 4),
        (13.0, 3.0, 6, 8),
    ]
