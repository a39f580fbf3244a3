"""Transposition along the line of fifths: the training augmentation for spelling and key (issue 13).

A transposition by ``k`` fifths moves every spelled pitch ``k`` places along the line of fifths
(… Fbb −15 … F −1, C 0, G 1, D 2 … B 5, F# 6 … Bx 19) and the key signature from ``f`` to
``f + k`` fifths: C major → G major is ``k = 1`` (F becomes C, B becomes F#, E♭ becomes B♭),
C major → C# major is ``k = 7`` (F becomes F#: an augmented unison). The sounding pitch moves by
the interval of ``k`` fifths taken within a tritone (:func:`semitones`: a fifth up is written as
a fourth down, −5 semitones; seven fifths are +1), so notes move by at most half an octave.

A shift is *representable* for a set of notes when every known spelling stays within the 35
classes of ``schema.SPELLINGS`` (no triple accidentals: positions −15..19), every known key within
``schema.KEY_FIFTHS`` (−7..+7) and every MIDI pitch within 0..127 (:func:`allowed_shifts`); a
transposition that is not raises ``ValueError``, so an unrepresentable label is never produced.

What moves: the pitch-class one-hot and the octave feature (``x[:, :12]``, ``x[:, 12]``), ``pitch``,
``y_spelling``, ``y_key`` and the grace notes' pitch and spelling. Everything else — times, edges,
the candidates' pair features (pitch *differences*) and every other label — is unchanged; labels
that depend on register (stem, clef, staff, octave shift) are kept as they are, which a shift of at
most a tritone leaves mostly right. Unknown labels (-1) stay unknown.

:class:`Transposer` is the on-the-fly augmentation of training windows (``train_gnn.transpose``):
seeded, one draw per window per epoch.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch_geometric.data import HeteroData

from overseer.engraving import schema

UNKNOWN = schema.UNKNOWN
NOTE = "note"  # dataset.NOTE (not imported: dataset imports nothing from here either way)
PC = schema.PITCH_CLASS_FEATURES
OCTAVE = schema.FEATURES.index("octave")
MAX_SHIFT = schema.KEY_FIFTHS[-1] - schema.KEY_FIFTHS[0]  # 14: beyond it no key is representable

# line-of-fifths position of the natural steps (C = 0) and of every spelling class
STEP_FIFTHS = {"F": -1, "C": 0, "G": 1, "D": 2, "A": 3, "E": 4, "B": 5}
SPELLING_FIFTHS = np.array(
    [STEP_FIFTHS[s] + 7 * a for s, a in (schema.spelling_of(i) for i in range(len(schema.SPELLINGS)))],
    dtype=np.int64,
)
FIFTHS_MIN, FIFTHS_MAX = int(SPELLING_FIFTHS.min()), int(SPELLING_FIFTHS.max())  # -15 (Fbb), 19 (Bx)
_SPELLING_AT = np.full(FIFTHS_MAX - FIFTHS_MIN + 1, UNKNOWN, dtype=np.int64)
_SPELLING_AT[SPELLING_FIFTHS - FIFTHS_MIN] = np.arange(len(schema.SPELLINGS))
KEY_MIN, KEY_MAX = schema.KEY_FIFTHS[0], schema.KEY_FIFTHS[-1]
_KEY_OFFSET = -KEY_MIN  # key class = fifths + 7


def semitones(k: int) -> int:
    """The pitch shift of ``k`` fifths within a tritone: ≡ 7k (mod 12), in −6..6, ``semitones(-k) == -semitones(k)``."""
    k = int(k)
    s = (7 * abs(k) + 5) % 12 - 5  # -5..6
    return s if k >= 0 else -s


def _known(values: np.ndarray | None) -> np.ndarray:
    v = np.asarray([] if values is None else values, dtype=np.int64).reshape(-1)
    return v[v >= 0]


def allowed_shifts(
    spelling: np.ndarray | None = None,
    key: np.ndarray | None = None,
    pitch: np.ndarray | None = None,
    max_fifths: int = MAX_SHIFT,
) -> np.ndarray:
    """Every ``k`` in −max_fifths..max_fifths (0 included) that keeps the known spelling classes,
    key classes and MIDI pitches representable (module docstring), ascending."""
    ks = np.arange(-int(max_fifths), int(max_fifths) + 1)
    ok = np.ones(ks.size, dtype=bool)
    if (pos := SPELLING_FIFTHS[_known(spelling)]).size:
        ok &= (ks >= FIFTHS_MIN - pos.min()) & (ks <= FIFTHS_MAX - pos.max())
    if (fifths := _known(key) - _KEY_OFFSET).size:
        ok &= (ks >= KEY_MIN - fifths.min()) & (ks <= KEY_MAX - fifths.max())
    if (p := np.asarray([] if pitch is None else pitch, dtype=np.int64).reshape(-1)).size:
        shift = np.array([semitones(k) for k in ks], dtype=np.int64)
        ok &= (p.min() + shift >= 0) & (p.max() + shift <= 127)
    return ks[ok]


def transpose_spelling(spelling: np.ndarray, k: int) -> np.ndarray:
    """Spelling classes moved ``k`` fifths (unknown stays -1); ValueError when one leaves the 35 classes."""
    y = np.asarray(spelling)
    out = np.full(y.shape, UNKNOWN, dtype=np.int64)
    known = y >= 0
    pos = SPELLING_FIFTHS[y[known].astype(np.int64)] + int(k)
    if pos.size and (pos.min() < FIFTHS_MIN or pos.max() > FIFTHS_MAX):
        raise ValueError(f"transposing by {k} fifths leaves the spelling classes (a triple accidental)")
    out[known] = _SPELLING_AT[pos - FIFTHS_MIN]
    return out.astype(y.dtype, copy=False)


def transpose_key(key: np.ndarray, k: int) -> np.ndarray:
    """Key classes moved ``k`` fifths (unknown stays -1); ValueError when one leaves −7..+7."""
    y = np.asarray(key)
    out = np.where(y >= 0, y.astype(np.int64) + int(k), UNKNOWN)
    known = out[y >= 0]
    if known.size and (known.min() < 0 or known.max() >= len(schema.KEY_FIFTHS)):
        raise ValueError(f"transposing by {k} fifths leaves the key signatures -7..+7")
    return out.astype(y.dtype, copy=False)


def transpose_pitch(pitch: np.ndarray, k: int) -> np.ndarray:
    """MIDI pitches moved by :func:`semitones` (k); ValueError when one leaves 0..127."""
    p = np.asarray(pitch)
    out = p.astype(np.int64) + semitones(k)
    if out.size and (out.min() < 0 or out.max() > 127):
        raise ValueError(f"transposing by {k} fifths leaves the MIDI range 0..127")
    return out.astype(p.dtype, copy=False)


def pitch_from_features(x: np.ndarray) -> np.ndarray:
    """MIDI pitch of each node from its features (pitch-class one-hot and octave, ``data.graph.node_features``)."""
    x = np.asarray(x)
    octave = np.rint(x[:, OCTAVE].astype(np.float64) * 9.0).astype(np.int64) + 1
    return 12 * octave + np.argmax(x[:, :PC], axis=1)


def transpose_features(x: np.ndarray, k: int) -> np.ndarray:
    """Node features of the transposed notes: pitch class and octave of the moved pitch, the rest as is."""
    x = np.asarray(x)
    pitch = transpose_pitch(pitch_from_features(x), k)
    out = x.copy()
    out[:, :PC] = 0
    out[np.arange(x.shape[0]), pitch % 12] = 1
    out[:, OCTAVE] = (pitch // 12 - 1) / 9.0
    return out


def transpose_piece(piece: Mapping[str, np.ndarray], k: int) -> dict[str, np.ndarray]:
    """A prepared piece (schema arrays) transposed by ``k`` fifths: a new dict, the input untouched."""
    out = dict(piece)
    out["x"] = transpose_features(piece["x"], k)
    out["pitch"] = transpose_pitch(piece["pitch"], k)
    out["y_spelling"] = transpose_spelling(piece["y_spelling"], k)
    out["y_key"] = transpose_key(piece["y_key"], k)
    if "grace_pitch" in piece:
        out["grace_pitch"] = transpose_pitch(piece["grace_pitch"], k)
    if "grace_spelling" in piece:
        out["grace_spelling"] = transpose_spelling(piece["grace_spelling"], k)
    return out


def data_shifts(data: HeteroData, max_fifths: int) -> np.ndarray:
    """:func:`allowed_shifts` of a graph or window (its spelling and key labels and its pitches)."""
    store = data[NOTE]
    return allowed_shifts(
        store.y_spelling.cpu().numpy(),
        store.y_key.cpu().numpy(),
        pitch_from_features(store.x.cpu().numpy()),
        max_fifths,
    )


def transpose_data(data: HeteroData, k: int) -> HeteroData:
    """A graph or window (``dataset.piece_to_data``) transposed by ``k`` fifths: features, spelling
    and key labels. A shallow copy: the input (and the tensors a window shares with its piece) is
    untouched, the unchanged tensors are shared."""
    out = copy.copy(data)
    if int(k) == 0:
        return out
    store = data[NOTE]
    x = store.x
    out[NOTE].x = torch.from_numpy(transpose_features(x.cpu().numpy(), k)).to(x.device)
    for task, move in (("spelling", transpose_spelling), ("key", transpose_key)):
        y = store[f"y_{task}"]
        out[NOTE][f"y_{task}"] = torch.from_numpy(move(y.cpu().numpy(), k)).to(y.device)
    return out


@dataclass
class Transposer:
    """The training augmentation: with probability ``probability`` a window is transposed by a shift
    drawn uniformly from its representable non-zero shifts within ±``max_fifths`` (none: as it is).

    Seeded by ``seed`` and stateful (one generator for the run): a window's shift depends on the
    seed and on the order of the calls, so a seeded training run is reproducible.
    """

    max_fifths: int = 6
    probability: float = 0.5
    seed: int | Sequence[int] = 0
    rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 <= int(self.max_fifths) <= MAX_SHIFT:
            raise ValueError(f"max_fifths must be in 0..{MAX_SHIFT}, got {self.max_fifths}")
        if not 0.0 <= float(self.probability) <= 1.0:
            raise ValueError(f"probability must be in [0, 1], got {self.probability}")
        self.rng = np.random.default_rng(self.seed)

    def draw(self, data: HeteroData) -> int:
        """The shift for one window (0: leave it as it is)."""
        if self.rng.random() >= float(self.probability):
            return 0
        shifts = data_shifts(data, int(self.max_fifths))
        shifts = shifts[shifts != 0]
        return int(self.rng.choice(shifts)) if shifts.size else 0

    def __call__(self, data: HeteroData) -> HeteroData:
        k = self.draw(data)
        return transpose_data(data, k) if k else data
