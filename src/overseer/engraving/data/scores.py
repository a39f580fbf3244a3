"""Piano scores (MusicXML, MEI, kern) to a numeric note table: what the graph and the labels need.

``load_score_table`` reads a score with partitura and returns a :class:`ScoreTable`: numpy arrays
only (DESIGN.md, "Measured pitfalls": partitura's note arrays carry ~2 kB of strings per note, so
the table — and the parse cache built on it — keeps numeric fields only).

What a piano score is here: one part with two staves, or two parts with one staff each (the
staff is then the part: first part = upper). Parts without pitched notes are ignored; anything
with more than two staves, or a single staff, is refused (``part=`` picks the piano part of a
song or chamber score by name or index).

Per note (paper §2.1–2.2): onset/duration in quarters, MIDI pitch, spelling, staff, voice, ties,
bar, and the engraving labels as class indices of ``schema.NODE_TASKS`` with -1 where the score
does not say:

- key: the key signature (fifths) in force at the note's onset in its part;
- clef: the clef in force on the note's staff at its onset (G/F/C; percussion, TAB: -1);
- stem: up/down as notated; a whole note or breve has no stem ("none"); otherwise -1 where the
  score gives no stem (MEI and kern via partitura never do; MusicXML ``<stem>none</stem>`` is
  dropped by partitura, so it is -1 too unless the note is a whole note or breve);
- octave shift: from MusicXML ``<octave-shift>`` (partitura keeps MusicXML's sounding pitch and
  the direction; type "down" size 8 is an 8va, "up" size 8 an 8vb, "down" size 15 a 15ma, any
  other is -1); partitura does not read MEI ``<octave>`` or kern ``*8va``, so in an MEI or kern
  file that contains them the whole piece is -1, elsewhere "none" where no shift is in force;
- MEI is read as written when partitura can (MEI 3/4 with xml:ids); otherwise through
  partitura's verovio route, which loses key signatures (key -1 for the whole piece);
- note type, dots, tuplet: from the notated symbolic duration; the tuplet is kept raw
  (``tuplet_actual``: 1 none, k the actual notes of a k:m tuplet, 0 unknown) and mapped to
  classes by ``schema.TUPLET_RULE`` in ``labels.py``.

Grace notes are not nodes (paper §2.1); they are kept in the ``grace_*`` arrays (onset = the
onset of the principal note). A note tied across a barline is two nodes (schema docstring).

Bars: ``bar_start`` is where the measure starts, ``bar_dur`` its length as notated in the score
(a pickup bar is short); the time signature in force is ``ts_num/ts_den`` (its bar length is
``4 * ts_num / ts_den`` quarters). Time signatures partitura cannot read (additive "3+2/8",
senza-misura) are absent: a score with no readable time signature at all is refused; a later
additive change leaves the previous signature in force (bar lengths stay as notated).

A non-grace note of zero length (a notation error, or a grace note written without its
``<grace/>``) is no node: it is dropped and kept in ``zero_onset``/``zero_pitch``, so that callers
can warn and count (ingest's report, ``overseer engrave``); the rest of the piece is read as usual.

Bad input is an :class:`~overseer.errors.InputError` naming the file and the reason (one line,
:func:`one_line`): unreadable, empty or unparseable file (the parser's exception type and text), a
.krn without a ``**kern`` spine, no notes, not two staves, no time signature, a denominator that is
not a power of two.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np

from overseer.engraving import schema
from overseer.engraving.notation import (
    CLEF_CLASS,
    OCTAVE_SHIFT_CLASS,
    STEM_CLASS,
    STEM_NONE,
    TICKS_PER_QUARTER,
    UNSTEMMED_TYPES,
    bars,
    quantize,
)
from overseer.errors import InputError

UNKNOWN = schema.UNKNOWN
SCORE_SUFFIXES = (".musicxml", ".xml", ".mxl", ".mei", ".krn")
# octave-shift markup that partitura does not import (MEI <octave>, humdrum *8va/*8ba/*15ma)
_UNREAD_OCTAVE = {".mei": re.compile(rb"<octave[\s>]"), ".krn": re.compile(rb"\*X?(8va|8ba|15ma|15ba)")}
REASON_CHARS = 300  # a skip reason is one line of at most this many characters


def one_line(text: object, limit: int = REASON_CHARS) -> str:
    """``text`` as one line: every run of whitespace (newlines, tabs) one space, at most ``limit``
    characters (cut with "..."). Reasons and part names go into logs, CSV files and index.json."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3].rstrip() + "..."


@dataclass
class ScoreTable:
    """Numeric note table of one piece; every array is numpy, notes sorted by (onset, pitch).

    Node arrays have one entry per non-grace note; label arrays hold class indices of
    ``schema.NODE_TASKS`` (or -1). Bar arrays have one entry per bar, grace arrays one per grace note.
    """

    onset: np.ndarray  # f64 quarters
    duration: np.ndarray  # f64 quarters, > 0
    pitch: np.ndarray  # i16 MIDI
    staff: np.ndarray  # i16: 1 upper, 2 lower, -1 unknown
    voice: np.ndarray  # i16, 1-based, -1 unknown
    spelling: np.ndarray  # i16 class index
    tie_prev: np.ndarray  # bool
    tie_next: np.ndarray  # bool
    bar: np.ndarray  # i32 index into the bar arrays
    key: np.ndarray  # i16 class index (fifths + 7)
    clef: np.ndarray  # i16
    stem: np.ndarray  # i16
    octave_shift: np.ndarray  # i16
    note_type: np.ndarray  # i16
    dots: np.ndarray  # i16
    tuplet_actual: np.ndarray  # i16: 1 none, k for k:m tuplets, 0 unknown
    bar_start: np.ndarray  # f64
    bar_dur: np.ndarray  # f64
    ts_num: np.ndarray  # i16
    ts_den: np.ndarray  # i16
    grace_onset: np.ndarray  # f64
    grace_pitch: np.ndarray  # i16
    grace_staff: np.ndarray  # i16
    grace_voice: np.ndarray  # i16
    grace_spelling: np.ndarray  # i16
    # non-grace notes of zero length, dropped (module docstring): onset (f64 quarters) and MIDI pitch
    zero_onset: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    zero_pitch: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int16))

    @property
    def n_notes(self) -> int:
        return int(self.onset.size)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> ScoreTable:
        return cls(**{f.name: np.asarray(arrays[f.name]) for f in fields(cls)})


# --- reading ------------------------------------------------------------------------------------


def load_score_table(path: str | os.PathLike, part: str | int | None = None) -> ScoreTable:
    """Read one piano score into a :class:`ScoreTable` (see the module docstring for the rules).

    ``part``: the name (or 0-based index) of the one part to read, e.g. the piano of a song; by
    default every part with notes is read and they must make up exactly two staves.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SCORE_SUFFIXES:
        raise InputError(f"not a score file (expected one of {', '.join(SCORE_SUFFIXES)})", path=path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"cannot read score ({exc.strerror or exc})", path=path) from exc
    if not raw.strip():
        raise InputError("empty file", path=path)
    if suffix == ".krn" and b"**kern" not in raw:
        raise InputError("not a Humdrum kern file (no **kern spine)", path=path)
    parts, key_known = _parse(path)
    staffed = _staffed_parts(parts, part, path)
    table = _table(staffed, path)
    pattern = _UNREAD_OCTAVE.get(suffix)
    if pattern is not None and pattern.search(raw):
        table.octave_shift[:] = UNKNOWN
    if not key_known:
        table.key[:] = UNKNOWN
    return table


def _parse(path: Path) -> tuple[list, bool]:
    """partitura's parts of the score, and whether its key signatures can be trusted."""
    import partitura

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if path.suffix.lower() == ".mei":
                return _parse_mei(path)
            score = partitura.load_score(str(path), force_note_ids="keep", quiet=True)
    except Exception as exc:  # partitura raises anything (lxml, zip, regex, index errors); re-raised
        msg = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise InputError(f"cannot parse score ({type(exc).__name__}: {msg})", path=path) from exc
    return list(score.parts), True


def _parse_mei(path: Path) -> tuple[list, bool]:
    """MEI as written first (MEI 3/4 with xml:ids), else partitura's verovio route.

    The verovio route rewrites the file to MEI 5 first (``keysig``), which partitura 1.9 does not
    read: every key silently becomes C major, so on that route the key labels are unknown.
    """
    import partitura
    import partitura.io.importmei as importmei
    import verovio

    saved = importmei.VEROVIO_AVAILABLE
    try:
        importmei.VEROVIO_AVAILABLE = False
        return list(partitura.load_score(str(path), force_note_ids="keep", quiet=True).parts), True
    except Exception:  # noqa: BLE001 - the plain route fails on files without xml:ids: use verovio's
        importmei.VEROVIO_AVAILABLE = saved
        verovio.enableLog(verovio.LOG_OFF)  # its errors go to the terminal; the exception tells the reason
        return list(partitura.load_score(str(path), force_note_ids="keep", quiet=True).parts), False
    finally:
        importmei.VEROVIO_AVAILABLE = saved
        verovio.enableLog(verovio.LOG_ERROR)


@dataclass(frozen=True)
class _StaffMap:
    """Our staff (1 upper, 2 lower) for a part's staff numbers; a one-staff part maps everything to its staff."""

    mapping: dict[int, int]

    def __call__(self, staff: int | None) -> int:
        if len(self.mapping) == 1:
            return next(iter(self.mapping.values()))
        return self.mapping.get(staff or 1, UNKNOWN)


def _staffed_parts(parts: list, which: str | int | None, path: Path) -> list[tuple[object, _StaffMap]]:
    """The parts to read, each with its staff map.

    Two staves in all: one part with two staff numbers (lower number = upper staff), or two parts
    with one each — ordered by staff number where they differ (MEI and kern parts keep the piano's
    staff numbers), else by part order (MusicXML: first part = upper staff).
    """
    import partitura.score as pts

    if which is not None:
        names = [p.part_name for p in parts]
        if isinstance(which, int) and 0 <= which < len(parts):
            parts = [parts[which]]
        elif which in names:
            parts = [parts[names.index(which)]]
        else:
            shown = ", ".join(repr(one_line(n, 60)) for n in names)
            raise InputError(f"no part {which!r} (parts: {shown})", path=path)
    with_notes = [p for p in parts if next(p.iter_all(pts.Note, include_subclasses=True), None) is not None]
    if not with_notes:
        raise InputError("no notes", path=path)
    staves = [_staff_numbers(p, alone=len(with_notes) == 1) for p in with_notes]
    total = sum(len(s) for s in staves)
    described = ", ".join(
        f"{one_line(p.part_name or p.id, 60)}: {len(s)}" for p, s in zip(with_notes, staves, strict=True)
    )
    if total > 2:
        raise InputError(f"more than two staves ({described}); a piano score has two", path=path)
    if total < 2:
        raise InputError(f"only one staff ({described}); a piano score has two", path=path)
    if len(with_notes) == 1:
        lo, hi = staves[0]
        return [(with_notes[0], _StaffMap({lo: 1, hi: 2}))]
    (a,), (b,) = staves
    upper_first = a <= b if a != b else True
    first, second = (1, 2) if upper_first else (2, 1)
    return [(with_notes[0], _StaffMap({a: first})), (with_notes[1], _StaffMap({b: second}))]


def _staff_numbers(part, alone: bool) -> list[int]:
    """Sorted staff numbers used by a part's notes (None counts as 1); a part read alone counts its
    declared staves too (a piano part whose lower staff holds only rests)."""
    import partitura.score as pts

    used = {n.staff or 1 for n in part.iter_all(pts.GenericNote, include_subclasses=True)}
    if alone and len(used) < 2:
        used |= set(range(1, int(part.number_of_staves or 1) + 1))
    return sorted(used)


@dataclass
class _Raw:
    """Per-note columns gathered from one part before sorting (lists, then arrays)."""

    start: list
    end: list
    pitch: list
    staff: list
    voice: list
    spelling: list
    tie_prev: list
    tie_next: list
    stem: list
    note_type: list
    dots: list
    tuplet: list
    grace: list


def _gather(part, staff_of: _StaffMap) -> _Raw:
    import partitura.score as pts

    raw = _Raw(*([] for _ in fields(_Raw)))
    for n in part.iter_all(pts.Note, include_subclasses=True):
        raw.start.append(n.start.t)
        raw.end.append(n.end.t if n.end is not None else n.start.t)
        raw.pitch.append(n.midi_pitch)
        raw.staff.append(staff_of(n.staff))
        raw.voice.append(n.voice if isinstance(n.voice, int | np.integer) and n.voice > 0 else UNKNOWN)
        raw.spelling.append(schema.spelling_index(n.step, n.alter))
        raw.tie_prev.append(n.tie_prev is not None)
        raw.tie_next.append(n.tie_next is not None)
        grace = isinstance(n, pts.GraceNote)
        raw.grace.append(grace)
        sym = None if grace else _symbolic(n)
        note_type = schema.NOTE_TYPES.index(sym["type"]) if sym and sym.get("type") in schema.NOTE_TYPES else UNKNOWN
        raw.note_type.append(note_type)
        dots = int(sym.get("dots") or 0) if sym else UNKNOWN
        raw.dots.append(dots if 0 <= dots < len(schema.NODE_TASKS["dots"]) else UNKNOWN)
        raw.tuplet.append(_tuplet_actual(sym))
        if n.stem_direction in STEM_CLASS:
            raw.stem.append(STEM_CLASS[n.stem_direction])
        elif sym and sym.get("type") in UNSTEMMED_TYPES:
            raw.stem.append(STEM_NONE)
        else:
            raw.stem.append(UNKNOWN)
    return raw


def _symbolic(note) -> dict | None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            sym = note.symbolic_duration
        except (TypeError, ValueError, KeyError, AttributeError):
            return None
    return sym if isinstance(sym, dict) else None


def _tuplet_actual(sym: dict | None) -> int:
    """1 = no tuplet, k = k actual notes in the time of m normal ones, 0 = unknown."""
    if sym is None:
        return 0
    actual, normal = sym.get("actual_notes"), sym.get("normal_notes")
    if not actual or actual == normal:
        return 1
    return min(int(actual), np.iinfo(np.int16).max)


def _part_columns(part, staff_of: _StaffMap) -> dict[str, np.ndarray]:
    """Every note of one part (grace notes flagged) as numpy columns, times in quarters."""
    raw = _gather(part, staff_of)
    qmap = part.quarter_map
    start_div = np.asarray(raw.start, dtype=np.int64)
    # snapped to the tick grid: a triplet eighth lasts 1/3, not 0.33333333333333304
    on_ticks = quantize(np.asarray(qmap(start_div), dtype=np.float64).reshape(-1))
    off_ticks = quantize(np.asarray(qmap(np.asarray(raw.end, dtype=np.int64)), dtype=np.float64).reshape(-1))
    onset = on_ticks / TICKS_PER_QUARTER
    staff = np.asarray(raw.staff, dtype=np.int16)
    return {
        "onset": onset,
        "duration": (off_ticks - on_ticks) / TICKS_PER_QUARTER,
        "pitch": np.asarray(raw.pitch, dtype=np.int16),
        "staff": staff,
        "voice": np.asarray(raw.voice, dtype=np.int16),
        "spelling": np.asarray(raw.spelling, dtype=np.int16),
        "tie_prev": np.asarray(raw.tie_prev, dtype=bool),
        "tie_next": np.asarray(raw.tie_next, dtype=bool),
        "stem": np.asarray(raw.stem, dtype=np.int16),
        "note_type": np.asarray(raw.note_type, dtype=np.int16),
        "dots": np.asarray(raw.dots, dtype=np.int16),
        "tuplet_actual": np.asarray(raw.tuplet, dtype=np.int16),
        "grace": np.asarray(raw.grace, dtype=bool),
        "key": _key_at(part, start_div),
        "clef": _clef_at(part, start_div, staff, staff_of),
        "octave_shift": _octave_shift_at(part, start_div, staff, staff_of),
    }


def _table(staffed: list[tuple[object, _StaffMap]], path: Path) -> ScoreTable:
    columns = [_part_columns(part, staff_of) for part, staff_of in staffed]
    col = {name: np.concatenate([c[name] for c in columns]) for name in columns[0]}
    bar_start, bar_dur, ts_num, ts_den = _bars(staffed[0][0], path)

    grace = col.pop("grace")
    if (~grace).sum() == 0:
        raise InputError("no notes (only grace notes)", path=path)
    zero = ~grace & (col["duration"] <= 0)
    node = ~grace & ~zero
    if not node.any():
        raise InputError(f"no notes (only grace notes and {int(zero.sum())} zero-length notes)", path=path)
    z_order = np.argsort(col["onset"][zero], kind="stable")
    zero_onset, zero_pitch = col["onset"][zero][z_order], col["pitch"][zero][z_order]
    notes = {k: v[node] for k, v in col.items()}
    order = np.lexsort((notes["voice"], notes["staff"], notes["pitch"], notes["onset"]))
    notes = {k: v[order] for k, v in notes.items()}
    g_order = np.argsort(col["onset"][grace], kind="stable")
    gr = {k: v[grace][g_order] for k, v in col.items()}
    return ScoreTable(
        **notes,
        bar=assign_bars(notes["onset"], bar_start),
        bar_start=bar_start,
        bar_dur=bar_dur,
        ts_num=ts_num,
        ts_den=ts_den,
        grace_onset=gr["onset"],
        grace_pitch=gr["pitch"],
        grace_staff=gr["staff"],
        grace_voice=gr["voice"],
        grace_spelling=gr["spelling"],
        zero_onset=zero_onset.astype(np.float64),
        zero_pitch=zero_pitch.astype(np.int16),
    )


def zero_length_note(table: ScoreTable) -> str | None:
    """What to tell about the zero-length notes dropped from a table (None when there were none)."""
    n = int(table.zero_onset.size)
    if not n:
        return None
    first = f"the first at quarter {float(table.zero_onset[0]):g}, pitch {int(table.zero_pitch[0])}"
    return f"{n} zero-length non-grace note{'s' if n > 1 else ''} dropped ({first})"


def _in_force(times: Sequence[int], at: np.ndarray) -> np.ndarray:
    """Index of the last event with time <= ``at`` (events sorted by time), -1 before the first."""
    return np.searchsorted(np.asarray(times, dtype=np.int64), at, side="right") - 1


def _key_at(part, start_div: np.ndarray) -> np.ndarray:
    import partitura.score as pts

    keys = list(part.iter_all(pts.KeySignature))
    out = np.full(start_div.size, UNKNOWN, dtype=np.int16)
    if not keys:
        return out
    classes = np.array(
        [k.fifths + 7 if isinstance(k.fifths, int | np.integer) and -7 <= k.fifths <= 7 else UNKNOWN for k in keys],
        dtype=np.int16,
    )
    idx = _in_force([k.start.t for k in keys], start_div)
    out[idx >= 0] = classes[idx[idx >= 0]]
    return out


def _per_staff_events(objs: list, staff_of: _StaffMap) -> dict[int, list]:
    """Group timed objects with a ``staff`` attribute by our staff number (1/2)."""
    grouped: dict[int, list] = {}
    for o in objs:
        staff = staff_of(o.staff)
        if staff != UNKNOWN:
            grouped.setdefault(staff, []).append(o)
    return grouped


def _clef_at(part, start_div: np.ndarray, staff: np.ndarray, staff_of: _StaffMap) -> np.ndarray:
    import partitura.score as pts

    out = np.full(start_div.size, UNKNOWN, dtype=np.int16)
    for s, clefs in _per_staff_events(list(part.iter_all(pts.Clef)), staff_of).items():
        on_staff = staff == s
        classes = np.array([CLEF_CLASS.get(c.sign, UNKNOWN) for c in clefs], dtype=np.int16)
        idx = _in_force([c.start.t for c in clefs], start_div[on_staff])
        out[on_staff] = np.where(idx >= 0, classes[np.maximum(idx, 0)], UNKNOWN)
    return out


def _octave_shift_at(part, start_div: np.ndarray, staff: np.ndarray, staff_of: _StaffMap) -> np.ndarray:
    """0 ("none") unless a shift on the note's staff spans its onset: start <= onset < end."""
    import partitura.score as pts

    out = np.zeros(start_div.size, dtype=np.int16)
    shifts = list(part.iter_all(pts.OctaveShiftDirection))
    for s, group in _per_staff_events(shifts, staff_of).items():
        for o in group:
            end = o.end.t if o.end is not None else np.iinfo(np.int64).max
            inside = (staff == s) & (start_div >= o.start.t) & (start_div < end)
            out[inside] = OCTAVE_SHIFT_CLASS.get((o.shift_type, int(o.shift_size or 8)), UNKNOWN)
    return out


def _bars(part, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bar starts and notated lengths (quarters) and the time signature in force per bar."""
    import partitura.score as pts

    qmap = part.quarter_map
    measures = [m for m in part.iter_all(pts.Measure) if m.end is not None and m.end.t > m.start.t]
    if not measures:
        raise InputError("no bars (measures)", path=path)
    starts = np.array([m.start.t for m in measures], dtype=np.int64)
    ends = np.array([m.end.t for m in measures], dtype=np.int64)
    bar_start = np.asarray(qmap(starts), dtype=np.float64).reshape(-1)
    bar_dur = np.asarray(qmap(ends), dtype=np.float64).reshape(-1) - bar_start
    sigs = list(part.iter_all(pts.TimeSignature))
    if not sigs:
        raise InputError("no time signature (additive or senza-misura signatures are not read)", path=path)
    for ts in sigs:
        if not (ts.beats and ts.beats > 0 and ts.beat_type and ts.beat_type > 0) or ts.beat_type & (ts.beat_type - 1):
            raise InputError(f"unsupported time signature {ts.beats}/{ts.beat_type}", path=path)
    # bars before the first signature (rare: a signature written after a first bar) take the first one
    idx = np.maximum(_in_force([t.start.t for t in sigs], starts), 0)
    ts_num = np.array([sigs[i].beats for i in idx], dtype=np.int16)
    ts_den = np.array([sigs[i].beat_type for i in idx], dtype=np.int16)
    return bar_start, bar_dur, ts_num, ts_den


def assign_bars(onset: np.ndarray, bar_start: np.ndarray) -> np.ndarray:
    """Bar index of each onset: the last bar starting at or before it (notes before bar 0 go to bar 0)."""
    idx = np.searchsorted(quantize(bar_start), quantize(onset), side="right") - 1
    return np.maximum(idx, 0).astype(np.int32)


# --- plain arrays (MIDI, note lists) ---------------------------------------------------------------


def table_from_arrays(
    onset: np.ndarray,
    duration: np.ndarray,
    pitch: np.ndarray,
    bar_start: np.ndarray | None = None,
    bar_dur: np.ndarray | None = None,
    ts_num: np.ndarray | int = 4,
    ts_den: np.ndarray | int = 4,
    split_at_barlines: bool = True,
) -> tuple[ScoreTable, np.ndarray]:
    """An unlabelled table from plain note arrays (quarters), e.g. a quantized MIDI file.

    Without ``bar_start``, bars of ``ts_num/ts_den`` (scalars) cover the notes. With
    ``split_at_barlines`` a note crossing a barline becomes tied notes, one per bar (the schema's
    one node per notated note). Every label is -1. Returns the table and, per node, the index of
    the input note it comes from.
    """
    onset = np.asarray(onset, dtype=np.float64).reshape(-1)
    duration = np.asarray(duration, dtype=np.float64).reshape(-1)
    pitch = np.asarray(pitch).reshape(-1)
    if not (onset.size == duration.size == pitch.size):
        raise InputError(f"onset, duration and pitch differ in length ({onset.size}, {duration.size}, {pitch.size})")
    if onset.size == 0:
        raise InputError("no notes")
    if np.any(duration <= 0) or not np.all(np.isfinite(onset)) or np.any(onset < 0):
        raise InputError("notes need finite onsets >= 0 and durations > 0 (quarters)")
    if np.any((pitch < 0) | (pitch > 127)):
        raise InputError("MIDI pitches must be in 0..127")
    if bar_start is None:
        bar_start, bar_dur, ts_num, ts_den = bars(float((onset + duration).max()), int(ts_num), int(ts_den))
    bar_start = np.asarray(bar_start, dtype=np.float64).reshape(-1)
    b = bar_start.size
    ts_num = np.broadcast_to(np.asarray(ts_num, dtype=np.int16), (b,)).copy()
    ts_den = np.broadcast_to(np.asarray(ts_den, dtype=np.int16), (b,)).copy()
    if bar_dur is None:
        bar_dur = np.append(np.diff(bar_start), 4.0 * ts_num[-1] / ts_den[-1])
    bar_dur = np.asarray(bar_dur, dtype=np.float64).reshape(-1)

    source = np.arange(onset.size)
    tie_prev = np.zeros(onset.size, dtype=bool)
    tie_next = np.zeros(onset.size, dtype=bool)
    if split_at_barlines:
        onset, duration, source, tie_prev, tie_next = _split_at_barlines(onset, duration, bar_start)
    pitch = pitch.astype(np.int16)[source]
    order = np.lexsort((pitch, onset))
    n = onset.size
    unknown = np.full(n, UNKNOWN, dtype=np.int16)
    empty_f, empty_i = np.zeros(0, np.float64), np.zeros(0, np.int16)
    table = ScoreTable(
        onset=onset[order],
        duration=duration[order],
        pitch=pitch[order],
        staff=unknown.copy(),
        voice=unknown.copy(),
        spelling=unknown.copy(),
        tie_prev=tie_prev[order],
        tie_next=tie_next[order],
        bar=assign_bars(onset[order], bar_start),
        key=unknown.copy(),
        clef=unknown.copy(),
        stem=unknown.copy(),
        octave_shift=unknown.copy(),
        note_type=unknown.copy(),
        dots=unknown.copy(),
        tuplet_actual=np.zeros(n, np.int16),
        bar_start=bar_start,
        bar_dur=bar_dur,
        ts_num=ts_num,
        ts_den=ts_den,
        grace_onset=empty_f,
        grace_pitch=empty_i,
        grace_staff=empty_i,
        grace_voice=empty_i,
        grace_spelling=empty_i,
    )
    return table, source[order]


def _split_at_barlines(
    onset: np.ndarray, duration: np.ndarray, bar_start: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cut every note at the barlines it crosses (vectorised); pieces are tied to each other."""
    q_bar = quantize(bar_start)
    q_on, q_off = quantize(onset), quantize(onset + duration)
    first = np.searchsorted(q_bar, q_on, side="right")  # the first barline after the onset
    last = np.searchsorted(q_bar, q_off, side="left")  # barlines strictly before the offset
    pieces = np.maximum(last - first, 0) + 1
    source = np.repeat(np.arange(onset.size), pieces)
    k = np.arange(source.size) - np.repeat(np.cumsum(pieces) - pieces, pieces)  # piece number within its note
    cut = first[source] + k  # barline index ending piece k (if any)
    starts = np.where(k == 0, q_on[source], q_bar[np.minimum(cut - 1, q_bar.size - 1)])
    ends = np.where(k == pieces[source] - 1, q_off[source], q_bar[np.minimum(cut, q_bar.size - 1)])
    new_onset = np.where(k == 0, onset[source], starts / TICKS_PER_QUARTER)
    new_duration = (ends - starts) / TICKS_PER_QUARTER
    new_duration = np.where(pieces[source] == 1, duration[source], new_duration)
    return new_onset, new_duration, source, k > 0, k < pieces[source] - 1
