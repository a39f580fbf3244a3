"""MEI: partitura's writer, then the fixes it needs (partitura 1.9), on the XML with lxml.

partitura chords a grace note with its principal note and puts mid-piece clefs before every note
of that onset, in any staff, so the MEI part is built without them and the grace notes
(``grace="acc"``) and clef changes are inserted into the right layer; key and meter changes get
MEI 4's ``key.sig``/``meter.count`` attributes (partitura writes ``sig``/``count``, which nobody
reads); layers are numbered per staff from 1; ties become ``<tie>`` control events; accidentals
are rewritten as ``@accid`` (shown) / ``@accid.ges`` (implied) from the post-processed decision;
beams are wrapped where they nest with the tuplets. Notes of two or more dots are written as tied
notes (partitura's MEI reader misreads them). Octave shifts are **not** written: MEI notes under
``<octave>`` carry the written octave, and partitura's MEI reader would then read wrong pitches
(it ignores ``@oct.ges``), so the MEI keeps sounding pitches without brackets.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import partitura
import partitura.score as ps
from lxml import etree

from overseer.engraving import notation as nt
from overseer.engraving import schema
from overseer.engraving.export.part import build_part, parse_xml, voice_offset
from overseer.engraving.export.readback import note_table, write_checked

MEI_NS = "http://www.music-encoding.org/ns/mei"
XML_ID = "{http://www.w3.org/XML/1998/namespace}id"
MEI_ACCID = dict(zip(schema.ALTERS, ("ff", "f", "n", "s", "ss"), strict=True))
_TIED_PART = re.compile(r"n(\d+)(?:t\d+x\d+|t\d+|x\d+)")  # written parts of a note after its first (part.py)


def _mei(tag: str) -> str:
    return f"{{{MEI_NS}}}{tag}"


def mei_part(piece: dict, res: dict) -> ps.Part:
    """The part the MEI is written from: no grace notes or clef changes (inserted later), dots split."""
    return build_part(piece, res, graces=False, clef_changes=False, split_dots=True)


def mei_bytes(piece: dict, res: dict) -> bytes:
    """MEI of a post-processed piece (module docstring)."""
    piece = nt.notated_piece(piece, res)
    return mei_from_part(mei_part(piece, res), piece, res)


def write_mei(piece: dict, res: dict, path: str | os.PathLike) -> Path:
    """Write an MEI file, checked to read back as its part plus the grace notes inserted into the MEI."""
    piece = nt.notated_piece(piece, res)
    part = mei_part(piece, res)
    table, _ = note_table([part])
    expected = (table, int((res["grace_principal"] >= 0).sum()))
    return write_checked(path, mei_from_part(part, piece, res), expected)


def mei_from_part(part: ps.Part, piece: dict, res: dict) -> bytes:
    """partitura's MEI of ``part`` (:func:`mei_part` of ``piece``, its notated times, and ``res``), fixed up."""
    root = parse_xml(partitura.save_mei(part))
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
    tied_parts = defaultdict(list)  # note -> the ids of its tied parts (dots split: x1; tied symbols: t<k>)
    for name in by_id:
        found = _TIED_PART.fullmatch(name or "")
        if found:
            tied_parts[int(found[1])].append(name)
    for i in range(piece["onset"].size):
        _, alter, _ = nt.spelled_pitch(res["spelling"][i], piece["pitch"][i])
        _set_mei_accid(by_id[f"n{i}"], alter, bool(res["show_accidental"][i]))
        for name in tied_parts.get(i, ()):
            _set_mei_accid(by_id[name], alter, False)
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
                clef = etree.Element(_mei("clef"), shape=name, line=str(nt.CLEF_LINES[name]))
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
        step, alter, octave = nt.spelled_pitch(res["grace_spelling"][g], piece["grace_pitch"][g])
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
