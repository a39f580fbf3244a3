"""The engraving data contract: one prepared score graph per piece, stored as a numeric ``.npz``.

Every module of the engraving family (ingest, validation, training, evaluation, post-processing,
export) reads and writes pieces through this module, so the layout below is the single source
of truth. Arrays only — no strings per note (DESIGN.md: partitura's note arrays carry two
256-character string fields, ~2 kB per note; the cache keeps numeric fields only).

Nodes are the notated, non-grace notes of the piece, sorted by (onset, pitch). One node per
notated note: a note tied across a barline is two nodes, as in the paper (§4.1: "one symbol per
input duration"); ``tie_next``/``tie_prev`` carry the ties so that export writes them back and
``overseer engrave`` splits un-notated input (MIDI) at barlines and ties the parts.
Grace notes are not nodes (paper §2.1) but are kept in the ``grace_*`` arrays for export.

Times are in quarter notes from the start of the piece (floats; exact for quantized scores).

Arrays of a piece (n = notes, b = bars, g = grace notes):

=====================  ===========  ======================================================
name                   shape/dtype  meaning
=====================  ===========  ======================================================
x                      (n, 19) f32  node features, see ``FEATURES``
onset, duration        (n,) f64     quarters; duration > 0
pitch                  (n,) i16     MIDI pitch
bar                    (n,) i32     index into the bar arrays
tie_prev, tie_next     (n,) bool    notated tie from the previous / to the next node
bar_start, bar_dur     (b,) f64     quarters; bar_dur is the bar's length as notated (a pickup
                                    is short; the time signature's bar is 4 * ts_num / ts_den)
ts_num, ts_den         (b,) i16     time signature in force in the bar
edges_<relation>       (2, E) i64   input edges, one array per name in ``RELATIONS``
voice_cand             (2, C) i64   voice candidates: same bar, offset(u) <= onset(w)
y_voice                (C,) i8      1 = w follows u in one voice, 0 = not, -1 = unknown
chord_cand             (2, K) i64   chord candidates: same onset, u < w
y_chord                (K,) i8      1 = same voice and staff (one chord), 0 = not, -1
y_<task>               (n,) i16     node labels for every name in ``NODE_TASKS``; -1 = unknown
voice                  (n,) i16     the score's voice number (1-based), -1 = unknown
grace_onset            (g,) f64     grace notes: onset of the principal note
grace_pitch, grace_staff, grace_voice, grace_spelling   (g,) i16   as above; -1 = unknown
=====================  ===========  ======================================================

The unknown value -1 is the explicit mask: ``mask = y >= 0``; losses use ``ignore_index=-1``.

Model predictions for a piece (what the model produces and post-processing/export consume) are a
dict of arrays too: ``logits_<task>`` (n, classes) float32 for every name in ``NODE_TASKS``,
``p_voice`` (C,) float32 probabilities over ``voice_cand`` and ``p_chord`` (K,) over ``chord_cand``.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from overseer.errors import InputError
from overseer.io import atomic_file

UNKNOWN = -1

# --- node features (paper §2.1) ----------------------------------------------------------------
PITCH_CLASS_FEATURES = 12
FEATURES: tuple[str, ...] = (
    *(f"pc_{i}" for i in range(PITCH_CLASS_FEATURES)),  # pitch class one-hot
    "octave",  # MIDI octave (pitch // 12 - 1) scaled to [0, 1] by / 9
    "duration",  # tanh(duration / bar duration of the time signature), in (0, 1)
    "bar_position",  # (onset - bar start) / bar duration, in [0, 1); a pickup bar 0 counts from its full bar
    "downbeat",  # 1 where the note starts at the (full) bar start
    # beyond the paper: the duration on a log2 scale, as pitch is octave + pitch class: its "octave"
    # log2(quarters) / 4, and its place within the binary octave as an angle (sin, cos of 2*pi*frac):
    # plain values sit at 0, dotted ones at log2(1.5), triplets at log2(4/3), quintuplets at log2(1.6).
    # tanh(duration / bar) alone hides these classes (a tiny MLP on it: tuplet 0.82 = always "none";
    # with these three: 0.998, note type 0.66 -> 0.97 on the DCML validation pieces)
    "log_duration",
    "duration_class_sin",
    "duration_class_cos",
)
N_FEATURES = len(FEATURES)

# --- input edges -------------------------------------------------------------------------------
# onset is symmetric (both directions stored); the other three have explicit inverses.
BASE_RELATIONS: tuple[str, ...] = ("onset", "during", "follow", "silence")
RELATIONS: tuple[str, ...] = ("onset", "during", "follow", "silence", "rev_during", "rev_follow", "rev_silence")

# --- node tasks and their classes ---------------------------------------------------------------
# Class names and the spelling index layout only; what they mean in a score (clef lines, stems, octave-shift
# markup, pitch classes, symbol values, bars) is derived from these names in notation.py.
STEPS = ("C", "D", "E", "F", "G", "A", "B")
ALTERS = (-2, -1, 0, 1, 2)  # bb, b, natural, #, x
SPELLINGS: tuple[str, ...] = tuple(
    f"{s}{ {-2: 'bb', -1: 'b', 0: '', 1: '#', 2: 'x'}[a] }" for s in STEPS for a in ALTERS
)
KEY_FIFTHS = tuple(range(-7, 8))
NOTE_TYPES = ("breve", "whole", "half", "quarter", "eighth", "16th", "32nd", "64th", "128th")

NODE_TASKS: dict[str, tuple[str, ...]] = {
    "staff": ("upper", "lower"),
    "spelling": SPELLINGS,  # index = step * 5 + (alter + 2)
    "key": tuple(str(f) for f in KEY_FIFTHS),  # index = fifths + 7, the key signature in force
    "stem": ("up", "down", "none"),
    "octave_shift": ("none", "8va", "8vb", "15ma"),
    "clef": ("G", "F", "C"),  # the clef in force on the note's staff at its onset
    "note_type": NOTE_TYPES,
    "dots": ("0", "1", "2", "3"),
    "tuplet": ("none", "3", "5"),  # other tuplets: see TUPLET_RULE
}
EDGE_TASKS: tuple[str, ...] = ("voice", "chord")
DURATION_TASKS: tuple[str, ...] = ("note_type", "dots", "tuplet")

# Tuplets other than 3 and 5 (the paper's classes): multiples fold onto their base
# (6, 12 -> 3; 10 -> 5), every other ratio (2, 4, 7, 9 ...) is unknown (-1) and counted.
TUPLET_RULE: dict[int, int] = {1: 0, 3: 1, 6: 1, 12: 1, 5: 2, 10: 2}


def spelling_index(step: str, alter: int | None) -> int:
    """Class index of a spelled pitch (``step`` in CDEFGAB, ``alter`` in -2..2)."""
    a = 0 if alter is None else int(alter)
    if step not in STEPS or a not in ALTERS:
        return UNKNOWN
    return STEPS.index(step) * len(ALTERS) + ALTERS.index(a)


def spelling_of(index: int) -> tuple[str, int]:
    """(step, alter) of a spelling class index."""
    return STEPS[index // len(ALTERS)], ALTERS[index % len(ALTERS)]


NODE_ARRAYS = ("onset", "duration", "pitch", "bar", "tie_prev", "tie_next", "voice")
BAR_ARRAYS = ("bar_start", "bar_dur", "ts_num", "ts_den")
GRACE_ARRAYS = ("grace_onset", "grace_pitch", "grace_staff", "grace_voice", "grace_spelling")
EDGE_ARRAYS = ("voice_cand", "y_voice", "chord_cand", "y_chord")


def required_arrays() -> tuple[str, ...]:
    """Every array name a prepared piece must hold."""
    return (
        "x",
        *NODE_ARRAYS,
        *BAR_ARRAYS,
        *GRACE_ARRAYS,
        *EDGE_ARRAYS,
        *(f"edges_{r}" for r in RELATIONS),
        *(f"y_{t}" for t in NODE_TASKS),
    )


def save_piece(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> Path:
    """Write one prepared piece atomically; refuses a piece that misses an array of the contract."""
    missing = [name for name in required_arrays() if name not in arrays]
    if missing:
        raise ValueError(f"piece for {path} lacks arrays {missing}")
    with atomic_file(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    return Path(path)


def load_piece(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read one prepared piece; a missing array or unreadable file is an InputError naming it."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise InputError(f"cannot read prepared piece ({exc})", path=path) from exc
    missing = [name for name in required_arrays() if name not in arrays]
    if missing:
        raise InputError(f"prepared piece lacks arrays {missing}; re-run ingest@engraving", path=path)
    return arrays


SPLITS = ("train", "validation", "test")


def load_split(prepared: str | os.PathLike, split: str) -> tuple[list[str], list[dict[str, np.ndarray]]]:
    """(piece names, pieces) of one split of ingest@engraving's folder (``<prepared>/<split>/*.npz``)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    folder = Path(prepared) / split
    if not folder.is_dir():
        raise InputError(f"no prepared {split} pieces; run `dvc repro ingest@engraving`", path=folder)
    files = sorted(folder.glob("*.npz"))
    return [f.stem for f in files], [load_piece(f) for f in files]
