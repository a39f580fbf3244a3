"""Score export (EngravingGNN paper §2.7, Fig. 2 "export"): a post-processed piece to MusicXML, MEI and SVG.

One job per module:

- :mod:`.part` — the piece and its post-processed result (:mod:`..postprocess`) as one two-staff
  partitura ``Part``;
- :mod:`.musicxml`, :mod:`.mei` — partitura's writers plus the fixes each format needs;
- :mod:`.readback` — every file is written under a temporary name and read back with
  ``partitura.load_score``; it must hold the notes of the part it was written from, or
  :class:`ExportError` is raised and nothing is left at the target path: export never writes a
  score that partitura cannot read back;
- :mod:`.render` — the first pages as SVG with verovio.

Each writer builds its part once and uses it for both the bytes and the read-back check. Times are
the result's notated times (``notation.notated_piece``: the piece's, with rounded triplets
snapped back).
"""

from __future__ import annotations

import os
from pathlib import Path

from overseer.engraving import postprocess as pp
from overseer.engraving.export.mei import MEI_NS, mei_bytes, write_mei
from overseer.engraving.export.musicxml import musicxml_bytes, write_musicxml
from overseer.engraving.export.part import build_part, voice_offset
from overseer.engraving.export.readback import ExportError, check_readback, note_table
from overseer.engraving.export.render import SVG_OPTIONS, render_svg

__all__ = [
    "FORMATS",
    "MEI_NS",
    "SUFFIX",
    "SVG_OPTIONS",
    "ExportError",
    "build_part",
    "check_readback",
    "export_score",
    "mei_bytes",
    "musicxml_bytes",
    "note_table",
    "render_svg",
    "voice_offset",
    "write_mei",
    "write_musicxml",
]

FORMATS = ("musicxml", "mei")
SUFFIX = {"musicxml": ".musicxml", "mei": ".mei"}
_WRITERS = {"musicxml": write_musicxml, "mei": write_mei}


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
    for fmt in FORMATS:
        if fmt in formats:
            written[fmt] = _WRITERS[fmt](piece, res, out_dir / f"{name}{SUFFIX[fmt]}")
    source = written.get("musicxml", written.get("mei"))
    written["svg"] = render_svg(source, out_dir, pages=pages, options=svg_options) if source and pages > 0 else []
    return written
