"""Hand-written engraving pieces with full truth, and oracle / noisy predictions for them.

``truth_piece(notes, bar_arrays)`` builds a contract-valid piece (``overseer.engraving.schema``)
from a list of :class:`N` notes and bar arrays (as ``notation.bars`` returns them): candidates and
their truth follow the schema (voice candidates: same bar, offset(u) <= onset(w); truth: w is at
the first onset of u's (bar, staff, voice) at or after offset(u); chord candidates: same onset,
truth: same staff and voice). ``oracle(piece)`` turns the labels into predictions (one-hot
logits, p = truth), ``noisy(piece, rng)`` into random ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from overseer.engraving import schema
from overseer.engraving.notation import bars


@dataclass
class N:
    """One notated note: times in quarters, staff 1/2, score voice, labels by name."""

    onset: float
    duration: float
    pitch: int
    staff: int = 1
    voice: int = 1
    spelling: str = ""  # e.g. "C#"; "" = a plain spelling of the pitch
    note_type: str = "quarter"
    dots: int = 0
    tuplet: int = 0  # class: 0 none, 1 triplet, 2 quintuplet
    stem: int = 0
    key: int = 0  # fifths
    clef: str = ""  # "" = G on staff 1, F on staff 2
    octave_shift: int = 0
    tie_prev: bool = False
    tie_next: bool = False


_PLAIN = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


def _spelling_class(name: str, pitch: int) -> int:
    return schema.SPELLINGS.index(name or _PLAIN[pitch % 12])


def regular_bars(count: int, num: int = 4, den: int = 4) -> tuple[np.ndarray, ...]:
    """``count`` bars of ``num/den`` (through :func:`bars`, the one bar generator)."""
    return bars(count * 4.0 * num / den, num, den)


def truth_piece(
    notes: list[N], bar_arrays: tuple[np.ndarray, ...], graces: list[tuple[float, int, int, str]] = ()
) -> dict[str, np.ndarray]:
    """A contract-valid piece with full truth.

    ``bar_arrays``: (start, dur, num, den) as :func:`bars` returns them; ``graces``: (principal
    onset, pitch, staff, spelling).
    """
    notes = sorted(notes, key=lambda a: (a.onset, a.pitch))
    n = len(notes)
    onset = np.array([a.onset for a in notes], dtype=np.float64)
    duration = np.array([a.duration for a in notes], dtype=np.float64)
    offset = onset + duration
    pitch = np.array([a.pitch for a in notes], dtype=np.int16)
    staff = np.array([a.staff for a in notes], dtype=np.int16)
    voice = np.array([a.voice for a in notes], dtype=np.int16)
    bar_start, bar_dur, ts_num, ts_den = (np.asarray(a) for a in bar_arrays)
    bar_start = bar_start.astype(np.float64)
    bar = (np.searchsorted(bar_start, onset + 1e-9, side="right") - 1).astype(np.int32)

    cand_v, y_v = [], []
    for u in range(n):
        same = [w for w in range(n) if bar[w] == bar[u] and onset[w] >= offset[u] - 1e-9 and w != u]
        mine = [w for w in same if staff[w] == staff[u] and voice[w] == voice[u]]
        nxt = min((onset[w] for w in mine), default=None)
        for w in same:
            cand_v.append((u, w))
            y_v.append(int(w in mine and abs(onset[w] - nxt) < 1e-9))
    cand_c = [(u, w) for u in range(n) for w in range(u + 1, n) if abs(onset[u] - onset[w]) < 1e-9]
    y_c = [int(staff[u] == staff[w] and voice[u] == voice[w]) for u, w in cand_c]

    def pairs(p: list) -> np.ndarray:
        return np.array(p, dtype=np.int64).reshape(-1, 2).T.copy()

    labels = {
        "staff": staff - 1,
        "spelling": [_spelling_class(a.spelling, a.pitch) for a in notes],
        "key": [a.key + 7 for a in notes],
        "stem": [a.stem for a in notes],
        "octave_shift": [a.octave_shift for a in notes],
        "clef": [schema.NODE_TASKS["clef"].index(a.clef or ("G" if a.staff == 1 else "F")) for a in notes],
        "note_type": [schema.NOTE_TYPES.index(a.note_type) for a in notes],
        "dots": [a.dots for a in notes],
        "tuplet": [a.tuplet for a in notes],
    }
    piece = {
        "x": np.zeros((n, schema.N_FEATURES), dtype=np.float32),
        "onset": onset,
        "duration": duration,
        "pitch": pitch,
        "bar": bar,
        "tie_prev": np.array([a.tie_prev for a in notes], dtype=bool),
        "tie_next": np.array([a.tie_next for a in notes], dtype=bool),
        "voice": voice,
        "bar_start": bar_start,
        "bar_dur": bar_dur.astype(np.float64),
        "ts_num": ts_num.astype(np.int16),
        "ts_den": ts_den.astype(np.int16),
        "voice_cand": pairs(cand_v),
        "y_voice": np.array(y_v, dtype=np.int8),
        "chord_cand": pairs(cand_c),
        "y_chord": np.array(y_c, dtype=np.int8),
        "grace_onset": np.array([g[0] for g in graces], dtype=np.float64),
        "grace_pitch": np.array([g[1] for g in graces], dtype=np.int16),
        "grace_staff": np.array([g[2] for g in graces], dtype=np.int16),
        "grace_voice": np.full(len(graces), -1, dtype=np.int16),
        "grace_spelling": np.array([_spelling_class(g[3], g[1]) for g in graces], dtype=np.int16),
    }
    for r in schema.RELATIONS:
        piece[f"edges_{r}"] = np.zeros((2, 0), dtype=np.int64)
    for task in schema.NODE_TASKS:
        piece[f"y_{task}"] = np.asarray(labels[task], dtype=np.int16)
    assert set(schema.required_arrays()) <= set(piece)
    return piece


def oracle(piece: dict[str, np.ndarray], scale: float = 10.0) -> dict[str, np.ndarray]:
    """Predictions equal to the truth: one-hot logits, edge probabilities = labels."""
    pred = {}
    for task, classes in schema.NODE_TASKS.items():
        y = piece[f"y_{task}"]
        logits = np.zeros((y.size, len(classes)), dtype=np.float32)
        logits[np.arange(y.size), np.maximum(y, 0)] = scale
        pred[f"logits_{task}"] = logits
    pred["p_voice"] = np.clip(piece["y_voice"], 0, 1).astype(np.float32)
    pred["p_chord"] = np.clip(piece["y_chord"], 0, 1).astype(np.float32)
    return pred


def noisy(piece: dict[str, np.ndarray], rng: np.random.Generator, scale: float = 3.0) -> dict[str, np.ndarray]:
    """Random predictions of the right shapes (every task, both edge sets)."""
    n = piece["onset"].size
    pred = {
        f"logits_{task}": rng.normal(0, scale, (n, len(classes))).astype(np.float32)
        for task, classes in schema.NODE_TASKS.items()
    }
    pred["p_voice"] = rng.random(piece["voice_cand"].shape[1]).astype(np.float32)
    pred["p_chord"] = rng.random(piece["chord_cand"].shape[1]).astype(np.float32)
    return pred


def two_voice_bar() -> dict[str, np.ndarray]:
    """Bar 1: upper staff voice 1 melody, voice 2 a half note and a chord; lower staff a chord and rests.

    Bar 2: a triplet, a tie from bar 1, a key change to D major, a dotted rhythm.
    """
    notes = [
        # bar 1, staff 1, voice 1: C5 q, D5 q, chord E5+G5 h (G5 tied into bar 2)
        N(0, 1, 72, stem=0),
        N(1, 1, 74, stem=0),
        N(2, 2, 76, note_type="half", stem=0),
        N(2, 2, 79, note_type="half", stem=0, tie_next=True),
        # staff 1 voice 2: rest h, A4 h
        N(2, 2, 69, voice=2, note_type="half", stem=1),
        # staff 2 voice 5: chord C3+G3 whole
        N(0, 4, 48, staff=2, voice=5, note_type="whole", stem=2),
        N(0, 4, 55, staff=2, voice=5, note_type="whole", stem=2),
        # bar 2 (D major), staff 1: G5 q (tied), triplet C#5 D5 E5, F#5 dotted quarter, G5 eighth
        N(4, 1, 79, key=2, tie_prev=True),
        N(5, 1 / 3, 73, key=2, note_type="eighth", tuplet=1, spelling="C#"),
        N(5 + 1 / 3, 1 / 3, 74, key=2, note_type="eighth", tuplet=1),
        N(5 + 2 / 3, 1 / 3, 76, key=2, note_type="eighth", tuplet=1),
        N(6, 1.5, 78, key=2, dots=1, spelling="F#"),
        N(7.5, 0.5, 79, key=2, note_type="eighth"),
        # staff 2: D3 half on beat 3 only (rests before), C natural to test accidentals
        N(6, 1, 50, staff=2, voice=5, key=2),
        N(7, 1, 48, staff=2, voice=5, key=2, spelling="C"),
    ]
    return truth_piece(notes, regular_bars(2), graces=[(6.0, 76, 1, "E")])


def rich_piece() -> dict[str, np.ndarray]:
    """A 3/4 piece with a pickup, then 6/8: B#/Cb spellings, an 8va bracket, a G-clef passage on the
    lower staff, a key change to E-flat, a quintuplet, a double-dotted note, two voices in the lower
    staff and a grace note inside the bracket.
    """
    bar_arrays = bars(16.0, 3, 4, pickup=1.0, changes=[(13.0, 6, 8)])  # 0 | 1 4 7 10 | 13 (6/8)
    f = -3  # E-flat major from bar 3
    notes = [
        N(0, 1, 67),  # pickup G4
        # bar 1: B#4 half, Cb5 quarter | lower: C3 E3 G3
        N(1, 2, 72, spelling="B#", note_type="half"),
        N(3, 1, 71, spelling="Cb"),
        N(1, 1, 48, staff=2, voice=5, stem=1),
        N(2, 1, 52, staff=2, voice=5, stem=1),
        N(3, 1, 55, staff=2, voice=5, stem=1),
        # bar 2: E6 F6 G6 under 8va | lower: C3 dotted half
        N(4, 1, 88, octave_shift=1, stem=1),
        N(5, 1, 89, octave_shift=1, stem=1),
        N(6, 1, 91, octave_shift=1, stem=1),
        N(4, 3, 48, staff=2, voice=5, note_type="half", dots=1, stem=1),
        # bar 3 (E-flat): quintuplet 16ths Eb5 F5 G5 Ab5 Bb5, then C6 D6 | lower (G clef): Eb4 F4 G4
        *[
            N(7 + k / 5, 1 / 5, p, key=f, note_type="16th", tuplet=2, spelling=s)
            for k, (p, s) in enumerate([(75, "Eb"), (77, "F"), (79, "G"), (80, "Ab"), (82, "Bb")])
        ],
        N(8, 1, 84, key=f),
        N(9, 1, 86, key=f),
        N(7, 1, 63, staff=2, voice=5, key=f, clef="G", spelling="Eb"),
        N(8, 1, 65, staff=2, voice=5, key=f, clef="G"),
        N(9, 1, 67, staff=2, voice=5, key=f, clef="G"),
        # bar 4: C5 double-dotted quarter, D5 16th, Eb5 quarter | lower (G clef): Ab4 Bb4 C5
        N(10, 1.75, 72, key=f, dots=2),
        N(11.75, 0.25, 74, key=f, note_type="16th"),
        N(12, 1, 75, key=f, spelling="Eb"),
        N(10, 1, 68, staff=2, voice=5, key=f, clef="G", spelling="Ab"),
        N(11, 1, 70, staff=2, voice=5, key=f, clef="G", spelling="Bb"),
        N(12, 1, 72, staff=2, voice=5, key=f, clef="G"),
        # bar 5 (6/8): G5 dotted quarter, three eighths F5 Eb5 D5 | lower (F clef): C3 E-flat3 G3 eighths,
        # C3 dotted quarter (voice 5) over a C2 dotted half (voice 6)
        N(13, 1.5, 79, key=f, dots=1),
        N(14.5, 0.5, 77, key=f, note_type="eighth"),
        N(15, 0.5, 75, key=f, note_type="eighth", spelling="Eb"),
        N(15.5, 0.5, 74, key=f, note_type="eighth"),
        N(13, 0.5, 48, staff=2, voice=5, key=f, note_type="eighth", stem=0),
        N(13.5, 0.5, 51, staff=2, voice=5, key=f, note_type="eighth", stem=0, spelling="Eb"),
        N(14, 0.5, 55, staff=2, voice=5, key=f, note_type="eighth", stem=0),
        N(14.5, 1.5, 48, staff=2, voice=5, key=f, dots=1, stem=0),
        N(13, 3, 36, staff=2, voice=6, key=f, note_type="half", dots=1, stem=1),
    ]
    return truth_piece(notes, bar_arrays, graces=[(5.0, 86, 1, "D")])
