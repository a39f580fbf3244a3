"""A post-processed piece as one two-staff partitura ``Part`` (what both writers start from).

Measures and time signatures from the bar arrays, one key signature per bar (written where it
changes), the initial clefs and the clef changes, notes with their spelling (the octave follows
from the MIDI pitch and the spelled step, so Cb and B# land in the right octave), staff, voice,
stem, symbolic duration (type, dots, tuplet ratio), ties, tuplet brackets, rests, and grace notes
chained before their principal note. A note that post-processing wrote as tied symbols (a
16-quarter note in a cadenza bar: ``split_*``) is its first symbol (id ``n<i>``) tied to one note
per further symbol (ids ``n<i>t<k>``); partitura reads the chain back as the one note.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
import partitura.score as ps
from lxml import etree

from overseer.engraving import notation as nt
from overseer.engraving import schema


class _Timeline:
    """Quarter-note ticks (``TICKS_PER_QUARTER``) to partitura divisions, shifted to start at 0."""

    def __init__(self, piece: dict, res: dict):
        self.origin = int(nt.quantize(piece["bar_start"][0]))
        g = math.gcd(nt.TICKS_PER_QUARTER, self.origin)
        for name, arrays in (("bar_", piece), ("", piece), ("rest_", res)):
            for key in ("start", "dur") if name == "bar_" else ("onset", "duration"):
                arr = nt.quantize(arrays[f"{name}{key}"])
                if arr.size:
                    g = math.gcd(g, int(np.gcd.reduce(np.abs(arr))))
        self.step = g  # every time and length is a multiple of it
        self.divs = nt.TICKS_PER_QUARTER // g

    def at(self, quarters: float) -> int:
        """Division of a time in quarters (absolute)."""
        return (int(nt.quantize(quarters)) - self.origin) // self.step

    def length(self, quarters: float) -> int:
        return int(nt.quantize(quarters)) // self.step


def parse_xml(data: bytes) -> etree._Element:
    """The root of a writer's XML, parsed without entities or network."""
    parser = etree.XMLParser(remove_blank_text=True, resolve_entities=False, no_network=True)
    return etree.fromstring(data, parser)


def voice_offset(res: dict) -> int:
    """Global voices: staff 1 uses 1..k, staff 2 starts at k + 1 (k = max(4, voices on staff 1))."""
    upper = np.r_[res["voice"][res["staff"] == 1], res["rest_voice"][res["rest_staff"] == 1]]
    return max(4, int(upper.max(initial=0)))


def _symbolic(note_type: int, dots: int, actual: int, normal: int) -> dict:
    sym: dict = {"type": schema.NOTE_TYPES[int(note_type)]}
    if dots:
        sym["dots"] = int(dots)
    if actual != normal:
        sym["actual_notes"], sym["normal_notes"] = int(actual), int(normal)
    return sym


def build_part(
    piece: dict, res: dict, *, graces: bool = True, clef_changes: bool = True, split_dots: bool = False
) -> ps.Part:
    """One two-staff piano part from a piece and its post-processed result (module docstring).

    ``graces=False`` and ``clef_changes=False`` leave out what the MEI fixes insert themselves;
    ``split_dots`` writes notes of two or more dots as tied notes (see :func:`_note_pieces`).
    """
    piece = nt.notated_piece(piece, res)
    tl = _Timeline(piece, res)
    part = ps.Part("P1", "Piano", quarter_duration=tl.divs)
    _add_bars(part, piece, res, tl)
    for s, onset, sign, note in zip(
        res["clef_staff"], res["clef_onset"], res["clef_sign"], res["clef_note"], strict=True
    ):
        if note < 0 or clef_changes:
            name = schema.NODE_TASKS["clef"][int(sign)]
            part.add(ps.Clef(staff=int(s), sign=name, line=nt.CLEF_LINES[name], octave_change=None), tl.at(onset))
    offset = voice_offset(res)
    heads, tails, continued = _add_notes(part, piece, res, tl, offset, split_dots)
    rests = _add_rests(part, res, tl, offset)
    _add_tuplets(part, res, heads, tails, rests, continued)
    if graces:
        _add_grace_notes(part, piece, res, heads)
    return part


def _add_bars(part: ps.Part, piece: dict, res: dict, tl: _Timeline) -> None:
    prev_ts, prev_key = None, None
    for b in range(piece["bar_start"].size):
        start = tl.at(piece["bar_start"][b])
        part.add(ps.Measure(number=b + 1, name=str(b + 1)), start, start + tl.length(piece["bar_dur"][b]))
        ts = (int(piece["ts_num"][b]), int(piece["ts_den"][b]))
        if ts != prev_ts:
            part.add(ps.TimeSignature(*ts), start)
            prev_ts = ts
        key = schema.KEY_FIFTHS[int(res["bar_key"][b])]
        if key != prev_key:
            part.add(ps.KeySignature(key, None), start)
            prev_key = key


def _symbol(res: dict, prefix: str, i: int) -> tuple[int, int, int, int]:
    """(type, dots, actual, normal) of note ``i`` (prefix "") or ``split_*`` row ``i`` (prefix "split_")."""
    return tuple(int(res[f"{prefix}{key}"][i]) for key in ("note_type", "dots", "tuplet_actual", "tuplet_normal"))


def _note_pieces(
    res: dict, i: int, split_dots: bool, tied: list[int] = ()
) -> list[tuple[dict, float | None, str, int | None]]:
    """The written pieces of note ``i``: (symbolic duration, length in quarters or None = to the note's
    end, id suffix, the ``split_*`` row it starts or None).

    The note's first symbol, then its tied continuation symbols (``tied``: its ``split_*`` rows). With
    ``split_dots`` a symbol of two or three dots is written as a one-dot note tied to one of a type
    two steps shorter (partitura's MEI reader adds each dot as half of the value so far).
    """
    first = float(res["split_onset"][tied[0]]) - float(res["onset"][i]) if len(tied) else None
    symbols = [(_symbol(res, "", i), first, "", None)]
    for k, j in enumerate(tied, start=1):
        length = None if k == len(tied) else float(res["split_duration"][j])
        symbols.append((_symbol(res, "split_", j), length, f"t{k}", j))
    out = []
    for (t, d, a, m), length, suffix, row in symbols:
        if split_dots and d >= 2 and t + 2 < len(schema.NOTE_TYPES):
            dotted = nt.symbol_value(t, 1, a, m)
            out.append((_symbolic(t, 1, a, m), float(dotted), suffix, row))
            tail = None if length is None else length - float(dotted)
            out.append((_symbolic(t + 2, d - 2, a, m), tail, f"{suffix}x1", None))
        else:
            out.append((_symbolic(t, d, a, m), length, suffix, row))
    return out


def _split_rows(res: dict) -> dict[int, list[int]]:
    """Note -> its ``split_*`` rows (tied continuation symbols), in time order."""
    rows: dict[int, list[int]] = defaultdict(list)
    if "split_note" in res:
        for j in np.argsort(np.asarray(res["split_onset"]), kind="stable"):
            rows[int(res["split_note"][j])].append(int(j))
    return rows


def _add_notes(
    part: ps.Part, piece: dict, res: dict, tl: _Timeline, offset: int, split_dots: bool
) -> tuple[list[ps.Note], list[ps.Note], dict[int, ps.Note]]:
    """Add every node; returns its first and last written note (they differ for split notes) and the
    written note of each tied continuation symbol (by ``split_*`` row)."""
    heads, tails, continued = [], [], {}
    split = _split_rows(res)
    for i in range(piece["onset"].size):
        step, alter, octave = nt.spelled_pitch(res["spelling"][i], piece["pitch"][i])
        staff = int(res["staff"][i])
        start = tl.at(piece["onset"][i])
        end = start + tl.length(piece["duration"][i])
        written = []
        for sym, length, suffix, row in _note_pieces(res, i, split_dots, split.get(i, [])):
            note = ps.Note(
                step=step,
                octave=octave,
                alter=alter or None,
                id=f"n{i}{suffix}",
                voice=int(res["voice"][i]) + (staff - 1) * offset,
                staff=staff,
                symbolic_duration=sym,
                stem_direction=nt.STEM_DIRECTIONS[int(res["stem"][i])],
            )
            stop = end if length is None else start + tl.length(float(length))
            part.add(note, start, stop)
            if written:
                written[-1].tie_next, note.tie_prev = note, written[-1]
            written.append(note)
            if row is not None:
                continued[row] = note
            start = stop
        heads.append(written[0])
        tails.append(written[-1])
    # ties: a node with tie_next continues in the node of the same pitch that starts at its offset
    waiting = defaultdict(list)
    on = nt.quantize(piece["onset"])
    for j in np.flatnonzero(piece["tie_prev"]):
        waiting[(int(piece["pitch"][j]), int(on[j]))].append(int(j))
    off = nt.quantize(np.asarray(piece["onset"]) + np.asarray(piece["duration"]))
    for i in np.flatnonzero(piece["tie_next"]):
        cands = waiting.get((int(piece["pitch"][i]), int(off[i])))
        if cands:
            j = cands.pop(0)
            tails[i].tie_next, heads[j].tie_prev = heads[j], tails[i]
    return heads, tails, continued


def _add_rests(part: ps.Part, res: dict, tl: _Timeline, offset: int) -> list[ps.Rest]:
    rests = []
    for j in range(res["rest_onset"].size):
        staff = int(res["rest_staff"][j])
        rest = ps.Rest(
            id=f"r{j}",
            voice=int(res["rest_voice"][j]) + (staff - 1) * offset,
            staff=staff,
            symbolic_duration=_symbolic(
                res["rest_note_type"][j],
                res["rest_dots"][j],
                res["rest_tuplet_actual"][j],
                res["rest_tuplet_normal"][j],
            ),
        )
        start = tl.at(res["rest_onset"][j])
        part.add(rest, start, start + tl.length(res["rest_duration"][j]))
        rests.append(rest)
    return rests


def _add_tuplets(part: ps.Part, res: dict, heads: list, tails: list, rests: list, continued: dict) -> None:
    members = defaultdict(list)  # group -> (first written element, last written element)
    _, first = np.unique(res["chord"], return_index=True)
    split = _split_rows(res)
    for i in first:
        if res["tuplet_group"][i] >= 0:  # a note written as tied symbols: its first symbol's bracket
            members[int(res["tuplet_group"][i])].append((heads[i], heads[i] if i in split else tails[i]))
    for j in np.flatnonzero(res["rest_tuplet_group"] >= 0):
        members[int(res["rest_tuplet_group"][j])].append((rests[j], rests[j]))
    chord_first = {int(i) for i in first}
    for j in np.flatnonzero(np.asarray(res.get("split_tuplet_group", ())) >= 0):
        if int(res["split_note"][j]) in chord_first:  # one bracket per chord, as for the first symbols
            members[int(res["split_tuplet_group"][j])].append((continued[int(j)], continued[int(j)]))
    for group in members.values():
        group.sort(key=lambda e: e[0].start.t)
        start, end = group[0][0], group[-1][1]
        actual, normal = start.symbolic_duration["actual_notes"], start.symbolic_duration["normal_notes"]
        tuplet = ps.Tuplet(start, end, actual_notes=actual, normal_notes=normal)
        part.add(tuplet, start.start.t, end.end.t)


def _add_grace_notes(part: ps.Part, piece: dict, res: dict, notes: list) -> None:
    chains = defaultdict(list)
    for g, p in enumerate(res["grace_principal"]):
        if p < 0:
            continue
        step, alter, octave = nt.spelled_pitch(res["grace_spelling"][g], piece["grace_pitch"][g])
        principal = notes[p]
        grace = ps.GraceNote(
            "appoggiatura",
            step=step,
            octave=octave,
            alter=alter or None,
            id=f"g{g}",
            voice=principal.voice,
            staff=principal.staff,
            symbolic_duration={"type": "eighth"},
        )
        part.add(grace, principal.start.t, principal.start.t)
        chains[int(p)].append(grace)
    for p, chain in chains.items():
        for a, b in zip(chain, [*chain[1:], notes[p]], strict=True):
            a.grace_next = b
            if isinstance(b, ps.GraceNote):
                b.grace_prev = a
