"""Contract-valid random engraving pieces (``overseer.engraving.schema``) for tests and benchmarks.

``fake_piece(n, seed)`` writes a two-staff piano texture: a monophonic melody (voice 1, with rests, upper
staff, stems up, G clef) over block chords of 1–3 notes (voice 2, lower staff, stems down,
F clef) in 4/4 bars; no note crosses a barline. Every array of ``schema.required_arrays()`` is
there with the documented dtype and shape, the input edges follow the relation definitions of the
paper's input graph (§2.1, after Foscarin et al.), and the labels are a deterministic function of
the texture (so a model can learn them); ``unknown`` of the labels are set to -1 at random.
"""

from __future__ import annotations

import numpy as np

from overseer.engraving import schema
from overseer.engraving.data.graph import duration_features

BAR = 4.0
_MELODY_DURS = (0.5, 1.0, 1.0, 2.0)
_CHORD_DURS = (1.0, 2.0)
# a sharp spelling per pitch class: C C# D D# E F F# G G# A A# B
_SPELL = [("C", 0), ("C", 1), ("D", 0), ("D", 1), ("E", 0), ("F", 0), ("F", 1), ("G", 0), ("G", 1), ("A", 0)]
_SPELL += [("A", 1), ("B", 0)]
_NOTE_TYPE = {4.0: 1, 2.0: 2, 1.0: 3, 0.5: 4}


def _texture(n: int, rng: np.random.Generator) -> list[tuple[float, float, int, int]]:
    """(onset, duration, pitch, voice) until at least ``n`` notes."""
    notes: list[tuple[float, float, int, int]] = []
    bar = 0
    while len(notes) < n:
        start = bar * BAR
        t = 0.0
        while t < BAR:  # melody
            d = float(rng.choice([c for c in _MELODY_DURS if c <= BAR - t]))
            if rng.random() > 0.15:  # else a rest
                notes.append((start + t, d, int(rng.integers(60, 84)), 1))
            t += d
        t = 0.0
        while t < BAR:  # chords
            d = float(rng.choice([c for c in _CHORD_DURS if c <= BAR - t]))
            root = int(rng.integers(40, 56))
            for k in range(int(rng.integers(1, 4))):
                notes.append((start + t, d, root + (0, 4, 7)[k], 2))
            t += d
        bar += 1
    return notes


def _pairs(src: list[int], dst: list[int]) -> np.ndarray:
    return np.array([src, dst], dtype=np.int64).reshape(2, -1)


def fake_piece(n: int = 50, seed: int = 0, unknown: float = 0.05) -> dict[str, np.ndarray]:
    """A random contract-valid piece of exactly ``n`` notes (nodes sorted by onset, then pitch)."""
    rng = np.random.default_rng(seed)
    notes = sorted(_texture(n, rng), key=lambda a: (a[0], a[2]))[:n]
    onset = np.array([a[0] for a in notes], dtype=np.float64)
    duration = np.array([a[1] for a in notes], dtype=np.float64)
    pitch = np.array([a[2] for a in notes], dtype=np.int16)
    voice = np.array([a[3] for a in notes], dtype=np.int16)
    offset = onset + duration
    bar = (onset // BAR).astype(np.int32)
    n_bars = int(bar.max()) + 1 if n else 0
    bar_start = np.arange(n_bars, dtype=np.float64) * BAR
    bar_dur = np.full(n_bars, BAR)

    x = np.zeros((n, schema.N_FEATURES), dtype=np.float32)
    x[np.arange(n), pitch % 12] = 1.0
    x[:, 12] = (pitch // 12 - 1) / 9.0
    x[:, 13] = np.tanh(duration / BAR)
    x[:, 14] = (onset - bar_start[bar]) / BAR
    x[:, 15] = (onset == bar_start[bar]).astype(np.float32)
    x[:, 16:19] = duration_features(duration)

    rel: dict[str, tuple[list[int], list[int]]] = {r: ([], []) for r in schema.BASE_RELATIONS}
    starts = np.unique(onset)
    for u in range(n):
        same = np.flatnonzero(onset == onset[u])
        for w in same[same != u]:
            rel["onset"][0].append(u), rel["onset"][1].append(int(w))
        for w in np.flatnonzero((onset > onset[u]) & (onset < offset[u])):
            rel["during"][0].append(u), rel["during"][1].append(int(w))
        follow = np.flatnonzero(onset == offset[u])
        for w in follow:
            rel["follow"][0].append(u), rel["follow"][1].append(int(w))
        later = starts[starts > offset[u]]
        if not follow.size and later.size:  # nothing starts where u ends: link to the next onset
            for w in np.flatnonzero(onset == later[0]):
                rel["silence"][0].append(u), rel["silence"][1].append(int(w))
    edges = {f"edges_{r}": _pairs(*rel[r]) for r in schema.BASE_RELATIONS}
    for r in ("during", "follow", "silence"):
        edges[f"edges_rev_{r}"] = edges[f"edges_{r}"][::-1].copy()

    # the next onset of each note's voice (inf at the end): w follows u iff same voice, onset(w) = next
    next_onset = np.full(n, np.inf)
    for u in range(n):
        later_in_voice = onset[(voice == voice[u]) & (onset > onset[u])]
        if later_in_voice.size:
            next_onset[u] = later_in_voice.min()
    vu, vw, vy, cu, cw, cy = [], [], [], [], [], []
    for b in range(n_bars):
        idx = np.flatnonzero(bar == b)
        for u in idx:
            for w in idx:
                if u != w and offset[u] <= onset[w]:
                    follows = voice[u] == voice[w] and onset[w] == next_onset[u]
                    vu.append(u), vw.append(w), vy.append(int(follows))
                if u < w and onset[u] == onset[w]:
                    cu.append(u), cw.append(w), cy.append(int(voice[u] == voice[w]))

    def masked(y: np.ndarray) -> np.ndarray:
        y = y.copy()
        y[rng.random(y.shape) < unknown] = schema.UNKNOWN
        return y

    staff = (voice == 2).astype(np.int16)
    spelling = np.array([schema.spelling_index(*_SPELL[p % 12]) for p in pitch], dtype=np.int16)
    labels = {
        "staff": staff,
        "spelling": spelling,
        "key": np.full(n, 7 + int(rng.integers(-2, 3)), dtype=np.int16),
        "stem": staff.copy(),
        "octave_shift": np.where(pitch >= 82, 1, 0).astype(np.int16),
        "clef": staff.copy(),
        "note_type": np.array([_NOTE_TYPE[d] for d in duration], dtype=np.int16),
        "dots": np.zeros(n, dtype=np.int16),
        "tuplet": np.zeros(n, dtype=np.int16),
    }
    piece: dict[str, np.ndarray] = {
        "x": x,
        "onset": onset,
        "duration": duration,
        "pitch": pitch,
        "bar": bar,
        "tie_prev": np.zeros(n, dtype=bool),
        "tie_next": np.zeros(n, dtype=bool),
        "voice": voice,
        "bar_start": bar_start,
        "bar_dur": bar_dur,
        "ts_num": np.full(n_bars, 4, dtype=np.int16),
        "ts_den": np.full(n_bars, 4, dtype=np.int16),
        "grace_onset": np.zeros(0, dtype=np.float64),
        **{name: np.zeros(0, dtype=np.int16) for name in schema.GRACE_ARRAYS[1:]},
        "voice_cand": _pairs(vu, vw),
        "y_voice": masked(np.array(vy, dtype=np.int8)),
        "chord_cand": _pairs(cu, cw),
        "y_chord": masked(np.array(cy, dtype=np.int8)),
        **edges,
        **{f"y_{t}": masked(y) for t, y in labels.items()},
    }
    return piece
