"""MusicXML: partitura's writer, then the fixes it needs (partitura 1.9), on the XML with lxml.

partitura writes ``<staves>`` again, with a wrong count, at every mid-piece clef change (only the
first, ``2``, is kept); it writes no ``<accidental>`` (renderers then show none), no ``<beam>``
and no ``<octave-shift>`` — all three are added (octave shifts as ``direction`` elements before
the first and after the last note of each bracket; MusicXML pitches stay the sounding pitches, as
the format says).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import partitura
import partitura.score as ps
from lxml import etree
from partitura.io.exportmusicxml import DOCTYPE as MUSICXML_DOCTYPE

from overseer.engraving import notation as nt
from overseer.engraving import schema
from overseer.engraving.export.part import build_part, parse_xml
from overseer.engraving.export.readback import note_table, write_checked

MUSICXML_ACCIDENTAL = dict(zip(schema.ALTERS, ("flat-flat", "flat", "natural", "sharp", "double-sharp"), strict=True))
_AFTER_TYPE = ("time-modification", "stem", "notehead", "notehead-text", "staff", "beam", "notations", "lyric")


def musicxml_bytes(piece: dict, res: dict) -> bytes:
    """MusicXML of a post-processed piece (module docstring)."""
    piece = nt.notated_piece(piece, res)
    return musicxml_from_part(build_part(piece, res), piece, res)


def write_musicxml(piece: dict, res: dict, path: str | os.PathLike) -> Path:
    """Write a MusicXML file, checked to read back as the part it was written from."""
    piece = nt.notated_piece(piece, res)
    part = build_part(piece, res)
    expected = note_table([part])
    return write_checked(path, musicxml_from_part(part, piece, res), expected)


def musicxml_from_part(part: ps.Part, piece: dict, res: dict) -> bytes:
    """partitura's MusicXML of ``part`` (built from ``piece``, its notated times, and ``res``), fixed up."""
    root = parse_xml(partitura.save_musicxml(part))
    for k, el in enumerate(root.findall(".//staves")):
        if k == 0:
            el.text = "2"
        else:
            el.getparent().remove(el)
    by_id = {el.get("id"): el for el in root.iter("note") if el.get("id")}
    for i in np.flatnonzero(res["show_accidental"]):
        _, alter, _ = nt.spelled_pitch(res["spelling"][i], piece["pitch"][i])
        _add_accidental(by_id[f"n{i}"], alter)
    for g in np.flatnonzero(res["grace_show_accidental"]):
        if f"g{g}" in by_id:
            _, alter, _ = nt.spelled_pitch(res["grace_spelling"][g], piece["grace_pitch"][g])
            _add_accidental(by_id[f"g{g}"], alter)
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


def _insert_before_any(note_el: etree._Element, new: etree._Element, before: tuple[str, ...]) -> None:
    """Insert ``new`` as a child of ``note_el`` before its first child named in ``before`` (else at the end)."""
    for k, child in enumerate(note_el):
        if etree.QName(child).localname in before:
            note_el.insert(k, new)
            return
    note_el.append(new)


def _add_accidental(note_el: etree._Element, alter: int) -> None:
    acc = etree.Element("accidental")
    acc.text = MUSICXML_ACCIDENTAL[alter]
    _insert_before_any(note_el, acc, _AFTER_TYPE)


def _beam_roles(piece: dict, res: dict) -> dict[int, str]:
    """Note index -> begin/continue/end within its beam."""
    roles = {}
    on = nt.quantize(piece["onset"])
    for gid in np.unique(res["beam"][res["beam"] >= 0]):
        idx = np.flatnonzero(res["beam"] == gid)
        starts = np.unique(on[idx])
        for i in idx:
            k = np.searchsorted(starts, on[i])
            roles[int(i)] = "begin" if k == 0 else ("end" if k == starts.size - 1 else "continue")
    return roles


def _is_chord_member(el: etree._Element) -> bool:
    return el.tag == "note" and el.find("chord") is not None


def _add_octave_shift(first: etree._Element, last: etree._Element, staff: int, typ: int) -> None:
    """Octave-shift start before the chord of ``first``, stop after the chord of ``last``."""
    kind, size, placement = nt.OTTAVA[typ]
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
