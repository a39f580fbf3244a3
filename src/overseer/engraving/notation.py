"""The engraving vocabulary: class tables, spelling, symbolic durations, notated times, rests and bars.

:mod:`.schema` names the classes (``NODE_TASKS``); this module is the one definition of what they
mean in a score, and every table here is derived from those names (import fails when a name has
no entry). Reading (``data.scores``), post-processing (:mod:`.postprocess`), MIDI input
(:mod:`.engrave`) and export (:mod:`.export`) all use it.

Times: quarters as floats in the arrays, exact ``Fraction`` quarters or integer ticks
(``TICKS_PER_QUARTER`` per quarter, :func:`quantize`) in arithmetic.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from functools import lru_cache

import numpy as np

from overseer.engraving import schema

NOTE_TYPES = schema.NOTE_TYPES
# 2^8 (down to 256ths) * 3^2 * 5 * 7 * 11 * 13: exact for common tuplets, fits int64 for 10^8 quarters
TICKS_PER_QUARTER = 2**8 * 3**2 * 5 * 7 * 11 * 13


def quantize(t: np.ndarray | float) -> np.ndarray:
    """Times in quarters as int64 ticks of 1/``TICKS_PER_QUARTER`` quarter."""
    return np.rint(np.asarray(t, dtype=np.float64) * TICKS_PER_QUARTER).astype(np.int64)


def class_index(task: str) -> dict[str, int]:
    """Class name -> class index of a node task of ``schema.NODE_TASKS``."""
    return {name: i for i, name in enumerate(schema.NODE_TASKS[task])}


# --- clefs, stems, octave shifts ----------------------------------------------------------------------

CLEF_CLASS = class_index("clef")  # clef sign -> class
CLEF_LINES: dict[str, int] = {sign: {"G": 2, "F": 4, "C": 3}[sign] for sign in CLEF_CLASS}  # sign -> staff line
DEFAULT_CLEF = {1: CLEF_CLASS["G"], 2: CLEF_CLASS["F"]}  # staff -> clef class of a staff without notes

STEM_NONE = class_index("stem")["none"]
# stem class -> partitura's ``stem_direction`` (None: no stem), and back for the written directions
STEM_DIRECTIONS: tuple[str | None, ...] = tuple(None if c == "none" else c for c in schema.NODE_TASKS["stem"])
STEM_CLASS: dict[str, int] = {d: i for i, d in enumerate(STEM_DIRECTIONS) if d is not None}
UNSTEMMED_TYPES = ("breve", "whole")  # note types without a stem ("none")

# octave-shift class -> MusicXML <octave-shift> (type, size) and its placement; MusicXML's 8va is "down"
_OTTAVA_MARKUP = {"8va": ("down", 8, "above"), "8vb": ("up", 8, "below"), "15ma": ("down", 15, "above")}
OTTAVA: dict[int, tuple[str, int, str]] = {
    i: _OTTAVA_MARKUP[name] for name, i in class_index("octave_shift").items() if name != "none"
}
OCTAVE_SHIFT_CLASS: dict[tuple[str, int], int] = {(kind, size): i for i, (kind, size, _) in OTTAVA.items()}

# --- spelling --------------------------------------------------------------------------------------------

STEP_PC = (0, 2, 4, 5, 7, 9, 11)  # pitch class of each step of schema.STEPS
SHARP_ORDER = "FCGDAEB"  # the order of sharps in key signatures; flats come in reverse
FLAT_ORDER = SHARP_ORDER[::-1]


def _pc(step: str, alter: int) -> int:
    return (STEP_PC[schema.STEPS.index(step)] + alter) % 12


_SPELLING_PC = np.array([_pc(*schema.spelling_of(i)) for i in range(len(schema.SPELLINGS))])  # per spelling class


def pitch_consistent_spellings(pitch: np.ndarray) -> np.ndarray:
    """(n, 35) bool: spelling classes whose pitch class equals ``pitch % 12``."""
    return _SPELLING_PC[None, :] == (np.asarray(pitch, dtype=np.int64) % 12)[:, None]


def _plain_spellings(alter: int) -> tuple[int, ...]:
    """Spelling class per pitch class: the natural step, else the one with ``alter`` (1: sharp, -1: flat)."""
    return tuple(
        next(schema.spelling_index(s, a) for a in (0, alter) for s in schema.STEPS if _pc(s, a) == pc)
        for pc in range(12)
    )


_PLAIN = {1: _plain_spellings(1), -1: _plain_spellings(-1)}


def default_spelling(pitch: int, fifths: int) -> int:
    """A plain spelling of ``pitch``: sharps in C and sharp keys, flats in flat keys."""
    return _PLAIN[-1 if fifths < 0 else 1][int(pitch) % 12]


def spelled_pitch(spelling: int, pitch: int) -> tuple[str, int, int]:
    """(step, alter, octave) of a spelling class for a MIDI pitch (octave from pitch and step)."""
    step, alter = schema.spelling_of(int(spelling))
    base = int(pitch) - alter - STEP_PC[schema.STEPS.index(step)]
    if base % 12:
        raise ValueError(f"spelling {step}{alter:+d} does not fit MIDI pitch {pitch}")
    return step, alter, base // 12 - 1


def key_alter(step: str, fifths: int) -> int:
    """Alteration of ``step`` in the key signature with ``fifths`` sharps (> 0) or flats (< 0)."""
    if fifths > 0 and step in SHARP_ORDER[:fifths]:
        return 1
    if fifths < 0 and step in FLAT_ORDER[:-fifths]:
        return -1
    return 0


# --- symbolic durations ----------------------------------------------------------------------------------

# quarter-note value of each note type: breve = 8 ... 128th = 1/32
BASE_VALUE: tuple[Fraction, ...] = tuple(Fraction(8, 2**i) for i in range(len(NOTE_TYPES)))
# tuplet class -> (actual notes, normal notes): k notes in the time of the largest power of two below k
TUPLET_RATIO: tuple[tuple[int, int], ...] = tuple(
    (a, 2 ** (a.bit_length() - 1)) for a in (1 if c == "none" else int(c) for c in schema.NODE_TASKS["tuplet"])
)


def as_quarters(ticks: int) -> Fraction:
    """Exact quarters of a tick count."""
    return Fraction(int(ticks), TICKS_PER_QUARTER)


def as_ticks(value: Fraction) -> int:
    """Ticks of an exact number of quarters; ValueError when it is off the tick grid."""
    t = value * TICKS_PER_QUARTER
    if t.denominator != 1:
        raise ValueError(f"{value} quarters is not on the tick grid")
    return int(t)


def symbol_value(note_type: int, dots: int, actual: int = 1, normal: int = 1) -> Fraction:
    """Duration in quarters of a note type with dots and a tuplet ratio ``actual:normal``."""
    return BASE_VALUE[int(note_type)] * (2 - Fraction(1, 2 ** int(dots))) * Fraction(int(normal), int(actual))


@lru_cache(maxsize=1)
def symbol_table() -> tuple[np.ndarray, ...]:
    """(type, dots, tuplet class, value in ticks) of every symbol of the model's classes, as arrays."""
    rows = []
    for t in range(len(NOTE_TYPES)):
        for d in range(len(schema.NODE_TASKS["dots"])):
            for k, (a, n) in enumerate(TUPLET_RATIO):
                rows.append((t, d, k, as_ticks(symbol_value(t, d, a, n))))
    arr = np.array(rows, dtype=np.int64)
    return arr[:, 0], arr[:, 1], arr[:, 2], arr[:, 3]


def is_single_symbol(duration: np.ndarray, *, simple: bool = False) -> np.ndarray:
    """Whether each duration (quarters) is one symbol of the model's classes (type, dots, tuplet).

    ``simple`` admits only plain symbols: up to two dots without a tuplet, no dots in a tuplet
    (1.25 quarters is a triple-dotted triplet quarter, but is better written tied).
    """
    _, d_idx, k_idx, value = symbol_table()
    if simple:
        value = value[((k_idx == 0) & (d_idx <= 2)) | ((k_idx > 0) & (d_idx == 0))]
    return np.isin(quantize(duration), value)


def generic_symbol(length: Fraction) -> tuple[int, int, int, int] | None:
    """(type, dots=0, actual, normal) writing ``length`` as one tuplet note of the smallest type holding it."""
    if length <= 0 or length > BASE_VALUE[0]:
        return None
    t = max(i for i, v in enumerate(BASE_VALUE) if v >= length)
    ratio = length / BASE_VALUE[t]  # in (1/2, 1] unless below the shortest type
    if ratio.denominator > 64:  # off every sensible grid: the nearest small ratio (no longer exact)
        ratio = ratio.limit_denominator(64)
    if ratio == 1:
        return t, 0, 1, 1
    return t, 0, ratio.denominator, ratio.numerator


# --- notated times ---------------------------------------------------------------------------------------

SNAP_GRIDS = (32, 48, 40)  # per quarter: binary values to 128ths, their triplets and quintuplets
SNAP_TOL = 1 / 256  # quarters
TIME_KEYS = ("onset", "duration", "bar_start", "bar_dur", "grace_onset")


def snap_times(t: np.ndarray) -> np.ndarray:
    """Times moved onto the nearest point of ``SNAP_GRIDS`` when within ``SNAP_TOL`` (else kept).

    Scores written with too few divisions round triplets (43/256 for 1/6); snapping restores the
    notated value. Nearest-point snapping is monotone, so no note moves past another.
    """
    t = np.asarray(t, dtype=np.float64)
    best, err = t.copy(), np.full(t.shape, np.inf)
    for g in SNAP_GRIDS:
        c = np.rint(t * g) / g
        e = np.abs(t - c)
        better = e < err
        best[better], err[better] = c[better], e[better]
    return np.where(err <= SNAP_TOL, best, t)


def notated_piece(piece: dict[str, np.ndarray], res: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """The piece with its times as they are written: from ``res`` when given, else snapped (:func:`snap_times`).

    Note and grace times are snapped relative to their bar's start, then put back at the bar's (snapped)
    start: a score whose times all drift off the grid by a constant (an earlier irregular bar written
    with too few divisions: onsets such as 463.99375) still has its in-bar positions on the grid, and
    snapping each absolute time alone would turn its triplets into values no symbol can write. Where
    bar starts are on the grid (almost every score) this equals snapping the absolute times.
    """
    if res is not None and all(k in res for k in TIME_KEYS):
        return {**piece, **{k: res[k] for k in TIME_KEYS}}
    raw_start = np.asarray(piece["bar_start"], dtype=np.float64)
    start = snap_times(raw_start)
    end = snap_times(raw_start + np.asarray(piece["bar_dur"]))
    bar = np.asarray(piece["bar"], dtype=np.int64)
    onset_raw = np.asarray(piece["onset"], dtype=np.float64)
    rel_on = snap_times(onset_raw - raw_start[bar])
    rel_off = snap_times(onset_raw + np.asarray(piece["duration"]) - raw_start[bar])
    grace = np.asarray(piece["grace_onset"], dtype=np.float64)
    grace_bar = np.clip(np.searchsorted(raw_start, grace, side="right") - 1, 0, max(raw_start.size - 1, 0))
    grace_onset = start[grace_bar] + snap_times(grace - raw_start[grace_bar]) if raw_start.size else grace
    return {
        **piece,
        "onset": start[bar] + rel_on,
        "duration": np.where(rel_off > rel_on, rel_off - rel_on, piece["duration"]),
        "bar_start": start,
        "bar_dur": np.where(end > start, end - start, piece["bar_dur"]),
        "grace_onset": grace_onset,
    }


# --- rests: a length as the fewest, simplest symbols -------------------------------------------------------

_DP_TPQ = 480  # rest grid: binary values to 128ths, triplets and quintuplets of them
_COST_SYMBOL, _COST_DOT, _COST_TUPLET = 4, 1, 3
_INF = np.iinfo(np.int64).max // 4


@lru_cache(maxsize=2)
def _rest_coins(max_dots: int) -> tuple[tuple[int, int, int, int, int, int], ...]:
    """(ticks on the rest grid, cost, type, dots, actual, normal), in reconstruction preference order."""
    coins = []
    for t in range(len(NOTE_TYPES)):
        for d in range(max_dots + 1):
            for k, (a, n) in enumerate(TUPLET_RATIO):
                v = symbol_value(t, d, a, n) * _DP_TPQ
                if v.denominator == 1:
                    coins.append((int(v), _COST_SYMBOL + d * _COST_DOT + (k > 0) * _COST_TUPLET, t, d, a, n))
    coins.sort(key=lambda c: (c[4] != 1, -c[0], c[3]))
    return tuple(coins)


_DP_COST: dict[int, np.ndarray] = {}


def _dp_costs(max_ticks: int, max_dots: int) -> np.ndarray:
    """Minimum cost to write each length (rest-grid ticks) as a sum of rest symbols (unbounded coins)."""
    cached = _DP_COST.get(max_dots)
    if cached is not None and cached.size > max_ticks:
        return cached
    size = max(max_ticks + 1, 2 * (0 if cached is None else cached.size), 16 * _DP_TPQ)
    cost = np.full(size, _INF, dtype=np.int64)
    cost[0] = 0
    for ticks, w, *_ in _rest_coins(max_dots):
        pad = (-size) % ticks
        arr = np.concatenate([cost, np.full(pad, _INF, dtype=np.int64)]).reshape(-1, ticks)
        k = np.arange(arr.shape[0], dtype=np.int64)[:, None] * w
        cost = np.minimum(cost, (np.minimum.accumulate(arr - k, axis=0) + k).reshape(-1)[:size])
    _DP_COST[max_dots] = cost
    return cost


def notate_length(length: Fraction, *, dots: bool = True) -> list[tuple[Fraction, int, int, int, int]]:
    """Rest symbols (value, type, dots, actual, normal), longest first, writing ``length`` exactly.

    Costs: a symbol 4, a dot 1, a tuplet 3. At most one dot (partitura's MEI reader misreads two),
    none with ``dots=False``.
    """
    ticks = length * _DP_TPQ
    max_dots = 1 if dots else 0
    if ticks.denominator == 1 and ticks > 0:
        t = int(ticks)
        cost = _dp_costs(t, max_dots)
        if cost[t] < _INF // 2:
            out = []
            while t > 0:
                coin = next(c for c in _rest_coins(max_dots) if c[0] <= t and cost[t - c[0]] + c[1] == cost[t])
                out.append((Fraction(coin[0], _DP_TPQ), *coin[2:]))
                t -= coin[0]
            return out
    sym = generic_symbol(length)
    if sym is None:  # longer than a breve and off the rest grid: halve it
        half = length / 2
        return notate_length(half, dots=dots) + notate_length(length - half, dots=dots)
    return [(length, *sym)]


def notate_span(
    start: Fraction, end: Fraction, origin: Fraction, beat: Fraction
) -> list[tuple[Fraction, Fraction, int, int, int, int]]:
    """Rests (onset, value, type, dots, actual, normal) tiling [start, end).

    The span is cut at beat boundaries (runs of whole beats stay together); a piece that starts
    off the beat has no dotted rests and, when it runs to the beat, is written shortest first.
    """
    if end <= start:
        return []
    k0 = -((origin - start) // beat)  # ceil((start - origin) / beat)
    cuts = []
    t = origin + k0 * beat
    while t < end:
        if t > start:
            cuts.append(t)
        t += beat
    points = [start, *cuts, end]
    on_beat = [(p - origin) % beat == 0 for p in points]
    segments: list[list[Fraction]] = []
    for i in range(len(points) - 1):
        full = on_beat[i] and on_beat[i + 1]
        if full and segments and segments[-1][2] and segments[-1][1] == points[i]:
            segments[-1][1] = points[i + 1]
        else:
            segments.append([points[i], points[i + 1], full])
    out = []
    for s, e, _ in segments:
        off_beat = (s - origin) % beat != 0
        symbols = notate_length(e - s, dots=not off_beat)
        if (e - origin) % beat == 0 and off_beat:
            symbols = symbols[::-1]
        t = s
        for value, *sym in symbols:
            out.append((t, value, *sym))
            t += value
    return out


# a note written as tied symbols (postprocess step 5): one row per symbol after the first
SPLIT_KEYS = ("split_note", "split_onset", "split_duration", "split_note_type", "split_dots",
              "split_tuplet_actual", "split_tuplet_normal")  # fmt: skip


def tied_symbols(
    start: Fraction, end: Fraction, origin: Fraction, beat: Fraction
) -> list[tuple[Fraction, Fraction, int, int, int, int]] | None:
    """Tied symbols (onset, value, type, dots, actual, normal) writing a note [start, end) that no
    single symbol of the model's classes writes, or None where one generic tuplet symbol is meant.

    A length made of plain values (binary values to 128ths, triplets and quintuplets of them: the
    rest grid), or longer than a breve, is cut like rests are (:func:`notate_span`: at beat
    boundaries, the fewest and simplest symbols), as engravers tie a long or irregular note: a
    16-quarter note is two tied breves, 5 quarters a whole note tied to a quarter. Any other length
    up to a breve (a 7-tuplet note, say) is one generic tuplet symbol (:func:`generic_symbol`): None.
    """
    length = end - start
    if length <= 0:
        raise ValueError(f"a note of length {length} quarters cannot be written")
    if (length * _DP_TPQ).denominator != 1 and generic_symbol(length) is not None:
        return None
    return notate_span(start, end, origin, beat)


# --- bars ---------------------------------------------------------------------------------------------


def bar_grid(piece: dict[str, np.ndarray], bar: int) -> tuple[Fraction, Fraction, Fraction, Fraction]:
    """(bar start, bar end, beat origin, beat) of a bar; a short (pickup) bar counts beats from its end."""
    start = as_quarters(quantize(piece["bar_start"][bar]))
    dur = as_quarters(quantize(piece["bar_dur"][bar]))
    num, den = int(piece["ts_num"][bar]), int(piece["ts_den"][bar])
    ts_len = Fraction(4 * num, den)
    beat = Fraction(4, den) * (3 if num % 3 == 0 and num > 3 else 1)
    origin = start + dur - ts_len if dur < ts_len else start
    return start, start + dur, origin, beat


def bars(
    end: float,
    num: int = 4,
    den: int = 4,
    *,
    pickup: float = 0.0,
    changes: Sequence[tuple[float, int, int]] = (),
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bars covering [0, end), at least one: (bar_start, bar_dur, ts_num, ts_den) as in the schema.

    ``num/den`` is in force from 0 and each ``(time, num, den)`` of ``changes`` from its time (one
    at 0 replaces ``num/den``; of several at one time the last in sorted order wins); a change
    inside a bar cuts that bar short. ``pickup`` > 0 makes bar 0 an anacrusis of that many quarters.
    """
    in_force = {0.0: (int(num), int(den))}
    for t, n, d in sorted(changes):
        in_force[t] = (int(n), int(d))
    sigs = sorted(in_force.items())
    rows: list[tuple[float, float, int, int]] = []
    t, k = 0.0, 0
    while t < end - 1e-9 or not rows:
        while k + 1 < len(sigs) and sigs[k + 1][0] <= t + 1e-9:
            k += 1
        n, d = sigs[k][1]
        nxt = sigs[k + 1][0] if k + 1 < len(sigs) else np.inf
        length = float(pickup) if pickup > 0 and not rows else 4.0 * n / d
        rows.append((t, min(length, nxt - t), n, d))
        t += rows[-1][1]
    starts, durs, nums, dens = zip(*rows, strict=True)
    return (
        np.array(starts, dtype=np.float64),
        np.array(durs, dtype=np.float64),
        np.array(nums, dtype=np.int16),
        np.array(dens, dtype=np.int16),
    )
