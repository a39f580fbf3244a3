"""Title and composer of a score file, read from its header without parsing the music.

ingest@engraving compares the pieces of the training source and of a fixed test source
(``ingest.engraving.test_source``): the same file twice has the same content digest, and the same
piece in two encodings (a MusicXML and a kern file, two editions) usually has the same title and
composer. :func:`score_metadata` reads them from the first kilobytes of the file:

- MusicXML (.musicxml, .xml; .mxl through its ``META-INF/container.xml``): ``work-title``,
  ``work-number``, ``movement-number``, ``movement-title`` and ``<creator type="composer">``;
- MEI: the ``title`` elements of ``meiHead`` (file description and works) and ``composer`` or
  ``persName role="composer"``;
- kern: the reference records ``!!!OPT`` (parent work), ``!!!OPS`` (opus), ``!!!OTL`` (title),
  ``!!!OMV``/``!!!OMD`` (movement) and ``!!!COM``.

:func:`piece_key` turns them into a comparable key, or None when the title says too little to
name one piece: empty, a notation program's placeholder ("Title", "Untitled score") or made only
of generic words ("Sonata in C", "Mazurka", "Allegro"), which many different pieces share. Titles
with a number ("Mazurka Op. 6 No. 1") or a proper word ("Träumerei") name a piece. A key needs a
composer too. Unreadable headers give empty metadata: the check is by content digest only then.
"""

from __future__ import annotations

import io
import re
import unicodedata
import zipfile
from pathlib import PurePosixPath

from lxml import etree

_XML_SUFFIXES = (".musicxml", ".xml")
_HEAD_STOP = {"part", "music"}  # MusicXML's first part, MEI's music: the header is over
_KERN_TITLE = ("OPT", "OPS", "OTL", "OMV", "OMD")
_GENERIC = set(
    """
    title untitled score new piano composition composer arranger subtitle lyricist copyright
    sonata sonatina sonate mazurka waltz valse walzer nocturne etude study prelude praeludium piece
    pieces stuck dance tanz menuet minuet minuetto menuetto march marsch song lied rondo variations
    variation theme fugue fuga impromptu scherzo ballade polonaise intermezzo invention sinfonia
    suite partita movement mvt mov satz allegro allegretto andante andantino adagio presto largo
    lento moderato vivace grave maestoso cantabile con moto ma non troppo molto assai poco
    no nr op opus in major minor dur moll the a an of for and und et de la le du el
    c d e f g h b flat sharp is es
    """.split()
)


def _text(el: etree._Element) -> str:
    return " ".join("".join(el.itertext()).split())


def _localname(el: etree._Element) -> str:
    return etree.QName(el).localname if isinstance(el.tag, str) else ""


def _mxl_root(raw: bytes) -> bytes:
    """The score file inside a compressed MusicXML archive."""
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        names = zf.namelist()
        target = None
        if "META-INF/container.xml" in names:
            container = etree.fromstring(zf.read("META-INF/container.xml"), etree.XMLParser(resolve_entities=False))
            found = [el.get("full-path") for el in container.iter() if _localname(el) == "rootfile"]
            target = next((f for f in found if f in names), None)
        if target is None:
            target = next(n for n in names if not n.startswith("META-INF") and n.lower().endswith(_XML_SUFFIXES))
        return zf.read(target)


def _xml_header(raw: bytes) -> dict[str, list[str]]:
    """Texts of the header elements (local names) until the first part / music element."""
    found: dict[str, list[str]] = {}
    events = etree.iterparse(
        io.BytesIO(raw), events=("start", "end"), resolve_entities=False, no_network=True, recover=True, load_dtd=False
    )
    for event, el in events:
        name = _localname(el)
        if event == "start":
            if name in _HEAD_STOP:
                break
            continue
        if name == "creator" and (el.get("type") or "").lower() == "composer":
            found.setdefault("composer", []).append(_text(el))
        elif name == "persName" and (el.get("role") or "").lower() == "composer":
            found.setdefault("composer", []).append(_text(el))
        elif name in ("work-title", "work-number", "movement-number", "movement-title", "title", "composer"):
            found.setdefault(name, []).append(_text(el))
    return found


def _kern_header(raw: bytes) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in raw.decode("utf-8", errors="replace").splitlines():
        m = re.match(r"!!!\s*([A-Z]{3})[^:]*:\s*(.*)", line)
        if m:
            found.setdefault(m[1], []).append(" ".join(m[2].split()))
    return found


def score_metadata(path: str, raw: bytes) -> dict[str, str]:
    """``{"title": ..., "composer": ...}`` of a score file's bytes (empty strings where unknown)."""
    suffix = PurePosixPath(str(path)).suffix.lower()
    try:
        if suffix == ".krn":
            head = _kern_header(raw)
            title = [head[k][0] for k in _KERN_TITLE if head.get(k)]
            composer = head.get("COM", [""])[:1]
        else:
            head = _xml_header(_mxl_root(raw) if suffix == ".mxl" else raw)
            if suffix == ".mei":
                title = list(dict.fromkeys(head.get("title", [])))[:2]
            else:
                keys = ("work-title", "work-number", "movement-number", "movement-title")
                title = [head[k][0] for k in keys if head.get(k)]
            composer = head.get("composer", [""])[:1]
    except Exception:  # noqa: BLE001 - best effort: an unreadable header only means no metadata to compare
        return {"title": "", "composer": ""}
    return {"title": " ".join(t for t in title if t), "composer": " ".join(c for c in composer if c)}


def _tokens(text: str) -> list[str]:
    plain = unicodedata.normalize("NFKD", text)
    plain = "".join(ch for ch in plain if not unicodedata.combining(ch)).casefold()
    return re.findall(r"[^\W_]+", plain)


def piece_key(meta: dict[str, str]) -> tuple[str, str] | None:
    """(title, composer) normalised for comparison, or None when they cannot name one piece (module docstring)."""
    title, composer = _tokens(meta.get("title", "")), _tokens(meta.get("composer", ""))
    composer = [t for t in composer if t not in _GENERIC]
    specific = any(any(ch.isdigit() for ch in t) or t not in _GENERIC for t in title)
    if not (title and composer and specific):
        return None
    return " ".join(title), " ".join(sorted(set(composer)))
