"""Score export (EngravingGNN paper §2.7, Fig. 2 "export"): a post-processed piece to MusicXML, MEI and SVG.

:func:`build_part` turns a piece and its post-processed result (:mod:`.postprocess`) into one
partitura ``Part`` with two staves: measures and time signatures from the bar arrays, one key
signature per bar (written where it changes), the initial clefs and the clef changes, notes with
their spelling (the octave follows from the MIDI pitch and the spelled step, so Cb and B# land in
the right octave), staff, voice, stem, symbolic duration (type, dots, tuplet ratio), ties,
tuplet brackets, rests, and grace notes chained before their principal note.

Writing goes through partitura's writers, then fixes what they get wrong or leave out
(partitura 1.9), on the XML with lxml:

- MusicXML: partitura writes ``<staves>`` again, with a wrong count, at every mid-piece clef
  change (only the first, ``2``, is kept); it writes no ``<accidental>`` (renderers then show
  none), no ``<beam>`` and no ``<octave-shift>`` — all three are added (octave shifts as
  ``direction`` elements before the first and after the last note of each bracket; MusicXML
  pitches stay the sounding pitches, as the format says).
- MEI: partitura chords a grace note with its principal note and puts mid-piece clefs before
  every note of that onset, in any staff, so the MEI part is built without them and the grace
  notes (``grace="acc"``) and clef changes are inserted into the right layer; key and meter
  changes get MEI 4's ``key.sig``/``meter.count`` attributes (partitura writes ``sig``/``count``,
  which nobody reads); layers are numbered per staff from 1; accidentals are rewritten as
  ``@accid`` (shown) / ``@accid.ges`` (implied) from the post-processed decision; beams are
  wrapped where they nest with the tuplets. Octave shifts are **not** written to MEI: MEI notes
  under ``<octave>`` carry the written octave, and partitura's MEI reader would then read wrong
  pitches (it ignores ``@oct.ges``), so the MEI keeps sounding pitches without brackets.

Times are the result's notated times (``postprocess.notated_piece``: the piece's, with rounded
triplets snapped back). Every file is written under a temporary name and read back with
``partitura.load_score``; the notes read back (count, MIDI pitch, onset and tied duration in
quarters, staff) and the number of grace notes must equal what was written, or
:class:`ExportError` is raised and nothing (not even an older file) is left at the target path:
export never writes a score that partitura cannot read back. :func:`render_svg` renders the first
pages with verovio (its bundled fonts: no network).
"""

from __future__ import annotations

import math
import os
import warnings
from collections import defaultdict
from pathlib import Path

import numpy as np
import partitura
import partitura.score as ps
import verovio
from lxml import etree
from partitura.io.exportmusicxml import DOCTYPE as MUSICXML_DOCTYPE

from overseer.engraving import postprocess as pp
from overseer.engraving import schema
from overseer.engraving.data.graph import TICKS_PER_QUARTER, quantize
from overseer.io import atomic_file, write_text

FORMATS = ("musicxml", "mei")
SUFFIX = {"musicxml": ".musicxml", "mei": ".mei"}
STEMS = ("up", "down", None)
# octave_shift class -> MusicXML octave-shift (type, size) and its placement
OTTAVA = {1: ("down", 8, "above"), 2: ("up", 8, "below"), 3: ("down", 15, "above")}
MUSICXML_ACCIDENTAL = {-2: "flat-flat", -1: "flat", 0: "natural", 1: "sharp", 2: "double-sharp"}
MEI_ACCID = {-2: "ff", -1: "f", 0: "n", 1: "s", 2: "ss"}
MEI_NS = "http://www.music-encoding.org/ns/mei"
XML_ID = "{http://www.w3.org/XML/1998/namespace}id"
SVG_OPTIONS = {"pageWidth": 2100, "pageHeight": 2970, "scale": 40, "footer": "none", "header": "none"}
ONSET_TOL = 1 / 512  # quarters: note arrays hold float32; generic ratios of off-grid lengths are near, not exact


class ExportError(RuntimeError):
    """A written score did not read back as written (or could not be read at all)."""


# --- building the partitura part ---------------------------------------------------------------------------


class _Timeline:
    """Quarter-note ticks (``TICKS_PER_QUARTER``) to partitura divisions, shifted to start at 0."""

    def __init__(self, piece: dict, res: dict):
        self.origin = int(quantize(piece["bar_start"][0]))
        g = math.gcd(TICKS_PER_QUARTER, self.origin)
        for name, arrays in (("bar_", piece), ("", piece), ("rest_", res)):
            for key in ("start", "dur") if name == "bar_" else ("onset", "duration"):
                arr = quantize(arrays[f"{name}{key}"])
                if arr.size:
                    g = math.gcd(g, int(np.gcd.reduce(np.abs(arr))))
        self.step = g  # every time and length is a multiple of it
        self.divs = TICKS_PER_QUARTER // g

    def at(self, quarters: float) -> int:
        """Division of a time in quarters (absolute)."""
        return (int(quantize(quarters)) - self.origin) // self.step

    def length(self, quarters: float) -> int:
        return int(quantize(quarters)) // self.step


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
    piece = pp.notated_piece(piece, res)
    tl = _Timeline(piece, res)
    part = ps.Part("P1", "Piano", quarter_duration=tl.divs)
    _add_bars(part, piece, res, tl)
    for s, onset, sign, note in zip(
        res["clef_staff"], res["clef_onset"], res["clef_sign"], res["clef_note"], strict=True
    ):
        if note < 0 or clef_changes:
            name = schema.NODE_TASKS["clef"][int(sign)]
            part.add(ps.Clef(staff=int(s), sign=name, line=pp.CLEF_LINES[name], octave_change=None), tl.at(onset))
    offset = voice_offset(res)
    heads, tails = _add_notes(part, piece, res, tl, offset, split_dots)
    rests = _add_rests(part, res, tl, offset)
    _add_tuplets(part, res, heads, tails, rests)
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


def _note_pieces(res: dict, i: int, split_dots: bool) -> list[tuple[dict, object]]:
    """(symbolic duration, length in quarters or None = the rest of the note) of the written pieces of note ``i``.

    With ``split_dots`` a note of two or three dots is written as a one-dot note tied to one of a
    type two steps shorter (partitura's MEI reader adds each dot as half of the value so far).
    """
    t, d = int(res["note_type"][i]), int(res["dots"][i])
    a, m = int(res["tuplet_actual"][i]), int(res["tuplet_normal"][i])
    if not split_dots or d < 2 or t + 2 >= len(schema.NOTE_TYPES):
        return [(_symbolic(t, d, a, m), None)]
    return [(_symbolic(t, 1, a, m), pp.symbol_value(t, 1, a, m)), (_symbolic(t + 2, d - 2, a, m), None)]


def _add_notes(
    part: ps.Part, piece: dict, res: dict, tl: _Timeline, offset: int, split_dots: bool
) -> tuple[list[ps.Note], list[ps.Note]]:
    """Add every node; returns its first and last written note (they differ for split notes)."""
    heads, tails = [], []
    for i in range(piece["onset"].size):
        step, alter, octave = pp.spelled_pitch(res["spelling"][i], piece["pitch"][i])
        staff = int(res["staff"][i])
        start = tl.at(piece["onset"][i])
        end = start + tl.length(piece["duration"][i])
        written = []
        for k, (sym, length) in enumerate(_note_pieces(res, i, split_dots)):
            note = ps.Note(
                step=step,
                octave=octave,
                alter=alter or None,
                id=f"n{i}" if k == 0 else f"n{i}x{k}",
                voice=int(res["voice"][i]) + (staff - 1) * offset,
                staff=staff,
                symbolic_duration=sym,
                stem_direction=STEMS[int(res["stem"][i])],
            )
            stop = end if length is None else start + tl.length(float(length))
            part.add(note, start, stop)
            if written:
                written[-1].tie_next, note.tie_prev = note, written[-1]
            written.append(note)
            start = stop
        heads.append(written[0])
        tails.append(written[-1])
    # ties: a node with tie_next continues in the node of the same pitch that starts at its offset
    waiting = defaultdict(list)
    on = quantize(piece["onset"])
    for j in np.flatnonzero(piece["tie_prev"]):
        waiting[(int(piece["pitch"][j]), int(on[j]))].append(int(j))
    off = quantize(np.asarray(piece["onset"]) + np.asarray(piece["duration"]))
    for i in np.flatnonzero(piece["tie_next"]):
        cands = waiting.get((int(piece["pitch"][i]), int(off[i])))
        if cands:
            j = cands.pop(0)
            tails[i].tie_next, heads[j].tie_prev = heads[j], tails[i]
    return heads, tails


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


def _add_tuplets(part: ps.Part, res: dict, heads: list, tails: list, rests: list) -> None:
    members = defaultdict(list)  # group -> (first written element, last written element)
    _, first = np.unique(res["chord"], return_index=True)
    for i in first:
        if res["tuplet_group"][i] >= 0:
            members[int(res["tuplet_group"][i])].append((heads[i], tails[i]))
    for j in np.flatnonzero(res["rest_tuplet_group"] >= 0):
        members[int(res["rest_tuplet_group"][j])].append((rests[j], rests[j]))
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
        step, alter, octave = pp.spelled_pitch(res["grace_spelling"][g], piece["grace_pitch"][g])
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


# --- MusicXML ---------------------------------------------------------------------------------------------------


def _parse(data: bytes) -> etree._Element:
    parser = etree.XMLParser(remove_blank_text=True, resolve_entities=False, no_network=True)
    return etree.fromstring(data, parser)


def _insert_before_any(note_el: etree._Element, new: etree._Element, before: tuple[str, ...]) -> None:
    """Insert ``new`` as a child of ``note_el`` before its first child named in ``before`` (else at the end)."""
    for k, child in enumerate(note_el):
        if etree.QName(child).localname in before:
            note_el.insert(k, new)
            return
    note_el.append(new)


def _beam_roles(piece: dict, res: dict) -> dict[int, str]:
    """Note index -> begin/continue/end within its beam."""
    roles = {}
    on = quantize(piece["onset"])
    for gid in np.unique(res["beam"][res["beam"] >= 0]):
        idx = np.flatnonzero(res["beam"] == gid)
        starts = np.unique(on[idx])
        for i in idx:
            k = np.searchsorted(starts, on[i])
            roles[int(i)] = "begin" if k == 0 else ("end" if k == starts.size - 1 else "continue")
    return roles


def musicxml_bytes(piece: dict, res: dict) -> bytes:
    """MusicXML of a post-processed piece: partitura's writer plus the fixes of the module docstring."""
    piece = pp.notated_piece(piece, res)
    part = build_part(piece, res)
    root = _parse(partitura.save_musicxml(part))
    staves = root.findall(".//staves")
    for k, el in enumerate(staves):
        if k == 0:
            el.text = "2"
        else:
            el.getparent().remove(el)
    by_id = {el.get("id"): el for el in root.iter("note") if el.get("id")}
    after_type = ("time-modification", "stem", "notehead", "notehead-text", "staff", "beam", "notations", "lyric")
    for i in np.flatnonzero(res["show_accidental"]):
        _, alter, _ = pp.spelled_pitch(res["spelling"][i], piece["pitch"][i])
        acc = etree.Element("accidental")
        acc.text = MUSICXML_ACCIDENTAL[alter]
        _insert_before_any(by_id[f"n{i}"], acc, after_type)
    for g in np.flatnonzero(res["grace_show_accidental"]):
        if f"g{g}" in by_id:
            _, alter, _ = pp.spelled_pitch(res["grace_spelling"][g], piece["grace_pitch"][g])
            acc = etree.Element("accidental")
            acc.text = MUSICXML_ACCIDENTAL[alter]
            _insert_before_any(by_id[f"g{g}"], acc, after_type)
    for i, role in _beam_roles(piece, res).items():
        if _is_chord_member(by_id[f"n{i}"]):
            continue  # a chord's beam goes on its first note only
        beam = etree.Element("beam", number="1")
        beam.text = role
        _insert_before_any(by_id[f"n{i}"], beam, ("notations", "lyric", "play"))
    for s, typ, first, last in zip(
        res["ottava_staff"], res["ottava_type"], res["ottava_first"], res["ottava_last"], strict=True
    ):
        _add_octave_shift(by_id[f"n{first}"], by_id[f"n{last}"], int(s), int(typ))
    return etree.tostring(
        root.getroottree(), encoding="UTF-8", xml_declaration=True, pretty_print=True, doctype=MUSICXML_DOCTYPE
    )


def _is_chord_member(el: etree._Element) -> bool:
    return el.tag == "note" and el.find("chord") is not None


def _add_octave_shift(first: etree._Element, last: etree._Element, staff: int, typ: int) -> None:
    """Octave-shift start before the chord of ``first``, stop after the chord of ``last``."""
    kind, size, placement = OTTAVA[typ]
    while _is_chord_member(first) and first.getprevious() is not None:
        first = first.getprevious()
    while last.getnext() is not None and _is_chord_member(last.getnext()):
        last = last.getnext()

    def direction(shift_type: str, where: str | None) -> etree._Element:
        d = etree.Element("direction", placement=where) if where else etree.Element("direction")
        dt = etree.SubElement(d, "direction-type")
        etree.SubElement(dt, "octave-shift", type=shift_type, size=str(size), number=str(staff))
        etree.SubElement(d, "staff").text = str(staff)
        return d

    first.addprevious(direction(kind, placement))
    last.addnext(direction("stop", None))


# --- MEI -----------------------------------------------------------------------------------------------------------


def _mei(tag: str) -> str:
    return f"{{{MEI_NS}}}{tag}"


def mei_bytes(piece: dict, res: dict) -> bytes:
    """MEI of a post-processed piece: partitura's writer plus the fixes of the module docstring."""
    piece = pp.notated_piece(piece, res)
    part = build_part(piece, res, graces=False, clef_changes=False, split_dots=True)
    root = _parse(partitura.save_mei(part))
    offset = voice_offset(res)
    for staff_el in root.iter(_mei("staff")):
        n = staff_el.get("n")
        for note in staff_el.iter(_mei("note")):
            if note.get("staff") == n:
                del note.attrib["staff"]
        for layer in staff_el.iter(_mei("layer")):
            layer.set("n", str(int(layer.get("n")) - (int(n) - 1) * offset))
    # key changes: MEI 4 reads key.sig; mode and pname are dropped (the mode is not predicted, and
    # partitura writes "db" and the like where MEI wants a letter)
    renames = {"sig": "key.sig", "count": "meter.count", "unit": "meter.unit"}
    for sd in root.iter(_mei("scoreDef")):
        if sd.getparent().tag == _mei("section"):
            for old, new in renames.items():
                if old in sd.attrib:
                    sd.set(new, sd.attrib.pop(old))
            for attr in ("mode", "pname"):
                sd.attrib.pop(attr, None)
    for ks in root.iter(_mei("keySig")):
        for attr in ("mode", "pname"):
            ks.attrib.pop(attr, None)
    for chord in root.iter(_mei("chord")):  # partitura gives a chord its type but not its dots
        dots = chord[0].get("dots") if len(chord) else None
        if dots is not None:
            chord.set("dots", dots)
            for member in chord:
                member.attrib.pop("dots", None)
    by_id = {el.get(XML_ID): el for el in root.iter(_mei("note"), _mei("rest"))}
    _mei_ties(part, by_id)
    for i in range(piece["onset"].size):
        _, alter, _ = pp.spelled_pitch(res["spelling"][i], piece["pitch"][i])
        _set_mei_accid(by_id[f"n{i}"], alter, bool(res["show_accidental"][i]))
        for k in (1, 2):
            if f"n{i}x{k}" in by_id:
                _set_mei_accid(by_id[f"n{i}x{k}"], alter, False)
    _wrap_mei_beams(res, by_id)
    _insert_mei_graces(piece, res, by_id)
    _insert_mei_clefs(
        root, piece, res, {e.id: e.start.t for e in part.iter_all(ps.GenericNote, include_subclasses=True)}
    )
    return etree.tostring(root.getroottree(), encoding="UTF-8", xml_declaration=True, pretty_print=True)


def _mei_ties(part: ps.Part, by_id: dict) -> None:
    """Ties as ``<tie startid endid>`` control events: partitura's ``@tie`` only pairs notes within one layer."""
    for el in by_id.values():
        el.attrib.pop("tie", None)
    for note in part.iter_all(ps.Note):
        if note.tie_next is not None:
            measure = next(by_id[note.id].iterancestors(_mei("measure")))
            tie = etree.SubElement(measure, _mei("tie"), startid=f"#{note.id}", endid=f"#{note.tie_next.id}")
            tie.set(XML_ID, f"tie-{note.id}")


def _insert_mei_clefs(root: etree._Element, piece: dict, res: dict, starts: dict[str, int]) -> None:
    """A clef change goes into every layer of its staff, before the layer's first element at or after it.

    (verovio applies a clef inside a layer to that layer only.)
    """
    measures = {m.get("n"): m for m in root.iter(_mei("measure"))}
    for s, sign, note in zip(res["clef_staff"], res["clef_sign"], res["clef_note"], strict=True):
        if note < 0:
            continue
        name = schema.NODE_TASKS["clef"][int(sign)]
        t = starts[f"n{note}"]
        measure = measures[str(int(piece["bar"][note]) + 1)]
        for staff_el in measure.iterchildren(_mei("staff")):
            if staff_el.get("n") != str(s):
                continue
            for layer in staff_el.iterchildren(_mei("layer")):
                clef = etree.Element(_mei("clef"), shape=name, line=str(pp.CLEF_LINES[name]))
                clef.set(XML_ID, f"clef-s{s}-n{note}-l{layer.get('n')}")
                later = (
                    el
                    for el in layer.iter(_mei("note"), _mei("rest"))
                    if el.get("grace") is None and starts.get(el.get(XML_ID), -1) >= t
                )
                target = next(later, None)
                if target is None:
                    layer.append(clef)
                    continue
                target = _mei_top(target)
                while target.getprevious() is not None and target.getprevious().get("grace") is not None:
                    target = target.getprevious()
                target.addprevious(clef)


def _set_mei_accid(note: etree._Element, alter: int, show: bool) -> None:
    for child in note.findall(_mei("accid")):
        note.remove(child)
    for attr in ("accid", "accid.ges"):
        note.attrib.pop(attr, None)
    if show:
        note.set("accid", MEI_ACCID[alter])
    elif alter:
        note.set("accid.ges", MEI_ACCID[alter])


def _mei_top(note: etree._Element) -> etree._Element:
    """The note, or its chord when it is in one (what sits in a layer, beam or tuplet)."""
    parent = note.getparent()
    return parent if parent is not None and parent.tag == _mei("chord") else note


def _insert_mei_graces(piece: dict, res: dict, by_id: dict) -> None:
    for g, p in enumerate(res["grace_principal"]):
        if p < 0:
            continue
        step, alter, octave = pp.spelled_pitch(res["grace_spelling"][g], piece["grace_pitch"][g])
        el = etree.Element(_mei("note"), grace="acc", dur="8", pname=step.lower(), oct=str(octave))
        el.set(XML_ID, f"g{g}")
        _set_mei_accid(el, alter, bool(res["grace_show_accidental"][g]))
        _mei_top(by_id[f"n{p}"]).addprevious(el)  # graces of one principal stay in input order


def _wrap_mei_beams(res: dict, by_id: dict) -> None:
    """Wrap each beam's elements in ``<beam>`` where they are contiguous siblings (else leave them flagged)."""
    for gid in np.unique(res["beam"][res["beam"] >= 0]):
        idx = np.flatnonzero(res["beam"] == gid)
        ids = {name for i in idx for name in (f"n{i}", f"n{i}x1") if name in by_id}
        tops = []
        for name in sorted(ids, key=lambda x: (by_id[x].getparent().index(by_id[x]), x)):
            top = _mei_top(by_id[name])
            if top not in tops:
                tops.append(top)
        # lift to the level of the highest common parent (e.g. a beam over two triplets)
        parents = {t.getparent() for t in tops}
        while len(parents) > 1:
            lifted = []
            for t in tops:
                up = t if t.getparent().tag == _mei("layer") else t.getparent()
                if up not in lifted:
                    lifted.append(up)
            if lifted == tops:
                break
            tops, parents = lifted, {t.getparent() for t in lifted}
        if len(parents) != 1:
            continue
        parent = parents.pop()
        positions = sorted(parent.index(t) for t in tops)
        inside = {n.get(XML_ID) for t in tops for n in t.iter(_mei("note"), _mei("rest"))}
        if positions != list(range(positions[0], positions[-1] + 1)) or inside != ids:
            continue
        beam = etree.Element(_mei("beam"))
        beam.set(XML_ID, f"beam-{gid}")
        parent.insert(positions[0], beam)
        for t in sorted(tops, key=parent.index):
            beam.append(t)


# --- writing with a read-back check ------------------------------------------------------------------------------


def _note_table(parts: list) -> tuple[np.ndarray, int]:
    """Sorted (onset, tied duration, pitch, staff) rows of the non-grace notes, and the grace-note count."""
    rows = []
    n_grace = 0
    for part in parts:
        na = part.note_array(include_staff=True)
        keep = na["duration_quarter"] > 0
        rows.append(
            np.stack(
                [na["onset_quarter"][keep], na["duration_quarter"][keep], na["pitch"][keep], na["staff"][keep]], axis=1
            ).astype(np.float64)
        )
        n_grace += sum(1 for _ in part.iter_all(ps.GraceNote))
    table = np.concatenate(rows) if rows else np.zeros((0, 4))
    # sort on onsets rounded to the tolerance, so that a near-equal onset cannot reorder the rows
    key = np.round(table / ONSET_TOL) * ONSET_TOL
    return table[np.lexsort(key.T[::-1])], n_grace


def check_readback(path: str | os.PathLike, expected: tuple[np.ndarray, int]) -> None:
    """Read ``path`` with partitura; raise :class:`ExportError` unless its notes equal ``expected``."""
    verovio.enableLog(verovio.LOG_ERROR)  # partitura's MEI reader goes through verovio
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            score = partitura.load_score(os.fspath(path))
    except Exception as exc:  # partitura raises anything from a bad file
        raise ExportError(f"{path}: partitura cannot read the written score back ({exc})") from exc
    got, n_grace = _note_table(list(score.parts))
    want, want_grace = expected
    if got.shape != want.shape:
        raise ExportError(f"{path}: read back {got.shape[0]} notes, wrote {want.shape[0]}")
    bad = ~np.isclose(got, want, rtol=1e-6, atol=ONSET_TOL).all(axis=1)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise ExportError(
            f"{path}: {int(bad.sum())} notes differ when read back, first (onset, duration, pitch, staff) "
            f"{tuple(got[k])} != {tuple(want[k])}"
        )
    if n_grace != want_grace:
        raise ExportError(f"{path}: read back {n_grace} grace notes, wrote {want_grace}")


def _write_checked(path: Path, data: bytes, expected: tuple[np.ndarray, int]) -> Path:
    done = False
    try:
        with atomic_file(path) as tmp:
            tmp.write_bytes(data)
            check_readback(tmp, expected)
        done = True
    finally:
        if not done:
            path.unlink(missing_ok=True)  # never leave an older, unchecked score at the target
    return path


def write_musicxml(piece: dict, res: dict, path: str | os.PathLike) -> Path:
    """Write and check a MusicXML file (module docstring)."""
    expected = _note_table([build_part(piece, res)])
    return _write_checked(Path(path), musicxml_bytes(piece, res), expected)


def write_mei(piece: dict, res: dict, path: str | os.PathLike) -> Path:
    """Write and check an MEI file (module docstring); grace notes are inserted into the MEI itself."""
    table, _ = _note_table([build_part(piece, res, graces=False, split_dots=True)])
    n_grace = int((res["grace_principal"] >= 0).sum())
    return _write_checked(Path(path), mei_bytes(piece, res), (table, n_grace))


def render_svg(
    score_path: str | os.PathLike, out_dir: str | os.PathLike, *, pages: int = 2, options: dict | None = None
) -> list[Path]:
    """Render the first ``pages`` pages of a MusicXML/MEI file with verovio to ``page-1.svg``, ``page-2.svg``, ...

    Older ``page-k.svg`` files beyond the pages written are removed.
    """
    verovio.enableLog(verovio.LOG_ERROR)
    tk = verovio.toolkit()
    tk.setOptions({**SVG_OPTIONS, **(options or {})})
    if not tk.loadFile(os.fspath(score_path)):
        raise ExportError(f"{score_path}: verovio cannot load the score")
    out_dir = Path(out_dir)
    written = []
    for k in range(1, min(int(pages), tk.getPageCount()) + 1):
        written.append(write_text(out_dir / f"page-{k}.svg", tk.renderToSVG(k)))
    for old in out_dir.glob("page-*.svg"):
        if old not in written and old.stem.removeprefix("page-").isdigit():
            old.unlink()
    return written


def export_score(
    piece: dict,
    res: dict,
    out_dir: str | os.PathLike,
    name: str,
    *,
    formats: tuple[str, ...] = FORMATS,
    pages: int = 2,
    svg_options: dict | None = None,
) -> dict[str, Path | list[Path]]:
    """Write ``<name>.musicxml`` / ``<name>.mei`` (checked) and ``page-k.svg`` into ``out_dir``.

    SVG pages are rendered from the MusicXML when it is written (it carries the octave-shift
    brackets), else from the MEI; ``pages=0`` renders nothing.
    """
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown export formats {sorted(unknown)}; expected some of {FORMATS}")
    pp.check_result(piece, res)
    out_dir = Path(out_dir)
    written: dict[str, Path | list[Path]] = {}
    writers = {"musicxml": write_musicxml, "mei": write_mei}
    for fmt in FORMATS:
        if fmt in formats:
            written[fmt] = writers[fmt](piece, res, out_dir / f"{name}{SUFFIX[fmt]}")
    source = written.get("musicxml", written.get("mei"))
    written["svg"] = render_svg(source, out_dir, pages=pages, options=svg_options) if source and pages > 0 else []
    return written
