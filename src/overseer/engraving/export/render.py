"""SVG pages of a written score, rendered with verovio (its bundled fonts: no network)."""

from __future__ import annotations

import os
from pathlib import Path

import verovio

from overseer.engraving.export.readback import ExportError
from overseer.io import write_text

# xmlIdChecksum: element ids seeded from the input's checksum (verovio's are random otherwise), so the
# same score renders to the same SVG bytes and DVC does not see a changed export on every run
SVG_OPTIONS = {
    "pageWidth": 2100, "pageHeight": 2970, "scale": 40, "footer": "none", "header": "none", "xmlIdChecksum": True,
}  # fmt: skip


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
